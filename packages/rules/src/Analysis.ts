/**
 * Static analysis of one policy: unreachable rules (L050), shadowed rules
 * (L051) and overlapping rules whose order decides the outcome (L052), each
 * with a concrete witness request.
 *
 * Details:
 *  - Conditions are expanded to DNF and each term solved per field (`Space.ts`).
 *  - L050: every DNF term is provably unsatisfiable (a complete field solver
 *    found no value). A term the solver gave up on counts as satisfiable.
 *  - L051: every satisfiable term `t` of rule R is covered by the guards and
 *    earlier rules: either one earlier condition has a term `e` with `t ⇒ e`
 *    (each literal of `e` is implied: its field is known whenever `t` is true
 *    and `t ∧ ¬literal` is unsatisfiable), or a union of earlier terms covers
 *    it: each reduced to the one literal `t` does not imply, `t ∧ ¬l1 ∧ … ∧ ¬lk`
 *    is unsatisfiable (e.g. ports 1..100 and 101..200 cover 50..150). Only earlier conditions that are `true` on `t`'s witness
 *    are tried (a cheap filter: a cover must hold there too).
 *  - L052 (a heuristic, so that `check` stays quiet on ordinary policies):
 *    rule R and an earlier rule E with a different action are reported when
 *    (1) a DNF term of E and one of R test a common field (rules on unrelated
 *    fields, like "allow user admin" before "block port 22", are orthogonal:
 *    order deciding between them is the point of writing them in that order),
 *    (2) the two terms together are satisfiable and the reference interpreter
 *    decides that witness by E, (3) E is not a narrowing of R: some request E
 *    matches is not matched by R (the intended "specific exception before a
 *    general rule" pattern, `allow api.ads.com` before `block .ads.com`, is
 *    not reported), (4) R is neither shadowed nor unreachable. At most one L052
 *    per rule: the first such E.
 *  - Every witness is checked with `evaluateReference` (`missing: "unknown"`)
 *    before it is reported, so the reports are sound by construction.
 *
 * Gotchas: the work is bounded (pairs of rules × terms); a policy beyond the
 * budget gets a single L059 warning saying where the analysis stopped.
 */
import type { Span } from "./Ast.ts"
import { type Diagnostic, fileSpan, type Note, warning } from "./Diagnostic.ts"
import type { ActionIR, Field, PolicyIR, Request, RuleIR } from "./Ir.ts"
import { evalCond, evaluateReference, type RequestView, view } from "./Reference.ts"
import { ALWAYS_KNOWN, byField, flip, implies, type Lit, MAX_TERMS, mayMeet, solveTerm, type Term, truth } from "./Space.ts"
import { dnfOf, formatRequest } from "./Witness.ts"

export { findWitness, formatRequest, witness, type WitnessResult } from "./Witness.ts"

/** Rule pairs × terms examined before the analysis stops with L059. */
export const WORK_BUDGET = 12_000_000
/** Work units of one term solve (a unit: one condition evaluated on one request). */
const SOLVE_COST = 50
/** Term pairs solved per rule when looking for an overlap. */
const MAX_OVERLAP_SOLVES = 32
/** Covering rules named in an L051 message (the rest are counted). */
const MAX_CITED = 3
/** Earlier terms reduced, and literals negated together, for one union cover. */
const MAX_UNION_CHECKS = 32
const MAX_UNION = 32

interface SolvedTerm {
  readonly term: Term
  /** One bit per field the term tests. */
  readonly mask: number
  readonly fields: Map<Field, Array<Lit>>
  readonly request: Request
  readonly view: RequestView
}

interface Entry {
  readonly rule: RuleIR
  readonly action: string
  /** All DNF terms, or undefined when the expansion gave up. */
  readonly terms: ReadonlyArray<Term> | undefined
  readonly sat: ReadonlyArray<SolvedTerm>
  /** Some term could not be decided (or the DNF gave up). */
  readonly unknown: boolean
  readonly unsatFields: ReadonlyArray<Field>
}

const OPTS = { missing: "unknown" } as const
const FIELDS: ReadonlyArray<Field> = ["src.ip", "dst.ip", "src.port", "dst.port", "dst.domain", "user", "group", "listener", "protocol", "command", "auth", "src.country", "dst.country", "src.asn", "dst.asn", "time"]
const FIELD_BIT: ReadonlyMap<Field, number> = new Map(FIELDS.map((f, i) => [f, 1 << i]))
const ALWAYS_KNOWN_MASK = [...ALWAYS_KNOWN].reduce((m, f) => m | FIELD_BIT.get(f)!, 0)

