/**
 * SOCKS4 and SOCKS4a framing: pure, synchronous parser and encoders.
 *
 * Details: request `VN=4 CD DSTPORT(2) DSTIP(4) USERID NUL`; SOCKS4a marks a
 * hostname with DSTIP 0.0.0.x (x ≠ 0) and appends `HOSTNAME NUL`. USERID and
 * hostname are bounded to 255 bytes each: a longer field is an error as soon
 * as 256 bytes arrive without a NUL (no unbounded buffering). Reply:
 * `VN=0 CD DSTPORT DSTIP`, CD 90 granted, 91 rejected/failed, 92/93 identd
 * (never sent by us).
 *
 * Error codes: `version` (not SOCKS4: close), `userid` (too long), `name`
 * (too long, empty, or with control bytes). Every error but `version` gets CD 91.
 */
import { Wire } from "@proxyd/runtime"
import { bytesToIpv4, ipv4ToBytes, normalizeIp, validName } from "./Addr.ts"

export const VERSION = 0x04
export const CMD_CONNECT = 0x01
export const CMD_BIND = 0x02
export const CD_GRANTED = 90
export const CD_REJECTED = 91
export const MAX_FIELD = 255

export interface Request {
  readonly cmd: number
  readonly port: number
  /** An IPv4 literal, or the SOCKS4a hostname. */
  readonly host: string
  readonly socks4a: boolean
  readonly userId: string
}

/** Index of the NUL ending a field starting at `at`, `-1` when not here yet, `-2` when over the bound. */
const nulAt = (b: Buffer, at: number): number => {
  const end = Math.min(b.length, at + MAX_FIELD + 1)
  for (let i = at; i < end; i++) if (b[i] === 0) return i
  return b.length >= at + MAX_FIELD + 1 ? -2 : -1
}

export const parseRequest = (b: Buffer): Wire.Parse<Request> => {
  if (b.length < 1) return Wire.more
  if (b[0] !== VERSION) return Wire.fail("version", "not SOCKS4")
  if (b.length < 9) return Wire.more
  const u = nulAt(b, 8)
  if (u === -2) return Wire.fail("userid", "USERID longer than 255 bytes")
  if (u === -1) return Wire.more
  const cmd = b[1]!
  const port = b.readUInt16BE(2)
  const userId = b.toString("latin1", 8, u)
  const socks4a = b[4] === 0 && b[5] === 0 && b[6] === 0 && b[7] !== 0
  if (!socks4a) return Wire.ok({ cmd, port, host: bytesToIpv4(b, 4), socks4a, userId }, u + 1)
  const h = nulAt(b, u + 1)
  if (h === -2) return Wire.fail("name", "hostname longer than 255 bytes")
  if (h === -1) return Wire.more
  const name = b.subarray(u + 1, h)
  if (!validName(name)) return Wire.fail("name", "empty hostname or one with control bytes")
  return Wire.ok({ cmd, port, host: name.toString("latin1"), socks4a, userId }, h + 1)
}

/** The reply; a non-IPv4 address encodes as 0.0.0.0. */
export const encodeReply = (cd: number, host = "0.0.0.0", port = 0): Buffer => {
  const ip = normalizeIp(host)
  const addr = ip !== undefined && !ip.includes(":") ? ipv4ToBytes(ip) : [0, 0, 0, 0]
  return Buffer.from([0x00, cd, (port >> 8) & 0xff, port & 0xff, ...addr])
}

/** A request (for clients and tests); a non-IPv4 host is sent the SOCKS4a way. */
export const encodeRequest = (cmd: number, host: string, port: number, userId = ""): Buffer => {
  const ip = normalizeIp(host)
  const v4 = ip !== undefined && !ip.includes(":")
  const head = Buffer.from([VERSION, cmd, (port >> 8) & 0xff, port & 0xff, ...(v4 ? ipv4ToBytes(ip) : [0, 0, 0, 1])])
  const parts = [head, Buffer.from(userId, "latin1"), Buffer.from([0])]
  if (!v4) parts.push(Buffer.from(host, "latin1"), Buffer.from([0]))
  return Buffer.concat(parts)
}
