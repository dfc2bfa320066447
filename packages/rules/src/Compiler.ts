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
 * evaluator checks those, in position order, with the rule's closure
 * (`Verify.ts`, compiled the first time the rule is a candidate), after a flat
 * check of the rule's destination-port hull.
 *
 * A rule whose condition is the same as an earlier rule's (structurally) can
 * never decide: it is left out of every index ("shadowed").
 *
 * Gotchas: only positive positions are indexed (under `not` a false leaf can
 * make the rule true). A trigger whose field is unknown for a request excludes
 * the rule (the rule cannot be true), but a trigger on a costly fact not yet
 * looked up (`need` mode) makes every rule of that field a candidate (`all`).
 * Cheap fields are preferred as triggers, so that decisions made by cheap
 * facts do not wait for DNS or GeoIP.
 */
import { LazyList, type ListPool, ListsBuilder } from "./Candidates.ts"
import { hashCond, sameCond } from "./CondHash.ts"
import { type DomainIndex, DomainIndexBuilder } from "./DomainIndex.ts"
import type { Cond, FactName, Field, Matcher, Outcome, PolicyIR, RuleIR } from "./Ir.ts"
import { type IpIndex, IpIndexBuilder } from "./IpIndex.ts"
import { type PortIndex, PortIndexBuilder } from "./PortIndex.ts"
import { compileCond, FACTS, type Test } from "./Verify.ts"

export interface RulePlan {
  readonly rule: RuleIR
  readonly position: number
  /** At least one of these is true whenever the condition is; undefined: the rule is always a candidate (unless shadowed). */
  readonly triggers: ReadonlyArray<Matcher> | undefined
  /** What is left to check once a trigger holds (for display; the evaluator checks the whole condition). */
  readonly residual: Cond
  /** Position of an earlier rule with the same condition: this one can never decide, and is never a candidate. */
  readonly shadowedBy: number | undefined
}

/** List ids (see `Candidates.ts`): `any` are candidates whenever the field is known (glob, regex, time triggers); `all` holds every rule with a trigger on the field. */
export interface FieldTail {
  readonly any: number
  readonly all: number
}
export interface Indexed<I> extends FieldTail { readonly index: I }

export interface CompiledPolicy {
  readonly policy: PolicyIR
  /** Union of the costly facts the policy's conditions may need (see `factsOf`). Empty means the runtime never resolves names for this policy. */
  readonly factsNeeded: ReadonlyArray<FactName>
  /** Guards then rules, by position. */
  readonly ordered: ReadonlyArray<RuleIR>
  /** Per position, the position of an earlier rule with the same condition (that one can never decide), or -1. */
  readonly shadowedBy: Int32Array
  /** Closures by position, compiled on first use (see `testAt`): a rule that is never a candidate costs no closure. */
  readonly tests: Array<Test | undefined>
  /** Decisions by position, made on first use (see `outcomeAt`). */
  readonly outcomes: Array<Outcome | undefined>
  readonly defaultOutcome: Outcome
  /**
   * Per position, the hull of the destination ports the rule can be true for
   * (from `dst.port` conjuncts at the top of its condition; ±Infinity when
   * none): a flat pre-check before the rule's closure.
   */
  readonly portLo: Float64Array
  readonly portHi: Float64Array
  /**
   * Per position, what the request must have for the condition to be true (`REQUIRES_USER`,
   * `REQUIRES_DOMAIN`: a positive `user`/`group` or `dst.domain` conjunct at the top of the
   * condition, which is unknown, so never true, without one): the second flat pre-check. A big
   * policy's rules triggered by a port range and guarded by a group are skipped for anonymous
   * connections without running (or compiling) their closures.
   */
  readonly requires: Uint8Array
  /** Every candidate list. */
  readonly lists: ListPool
  /** List id of the rules without triggers. */
  readonly always: number
  readonly domain: Indexed<DomainIndex> | undefined
  readonly srcIp: Indexed<IpIndex> | undefined
  readonly dstIp: Indexed<IpIndex> | undefined
  readonly srcPort: Indexed<PortIndex> | undefined
  readonly dstPort: Indexed<PortIndex> | undefined
  readonly user: Indexed<ReadonlyMap<string, number>> | undefined
  readonly group: Indexed<ReadonlyMap<string, number>> | undefined
  readonly listener: Indexed<ReadonlyMap<string, number>> | undefined
  readonly protocol: Indexed<ReadonlyMap<string, number>> | undefined
  readonly command: Indexed<ReadonlyMap<string, number>> | undefined
  readonly auth: Indexed<ReadonlyMap<string, number>> | undefined
  readonly srcCountry: Indexed<ReadonlyMap<string, number>> | undefined
  readonly dstCountry: Indexed<ReadonlyMap<string, number>> | undefined
  readonly srcAsn: Indexed<ReadonlyMap<number, number>> | undefined
  readonly dstAsn: Indexed<ReadonlyMap<number, number>> | undefined
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
  if (found.size === 0) return NO_FACTS
  return FACTS.filter((f) => found.has(f))
}
const NO_FACTS: ReadonlyArray<FactName> = Object.freeze([])