const prepare = (rule: RuleIR): Entry => {
  const dnf = dnfOf(rule.cond)
  const action = actionKey(rule.action)
  if (!dnf.ok) return { rule, action, terms: undefined, sat: [], unknown: true, unsatFields: [] }
  const sat: Array<SolvedTerm> = []
  const unsatFields: Array<Field> = []
  let unknown = false
  for (const term of dnf.terms) {
    const r = solveTerm(term)
    if (r.t === "sat") {
      const fields = byField(term)
      let mask = 0
      for (const f of fields.keys()) mask |= FIELD_BIT.get(f)!
      sat.push({ term, mask, fields, request: r.request, view: view(r.request, OPTS) })
    }
    else if (r.t === "unsat") { if (!unsatFields.includes(r.field)) unsatFields.push(r.field) }
    else unknown = true
  }
  return { rule, action, terms: dnf.terms, sat, unknown, unsatFields }
}

const termImplies = (t: SolvedTerm, e: Term): boolean => e.every((l) => implies(t.term, t.fields, l))

export const actionKey = (a: ActionIR): string => {
  switch (a.k) {
    case "allow": return "allow"
    case "block": return `block ${JSON.stringify(a.message ?? null)}`
    case "redirect": return `redirect ${a.host}:${a.port}`
    case "via": return `via ${a.target}${a.else === undefined ? "" : ` else ${actionKey(a.else)}`}`
    case "tor": return `tor ${a.target}`
  }
}

/** "allowed", "blocked", "sent via `x`", ... */
export const describeOutcome = (a: ActionIR): string => {
  switch (a.k) {
    case "allow": return "allowed"
    case "block": return a.message === undefined ? "blocked" : `blocked (${JSON.stringify(a.message)})`
    case "redirect": return `redirected to ${a.host}:${a.port}`
    case "via": return `sent via \`${a.target}\``
    case "tor": return `sent over tor \`${a.target}\``
  }
}

const fallbackSpan = (policy: PolicyIR): Span => policy.span ?? fileSpan("<policy>")
const ruleSpan = (policy: PolicyIR, r: RuleIR): Span => r.span ?? fallbackSpan(policy)
const kindName = (r: RuleIR): string => (r.kind === "guard" ? "guard" : "rule")
/** "rule `web` (line 12)", or "(other.rules:12)" when it is in another file than `from`. */
const cite = (from: RuleIR) => (r: RuleIR): string =>
  `${kindName(r)} \`${r.name}\`${r.span === undefined ? "" : r.span.file === from.span?.file ? ` (line ${r.span.start.line})` : ` (${r.span.file}:${r.span.start.line})`}`
const listOf = (xs: ReadonlyArray<string>): string => (xs.length <= 1 ? xs.join("") : `${xs.slice(0, -1).join(", ")} and ${xs[xs.length - 1]}`)
const hereNote = (r: RuleIR): ReadonlyArray<Note> => (r.span === undefined ? [] : [{ message: `${kindName(r)} \`${r.name}\` is here`, span: r.span }])

export type FindingCode = "L050" | "L051" | "L052" | "L059"

/** One analysis result, before it is worded as a diagnostic. */
export interface Finding {
  readonly code: FindingCode
  readonly rule: RuleIR
  /** L051: the guards/rules that cover it; L052: the earlier rule that wins. */
  readonly by: ReadonlyArray<RuleIR>
  /** L051/L052: a verified witness (see `analyzePolicy`). */
  readonly request?: Request
  /** L050: the fields whose tests contradict each other. */
  readonly fields?: ReadonlyArray<Field>
  /** L059: rules left unanalysed. */
  readonly skipped?: number
}

