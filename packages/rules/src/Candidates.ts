/**
 * Sorted candidate lists: how the indexes hand rule positions to the evaluator.
 *
 * Details: a candidate list holds rule positions (guards first, then rules, in
 * file order), ascending, without duplicates. All lists of one compiled policy
 * live in one `ListPool` (one Int32Array, list `id` is
 * `data[start[id] .. start[id + 1])`), so a policy of 100k rules costs a few
 * big arrays rather than 100k small ones. Index lookups push list ids into a
 * `Sink`; the evaluator merges them lazily, smallest position first, so
 * first-match order is kept without scanning every rule. Id -1 is the empty
 * list.
 */

export interface ListPool {
  readonly data: Int32Array
  readonly start: Int32Array
}

export interface Sink {
  ids: Int32Array
  n: number
}

export const push = (s: Sink, id: number): void => {
  if (id < 0) return
  if (s.n === s.ids.length) {
    const bigger = new Int32Array(s.ids.length * 2)
    bigger.set(s.ids)
    s.ids = bigger
  }
  s.ids[s.n++] = id
}

/** Collects lists at compile time; positions must be added in ascending order (a repeat of the last one is ignored). */
export class ListsBuilder {
  private readonly lists: Array<Array<number>> = []
  /** A new, empty list. */
  create(): number {
    this.lists.push([])
    return this.lists.length - 1
  }
  add(id: number, pos: number): void {
    const l = this.lists[id]
    if (l.length === 0 || l[l.length - 1] !== pos) l.push(pos)
  }
  build(): ListPool {
    const start = new Int32Array(this.lists.length + 1)
    let total = 0
    for (let i = 0; i < this.lists.length; i++) {
      start[i] = total
      total += this.lists[i].length
    }
    start[this.lists.length] = total
    const data = new Int32Array(total)
    for (let i = 0; i < this.lists.length; i++) data.set(this.lists[i], start[i])
    return { data, start }
  }
}

/** A list id created on first use (-1 until then). */
export class LazyList {
  id = -1
  add(b: ListsBuilder, pos: number): void {
    if (this.id < 0) this.id = b.create()
    b.add(this.id, pos)
  }
}

/** The positions of one list (tests and display). */
export const listOf = (pool: ListPool, id: number): Array<number> => (id < 0 ? [] : Array.from(pool.data.subarray(pool.start[id], pool.start[id + 1])))
