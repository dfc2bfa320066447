/**
 * Differential test: the compiled evaluator against the reference interpreter
 * on random (policy, request) pairs, in both `missing` modes.
 *
 * Seeded: set DIFF_SEED to replay a run; the seed is in every failure message.
 */
import { isDeepStrictEqual } from "node:util"
import { describe, expect, it } from "vitest"
import { compile } from "../src/Compiler.ts"
import { evaluate } from "../src/Evaluator.ts"
import type { PolicyIR, Request } from "../src/Ir.ts"
import * as Random from "../src/Random.ts"
import { evaluateReference, evaluateWithOracle } from "../src/Reference.ts"

const SEED = process.env.DIFF_SEED !== undefined ? Number(process.env.DIFF_SEED) : (Date.now() ^ (process.pid << 8)) >>> 0
const json = (x: unknown) => JSON.stringify(x, (_, v) => (typeof v === "bigint" ? `${v}n` : v))

interface Stats {
  pairs: number
  nonDefault: number
  guards: number
  refAsked: number
  extraAsks: number
  savedAsks: number
  cheapButAsked: number
}

const run = (seed: number, policies: number, requestsPerPolicy: number, opts: Random.PolicyOptions): Stats => {
  const r = Random.rng(seed)
  const s: Stats = { pairs: 0, nonDefault: 0, guards: 0, refAsked: 0, extraAsks: 0, savedAsks: 0, cheapButAsked: 0 }
  const fail = (what: string, p: PolicyIR, req: Request, got: unknown, want: unknown) => {
    throw new Error(`${what} (DIFF_SEED=${seed})\npolicy: ${json(p)}\nrequest: ${json(req)}\ncompiled: ${json(got)}\nreference: ${json(want)}`)
  }
  for (let i = 0; i < policies; i++) {
    const p = Random.randomPolicy(r, opts)
    const c = compile(p)
    for (let j = 0; j < requestsPerPolicy; j++) {
      const full = Random.randomFacts(r)
      const req = Random.randomRequest(r, full)
      s.pairs++
      const got = evaluate(c, req, { missing: "unknown" })
      const want = evaluateReference(p, req, { missing: "unknown" })
      if (!isDeepStrictEqual(got, want)) fail("missing: unknown mismatch", p, req, got, want)
      if (want.type === "decision" && want.decision.ruleKind !== "default") s.nonDefault++
      if (want.type === "decision" && want.decision.ruleKind === "guard") s.guards++
      const oracle = Random.oracle(full)
      const x = evaluateWithOracle((q) => evaluate(c, q, { missing: "need" }), req, oracle)
      const y = evaluateWithOracle((q) => evaluateReference(p, q, { missing: "need" }), req, oracle)
      if (!isDeepStrictEqual(x.decision, y.decision)) fail("missing: need mismatch", p, req, x, y)
      if (y.asked.length > 0) s.refAsked++
      if (x.asked.some((f) => !y.asked.includes(f))) s.extraAsks++
      if (y.asked.some((f) => !x.asked.includes(f))) s.savedAsks++
      if (y.asked.length === 0 && x.asked.length > 0) s.cheapButAsked++
    }
  }
  return s
}

describe(`Differential: compiled evaluator vs reference (DIFF_SEED=${SEED})`, () => {
  it("agrees on 120,000 random pairs of small policies, both modes", () => {
    const s = run(SEED, 12_000, 10, { maxGuards: 2, maxRules: 10 })
    expect(s.pairs).toBe(120_000)
    // The generators must make rules fire, or agreement would prove little.
    expect(s.nonDefault / s.pairs, `seed ${SEED}`).toBeGreaterThan(0.4)
    expect(s.guards / s.pairs, `seed ${SEED}`).toBeGreaterThan(0.05)
    expect(s.refAsked / s.pairs, `seed ${SEED}`).toBeGreaterThan(0.2)
    // Never a lookup when the reference decides on what it has.
    expect(s.cheapButAsked, `seed ${SEED}`).toBe(0)
    // A fact the reference never asks for: only when two costly facts meet in one rule, rare.
    expect(s.extraAsks / s.pairs, `seed ${SEED}`).toBeLessThan(0.001)
    console.log(`differential seed ${SEED}:`, s)
  })

  it("agrees on 8,000 random pairs of policies with up to 300 rules (long candidate lists)", () => {
    const s = run(SEED + 1, 80, 100, { maxGuards: 5, maxRules: 300 })
    expect(s.pairs).toBe(8_000)
    expect(s.nonDefault / s.pairs, `seed ${SEED + 1}`).toBeGreaterThan(0.4)
    expect(s.cheapButAsked, `seed ${SEED + 1}`).toBe(0)
  })
})
