/**
 * Domain lookups for the compiled evaluator: a trie over reversed labels
 * (`www.example.com` → `com` → `example` → `www`).
 *
 * Details: each node keeps three rule lists: `exact` (the name itself),
 * `suffix` (the name and every subdomain) and `sub` (strict subdomains). A
 * lookup walks the query's labels from the right; every node passed on the way
 * (a strict parent domain) contributes `suffix` and `sub`, the node of the full
 * name contributes `exact` and `suffix`. Labels are the text between dots, so
 * `name.endsWith("." + d)` is exactly "the last labels of name are d's labels":
 * the trie agrees with `Match.domainPatternMatches` on every string, including
 * odd ones (empty labels, upper case patterns that can never match).
 */
import { ListBuilder, push, type Sink } from "./Candidates.ts"

export type DomainKind = "exact" | "suffix" | "sub"

interface BuildNode {
  readonly children: Map<string, BuildNode>
  exact?: ListBuilder
  suffix?: ListBuilder
  sub?: ListBuilder
}

export interface DomainNode {
  readonly children: ReadonlyMap<string, DomainNode>
  readonly exact: Int32Array | undefined
  readonly suffix: Int32Array | undefined
  readonly sub: Int32Array | undefined
}

export interface DomainIndex {
  readonly root: DomainNode
  /** Patterns and their rule positions (for display). */
  readonly entries: ReadonlyArray<{ readonly t: DomainKind; readonly d: string; readonly rules: Int32Array }>
}

export class DomainIndexBuilder {
  private readonly root: BuildNode = { children: new Map() }
  private readonly entries = new Map<string, { t: DomainKind; d: string; rules: ListBuilder }>()
  add(t: DomainKind, d: string, pos: number): void {
    const labels = d.split(".")
    let node = this.root
    for (let i = labels.length - 1; i >= 0; i--) {
      let next = node.children.get(labels[i])
      if (next === undefined) node.children.set(labels[i], (next = { children: new Map() }))
      node = next
    }
    const list = (node[t] ??= new ListBuilder())
    list.add(pos)
    const key = `${t}:${d}`
    let e = this.entries.get(key)
    if (e === undefined) this.entries.set(key, (e = { t, d, rules: new ListBuilder() }))
    e.rules.add(pos)
  }
  build(): DomainIndex {
    const freeze = (n: BuildNode): DomainNode => ({
      children: new Map([...n.children].map(([k, v]) => [k, freeze(v)])),
      exact: n.exact?.build(),
      suffix: n.suffix?.build(),
      sub: n.sub?.build(),
    })
    return { root: freeze(this.root), entries: [...this.entries.values()].map((e) => ({ t: e.t, d: e.d, rules: e.rules.build() })) }
  }
}

/** Pushes the rule lists whose pattern matches the (normalised) `name`. */
export const collectDomain = (ix: DomainIndex, name: string, sink: Sink): void => {
  let node = ix.root
  let end = name.length
  for (;;) {
    let dot = end - 1
    while (dot >= 0 && name.charCodeAt(dot) !== 46) dot--
    const child = node.children.get(name.slice(dot + 1, end))
    if (child === undefined) return
    node = child
    if (dot < 0) {
      if (node.exact !== undefined) push(sink, node.exact)
      if (node.suffix !== undefined) push(sink, node.suffix)
      return
    }
    if (node.suffix !== undefined) push(sink, node.suffix)
    if (node.sub !== undefined) push(sink, node.sub)
    end = dot
  }
}
