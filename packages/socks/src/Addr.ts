/**
 * Address helpers shared by the SOCKS codecs: IP literal ⇄ bytes, name validation.
 *
 * Details: IPv6 text is produced in the canonical compressed form (RFC 5952:
 * lowercase, longest run of ≥ 2 zero groups as `::`, IPv4-mapped with a dotted
 * tail: `::ffff:127.0.0.1`), so addresses compare as
 * strings after `normalizeIp`. IPv4-mapped IPv6 (`::ffff:a.b.c.d`) normalises
 * to the IPv4 text: a dual-stack listener reports IPv4 peers that way.
 */
import { isIPv4, isIPv6 } from "node:net"

export const ipv4ToBytes = (ip: string): Uint8Array => Uint8Array.from(ip.split(".").map(Number))

export const bytesToIpv4 = (b: Uint8Array, at = 0): string => `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`

/** 16 bytes of a valid IPv6 literal (may embed a dotted IPv4 tail; no zone). */
export const ipv6ToBytes = (ip: string): Uint8Array => {
  const out = new Uint8Array(16)
  let text = ip
  const tail: number[] = []
  const lastColon = text.lastIndexOf(":")
  if (text.indexOf(".", lastColon) !== -1) {
    const v4 = ipv4ToBytes(text.slice(lastColon + 1))
    tail.push((v4[0]! << 8) | v4[1]!, (v4[2]! << 8) | v4[3]!)
    const prefix = text.slice(0, lastColon + 1)
    text = prefix.endsWith("::") ? prefix : prefix.slice(0, -1)
  }
  const [headText, tailText] = text.includes("::") ? text.split("::") as [string, string] : [text, undefined]
  const head = headText === "" ? [] : headText.split(":").map((h) => parseInt(h, 16))
  const rest = tailText === undefined || tailText === "" ? [] : tailText.split(":").map((h) => parseInt(h, 16))
  const groups = [...head, ...new Array<number>(8 - head.length - rest.length - tail.length).fill(0), ...rest, ...tail]
  for (let i = 0; i < 8; i++) {
    out[2 * i] = (groups[i]! >> 8) & 0xff
    out[2 * i + 1] = groups[i]! & 0xff
  }
  return out
}

export const bytesToIpv6 = (b: Uint8Array, at = 0): string => {
  const g: number[] = []
  for (let i = 0; i < 8; i++) g.push((b[at + 2 * i]! << 8) | b[at + 2 * i + 1]!)
  let bestStart = -1
  let bestLen = 0
  for (let i = 0; i < 8;) {
    if (g[i] !== 0) { i++; continue }
    let j = i
    while (j < 8 && g[j] === 0) j++
    if (j - i > bestLen && j - i >= 2) { bestStart = i; bestLen = j - i }
    i = j
  }
  const hex = (xs: number[]) => xs.map((x) => x.toString(16)).join(":")
  // IPv4-mapped: dotted tail (RFC 5952 §5), as clients and the HTTP handler write it.
  if (bestStart === 0 && bestLen === 5 && g[5] === 0xffff) return `::ffff:${bytesToIpv4(b, at + 12)}`
  if (bestStart === -1) return hex(g)
  return `${hex(g.slice(0, bestStart))}::${hex(g.slice(bestStart + bestLen))}`
}

/** Canonical text of an IP literal (mapped IPv6 → IPv4, brackets and zone removed); `undefined` when not an IP. */
export const normalizeIp = (ip: string): string | undefined => {
  let s = ip.startsWith("[") && ip.endsWith("]") ? ip.slice(1, -1) : ip
  const pct = s.indexOf("%")
  if (pct !== -1) s = s.slice(0, pct)
  if (isIPv4(s)) return s
  if (!isIPv6(s)) return undefined
  const b = ipv6ToBytes(s)
  const mapped = b.subarray(0, 10).every((x) => x === 0) && b[10] === 0xff && b[11] === 0xff
  return mapped ? bytesToIpv4(b, 12) : bytesToIpv6(b)
}

export const isUnspecified = (ip: string): boolean => ip === "0.0.0.0" || ip === "::"

/** A destination name we are willing to look up: non-empty, ≤ 255 bytes, printable ASCII without spaces. */
export const validName = (b: Uint8Array): boolean => {
  if (b.length === 0 || b.length > 255) return false
  for (const c of b) if (c <= 0x20 || c >= 0x7f) return false
  return true
}
