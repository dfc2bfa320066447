/**
 * A strict HTTP/1.x message-head parser for a proxy (RFC 9110, RFC 9112), plus Proxy-Authorization Basic.
 *
 * Details: `parseRequestHead`/`parseResponseHead` read one head from the front
 * of a buffer (`more` / `ok` with its size / `error` with the status to answer:
 * "400", or "431" once `limit` bytes (default 64 KiB) hold no complete head).
 * Lines end with CRLF; a bare CR or LF, obs-fold (a line starting with SP/HT),
 * whitespace between a field name and its colon, a name that is not a token,
 * and control bytes in values are errors (request smuggling lives in leniency).
 * `toProxyRequest` interprets a request head for a forward proxy: CONNECT with
 * an authority-form target (`host:port`, `[v6]:port`), any other method with
 * an absolute `http://` URI (origin-form, asterisk-form, `https://` and
 * userinfo are 400); duplicate Host, Content-Length with Transfer-Encoding,
 * a bad or conflicting Content-Length, and a transfer coding other than
 * `chunked` are 400.
 */
import { isIPv4, isIPv6 } from "node:net"
import { Wire } from "@proxyd/runtime"

export const HEAD_LIMIT = 64 * 1024

export type Header = readonly [name: string, value: string]

export interface RequestHead {
  readonly method: string
  readonly target: string
  readonly version: "1.0" | "1.1"
  readonly headers: ReadonlyArray<Header>
}

export interface ResponseHead {
  readonly version: "1.0" | "1.1"
  readonly status: number
  readonly statusLine: string
  readonly headers: ReadonlyArray<Header>
}

export type Framing = { readonly k: "none" } | { readonly k: "length"; readonly n: number } | { readonly k: "chunked" } | { readonly k: "close" }

const TCHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/
// HT, SP..~, obs-text
const VALUE = /^[\t\x20-\x7e\x80-\xff]*$/
const TARGET = /^[\x21-\x7e]+$/

const headEnd = (b: Buffer, limit: number): number | "more" | "too-large" => {
  const i = b.indexOf("\r\n\r\n", 0, "latin1")
  if (i !== -1 && i + 4 <= limit) return i
  if (i !== -1 || b.length >= limit) return "too-large"
  return "more"
}

const parseHeaders = (lines: ReadonlyArray<string>): Array<Header> | string => {
  const out: Array<Header> = []
  for (const line of lines) {
    if (line.startsWith(" ") || line.startsWith("\t")) return "obsolete line folding"
    const colon = line.indexOf(":")
    if (colon <= 0) return "malformed header line"
    const name = line.slice(0, colon)
    if (!TCHAR.test(name)) return /[ \t]$/.test(name) ? "whitespace before a header colon" : "invalid header name"
    const value = line.slice(colon + 1).replace(/^[ \t]+|[ \t]+$/g, "")
    if (!VALUE.test(value)) return "invalid character in a header value"
    out.push([name, value])
  }
  return out
}

/** Splits the head into lines; CR and LF may appear only as CRLF. */
const lines = (b: Buffer, end: number): Array<string> | string => {
  const text = b.toString("latin1", 0, end)
  const ls = text.split("\r\n")
  for (const l of ls) if (l.includes("\r") || l.includes("\n") || l.includes("\0")) return "bare CR, LF or NUL in the head"
  return ls
}

export const parseRequestHead = (b: Buffer, limit = HEAD_LIMIT): Wire.Parse<RequestHead> => {
  let start = 0
  while (start < 4 && b[start] === 0x0d && b[start + 1] === 0x0a) start += 2 // RFC 9112 §2.2: ignore a leading empty line
  const body = start === 0 ? b : b.subarray(start)
  const end = headEnd(body, limit)
  if (end === "more") return Wire.more
  if (end === "too-large") return Wire.fail("431", "request header fields too large")
  const ls = lines(body, end)
  if (typeof ls === "string") return Wire.fail("400", ls)
  const m = /^([^ ]+) ([^ ]+) HTTP\/1\.([01])$/.exec(ls[0]!)
  if (m === null || !TCHAR.test(m[1]!) || !TARGET.test(m[2]!)) return Wire.fail("400", "malformed request line")
  const headers = parseHeaders(ls.slice(1))
  if (typeof headers === "string") return Wire.fail("400", headers)
  return Wire.ok({ method: m[1]!, target: m[2]!, version: m[3] === "1" ? "1.1" : "1.0", headers }, start + end + 4)
}

