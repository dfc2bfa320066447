/**
 * SOCKS5 framing (RFC 1928, RFC 1929): pure, synchronous parsers and encoders.
 *
 * Details: each `parse*` reads one message from the front of a buffer and
 * answers `more` (incomplete), `ok` (with its size) or `error` (with a code
 * the handler maps to a reply). Parsers never throw and never look past the
 * message. Addresses: ATYP 1 (IPv4), 3 (domain, 1..255 bytes, printable ASCII
 * only — checked here, before any DNS), 4 (IPv6).
 *
 * Error codes: `version` (not SOCKS5: close without a reply), `atyp` (REP
 * 0x08: the message length is unknown, so close after the reply), `name`
 * (empty name or one with NUL/control bytes: REP 0x04, host unreachable),
 * `methods` (no methods offered), `auth-version`, `auth-length`.
 */
import { Wire } from "@proxyd/runtime"
import { bytesToIpv4, bytesToIpv6, ipv4ToBytes, ipv6ToBytes, normalizeIp, validName } from "./Addr.ts"

export const VERSION = 0x05
export const METHOD_NONE = 0x00
export const METHOD_USERPASS = 0x02
export const METHOD_UNACCEPTABLE = 0xff
export const CMD_CONNECT = 0x01
export const CMD_BIND = 0x02
export const CMD_UDP = 0x03

export const REP = {
  succeeded: 0x00,
  general: 0x01,
  notAllowed: 0x02,
  networkUnreachable: 0x03,
  hostUnreachable: 0x04,
  refused: 0x05,
  ttlExpired: 0x06,
  commandNotSupported: 0x07,
  addressNotSupported: 0x08,
} as const

export interface Greeting { readonly methods: ReadonlyArray<number> }
export interface UserPass { readonly user: string; readonly pass: string }
export interface Address { readonly host: string; readonly port: number; readonly atyp: 1 | 3 | 4 }
export interface Request extends Address { readonly cmd: number }
export interface UdpDatagram extends Address { readonly frag: number; readonly data: Buffer }

export const parseGreeting = (b: Buffer): Wire.Parse<Greeting> => {
  if (b.length < 1) return Wire.more
  if (b[0] !== VERSION) return Wire.fail("version", "not SOCKS5")
  if (b.length < 2) return Wire.more
  const n = b[1]!
  if (n === 0) return Wire.fail("methods", "no authentication methods offered")
  if (b.length < 2 + n) return Wire.more
  return Wire.ok({ methods: [...b.subarray(2, 2 + n)] }, 2 + n)
}

/** RFC 1929 username/password request. An empty password is accepted (some clients send one); an empty user is not. */
export const parseUserPass = (b: Buffer): Wire.Parse<UserPass> => {
  if (b.length < 1) return Wire.more
  if (b[0] !== 0x01) return Wire.fail("auth-version", "bad sub-negotiation version")
  if (b.length < 2) return Wire.more
  const ulen = b[1]!
  if (ulen === 0) return Wire.fail("auth-length", "empty user name")
  if (b.length < 3 + ulen) return Wire.more
  const plen = b[2 + ulen]!
  const size = 3 + ulen + plen
  if (b.length < size) return Wire.more
  return Wire.ok({ user: b.toString("utf8", 2, 2 + ulen), pass: b.toString("utf8", 3 + ulen, size) }, size)
}

/** ATYP, address and port starting at `at`; the size is counted from `at`. */
export const parseAddress = (b: Buffer, at: number): Wire.Parse<Address> => {
  if (b.length < at + 1) return Wire.more
  const atyp = b[at]!
  if (atyp === 0x01) {
    if (b.length < at + 7) return Wire.more
    return Wire.ok({ atyp, host: bytesToIpv4(b, at + 1), port: b.readUInt16BE(at + 5) }, 7)
  }
  if (atyp === 0x04) {
    if (b.length < at + 19) return Wire.more
    return Wire.ok({ atyp, host: bytesToIpv6(b, at + 1), port: b.readUInt16BE(at + 17) }, 19)
  }
  if (atyp === 0x03) {
    if (b.length < at + 2) return Wire.more
    const n = b[at + 1]!
    if (b.length < at + 4 + n) return Wire.more
    const name = b.subarray(at + 2, at + 2 + n)
    if (!validName(name)) return Wire.fail("name", "empty name or a name with control bytes")
    return Wire.ok({ atyp, host: name.toString("latin1"), port: b.readUInt16BE(at + 2 + n) }, 4 + n)
  }
  return Wire.fail("atyp", `address type 0x${atyp.toString(16)} not supported`)
}

