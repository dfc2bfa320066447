/**
 * The policy engine the runtime evaluates with: compile a policy once, evaluate per request.
 *
 * Details: `Compiler.compile` + `Evaluator.evaluate` from `@proxyd/rules` with
 * `missing: "need"` (the first costly fact a reachable matcher needs is
 * returned; the runtime fetches it and evaluates again, see `Decide.ts`).
 * `Reference.evaluateReference` defines the same semantics.
 * Plugin fields: `attachFacts` gives a compiled policy the plugins' fact
 * sources for the plugin fields the policy mentions; `evaluate` fills
 * `Request.plugin` with them (once per request) before evaluating.
 */
import { Compiler, Evaluator } from "@proxyd/rules"
import type { Ir } from "@proxyd/rules"

export type Compiled = Compiler.CompiledPolicy

export const compile = (policy: Ir.PolicyIR): Compiled => Compiler.compile(policy)

const NEED: Ir.EvalOptions = { missing: "need" }

interface FactSourceLike { readonly fields: ReadonlyArray<string>; get(field: string, request: Ir.Request): string | null }

const factsOf = new WeakMap<Compiled, ReadonlyArray<readonly [string, FactSourceLike]>>()

const pluginFields = (c: Ir.Cond, out: Set<string>): void => {
  if (c.k === "match") { if (c.m.kind === "plugin") out.add(c.m.name) }
  else if (c.k === "not") pluginFields(c.c, out)
  else if (c.k === "and" || c.k === "or") for (const i of c.items) pluginFields(i, out)
}

/** Registers the fact sources for the plugin fields `policy` uses (a field no source provides stays unknown). */
export const attachFacts = (c: Compiled, policy: Ir.PolicyIR, sources: ReadonlyArray<FactSourceLike>): void => {
  const used = new Set<string>()
  for (const r of [...policy.guards, ...policy.rules, policy.default]) pluginFields(r.cond, used)
  const pairs = [...used].flatMap((f) => {
    const s = sources.find((x) => x.fields.includes(f))
    return s === undefined ? [] : [[f, s] as const]
  })
  if (pairs.length > 0) factsOf.set(c, pairs)
}

const withFacts = (c: Compiled, req: Ir.Request): Ir.Request => {
  const pairs = factsOf.get(c)
  if (pairs === undefined || req.plugin !== undefined) return req
  const plugin: Record<string, string | null> = {}
  for (const [f, s] of pairs) {
    try {
      plugin[f] = s.get(f, req)
    } catch {
      plugin[f] = null
    }
  }
  return { ...req, plugin }
}

export const evaluate = (c: Compiled, req: Ir.Request): Ir.Outcome => Evaluator.evaluate(c, withFacts(c, req), NEED)
