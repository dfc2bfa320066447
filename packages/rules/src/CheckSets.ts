/**
 * Checks and normalises set entries by set type, and lints set hygiene:
 * duplicates (L002), entries covered by other entries (L003), empty sets (L004).
 *
 * Details: stored entries are normalised text: domains lower case without a
 * trailing dot (`example.com`, `.example.com`, `*.example.com`), CIDRs in
 * canonical `addr/prefix` form, ports `22` or `8000..8999`, countries upper
 * case, ASNs plain numbers. Coverage checks are near-linear so large set
 * files stay fast. At most `MAX_LINTS` hygiene warnings per set.
 */
import type { Span } from "./Ast.ts"
import type { Ctx } from "./CheckContext.ts"
import { checkCidr } from "./CheckSettings.ts"
import { countries, countryHint, isCountry } from "./Countries.ts"
import type { SetType } from "./Ir.ts"
import { cidrRange, formatCidr, parseCidr } from "./Ip.ts"
import * as L from "./Literal.ts"
import { normalizeDomain } from "./Match.ts"
import { suggest } from "./Suggest.ts"

const MAX_LINTS = 20

export interface Entry { readonly text: string; readonly span: Span }

/** A domain entry: `example.com`, `.example.com`, `*.example.com`. Returns the normalised entry or reports. */
export const checkDomainEntry = (ctx: Ctx, text: string, span: Span): string | undefined => {
  const prefix = text.startsWith(".") ? "." : text.startsWith("*.") ? "*." : ""
  const body = normalizeDomain(text.slice(prefix.length))
  if (!L.isHostname(body) || body === "" || /^[\d.]+$/.test(body)) {
    if (/^[\d.:/]+$/.test(text) || text.includes(":")) ctx.err("T031", `\`${text}\` is an address, not a domain name`, span, { hint: "addresses go in a `cidrs` set or a `dst.ip` condition" })
    else ctx.err("T031", `\`${text}\` is not a domain name`, span, { hint: text.includes("*") ? "`*` is allowed only as the first label (`*.example.com`); use `dst.domain matches \"...\"` for globs" : undefined })
    return undefined
  }
  return prefix + body
}

export const checkCountry = (ctx: Ctx, text: string, span: Span): string | undefined => {
  const c = text.toUpperCase()
  if (/^[A-Za-z]{2}$/.test(text) && isCountry(c)) return c
  const s = suggest(c, [...countries].filter((x) => x[0] === c[0])) ?? suggest(c, countries)
  ctx.err("T026", `\`${text}\` is not an ISO 3166-1 alpha-2 country code`, span, { hint: countryHint(text) ?? (s === undefined ? undefined : `did you mean \`${s}\`?`) })
  return undefined
}

const checkEntry = (ctx: Ctx, type: SetType, e: Entry): string | undefined => {
  switch (type) {
    case "domains": return checkDomainEntry(ctx, e.text, e.span)
    case "cidrs": {
      const c = checkCidr(ctx, e.text, e.span)
      return c === undefined ? undefined : formatCidr(c)
    }
    case "ports": {
      const r = L.parsePortRange(e.text)
      if (!r.ok) {
        ctx.err(/inverted/.test(r.message) ? "T024" : "T023", r.message, e.span, { hint: r.hint })
        return undefined
      }
      return r.value[0] === r.value[1] ? String(r.value[0]) : `${r.value[0]}..${r.value[1]}`
    }
    case "users":
    case "groups":
      if (e.text === "" || /\s/.test(e.text)) {
        ctx.err("T004", `\`${e.text}\` is not a ${type === "users" ? "user" : "group"} name`, e.span)
        return undefined
      }
      return e.text
    case "countries": return checkCountry(ctx, e.text, e.span)
    case "asns": {
      const r = L.parseAsn(e.text)
      if (!r.ok) {
        ctx.err("T027", r.message, e.span)
        return undefined
      }
      return String(r.value)
    }
  }
}