export const parseResponseHead = (b: Buffer, limit = HEAD_LIMIT): Wire.Parse<ResponseHead> => {
  const end = headEnd(b, limit)
  if (end === "more") return Wire.more
  if (end === "too-large") return Wire.fail("502", "response head too large")
  const ls = lines(b, end)
  if (typeof ls === "string") return Wire.fail("502", ls)
  const m = /^HTTP\/1\.([01]) (\d{3})(?: [\t\x20-\x7e\x80-\xff]*)?$/.exec(ls[0]!)
  if (m === null) return Wire.fail("502", "malformed status line")
  const headers = parseHeaders(ls.slice(1))
  if (typeof headers === "string") return Wire.fail("502", headers)
  return Wire.ok({ version: m[1] === "1" ? "1.1" : "1.0", status: Number(m[2]), statusLine: ls[0]!, headers }, end + 4)
}

export const values = (headers: ReadonlyArray<Header>, name: string): Array<string> =>
  headers.filter(([n]) => n.toLowerCase() === name).map(([, v]) => v)

/** Lowercased tokens of every Connection header. */
export const connectionTokens = (headers: ReadonlyArray<Header>): Set<string> =>
  new Set(values(headers, "connection").flatMap((v) => v.split(",")).map((t) => t.trim().toLowerCase()).filter((t) => t !== ""))

export interface Authority { readonly host: string; readonly port: number }

const REG_NAME = /^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*\.?$/

/** `host:port`, `[v6]:port`, or without a port when `defaultPort` is given. The host comes back without brackets. */
export const parseAuthority = (s: string, defaultPort?: number): Authority | undefined => {
  let host: string
  let rest: string
  if (s.startsWith("[")) {
    const close = s.indexOf("]")
    if (close === -1) return undefined
    host = s.slice(1, close)
    if (!isIPv6(host)) return undefined
    rest = s.slice(close + 1)
  } else {
    const colon = s.lastIndexOf(":")
    host = colon === -1 ? s : s.slice(0, colon)
    rest = colon === -1 ? "" : s.slice(colon)
    if (host.length === 0 || host.length > 255 || (!isIPv4(host) && !REG_NAME.test(host))) return undefined
  }
  if (rest === "") return defaultPort === undefined ? undefined : { host, port: defaultPort }
  const pm = /^:(\d{1,5})$/.exec(rest)
  const port = pm === null ? NaN : Number(pm[1])
  if (!(port >= 1 && port <= 65535)) return undefined
  return { host, port }
}

export interface ProxyRequest {
  readonly kind: "connect" | "forward"
  readonly head: RequestHead
  readonly target: Authority
  /** Origin-form for forwarding (`/path?query`); empty for CONNECT. */
  readonly path: string
  /** The authority as written in the request target (forwarding sends it as `Host`). */
  readonly authority: string
  readonly framing: Framing
  readonly keepAlive: boolean
}

