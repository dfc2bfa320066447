/**
 * IP addresses and CIDRs as (family, bigint) pairs, for the checker, the
 * reference interpreter and the analyses. The compiled evaluator has its own
 * faster forms.
 *
 * Gotchas: IPv4-mapped IPv6 (`::ffff:127.0.0.1`) is normalised to IPv4, so a
 * rule about `127.0.0.0/8` also covers it. IPv4 must be four decimal parts
 * (`127.1` and `0x7f.1` are not addresses here).
 */
import ipaddr from "ipaddr.js"
import type { Cidr } from "./Ir.ts"

export interface Ip { readonly family: 4 | 6; readonly value: bigint }

const V4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/

const bytesToBigint = (bytes: ReadonlyArray<number>): bigint => {
  let v = 0n
  for (const b of bytes) v = (v << 8n) | BigInt(b)
  return v
}

/** Parses an IPv4 or IPv6 literal (no brackets, no zone). `undefined` when it is not one. */
export const parseIp = (text: string): Ip | undefined => {
  if (V4.test(text)) return { family: 4, value: bytesToBigint(text.split(".").map(Number)) }
  if (!text.includes(":") || text.includes("%")) return undefined
  if (!ipaddr.IPv6.isValid(text)) return undefined
  const v6 = ipaddr.IPv6.parse(text)
  if (v6.isIPv4MappedAddress()) return { family: 4, value: bytesToBigint(v6.toIPv4Address().toByteArray()) }
  return { family: 6, value: bytesToBigint(v6.toByteArray()) }
}

export const isIpLiteral = (text: string): boolean => parseIp(text) !== undefined

const bits = (family: 4 | 6): number => (family === 4 ? 32 : 128)

export type CidrParse =
  | { readonly ok: true; readonly cidr: Cidr }
  | { readonly ok: false; readonly reason: "not-an-address" | "bad-prefix" | "host-bits"; readonly message: string; readonly fixed?: string }

/** Parses `a.b.c.d/n`, `x::/n`, or a bare address (a /32 or /128). Host bits under the mask are an error. */
export const parseCidr = (text: string): CidrParse => {
  const slash = text.indexOf("/")
  const addrText = slash === -1 ? text : text.slice(0, slash)
  const ip = parseIp(addrText)
  if (ip === undefined) return { ok: false, reason: "not-an-address", message: `\`${addrText}\` is not an IP address` }
  // A mapped address written as IPv6 with a prefix counts its prefix in IPv6 bits.
  const mapped = ip.family === 4 && addrText.includes(":")
  const max = mapped ? 128 : bits(ip.family)
  let prefix = max
  if (slash !== -1) {
    const p = text.slice(slash + 1)
    if (!/^\d{1,3}$/.test(p) || Number(p) > max) {
      return { ok: false, reason: "bad-prefix", message: `prefix \`/${p}\` is out of range for IPv${mapped ? 6 : ip.family} (0..${max})` }
    }
    prefix = Number(p)
  }
  if (mapped) {
    if (prefix < 96) return { ok: false, reason: "bad-prefix", message: `prefix /${prefix} of an IPv4-mapped address must be at least /96` }
    prefix -= 96
  }
  const width = bits(ip.family)
  const hostMask = (1n << BigInt(width - prefix)) - 1n
  if ((ip.value & hostMask) !== 0n) {
    const net = ip.value & ~hostMask
    return { ok: false, reason: "host-bits", message: `\`${text}\` has host bits set under the /${slash === -1 ? prefix : text.slice(slash + 1)} mask`, fixed: `${formatIp({ family: ip.family, value: net })}/${prefix}` }
  }
  return { ok: true, cidr: { family: ip.family, addr: ip.value, prefix } }
}

export const formatIp = (ip: Ip): string => {
  if (ip.family === 4) {
    const v = Number(ip.value)
    return [v >>> 24, (v >>> 16) & 255, (v >>> 8) & 255, v & 255].join(".")
  }
  const bytes: number[] = []
  for (let i = 15; i >= 0; i--) bytes.push(Number((ip.value >> BigInt(i * 8)) & 255n))
  return ipaddr.fromByteArray(bytes).toString()
}

export const formatCidr = (c: Cidr): string => `${formatIp({ family: c.family, value: c.addr })}/${c.prefix}`

export const cidrContains = (c: Cidr, ip: Ip): boolean => {
  if (c.family !== ip.family) return false
  const shift = BigInt(bits(c.family) - c.prefix)
  return (ip.value >> shift) === (c.addr >> shift)
}

/** True when every address of `inner` is in `outer`. */
export const cidrCovers = (outer: Cidr, inner: Cidr): boolean =>
  outer.family === inner.family && outer.prefix <= inner.prefix && cidrContains(outer, { family: inner.family, value: inner.addr })

/** The first and last address of a CIDR. */
export const cidrRange = (c: Cidr): readonly [bigint, bigint] => {
  const host = (1n << BigInt(bits(c.family) - c.prefix)) - 1n
  return [c.addr, c.addr | host]
}
