/**
 * Structural hashing and equality of conditions, for the compiler's
 * "same condition as an earlier rule" check.
 *
 * Details: `hashCond` is FNV-1a over the condition's structure and values
 * (no strings built, so it stays cheap on 100k-rule policies); equal
 * conditions hash equally, and `sameCond` settles collisions. Spans and set
 * names are ignored: they do not change what a condition matches.
 */
import type { Cond, Matcher } from "./Ir.ts"

let h = 0

const str = (s: string): void => {
  h = Math.imul(h ^ s.length, 16777619)
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619)
}
const num = (n: number): void => {
  h = Math.imul(h ^ (n | 0), 16777619)
  if (n !== (n | 0)) h = Math.imul(h ^ Math.floor(n / 4294967296), 16777619)
}

const matcher = (m: Matcher): void => {
  str(m.field)
  switch (m.kind) {
    case "domain": for (const p of m.patterns) { str(p.t); str(p.t === "glob" ? p.g : p.t === "regex" ? p.r : p.d) } break
    case "string": for (const p of m.patterns) { str(p.t); str(p.t === "glob" ? p.g : p.t === "regex" ? p.r : p.s) } break
    case "ip":
      for (const c of m.cidrs) {
        num(c.family)
        num(c.prefix)
        if (c.family === 4) num(Number(c.addr))
        else for (let k = 0n; k < 128n; k += 32n) num(Number((c.addr >> k) & 0xffffffffn))
      }
      break
    case "port": for (const [lo, hi] of m.ranges) { num(lo); num(hi) } break
    case "group": case "enum": case "country": for (const v of m.values) str(v); break
    case "asn": for (const v of m.values) num(v); break
    case "time": num(m.days); str(m.tz); for (const [a, b] of m.windows) { num(a); num(b) } break
    case "plugin": str(m.name); for (const v of m.values) str(v); break
  }
  num(-1)
}

const cond = (c: Cond): void => {
  str(c.k)
  switch (c.k) {
    case "not": cond(c.c); break
    case "and": case "or": for (const item of c.items) cond(item); num(c.items.length); break
    case "match": matcher(c.m); break
    case "true": break
  }
}

export const hashCond = (c: Cond): number => {
  h = 0x811c9dc5
  cond(c)
  return h >>> 0
}

const sameArray = <A>(a: ReadonlyArray<A>, b: ReadonlyArray<A>, eq: (x: A, y: A) => boolean): boolean => {
  if (a.length !== b.length) return false
  for (let i = 0; i < a.length; i++) if (!eq(a[i], b[i])) return false
  return true
}
const same = <A>(x: A, y: A): boolean => x === y
const samePair = (x: readonly [number, number], y: readonly [number, number]): boolean => x[0] === y[0] && x[1] === y[1]

const sameMatcher = (a: Matcher, b: Matcher): boolean => {
  if (a.kind !== b.kind || a.field !== b.field) return false
  switch (a.kind) {
    case "domain": return sameArray(a.patterns, (b as typeof a).patterns, (x, y) => x.t === y.t && (x.t === "glob" ? x.g === (y as typeof x).g : x.t === "regex" ? x.r === (y as typeof x).r : x.d === (y as typeof x).d))
    case "string": return sameArray(a.patterns, (b as typeof a).patterns, (x, y) => x.t === y.t && (x.t === "glob" ? x.g === (y as typeof x).g : x.t === "regex" ? x.r === (y as typeof x).r : x.s === (y as typeof x).s))
    case "ip": return sameArray(a.cidrs, (b as typeof a).cidrs, (x, y) => x.family === y.family && x.prefix === y.prefix && x.addr === y.addr)
    case "port": return sameArray(a.ranges, (b as typeof a).ranges, samePair)
    case "group": case "enum": case "country": return sameArray<string>(a.values, (b as typeof a).values, same)
    case "asn": return sameArray(a.values, (b as typeof a).values, same)
    case "time": {
      const t = b as typeof a
      return a.days === t.days && a.tz === t.tz && sameArray(a.windows, t.windows, samePair)
    }
    case "plugin": return a.name === (b as typeof a).name && sameArray<string>(a.values, (b as typeof a).values, same)
  }
}

/** The same condition, structurally (spans and set names aside). */
export const sameCond = (a: Cond, b: Cond): boolean => {
  if (a.k !== b.k) return false
  switch (a.k) {
    case "true": return true
    case "not": return sameCond(a.c, (b as typeof a).c)
    case "and": case "or": return sameArray(a.items, (b as typeof a).items, sameCond)
    case "match": return sameMatcher(a.m, (b as typeof a).m)
  }
}
