/**
 * Splits a declaration's tokens into settings and matches each against its
 * vocabulary pattern, parsing typed values.
 *
 * Details: a bare token equal to a setting name of the declaration kind starts
 * a new setting. Each value is parsed by its type (`DUR`, `SECRET`, ...); a
 * bad value is reported at its token and the setting is dropped. Unknown
 * setting names get a did-you-mean (T002); missing values T003; extra tokens
 * T004; a literal secret T040; a setting given twice T006.
 *
 * Gotchas: paths (`PATH`, `file("...")` secrets, htpasswd files) are kept as
 * written; consumers resolve a relative one against the directory of the
 * declaring file (`span.file`). Only set files, which the checker reads, are
 * stored resolved.
 */
import type { Span, Token } from "./Ast.ts"
import { type Ctx, describeToken, joinSpans } from "./CheckContext.ts"
import type { Cidr, SecretRef } from "./Ir.ts"
import { parseCidr, parseIp } from "./Ip.ts"
import * as L from "./Literal.ts"
import { didYouMean } from "./Suggest.ts"
import { parsePattern, type PatternNode, type SettingSpec } from "./Vocabulary.ts"

/** The value of a `CIDRS` setting: CIDRs written inline plus `cidrs` set names to resolve. */
export interface CidrsValue { readonly cidrs: ReadonlyArray<Cidr>; readonly sets: ReadonlyArray<{ readonly name: string; readonly span: Span }> }

export interface Value { readonly type: string; readonly token: Token; readonly value: unknown }

export interface Setting {
  readonly name: string
  readonly nameSpan: Span
  readonly span: Span
  readonly values: ReadonlyArray<Value>
  readonly words: ReadonlySet<string>
}

export type Settings = ReadonlyMap<string, ReadonlyArray<Setting>>

/** Parses one typed value, reporting errors. `undefined` when the token is not of this type at all (no report). */
const parseValue = (ctx: Ctx, type: string, t: Token, setting: string): { matched: boolean; value?: unknown } => {
  const report = (code: string, r: { message: string; hint?: string }) => {
    const message = r.message.startsWith("expected ") ? `\`${setting}\` expects ${r.message.slice(9)}` : r.message
    ctx.err(code, message, t.span, { hint: r.hint })
    return { matched: true }
  }
  const bareNum = <A>(code: string, f: (s: string) => L.Parsed<A>) => {
    if (t.kind !== "bare") return { matched: false }
    const r = f(t.text)
    return r.ok ? { matched: true, value: r.value } : report(code, r)
  }
  switch (type) {
    case "DUR": return bareNum("T025", L.parseDuration)
    case "SIZE": return bareNum("T025", L.parseSize)
    case "RATE": return bareNum("T025", L.parseRate)
    case "INT": return bareNum("T004", (s) => L.parseInteger(s))
    case "HOSTPORT": return bareNum("T030", L.parseHostPort)
    case "TIMESTAMP": return bareNum("T004", L.parseTimestamp)
    case "ASN": return bareNum("T027", L.parseAsn)
    case "IP": return bareNum("T020", (s) => (parseIp(s) ? { ok: true as const, value: s } : { ok: false as const, message: `\`${s}\` is not an IP address` }))
    case "SRC": return bareNum("T030", (s): L.Parsed<{ ip: string; port?: number }> => {
      if (parseIp(s) !== undefined) return { ok: true as const, value: { ip: s } }
      const hp = L.parseHostPort(s)
      if (hp.ok && parseIp(hp.value.host) !== undefined) return { ok: true as const, value: { ip: hp.value.host, port: hp.value.port } }
      return { ok: false as const, message: `expected an IP address or IP:PORT, found \`${s}\`` }
    })
    case "NAME":
      if (t.kind === "bare" && L.isName(t.text)) return { matched: true, value: t.text }
      if (t.kind === "string") return { matched: true, value: t.value }
      return { matched: false }
    case "NAMES":
      if (t.kind !== "list") return { matched: false }
      return { matched: true, value: t.items.flatMap((i) => (i.kind === "bare" ? [i.text] : i.kind === "string" ? [i.value] : [])) }
    case "STR":
      return t.kind === "string" ? { matched: true, value: t.value } : { matched: false }
    case "PATH":
      if (t.kind === "string") return { matched: true, value: t.value }
      if (t.kind === "call" && t.name === "file" && t.args.length === 1 && t.args[0]!.kind === "string") return { matched: true, value: t.args[0].value }
      return { matched: false }
    case "SECRET": {
      const s = parseSecret(t)
      if (s !== undefined) return { matched: true, value: s }
      if (t.kind === "string" || t.kind === "bare") {
        ctx.err("T040", "a secret must not be written into the rules file", t.span, { hint: "use `env(NAME)` to read it from the environment or `file(\"path\")` to read it from a file" })
        return { matched: true, value: { from: "literal", value: t.kind === "string" ? t.value : t.text } satisfies SecretRef }
      }
      return { matched: false }
    }
    case "CIDRS": {
      // A `cidrs` set name, or a list of CIDRs and set names.
      const isSet = (x: Token): x is Token & { kind: "bare" } => x.kind === "bare" && L.isName(x.text) && parseIp(x.text) === undefined && !x.text.includes("/")
      if (isSet(t)) return { matched: true, value: { cidrs: [], sets: [{ name: t.text, span: t.span }] } satisfies CidrsValue }
      if (t.kind !== "list") return { matched: false }
      const value: { cidrs: Cidr[]; sets: Array<{ name: string; span: Span }> } = { cidrs: [], sets: [] }
      for (const item of t.items) {
        if (isSet(item)) value.sets.push({ name: item.text, span: item.span })
        else if (item.kind !== "bare") ctx.err("T004", `expected a CIDR or a \`cidrs\` set name, found ${describeToken(item)}`, item.span)
        else {
          const c = checkCidr(ctx, item.text, item.span)
          if (c !== undefined) value.cidrs.push(c)
        }
      }
      return { matched: true, value: value satisfies CidrsValue }
    }
    default: return { matched: false }
  }
}

