/**
 * Inbound PROXY protocol v1 (text) and v2 (binary): the client address a load balancer carries.
 *
 * Details: `parseHeader` is a pure incremental parser over the bytes received
 * so far: `need` (a valid prefix, read more), `error`, or `ok` with the header
 * length and the carried source (`undefined`: use the real peer — v2 LOCAL,
 * v2 UNSPEC/UNIX families, v1 `UNKNOWN`). v2 TLVs are skipped (they sit inside
 * the announced length). Sizes are bounded: v1 at 107 bytes (the spec's
 * maximum), v2 at `MAX_V2` bytes in all. `readHeader` reads one header from a
 * paused socket and unshifts whatever follows it, so the next reader (TLS,
 * sniffer, handler) sees the stream from its first byte. `trusted` tells
 * whether a peer may send a header at all.
 *
 * Gotchas: a header that announces UDP (v1 has none; v2 0x12/0x22) is refused:
 * the listener is TCP. The result is delivered on `setImmediate` for the same
 * reason as in `Sniff.ts` (a later 'readable' listener must see the unshifted bytes).
 */
import { isIPv4, isIPv6, type Socket } from "node:net"
import { Effect } from "effect"
import { Ip, type Ir } from "@proxyd/rules"

export interface Address { readonly ip: string; readonly port: number }

export type ParseResult =
  | { readonly k: "need" }
  | { readonly k: "error"; readonly message: string }
  | { readonly k: "ok"; readonly length: number; readonly version: 1 | 2; readonly src: Address | undefined }

/** The v2 signature: `\r\n\r\n\0\r\nQUIT\n`. */
export const V2_SIGNATURE = Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a])
const V1_PREFIX = Buffer.from("PROXY ", "latin1")
/** Longest v1 line including CRLF (spec §2.1). */
export const MAX_V1 = 107
/** Longest v2 header accepted (16-byte fixed part + addresses + TLVs). */
export const MAX_V2 = 16 + 2048

const isPrefixOf = (buf: Buffer, sig: Buffer): boolean => buf.subarray(0, Math.min(buf.length, sig.length)).equals(sig.subarray(0, Math.min(buf.length, sig.length)))

const PORT = /^(0|[1-9]\d{0,4})$/

const parseV1 = (buf: Buffer): ParseResult => {
  const end = buf.indexOf("\r\n", 0, "latin1")
  if (end < 0) {
    // A lone CR may still be followed by LF; anything beyond the bound is garbage.
    return buf.length >= MAX_V1 ? { k: "error", message: "PROXY v1 header longer than 107 bytes" } : { k: "need" }
  }
  if (end + 2 > MAX_V1) return { k: "error", message: "PROXY v1 header longer than 107 bytes" }
  const line = buf.toString("latin1", 0, end)
  const parts = line.split(" ")
  if (parts[1] === "UNKNOWN") return { k: "ok", length: end + 2, version: 1, src: undefined }
  if (parts.length !== 6) return { k: "error", message: "malformed PROXY v1 header" }
  const [, proto, srcIp, dstIp, srcPort, dstPort] = parts as [string, string, string, string, string, string]
  const valid = proto === "TCP4" ? isIPv4 : proto === "TCP6" ? isIPv6 : undefined
  if (valid === undefined) return { k: "error", message: "malformed PROXY v1 header (protocol must be TCP4, TCP6 or UNKNOWN)" }
  if (!valid(srcIp) || !valid(dstIp)) return { k: "error", message: "malformed PROXY v1 header (bad address)" }
  if (!PORT.test(srcPort) || !PORT.test(dstPort) || Number(srcPort) > 65535 || Number(dstPort) > 65535) {
    return { k: "error", message: "malformed PROXY v1 header (bad port)" }
  }
  return { k: "ok", length: end + 2, version: 1, src: { ip: srcIp, port: Number(srcPort) } }
}

const ipv6Text = (b: Buffer): string => {
  const groups: Array<string> = []
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16))
  // Canonical form (zero compression) through the rules' formatter.
  const ip = Ip.parseIp(groups.join(":"))
  return ip === undefined ? groups.join(":") : Ip.formatIp(ip)
}

