/**
 * The runtime's evaluate loop: evaluate with `missing: "need"`, fetch the fact, evaluate again.
 *
 * Details: `dst.ip` is fetched from the Resolver (A then AAAA; the first
 * address is the one evaluated and the one connected to, recorded as
 * `request.facts["dst.ip"]` and `Decided.resolved`). A failed lookup records
 * `null` (the matcher is unknown); the outbound then refuses to connect
 * (`DnsFailed`) instead of resolving a second time. Countries and ASNs are
 * `null` (GeoIP arrives later; `Support.ts` refuses programs that use them).
 * `.onion` names are never resolved. The loop is bounded: a policy that keeps
 * asking yields a block decision (a runtime bug, never an allow).
 */
import { Effect } from "effect"
import type { Ir } from "@proxyd/rules"
import type { Decided } from "./Inbound.ts"
import type { Compiled } from "./Engine.ts"
import { evaluate } from "./Engine.ts"
import { isOnion, type ResolverShape } from "./Resolver.ts"

const MAX_ROUNDS = 8

const stuck = (fact: string): Ir.Decision => ({
  action: { k: "block", message: `internal error: the policy kept asking for ${fact}` },
  rule: "(runtime)",
  ruleKind: "guard",
  modifiers: [],
})

export const decide = (compiled: Compiled, request: Ir.Request, resolver: ResolverShape): Effect.Effect<Decided> =>
  Effect.gen(function*() {
    let req = request
    let last = "?"
    for (let round = 0; round < MAX_ROUNDS; round++) {
      const out = evaluate(compiled, req)
      if (out.type === "decision") {
        const ip = req.facts?.["dst.ip"]
        return typeof ip === "string" ? { decision: out.decision, request: req, resolved: ip } : { decision: out.decision, request: req }
      }
      last = out.fact
      let value: string | number | null = null
      if (out.fact === "dst.ip" && !isOnion(req.dstHost)) {
        const addrs = yield* resolver.resolve(req.dstHost).pipe(Effect.orElseSucceed(() => [] as ReadonlyArray<string>))
        value = addrs[0] ?? null
      }
      req = { ...req, facts: { ...req.facts, [out.fact]: value } }
    }
    return { decision: stuck(last), request: req }
  })
