/**
 * The reference interpreter: evaluates a `PolicyIR` by walking every rule in
 * order. Slow and obviously right; it defines the semantics (see `Ir.ts`) that
 * the compiled evaluator is tested against, and it produces `explain` traces.
 */
import type { Cond, Decision, EvalOptions, FactName, Matcher, Outcome, PolicyIR, Request, RuleIR } from "./Ir.ts"
import { cidrContains, type Ip, parseIp } from "./Ip.ts"
import { domainPatternMatches, isOnion, normalizeDomain, stringPatternMatches, timeMatches } from "./Match.ts"

/** Three-valued truth, plus "pending": a costly fact not looked up yet. */
export type Truth = "true" | "false" | "unknown"
type Value = Truth | { readonly pending: FactName }

export interface TraceStep {
  readonly rule: string
  readonly matcher: Matcher
  readonly cond: Cond
  readonly value: Truth | "pending"
}

export interface Trace {
  readonly steps: Array<TraceStep>
  readonly rules: Array<{ readonly rule: string; readonly value: Truth | "pending" }>
  readonly facts: Set<string>
}

/** The facts about one request, derived once. */
export interface RequestView {
  readonly req: Request
  readonly domain: string | undefined // normalised; undefined when the destination is an IP literal
  readonly onion: boolean
  readonly dstLiteral: Ip | undefined
  readonly srcIp: Ip | undefined
  readonly missing: EvalOptions["missing"]
}

export const view = (req: Request, options: EvalOptions): RequestView => {
  const host = req.dstHost.startsWith("[") && req.dstHost.endsWith("]") ? req.dstHost.slice(1, -1) : req.dstHost
  const dstLiteral = parseIp(host)
  const domain = dstLiteral === undefined ? normalizeDomain(host) : undefined
  return {
    req,
    domain,
    onion: domain !== undefined && isOnion(domain),
    dstLiteral,
    srcIp: req.srcIp === undefined ? undefined : parseIp(req.srcIp),
    missing: options.missing,
  }
}

const bool = (b: boolean): Truth => (b ? "true" : "false")

/** A costly fact: its value, `null` when missing, or pending. */
const fact = <K extends FactName>(v: RequestView, name: K): Exclude<NonNullable<Request["facts"]>[K], undefined> | { pending: FactName } => {
  const value = v.req.facts?.[name]
  if (value === undefined) return v.missing === "need" ? { pending: name } : (null as Exclude<NonNullable<Request["facts"]>[K], undefined>)
  return value as Exclude<NonNullable<Request["facts"]>[K], undefined>
}

const isPending = (x: unknown): x is { pending: FactName } => typeof x === "object" && x !== null && "pending" in x

/** Evaluates one leaf. */
export const evalMatcher = (m: Matcher, v: RequestView): Value => {
  const req = v.req
  switch (m.kind) {
    case "ip": {
      let ip: Ip | undefined
      if (m.field === "src.ip") ip = v.srcIp
      else if (v.dstLiteral !== undefined) ip = v.dstLiteral
      else if (v.onion) ip = undefined
      else {
        const f = fact(v, "dst.ip")
        if (isPending(f)) return f
        ip = f === null ? undefined : parseIp(f)
      }
      if (ip === undefined) return "unknown"
      const addr = ip
      return bool(m.cidrs.some((c) => cidrContains(c, addr)))
    }
    case "port": {
      const port = m.field === "dst.port" ? req.dstPort : req.srcPort
      if (port === undefined) return "unknown"
      return bool(m.ranges.some(([lo, hi]) => port >= lo && port <= hi))
    }
    case "domain":
      if (v.domain === undefined) return "unknown"
      return bool(m.patterns.some((p) => domainPatternMatches(p, v.domain!)))
    case "string":
      if (req.user === undefined) return "unknown"
      return bool(m.patterns.some((p) => stringPatternMatches(p, req.user!)))
    case "group": {
      if (req.user === undefined) return "unknown"
      const groups = req.groups ?? []
      return bool(groups.some((g) => m.values.includes(g)))
    }
    case "enum": {
      const value = m.field === "command" ? req.command : req[m.field]
      if (value === undefined) return "unknown"
      return bool(m.values.includes(value))
    }
    case "country": {
      if (m.field === "dst.country" && v.onion) return "unknown"
      const f = fact(v, m.field)
      if (isPending(f)) return f
      if (f === null) return "unknown"
      return bool(m.values.includes(f.toUpperCase()))
    }
    case "asn": {
      if (m.field === "dst.asn" && v.onion) return "unknown"
      const f = fact(v, m.field)
      if (isPending(f)) return f
      if (f === null) return "unknown"
      return bool(m.values.includes(f))
    }
    case "time":
      if (req.time === undefined) return "unknown"
      return bool(timeMatches(m.days, m.windows, m.tz, req.time))
    case "plugin": {
      const value = req.plugin?.[m.name]
      if (value === undefined || value === null) return "unknown"
      return bool(m.values.includes(value))
    }
  }
}