/** Checks entries, reports bad ones, lints duplicates and coverage. Returns the good entries, normalised. */
export const checkSetEntries = (ctx: Ctx, name: string, type: SetType, entries: ReadonlyArray<Entry>): string[] => {
  const good: Array<{ value: string; span: Span }> = []
  let bad = 0
  for (const e of entries) {
    const v = checkEntry(ctx, type, e)
    if (v === undefined) bad++
    else good.push({ value: v, span: e.span })
  }
  if (bad > 0) ctx.brokenSets.add(name)
  if (entries.length === 0) {
    const sym = ctx.lookup("set", name)
    if (sym !== undefined) ctx.warn("L004", `set \`${name}\` is empty`, sym.span, { hint: "a condition over an empty set is never true; add entries or remove the set" })
  }
  let lints = 0
  const lint = (code: string, message: string, span: Span, first: Span, note: string) => {
    if (lints++ < MAX_LINTS) ctx.warn(code, message, span, { notes: [{ message: note, span: first }] })
  }
  const firstAt = new Map<string, Span>()
  const unique: Array<{ value: string; span: Span }> = []
  for (const g of good) {
    const f = firstAt.get(g.value)
    if (f !== undefined) lint("L002", `duplicate entry \`${g.value}\` in set \`${name}\``, g.span, f, "first listed here")
    else {
      firstAt.set(g.value, g.span)
      unique.push(g)
    }
  }
  const covered = (e: { value: string; span: Span }, by: { value: string; span: Span }) =>
    lint("L003", `entry \`${e.value}\` in set \`${name}\` is already covered by \`${by.value}\``, e.span, by.span, `\`${by.value}\` is listed here`)
  if (type === "domains") coverDomains(unique, covered)
  else if (type === "cidrs") coverCidrs(unique, covered)
  else if (type === "ports") coverPorts(unique, covered)
  return good.map((g) => g.value)
}

type Item = { value: string; span: Span }

const coverDomains = (items: ReadonlyArray<Item>, covered: (e: Item, by: Item) => void): void => {
  const suffixes = new Map<string, Item>()
  const subs = new Map<string, Item>()
  for (const i of items) {
    if (i.value.startsWith(".")) suffixes.set(i.value.slice(1), i)
    else if (i.value.startsWith("*.")) subs.set(i.value.slice(2), i)
  }
  for (const i of items) {
    const isSuffix = i.value.startsWith(".")
    const isSub = i.value.startsWith("*.")
    const body = isSuffix ? i.value.slice(1) : isSub ? i.value.slice(2) : i.value
    // The name itself: an exact or `*.` entry is covered by `.body`.
    if (!isSuffix) {
      const s = suffixes.get(body)
      if (s !== undefined && s !== i) {
        covered(i, s)
        continue
      }
    }
    // Proper parent domains.
    for (let k = body.indexOf("."); k !== -1; k = body.indexOf(".", k + 1)) {
      const parent = body.slice(k + 1)
      const by = suffixes.get(parent) ?? subs.get(parent)
      if (by !== undefined) {
        covered(i, by)
        break
      }
    }
  }
}

/** Sort by start, widest first; an entry ending before the widest range seen so far is covered by it. */
const coverCidrs = (items: ReadonlyArray<Item>, covered: (e: Item, by: Item) => void): void => {
  const ranges = items.flatMap((i) => {
    const r = parseCidr(i.value)
    if (!r.ok) return []
    const [lo, hi] = cidrRange(r.cidr)
    return [{ i, fam: r.cidr.family, lo, hi }]
  }).sort((x, y) => x.fam - y.fam || (x.lo < y.lo ? -1 : x.lo > y.lo ? 1 : x.hi > y.hi ? -1 : x.hi < y.hi ? 1 : 0))
  let best: { i: Item; fam: number; hi: bigint } | undefined
  for (const r of ranges) {
    if (best !== undefined && best.fam === r.fam && best.hi >= r.hi) covered(r.i, best.i)
    else best = r
  }
}

const coverPorts = (items: ReadonlyArray<Item>, covered: (e: Item, by: Item) => void): void => {
  const ranges = items.map((i) => {
    const [a, b] = i.value.split("..")
    return { i, lo: Number(a), hi: Number(b ?? a) }
  }).sort((x, y) => x.lo - y.lo || y.hi - x.hi)
  let best: { i: Item; hi: number } | undefined
  for (const r of ranges) {
    if (best !== undefined && best.hi >= r.hi) covered(r.i, best.i)
    else best = { i: r.i, hi: r.hi }
  }
}
