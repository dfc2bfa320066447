/**
 * Compiles a `PolicyIR` into a decision graph the evaluator runs in a few
 * microseconds whatever the number of rules.
 *
 * Details: every guard and rule gets a position (guards first, then rules, in
 * file order). For each rule the compiler picks *triggers*: matchers of which
 * at least one must be true whenever the condition is true (a leaf: itself; an
 * `and`: the triggers of its most selective item; an `or`: the union of its
 * items' triggers; `not` and `true`: none, so the rule is "always a
 * candidate"). Triggers are entered in per-field indexes (domain trie, IP and
 * port range forests, hash maps for users, groups, enums, countries, ASNs).
 * At run time the indexes give the rules whose trigger can be true; the
 * evaluator checks those, in position order, with the rule's closure.
 *
 * Gotchas: only positive positions are indexed (under `not` a false leaf can
 * make the rule true). A trigger whose field is unknown for a request excludes
 * the rule (the rule cannot be true), but a trigger on a costly fact not yet
 * looked up (`need` mode) makes every rule of that field a candidate (`all`).
 * Cheap fields are preferred as triggers, so that decisions made by cheap
 * facts do not wait for DNS or GeoIP.
 */
import { type DomainIndex, DomainIndexBuilder } from "./DomainIndex.ts"
import { ListBuilder } from "./Candidates.ts"
import type { Cond, FactName, Field, Matcher, Outcome, PolicyIR, RuleIR } from "./Ir.ts"
import { type IpIndex, IpIndexBuilder } from "./IpIndex.ts"
import { type PortIndex, PortIndexBuilder } from "./PortIndex.ts"
import { compileCond, FACTS, type Test } from "./Verify.ts"

export interface RulePlan {
  readonly rule: RuleIR
  readonly position: number
  /** At least one of these is true whenever the condition is; undefined: the rule is always a candidate. */
  readonly triggers: ReadonlyArray<Matcher> | undefined
  /** What is left to check once a trigger holds (for display; the evaluator checks the whole condition). */
  readonly residual: Cond
}

/** Rules of one field: `any` are candidates whenever the field is known (glob, regex, time triggers); `all` holds every rule with a trigger on the field. */
export interface FieldTail {
  readonly any: Int32Array
  readonly all: Int32Array
}
export interface Indexed<I> extends FieldTail { readonly index: I }

export interface CompiledPolicy {
  readonly policy: PolicyIR
  /** Per rule name: costly facts its condition may need. */
  readonly needs: ReadonlyMap<string, ReadonlyArray<FactName>>
  /** Union of `needs` over the policy. Empty means the runtime never resolves names for this policy. */
  readonly factsNeeded: ReadonlyArray<FactName>
  /** Guards then rules, by position. */
  readonly plans: ReadonlyArray<RulePlan>
  readonly tests: ReadonlyArray<Test>
  readonly outcomes: ReadonlyArray<Outcome>
  readonly defaultOutcome: Outcome
  /** Rules without triggers. */
  readonly always: Int32Array
  readonly domain: Indexed<DomainIndex> | undefined
  readonly srcIp: Indexed<IpIndex> | undefined
  readonly dstIp: Indexed<IpIndex> | undefined
  readonly srcPort: Indexed<PortIndex> | undefined
  readonly dstPort: Indexed<PortIndex> | undefined
  readonly user: Indexed<ReadonlyMap<string, Int32Array>> | undefined
  readonly group: Indexed<ReadonlyMap<string, Int32Array>> | undefined
  readonly listener: Indexed<ReadonlyMap<string, Int32Array>> | undefined
  readonly protocol: Indexed<ReadonlyMap<string, Int32Array>> | undefined
  readonly command: Indexed<ReadonlyMap<string, Int32Array>> | undefined
  readonly auth: Indexed<ReadonlyMap<string, Int32Array>> | undefined
  readonly srcCountry: Indexed<ReadonlyMap<string, Int32Array>> | undefined
  readonly dstCountry: Indexed<ReadonlyMap<string, Int32Array>> | undefined
  readonly srcAsn: Indexed<ReadonlyMap<number, Int32Array>> | undefined
  readonly dstAsn: Indexed<ReadonlyMap<number, Int32Array>> | undefined
  readonly time: FieldTail | undefined
}

// ---------------------------------------------------------------------------
// Facts
// ---------------------------------------------------------------------------

const costly = (m: Matcher): FactName | undefined =>
  m.kind === "ip" ? (m.field === "dst.ip" ? "dst.ip" : undefined) : m.kind === "country" || m.kind === "asn" ? m.field : undefined

/** The costly facts a condition may need, in `FACTS` order. */
export const factsOf = (c: Cond): ReadonlyArray<FactName> => {
  const found = new Set<FactName>()
  const walk = (c: Cond): void => {
    if (c.k === "match") {
      const f = costly(c.m)
      if (f !== undefined) found.add(f)
    } else if (c.k === "not") walk(c.c)
    else if (c.k === "and" || c.k === "or") c.items.forEach(walk)
  }
  walk(c)
  return FACTS.filter((f) => found.has(f))
}

