/**
 * Converts `when` expressions into `Cond` (Ir.ts): typed fields, operators and
 * values; set references inlined (with `setRef`); `!=`/`not in` as `not`.
 *
 * Details: every leaf is a membership matcher. Port comparisons become
 * ranges. ASN fields need `geoip asn "file"` (T060); country fields do not
 * (the runtime has a built-in CC0 country database; `geoip "file"` replaces it). A
 * `not` over a field that can be unknown gets lint L005 (three-valued logic).
 * A broken leaf becomes `undefined` and the whole rule is dropped from the IR
 * (the errors are reported).
 */
import type { ExprNode, OperatorNode, Span, Token } from "./Ast.ts"
import { type Ctx, describeToken, kindLabel, withArticle } from "./CheckContext.ts"
import { checkCountry, checkDomainEntry } from "./CheckSets.ts"
import { checkCidr } from "./CheckSettings.ts"
import type { Cidr, Cond, DomainPattern, Matcher, SetType, StringPattern } from "./Ir.ts"
import { parseCidr } from "./Ip.ts"
import * as L from "./Literal.ts"
import { isValidTimeZone } from "./Match.ts"
import { checkRegex } from "./Regex.ts"
import { didYouMean } from "./Suggest.ts"

type FieldType = "ip" | "port" | "domain" | "string" | "group" | "enum" | "country" | "asn" | "time"

export const FIELDS: Readonly<Record<string, FieldType>> = {
  "src.ip": "ip", "dst.ip": "ip", "src.port": "port", "dst.port": "port", "dst.domain": "domain", user: "string", group: "group",
  listener: "enum", protocol: "enum", command: "enum", auth: "enum", "src.country": "country", "dst.country": "country",
  "src.asn": "asn", "dst.asn": "asn", time: "time",
}

/** Each field name once (see `cmp`). */
const FIELD_NAMES: ReadonlyMap<string, string> = new Map(Object.keys(FIELDS).map((f) => [f, f]))

const OPS: Readonly<Record<FieldType, ReadonlyArray<string>>> = {
  ip: ["==", "!=", "in", "not in"],
  port: ["==", "!=", "in", "not in", "<", "<=", ">", ">="],
  domain: ["==", "!=", "in", "not in", "suffix", "matches", "regex"],
  string: ["==", "!=", "in", "not in", "matches", "regex"],
  group: ["==", "!=", "in", "not in"],
  enum: ["==", "!=", "in", "not in"],
  country: ["==", "!=", "in", "not in"],
  asn: ["==", "!=", "in", "not in"],
  time: [],
}

const SET_FOR: Readonly<Record<FieldType, SetType | undefined>> = {
  ip: "cidrs", port: "ports", domain: "domains", string: "users", group: "groups", enum: undefined, country: "countries", asn: "asns", time: undefined,
}

export const ENUMS: Readonly<Record<string, ReadonlyArray<string>>> = {
  protocol: ["socks4", "socks5", "http"], command: ["connect", "bind", "udp"], auth: ["none", "password"],
}

/** Fields whose value can be missing for a connection (so `not` over them can be unknown). */
const MAYBE_UNKNOWN: Readonly<Record<string, string>> = {
  user: "there is no user when the client did not log in",
  group: "there are no groups when the client did not log in",
  "dst.domain": "there is no domain when the client connects to an IP address",
  "dst.ip": "the address is unknown when the name does not resolve (and for .onion names)",
  "src.country": "GeoIP may have no entry", "dst.country": "GeoIP may have no entry",
  "src.asn": "GeoIP may have no entry", "dst.asn": "GeoIP may have no entry",
  "src.port": "the source port is not known for every protocol",
  listener: "the listener is unknown in tests that name none",
  auth: "the authentication state is unknown in tests that name none",
  time: "the time is unknown in tests that give none",
}

interface Leaf { readonly text: string; readonly span: Span; readonly token: Token }

const leafOf = (t: Token): Leaf | undefined =>
  t.kind === "bare" ? { text: t.text, span: t.span, token: t } : t.kind === "string" ? { text: t.value, span: t.span, token: t } : undefined

/** A leaf of the IR. It keeps no span: diagnostics are made from the AST, and a served policy of 100k rules held ~130k leaf spans (three objects each) that nothing read. */
const match = (m: Matcher, setRef?: string): Cond => (setRef === undefined ? { k: "match", m } : { k: "match", m, setRef })

