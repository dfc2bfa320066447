/**
 * The policy engine the runtime evaluates with: compile a policy once, evaluate per request.
 *
 * Details: `Compiler.compile` + `Evaluator.evaluate` from `@proxyd/rules` with
 * `missing: "need"` (the first costly fact a reachable matcher needs is
 * returned; the runtime fetches it and evaluates again, see `Decide.ts`).
 * `Reference.evaluateReference` defines the same semantics.
 */
import { Compiler, Evaluator } from "@proxyd/rules"
import type { Ir } from "@proxyd/rules"

export type Compiled = Compiler.CompiledPolicy

export const compile = (policy: Ir.PolicyIR): Compiled => Compiler.compile(policy)

const NEED: Ir.EvalOptions = { missing: "need" }

export const evaluate = (c: Compiled, req: Ir.Request): Ir.Outcome => Evaluator.evaluate(c, req, NEED)