// ---------------------------------------------------------------------------
// Triggers
// ---------------------------------------------------------------------------

/** Index keys of a matcher; `undefined` entries are patterns no index can take (glob, regex, time). */
const keysOf = (m: Matcher): ReadonlyArray<string | undefined> => {
  switch (m.kind) {
    case "domain": return m.patterns.map((p) => (p.t === "exact" || p.t === "suffix" || p.t === "sub" ? `${p.t}:${p.d}` : undefined))
    case "ip": return m.cidrs.map((c) => `${c.family}/${c.addr}/${c.prefix}`)
    case "port": return m.ranges.map(([lo, hi]) => `${lo}-${hi}`)
    case "string": return m.patterns.map((p) => (p.t === "exact" ? p.s : undefined))
    case "group": case "enum": case "country": return m.values
    case "asn": return m.values.map(String)
    case "time": return [undefined]
  }
}

const ANY_COST = 1e6
const FIELD_FACTOR: Partial<Record<Field, number>> = { "dst.ip": 4, "src.country": 8, "dst.country": 8, "src.asn": 8, "dst.asn": 8 }

type Counts = Map<string, number>

const countKeys = (c: Cond, counts: Counts): void => {
  if (c.k === "match") {
    for (const k of keysOf(c.m)) {
      if (k !== undefined) counts.set(`${c.m.field} ${k}`, (counts.get(`${c.m.field} ${k}`) ?? 0) + 1)
    }
  } else if (c.k === "not") countKeys(c.c, counts)
  else if (c.k === "and" || c.k === "or") for (const item of c.items) countKeys(item, counts)
}

/** Estimated number of candidates a matcher brings when used as a trigger. */
const cost = (m: Matcher, counts: Counts): number => {
  let sum = 0
  for (const k of keysOf(m)) sum += k === undefined ? ANY_COST : (counts.get(`${m.field} ${k}`) ?? 1)
  if (m.kind === "port") for (const [lo, hi] of m.ranges) sum += (hi - lo) / 1024
  return sum * (FIELD_FACTOR[m.field] ?? 1)
}

interface Choice {
  readonly triggers: ReadonlyArray<Matcher>
  readonly cost: number
  /** The `and` item the triggers came from, if any (for the residual). */
  readonly residual: Cond
}

const TRUE: Cond = { k: "true" }

const choose = (c: Cond, counts: Counts): Choice | undefined => {
  switch (c.k) {
    case "true": case "not": return undefined
    case "match": return { triggers: [c.m], cost: cost(c.m, counts), residual: TRUE }
    case "or": {
      if (c.items.length === 0) return { triggers: [], cost: 0, residual: TRUE }
      const parts = c.items.map((i) => choose(i, counts))
      if (parts.some((p) => p === undefined)) return undefined
      return { triggers: parts.flatMap((p) => p!.triggers), cost: parts.reduce((a, p) => a + p!.cost, 0), residual: c.items.length === 1 ? parts[0]!.residual : c }
    }
    case "and": {
      let best: Choice | undefined
      let bestAt = -1
      c.items.forEach((item, i) => {
        const ch = choose(item, counts)
        if (ch !== undefined && (best === undefined || ch.cost < best.cost)) {
          best = ch
          bestAt = i
        }
      })
      if (best === undefined) return undefined
      const b: Choice = best
      const rest = c.items.filter((_, i) => i !== bestAt)
      const residual: Cond = b.residual.k === "true" ? (rest.length === 0 ? TRUE : rest.length === 1 ? rest[0] : { k: "and", items: rest }) : c
      return { triggers: b.triggers, cost: b.cost, residual }
    }
  }
}

// ---------------------------------------------------------------------------
// Building the indexes
// ---------------------------------------------------------------------------

class Tail {
  readonly any = new ListBuilder()
  readonly all = new ListBuilder()
  build(): FieldTail {
    return { any: this.any.build(), all: this.all.build() }
  }
}

class MapIndex<K> extends Tail {
  readonly map = new Map<K, ListBuilder>()
  add(key: K, pos: number): void {
    let l = this.map.get(key)
    if (l === undefined) this.map.set(key, (l = new ListBuilder()))
    l.add(pos)
  }
  done(): Indexed<ReadonlyMap<K, Int32Array>> {
    return { ...this.build(), index: new Map([...this.map].map(([k, l]) => [k, l.build()])) }
  }
}

class Builders {
  readonly domain = Object.assign(new Tail(), { ix: new DomainIndexBuilder() })
  readonly srcIp = Object.assign(new Tail(), { ix: new IpIndexBuilder() })
  readonly dstIp = Object.assign(new Tail(), { ix: new IpIndexBuilder() })
  readonly srcPort = Object.assign(new Tail(), { ix: new PortIndexBuilder() })
  readonly dstPort = Object.assign(new Tail(), { ix: new PortIndexBuilder() })
  readonly user = new MapIndex<string>()
  readonly group = new MapIndex<string>()
  readonly listener = new MapIndex<string>()
  readonly protocol = new MapIndex<string>()
  readonly command = new MapIndex<string>()
  readonly auth = new MapIndex<string>()
  readonly srcCountry = new MapIndex<string>()
  readonly dstCountry = new MapIndex<string>()
  readonly srcAsn = new MapIndex<number>()
  readonly dstAsn = new MapIndex<number>()
  readonly time = new Tail()
  readonly used = new Set<string>()

