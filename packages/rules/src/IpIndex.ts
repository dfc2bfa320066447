/**
 * IP lookups for the compiled evaluator: `IpIndex` (which rules does an address
 * trigger) and `IpSet` (is an address in a matcher's CIDRs).
 *
 * Details: IPv4 points are plain numbers (unsigned 32-bit); IPv6 points are four
 * unsigned 32-bit words, compared word by word: no BigInt on the hot path. The
 * index is a `RangeForest` of the CIDRs used as triggers (CIDRs nest, so the
 * forest is exact); an `IpSet` is a matcher's CIDRs coalesced into sorted
 * disjoint ranges, searched by bisection.
 */
import { type ListsBuilder, push, type Sink } from "./Candidates.ts"
import type { IpBox } from "./FastIp.ts"
import { words } from "./FastIp.ts"
import type { Cidr } from "./Ir.ts"
import { cidrRange } from "./Ip.ts"
import { type Block, buildForest } from "./RangeForest.ts"

const MAX4 = 0xffffffffn
const MAX6 = (1n << 128n) - 1n

type Nums = ArrayLike<number>

/** Compares (a[o..o+3]) with (w0..w3): negative, 0 or positive. */
const cmp6 = (a: Nums, o: number, w0: number, w1: number, w2: number, w3: number): number =>
  a[o] !== w0 ? a[o] - w0 : a[o + 1] !== w1 ? a[o + 1] - w1 : a[o + 2] !== w2 ? a[o + 2] - w2 : a[o + 3] - w3

const toWords = (xs: ReadonlyArray<bigint>): Array<number> => xs.flatMap(words)

// ---------------------------------------------------------------------------
// IpIndex
// ---------------------------------------------------------------------------

interface Family {
  /** Segment starts: numbers (IPv4) or 4 words each (IPv6). */
  readonly starts: Float64Array | Uint32Array
  readonly nodes: Int32Array
  readonly parent: Int32Array
  /** List id per node. */
  readonly lists: Int32Array
}

export interface IpIndex {
  readonly v4: Family
  readonly v6: Family
}

export class IpIndexBuilder {
  private readonly blocks = new Map<string, Block>()
  private readonly families = new Map<Block, 4 | 6>()
  private readonly lists: ListsBuilder
  constructor(lists: ListsBuilder) {
    this.lists = lists
  }
  add(cidr: Cidr, pos: number): void {
    const key = cidr.family === 4 ? `${cidr.addr}/${cidr.prefix}` : `6:${cidr.addr}/${cidr.prefix}`
    let b = this.blocks.get(key)
    if (b === undefined) {
      const [start, end] = cidrRange(cidr)
      b = { start, end, list: this.lists.create() }
      this.blocks.set(key, b)
      this.families.set(b, cidr.family)
    }
    this.lists.add(b.list, pos)
  }
  build(): IpIndex {
    const all = [...this.blocks.values()]
    const f4 = buildForest(all.filter((b) => this.families.get(b) === 4), MAX4)
    const f6 = buildForest(all.filter((b) => this.families.get(b) === 6), MAX6)
    return {
      v4: { starts: Float64Array.from(f4.starts, Number), nodes: f4.nodes, parent: f4.parent, lists: f4.lists },
      v6: { starts: Uint32Array.from(toWords(f6.starts)), nodes: f6.nodes, parent: f6.parent, lists: f6.lists },
    }
  }
}

/** Pushes the list ids triggered by the address in `ip` (fam 4 or 6). */
export const collectIp = (ix: IpIndex, ip: IpBox, sink: Sink): void => {
  let f: Family
  let lo = 0
  if (ip.fam === 4) {
    f = ix.v4
    const s = f.starts
    const x = ip.v4
    let hi = s.length - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (s[mid] <= x) lo = mid
      else hi = mid - 1
    }
  } else if (ip.fam === 6) {
    f = ix.v6
    const s = f.starts
    const { w0, w1, w2, w3 } = ip
    let hi = (s.length >> 2) - 1
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1
      if (cmp6(s, mid << 2, w0, w1, w2, w3) <= 0) lo = mid
      else hi = mid - 1
    }
  } else return
  let node = f.nodes[lo]
  while (node >= 0) {
    push(sink, f.lists[node])
    node = f.parent[node]
  }
}

// ---------------------------------------------------------------------------
// IpSet
// ---------------------------------------------------------------------------

export interface IpSet {
  /** [start0, end0, start1, end1, ...], disjoint, ascending. */
  readonly v4: ReadonlyArray<number>
  /** Same, 8 words per range. */
  readonly v6: ReadonlyArray<number>
}

const NONE: ReadonlyArray<number> = []

const coalesce = (ranges: Array<readonly [bigint, bigint]>): Array<bigint> => {
  ranges.sort((a, b) => (a[0] < b[0] ? -1 : a[0] > b[0] ? 1 : 0))
  const out: Array<[bigint, bigint]> = []
  for (const [s, e] of ranges) {
    const last = out[out.length - 1]
    if (last !== undefined && s <= last[1] + 1n) {
      if (e > last[1]) last[1] = e
    } else out.push([s, e])
  }
  return out.flat()
}

export const ipSet = (cidrs: ReadonlyArray<Cidr>): IpSet => {
  const r4 = coalesce(cidrs.filter((c) => c.family === 4).map(cidrRange))
  const r6 = coalesce(cidrs.filter((c) => c.family === 6).map(cidrRange))
  return { v4: r4.length === 0 ? NONE : r4.map(Number), v6: r6.length === 0 ? NONE : toWords(r6) }
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
