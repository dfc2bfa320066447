/**
 * The request space of a policy condition: conditions as DNF over literals
 * (`field ∈ S` or `not field ∈ S`), and a per-field solver that finds a
 * concrete request making a conjunction of literals `true`.
 *
 * Details: in Kleene logic a DNF term is `true` exactly when every literal is
 * `true`, and a literal (negated or not) is `true` only when its field is
 * known. So a term fixes every field it mentions as known and the fields are
 * independent, except: a known `dst.domain` means a domain destination (then
 * `dst.ip` comes from a resolved-IP fact), and a domain destination that needs
 * `dst.ip`/`dst.country`/`dst.asn` must not be `.onion`.
 * Ports and addresses are solved exactly by interval arithmetic
 * (`Intervals.ts`); the other fields by trying candidate values built from the
 * literals' own values (domain labels, fresh names, window boundaries) and
 * checking them with the real matchers, so every answer is checked.
 *
 * Gotchas: a field solver is *complete* (its "no value" is a proof) for ports,
 * IPs, enums, countries, ASNs, groups, exact/suffix/subdomain domain patterns,
 * exact user names and time windows in a single time zone (a minimal feasible
 * point is always a boundary candidate), and for any field a positive literal
 * pins to at most 1,024 exact values. With globs, regexes, several time zones
 * or sets beyond 256 patterns an empty search is `unknown`, never `unsat`.
 * Large domain and user sets are matched through hash indexes of their exact,
 * suffix and subdomain patterns.
 */
import type { Cond, DomainPattern, Field, Matcher, Request, StringPattern } from "./Ir.ts"
import { solveIp, solvePort } from "./Intervals.ts"
import { evalMatcher, type RequestView, type Truth } from "./Reference.ts"
import { cidrContains, formatIp, type Ip, parseIp } from "./Ip.ts"
import { domainHasSuffix, domainPatternMatches, isOnion, localTime, normalizeDomain, stringPatternMatches, timeMatches } from "./Match.ts"

export interface Lit { readonly m: Matcher; readonly neg: boolean }
export type Term = ReadonlyArray<Lit>

/** At most this many DNF terms per condition; beyond, the analysis gives up on the condition. */
export const MAX_TERMS = 64

export type Dnf = { readonly ok: true; readonly terms: ReadonlyArray<Term> } | { readonly ok: false; readonly reason: string }

/** Negation normal form, then distribution. Kleene's De Morgan laws hold, so this keeps three-valued truth. */
export const toDnf = (cond: Cond, max = MAX_TERMS): Dnf => {
  const go = (c: Cond, neg: boolean): Array<Term> | undefined => {
    switch (c.k) {
      case "true": return neg ? [] : [[]]
      case "match": return [[{ m: c.m, neg }]]
      case "not": return go(c.c, !neg)
      case "and":
      case "or": {
        const product = (c.k === "and") !== neg
        let acc: Array<Term> = product ? [[]] : []
        for (const item of c.items) {
          const sub = go(item, neg)
          if (sub === undefined) return undefined
          if (product) {
            const next: Array<Term> = []
            for (const a of acc) for (const b of sub) next.push([...a, ...b])
            acc = next
          } else acc = [...acc, ...sub]
          if (acc.length > max) return undefined
        }
        return acc
      }
    }
  }
  const terms = go(cond, false)
  return terms === undefined ? { ok: false, reason: `the condition has more than ${max} alternatives once expanded` } : { ok: true, terms }
}

export const flip = (l: Lit): Lit => ({ m: l.m, neg: !l.neg })

// ---------------------------------------------------------------------------
// Per-field solving
// ---------------------------------------------------------------------------

export type FieldResult<V> = { readonly t: "sat"; readonly v: V } | { readonly t: "unsat" } | { readonly t: "unknown"; readonly reason: string }

/** What a solved term says about a request: the value of each field it mentions. */
export type Values = Map<Field, unknown>

/** Fields that every request has: a literal on them is `true` or `false`, never `unknown`. */
export const ALWAYS_KNOWN: ReadonlySet<Field> = new Set<Field>(["command", "dst.port"])

