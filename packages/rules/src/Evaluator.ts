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
 * Gotchas: not re-entrant (module-level scratch, one reused `State`), which is
 * fine for plain synchronous use; an evaluation allocates almost nothing, and
 * the outcomes it returns are shared, frozen objects. In
 * `need` mode the evaluator may ask for fewer facts than the reference (it
 * never looks at rules that cannot fire); it asks for `dst.ip` only when a
 * candidate rule before the decision needs it.
 */
import { push, type Sink } from "./Candidates.ts"
import { type CompiledPolicy, type Indexed, outcomeAt, REQUIRES_DOMAIN, REQUIRES_USER, testAt } from "./Compiler.ts"
import { collectDomain } from "./DomainIndex.ts"
import { newBox, parseInto } from "./FastIp.ts"
import type { EvalOptions, FactName, Outcome, Request } from "./Ir.ts"
import { collectIp } from "./IpIndex.ts"
import { isOnion, normalizeDomain } from "./Match.ts"
import { collectPort } from "./PortIndex.ts"
import { FACTS, PENDING, type State, T } from "./Verify.ts"

const NEED: EvalOptions = { missing: "need" }
const NEEDS: ReadonlyArray<Outcome> = FACTS.map((fact) => Object.freeze({ type: "need", fact }))

const state: State = { req: { command: "connect", dstHost: "", dstPort: 0 }, need: true, domain: undefined, onion: false, dst: newBox(), dstPending: false, src: newBox(), tz: undefined, day: 0, minute: 0 }

/** Parses a request into the shared `State` (valid until the next call). */
export const parseRequest = (req: Request, need: boolean): State => {
  const s = state
  s.req = req
  s.need = need
  s.domain = undefined
  s.onion = false
  s.dstPending = false
  s.tz = undefined
  let host = req.dstHost
  if (host.charCodeAt(0) === 91 && host.charCodeAt(host.length - 1) === 93) host = host.slice(1, -1)
  if (!parseInto(host, s.dst)) {
    const domain = normalizeDomain(host)
    s.domain = domain
    s.onion = isOnion(domain)
    if (!s.onion) {
      const f = req.facts?.["dst.ip"]
      if (f === undefined) s.dstPending = need
      else if (f !== null) parseInto(f, s.dst)
    }
  }
  if (req.srcIp === undefined) s.src.fam = 0
  else parseInto(req.srcIp, s.src)
  return s
}

const sink: Sink = { ids: new Int32Array(64), n: 0 }
let at = new Int32Array(64)
let end = new Int32Array(64)

const mapPush = <K>(ix: Indexed<ReadonlyMap<K, number>>, key: K): void => {
  const id = ix.index.get(key)
  if (id !== undefined) push(sink, id)
}

const factPush = <K>(ix: Indexed<ReadonlyMap<K, number>> | undefined, s: State, field: FactName, dst: boolean, upper: boolean): void => {
  if (ix === undefined || (dst && s.onion)) return
  const f = s.req.facts?.[field]
  if (f === undefined) {
    if (s.need) push(sink, ix.all)
  } else if (f !== null) mapPush(ix, (upper ? (f as string).toUpperCase() : f) as K)
}

/** Pushes every candidate list for the request into `sink`. */
const gather = (c: CompiledPolicy, s: State): void => {
  const req = s.req
  sink.n = 0
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
    if (c.group !== undefined && req.groups !== undefined) for (let i = 0; i < req.groups.length; i++) mapPush(c.group, req.groups[i])
  }
  if (c.command !== undefined && req.command !== undefined) mapPush(c.command, req.command)
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

/** The flat pre-checks: the rule at `pos` cannot be true for this port, or needs what the request lacks. */
const excluded = (c: CompiledPolicy, pos: number, port: number, lacking: number): boolean =>
  port < c.portLo[pos] || port > c.portHi[pos] || (c.requires[pos] & lacking) !== 0

/**
 * Checks the candidates in position order: a k-way merge of the sink's lists
 * that, once it has found the list with the smallest head, consumes that list
 * up to the second smallest head without rescanning the others (one long list
 * and a few short ones is the usual shape). A candidate whose port hull
 * excludes the request's port, or that requires a user or a domain name the
 * request lacks, is skipped without running its closure.
 */
const run = (c: CompiledPolicy, s: State): Outcome => {
  const n = sink.n
  const ids = sink.ids
  const { data, start } = c.lists
  const tests = c.tests
  const port = s.req.dstPort
  // The `requires` bits this request cannot meet.
  const lacking = (s.req.user === undefined ? REQUIRES_USER : 0) | (s.domain === undefined ? REQUIRES_DOMAIN : 0)
  if (at.length < n) {
    at = new Int32Array(n * 2)
    end = new Int32Array(n * 2)
  }
  for (let i = 0; i < n; i++) {
    at[i] = start[ids[i]]
    end[i] = start[ids[i] + 1]
  }
  for (;;) {
    let best = -1
    let min = 0x7fffffff
    let second = 0x7fffffff
    for (let i = 0; i < n; i++) {
      if (at[i] === end[i]) continue
      const h = data[at[i]]
      if (h < min) {
        second = min
        min = h
        best = i
      } else if (h < second) second = h
    }
    if (best < 0) return c.defaultOutcome
    if (min === second) {
      // The same rule heads several lists: step past it everywhere, then check it.
      for (let i = 0; i < n; i++) if (at[i] < end[i] && data[at[i]] === min) at[i]++
      if (!excluded(c, min, port, lacking)) {
        const x = (tests[min] ?? testAt(c, min))(s)
        if (x === T) return outcomeAt(c, min)
        if (x >= PENDING) return NEEDS[x - PENDING]
      }
      continue
    }
    let k = at[best]
    const e = end[best]
    for (; k < e; k++) {
      const pos = data[k]
      if (pos >= second) break
      if (excluded(c, pos, port, lacking)) continue
      const x = (tests[pos] ?? testAt(c, pos))(s)
      if (x === T) return outcomeAt(c, pos)
      if (x >= PENDING) return NEEDS[x - PENDING]
    }
    at[best] = k
  }
}

export const evaluate = (c: CompiledPolicy, req: Request, opts: EvalOptions = NEED): Outcome => {
  const s = parseRequest(req, opts.missing === "need")
  gather(c, s)
  const out = run(c, s)
  s.req = EMPTY_REQUEST
  return out
}

const EMPTY_REQUEST: Request = { command: "connect", dstHost: "", dstPort: 0 }

/** The candidate positions the evaluator would consider for `req`, in order (tests, benchmarks, tooling; not the hot path). */
export const candidates = (c: CompiledPolicy, req: Request, opts: EvalOptions = NEED): ReadonlyArray<number> => {
  const s = parseRequest(req, opts.missing === "need")
  gather(c, s)
  const all = new Set<number>()
  for (let i = 0; i < sink.n; i++) for (let k = c.lists.start[sink.ids[i]]; k < c.lists.start[sink.ids[i] + 1]; k++) all.add(c.lists.data[k])
  s.req = EMPTY_REQUEST
  return [...all].sort((a, b) => a - b)
}
