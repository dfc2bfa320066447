/**
 * Compiles a rule's condition into a closure that checks it, three-valued, for
 * one request: what the evaluator runs on each candidate rule.
 *
 * Details: a closure returns a small integer: `F` (0), `T` (1), `U` (2,
 * unknown), or `PENDING + i` for "costly fact `FACTS[i]` not looked up yet"
 * (only in `missing: "need"` mode). The logic is the reference's, case by case
 * (`Reference.evalCond`/`evalMatcher`): Kleene `and`/`or`, `not unknown` is
 * unknown, a pending operand wins over unknown but loses to a deciding one, and
 * the first pending operand in order is the one reported. Leaves use
 * precomputed sets: hash sets for names and enums, coalesced ranges for IPs,
 * label-suffix lookups for domains.
 */
import { type IpBox } from "./FastIp.ts"
import type { Cond, DomainPattern, FactName, Matcher, Request, StringPattern } from "./Ir.ts"
import { hasIp, ipSet } from "./IpIndex.ts"
import { cachedRegex, domainHasSuffix, globRegex, localTime } from "./Match.ts"

export const F = 0
export const T = 1
export const U = 2
export const PENDING = 3
export const FACTS: ReadonlyArray<FactName> = ["dst.ip", "dst.country", "dst.asn", "src.country", "src.asn"]

/** A request, parsed once per evaluation (the evaluator reuses one object). */
export interface State {
  req: Request
  need: boolean
  /** Normalised destination name; undefined when the destination is an IP literal. */
  domain: string | undefined
  onion: boolean
  /** The destination address (literal, else the `dst.ip` fact); `fam` 0 when unknown. */
  readonly dst: IpBox
  /** The `dst.ip` fact is needed: a name that is not `.onion`, no fact yet, `need` mode. */
  dstPending: boolean
  readonly src: IpBox
  /** Cache of the local time of `req.time` in one zone. */
  tz: string | undefined
  day: number
  minute: number
}

export type Test = (s: State) => number

/** Up to this many values, a matcher scans its IR array; above, it builds a hash set. */
const SMALL = 4

const regexOf = (p: { t: "glob"; g: string } | { t: "regex"; r: string }): RegExp => (p.t === "glob" ? globRegex(p.g) : cachedRegex(p.r))

const domainTest = (patterns: ReadonlyArray<DomainPattern>): ((name: string) => boolean) => {
  const res = patterns.map((p) => (p.t === "glob" || p.t === "regex" ? regexOf(p) : undefined))
  if (patterns.length <= SMALL) {
    const n = patterns.length
    return (name) => {
      for (let i = 0; i < n; i++) {
        const p = patterns[i]
        switch (p.t) {
          case "exact": if (name === p.d) return true; break
          case "suffix": if (domainHasSuffix(name, p.d)) return true; break
          case "sub": if (name !== p.d && domainHasSuffix(name, p.d)) return true; break
          default: if (res[i]!.test(name)) return true
        }
      }
      return false
    }
  }
  const exact = new Set<string>()
  const suffix = new Set<string>()
  const sub = new Set<string>()
  for (const p of patterns) {
    if (p.t === "exact") exact.add(p.d)
    else if (p.t === "suffix") suffix.add(p.d)
    else if (p.t === "sub") sub.add(p.d)
  }
  const regexes = res.filter((r) => r !== undefined)
  const parents = suffix.size + sub.size > 0
  return (name) => {
    if (exact.has(name) || suffix.has(name)) return true
    if (parents) {
      for (let i = name.indexOf("."); i !== -1; i = name.indexOf(".", i + 1)) {
        const rest = name.slice(i + 1)
        if (suffix.has(rest) || sub.has(rest)) return true
      }
    }
    for (const re of regexes) if (re.test(name)) return true
    return false
  }
}

const stringTest = (patterns: ReadonlyArray<StringPattern>): ((s: string) => boolean) => {
  const exact = patterns.length <= SMALL ? undefined : new Set(patterns.flatMap((p) => (p.t === "exact" ? [p.s] : [])))
  const res = patterns.map((p) => (p.t === "exact" ? undefined : regexOf(p)))
  const n = patterns.length
  return (s) => {
    if (exact !== undefined && exact.has(s)) return true
    for (let i = 0; i < n; i++) {
      const p = patterns[i]
      if (p.t === "exact" ? exact === undefined && p.s === s : res[i]!.test(s)) return true
    }
    return false
  }
}