const NEEDS_IP_DESTINATION: ReadonlySet<Field> = new Set<Field>(["dst.ip", "dst.country", "dst.asn"])

/** Matchers with more patterns than this are matched through a hash index (large sets). */
const SMALL = 16

interface DomainIndex { readonly exact: Set<string>; readonly suffix: Set<string>; readonly sub: Set<string>; readonly other: ReadonlyArray<DomainPattern> }
const domainIndexes = new WeakMap<Matcher, DomainIndex>()
const stringIndexes = new WeakMap<Matcher, Set<string>>()

const stringIndex = (m: Extract<Matcher, { kind: "string" }>): Set<string> => {
  let ix = stringIndexes.get(m)
  if (ix === undefined) {
    ix = new Set(m.patterns.flatMap((p) => (p.t === "exact" ? [p.s] : [])))
    stringIndexes.set(m, ix)
  }
  return ix
}

const domainIndex = (m: Extract<Matcher, { kind: "domain" }>): DomainIndex => {
  let ix = domainIndexes.get(m)
  if (ix === undefined) {
    const next: DomainIndex = { exact: new Set(), suffix: new Set(), sub: new Set(), other: m.patterns.filter((p) => p.t === "glob" || p.t === "regex") }
    for (const p of m.patterns) if (p.t === "exact" || p.t === "suffix" || p.t === "sub") next[p.t].add(p.d)
    domainIndexes.set(m, next)
    ix = next
  }
  return ix
}

/** `domainPatternMatches` over all patterns; exact/suffix/sub patterns of a large set through hash sets of the name's parents. */
const domainHolds = (m: Extract<Matcher, { kind: "domain" }>, name: string): boolean => {
  if (m.patterns.length <= SMALL) return m.patterns.some((p) => domainPatternMatches(p, name))
  const ix = domainIndex(m)
  if (ix.exact.has(name) || ix.suffix.has(name)) return true
  for (let i = name.indexOf("."); i !== -1; i = name.indexOf(".", i + 1)) {
    const parent = name.slice(i + 1)
    if (ix.suffix.has(parent) || ix.sub.has(parent)) return true
  }
  return ix.other.some((p) => domainPatternMatches(p, name))
}

/** Does matcher `m` hold for the known value `v` of its field? */
export const holds = (m: Matcher, v: unknown): boolean => {
  switch (m.kind) {
    case "port": return m.ranges.some(([lo, hi]) => (v as number) >= lo && (v as number) <= hi)
    case "ip": return m.cidrs.some((c) => cidrContains(c, v as Ip))
    case "domain": return domainHolds(m, v as string)
    case "string": return m.patterns.length > SMALL ? stringIndex(m).has(v as string) || m.patterns.some((p) => p.t !== "exact" && stringPatternMatches(p, v as string)) : m.patterns.some((p) => stringPatternMatches(p, v as string))
    case "group": return (v as ReadonlyArray<string>).some((g) => m.values.includes(g))
    case "enum": return m.values.includes(v as string)
    case "country": return m.values.includes((v as string).toUpperCase())
    case "asn": return m.values.includes(v as number)
    case "time": return timeMatches(m.days, m.windows, m.tz, v as number)
    case "plugin": return m.values.includes(v as string)
  }
}

const litHolds = (l: Lit, v: unknown): boolean => holds(l.m, v) !== l.neg

/**
 * Three-valued truth of `c` on a request (`missing: "unknown"`): the reference
 * semantics (`evalCond`), with large domain and user sets matched through the
 * indexes above. Used to filter; every reported witness is still checked with
 * `evaluateReference`.
 */