const opNot = (op: string): boolean => op === "!=" || op === "not in"

export class CondChecker {
  readonly ctx: Ctx
  /** Fields used under a negation already warned about in the current rule. */
  private readonly warned = new Set<string>()

  constructor(ctx: Ctx) {
    this.ctx = ctx
  }

  /** Converts an expression; `undefined` when it has errors (reported). */
  convert(e: ExprNode, negated = false): Cond | undefined {
    switch (e.kind) {
      case "paren": return this.convert(e.expr, negated)
      case "and":
      case "or": {
        const items = e.items.map((x) => this.convert(x, negated))
        return items.every((x) => x !== undefined) ? { k: e.kind, items: items as Cond[] } : undefined
      }
      case "not": {
        const c = this.convert(e.expr, true)
        // An outer `not` already walked every field below.
        if (!negated) this.lintNot(e.expr, e.span)
        return c === undefined ? undefined : { k: "not", c }
      }
      case "time": return this.time(e)
      case "cmp": {
        const c = this.cmp(e.field.text, e.field.span, e.op, e.value)
        if (c !== undefined && opNot(e.op.text)) {
          this.lintField(e.field.text, e.op.span, `\`${e.field.text} ${e.op.text} ...\``)
          return { k: "not", c }
        }
        return c
      }
    }
  }

  private lintNot(e: ExprNode, span: Span): void {
    const fields = new Set<string>()
    const walk = (x: ExprNode): void => {
      if (x.kind === "cmp" || x.kind === "time") fields.add(x.field.text)
      else if (x.kind === "and" || x.kind === "or") x.items.forEach(walk)
      else walk(x.expr)
    }
    walk(e)
    for (const f of fields) this.lintField(f, { ...span, end: { ...span.start, offset: span.start.offset + 3, column: span.start.column + 3 } }, "`not ...`")
  }

  private lintField(field: string, span: Span, what: string): void {
    const why = MAYBE_UNKNOWN[field] ?? this.ctx.ext.fields.get(field)?.spec.unknownWhen
    if (why === undefined || this.warned.has(field)) return
    this.warned.add(field)
    this.ctx.warn("L005", `${what} over \`${field}\`, which can be unknown: then the negation is unknown too and the rule does not fire`, span, {
      hint: `${why}; with three-valued logic \`not unknown\` is unknown. Match the positive case in an earlier rule, or accept that the rule skips such connections`,
    })
  }

  /** Resets per-rule lint state. */
  nextRule(): void {
    this.warned.clear()
  }

  private time(e: Extract<ExprNode, { kind: "time" }>): Cond | undefined {
    let days = 0
    const windows: Array<readonly [number, number]> = []
    let ok = true
    for (const s of e.specs) {
      const kind = L.classify(s.text)
      if (/^\d/.test(s.text)) {
        const w = L.parseWindow(s.text)
        if (w.ok) windows.push(w.value)
        else {
          this.ctx.err("T029", w.message, s.span, { hint: w.hint })
          ok = false
        }
      } else {
        const d = L.parseWeekdays(s.text)
        if (d.ok) days |= d.value
        else {
          this.ctx.err("T029", kind === "name" ? d.message : `expected weekdays or a time window, found \`${s.text}\``, s.span, { hint: d.hint })
          ok = false
        }
      }
    }
    const tz = e.tz?.value ?? "UTC"
    if (e.tz !== undefined && !isValidTimeZone(tz)) {
      this.ctx.err("T028", `unknown time zone \`${tz}\``, e.tz.span, { hint: "use an IANA zone name like `Europe/Berlin` or `UTC`" })
      ok = false
    }
    if (!ok) return undefined
    return match({ kind: "time", field: "time", days: days === 0 ? 127 : days, windows: windows.length === 0 ? [[0, 1440]] : windows, tz })
  }

