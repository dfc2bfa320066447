/**
 * Port lookups for the compiled evaluator: which rules does a port trigger.
 *
 * Details: each trigger range is split into aligned power-of-two blocks (at most
 * 30 for a 16-bit range), which nest like CIDRs, so a `RangeForest` holds them.
 * A 65,536-entry table gives the innermost block of every port; the lookup
 * walks the parent chain (at most 17 blocks). Ports outside 0..65535 or not
 * integers are not in the table: the caller then takes every rule of the field.
 */
import { type ListsBuilder, push, type Sink } from "./Candidates.ts"
import { type Block, buildForest } from "./RangeForest.ts"

export interface PortIndex {
  readonly table: Int32Array
  readonly parent: Int32Array
  /** List id per block. */
  readonly lists: Int32Array
}

/** Aligned blocks covering [lo, hi] (clamped to 0..65535) exactly. */
export const alignedBlocks = (lo: number, hi: number): Array<readonly [number, number]> => {
  const out: Array<readonly [number, number]> = []
  let at = Math.max(0, lo)
  const end = Math.min(65535, hi)
  while (at <= end) {
    let size = 1
    while (at % (size * 2) === 0 && at + size * 2 - 1 <= end && size < 65536) size *= 2
    out.push([at, at + size - 1])
    at += size
  }
  return out
}

export class PortIndexBuilder {
  private readonly blocks = new Map<number, Block<number>>()
  private readonly lists: ListsBuilder
  constructor(lists: ListsBuilder) {
    this.lists = lists
  }
  add(lo: number, hi: number, pos: number): void {
    for (const [s, e] of alignedBlocks(lo, hi)) {
      const k = s * 65536 + e
      let b = this.blocks.get(k)
      if (b === undefined) this.blocks.set(k, (b = { start: s, end: e, list: this.lists.create() }))
      this.lists.add(b.list, pos)
    }
  }
  build(): PortIndex {
    const f = buildForest([...this.blocks.values()], 0, 65535, (x) => x + 1)
    const table = new Int32Array(65536)
    for (let i = 0; i < f.starts.length; i++) {
      const from = f.starts[i]
      const to = i + 1 < f.starts.length ? f.starts[i + 1] : 65536
      table.fill(f.nodes[i], from, to)
    }
    return { table, parent: f.parent, lists: f.lists }
  }
}

/** Pushes the list ids triggered by `port`; false when the port is not in 0..65535 (the caller falls back). */
export const collectPort = (ix: PortIndex, port: number, sink: Sink): boolean => {
  if (!(port >= 0 && port <= 65535 && (port | 0) === port)) return false
  let node = ix.table[port]
  while (node >= 0) {
    push(sink, ix.lists[node])
    node = ix.parent[node]
  }
  return true
}