export const truth = (c: Cond, v: RequestView): Truth => {
  switch (c.k) {
    case "true": return "true"
    case "match": {
      const m = c.m
      if (m.kind === "domain" && m.patterns.length > SMALL) return v.domain === undefined ? "unknown" : domainHolds(m, v.domain) ? "true" : "false"
      if (m.kind === "string" && m.patterns.length > SMALL) return v.req.user === undefined ? "unknown" : holds(m, v.req.user) ? "true" : "false"
      const x = evalMatcher(m, v)
      return typeof x === "string" ? x : "unknown"
    }
    case "not": {
      const x = truth(c.c, v)
      return x === "true" ? "false" : x === "false" ? "true" : "unknown"
    }
    case "and": {
      let unknown = false
      for (const item of c.items) {
        const x = truth(item, v)
        if (x === "false") return "false"
        if (x === "unknown") unknown = true
      }
      return unknown ? "unknown" : "true"
    }
    case "or": {
      let unknown = false
      for (const item of c.items) {
        const x = truth(item, v)
        if (x === "true") return "true"
        if (x === "unknown") unknown = true
      }
      return unknown ? "unknown" : "false"
    }
  }
}

const search = <V>(cands: Iterable<V>, lits: ReadonlyArray<Lit>, complete: boolean, what: string, ok: (v: V) => boolean = () => true): FieldResult<V> => {
  for (const v of cands) if (ok(v) && lits.every((l) => litHolds(l, v))) return { t: "sat", v }
  return complete ? { t: "unsat" } : { t: "unknown", reason: `no ${what} found for its patterns (globs, regexes, very large sets and several time zones are searched by sampling)` }
}

const of = <K extends Matcher["kind"]>(lits: ReadonlyArray<Lit>, kind: K): Array<Extract<Matcher, { kind: K }>> =>
  lits.map((l) => l.m).filter((m): m is Extract<Matcher, { kind: K }> => m.kind === kind)

const freshLabel = (taken: ReadonlySet<string>, prefix: string): string => {
  for (let i = 0; ; i++) if (!taken.has(`${prefix}${i}`)) return `${prefix}${i}`
}

/** A few strings a regex plausibly matches: the literal text with common wildcards filled in. */
const regexSamples = (r: string): Array<string> => {
  const body = r.replace(/^\^/, "").replace(/\$$/, "")
  const out: Array<string> = []
  for (const fill of ["x", ""]) {
    const s = body
      .replace(/\(\?:|\(|\)/g, "")
      .replace(/\[[^\]]*\][+*]?|\\w[+*]?|\\d[+*]?|\.[+*]/g, (t) => (t.startsWith("\\d") ? "1" : fill))
      .replace(/\\\./g, ".")
      .replace(/[?]/g, "")
    if (/^[A-Za-z0-9._-]+$/.test(s)) out.push(s)
  }
  return out
}

/** Positive patterns turned into candidates per field solve; beyond, the search is a sample (never a proof). */
const MAX_PATTERNS = 256
/** Negative patterns sampled for candidates (not needed for completeness, see `domainCandidates`). */
const MAX_NEGATIVE_SAMPLES = 32

/** Is `name` the domain of some exact/suffix/sub pattern of a literal? (Such a name is no "fresh" name.) */
const isPatternDomain = (lits: ReadonlyArray<Lit>, name: string): boolean =>
  lits.some((l) => {
    if (l.m.kind !== "domain") return false
    if (l.m.patterns.length <= SMALL) return l.m.patterns.some((p) => p.t !== "glob" && p.t !== "regex" && p.d === name)
    const ix = domainIndex(l.m)
    return ix.exact.has(name) || ix.suffix.has(name) || ix.sub.has(name)
  })

/**
 * Candidate names. Complete without globs and regexes: for a feasible name
 * `n`, take the longest positive pattern domain `d` with `n` at or under it;
 * `d` itself or `fresh.d` (a label no pattern uses there) has the same
 * membership in every literal as `n` (a negative pattern matching `fresh.d`
 * sits at `d` or above and would match `n` too). So positive patterns, plus a
 * fresh name when there are none, suffice, whatever the size of the negative
 * sets. `capped`: not every positive pattern was used.
 */
