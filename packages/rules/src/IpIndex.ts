/**
 * IP lookups for the compiled evaluator: `IpIndex` (which rules does an address
 * trigger) and `IpSet` (is an address in a matcher's CIDRs).
 *
 * Details: IPv4 points are plain numbers (unsigned 32-bit, in Float64Arrays);
 * IPv6 points are four unsigned 32-bit words in a Uint32Array, compared word by
 * word: no BigInt on the hot path. The index is a `RangeForest` of the CIDRs
 * used as triggers (CIDRs nest, so the forest is exact); an `IpSet` is the
 * matcher's CIDRs coalesced into sorted disjoint ranges, searched by bisection.
 */
import { ListBuilder, push, type Sink } from "./Candidates.ts"
import type { IpBox } from "./FastIp.ts"
import { words } from "./FastIp.ts"
import type { Cidr } from "./Ir.ts"
import { cidrRange } from "./Ip.ts"
import { type Block, buildForest } from "./RangeForest.ts"

const MAX4 = 0xffffffffn
const MAX6 = (1n << 128n) - 1n

/** Is (a[o..o+3]) <= (w0..w3)? */
const le6 = (a: Uint32Array, o: number, w0: number, w1: number, w2: number, w3: number): boolean =>
  a[o] !== w0 ? a[o] < w0 : a[o + 1] !== w1 ? a[o + 1] < w1 : a[o + 2] !== w2 ? a[o + 2] < w2 : a[o + 3] <= w3

/** Compares (a[o..o+3]) with (w0..w3): negative, 0 or positive. */
const cmp6 = (a: Uint32Array, o: number, w0: number, w1: number, w2: number, w3: number): number =>
  a[o] !== w0 ? a[o] - w0 : a[o + 1] !== w1 ? a[o + 1] - w1 : a[o + 2] !== w2 ? a[o + 2] - w2 : a[o + 3] - w3

const toWords = (xs: ReadonlyArray<bigint>): Uint32Array => {
  const out = new Uint32Array(xs.length * 4)
  xs.forEach((x, i) => out.set(words(x), i * 4))
  return out
}

// ---------------------------------------------------------------------------
// IpIndex
// ---------------------------------------------------------------------------

interface Family<S> {
  readonly starts: S
  readonly nodes: Int32Array
  readonly parent: Int32Array
  readonly lists: ReadonlyArray<Int32Array>
}

export interface IpIndex {
  readonly v4: Family<Float64Array>
  readonly v6: Family<Uint32Array>
  /** Number of distinct trigger CIDRs (for display). */
  readonly size: number
  /** The CIDRs and their rule positions (for display). */
  readonly entries: ReadonlyArray<{ readonly cidr: Cidr; readonly rules: Int32Array }>
}

export class IpIndexBuilder {
  private readonly blocks = new Map<string, { cidr: Cidr; block: Block }>()
  add(cidr: Cidr, pos: number): void {
    const key = `${cidr.family}/${cidr.addr}/${cidr.prefix}`
    let b = this.blocks.get(key)
    if (b === undefined) {
      const [start, end] = cidrRange(cidr)
      b = { cidr, block: { start, end, rules: new ListBuilder() } }
      this.blocks.set(key, b)
    }
    b.block.rules.add(pos)
  }
  build(): IpIndex {
    const all = [...this.blocks.values()]
    const f4 = buildForest(all.filter((b) => b.cidr.family === 4).map((b) => b.block), MAX4)
    const f6 = buildForest(all.filter((b) => b.cidr.family === 6).map((b) => b.block), MAX6)
    return {
      v4: { starts: Float64Array.from(f4.starts, Number), nodes: f4.nodes, parent: f4.parent, lists: f4.lists },
      v6: { starts: toWords(f6.starts), nodes: f6.nodes, parent: f6.parent, lists: f6.lists },
      size: all.length,
      entries: all.map((b) => ({ cidr: b.cidr, rules: b.block.rules.build() })),
    }
  }
}

const chain = (node: number, parent: Int32Array, lists: ReadonlyArray<Int32Array>, sink: Sink): void => {
  while (node >= 0) {
    push(sink, lists[node])
    node = parent[node]
  }
}

/** Pushes the rule lists triggered by the address in `ip` (fam 4 or 6). */
export const collectIp = (ix: IpIndex, ip: IpBox, sink: Sink): void => {
  if (ip.fam === 4) {
    const f = ix.v4
    const s = f.starts
    const x = ip.v4
    let lo = 0
    let hi = s.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (s[mid] <= x) lo = mid
      else hi = mid - 1
    }
    chain(f.nodes[lo], f.parent, f.lists, sink)
  } else if (ip.fam === 6) {
    const f = ix.v6
    const s = f.starts
    const { w0, w1, w2, w3 } = ip
    let lo = 0
    let hi = (s.length >> 2) - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (le6(s, mid << 2, w0, w1, w2, w3)) lo = mid
      else hi = mid - 1
    }
    chain(f.nodes[lo], f.parent, f.lists, sink)
  }
}

// ---------------------------------------------------------------------------
// IpSet
// ---------------------------------------------------------------------------

export interface IpSet {
  /** [start0, end0, start1, end1, ...], disjoint, ascending. */
  readonly v4: Float64Array
  /** Same, 8 words per range. */
  readonly v6: Uint32Array
}

const coalesce = (ranges: Array<readonly [bigint, bigint]>): Array<readonly [bigint, bigint]> => {
  ranges.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
  const out: Array<[bigint, bigint]> = []
  for (const [s, e] of ranges) {
    const last = out[out.length - 1]
    if (last !== undefined && s <= last[1] + 1n) {
      if (e > last[1]) last[1] = e
    } else out.push([s, e])
  }
  return out
}

export const ipSet = (cidrs: ReadonlyArray<Cidr>): IpSet => {
  const r4 = coalesce(cidrs.filter((c) => c.family === 4).map(cidrRange))
  const r6 = coalesce(cidrs.filter((c) => c.family === 6).map(cidrRange))
  return { v4: Float64Array.from(r4.flat(), Number), v6: toWords(r6.flat()) }
}

export const hasIp = (set: IpSet, ip: IpBox): boolean => {
  if (ip.fam === 4) {
    const r = set.v4
    const x = ip.v4
    let lo = 0
    let hi = (r.length >> 1) - 1
    while (lo <= hi) {
      const mid = (lo + hi) >> 1
      if (x < r[mid << 1]) hi = mid - 1
      else if (x > r[(mid << 1) + 1]) lo = mid + 1
      else return true
    }
    return false
  }
  const r = set.v6
  const { w0, w1, w2, w3 } = ip
  let lo = 0
  let hi = (r.length >> 3) - 1
  while (lo <= hi) {
    const mid = (lo + hi) >> 1
    const o = mid << 3
    if (cmp6(r, o, w0, w1, w2, w3) > 0) hi = mid - 1
    else if (cmp6(r, o + 4, w0, w1, w2, w3) < 0) lo = mid + 1
    else return true
  }
  return false
}
