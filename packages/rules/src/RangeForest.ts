/**
 * A forest of nested ranges ("blocks") and the innermost block of every point:
 * the shared core of the IP and port indexes.
 *
 * Details: blocks must be laminar (two blocks are disjoint or one contains the
 * other), which CIDRs are, and so are the aligned power-of-two blocks a port
 * range is split into. Each block has the id of the list of rule positions it
 * triggers. The line is cut into segments; each segment knows its innermost
 * block, and each block its parent, so a point lookup is one binary search and
 * a walk up the (short) parent chain, with memory linear in the blocks.
 * Points are numbers (IPv4, ports) or BigInts (IPv6, compile time only; the
 * index converts the segment starts to 32-bit words for the hot path).
 */
/** Points are numbers (IPv4, ports) or bigints (IPv6). */
export interface Block<P extends number | bigint> {
  readonly start: P
  readonly end: P
  /** Id of the block's rule list (see `Candidates.ts`). */
  readonly list: number
}

export interface Forest<P extends number | bigint> {
  readonly parent: Int32Array
  /** List id of each block. */
  readonly lists: Int32Array
  /** Segment starts, ascending; segment i runs to `starts[i + 1] - 1`. */
  readonly starts: ReadonlyArray<P>
  /** Innermost block of each segment, -1 for none. */
  readonly nodes: Int32Array
}

/** `next(x)` is x + 1; `zero` the smallest point; `max` the largest. */
export const buildForest = <P extends number | bigint>(blocks: ReadonlyArray<Block<P>>, zero: P, max: P, next: (x: P) => P): Forest<P> => {
  const sorted = [...blocks].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : a.end > b.end ? -1 : a.end < b.end ? 1 : 0))
  const parent = new Int32Array(sorted.length)
  const starts: P[] = []
  const nodes: number[] = []
  const emit = (at: P, node: number) => {
    if (starts.length > 0 && starts[starts.length - 1] === at) nodes[nodes.length - 1] = node
    else {
      starts.push(at)
      nodes.push(node)
    }
  }
  const stack: number[] = []
  const popUntil = (limit: P | undefined) => {
    while (stack.length > 0) {
      const top = stack[stack.length - 1]
      if (limit !== undefined && sorted[top].end >= limit) return
      stack.pop()
      if (sorted[top].end < max) emit(next(sorted[top].end), stack.length > 0 ? stack[stack.length - 1] : -1)
    }
  }
  if (sorted.length === 0 || sorted[0].start > zero) emit(zero, -1)
  for (let i = 0; i < sorted.length; i++) {
    const b = sorted[i]
    popUntil(b.start)
    parent[i] = stack.length > 0 ? stack[stack.length - 1] : -1
    emit(b.start, i)
    stack.push(i)
  }
  popUntil(undefined)
  return { parent, lists: Int32Array.from(sorted, (b) => b.list), starts, nodes: Int32Array.from(nodes) }
}
