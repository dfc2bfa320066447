/**
 * Domain lookups for the compiled evaluator: a trie over reversed labels
 * (`www.example.com` → `com` → `example` → `www`).
 *
 * Details: each node has up to three rule lists: `exact` (the name itself),
 * `suffix` (the name and every subdomain) and `sub` (strict subdomains). A
 * lookup walks the query's labels from the right; every node passed on the way
 * (a strict parent domain) contributes `suffix` and `sub`, the node of the full
 * name contributes `exact` and `suffix`. Labels are the text between dots, so
 * `name.endsWith("." + d)` is exactly "the last labels of name are d's labels":
 * the trie agrees with `Match.domainPatternMatches` on every string, including
 * odd ones (empty labels, upper case patterns that can never match).
 * Leaves have no child map (most nodes of a big block list are leaves).
 */
import { type ListsBuilder, push, type Sink } from "./Candidates.ts"

export type DomainKind = "exact" | "suffix" | "sub"

export interface DomainNode {
  children: Map<string, DomainNode> | undefined
  /** List ids, -1 for none. */
  exact: number
  suffix: number
  sub: number
}

export interface DomainIndex {
  readonly root: DomainNode
}

const node = (): DomainNode => ({ children: undefined, exact: -1, suffix: -1, sub: -1 })

export class DomainIndexBuilder {
  private readonly root = node()
  private readonly lists: ListsBuilder
  constructor(lists: ListsBuilder) {
    this.lists = lists
  }
  add(t: DomainKind, d: string, pos: number): void {
    let n = this.root
    let end = d.length
    for (;;) {
      let dot = end - 1
      while (dot >= 0 && d.charCodeAt(dot) !== 46) dot--
      const label = d.slice(dot + 1, end)
      const children = (n.children ??= new Map())
      let next = children.get(label)
      if (next === undefined) children.set(label, (next = node()))
      n = next
      if (dot < 0) break
      end = dot
    }
    if (n[t] < 0) n[t] = this.lists.create()
    this.lists.add(n[t], pos)
  }
  build(): DomainIndex {
    return { root: this.root }
  }
}

/** Pushes the list ids whose pattern matches the (normalised) `name`. */
export const collectDomain = (ix: DomainIndex, name: string, sink: Sink): void => {
  let n = ix.root
  let end = name.length
  for (;;) {
    const children = n.children
    if (children === undefined) return
    let dot = end - 1
    while (dot >= 0 && name.charCodeAt(dot) !== 46) dot--
    const child = children.get(name.slice(dot + 1, end))
    if (child === undefined) return
    n = child
    if (dot < 0) {
      push(sink, n.exact)
      push(sink, n.suffix)
      return
    }
    push(sink, n.suffix)
    push(sink, n.sub)
    end = dot
  }
}