// ---------------------------------------------------------------------------
// Triggers
// ---------------------------------------------------------------------------

/**
 * One key per value of a matcher. Index keys start with `e:`/`s:`/`b:` for
 * names and patterns (exact, suffix, sub) or are raw values; `g:`, `r:` and
 * `t:` (glob, regex, time) cannot be indexed.
 */
const valueKeys = (m: Matcher): ReadonlyArray<string> => {
  switch (m.kind) {
    case "domain": return m.patterns.map((p) => (p.t === "exact" ? `e:${p.d}` : p.t === "suffix" ? `s:${p.d}` : p.t === "sub" ? `b:${p.d}` : p.t === "glob" ? `g:${p.g}` : `r:${p.r}`))
    case "ip": return m.cidrs.map((c) => (c.family === 4 ? `${Number(c.addr)}/${c.prefix}` : `6:${c.addr.toString(16)}/${c.prefix}`))
    case "port": return m.ranges.map(([lo, hi]) => `${lo}-${hi}`)
    case "string": return m.patterns.map((p) => (p.t === "exact" ? `e:${p.s}` : p.t === "glob" ? `g:${p.g}` : `r:${p.r}`))
    case "group": case "enum": case "country": return m.values
    case "asn": return m.values.map(String)
    case "time": return [`t:${m.days}:${m.windows.join(";")}:${m.tz}`]
    case "plugin": return m.values.map((v) => `p:${m.name}:${v}`)
  }
}

const indexable = (m: Matcher, key: string): boolean =>
  m.kind === "time" || m.kind === "plugin" ? false : m.kind === "domain" || m.kind === "string" ? !(key.startsWith("g:") || key.startsWith("r:")) : true

const ANY_COST = 1e6
const FIELD_FACTOR: Partial<Record<Field, number>> = { "dst.ip": 4, "src.country": 8, "dst.country": 8, "src.asn": 8, "dst.asn": 8 }

/**
 * How many matchers use each key, per field, counted over the conditions that
 * have a choice of trigger (`and`/`or`); a rule that is a single matcher has
 * no choice to make, and skipping those keeps big block lists cheap to compile.
 */