  add(m: Matcher, pos: number): void {
    switch (m.kind) {
      case "domain": {
        const b = this.domain
        b.all.add(pos)
        for (const p of m.patterns) {
          if (p.t === "exact" || p.t === "suffix" || p.t === "sub") b.ix.add(p.t, p.d, pos)
          else b.any.add(pos)
        }
        break
      }
      case "ip": {
        const b = m.field === "src.ip" ? this.srcIp : this.dstIp
        b.all.add(pos)
        for (const c of m.cidrs) b.ix.add(c, pos)
        break
      }
      case "port": {
        const b = m.field === "src.port" ? this.srcPort : this.dstPort
        b.all.add(pos)
        for (const [lo, hi] of m.ranges) b.ix.add(lo, hi, pos)
        break
      }
      case "string":
        this.user.all.add(pos)
        for (const p of m.patterns) {
          if (p.t === "exact") this.user.add(p.s, pos)
          else this.user.any.add(pos)
        }
        break
      case "group": case "enum": case "country": {
        const b = m.kind === "group" ? this.group : this.mapOf(m.field as Exclude<Field, "dst.asn" | "src.asn">)
        b.all.add(pos)
        for (const v of m.values) b.add(v, pos)
        break
      }
      case "asn": {
        const b = m.field === "src.asn" ? this.srcAsn : this.dstAsn
        b.all.add(pos)
        for (const v of m.values) b.add(v, pos)
        break
      }
      case "time":
        this.time.all.add(pos)
        this.time.any.add(pos)
        break
    }
    this.used.add(m.field)
  }

  private mapOf(field: Field): MapIndex<string> {
    switch (field) {
      case "listener": return this.listener
      case "protocol": return this.protocol
      case "command": return this.command
      case "auth": return this.auth
      case "src.country": return this.srcCountry
      default: return this.dstCountry
    }
  }
}

const decide = (rule: RuleIR): Outcome => ({
  type: "decision",
  decision: {
    action: rule.kind === "guard" ? { k: "block", ...(rule.action.k === "block" && rule.action.message !== undefined ? { message: rule.action.message } : {}) } : rule.action,
    rule: rule.name,
    ruleKind: rule.kind,
    modifiers: rule.modifiers,
  },
})

export const compile = (policy: PolicyIR): CompiledPolicy => {
  const ordered = [...policy.guards, ...policy.rules]
  const counts: Counts = new Map()
  for (const r of ordered) countKeys(r.cond, counts)
  const b = new Builders()
  const always = new ListBuilder()
  const plans: RulePlan[] = ordered.map((rule, position) => {
    const choice = choose(rule.cond, counts)
    if (choice === undefined) always.add(position)
    else for (const m of choice.triggers) b.add(m, position)
    return { rule, position, triggers: choice?.triggers, residual: choice?.residual ?? rule.cond }
  })
  const needs = new Map<string, ReadonlyArray<FactName>>()
  for (const r of [...ordered, policy.default]) needs.set(r.name, factsOf(r.cond))
  const union = new Set([...needs.values()].flat())
  const has = (f: Field) => b.used.has(f)
  const tail = <I>(t: Tail, index: I): Indexed<I> => ({ ...t.build(), index })
  return {
    policy,
    needs,
    factsNeeded: FACTS.filter((f) => union.has(f)),
    plans,
    tests: ordered.map((r) => compileCond(r.cond)),
    outcomes: ordered.map(decide),
    defaultOutcome: decide(policy.default),
    always: always.build(),
    domain: has("dst.domain") ? tail(b.domain, b.domain.ix.build()) : undefined,
    srcIp: has("src.ip") ? tail(b.srcIp, b.srcIp.ix.build()) : undefined,
    dstIp: has("dst.ip") ? tail(b.dstIp, b.dstIp.ix.build()) : undefined,
    srcPort: has("src.port") ? tail(b.srcPort, b.srcPort.ix.build()) : undefined,
    dstPort: has("dst.port") ? tail(b.dstPort, b.dstPort.ix.build()) : undefined,
    user: has("user") ? b.user.done() : undefined,
    group: has("group") ? b.group.done() : undefined,
    listener: has("listener") ? b.listener.done() : undefined,
    protocol: has("protocol") ? b.protocol.done() : undefined,
    command: has("command") ? b.command.done() : undefined,
    auth: has("auth") ? b.auth.done() : undefined,
    srcCountry: has("src.country") ? b.srcCountry.done() : undefined,
    dstCountry: has("dst.country") ? b.dstCountry.done() : undefined,
    srcAsn: has("src.asn") ? b.srcAsn.done() : undefined,
    dstAsn: has("dst.asn") ? b.dstAsn.done() : undefined,
    time: has("time") ? b.time.build() : undefined,
  }
}