/** Membership in a list of values: the IR array itself when small. */
const member = <A>(values: ReadonlyArray<A>): ((v: A) => boolean) => {
  if (values.length <= SMALL) return (v) => values.includes(v)
  const set = new Set(values)
  return (v) => set.has(v)
}

const factCode = (f: FactName): number => PENDING + FACTS.indexOf(f)

const leaf = (m: Matcher): Test => {
  switch (m.kind) {
    case "ip": {
      const set = ipSet(m.cidrs)
      if (m.field === "src.ip") return (s) => (s.src.fam === 0 ? U : hasIp(set, s.src) ? T : F)
      const pend = factCode("dst.ip")
      return (s) => (s.dst.fam !== 0 ? (hasIp(set, s.dst) ? T : F) : s.dstPending ? pend : U)
    }
    case "port": {
      const r = m.ranges
      const n = r.length
      const dst = m.field === "dst.port"
      return (s) => {
        const p = dst ? s.req.dstPort : s.req.srcPort
        if (p === undefined) return U
        for (let i = 0; i < n; i++) if (p >= r[i][0] && p <= r[i][1]) return T
        return F
      }
    }
    case "domain": {
      const test = domainTest(m.patterns)
      return (s) => (s.domain === undefined ? U : test(s.domain) ? T : F)
    }
    case "string": {
      const test = stringTest(m.patterns)
      return (s) => (s.req.user === undefined ? U : test(s.req.user) ? T : F)
    }
    case "group": {
      const has = member(m.values)
      return (s) => {
        if (s.req.user === undefined) return U
        const groups = s.req.groups
        if (groups !== undefined) for (let i = 0; i < groups.length; i++) if (has(groups[i])) return T
        return F
      }
    }
    case "enum": {
      const has = member<string>(m.values)
      const field = m.field
      return (s) => {
        const v = s.req[field]
        return v === undefined ? U : has(v) ? T : F
      }
    }
    case "country":
    case "asn": {
      const has = member<unknown>(m.values)
      const field = m.field
      const dst = field === "dst.country" || field === "dst.asn"
      const pend = factCode(field)
      const country = m.kind === "country"
      return (s) => {
        if (dst && s.onion) return U
        const f = s.req.facts?.[field]
        if (f === undefined) return s.need ? pend : U
        if (f === null) return U
        return has(country ? (f as string).toUpperCase() : f) ? T : F
      }
    }
    case "time": {
      const { days, windows, tz } = m
      return (s) => {
        const t = s.req.time
        if (t === undefined) return U
        if (s.tz !== tz) {
          const lt = localTime(t, tz)
          s.tz = tz
          s.day = lt.day
          s.minute = lt.minute
        }
        const day = s.day
        const minute = s.minute
        const yesterday = (day + 6) % 7
        for (const [start, end] of windows) {
          if (start <= end) {
            if ((days & (1 << day)) !== 0 && minute >= start && minute < end) return T
          } else {
            if ((days & (1 << day)) !== 0 && minute >= start) return T
            if ((days & (1 << yesterday)) !== 0 && minute < end) return T
          }
        }
        return F
      }
    }
    case "plugin": {
      const has = member<string>(m.values)
      const name = m.name
      return (s) => {
        const v = s.req.plugin?.[name]
        return v === undefined || v === null ? U : has(v) ? T : F
      }
    }
  }
}

export const compileCond = (c: Cond): Test => {
  switch (c.k) {
    case "true": return () => T
    case "match": return leaf(c.m)
    case "not": {
      const inner = compileCond(c.c)
      return (s) => {
        const x = inner(s)
        return x === T ? F : x === F ? T : x
      }
    }
    case "and":
    case "or": {
      const items = c.items.map(compileCond)
      const n = items.length
      const stop = c.k === "and" ? F : T
      const all = c.k === "and" ? T : F
      if (n === 1) return items[0]
      return (s) => {
        let pending = 0
        let unknown = false
        for (let i = 0; i < n; i++) {
          const x = items[i](s)
          if (x === stop) return stop
          if (x === U) unknown = true
          else if (x >= PENDING && pending === 0) pending = x
        }
        return pending !== 0 ? pending : unknown ? U : all
      }
    }
  }
}