const domainCandidates = (lits: ReadonlyArray<Lit>): { readonly cands: Array<string>; readonly capped: boolean } => {
  const positive = lits.filter((l) => !l.neg).flatMap((l) => (l.m.kind === "domain" ? l.m.patterns : []))
  const used = positive.slice(0, MAX_PATTERNS)
  const bases = used.flatMap((p) => (p.t === "suffix" || p.t === "sub" ? [p.d] : []))
  // A label that makes no pattern domain under any base, nor alone or doubled (bounded: each pattern rules out one label).
  let fresh: string | undefined
  for (let i = 0; i < 100_000 && fresh === undefined; i++) {
    const x = `x${i}`
    if (!isPatternDomain(lits, x) && !isPatternDomain(lits, `${x}.${x}`) && bases.every((b) => !isPatternDomain(lits, `${x}.${b}`))) fresh = x
  }
  if (fresh === undefined) return { cands: ["example.com"], capped: true }
  const cands: Array<string> = []
  const fromPattern = (p: DomainPattern): void => {
    if (p.t === "exact") cands.push(p.d)
    else if (p.t === "suffix") cands.push(p.d, `www.${p.d}`, `${fresh}.${p.d}`)
    else if (p.t === "sub") cands.push(`www.${p.d}`, `${fresh}.${p.d}`)
    else if (p.t === "glob") cands.push(p.g.replaceAll("*", "x"), p.g.replaceAll("*", ""), p.g.replaceAll("*", `${fresh}.`))
    else cands.push(...regexSamples(p.r))
  }
  for (const p of used) fromPattern(p)
  cands.push("example.com", "example.net")
  const negative = lits.filter((l) => l.neg).flatMap((l) => (l.m.kind === "domain" ? l.m.patterns.slice(0, MAX_NEGATIVE_SAMPLES) : []))
  for (const p of negative.slice(0, MAX_NEGATIVE_SAMPLES)) fromPattern(p)
  cands.push(`${fresh}.${fresh}`)
  return { cands, capped: positive.length > MAX_PATTERNS }
}

/** Candidate user names; complete when every pattern is exact (a positive exact set is handled by `finiteValues`). */
const stringCandidates = (lits: ReadonlyArray<Lit>): { readonly cands: Array<string>; readonly capped: boolean } => {
  const positive = lits.filter((l) => !l.neg).flatMap((l) => (l.m.kind === "string" ? l.m.patterns : []))
  const negative = lits.filter((l) => l.neg).flatMap((l) => (l.m.kind === "string" ? l.m.patterns.slice(0, MAX_NEGATIVE_SAMPLES) : []))
  const cands: Array<string> = []
  const fromPattern = (p: StringPattern): void => {
    if (p.t === "exact") cands.push(p.s)
    else if (p.t === "glob") cands.push(p.g.replaceAll("*", "x"), p.g.replaceAll("*", ""))
    else cands.push(...regexSamples(p.r))
  }
  for (const p of positive.slice(0, MAX_PATTERNS)) fromPattern(p)
  cands.push("alice", "bob", "carol")
  for (const p of negative.slice(0, MAX_NEGATIVE_SAMPLES)) fromPattern(p)
  // A name no literal lists (checked against whole sets; a glob like `*` may match them all).
  let fresh = false
  for (let i = 0; i < 1000 && !fresh; i++) {
    const name = `user${i}`
    if (!lits.some((l) => l.m.kind === "string" && holds(l.m, name))) { cands.push(name); fresh = true }
  }
  return { cands, capped: !fresh || positive.length > MAX_PATTERNS }
}

const ENUM_DOMAINS: Readonly<Record<string, ReadonlyArray<string>>> = {
  command: ["connect", "bind", "udp"],
  protocol: ["socks5", "socks4", "http"],
  auth: ["password", "none"],
}

function* enumCandidates(field: Field, lits: ReadonlyArray<Lit>): Generator<string> {
  const mentioned = new Set<string>()
  for (const m of of(lits, "enum")) for (const v of m.values) mentioned.add(v)
  for (const l of lits) if (!l.neg && l.m.kind === "enum") yield* l.m.values
  const domain = ENUM_DOMAINS[field]
  if (domain !== undefined) yield* domain
  else { yield* mentioned; yield freshLabel(mentioned, "other") }
}

const COMMON_COUNTRIES = ["US", "DE", "NL", "FR", "GB", "JP", "CA", "SE", "CH", "BR", "IN", "AU"]
function* countryCandidates(lits: ReadonlyArray<Lit>): Generator<string> {
  for (const m of of(lits, "country")) yield* m.values
  yield* COMMON_COUNTRIES
  const A = 65
  for (let a = 0; a < 26; a++) for (let b = 0; b < 26; b++) yield String.fromCharCode(A + a, A + b)
}

