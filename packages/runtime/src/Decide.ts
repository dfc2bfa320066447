/**
 * The runtime's evaluate loop: evaluate with `missing: "need"`, fetch the fact, evaluate again.
 *
 * Details: `dst.ip` is fetched from the Resolver (A then AAAA; the first
 * address is the one evaluated and the one connected to, recorded as
 * `request.facts["dst.ip"]` and `Decided.resolved`). A failed lookup records
 * `null` (the matcher is unknown); the outbound then refuses to connect
 * (`DnsFailed`) instead of resolving a second time. Countries and ASNs come
 * from the `GeoLookup` (`geo`; absent: `null`, and `Support.ts` refuses
 * programs that use them): `src.*` for the client's address, `dst.*` for
 * `dst.ip` (resolved first when the policy has not asked for it yet; a name
 * that does not resolve has no country). `.onion` names are never resolved
 * and have no country or ASN. The loop is bounded: a policy that keeps
 * asking yields a block decision (a runtime bug, never an allow).
 * `decideNow` is the whole loop without waiting (the express path): it takes
 * a name's address from the Resolver's cache and gives up (`undefined`) only
 * when that is not there; `decide` then resolves it and runs the same loop.
 */
import { isIP } from "node:net"
import { Effect } from "effect"
import type { Ir } from "@proxyd/rules"
import type { Decided } from "./Inbound.ts"
import type { Compiled } from "./Engine.ts"
import { evaluate } from "./Engine.ts"
import type { GeoLookup } from "./Geo.ts"
import { isOnion, type ResolverShape } from "./Resolver.ts"

const MAX_ROUNDS = 8

const stuck = (fact: string): Ir.Decision => ({
  action: { k: "block", message: `internal error: the policy kept asking for ${fact}` },
  rule: "(runtime)",
  ruleKind: "guard",
  modifiers: [],
})

const isIpLiteral = (h: string): boolean => isIP(h.startsWith("[") && h.endsWith("]") ? h.slice(1, -1) : h) !== 0

const geoFact = (geo: GeoLookup | undefined, fact: string, ip: string | null): string | number | null =>
  geo === undefined || ip === null ? null : fact.endsWith(".country") ? geo.country(ip) : geo.asn(ip)

/**
 * The decision without waiting: facts come from the request, the GeoLookup (synchronous) and
 * `cached` (the Resolver's fresh answers). `undefined` when the policy needs the address of a
 * name that is not cached (use `decide`, which resolves it).
 */
export const decideNow = (compiled: Compiled, request: Ir.Request, geo?: GeoLookup, cached?: (host: string) => ReadonlyArray<string> | undefined): Decided | undefined => {
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
    if ((out.fact === "dst.ip" || out.fact === "dst.country" || out.fact === "dst.asn") && !isOnion(req.dstHost)) {
      let ip = req.facts?.["dst.ip"]
      if (ip === undefined) {
        const addrs = isIpLiteral(req.dstHost) ? [req.dstHost.replace(/^\[|\]$/g, "")] : cached?.(req.dstHost)
        if (addrs === undefined) return undefined
        ip = addrs[0] ?? null
        if (out.fact !== "dst.ip") req = { ...req, facts: { ...req.facts, "dst.ip": ip } }
      }
      value = out.fact === "dst.ip" ? ip : geoFact(geo, out.fact, ip)
    } else if (out.fact === "src.country" || out.fact === "src.asn") {
      value = geoFact(geo, out.fact, req.srcIp ?? null)
    }
    req = { ...req, facts: { ...req.facts, [out.fact]: value } }
  }
  return { decision: stuck(last), request: req }
}

/**
 * The decision, resolving the destination name when the policy needs its address and the
 * Resolver has no fresh answer: the first address (or `null` when the lookup fails) becomes
 * `dst.ip`, and the rest is `decideNow`.
 */
export const decide = (compiled: Compiled, request: Ir.Request, resolver: ResolverShape, geo?: GeoLookup): Effect.Effect<Decided> => {
  const now = decideNow(compiled, request, geo, resolver.cached)
  if (now !== undefined) return Effect.succeed(now)
  return Effect.map(resolver.resolve(request.dstHost).pipe(Effect.orElseSucceed(() => [] as ReadonlyArray<string>)), (addrs) => {
    const withIp: Ir.Request = { ...request, facts: { ...request.facts, "dst.ip": addrs[0] ?? null } }
    return decideNow(compiled, withIp, geo) ?? { decision: stuck("dst.ip"), request: withIp }
  })
}
