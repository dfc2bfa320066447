/**
 * `proxyd explain`: why a policy decides what it decides for one request.
 *
 * Details: runs the reference interpreter with a trace (`missing: "unknown"`,
 * so every fact not given is unknown) and turns it into: the decision, the
 * deciding rule and its `file:line`, every rule visited with each matcher's
 * value (true / false / unknown), and the costly facts the visit consulted.
 * `renderExplain` prints it for people; the result itself is JSON-safe.
 *
 * Gotchas: matcher texts are rebuilt from the IR (`!=` and `not in` show as
 * the inner membership under a `not`); a set reference shows the set's name,
 * never its entries. Secrets are never part of a decision, so never printed.
 */
import type { Span } from "./Ast.ts"
import type { Cond, Decision, FactName, Matcher, PolicyIR, Program, Request } from "./Ir.ts"
import { formatCidr, parseIp } from "./Ip.ts"
import { evaluateReference, type Trace, type Truth } from "./Reference.ts"
import { formatDecision, hostPort } from "./TestRunner.ts"

export interface ExplainStep {
  readonly rule: string
  readonly matcher: string
  readonly value: Truth
}

export interface ExplainRule {
  readonly rule: string
  readonly kind: "guard" | "rule" | "default"
  readonly value: Truth
  readonly location?: string
}

export interface ExplainResult {
  readonly policy: string
  readonly request: string
  readonly decision: Decision
  readonly rule: string
  readonly ruleSpan: Span | undefined
  /** `file:line` of the deciding rule, when known. */
  readonly location: string | undefined
  readonly rules: ReadonlyArray<ExplainRule>
  readonly steps: ReadonlyArray<ExplainStep>
  /** Each costly fact consulted, with its value (`null`: unknown). */
  readonly factsUsed: ReadonlyArray<{ readonly fact: string; readonly value: string | number | null }>
}

const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"]
const hhmm = (m: number): string => `${String(Math.floor(m / 60)).padStart(2, "0")}:${String(m % 60).padStart(2, "0")}`

/** A weekday bitmask as written: `Mon-Fri`, `Sat,Sun`, `Mon,Wed-Fri`; empty for every day. */
const dayText = (mask: number): string => {
  if ((mask & 127) === 127) return ""
  const parts: string[] = []
  // Monday-first, so `Mon-Fri` and `Sat,Sun` read as people write them.
  const order = [1, 2, 3, 4, 5, 6, 0]
  for (let i = 0; i < 7; i++) {
    if ((mask & (1 << order[i]!)) === 0) continue
    let j = i
    while (j + 1 < 7 && (mask & (1 << order[j + 1]!)) !== 0) j++
    parts.push(j - i >= 2 ? `${DAYS[order[i]!]}-${DAYS[order[j]!]}` : j === i ? DAYS[order[i]!]! : `${DAYS[order[i]!]},${DAYS[order[j]!]}`)
    i = j
  }
  return parts.join(",")
}

/** The values a matcher tests, as written in a rules file. */
const matcherValues = (m: Matcher): ReadonlyArray<string> => {
  switch (m.kind) {
    case "ip": return m.cidrs.map((c) => (c.prefix === (c.family === 4 ? 32 : 128) ? formatCidr(c).replace(/\/\d+$/, "") : formatCidr(c)))
    case "port": return m.ranges.map(([lo, hi]) => (lo === hi ? String(lo) : `${lo}..${hi}`))
    case "domain": return m.patterns.map((p) => (p.t === "exact" ? p.d : p.t === "suffix" ? `.${p.d}` : p.t === "sub" ? `*.${p.d}` : p.t === "glob" ? `matches "${p.g}"` : `regex "${p.r}"`))
    case "string": return m.patterns.map((p) => (p.t === "exact" ? p.s : p.t === "glob" ? `matches "${p.g}"` : `regex "${p.r}"`))
    case "group":
    case "enum":
    case "country":
    case "plugin": return m.values
    case "asn": return m.values.map(String)
    case "time": return []
  }
}

/** A leaf condition as text: `dst.port in [80, 443]`, `dst.domain in ads`, `time Mon-Fri 08:00-18:00 tz "UTC"`. */
export const matcherText = (m: Matcher, setRef?: string): string => {
  if (m.kind === "time") {
    const windows = m.windows.map(([a, b]) => `${hhmm(a)}-${hhmm(b)}`)
    const allDay = windows.length === 1 && windows[0] === "00:00-24:00"
    return ["time", dayText(m.days), allDay ? "" : windows.join(" "), `tz "${m.tz}"`].filter((x) => x !== "").join(" ")
  }
  if (m.kind === "plugin") return m.values.length === 1 ? `${m.name} == ${m.values[0]!}` : `${m.name} in [${m.values.join(", ")}]`
  if (setRef !== undefined) return `${m.field} in ${setRef}`
  const values = matcherValues(m)
  const one = values.length === 1 ? values[0]! : undefined
  if (one !== undefined && (one.startsWith("matches ") || one.startsWith("regex "))) return `${m.field} ${one}`
  return one !== undefined && isSingle(m) ? `${m.field} == ${one}` : `${m.field} in [${values.join(", ")}]`
}

/** True when the matcher's only value is one exact value (not a network, range or pattern). */
const isSingle = (m: Matcher): boolean => {
  switch (m.kind) {
    case "ip": return m.cidrs[0]!.prefix === (m.cidrs[0]!.family === 4 ? 32 : 128)
    case "port": return m.ranges[0]![0] === m.ranges[0]![1]
    case "domain": return m.patterns[0]!.t === "exact"
    case "string": return m.patterns[0]!.t === "exact"
    default: return true
  }
}