/** The analysis results of one policy, in rule order (guards' L050 first). */
export const findings = (policy: PolicyIR): ReadonlyArray<Finding> => {
  const out: Array<Finding> = []
  const meter = { work: 0 }
  const load = (rule: RuleIR): Entry => {
    const e = prepare(rule)
    meter.work += SOLVE_COST * (e.terms?.length ?? MAX_TERMS)
    if (e.terms !== undefined && !e.unknown && e.sat.length === 0) out.push({ code: "L050", rule: e.rule, by: [], fields: e.unsatFields })
    return e
  }
  const guards = policy.guards.map(load)
  const rules: Array<Entry> = []
  let earlierTerms = guards.reduce((n, e) => n + e.sat.length, 0)

  for (let j = 0; j < policy.rules.length; j++) {
    if (meter.work > WORK_BUDGET) {
      out.push({ code: "L059", rule: policy.rules[j]!, by: [], skipped: policy.rules.length - j })
      break
    }
    const r = load(policy.rules[j]!)
    const earlier = [...guards, ...rules]
    rules.push(r)
    if (r.sat.length === 0) continue
    // Evaluating every earlier condition on R's witnesses, and pairing terms for overlaps.
    meter.work += r.sat.length * (earlier.length + earlierTerms)
    earlierTerms += r.sat.length
    // Which earlier conditions are true on each of R's term witnesses.
    const trueOn = r.sat.map((t) => earlier.map((e) => truth(e.rule.cond, t.view) === "true"))

    const shadow = r.unknown ? undefined : shadowedBy(r, earlier, trueOn, meter)
    if (shadow !== undefined) {
      const w = r.sat[0]!.request
      const d = evaluateReference(policy, w, OPTS)
      const verified = evalCond(r.rule.cond, view(w, OPTS)) === "true" && d.type === "decision" && (d.decision.ruleKind === "guard" || d.decision.rule !== r.rule.name)
      if (verified) {
        out.push({ code: "L051", rule: r.rule, by: shadow.map((e) => e.rule), request: w })
        continue
      }
    }
    const overlap = meter.work > WORK_BUDGET ? undefined : overlapWith(policy, r, guards.length, earlier, meter)
    if (overlap !== undefined) out.push({ code: "L052", rule: r.rule, by: [overlap.e.rule], request: overlap.request })
  }
  return out
}

/**
 * Lints over one policy: L050 unreachable rule (its condition can never be
 * true), L051 rule shadowed by earlier rules or guards (every request it would
 * take is taken earlier), L052 overlapping rules with different outcomes where
 * order decides; L059 when the analysis stopped early (budget). Warnings, at
 * the rule's span, with a note at the earlier rule's span. Every witness in a
 * message has been checked with the reference interpreter.
 */
export const analyzePolicy = (policy: PolicyIR): ReadonlyArray<Diagnostic> => findings(policy).map((f) => toDiagnostic(policy, f))

const toDiagnostic = (policy: PolicyIR, f: Finding): Diagnostic => {
  const r = f.rule
  const span = ruleSpan(policy, r)
  switch (f.code) {
    case "L050": {
      const fields = (f.fields ?? []).map((x) => `\`${x}\``)
      return warning("L050", `${kindName(r)} \`${r.name}\` can never match: its condition is never true`, span, {
        hint: fields.length === 0 ? "fix the condition or remove the rule" : `no value of ${listOf(fields)} satisfies its tests (they contradict each other, or test an empty set); fix the condition or remove the rule`,
      })
    }
    case "L051": {
      const anyGuard = f.by.some((e) => e.kind === "guard")
      const first = f.by[0]!
      const why = anyGuard && f.by.length === 1 ? "the guard blocks every request it matches" : "every request it matches is decided earlier"
      const shown = f.by.slice(0, MAX_CITED).map(cite(r))
      if (f.by.length > MAX_CITED) shown.push(`${f.by.length - MAX_CITED} more`)
      return warning("L051", `rule \`${r.name}\` is shadowed by ${listOf(shown)}: ${why}; e.g. ${formatRequest(f.request!)}`, span, {
        hint: !anyGuard ? `move it above \`${first.name}\` or remove it`
          : f.by.length === 1 ? `remove it, or narrow guard \`${first.name}\``
          : "remove it, or narrow the guards and rules above that cover it",
        notes: f.by.slice(0, MAX_CITED).flatMap(hereNote),
      })
    }
    case "L052": {
      const e = f.by[0]!
      return warning("L052", `rule \`${r.name}\` overlaps ${cite(r)(e)}, which comes first and decides differently; e.g. ${formatRequest(f.request!)}: ${describeOutcome(e.action)} by \`${e.name}\`, would be ${describeOutcome(r.action)} by \`${r.name}\``, span, {
        hint: `order decides these requests: move \`${r.name}\` above \`${e.name}\` if it should win, or narrow one of the conditions`,
        notes: hereNote(e),
      })
    }
    case "L059":
      return warning("L059", `analysis of policy \`${policy.name}\` stopped at rule \`${r.name}\`: the policy is too large to compare every pair of rules`, span, {
        hint: `shadowed and overlapping rules from \`${r.name}\` on (${f.skipped ?? 0} rules) are not reported`,
      })
  }
}

