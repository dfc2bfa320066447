/**
 * Fast IP literal parsing for the compiled evaluator: no BigInt, no ipaddr.js
 * on the common path.
 *
 * Details: an address is written into a mutable `IpBox`: `fam` 4 with `v4` the
 * address as an unsigned 32-bit number, or `fam` 6 with `w0..w3` its four
 * 32-bit words (most significant first). IPv4-mapped IPv6 becomes IPv4, as in
 * `Ip.ts`. Texts without `:` are decided here (strict four-part decimal, the
 * same rule as `Ip.parseIp`). IPv6 texts made only of hex groups and `:`/`::`
 * are parsed here; anything else with a `:` (embedded dotted IPv4, zone ids,
 * odd forms) falls back to `Ip.parseIp`, so the accepted set and the values
 * are exactly those of `Ip.parseIp`.
 */
import { parseIp } from "./Ip.ts"

export interface IpBox {
  /** 0: not an address; 4 or 6. */
  fam: number
  v4: number
  w0: number
  w1: number
  w2: number
  w3: number
}

export const newBox = (): IpBox => ({ fam: 0, v4: 0, w0: 0, w1: 0, w2: 0, w3: 0 })

/** Strict dotted quad: four parts, 0..255, no leading zeros. */
const parseV4 = (t: string, out: IpBox): boolean => {
  const n = t.length
  let value = 0
  let part = 0
  let digits = 0
  let parts = 0
  let first = 0
  for (let i = 0; i <= n; i++) {
    const ch = i === n ? 46 : t.charCodeAt(i)
    if (ch === 46) {
      if (digits === 0 || part > 255 || (digits > 1 && first === 48)) return false
      value = value * 256 + part
      parts++
      if (parts > 4) return false
      part = 0
      digits = 0
    } else if (ch >= 48 && ch <= 57) {
      if (digits === 0) first = ch
      if (++digits > 3) return false
      part = part * 10 + (ch - 48)
    } else return false
  }
  if (parts !== 4) return false
  out.fam = 4
  out.v4 = value
  return true
}

const groups = new Int32Array(8)

const hex = (ch: number): number =>
  ch >= 48 && ch <= 57 ? ch - 48 : ch >= 97 && ch <= 102 ? ch - 87 : ch >= 65 && ch <= 70 ? ch - 55 : -1

/** Plain IPv6 (hex groups, at most one `::`). `false` means "not handled here", not "invalid". */
const parseV6 = (t: string, out: IpBox): boolean => {
  const n = t.length
  let i = 0
  let count = 0
  let gap = -1
  if (t.charCodeAt(0) === 58) {
    if (n < 2 || t.charCodeAt(1) !== 58) return false
    gap = 0
    i = 2
  }
  while (i < n) {
    let v = 0
    let d = 0
    while (i < n) {
      const h = hex(t.charCodeAt(i))
      if (h < 0) break
      if (++d > 4) return false
      v = (v << 4) | h
      i++
    }
    if (d === 0 || count === 8) return false
    groups[count++] = v
    if (i === n) break
    if (t.charCodeAt(i) !== 58) return false
    i++
    if (i < n && t.charCodeAt(i) === 58) {
      if (gap !== -1) return false
      gap = count
      i++
    } else if (i === n) return false
  }
  if (gap === -1 ? count !== 8 : count > 7) return false
  const g = [0, 0, 0, 0, 0, 0, 0, 0]
  if (gap === -1) for (let k = 0; k < 8; k++) g[k] = groups[k]
  else {
    for (let k = 0; k < gap; k++) g[k] = groups[k]
    const tail = count - gap
    for (let k = 0; k < tail; k++) g[8 - tail + k] = groups[gap + k]
  }
  setWords(out, ((g[0] << 16) | g[1]) >>> 0, ((g[2] << 16) | g[3]) >>> 0, ((g[4] << 16) | g[5]) >>> 0, ((g[6] << 16) | g[7]) >>> 0)
  return true
}

const setWords = (out: IpBox, w0: number, w1: number, w2: number, w3: number): void => {
  if (w0 === 0 && w1 === 0 && w2 === 0xffff) {
    out.fam = 4
    out.v4 = w3
  } else {
    out.fam = 6
    out.w0 = w0
    out.w1 = w1
    out.w2 = w2
    out.w3 = w3
  }
}

/** Parses `text` (no brackets) into `out`; returns whether it is an address (and sets `out.fam` to 0 when not). */
export const parseInto = (text: string, out: IpBox): boolean => {
  out.fam = 0
  if (text.indexOf(":") === -1) return parseV4(text, out)
  if (parseV6(text, out)) return true
  const ip = parseIp(text)
  if (ip === undefined) return false
  if (ip.family === 4) {
    out.fam = 4
    out.v4 = Number(ip.value)
  } else {
    const v = ip.value
    setWords(out, Number((v >> 96n) & 0xffffffffn), Number((v >> 64n) & 0xffffffffn), Number((v >> 32n) & 0xffffffffn), Number(v & 0xffffffffn))
  }
  return true
}

/** Words of a 128-bit bigint (compile time only). */
export const words = (v: bigint): [number, number, number, number] =>
  [Number((v >> 96n) & 0xffffffffn), Number((v >> 64n) & 0xffffffffn), Number((v >> 32n) & 0xffffffffn), Number(v & 0xffffffffn)]
