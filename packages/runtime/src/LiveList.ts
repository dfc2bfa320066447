/**
 * The collection for things that come and go with connections (the sessions listing, a
 * listener's connection fibers and detached connections): a doubly linked list whose nodes the caller keeps, so
 * adding and removing are O(1) with no hashing and removal leaves no reference behind.
 *
 * Why not a `Map` or a `Set`: V8 grows or compacts a Map's or Set's table by allocating a new
 * table in the generation of the old one (ordered-hash-table.cc, `Rehash`) and leaves the old
 * table's entries in place. A collection that lives as long as the server has its table in the
 * old generation, so with connections coming and going every rehash (every few dozen adds)
 * leaves a dead old table pointing at every entry that was present at that moment. A scavenge
 * does not know that old table is dead: its slots are roots until the next full collection, so
 * each connection's whole object graph (the entry reaches the sockets, their stream states, the
 * relay) survived two scavenges and was promoted: ~2.8 KB per connection at concurrency 50 with
 * either the sessions Map or the detached Set alone, ~25 B with neither (docs/benchmarks.md,
 * "What every connection promoted, found (ninth session)"). A removed node here clears its own
 * links and value, and its neighbours' links are overwritten, so nothing stale is left.
 *
 * Gotchas: a node belongs to one list; `remove` is idempotent. Iteration (`values`) copies, so
 * callers may remove while they walk the copy.
 */

/** One member's place in a `LiveList`; `remove()` takes it out (once; later calls do nothing). */
export class LiveNode<T> {
  value: T | undefined
  prev: LiveNode<T> | undefined = undefined
  next: LiveNode<T> | undefined = undefined
  list: LiveList<T> | undefined
  constructor(list: LiveList<T>, value: T) { this.list = list; this.value = value }
  remove(): void { this.list?.unlink(this) }
}

export class LiveList<T> {
  private head: LiveNode<T> | undefined = undefined
  private tail: LiveNode<T> | undefined = undefined
  private count = 0

  get size(): number { return this.count }

  /** Adds `value` at the end; keep the node to remove it. */
  add(value: T): LiveNode<T> {
    const n = new LiveNode(this, value)
    const t = this.tail
    if (t === undefined) this.head = n
    else { n.prev = t; t.next = n }
    this.tail = n
    this.count++
    return n
  }

  /** Takes `n` out (called through `n.remove()`). */
  unlink(n: LiveNode<T>): void {
    if (n.list !== this) return
    const { prev, next } = n
    if (prev === undefined) this.head = next
    else prev.next = next
    if (next === undefined) this.tail = prev
    else next.prev = prev
    n.prev = n.next = n.list = n.value = undefined
    this.count--
  }

  /** The members now, oldest first (a copy). */
  values(): Array<T> {
    const out: Array<T> = []
    for (let n = this.head; n !== undefined; n = n.next) out.push(n.value as T)
    return out
  }

  /** The first member (oldest first) for which `f` holds. */
  find(f: (v: T) => boolean): T | undefined {
    for (let n = this.head; n !== undefined; n = n.next) if (f(n.value as T)) return n.value
    return undefined
  }
}