/** The earlier entries that together cover every satisfiable term of `r`, or undefined. */
const shadowedBy = (r: Entry, earlier: ReadonlyArray<Entry>, trueOn: ReadonlyArray<ReadonlyArray<boolean>>, meter: { work: number }): ReadonlyArray<Entry> | undefined => {
  const used: Array<Entry> = []
  for (let ti = 0; ti < r.sat.length; ti++) {
    const t = r.sat[ti]!
    let cover: Entry | undefined
    for (let i = 0; i < earlier.length && cover === undefined; i++) {
      const e = earlier[i]!
      if (trueOn[ti]![i] && e.terms !== undefined && e.terms.some((et) => termImplies(t, et))) cover = e
    }
    if (cover !== undefined) {
      if (!used.includes(cover)) used.push(cover)
      continue
    }
    // A cover (single or union) also covers t's own witness: something earlier must be true there.
    if (!trueOn[ti]!.some((x) => x)) return undefined
    const union = unionCover(t, earlier, meter)
    if (union === undefined) return undefined
    for (const e of union) if (!used.includes(e)) used.push(e)
  }
  return used
}

/**
 * Earlier terms whose union covers `t`. Each earlier term that can meet `t`
 * and tests only fields `t` makes known is reduced to the literals `t` does not
 * imply; when one literal is left, "that literal is not true" is "its negation
 * is true" (the field is known), so `t` is covered when `t ∧ ¬l1 ∧ … ∧ ¬lk` is
 * impossible.
 */
const unionCover = (t: SolvedTerm, earlier: ReadonlyArray<Entry>, meter: { work: number }): ReadonlyArray<Entry> | undefined => {
  const flips: Array<Lit> = []
  const from: Array<Entry> = []
  const known = t.mask | ALWAYS_KNOWN_MASK
  let checks = 0
  for (const e of earlier) {
    for (const et of e.sat) {
      if ((et.mask & ~known) !== 0 || !mayMeet(t.term, et.term)) continue
      if (++checks > MAX_UNION_CHECKS || flips.length === MAX_UNION) return undefined
      meter.work += SOLVE_COST * et.term.length
      const rest = et.term.filter((l) => !implies(t.term, t.fields, l))
      if (rest.length !== 1) continue
      flips.push(flip(rest[0]!))
      if (!from.includes(e)) from.push(e)
    }
  }
  if (flips.length === 0) return undefined
  return solveTerm([...t.term, ...flips]).t === "unsat" ? from : undefined
}

const overlapWith = (policy: PolicyIR, r: Entry, nGuards: number, earlier: ReadonlyArray<Entry>, meter: { work: number }): { readonly e: Entry; readonly request: Request } | undefined => {
  let solves = 0
  for (let i = nGuards; i < earlier.length; i++) {
    const e = earlier[i]!
    if (e.sat.length === 0 || e.action === r.action) continue
    let found: Request | undefined
    for (const rt of r.sat) {
      for (const et of e.sat) {
        if ((rt.mask & et.mask) === 0 || !mayMeet(rt.term, et.term)) continue
        if (solves++ === MAX_OVERLAP_SOLVES) return undefined
        // A solve and a reference evaluation (as long as the policy).
        meter.work += earlier.length
        const s = solveTerm([...et.term, ...rt.term])
        if (s.t !== "sat") continue
        const v = view(s.request, OPTS)
        const d = evaluateReference(policy, s.request, OPTS)
        if (evalCond(r.rule.cond, v) === "true" && evalCond(e.rule.cond, v) === "true" && d.type === "decision" && d.decision.ruleKind === "rule" && d.decision.rule === e.rule.name) {
          found = s.request
          break
        }
      }
      if (found !== undefined) break
    }
    if (found === undefined) continue
    // E narrower than R: the intended exception pattern.
    if (!e.unknown && r.terms !== undefined && e.sat.every((et) => r.terms!.some((rt) => termImplies(et, rt)))) continue
    return { e, request: found }
  }
  return undefined
}