function* asnCandidates(lits: ReadonlyArray<Lit>): Generator<number> {
  let max = 64500
  for (const m of of(lits, "asn")) for (const v of m.values) { yield v; max = Math.max(max, v) }
  yield 64500
  yield max + 1
}

/** Sunday 2026-01-04 00:00 UTC: the week time witnesses are taken from. */
const WEEK_START = Date.UTC(2026, 0, 4)
const WEEK = 7 * 1440

/** The epoch milliseconds of weekday `day`, minute `minute`, in `tz`, in the reference week (undefined in a DST gap). */
export const localToEpoch = (tz: string, day: number, minute: number): number | undefined => {
  const want = day * 1440 + minute
  let guess = WEEK_START + want * 60000
  for (let i = 0; i < 4; i++) {
    const lt = localTime(guess, tz)
    let delta = lt.day * 1440 + lt.minute - want
    if (delta === 0) return guess
    if (delta > WEEK / 2) delta -= WEEK
    if (delta < -WEEK / 2) delta += WEEK
    guess -= delta * 60000
  }
  return undefined
}

function* timeCandidates(lits: ReadonlyArray<Lit>): Generator<number> {
  const ms = of(lits, "time")
  const tz = ms[0]?.tz ?? "UTC"
  const minutes = new Set<number>([720, 0])
  for (const m of ms) for (const [s, e] of m.windows) { minutes.add(s % 1440); minutes.add(e % 1440); minutes.add((s + 1439) % 1440); minutes.add((e + 1439) % 1440) }
  const tzs = [...new Set(ms.map((m) => m.tz))]
  for (const zone of tzs.length === 0 ? [tz] : tzs) {
    for (const day of [1, 2, 3, 4, 5, 6, 0]) {
      for (const minute of minutes) {
        const t = localToEpoch(zone, day, minute)
        if (t !== undefined) yield t
      }
    }
  }
}

function* groupCandidates(lits: ReadonlyArray<Lit>): Generator<ReadonlyArray<string>> {
  const excluded = new Set<string>()
  for (const l of lits) if (l.neg && l.m.kind === "group") for (const v of l.m.values) excluded.add(v)
  const picks: Array<string> = []
  for (const l of lits) {
    if (l.neg || l.m.kind !== "group") continue
    const pick = l.m.values.find((v) => !excluded.has(v))
    if (pick === undefined) return
    if (!picks.includes(pick)) picks.push(pick)
  }
  yield picks
}

/** Finite sets up to this size are searched in full. */
const MAX_FINITE = 1024

/**
 * The exact values of the smallest positive literal that lists only exact
 * values: the value must be one of them, so trying them all is a proof.
 */
const finiteValues = (lits: ReadonlyArray<Lit>): ReadonlyArray<string> | undefined => {
  let best: ReadonlyArray<string> | undefined
  for (const l of lits) {
    if (l.neg) continue
    const m = l.m
    const vs = m.kind === "domain" && m.patterns.every((p) => p.t === "exact") ? m.patterns.map((p) => (p.t === "exact" ? p.d : ""))
      : m.kind === "string" && m.patterns.every((p) => p.t === "exact") ? m.patterns.map((p) => (p.t === "exact" ? p.s : ""))
      : undefined
    if (vs !== undefined && (best === undefined || vs.length < best.length)) best = vs
  }
  return best !== undefined && best.length <= MAX_FINITE ? best : undefined
}

const isDomainName = (s: string): boolean => s.length > 0 && !s.startsWith(".") && !s.endsWith(".") && !s.includes("..") && parseIp(s) === undefined

/**
 * A value for `field` making every literal `true`. `nonOnion`: the destination
 * must not be `.onion` (the term also needs an IP-derived fact).
 */
