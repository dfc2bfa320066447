/**
 * One HTTP CONNECT hop (and the TLS wrap of an `https` upstream) over an existing socket.
 *
 * Details: sends `CONNECT host:port HTTP/1.1`, `Host` and, with credentials,
 * `Proxy-Authorization: Basic`. Reads the response head in paused mode with
 * bounds (16 KiB, 100 header lines), parses the status line strictly; a 2xx
 * is success, anything else is `UpstreamFailed { httpStatus, hop }` (407,
 * or 401 from tinyproxy: the upstream refused the credentials). A 2xx response to CONNECT has no
 * body (RFC 9110 §9.3.6), so every byte after the blank line is the far
 * side's early data: it is unshifted back into the socket.
 * `https` upstreams first get TLS to the proxy: SNI (the `sni` setting, else
 * the host name), an optional CA file, `insecure` to skip verification.
 *
 * Gotchas: header values are not trusted for anything but diagnostics; the
 * reason phrase never reaches logs unbounded.
 */
import type * as net from "node:net"
import * as tls from "node:tls"
import { failed, type Hop, HopFailure, hostPort, type Target, timedOut } from "./Hop.ts"

const MAX_HEAD = 16 * 1024
const MAX_LINES = 100

export type Head = { readonly k: "more" } | { readonly k: "bad"; readonly why: string } | { readonly k: "ok"; readonly status: number; readonly headers: ReadonlyArray<readonly [string, string]>; readonly used: number }

/** Parses a response head from the start of `b`. */
export const parseHead = (b: Buffer): Head => {
  const end = b.indexOf("\r\n\r\n")
  if (end < 0) return b.length > MAX_HEAD ? { k: "bad", why: "response head too large" } : { k: "more" }
  if (end > MAX_HEAD) return { k: "bad", why: "response head too large" }
  const lines = b.subarray(0, end).toString("latin1").split("\r\n")
  if (lines.length > MAX_LINES) return { k: "bad", why: "too many response header lines" }
  const m = /^HTTP\/1\.[01] (\d{3})(?: [\x20-\x7e\t]*)?$/.exec(lines[0]!)
  if (m === null) return { k: "bad", why: "not an HTTP/1.x status line" }
  const headers: Array<readonly [string, string]> = []
  for (const line of lines.slice(1)) {
    const i = line.indexOf(":")
    if (i <= 0 || !/^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/.test(line.slice(0, i))) return { k: "bad", why: "malformed response header" }
    headers.push([line.slice(0, i).toLowerCase(), line.slice(i + 1).trim()])
  }
  return { k: "ok", status: Number(m[1]), headers, used: end + 4 }
}

/** The CONNECT request for `target`. */
export const connectRequest = (target: Target, user?: string, pass?: string): string => {
  const hp = hostPort(target)
  const auth = user === undefined ? "" : `Proxy-Authorization: Basic ${Buffer.from(`${user}:${pass ?? ""}`).toString("base64")}\r\n`
  return `CONNECT ${hp} HTTP/1.1\r\nHost: ${hp}\r\n${auth}\r\n`
}

/** Reads a response head from a paused socket; resolves with it and unshifts what followed. */
export const readHead = (socket: net.Socket, timeoutMs: number, hop: string): Promise<Head & { k: "ok" }> =>
  new Promise((resolve, reject) => {
    let buf: Buffer = Buffer.alloc(0)
    const done = (e?: HopFailure, h?: Head & { k: "ok" }): void => {
      clearTimeout(timer)
      socket.off("readable", onReadable)
      socket.off("end", onEnd)
      socket.off("close", onEnd)
      socket.off("error", onError)
      if (e !== undefined) { socket.destroy(); reject(e) } else resolve(h!)
    }
    const onReadable = (): void => {
      for (let i = 0; i < 1024; i++) {
        const chunk = socket.read() as Buffer | null
        if (chunk === null) return
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
        const h = parseHead(buf)
        if (h.k === "bad") return done(failed(hop, h.why))
        if (h.k === "ok") {
          if (buf.length > h.used) socket.unshift(buf.subarray(h.used))
          return done(undefined, h)
        }
      }
    }
    const onEnd = (): void => done(failed(hop, "the upstream closed the connection before answering CONNECT"))
    const onError = (): void => done(failed(hop, "connection error while waiting for the CONNECT answer"))
    const timer = setTimeout(() => done(timedOut(hop, "no answer to CONNECT in time")), timeoutMs)
    socket.on("readable", onReadable)
    socket.once("end", onEnd)
    socket.once("close", onEnd)
    socket.once("error", onError)
    onReadable()
  })

/** Runs CONNECT on `socket`; resolves with the same socket, paused, early data intact. */
export const httpHop = async (socket: net.Socket, hop: Hop, target: Target, timeoutMs: number, last: boolean): Promise<net.Socket> => {
  socket.write(connectRequest(target, hop.user, hop.pass))
  const h = await readHead(socket, timeoutMs, hop.name)
  if (h.status >= 200 && h.status < 300) return socket
  socket.destroy()
  // 407 is the standard answer; tinyproxy answers 401.
  if (h.status === 407 || h.status === 401) throw failed(hop.name, `the upstream refused the credentials (${h.status})`, { httpStatus: h.status })
  const codes = { httpStatus: h.status, socksCode: h.status === 504 ? 0x06 : h.status === 403 ? 0x02 : 0x01 }
  throw failed(hop.name, `the upstream answered CONNECT with ${h.status}`, codes, last && (h.status === 502 || h.status === 504 || h.status === 403))
}

/** TLS to an `https` upstream over `socket`. */
export const tlsToProxy = (socket: net.Socket, hop: Hop, timeoutMs: number): Promise<tls.TLSSocket> =>
  new Promise((resolve, reject) => {
    const servername = hop.tls?.sni ?? (/^[\d.]+$|:/.test(hop.host) ? undefined : hop.host)
    const t = tls.connect({
      socket,
      host: hop.host, // only for the certificate check (the socket is already connected)
      ...(servername === undefined ? {} : { servername }),
      ...(hop.tls?.ca === undefined ? {} : { ca: hop.tls.ca }),
      rejectUnauthorized: hop.tls?.insecure !== true,
      allowHalfOpen: true,
    } as tls.ConnectionOptions)
    const timer = setTimeout(() => { t.destroy(); reject(timedOut(hop.name, "TLS handshake with the upstream timed out")) }, timeoutMs)
    t.on("error", (e: Error & { code?: string }) => {
      clearTimeout(timer)
      t.destroy()
      reject(failed(hop.name, `TLS to the upstream failed${e.code === undefined ? "" : ` (${e.code})`}`))
    })
    t.once("secureConnect", () => { clearTimeout(timer); t.removeAllListeners("error"); t.on("error", () => {}); resolve(t) })
  })

export { HopFailure }
