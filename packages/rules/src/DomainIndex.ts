/**
 * Domain lookups for the compiled evaluator: one hash map from each pattern's name to its rule
 * lists, probed with every label suffix of the query (`www.example.com`, then `example.com`,
 * then `com`).
 *
 * Details: each name has up to three rule lists: `exact` (the name itself), `suffix` (the name
 * and every subdomain) and `sub` (strict subdomains). The query's full name contributes `exact`
 * and `suffix`; each strict suffix of it that starts after a dot (a parent domain)
 * contributes `suffix` and `sub`. So `name.endsWith("." + d)` is exactly "d is a suffix of name
 * starting after a dot": the index agrees with `Match.domainPatternMatches` on every string,
 * including odd ones (empty labels, upper case patterns that can never match).
 * Gotchas: the map's keys are the patterns' own strings (no copies), and the lists live in one
 * Int32Array: at 100k rules this replaced a label trie of ~400k heap objects (nodes, child maps,
 * label strings) with two, which is what every full collection of a server has to mark.
 */
import { type ListsBuilder, push, type Sink } from "./Candidates.ts"

export type DomainKind = "exact" | "suffix" | "sub"

const SLOT: Record<DomainKind, number> = { exact: 0, suffix: 1, sub: 2 }

export interface DomainIndex {
  /** Name → entry number; the entry's list ids are `lists[3 * entry + 0..2]` (exact, suffix, sub; -1 for none). */
  readonly names: ReadonlyMap<string, number>
  readonly lists: Int32Array
}

export class DomainIndexBuilder {
  private readonly names = new Map<string, number>()
  private readonly ids: Array<number> = []
  private readonly lists: ListsBuilder
  constructor(lists: ListsBuilder) {
    this.lists = lists
  }
  add(t: DomainKind, d: string, pos: number): void {
    let entry = this.names.get(d)
    if (entry === undefined) {
      entry = this.ids.length / 3
      this.names.set(d, entry)
      this.ids.push(-1, -1, -1)
    }
    const at = 3 * entry + SLOT[t]
    if (this.ids[at] < 0) this.ids[at] = this.lists.create()
    this.lists.add(this.ids[at], pos)
  }
  build(): DomainIndex {
    return { names: this.names, lists: Int32Array.from(this.ids) }
  }
}

/** Pushes the list ids whose pattern matches the (normalised) `name`. */
export const collectDomain = (ix: DomainIndex, name: string, sink: Sink): void => {
  const { names, lists } = ix
  const whole = names.get(name)
  if (whole !== undefined) {
    push(sink, lists[3 * whole])
    push(sink, lists[3 * whole + 1])
  }
  for (let dot = name.indexOf("."); dot >= 0; dot = name.indexOf(".", dot + 1)) {
    const e = names.get(name.slice(dot + 1))
    if (e !== undefined) {
      push(sink, lists[3 * e + 1])
      push(sink, lists[3 * e + 2])
    }
  }
}