export const parseRequest = (b: Buffer): Wire.Parse<Request> => {
  if (b.length < 1) return Wire.more
  if (b[0] !== VERSION) return Wire.fail("version", "not SOCKS5")
  if (b.length < 3) return Wire.more
  const a = parseAddress(b, 3)
  if (a.k !== "ok") return a
  return Wire.ok({ ...a.value, cmd: b[1]! }, 3 + a.size)
}

/** A whole UDP datagram (RFC 1928 §7): RSV(2) FRAG ATYP DST.ADDR DST.PORT DATA. */
export const parseUdp = (b: Buffer): Wire.Parse<UdpDatagram> => {
  if (b.length < 4) return Wire.fail("short", "datagram too short")
  const a = parseAddress(b, 3)
  if (a.k === "more") return Wire.fail("short", "datagram too short")
  if (a.k === "error") return a
  return Wire.ok({ ...a.value, frag: b[2]!, data: b.subarray(3 + a.size) }, b.length)
}

export const encodeMethod = (method: number): Buffer => Buffer.from([VERSION, method])

export const encodeAuthStatus = (success: boolean): Buffer => Buffer.from([0x01, success ? 0x00 : 0x01])

/** ATYP + address + port for an IP literal; anything else (a name, empty) encodes as 0.0.0.0. */
export const encodeAddress = (host: string, port: number): Buffer => {
  const ip = normalizeIp(host)
  const p = [(port >> 8) & 0xff, port & 0xff]
  if (ip !== undefined && ip.includes(":")) return Buffer.from([0x04, ...ipv6ToBytes(ip), ...p])
  return Buffer.from([0x01, ...(ip === undefined ? [0, 0, 0, 0] : ipv4ToBytes(ip)), ...p])
}

/** Encodes a domain name address (for clients and tests). */
export const encodeName = (name: string, port: number): Buffer => {
  const n = Buffer.from(name, "latin1")
  return Buffer.concat([Buffer.from([0x03, n.length]), n, Buffer.from([(port >> 8) & 0xff, port & 0xff])])
}

/** A dotted-quad IPv4 literal as a 32-bit number, or -1 (anything else: the general path decides). */
const dottedQuad = (s: string): number => {
  let value = 0, part = 0, digits = 0, dots = 0
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    if (c === 0x2e) {
      if (digits === 0 || dots === 3) return -1
      value = value * 256 + part
      part = 0; digits = 0; dots++
    } else if (c >= 0x30 && c <= 0x39) {
      if (digits === 3 || (digits > 0 && part === 0)) return -1 // at most 3 digits, no leading zero
      part = part * 10 + (c - 0x30); digits++
      if (part > 255) return -1
    } else return -1
  }
  return dots === 3 && digits > 0 ? value * 256 + part : -1
}

export const encodeReply = (rep: number, host = "0.0.0.0", port = 0): Buffer => {
  // The common case (a CONNECT reply with the outbound socket's IPv4 address) in one small buffer.
  const v4 = dottedQuad(host)
  if (v4 < 0) return Buffer.concat([Buffer.from([VERSION, rep, 0x00]), encodeAddress(host, port)])
  const b = Buffer.allocUnsafe(10)
  b[0] = VERSION; b[1] = rep; b[2] = 0x00; b[3] = 0x01
  b.writeUInt32BE(v4, 4)
  b.writeUInt16BE(port & 0xffff, 8)
  return b
}

export const encodeRequest = (cmd: number, host: string, port: number): Buffer =>
  Buffer.concat([Buffer.from([VERSION, cmd, 0x00]), normalizeIp(host) === undefined ? encodeName(host, port) : encodeAddress(host, port)])

export const encodeUdp = (host: string, port: number, data: Uint8Array, frag = 0): Buffer =>
  Buffer.concat([Buffer.from([0, 0, frag]), normalizeIp(host) === undefined ? encodeName(host, port) : encodeAddress(host, port), data])