export const toProxyRequest = (head: RequestHead): ProxyRequest | string => {
  const hosts = values(head.headers, "host")
  if (hosts.length > 1) return "duplicate Host header"
  const cl = values(head.headers, "content-length")
  const te = values(head.headers, "transfer-encoding")
  if (cl.length > 0 && te.length > 0) return "Content-Length with Transfer-Encoding"
  let framing: Framing = { k: "none" }
  if (cl.length > 0) {
    const all = cl.flatMap((v) => v.split(",").map((x) => x.trim()))
    if (!all.every((x) => /^\d{1,15}$/.test(x)) || new Set(all.map(Number)).size !== 1) return "bad Content-Length"
    framing = { k: "length", n: Number(all[0]) }
  }
  if (te.length > 0) {
    if (head.version === "1.0") return "Transfer-Encoding in an HTTP/1.0 request"
    const codings = te.flatMap((v) => v.split(",")).map((x) => x.trim().toLowerCase())
    if (codings.length !== 1 || codings[0] !== "chunked") return "unsupported Transfer-Encoding"
    framing = { k: "chunked" }
  }
  const tokens = connectionTokens(head.headers)
  const keepAlive = head.version === "1.1" && !tokens.has("close")
  if (head.method === "CONNECT") {
    const target = parseAuthority(head.target)
    if (target === undefined) return "CONNECT needs host:port"
    return { kind: "connect", head, target, path: "", authority: head.target, framing, keepAlive }
  }
  if (head.target.startsWith("/") || head.target === "*") return "origin-form request to a proxy"
  const m = /^http:\/\/([^/?#]*)([^#]*)/i.exec(head.target)
  if (m === null) return "absolute http:// URI expected"
  if (m[1]!.includes("@")) return "userinfo in the request URI"
  const target = parseAuthority(m[1]!, 80)
  if (target === undefined) return "missing or bad authority"
  if (head.version === "1.1" && hosts.length === 0) return "missing Host header"
  const path = m[2] === "" ? "/" : m[2]!.startsWith("?") ? `/${m[2]}` : m[2]!
  return { kind: "forward", head, target, path, authority: m[1]!, framing, keepAlive }
}

/** Basic credentials from a Proxy-Authorization value (scheme case-insensitive, split at the first colon). */
export const parseBasic = (value: string): { readonly user: string; readonly pass: string } | undefined => {
  const m = /^basic[ ]+([A-Za-z0-9+/]+={0,2})[ ]*$/i.exec(value)
  if (m === null || m[1]!.length % 4 !== 0) return undefined
  const decoded = Buffer.from(m[1]!, "base64").toString("utf8")
  const colon = decoded.indexOf(":")
  if (colon === -1) return undefined
  return { user: decoded.slice(0, colon), pass: decoded.slice(colon + 1) }
}

/** How a response body ends (RFC 9112 §6.3). */
export const responseFraming = (requestMethod: string, res: ResponseHead): Framing => {
  if (requestMethod === "HEAD" || (res.status >= 100 && res.status < 200) || res.status === 204 || res.status === 304) return { k: "none" }
  const te = values(res.headers, "transfer-encoding")
  if (te.length > 0) {
    const codings = te.flatMap((v) => v.split(",")).map((x) => x.trim().toLowerCase())
    return codings[codings.length - 1] === "chunked" ? { k: "chunked" } : { k: "close" }
  }
  const cl = values(res.headers, "content-length")
  if (cl.length > 0) {
    const all = cl.flatMap((v) => v.split(",").map((x) => x.trim()))
    if (all.every((x) => /^\d{1,15}$/.test(x)) && new Set(all.map(Number)).size === 1) return { k: "length", n: Number(all[0]) }
    return { k: "close" }
  }
  return { k: "close" }
}

const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "proxy-authorization", "proxy-authenticate", "te", "trailer", "upgrade"])

/** Headers without hop-by-hop ones and without every header named in Connection. Transfer-Encoding stays: bodies pass through as framed. */
export const endToEnd = (headers: ReadonlyArray<Header>): Array<Header> => {
  const named = connectionTokens(headers)
  return headers.filter(([n]) => {
    const l = n.toLowerCase()
    return !HOP_BY_HOP.has(l) && (!named.has(l) || l === "transfer-encoding" || l === "content-length")
  })
}

export const serializeHeaders = (headers: ReadonlyArray<Header>): string => headers.map(([n, v]) => `${n}: ${v}\r\n`).join("")
