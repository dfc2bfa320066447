/**
 * The fast evaluator: decides a request against a `CompiledPolicy` with the
 * semantics of `Reference.evaluateReference`, without scanning every rule.
 *
 * Details: the request is parsed once (`FastIp` for addresses, the reference's
 * domain normalisation); each field index pushes the candidate lists of the
 * request's values into a sink; the lists are merged lazily, smallest position
 * first, and each candidate's closure is run until one is true (its decision),
 * one is pending (`need` that fact), or none is left (the default). Rules that
 * are not candidates cannot be true, so first-match order is exact.
 *
 * Gotchas: not re-entrant (module-level scratch), which is fine for plain
 * synchronous use. In `need` mode the evaluator may ask for fewer facts than
 * the reference (it never looks at rules that cannot fire), and it asks for
 * `dst.ip` only when a candidate rule before the decision needs it.
 */
import { push, type Sink } from "./Candidates.ts"
import type { CompiledPolicy, Indexed } from "./Compiler.ts"
import { collectDomain } from "./DomainIndex.ts"
import { newBox, parseInto } from "./FastIp.ts"
import type { EvalOptions, FactName, Outcome, Request } from "./Ir.ts"
import { collectIp } from "./IpIndex.ts"
import { isOnion, normalizeDomain } from "./Match.ts"
import { collectPort } from "./PortIndex.ts"
import { FACTS, PENDING, type State, T } from "./Verify.ts"

const NEED: EvalOptions = { missing: "need" }
const NEEDS: ReadonlyArray<Outcome> = FACTS.map((fact) => ({ type: "need", fact }))

/** Parses a request once. */
export const parseRequest = (req: Request, need: boolean): State => {
  let host = req.dstHost
  if (host.charCodeAt(0) === 91 && host.charCodeAt(host.length - 1) === 93) host = host.slice(1, -1)
  const dst = newBox()
  let domain: string | undefined
  let onion = false
  let dstPending = false
  if (!parseInto(host, dst)) {
    domain = normalizeDomain(host)
    onion = isOnion(domain)
    if (!onion) {
      const f = req.facts?.["dst.ip"]
      if (f === undefined) dstPending = need
      else if (f !== null) parseInto(f, dst)
    }
  }
  const src = newBox()
  if (req.srcIp !== undefined) parseInto(req.srcIp, src)
  return { req, need, domain, onion, dst, dstPending, src, tz: undefined, day: 0, minute: 0 }
}

const sink: Sink = { lists: [], n: 0 }
let at = new Int32Array(64)

const mapPush = <K>(ix: Indexed<ReadonlyMap<K, Int32Array>>, key: K): void => {
  const l = ix.index.get(key)
  if (l !== undefined) push(sink, l)
}

const factPush = <K>(ix: Indexed<ReadonlyMap<K, Int32Array>> | undefined, s: State, field: FactName, dst: boolean, upper: boolean): void => {
  if (ix === undefined || (dst && s.onion)) return
  const f = s.req.facts?.[field]
  if (f === undefined) {
    if (s.need) push(sink, ix.all)
  } else if (f !== null) mapPush(ix, (upper ? (f as string).toUpperCase() : f) as K)
}

/** Pushes every candidate list for the request into `sink`. */
const gather = (c: CompiledPolicy, s: State): void => {
  const req = s.req
  if (c.domain !== undefined && s.domain !== undefined) {
    collectDomain(c.domain.index, s.domain, sink)
    push(sink, c.domain.any)
  }
  if (c.dstIp !== undefined) {
    if (s.dst.fam !== 0) collectIp(c.dstIp.index, s.dst, sink)
    else if (s.dstPending) push(sink, c.dstIp.all)
  }
  if (c.srcIp !== undefined && s.src.fam !== 0) collectIp(c.srcIp.index, s.src, sink)
  if (c.dstPort !== undefined && !collectPort(c.dstPort.index, req.dstPort, sink)) push(sink, c.dstPort.all)
  if (c.srcPort !== undefined && req.srcPort !== undefined && !collectPort(c.srcPort.index, req.srcPort, sink)) push(sink, c.srcPort.all)
  if (req.user !== undefined) {
    if (c.user !== undefined) {
      mapPush(c.user, req.user)
      push(sink, c.user.any)
    }
    if (c.group !== undefined && req.groups !== undefined) for (const g of req.groups) mapPush(c.group, g)
  }
  if (c.command !== undefined) mapPush(c.command, req.command)
  if (c.listener !== undefined && req.listener !== undefined) mapPush(c.listener, req.listener)
  if (c.protocol !== undefined && req.protocol !== undefined) mapPush(c.protocol, req.protocol)
  if (c.auth !== undefined && req.auth !== undefined) mapPush(c.auth, req.auth)
  factPush(c.dstCountry, s, "dst.country", true, true)
  factPush(c.srcCountry, s, "src.country", false, true)
  factPush(c.dstAsn, s, "dst.asn", true, false)
  factPush(c.srcAsn, s, "src.asn", false, false)
  if (c.time !== undefined && req.time !== undefined) push(sink, c.time.any)
  push(sink, c.always)
}

/** Checks the candidates in position order. */
const run = (c: CompiledPolicy, s: State): Outcome => {
  const n = sink.n
  const lists = sink.lists
  const tests = c.tests
  if (n === 1) {
    const l = lists[0]
    for (let i = 0; i < l.length; i++) {
      const x = tests[l[i]](s)
      if (x === T) return c.outcomes[l[i]]
      if (x >= PENDING) return NEEDS[x - PENDING]
    }
    return c.defaultOutcome
  }
  if (at.length < n) at = new Int32Array(n * 2)
  at.fill(0, 0, n)
  for (;;) {
    let min = 0x7fffffff
    for (let i = 0; i < n; i++) {
      const l = lists[i]
      const p = at[i]
      if (p < l.length && l[p] < min) min = l[p]
    }
    if (min === 0x7fffffff) return c.defaultOutcome
    for (let i = 0; i < n; i++) {
      const l = lists[i]
      const p = at[i]
      if (p < l.length && l[p] === min) at[i] = p + 1
    }
    const x = tests[min](s)
    if (x === T) return c.outcomes[min]
    if (x >= PENDING) return NEEDS[x - PENDING]
  }
}

export const evaluate = (c: CompiledPolicy, req: Request, opts: EvalOptions = NEED): Outcome => {
  const s = parseRequest(req, opts.missing === "need")
  sink.n = 0
  gather(c, s)
  const out = run(c, s)
  for (let i = 0; i < sink.n; i++) sink.lists[i] = EMPTY_LIST
  return out
}

const EMPTY_LIST = new Int32Array(0)