const parseV2 = (buf: Buffer): ParseResult => {
  if (buf.length < 16) return { k: "need" }
  const verCmd = buf[12]!
  if (verCmd >> 4 !== 2) return { k: "error", message: "PROXY v2 header with an unknown version" }
  const cmd = verCmd & 0x0f
  if (cmd > 1) return { k: "error", message: "PROXY v2 header with an unknown command" }
  const fam = buf[13]!
  const len = buf.readUInt16BE(14)
  const total = 16 + len
  if (total > MAX_V2) return { k: "error", message: `PROXY v2 header longer than ${MAX_V2} bytes` }
  if (buf.length < total) return { k: "need" }
  if (cmd === 0) return { k: "ok", length: total, version: 2, src: undefined } // LOCAL: the real peer
  switch (fam) {
    case 0x11: // TCP over IPv4: src(4) dst(4) sport(2) dport(2)
      if (len < 12) return { k: "error", message: "PROXY v2 header too short for IPv4 addresses" }
      return { k: "ok", length: total, version: 2, src: { ip: `${buf[16]}.${buf[17]}.${buf[18]}.${buf[19]}`, port: buf.readUInt16BE(24) } }
    case 0x21: // TCP over IPv6: src(16) dst(16) sport(2) dport(2)
      if (len < 36) return { k: "error", message: "PROXY v2 header too short for IPv6 addresses" }
      return { k: "ok", length: total, version: 2, src: { ip: ipv6Text(buf.subarray(16, 32)), port: buf.readUInt16BE(48) } }
    case 0x00: case 0x31: case 0x32: // UNSPEC, UNIX: no usable client address; use the real peer
      return { k: "ok", length: total, version: 2, src: undefined }
    default:
      return { k: "error", message: `PROXY v2 header with an unsupported address family/protocol 0x${fam.toString(16).padStart(2, "0")}` }
  }
}

/** Parses the PROXY header at the start of `buf` (all bytes received so far). */
export const parseHeader = (buf: Buffer): ParseResult => {
  if (buf.length === 0) return { k: "need" }
  if (buf[0] === 0x0d) return isPrefixOf(buf, V2_SIGNATURE) ? (buf.length < 12 ? { k: "need" } : parseV2(buf)) : { k: "error", message: "not a PROXY protocol header" }
  if (buf[0] === 0x50) return isPrefixOf(buf, V1_PREFIX) ? (buf.length < V1_PREFIX.length ? { k: "need" } : parseV1(buf)) : { k: "error", message: "not a PROXY protocol header" }
  return { k: "error", message: "not a PROXY protocol header" }
}

/** Whether `ip` (as `socket.remoteAddress` gives it; IPv4-mapped IPv6 counts as IPv4) is in one of the CIDRs. */
export const trusted = (cidrs: ReadonlyArray<Ir.Cidr>, ip: string): boolean => {
  const p = Ip.parseIp(ip)
  return p !== undefined && cidrs.some((c) => Ip.cidrContains(c, p))
}

export type ReadResult =
  | { readonly k: "ok"; readonly version: 1 | 2; readonly src: Address | undefined }
  | { readonly k: "error"; readonly message: string }

/** Reads one header from a paused socket; what follows it is unshifted back. Interruption removes the listeners. */
export const readHeader = (socket: Socket): Effect.Effect<ReadResult> =>
  Effect.callback<ReadResult>((resume) => {
    let buf: Buffer = Buffer.alloc(0)
    const cleanup = () => {
      socket.off("readable", onReadable)
      socket.off("end", onEnd)
      socket.off("close", onEnd)
      socket.off("error", onEnd)
    }
    const done = (r: ReadResult) => { cleanup(); setImmediate(() => resume(Effect.succeed(r))) }
    const onReadable = () => {
      // Bounded: each chunk either completes the header, fails it, or grows it towards MAX_V2.
      for (let i = 0; i <= MAX_V2; i++) {
        const chunk = socket.read() as Buffer | null
        if (chunk === null) return
        buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
        const r = parseHeader(buf)
        if (r.k === "need") continue
        if (r.k === "error") return done(r)
        if (buf.length > r.length) socket.unshift(buf.subarray(r.length))
        return done({ k: "ok", version: r.version, src: r.src })
      }
    }
    const onEnd = () => done({ k: "error", message: "connection closed before a complete PROXY header" })
    socket.on("readable", onReadable)
    socket.once("end", onEnd)
    socket.once("close", onEnd)
    socket.once("error", onEnd)
    return Effect.sync(cleanup)
  })