class Keys {
  readonly counts = new Map<Field, Map<string, number>>()
  count(c: Cond): void {
    if (c.k === "not") this.count(c.c)
    else if (c.k === "and" || c.k === "or") for (const item of c.items) this.count(item)
    else if (c.k === "match") {
      let counts = this.counts.get(c.m.field)
      if (counts === undefined) this.counts.set(c.m.field, (counts = new Map()))
      for (const k of valueKeys(c.m)) counts.set(k, (counts.get(k) ?? 0) + 1)
    }
  }
  /** Estimated number of candidates a matcher brings when used as a trigger. */
  cost(m: Matcher): number {
    const counts = this.counts.get(m.field)
    let sum = 0
    for (const k of valueKeys(m)) sum += indexable(m, k) ? (counts?.get(k) ?? 1) : ANY_COST
    if (m.kind === "port") for (const [lo, hi] of m.ranges) sum += (hi - lo) / 1024
    return sum * (FIELD_FACTOR[m.field] ?? 1)
  }
}

interface Choice {
  /** Their estimated candidates are the choice's cost (computed only where an `and` compares its items). */
  readonly triggers: ReadonlyArray<Matcher>
  /** What is left to check once a trigger holds. */
  readonly residual: Cond
}

const TRUE: Cond = { k: "true" }
/** The test of a shadowed rule, which is never a candidate. */
const NEVER: Test = () => 0

const choose = (c: Cond, keys: Keys): Choice | undefined => {
  switch (c.k) {
    case "true": case "not": return undefined
    // Plugin fields are not indexed: a rule they trigger alone is always a candidate.
    case "match": return c.m.kind === "plugin" ? undefined : { triggers: [c.m], residual: TRUE }
    case "or": {
      if (c.items.length === 0) return { triggers: [], residual: TRUE }
      const parts: Choice[] = []
      for (const item of c.items) {
        const ch = choose(item, keys)
        if (ch === undefined) return undefined
        parts.push(ch)
      }
      return { triggers: parts.flatMap((p) => p.triggers), residual: parts.every((p) => p.residual.k === "true") ? TRUE : c.items.length === 1 ? parts[0].residual : c }
    }
    case "and": {
      let best: Choice | undefined
      let bestCost = Infinity
      let bestAt = -1
      for (let i = 0; i < c.items.length; i++) {
        const ch = choose(c.items[i], keys)
        if (ch === undefined) continue
        let cost = 0
        for (const m of ch.triggers) cost += keys.cost(m)
        if (best === undefined || cost < bestCost) {
          best = ch
          bestCost = cost
          bestAt = i
        }
      }
      if (best === undefined) return undefined
      const rest = c.items.filter((_, i) => i !== bestAt)
      const residual: Cond = best.residual.k === "true" ? (rest.length === 0 ? TRUE : rest.length === 1 ? rest[0] : { k: "and", items: rest }) : c
      return { triggers: best.triggers, residual }
    }
  }
}

// ---------------------------------------------------------------------------
// Building the indexes
// ---------------------------------------------------------------------------

class Tail {
  readonly any = new LazyList()
  readonly all = new LazyList()
  tail(): FieldTail {
    return { any: this.any.id, all: this.all.id }
  }
}

class MapIndex<K> extends Tail {
  readonly map = new Map<K, number>()
  add(lists: ListsBuilder, key: K, pos: number): void {
    let id = this.map.get(key)
    if (id === undefined) this.map.set(key, (id = lists.create()))
    lists.add(id, pos)
  }
  done(): Indexed<ReadonlyMap<K, number>> {
    return { ...this.tail(), index: this.map }
  }
}

class Builders {
  readonly lists = new ListsBuilder()
  readonly domain = Object.assign(new Tail(), { ix: new DomainIndexBuilder(this.lists) })
  readonly srcIp = Object.assign(new Tail(), { ix: new IpIndexBuilder(this.lists) })
  readonly dstIp = Object.assign(new Tail(), { ix: new IpIndexBuilder(this.lists) })
  readonly srcPort = Object.assign(new Tail(), { ix: new PortIndexBuilder(this.lists) })
  readonly dstPort = Object.assign(new Tail(), { ix: new PortIndexBuilder(this.lists) })
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
  readonly always = new LazyList()
  readonly used = new Set<string>()

