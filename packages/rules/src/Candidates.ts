/**
 * Sorted candidate lists: how the indexes hand rule positions to the evaluator.
 *
 * Details: a candidate list is an `Int32Array` of rule positions (guards first,
 * then rules, in file order), ascending, without duplicates. Index lookups push
 * lists into a `Sink`; the evaluator merges them lazily, smallest position
 * first, so first-match order is kept without scanning every rule.
 * `ListBuilder` collects positions at compile time (appended in ascending
 * order, duplicates dropped).
 */

export interface Sink {
  lists: Array<Int32Array>
  n: number
}

export const push = (s: Sink, l: Int32Array): void => {
  if (l.length === 0) return
  s.lists[s.n++] = l
}

export const EMPTY = new Int32Array(0)

/** Positions added in ascending order; `add` ignores a repeat of the last one. */
export class ListBuilder {
  readonly items: Array<number> = []
  add(pos: number): void {
    const items = this.items
    if (items.length === 0 || items[items.length - 1] !== pos) items.push(pos)
  }
  build(): Int32Array {
    return Int32Array.from(this.items)
  }
}

/** Sorted union of sorted lists (compile time). */
export const union = (lists: ReadonlyArray<Int32Array>): Int32Array => {
  const all = new Set<number>()
  for (const l of lists) for (const x of l) all.add(x)
  return Int32Array.from([...all].sort((a, b) => a - b))
}
