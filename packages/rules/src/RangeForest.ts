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
 * Built with BigInt (compile time only); the indexes convert the segment
 * starts to plain numbers or 32-bit words for the hot path.
 */
export interface Block {
  readonly start: bigint
  readonly end: bigint
  /** Id of the block's rule list (see `Candidates.ts`). */
  readonly list: number
}

export interface Forest {
  readonly parent: Int32Array
  /** List id of each block. */
  readonly lists: Int32Array
  /** Segment starts, ascending; segment i runs to `starts[i + 1] - 1`. */
  readonly starts: ReadonlyArray<bigint>
  /** Innermost block of each segment, -1 for none. */
  readonly nodes: Int32Array
}

export const buildForest = (blocks: ReadonlyArray<Block>, max: bigint): Forest => {
  const sorted = [...blocks].sort((a, b) => (a.start < b.start ? -1 : a.start > b.start ? 1 : a.end > b.end ? -1 : a.end < b.end ? 1 : 0))
  const parent = new Int32Array(sorted.length)
  const starts: bigint[] = []
  const nodes: number[] = []
  const emit = (at: bigint, node: number) => {
    if (at > max) return
    if (starts.length > 0 && starts[starts.length - 1] === at) nodes[nodes.length - 1] = node
    else {
      starts.push(at)
      nodes.push(node)
    }
  }
  const stack: number[] = []
  const popUntil = (limit: bigint | undefined) => {
    while (stack.length > 0) {
      const top = stack[stack.length - 1]
      if (limit !== undefined && sorted[top].end >= limit) return
      stack.pop()
      emit(sorted[top].end + 1n, stack.length > 0 ? stack[stack.length - 1] : -1)
    }
  }
  if (sorted.length === 0 || sorted[0].start > 0n) emit(0n, -1)
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