/** A condition as text, for display. */
export const condText = (c: Cond): string => {
  switch (c.k) {
    case "true": return "true"
    case "match": return matcherText(c.m, c.setRef)
    case "not": return `not ${c.c.k === "match" || c.c.k === "not" ? condText(c.c) : `(${condText(c.c)})`}`
    case "and": return c.items.map((x) => (x.k === "or" ? `(${condText(x)})` : condText(x))).join(" and ")
    case "or": return c.items.map(condText).join(" or ")
  }
}

/** A request as one line: `connect example.com:443 from 10.0.0.1 user alice`. */
export const requestText = (req: Request): string => {
  const parts = [`${req.command} ${hostPort(req.dstHost, req.dstPort)}`]
  if (req.srcIp !== undefined) parts.push(`from ${req.srcPort === undefined ? req.srcIp : hostPort(req.srcIp, req.srcPort)}`)
  if (req.user !== undefined) parts.push(`user ${req.user}`)
  if (req.groups !== undefined && req.groups.length > 0) parts.push(`groups [${req.groups.join(", ")}]`)
  if (req.listener !== undefined) parts.push(`listener ${req.listener}`)
  if (req.protocol !== undefined) parts.push(`protocol ${req.protocol}`)
  // `auth` only when it differs from what a test implies (password with a user, else none).
  if (req.auth !== undefined && req.auth !== (req.user === undefined ? "none" : "password")) parts.push(`auth ${req.auth}`)
  if (req.time !== undefined) parts.push(`at ${new Date(req.time).toISOString()}`)
  for (const [k, v] of Object.entries(req.facts ?? {})) if (v !== undefined) parts.push(`${k} ${v === null ? "none" : v}`)
  return parts.join(" ")
}

const location = (span: Span | undefined): string | undefined => (span === undefined ? undefined : `${span.file}:${span.start.line}`)

const factValue = (req: Request, fact: string): string | number | null => {
  const host = req.dstHost.replace(/^\[(.*)\]$/, "$1")
  if (fact === "dst.ip" && parseIp(host) !== undefined) return host
  const v = req.facts?.[fact as FactName]
  return v === undefined ? null : v
}

/** Explains how `policyName` (default: the program's default policy) decides `req`. */
export const explain = (program: Program, policyName: string | undefined, req: Request): ExplainResult => {
  const name = policyName ?? program.defaultPolicy
  const policy: PolicyIR | undefined = name === undefined ? undefined : program.policies.get(name)
  if (policy === undefined) {
    throw new Error(name === undefined ? "the file has several policies and none is the default: choose one" : `no policy named \`${name}\``)
  }
  const trace: Trace = { steps: [], rules: [], facts: new Set() }
  const out = evaluateReference(policy, req, { missing: "unknown" }, trace)
  if (out.type !== "decision") throw new Error("the reference interpreter asked for a fact with missing: unknown")
  const all = [...policy.guards, ...policy.rules, policy.default]
  const span = all.find((r) => r.name === out.decision.rule)?.span
  const truth = (v: Truth | "pending"): Truth => (v === "pending" ? "unknown" : v)
  return {
    policy: policy.name,
    request: requestText(req),
    decision: out.decision,
    rule: out.decision.rule,
    ruleSpan: span,
    location: location(span),
    rules: trace.rules.map((r) => {
      const rule = all.find((x) => x.name === r.rule)
      const loc = location(rule?.span)
      return { rule: r.rule, kind: rule?.kind ?? "rule", value: truth(r.value), ...(loc === undefined ? {} : { location: loc }) }
    }),
    steps: trace.steps.map((s) => ({ rule: s.rule, matcher: matcherText(s.matcher, s.cond.k === "match" ? s.cond.setRef : undefined), value: truth(s.value) })),
    factsUsed: [...trace.facts].sort().map((fact) => ({ fact, value: factValue(req, fact) })),
  }
}

/** Human text: the outcome, the deciding rule, each rule visited with its matchers, the facts used. */
export const renderExplain = (r: ExplainResult): string => {
  const lines: string[] = []
  lines.push(`${r.request}`)
  lines.push(`  → ${formatDecision(r.decision)}${r.location === undefined ? "" : ` (${r.location})`} in policy ${r.policy}`)
  const mods = r.decision.modifiers.map((m) => m.k === "tag" ? `tag "${m.value}"` : m.k === "idle" ? `idle ${m.ms}ms` : m.k === "rate" ? `limit ${m.count}/${m.perSeconds}s per ${m.per}` : m.k === "conns" ? `limit ${m.max} per ${m.per}` : m.k === "bandwidth" ? `bandwidth ${m.bytesPerSecond}B/s per ${m.per}` : "log")
  if (mods.length > 0) lines.push(`  modifiers: ${mods.join(", ")}`)
  lines.push("")
  lines.push("rules visited:")
  const width = Math.max(0, ...r.steps.map((s) => s.matcher.length))
  for (const rule of r.rules) {
    const head = rule.kind === "default" ? "default" : `${rule.kind} ${rule.rule}`
    lines.push(`  ${head}: ${rule.value}${rule.location === undefined ? "" : `  (${rule.location})`}`)
    for (const s of r.steps.filter((x) => x.rule === rule.rule)) lines.push(`    ${s.matcher.padEnd(width)}  ${s.value}`)
  }
  lines.push("")
  if (r.factsUsed.length === 0) lines.push("facts used: none")
  else lines.push(`facts used: ${r.factsUsed.map((f) => `${f.fact} = ${f.value === null ? "unknown" : f.value}`).join(", ")}`)
  return lines.join("\n") + "\n"
}
