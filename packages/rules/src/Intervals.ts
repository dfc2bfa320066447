/**
 * Exact solving of port and address tests by interval arithmetic, for the
 * analyses (`Space.ts`): the values a conjunction of `field ∈ S` / `field ∉ S`
 * allows are `domain ∩ S1 ∩ … \ (T1 ∪ …)`, computed on sorted interval lists.
 *
 * Details: linear in the number of ranges after sorting, so a `ports` or
 * `cidrs` set with thousands of entries costs little. The chosen value is a
 * readable one: a preferred value when allowed (443, 80, 10.0.0.1, 192.0.2.1,
 * 2001:db8::1), else the lowest allowed value, one past a network address
 * (10.0.0.1 rather than 10.0.0.0) when the network is what the test names.
 */
import type { Cidr } from "./Ir.ts"
import { cidrRange, type Ip, parseIp } from "./Ip.ts"
import type { Lit } from "./Space.ts"

export type Interval = readonly [bigint, bigint]

const merge = (xs: ReadonlyArray<Interval>): Array<Interval> => {
  const sorted = [...xs].sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
  const out: Array<[bigint, bigint]> = []
  for (const [lo, hi] of sorted) {
    const last = out[out.length - 1]
    if (last !== undefined && lo <= last[1] + 1n) { if (hi > last[1]) last[1] = hi }
    else out.push([lo, hi])
  }
  return out
}

const intersect = (a: ReadonlyArray<Interval>, b: ReadonlyArray<Interval>): Array<Interval> => {
  const out: Array<Interval> = []
  let i = 0, j = 0
  while (i < a.length && j < b.length) {
    const lo = a[i]![0] > b[j]![0] ? a[i]![0] : b[j]![0]
    const hi = a[i]![1] < b[j]![1] ? a[i]![1] : b[j]![1]
    if (lo <= hi) out.push([lo, hi])
    if (a[i]![1] < b[j]![1]) i++
    else j++
  }
  return out
}

const subtract = (a: ReadonlyArray<Interval>, b: ReadonlyArray<Interval>): Array<Interval> => {
  const out: Array<Interval> = []
  let j = 0
  for (const [lo0, hi] of a) {
    let lo = lo0
    while (j < b.length && b[j]![1] < lo) j++
    let k = j
    while (lo <= hi && k < b.length && b[k]![0] <= hi) {
      if (b[k]![0] > lo) out.push([lo, b[k]![0] - 1n])
      lo = b[k]![1] + 1n
      k++
    }
    if (lo <= hi) out.push([lo, hi])
  }
  return out
}

/** The allowed values: `domain`, intersected with each positive set, minus each negative one. */
export const feasible = (domain: Interval, sets: ReadonlyArray<{ readonly neg: boolean; readonly ranges: ReadonlyArray<Interval> }>): Array<Interval> => {
  let acc: Array<Interval> = [domain]
  for (const s of sets) if (!s.neg) acc = intersect(acc, merge(s.ranges))
  for (const s of sets) if (s.neg && acc.length > 0) acc = subtract(acc, merge(s.ranges))
  return acc
}

const contains = (xs: ReadonlyArray<Interval>, v: bigint): boolean => xs.some(([lo, hi]) => v >= lo && v <= hi)

/** A port allowed by every literal (all `port` matchers on one field), or undefined: none exists. */
export const solvePort = (field: "src.port" | "dst.port", lits: ReadonlyArray<Lit>): number | undefined => {
  const sets = lits.map((l) => ({ neg: l.neg, ranges: l.m.kind === "port" ? l.m.ranges.map(([a, b]): Interval => [BigInt(a), BigInt(b)]) : [] }))
  const ok = feasible([0n, 65535n], sets)
  for (const p of field === "dst.port" ? [443n, 80n] : [50000n]) if (contains(ok, p)) return Number(p)
  return ok.length === 0 ? undefined : Number(ok[0]![0])
}

const FAMILY_MAX = { 4: 0xffffffffn, 6: (1n << 128n) - 1n } as const

/** An address allowed by every literal (all `ip` matchers on one field), or undefined: none exists. */
export const solveIp = (field: "src.ip" | "dst.ip", lits: ReadonlyArray<Lit>): Ip | undefined => {
  const cidrs = (l: Lit): ReadonlyArray<Cidr> => (l.m.kind === "ip" ? l.m.cidrs : [])
  for (const family of [4, 6] as const) {
    const sets = lits.map((l) => ({ neg: l.neg, ranges: cidrs(l).filter((c) => c.family === family).map(cidrRange) }))
    const ok = feasible([0n, FAMILY_MAX[family]], sets)
    if (ok.length === 0) continue
    const preferred = family === 4 ? (field === "src.ip" ? "10.0.0.1" : "192.0.2.1") : "2001:db8::1"
    const p = parseIp(preferred)!
    if (contains(ok, p.value)) return p
    const [lo, hi] = ok[0]!
    const isNetwork = lits.some((l) => !l.neg && cidrs(l).some((c) => c.family === family && c.addr === lo))
    return { family, value: isNetwork && lo + 1n < hi ? lo + 1n : lo }
  }
  return undefined
}
