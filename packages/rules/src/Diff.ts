/**
 * `proxyd diff OLD NEW`: concrete requests whose outcome changes between two
 * versions of a policy.
 *
 * Details: a rule is *changed* when no rule of the other version has its
 * kind, name, condition and action, or when the set of rules before it differs
 * (moved). Only changed rules and the defaults can start a difference. From
 * each DNF term of each added/removed/modified rule and of each default, a
 * small depth-first search solves the term, evaluates the request on both
 * versions with the reference interpreter, and while the request is taken by
 * another rule (an earlier one of its own version, or, once the rule decides,
 * the other version's decider) adds the negation of one literal of that rule
 * (or makes the destination an IP address, so that a domain test is unknown)
 * and solves again. That finds added, removed and modified rules,
 * widened/narrowed sets and changed defaults. For every changed rule the
 * search also starts from its terms conjoined with each term of every other
 * rule (when they may meet), which finds the requests two reordered rules
 * both match. Every entry is a request evaluated on both versions.
 *
 * Gotchas: results are deterministic (fixed search order) and bounded: at most
 * `limit` entries, one per (rule before, rule after) pair, a budget of solver
 * calls and of rule pairs. Modifiers are not compared, only the action and
 * the deciding rule. No entries means none was found, not a proof.
 */
import type { ActionIR, Decision, PolicyIR, Request, RuleIR } from "./Ir.ts"
import { evaluateReference, type RequestView, view } from "./Reference.ts"
import { flip, type Lit, mayMeet, solveTerm, type Term, truth } from "./Space.ts"
import { actionKey } from "./Analysis.ts"
import { dnfOf, formatRequest } from "./Witness.ts"

export interface DiffEntry { readonly request: Request; readonly before: Decision; readonly after: Decision }

/** Solver calls allowed per diff. */
export const DIFF_BUDGET = 20_000
/** (changed rule, other rule) pairs looked at. */
export const MAX_PAIRS = 1_000_000
const MAX_STEPS = 8
/** Solver calls per guided search. */
const REACH_SOLVES = 24
const MAX_TERMS_PER_RULE = 8

const OPTS = { missing: "unknown" } as const

/** "`dst.ip` is known": a term with it and without `dst.domain` gets an IP destination. */
const ANY_IP: Lit = { m: { kind: "ip", field: "dst.ip", cidrs: [{ family: 4, addr: 0n, prefix: 0 }, { family: 6, addr: 0n, prefix: 0 }] }, neg: false }

const decide = (p: PolicyIR, req: Request): Decision => {
  const o = evaluateReference(p, req, OPTS)
  if (o.type !== "decision") throw new Error("reference evaluation with missing: unknown always decides")
  return o.decision
}

const sameDecision = (a: Decision, b: Decision): boolean => a.rule === b.rule && a.ruleKind === b.ruleKind && actionKey(a.action) === actionKey(b.action)

const allRules = (p: PolicyIR): ReadonlyArray<RuleIR> => [...p.guards, ...p.rules, p.default]

const findRule = (p: PolicyIR, d: Decision): RuleIR | undefined =>
  d.ruleKind === "default" ? p.default : (d.ruleKind === "guard" ? p.guards : p.rules).find((r) => r.name === d.rule)

const termsOf = (r: RuleIR): ReadonlyArray<Term> => {
  const d = dnfOf(r.cond)
  return d.ok ? d.terms.slice(0, MAX_TERMS_PER_RULE) : []
}

const litTrue = (l: Lit, v: RequestView): boolean => truth({ k: "match", m: l.m }, v) === (l.neg ? "false" : "true")

/** A rule's identity for change detection: kind, name, condition and action, without source spans. */
const ruleKey = (r: RuleIR): string =>
  JSON.stringify([r.kind, r.name, r.cond, r.action], (k, v: unknown) => (k === "span" ? undefined : typeof v === "bigint" ? v.toString() : v))

/** Rules of `p` absent from `q`, or whose set of earlier rules differs (moved). */
const changedRules = (p: PolicyIR, q: PolicyIR): ReadonlyArray<RuleIR> => {
  const qKeys = new Set([...q.guards, ...q.rules].map(ruleKey))
  const pKeys = new Set([...p.guards, ...p.rules].map(ruleKey))
  const out = [...p.guards, ...p.rules].filter((r) => !qKeys.has(ruleKey(r)))
  const pRuleKeys = p.rules.map(ruleKey)
  const byKey = new Map(pRuleKeys.map((k, i) => [k, p.rules[i]!]))
  const pSeq = pRuleKeys.filter((k) => qKeys.has(k))
  const qSeq = q.rules.map(ruleKey).filter((k) => pKeys.has(k))
  const qIndex = new Map(qSeq.map((k, i) => [k, i]))
  const balance = new Map<string, number>()
  let nonzero = 0
  const bump = (k: string, d: number): void => {
    const before = balance.get(k) ?? 0
    const after = before + d
    balance.set(k, after)
    if (before === 0 && after !== 0) nonzero++
    else if (before !== 0 && after === 0) nonzero--
  }
  // Prefix sets equal at i (before adding element i) and same position: same earlier rules.
  for (let i = 0; i < pSeq.length; i++) {
    const k = pSeq[i]!
    if (qIndex.get(k) !== i || nonzero !== 0) out.push(byKey.get(k)!)
    bump(k, 1)
    bump(qSeq[i]!, -1)
  }
  return out
}

