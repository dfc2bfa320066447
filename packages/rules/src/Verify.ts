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
import { cachedRegex, globRegex, localTime } from "./Match.ts"

export const F = 0
export const T = 1
export const U = 2
export const PENDING = 3
export const FACTS: ReadonlyArray<FactName> = ["dst.ip", "dst.country", "dst.asn", "src.country", "src.asn"]

/** A request, parsed once per evaluation. */
export interface State {
  readonly req: Request
  readonly need: boolean
  /** Normalised destination name; undefined when the destination is an IP literal. */
  readonly domain: string | undefined
  readonly onion: boolean
  /** The destination address (literal, else the `dst.ip` fact); `fam` 0 when unknown. */
  readonly dst: IpBox
  /** The `dst.ip` fact is needed: a name that is not `.onion`, no fact yet, `need` mode. */
  readonly dstPending: boolean
  readonly src: IpBox
  /** Cache of the local time of `req.time` in one zone. */
  tz: string | undefined
  day: number
  minute: number
}

export type Test = (s: State) => number

const regexOf = (p: { t: "glob"; g: string } | { t: "regex"; r: string }): RegExp => (p.t === "glob" ? globRegex(p.g) : cachedRegex(p.r))

const domainTest = (patterns: ReadonlyArray<DomainPattern>): ((name: string) => boolean) => {
  const exact = new Set<string>()
  const suffix = new Set<string>()
  const sub = new Set<string>()
  const res: RegExp[] = []
  for (const p of patterns) {
    if (p.t === "exact") exact.add(p.d)
    else if (p.t === "suffix") suffix.add(p.d)
    else if (p.t === "sub") sub.add(p.d)
    else res.push(regexOf(p))
  }
  const parents = suffix.size + sub.size > 0
  return (name) => {
    if (exact.has(name) || suffix.has(name)) return true
    if (parents) {
      for (let i = name.indexOf("."); i !== -1; i = name.indexOf(".", i + 1)) {
        const rest = name.slice(i + 1)
        if (suffix.has(rest) || sub.has(rest)) return true
      }
    }
    for (const re of res) if (re.test(name)) return true
    return false
  }
}

const stringTest = (patterns: ReadonlyArray<StringPattern>): ((s: string) => boolean) => {
  const exact = new Set<string>()
  const res: RegExp[] = []
  for (const p of patterns) {
    if (p.t === "exact") exact.add(p.s)
    else res.push(regexOf(p))
  }
  return (s) => {
    if (exact.has(s)) return true
    for (const re of res) if (re.test(s)) return true
    return false
  }
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
      const r = Float64Array.from(m.ranges.flat())
      const n = r.length
      const dst = m.field === "dst.port"
      return (s) => {
        const p = dst ? s.req.dstPort : s.req.srcPort
        if (p === undefined) return U
        for (let i = 0; i < n; i += 2) if (p >= r[i] && p <= r[i + 1]) return T
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
      const set = new Set(m.values)
      return (s) => {
        if (s.req.user === undefined) return U
        const groups = s.req.groups
        if (groups !== undefined) for (const g of groups) if (set.has(g)) return T
        return F
      }
    }
    case "enum": {
      const set = new Set<unknown>(m.values)
      const field = m.field
      return (s) => {
        const v = field === "command" ? s.req.command : s.req[field]
        return v === undefined ? U : set.has(v) ? T : F
      }
    }
    case "country":
    case "asn": {
      const set = new Set<unknown>(m.values)
      const field = m.field
      const dst = field === "dst.country" || field === "dst.asn"
      const pend = factCode(field)
      const country = m.kind === "country"
      return (s) => {
        if (dst && s.onion) return U
        const f = s.req.facts?.[field]
        if (f === undefined) return s.need ? pend : U
        if (f === null) return U
        return set.has(country ? (f as string).toUpperCase() : f) ? T : F
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