export const solveField = (field: Field, lits: ReadonlyArray<Lit>, nonOnion: boolean): FieldResult<unknown> => {
  switch (field) {
    case "src.port": case "dst.port": {
      const v = solvePort(field, lits)
      return v === undefined ? { t: "unsat" } : { t: "sat", v }
    }
    case "src.ip": case "dst.ip": {
      const v = solveIp(field, lits)
      return v === undefined ? { t: "unsat" } : { t: "sat", v }
    }
    case "dst.domain": {
      const ok = (d: string): boolean => isDomainName(d) && !(nonOnion && isOnion(d))
      const finite = finiteValues(lits)
      if (finite !== undefined) return search(finite.map(normalizeDomain), lits, true, "domain", ok)
      const { cands, capped } = domainCandidates(lits)
      const complete = !capped && of(lits, "domain").every((m) => m.patterns.every((p) => p.t !== "glob" && p.t !== "regex"))
      return search(cands.map(normalizeDomain), lits, complete, "domain", ok)
    }
    case "user": {
      const finite = finiteValues(lits)
      if (finite !== undefined) return search(finite, lits, true, "user name")
      const { cands, capped } = stringCandidates(lits)
      return search(cands, lits, !capped && of(lits, "string").every((m) => m.patterns.every((p) => p.t === "exact")), "user name")
    }
    case "group": return search(groupCandidates(lits), lits, true, "group")
    case "listener": case "protocol": case "command": case "auth":
      return search(enumCandidates(field, lits), lits, true, field)
    case "src.country": case "dst.country": return search(countryCandidates(lits), lits, true, "country")
    case "src.asn": case "dst.asn": return search(asnCandidates(lits), lits, true, "ASN")
    case "time": {
      const complete = new Set(of(lits, "time").map((m) => m.tz)).size <= 1
      return search(timeCandidates(lits), lits, complete, "time")
    }
    // All plugin fields share the field `plugin`: never claim a proof about them.
    case "plugin": return { t: "unknown", reason: "plugin fields are not analysed" }
  }
}

const size = (m: Matcher): number =>
  m.kind === "port" ? m.ranges.length : m.kind === "ip" ? m.cidrs.length : m.kind === "domain" || m.kind === "string" ? m.patterns.length : m.kind === "time" ? m.windows.length : m.values.length

/** Can matchers `a` and `b` (on one field) both hold? Exact for ports, addresses, enums, countries, ASNs; `true` when unsure. */
export const mayIntersect = (a: Matcher, b: Matcher): boolean => {
  if (size(a) * size(b) > 4096) return true
  if (a.kind === "port" && b.kind === "port") return a.ranges.some(([x, y]) => b.ranges.some(([u, v]) => x <= v && u <= y))
  if (a.kind === "ip" && b.kind === "ip") return a.cidrs.some((p) => b.cidrs.some((q) => cidrContains(p, { family: q.family, value: q.addr }) || cidrContains(q, { family: p.family, value: p.addr })))
  if ((a.kind === "enum" && b.kind === "enum") || (a.kind === "country" && b.kind === "country")) return a.values.some((v) => (b.values as ReadonlyArray<string>).includes(v))
  if (a.kind === "asn" && b.kind === "asn") return a.values.some((v) => b.values.includes(v))
  if (a.kind === "domain" && b.kind === "domain") return a.patterns.some((p) => b.patterns.some((q) => domainsMayMeet(p, q)))
  if (a.kind === "string" && b.kind === "string") return a.patterns.some((p) => b.patterns.some((q) => p.t !== "exact" || q.t !== "exact" || p.s === q.s))
  return true
}

const domainsMayMeet = (p: DomainPattern, q: DomainPattern): boolean => {
  if (p.t === "glob" || p.t === "regex" || q.t === "glob" || q.t === "regex") return true
  if (p.t === "exact" && q.t === "exact") return p.d === q.d
  if (p.t === "exact") return domainPatternMatches(q, p.d)
  if (q.t === "exact") return domainPatternMatches(p, q.d)
  // Two suffix/sub patterns meet when one domain is under the other.
  return domainHasSuffix(p.d, q.d) || domainHasSuffix(q.d, p.d)
}

/** Cheap test on the positive literals of fields both terms test: can the terms hold together? (`true` when unsure.) */
export const mayMeet = (a: Term, b: Term): boolean => {
  for (const x of a) {
    if (x.neg) continue
    for (const y of b) if (!y.neg && y.m.field === x.m.field && !mayIntersect(x.m, y.m)) return false
  }
  return true
}