/** Requests whose decision differs between `before` and `after`, at most `limit`, one per (before rule, after rule) pair. */
export const diffPolicies = (before: PolicyIR, after: PolicyIR, limit = 50): ReadonlyArray<DiffEntry> => {
  const found = new Map<string, DiffEntry>()
  const seen = new Set<string>()
  let budget = DIFF_BUDGET
  let pairs = 0
  const full = (): boolean => found.size >= limit || budget <= 0

  const solve = (term: Term): Request | undefined => {
    budget--
    const r = solveTerm(term)
    return r.t === "sat" ? r.request : undefined
  }

  /**
   * Ways to avoid `d` on `v`: negate a literal of its term that is true there,
   * or, when that term tests the domain the witness only has by default, make
   * the destination an IP address (the domain is then unknown).
   */
  const avoidOptions = (d: RuleIR, v: RequestView, base: Term): ReadonlyArray<Lit> => {
    for (const dt of termsOf(d)) {
      if (!dt.every((l) => litTrue(l, v))) continue
      const byDomain = dt.some((l) => l.m.field === "dst.domain") && !base.some((l) => l.m.field === "dst.domain")
      return byDomain ? [...dt.map(flip), ANY_IP] : dt.map(flip)
    }
    return []
  }

  /**
   * Guided search from `term` of `target` (a rule of `own`), against `other`:
   * a depth-first search over "avoid the rule that took the request" steps.
   * While `own` decides by an earlier rule, avoid it; once `target` decides,
   * record any difference and avoid the other version's decider to find the
   * next (before, after) pair.
   */
  const reach = (own: PolicyIR, other: PolicyIR, target: RuleIR, term: Term): void => {
    // The default is reached only by avoiding every rule: it gets a larger share.
    let local = target.kind === "default" ? 4 * REACH_SOLVES : REACH_SOLVES
    const go = (extras: ReadonlyArray<Lit>, depth: number): void => {
      if (depth >= MAX_STEPS || local <= 0 || full()) return
      local--
      const w = solve([...term, ...extras])
      if (w === undefined) return
      const key = JSON.stringify(w)
      const dOwn = decide(own, w)
      const dOther = decide(other, w)
      if (!seen.has(key)) {
        seen.add(key)
        if (!sameDecision(dOwn, dOther)) {
          const [b, a] = own === before ? [dOwn, dOther] : [dOther, dOwn]
          const pair = `${b.ruleKind} ${b.rule}\u0000${a.ruleKind} ${a.rule}`
          if (!found.has(pair)) found.set(pair, { request: w, before: b, after: a })
        }
      }
      const takenEarlier = dOwn.rule !== target.name || dOwn.ruleKind !== target.kind
      const blocker = takenEarlier ? findRule(own, dOwn) : findRule(other, dOther)
      if (blocker === undefined || blocker.kind === "default") return
      for (const lit of avoidOptions(blocker, view(w, OPTS), [...term, ...extras])) go([...extras, lit], depth + 1)
    }
    go([], 0)
  }

  // Only changed rules (and the defaults) can start a difference: a request
  // decided by an unchanged rule in one version and by another rule in the
  // other is decided there by a changed rule, whose own search finds it.
  const changed = [[before, after, changedRules(before, after)], [after, before, changedRules(after, before)]] as const
  if (changed.every(([, , c]) => c.length === 0) && actionKey(before.default.action) === actionKey(after.default.action)) return []
  for (const [own, other, cs] of changed) {
    const otherKeys = new Set(allRules(other).map(ruleKey))
    // A rule only moved differs only where it overlaps another: left to the pairs below.
    for (const r of [...cs.filter((c) => !otherKeys.has(ruleKey(c))), own.default]) for (const t of termsOf(r)) reach(own, other, r, t)
  }
  for (const [own, other, cs] of changed) {
    const partners = [...allRules(own), ...allRules(other)].filter((r) => r.kind !== "default")
    for (const c of cs) {
      for (const tc of termsOf(c)) {
        for (const s of partners) {
          if (full() || ++pairs > MAX_PAIRS) return [...found.values()]
          if (s === c) continue
          for (const ts of termsOf(s).slice(0, 4)) if (mayMeet(tc, ts)) reach(own, other, c, [...tc, ...ts])
        }
      }
    }
  }
  return [...found.values()]
}

const actionText = (a: ActionIR): string => {
  switch (a.k) {
    case "allow": return "allow"
    case "block": return a.message === undefined ? "block" : `block ${JSON.stringify(a.message)}`
    case "redirect": return `redirect "${a.host}:${a.port}"`
    case "via": return `via ${a.target}${a.else === undefined ? "" : ` else ${actionText(a.else)}`}`
    case "tor": return `tor ${a.target}`
  }
}

/** `allow (rule web)`, `block "ads" (guard no-ads)`, `block (default)`. */
export const formatDecision = (d: Decision): string => `${actionText(d.action)} (${d.ruleKind === "default" ? "default" : `${d.ruleKind} ${d.rule}`})`

/** One line per entry: the request, then the decision before and after. */
export const formatEntry = (e: DiffEntry): string => `${formatRequest(e.request)}: ${formatDecision(e.before)} -> ${formatDecision(e.after)}`