export const parseSecret = (t: Token): SecretRef | undefined => {
  if (t.kind !== "call" || t.args.length !== 1) return undefined
  const a = t.args[0]!
  if (t.name === "env" && a.kind === "bare") return { from: "env", name: a.text }
  if (t.name === "env" && a.kind === "string") return { from: "env", name: a.value }
  if (t.name === "file" && a.kind === "string") return { from: "file", path: a.value }
  return undefined
}

/** Parses a CIDR or address, reporting T020 (not an address), T021 (prefix), T022 (host bits). */
export const checkCidr = (ctx: Ctx, text: string, span: Span): Cidr | undefined => {
  const r = parseCidr(text)
  if (r.ok) return r.cidr
  const code = r.reason === "not-an-address" ? "T020" : r.reason === "bad-prefix" ? "T021" : "T022"
  ctx.err(code, r.message, span, { hint: r.fixed === undefined ? undefined : `write \`${r.fixed}\`` })
  return undefined
}

const TYPE_NAMES: Record<string, string> = {
  DUR: "a duration like `10s`", SIZE: "a size like `10MiB`", RATE: "a rate like `20/s`", INT: "a whole number",
  HOSTPORT: "host:port", TIMESTAMP: "a time like `2026-03-01T23:00Z`", ASN: "an AS number", IP: "an IP address",
  SRC: "an IP address or IP:PORT", NAME: "a name", NAMES: "a list of names `[a, b]`", STR: "a string in quotes",
  PATH: "a path in quotes or `file(\"path\")`", SECRET: "`env(NAME)` or `file(\"path\")`", CIDRS: "a list of CIDRs or a `cidrs` set name",
}

const describeNode = (n: PatternNode): string =>
  n.t === "type" ? (TYPE_NAMES[n.type] ?? n.type) : n.t === "word" ? n.words.map((w) => `\`${w}\``).join(", ").replace(/, ([^,]*)$/, " or $1") : describeNode(n.items[0]!)

/** Matches `args` against one pattern alternative; returns the result or the failure (index + message). */
const matchAlt = (ctx: Ctx, setting: string, alt: ReadonlyArray<PatternNode>, args: ReadonlyArray<Token>):
  { ok: true; values: Value[]; words: Set<string>; used: number } | { ok: false; at: number; expected: string } => {
  const values: Value[] = []
  const words = new Set<string>()
  let i = 0
  const step = (n: PatternNode): boolean | "fail" => {
    const t = args[i]
    if (n.t === "word") {
      if (t?.kind === "bare" && n.words.includes(t.text)) {
        words.add(t.text)
        i++
        return true
      }
      return "fail"
    }
    if (n.t === "type") {
      if (t === undefined) return "fail"
      const r = parseValue(ctx, n.type, t, setting)
      if (!r.matched) return "fail"
      if ("value" in r) values.push({ type: n.type, token: t, value: r.value })
      i++
      return true
    }
    const start = i
    const first = n.items[0]
    if (first !== undefined && step(first) === "fail") {
      i = start
      return true
    }
    for (const m of n.items.slice(1)) if (step(m) === "fail") return "fail"
    return true
  }
  for (const n of alt) {
    const before = i
    const r = step(n)
    if (r === "fail") return { ok: false, at: before, expected: describeNode(n) }
  }
  return { ok: true, values, words, used: i }
}