/** Kleene logic; a pending operand only matters when it could change the result. */
export const evalCond = (c: Cond, v: RequestView, onLeaf?: (c: Cond & { k: "match" }, value: Value) => void): Value => {
  switch (c.k) {
    case "true": return "true"
    case "match": {
      const value = evalMatcher(c.m, v)
      onLeaf?.(c, value)
      return value
    }
    case "not": {
      const x = evalCond(c.c, v, onLeaf)
      return x === "true" ? "false" : x === "false" ? "true" : x
    }
    case "and": {
      let pending: Value | undefined
      let unknown = false
      for (const item of c.items) {
        const x = evalCond(item, v, onLeaf)
        if (x === "false") return "false"
        if (x === "unknown") unknown = true
        else if (x !== "true") pending ??= x
      }
      return pending ?? (unknown ? "unknown" : "true")
    }
    case "or": {
      let pending: Value | undefined
      let unknown = false
      for (const item of c.items) {
        const x = evalCond(item, v, onLeaf)
        if (x === "true") return "true"
        if (x === "unknown") unknown = true
        else if (x !== "false") pending ??= x
      }
      return pending ?? (unknown ? "unknown" : "false")
    }
  }
}

const decide = (rule: RuleIR): Outcome => ({
  type: "decision",
  decision: { action: rule.kind === "guard" ? { k: "block", ...(rule.action.k === "block" && rule.action.message !== undefined ? { message: rule.action.message } : {}) } : rule.action, rule: rule.name, ruleKind: rule.kind, modifiers: rule.modifiers } satisfies Decision,
})

/** Evaluates a policy for a request, rule by rule. With `trace`, records every leaf and rule visited. */
export const evaluateReference = (policy: PolicyIR, req: Request, options: EvalOptions, trace?: Trace): Outcome => {
  const v = view(req, options)
  const run = (rule: RuleIR): Value => {
    const value = evalCond(rule.cond, v, trace === undefined ? undefined : (c, value) => {
      trace.steps.push({ rule: rule.name, matcher: c.m, cond: c, value: typeof value === "string" ? value : "pending" })
      if (c.m.kind === "ip" || c.m.kind === "country" || c.m.kind === "asn") trace.facts.add(c.m.field)
    })
    trace?.rules.push({ rule: rule.name, value: typeof value === "string" ? value : "pending" })
    return value
  }
  for (const rule of [...policy.guards, ...policy.rules]) {
    const value = run(rule)
    if (value === "true") return decide(rule)
    if (typeof value !== "string") return { type: "need", fact: value.pending }
  }
  run(policy.default)
  return decide(policy.default)
}

/** Runs the runtime's loop (evaluate, fetch the needed fact, evaluate again) with a fact oracle. */
export const evaluateWithOracle = (
  evaluate: (req: Request) => Outcome,
  req: Request,
  oracle: (fact: FactName) => string | number | null,
  maxRounds = 8,
): { decision: Decision; asked: ReadonlyArray<FactName> } => {
  const asked: FactName[] = []
  let current = req
  for (let round = 0; round < maxRounds; round++) {
    const out = evaluate(current)
    if (out.type === "decision") return { decision: out.decision, asked }
    if (asked.includes(out.fact)) throw new Error(`evaluator asked for ${out.fact} twice`)
    asked.push(out.fact)
    current = { ...current, facts: { ...current.facts, [out.fact]: oracle(out.fact) } }
  }
  throw new Error("evaluator did not decide after every fact was given")
}
