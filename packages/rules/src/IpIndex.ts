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

const MAX4 = 0xffffffff
const MAX6 = (1n << 128n) - 1n

type Nums = ArrayLike<number>

/** First and last address of an IPv4 CIDR, as numbers. */
const range4 = (c: Cidr): readonly [number, number] => {
  const start = Number(c.addr)
  return [start, start + 2 ** (32 - c.prefix) - 1]
}

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
  private readonly blocks4 = new Map<number, Block<number>>()
  private readonly blocks6 = new Map<string, Block<bigint>>()
  private readonly lists: ListsBuilder
  constructor(lists: ListsBuilder) {
    this.lists = lists
  }
  add(cidr: Cidr, pos: number): void {
    let list: number
    if (cidr.family === 4) {
      const [start, end] = range4(cidr)
      const key = start * 64 + cidr.prefix
      let b = this.blocks4.get(key)
      if (b === undefined) this.blocks4.set(key, (b = { start, end, list: this.lists.create() }))
      list = b.list
    } else {
      const key = `${cidr.addr.toString(16)}/${cidr.prefix}`
      let b = this.blocks6.get(key)
      if (b === undefined) {
        const [start, end] = cidrRange(cidr)
        this.blocks6.set(key, (b = { start, end, list: this.lists.create() }))
      }
      list = b.list
    }
    this.lists.add(list, pos)
  }
  build(): IpIndex {
    const f4 = buildForest([...this.blocks4.values()], 0, MAX4, (x) => x + 1)
    const f6 = buildForest([...this.blocks6.values()], 0n, MAX6, (x) => x + 1n)
    return {
      v4: { starts: Float64Array.from(f4.starts), nodes: f4.nodes, parent: f4.parent, lists: f4.lists },
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

const coalesce4 = (ranges: Array<readonly [number, number]>): Array<number> => {
  if (ranges.length === 1) return [ranges[0][0], ranges[0][1]]
  ranges.sort((a, b) => a[0] - b[0])
  const out: Array<number> = []
  for (const [s, e] of ranges) {
    if (out.length > 0 && s <= out[out.length - 1] + 1) out[out.length - 1] = Math.max(e, out[out.length - 1])
    else out.push(s, e)
  }
  return out
}

export const ipSet = (cidrs: ReadonlyArray<Cidr>): IpSet => {
  const c4: Array<readonly [number, number]> = []
  const c6: Array<readonly [bigint, bigint]> = []
  for (const c of cidrs) {
    if (c.family === 4) c4.push(range4(c))
    else c6.push(cidrRange(c))
  }
  return { v4: c4.length === 0 ? NONE : coalesce4(c4), v6: c6.length === 0 ? NONE : toWords(coalesce(c6)) }
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