/** Checks one setting's argument tokens; reports and returns undefined when malformed. */
const checkSetting = (ctx: Ctx, name: string, nameSpan: Span, spec: SettingSpec, args: ReadonlyArray<Token>): Setting | undefined => {
  const alts = parsePattern(spec.pattern)
  let chosen = alts[0]!
  if (alts.length > 1) {
    const first = args[0]
    chosen = alts.find((alt) => alt[0]?.t === "word" && first?.kind === "bare" && alt[0].words.includes(first.text)) ?? alts[0]!
    if (!alts.some((alt) => alt[0]?.t === "word" && first?.kind === "bare" && alt[0].words.includes(first.text))) {
      const expected = alts.map((a) => describeNode(a[0]!)).join(" or ")
      const at = first?.span ?? nameSpan
      ctx.err(first === undefined ? "T003" : "T004", first === undefined ? `\`${name}\` needs a value: ${expected}` : `\`${name}\` expects ${expected}, found ${describeToken(first)}`, at)
      return undefined
    }
  }
  const before = ctx.diagnostics.length
  const r = matchAlt(ctx, name, chosen, args)
  if (!r.ok) {
    const t = args[r.at]
    if (t === undefined) ctx.err("T003", `\`${name}\` needs ${r.expected}`, args.length > 0 ? joinSpans(nameSpan, args[args.length - 1]!.span) : nameSpan, { hint: `write \`${name} ${spec.pattern.replace(/\s*\|\|.*$/, "")}\`` })
    else ctx.err("T004", `\`${name}\` expects ${r.expected}, found ${describeToken(t)}`, t.span)
    return undefined
  }
  if (r.used < args.length) {
    const t = args[r.used]!
    ctx.err("T004", `unexpected ${describeToken(t)} after \`${name}\``, t.span, { hint: `\`${name}\` takes: ${spec.pattern === "" ? "no value" : spec.pattern}` })
    return undefined
  }
  if (ctx.diagnostics.length > before && ctx.diagnostics.slice(before).some((d) => d.severity === "error" && d.code !== "T040")) return undefined
  const last = args[args.length - 1]
  return { name, nameSpan, span: last === undefined ? nameSpan : joinSpans(nameSpan, last.span), values: r.values, words: r.words }
}

/**
 * Splits `tokens` (one line) at setting names and checks each. Results are
 * added to `into`. `what` names the declaration kind for messages.
 */
export const collectSettings = (ctx: Ctx, tokens: ReadonlyArray<Token>, specs: Readonly<Record<string, SettingSpec>>, what: string, into: Map<string, Setting[]>): void => {
  let i = 0
  const isName = (t: Token | undefined): t is Token & { kind: "bare" } => t?.kind === "bare" && Object.hasOwn(specs, t.text)
  while (i < tokens.length) {
    const t = tokens[i]!
    if (!isName(t)) {
      const hint = t.kind === "bare" ? didYouMean(t.text, Object.keys(specs)) : undefined
      const known = Object.keys(specs)
      ctx.err("T002", t.kind === "bare" && L.isName(t.text) ? `unknown setting \`${t.text}\` for ${what}` : `unexpected ${describeToken(t)} in ${what}`, t.span, {
        hint: hint ?? (known.length > 0 ? `${what} settings: ${known.join(", ")}` : `${what} takes no settings`),
      })
      i++
      while (i < tokens.length && !isName(tokens[i])) i++
      continue
    }
    let j = i + 1
    while (j < tokens.length && !isName(tokens[j])) j++
    const spec = specs[t.text]!
    const setting = checkSetting(ctx, t.text, t.span, spec, tokens.slice(i + 1, j))
    if (setting !== undefined) {
      const list = into.get(t.text) ?? []
      if (list.length > 0 && spec.repeat !== true) {
        ctx.err("T006", `setting \`${t.text}\` is given more than once`, t.span, { notes: [{ message: "first given here", span: list[0]!.nameSpan }] })
      } else {
        list.push(setting)
        into.set(t.text, list)
      }
    }
    i = j
  }
}

/** First setting of a name. */
export const one = (s: Settings, name: string): Setting | undefined => s.get(name)?.[0]