/** The literals of a term, grouped by field (in first-mention order). */
export const byField = (term: Term): Map<Field, Array<Lit>> => {
  const out = new Map<Field, Array<Lit>>()
  for (const l of term) {
    const list = out.get(l.m.field)
    if (list === undefined) out.set(l.m.field, [l])
    else list.push(l)
  }
  return out
}

const needsNonOnion = (fields: ReadonlyMap<Field, unknown>): boolean => [...NEEDS_IP_DESTINATION].some((f) => fields.has(f))

export type TermResult =
  | { readonly t: "sat"; readonly values: Values; readonly request: Request }
  | { readonly t: "unsat"; readonly field: Field }
  | { readonly t: "unknown"; readonly reason: string }

/** Finds a request for which every literal of `term` is `true`; the other fields are left unknown where a request allows it. */
export const solveTerm = (term: Term): TermResult => {
  const fields = byField(term)
  const nonOnion = needsNonOnion(fields)
  const values: Values = new Map()
  let unknown: string | undefined
  for (const [field, lits] of fields) {
    const r = solveField(field, lits, nonOnion)
    if (r.t === "unsat") return { t: "unsat", field }
    if (r.t === "unknown") unknown ??= `\`${field}\`: ${r.reason}`
    else values.set(field, r.v)
  }
  if (unknown !== undefined) return { t: "unknown", reason: unknown }
  return { t: "sat", values, request: buildRequest(values) }
}

/** Does `term` make the literal `l` `true` whenever it is `true` itself? Sound: `false` when unsure. */
export const implies = (term: Term, fields: ReadonlyMap<Field, ReadonlyArray<Lit>>, l: Lit): boolean => {
  const field = l.m.field
  const own = fields.get(field)
  if (own === undefined && !ALWAYS_KNOWN.has(field)) return false
  if (own !== undefined && own.some((x) => x.m === l.m && x.neg === l.neg)) return true
  return solveField(field, [...(own ?? []), flip(l)], needsNonOnion(fields)).t === "unsat"
}

/** The request with exactly the solved fields known (plus the ones every request has), in the form the test syntax can write. */
export const buildRequest = (values: Values): Request => {
  const get = <T>(f: Field): T | undefined => values.get(f) as T | undefined
  const domain = get<string>("dst.domain")
  const dstIp = get<Ip>("dst.ip")
  const user = get<string>("user") ?? (values.has("group") ? "alice" : undefined)
  const facts: Record<string, string | number> = {}
  if (domain !== undefined && dstIp !== undefined) facts["dst.ip"] = formatIp(dstIp)
  for (const f of ["dst.country", "src.country", "dst.asn", "src.asn"] as const) {
    const v = get<string | number>(f)
    if (v !== undefined) facts[f] = v
  }
  const srcPort = get<number>("src.port")
  // The test syntax writes a source port only with an address: give one.
  const srcIp = get<Ip>("src.ip") ?? (srcPort !== undefined ? parseIp("10.0.0.1") : undefined)
  const groups = get<ReadonlyArray<string>>("group")
  const listener = get<string>("listener")
  const protocol = get<string>("protocol")
  const time = get<number>("time")
  return {
    command: (get<string>("command") ?? "connect") as Request["command"],
    dstHost: domain ?? (dstIp !== undefined ? formatIp(dstIp) : "example.com"),
    dstPort: get<number>("dst.port") ?? 443,
    ...(srcIp !== undefined ? { srcIp: formatIp(srcIp) } : {}),
    ...(srcPort !== undefined ? { srcPort } : {}),
    ...(user !== undefined ? { user } : {}),
    ...(groups !== undefined ? { groups } : {}),
    auth: get<string>("auth") ?? (user !== undefined ? "password" : "none"),
    ...(listener !== undefined ? { listener } : {}),
    ...(protocol !== undefined ? { protocol } : {}),
    ...(time !== undefined ? { time } : {}),
    ...(Object.keys(facts).length > 0 ? { facts } : {}),
  }
}