  private cmp(text: string, fieldSpan: Span, op: OperatorNode, value: Token): Cond | undefined {
    // The vocabulary's own string, not the parser's copy: the IR keeps one per leaf.
    const field = FIELD_NAMES.get(text) ?? text
    const type = FIELDS[field]
    if (type === undefined) {
      if (this.ctx.ext.fields.has(field)) return this.pluginCmp(field, fieldSpan, op, value)
      const all = [...Object.keys(FIELDS), ...this.ctx.ext.fields.keys()]
      this.ctx.err("T061", `unknown field \`${field}\``, fieldSpan, { hint: didYouMean(field, all) ?? `fields: ${all.join(", ")}` })
      return undefined
    }
    if (type === "time") {
      this.ctx.err("T029", "`time` takes weekdays and time windows: `time Mon-Fri 08:00-20:00`", op.span)
      return undefined
    }
    if (op.implicit === true && type !== "enum") {
      this.ctx.err("T062", `\`${field}\` needs an operator`, fieldSpan, { hint: `write \`${field} == ${value.kind === "bare" ? value.text : "VALUE"}\`` })
      return undefined
    }
    if (!OPS[type].includes(op.text)) {
      this.ctx.err("T062", `operator \`${op.text}\` does not apply to \`${field}\``, op.span, { hint: `\`${field}\` takes ${OPS[type].map((o) => `\`${o}\``).join(", ")}` })
      return undefined
    }
    if (type === "asn" && this.ctx.geoip?.asn === undefined) {
      this.ctx.err("T060", `\`${field}\` needs a GeoIP ASN database`, fieldSpan, { hint: 'declare `geoip asn "GeoLite2-ASN.mmdb"`' })
      return undefined
    }
    const o = op.text
    if (o === "suffix" || o === "matches" || o === "regex") return this.pattern(field, type, o, value)
    if (o === "<" || o === "<=" || o === ">" || o === ">=") return this.portCompare(field as "src.port" | "dst.port", o, value)
    // Values: a list, a set name (with `in`), or one value.
    const isIn = o === "in" || o === "not in"
    if (!isIn && value.kind === "list") {
      this.ctx.err("T004", `\`${o}\` compares with one value; use \`${o === "==" ? "in" : "not in"}\` for a list`, op.span)
      return undefined
    }
    let leaves: Leaf[] = []
    let setRef: string | undefined
    let entries: string[] | undefined
    if (value.kind === "list") {
      for (const item of value.items) {
        const l = leafOf(item)
        if (l === undefined) this.ctx.err("T004", `expected a value, found ${describeToken(item)}`, item.span)
        else leaves.push(l)
      }
      if (leaves.length !== value.items.length) return undefined
    } else {
      const l = leafOf(value)
      if (l === undefined) {
        this.ctx.err("T004", `expected a value for \`${field}\`, found ${describeToken(value)}`, value.span)
        return undefined
      }
      const usergroup = type === "group" && value.kind === "bare" && this.ctx.lookup("set", value.text) === undefined && this.ctx.lookup("usergroup", value.text) !== undefined
      if (isIn && value.kind === "bare" && this.isSetName(type, value.text) && !usergroup) {
        const r = this.setEntries(field, type, value.text, value.span)
        if (r === undefined) return undefined
        setRef = value.text
        entries = r
      } else leaves = [l]
    }
    const m = entries !== undefined ? this.fromEntries(field, type, entries) : this.fromLeaves(field, type, leaves)
    return m === undefined ? undefined : match(m, setRef)
  }

  /** A condition on a plugin field: `==`/`!=` one value, `in`/`not in` a list; enum values checked. */
  private pluginCmp(field: string, fieldSpan: Span, op: OperatorNode, value: Token): Cond | undefined {
    const { plugin, spec } = this.ctx.ext.fields.get(field)!
    const ops = ["==", "!=", "in", "not in"]
    if (op.implicit === true) {
      this.ctx.err("T062", `\`${field}\` needs an operator`, fieldSpan, { hint: `write \`${field} == ${value.kind === "bare" ? value.text : "VALUE"}\`` })
      return undefined
    }
    if (!ops.includes(op.text)) {
      this.ctx.err("T062", `operator \`${op.text}\` does not apply to \`${field}\``, op.span, { hint: `\`${field}\` (from plugin \`${plugin}\`) takes ${ops.map((o) => `\`${o}\``).join(", ")}` })
      return undefined
    }
    const isIn = op.text === "in" || op.text === "not in"
    if (!isIn && value.kind === "list") {
      this.ctx.err("T004", `\`${op.text}\` compares with one value; use \`${op.text === "==" ? "in" : "not in"}\` for a list`, op.span)
      return undefined
    }
    if (isIn && value.kind !== "list") {
      this.ctx.err("T004", `\`${op.text}\` on a plugin field takes a list of values`, value.span, { hint: `write \`${field} ${op.text} [a, b]\`` })
      return undefined
    }
    const items = value.kind === "list" ? value.items : [value]
    const values: string[] = []
    let ok = true
    for (const item of items) {
      const l = leafOf(item)
      if (l === undefined) {
        this.ctx.err("T004", `expected a value for \`${field}\`, found ${describeToken(item)}`, item.span)
        ok = false
      } else if (spec.type === "enum" && !(spec.values ?? []).includes(l.text)) {
        const allowed = spec.values ?? []
        this.ctx.err("T063", `\`${l.text}\` is not a ${field}`, l.span, { hint: didYouMean(l.text, allowed) ?? `\`${field}\` is one of ${allowed.join(", ")}` })
        ok = false
      } else values.push(l.text)
    }
    return ok ? match({ kind: "plugin", field: "plugin", name: field, values }) : undefined
  }

  /** A bare word after `in` is a set reference unless it is clearly a literal of the field. */
  private isSetName(type: FieldType, text: string): boolean {
    if (!L.isName(text)) return false
    if (type === "ip") return parseCidr(text).ok === false && !/^[\d.:]/.test(text)
    if (type === "enum") return false
    return true
  }

  private setEntries(field: string, type: FieldType, name: string, span: Span): string[] | undefined {
    const sym = this.ctx.lookup("set", name)
    if (sym === undefined) {
      const other = (["outbound", "tor", "auth", "usergroup", "listener", "policy"] as const).map((n) => this.ctx.lookup(n, name)).find((x) => x !== undefined)
      if (other !== undefined) {
        this.ctx.use(other.ns, name)
        this.ctx.err("T012", `\`${name}\` is ${withArticle(kindLabel(other.kind))}, not a set`, span, { notes: [{ message: `\`${name}\` is declared here`, span: other.span }], hint: other.kind === "usergroup" ? `to test membership write \`group == ${name}\`` : undefined })
      } else {
        this.ctx.undefinedName("set", name, span, "set")
      }
      return undefined
    }
    this.ctx.use("set", name)
    if (this.ctx.brokenSets.has(name)) return undefined
    const set = this.ctx.sets.get(name)
    if (set === undefined) return undefined
    const want = SET_FOR[type]
    if (set.type !== want) {
      this.ctx.err("T012", `set \`${name}\` holds ${set.type}, but \`${field}\` needs ${want ?? "a list of values"}`, span, { notes: [{ message: `\`${name}\` is declared here`, span: sym.span }] })
      return undefined
    }
    return [...set.entries]
  }

  /** Set entries are already checked and normalised. */
  private fromEntries(field: string, type: FieldType, entries: ReadonlyArray<string>): Matcher | undefined {
    switch (type) {
      case "ip": return { kind: "ip", field: field as "src.ip", cidrs: entries.flatMap((e) => { const r = parseCidr(e); return r.ok ? [r.cidr] : [] }) }
      case "port": return { kind: "port", field: field as "src.port", ranges: entries.map((e) => { const [a, b] = e.split(".."); return [Number(a), Number(b ?? a)] as const }) }
      case "domain": return { kind: "domain", field: "dst.domain", patterns: entries.map(domainPattern) }
      case "string": return { kind: "string", field: "user", patterns: entries.map((s) => ({ t: "exact", s })) }
      case "group": return { kind: "group", field: "group", values: [...entries] }
      case "country": return { kind: "country", field: field as "src.country", values: [...entries] }
      case "asn": return { kind: "asn", field: field as "src.asn", values: entries.map(Number) }
      default: return undefined
    }
  }

  private fromLeaves(field: string, type: FieldType, leaves: ReadonlyArray<Leaf>): Matcher | undefined {
    const errors = this.ctx.diagnostics.length
    const all = <A>(f: (l: Leaf) => A | undefined): A[] => leaves.flatMap((l) => { const v = f(l); return v === undefined ? [] : [v] })
    let m: Matcher | undefined
    switch (type) {
      case "ip": {
        const cidrs: Cidr[] = all((l) => (l.token.kind === "bare" ? checkCidr(this.ctx, l.text, l.span) : (this.ctx.err("T020", `expected an IP address or CIDR, found ${describeToken(l.token)}`, l.span), undefined)))
        m = { kind: "ip", field: field as "src.ip", cidrs }
        break
      }
      case "port": {
        const ranges = all((l) => {
          const r = L.parsePortRange(l.text)
          if (r.ok) return r.value
          this.ctx.err(/inverted/.test(r.message) ? "T024" : "T023", r.message, l.span, { hint: r.hint })
          return undefined
        })
        m = { kind: "port", field: field as "src.port", ranges }
        break
      }
      case "domain":
        m = { kind: "domain", field: "dst.domain", patterns: all((l) => { const d = checkDomainEntry(this.ctx, l.text, l.span); return d === undefined ? undefined : domainPattern(d) }) }
        break
      case "string": m = { kind: "string", field: "user", patterns: leaves.map((l) => ({ t: "exact", s: l.text })) }; break
      case "group":
        for (const l of leaves) if (this.ctx.lookup("usergroup", l.text) !== undefined) this.ctx.use("usergroup", l.text)
        m = { kind: "group", field: "group", values: leaves.map((l) => l.text) }
        break
      case "enum": m = this.enumValues(field, leaves); break
      case "country": m = { kind: "country", field: field as "src.country", values: all((l) => checkCountry(this.ctx, l.text, l.span)) }; break
      case "asn":
        m = { kind: "asn", field: field as "src.asn", values: all((l) => { const r = L.parseAsn(l.text); if (!r.ok) this.ctx.err("T027", r.message, l.span); return r.ok ? r.value : undefined }) }
        break
      default: m = undefined
    }
    return this.ctx.diagnostics.slice(errors).some((d) => d.severity === "error") ? undefined : m
  }

  private enumValues(field: string, leaves: ReadonlyArray<Leaf>): Matcher | undefined {
    const allowed = field === "listener" ? this.ctx.names("listener") : ENUMS[field]!
    const values: string[] = []
    for (const l of leaves) {
      if (allowed.includes(l.text)) values.push(l.text)
      else if (field === "listener") this.ctx.err("T010", `undefined listener \`${l.text}\``, l.span, { hint: didYouMean(l.text, allowed) })
      else this.ctx.err("T063", `\`${l.text}\` is not a ${field}`, l.span, { hint: didYouMean(l.text, allowed) ?? `\`${field}\` is one of ${allowed.join(", ")}` })
    }
    return { kind: "enum", field: field as "command", values }
  }

  private pattern(field: string, type: FieldType, op: "suffix" | "matches" | "regex", value: Token): Cond | undefined {
    const l = leafOf(value)
    if (l === undefined || (op !== "suffix" && value.kind !== "string")) {
      this.ctx.err("T004", `\`${op}\` needs a string in quotes, found ${describeToken(value)}`, value.span, { hint: `write \`${field} ${op} "..."\`` })
      return undefined
    }
    if (op === "regex") {
      const r = checkRegex(l.text)
      if (!r.ok) {
        this.ctx.err(r.code, r.message, value.span, { hint: r.hint })
        return undefined
      }
    }
    if (type === "domain") {
      let p: DomainPattern
      if (op === "suffix") {
        const d = checkDomainEntry(this.ctx, l.text.replace(/^\.+/, ""), l.span)
        if (d === undefined) return undefined
        p = { t: "suffix", d }
      } else p = op === "matches" ? { t: "glob", g: l.text.toLowerCase() } : { t: "regex", r: l.text }
      return match({ kind: "domain", field: "dst.domain", patterns: [p] })
    }
    const sp: StringPattern = op === "matches" ? { t: "glob", g: l.text } : { t: "regex", r: l.text }
    return match({ kind: "string", field: "user", patterns: [sp] })
  }

  private portCompare(field: "src.port" | "dst.port", op: "<" | "<=" | ">" | ">=", value: Token): Cond | undefined {
    const p = value.kind === "bare" ? L.parsePort(value.text) : { ok: false as const, message: `\`${op}\` compares with one port number, found ${describeToken(value)}` }
    if (!p.ok) {
      this.ctx.err("T023", p.message, value.span)
      return undefined
    }
    const v = p.value
    const range: readonly [number, number] = op === "<" ? [0, v - 1] : op === "<=" ? [0, v] : op === ">" ? [v + 1, 65535] : [v, 65535]
    if (range[0] > range[1]) {
      this.ctx.err("T024", `\`${field} ${op} ${v}\` is never true`, value.span)
      return undefined
    }
    return match({ kind: "port", field, ranges: [range] })
  }
}

export const domainPattern = (entry: string): DomainPattern =>
  entry.startsWith(".") ? { t: "suffix", d: entry.slice(1) } : entry.startsWith("*.") ? { t: "sub", d: entry.slice(2) } : { t: "exact", d: entry }