  add(m: Matcher, pos: number): void {
    const lists = this.lists
    switch (m.kind) {
      case "domain": {
        const b = this.domain
        b.all.add(lists, pos)
        for (const p of m.patterns) {
          if (p.t === "exact" || p.t === "suffix" || p.t === "sub") b.ix.add(p.t, p.d, pos)
          else b.any.add(lists, pos)
        }
        break
      }
      case "ip": {
        const b = m.field === "src.ip" ? this.srcIp : this.dstIp
        b.all.add(lists, pos)
        for (const c of m.cidrs) b.ix.add(c, pos)
        break
      }
      case "port": {
        const b = m.field === "src.port" ? this.srcPort : this.dstPort
        b.all.add(lists, pos)
        for (const [lo, hi] of m.ranges) b.ix.add(lo, hi, pos)
        break
      }
      case "string":
        this.user.all.add(lists, pos)
        for (const p of m.patterns) {
          if (p.t === "exact") this.user.add(lists, p.s, pos)
          else this.user.any.add(lists, pos)
        }
        break
      case "group": case "enum": case "country": {
        const b = m.kind === "group" ? this.group : this.mapOf(m.field)
        b.all.add(lists, pos)
        for (const v of m.values) b.add(lists, v, pos)
        break
      }
      case "asn": {
        const b = m.field === "src.asn" ? this.srcAsn : this.dstAsn
        b.all.add(lists, pos)
        for (const v of m.values) b.add(lists, v, pos)
        break
      }
      case "time":
        this.time.all.add(lists, pos)
        this.time.any.add(lists, pos)
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

/** A rule's outcome, frozen: the evaluator hands the same object to every caller. */
const decide = (rule: RuleIR): Outcome => Object.freeze({
  type: "decision",
  decision: Object.freeze({
    action: rule.kind === "guard" ? Object.freeze({ k: "block", ...(rule.action.k === "block" && rule.action.message !== undefined ? { message: rule.action.message } : {}) }) : rule.action,
    rule: rule.name,
    ruleKind: rule.kind,
    modifiers: rule.modifiers,
  }),
})

export const REQUIRES_USER = 1
export const REQUIRES_DOMAIN = 2

/** The `requires` bits of a condition: positive leaves on `user`/`group` and `dst.domain` at the top (through `and`). */
const requiresOf = (c: Cond): number => {
  if (c.k === "match") return c.m.kind === "string" || c.m.kind === "group" ? REQUIRES_USER : c.m.kind === "domain" ? REQUIRES_DOMAIN : 0
  if (c.k !== "and") return 0
  let r = 0
  for (const item of c.items) r |= requiresOf(item)
  return r
}

/** [lo, hi]: when the destination port is outside, the condition cannot be true. */
const portHull = (c: Cond): readonly [number, number] => {
  if (c.k === "match" && c.m.kind === "port" && c.m.field === "dst.port") {
    let lo = Infinity
    let hi = -Infinity
    for (const [a, b] of c.m.ranges) {
      if (a < lo) lo = a
      if (b > hi) hi = b
    }
    return [lo, hi]
  }
  if (c.k === "and") {
    let lo = -Infinity
    let hi = Infinity
    for (const item of c.items) {
      const [a, b] = portHull(item)
      if (a > lo) lo = a
      if (b < hi) hi = b
    }
    return [lo, hi]
  }
  return [-Infinity, Infinity]
}

/** The closure of the rule at `pos` (compiled once, on first use). */
export const testAt = (c: CompiledPolicy, pos: number): Test =>
  (c.tests[pos] ??= c.shadowedBy[pos] < 0 ? compileCond(c.ordered[pos].cond) : NEVER)

/** The decision of the rule at `pos` (made once, then shared). */
export const outcomeAt = (c: CompiledPolicy, pos: number): Outcome => (c.outcomes[pos] ??= decide(c.ordered[pos]))

/**
 * Each rule's trigger choice (or `undefined`: always a candidate) and its shadowing earlier
 * rule, by position: what `compile` indexes, and what `plans` shows.
 */
const choices = (ordered: ReadonlyArray<RuleIR>): Array<{ readonly shadowedBy: number | undefined; readonly choice: Choice | undefined }> => {
  const keys = new Keys()
  for (const r of ordered) if (r.cond.k === "and" || r.cond.k === "or") keys.count(r.cond)
  // Hash of a condition → the first position with it (or all of them, on a hash collision).
  const byHash = new Map<number, number | number[]>()
  return ordered.map((rule, position) => {
    const h = hashCond(rule.cond)
    const earlier = byHash.get(h)
    const seen = earlier === undefined ? undefined : typeof earlier === "number" ? (sameCond(ordered[earlier].cond, rule.cond) ? earlier : undefined) : earlier.find((p) => sameCond(ordered[p].cond, rule.cond))
    if (seen !== undefined) return { shadowedBy: seen, choice: undefined }
    if (earlier === undefined) byHash.set(h, position)
    else if (typeof earlier === "number") byHash.set(h, [earlier, position])
    else earlier.push(position)
    return { shadowedBy: undefined, choice: choose(rule.cond, keys) }
  })
}

/**
 * The compiler's plan of every rule, for display (`proxyd graph`) and tests. Recomputed on each
 * call: a compiled policy keeps only what evaluation needs (at 100k rules the plans were ~300k
 * objects in the server's heap).
 */
export const plans = (c: CompiledPolicy): ReadonlyArray<RulePlan> =>
  choices(c.ordered).map(({ shadowedBy, choice }, position) => {
    const rule = c.ordered[position]
    return { rule, position, triggers: choice?.triggers, residual: choice?.residual ?? rule.cond, shadowedBy }
  })

export const compile = (policy: PolicyIR): CompiledPolicy => {
  const ordered = [...policy.guards, ...policy.rules]
  const b = new Builders()
  const shadowedBy = new Int32Array(ordered.length).fill(-1)
  choices(ordered).forEach(({ shadowedBy: seen, choice }, position) => {
    if (seen !== undefined) shadowedBy[position] = seen
    else if (choice === undefined) b.always.add(b.lists, position)
    else for (const m of choice.triggers) b.add(m, position)
  })
  const union = new Set<FactName>()
  for (const r of [...ordered, policy.default]) for (const f of factsOf(r.cond)) union.add(f)
  const portLo = new Float64Array(ordered.length)
  const portHi = new Float64Array(ordered.length)
  const requires = new Uint8Array(ordered.length)
  ordered.forEach((r, i) => {
    const [lo, hi] = portHull(r.cond)
    portLo[i] = lo
    portHi[i] = hi
    requires[i] = requiresOf(r.cond)
  })
  const has = (f: Field) => b.used.has(f)
  const indexed = <I>(t: Tail, index: I): Indexed<I> => ({ ...t.tail(), index })
  return {
    policy,
    factsNeeded: FACTS.filter((f) => union.has(f)),
    ordered,
    shadowedBy,
    tests: new Array<Test | undefined>(ordered.length),
    outcomes: new Array<Outcome | undefined>(ordered.length),
    defaultOutcome: decide(policy.default),
    portLo,
    portHi,
    requires,
    lists: b.lists.build(),
    always: b.always.id,
    domain: has("dst.domain") ? indexed(b.domain, b.domain.ix.build()) : undefined,
    srcIp: has("src.ip") ? indexed(b.srcIp, b.srcIp.ix.build()) : undefined,
    dstIp: has("dst.ip") ? indexed(b.dstIp, b.dstIp.ix.build()) : undefined,
    srcPort: has("src.port") ? indexed(b.srcPort, b.srcPort.ix.build()) : undefined,
    dstPort: has("dst.port") ? indexed(b.dstPort, b.dstPort.ix.build()) : undefined,
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
    time: has("time") ? b.time.tail() : undefined,
  }
}
