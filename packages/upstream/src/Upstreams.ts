/**
 * The `via` outbound: upstreams, chains and groups from the program, as an `OutboundProvider`.
 *
 * Details: `prepare` (every load) reads credentials and CA files and builds
 * the routes (an upstream is a one-hop route, a chain is its hops flattened,
 * chains of chains included); a missing secret refuses the program with a
 * message naming the upstream and the variable or file. `activate` swaps in
 * the prepared state and (re)starts group probes; a group whose definition
 * did not change keeps its members' health across a reload.
 * The connector: CONNECT; the BIND connector asks a single SOCKS4/4a/5
 * upstream to BIND (`SocksBind.ts`), other routes (chains, HTTP, groups)
 * answer `CommandNotSupported` with `upstream_bind_error` in the log; the UDP connector opens a SOCKS5 UDP ASSOCIATE through a single
 * socks5 upstream (`UdpRelay.ts`), other routes answer `CommandNotSupported`; the destination is the name as requested, or the
 * address the policy resolved. A group tries its candidates in strategy order,
 * at most `tries`; a destination failure reported by the last hop is final
 * (another member would fail the same way). With no healthy member, the
 * rule's `else` action runs through the server's registry; without `else`
 * the connection fails (`UpstreamFailed`, hop = the group). Each member's
 * connect outcome (not a destination failure) feeds the group's passive
 * health (`GroupRuntime.report`, effective for groups without `probe`).
 * Log line fields (`ctx.note`): `upstream` (the member that carried the
 * connection), `upstream_tries`, `upstream_hop` and `upstream_error` on failure,
 * `upstream_else` when the else action ran.
 *
 * Gotchas: credentials stay inside the prepared hops; messages name hops only.
 */
import type * as net from "node:net"
import { Effect } from "effect"
import type { Ir } from "@proxyd/rules"
import { Errors, type Inbound, type Outbound } from "@proxyd/runtime"
import { openRoute, type Route } from "./Chain.ts"
import { type GroupRuntime, type GroupStatus, makeGroup, probeTarget } from "./Group.ts"
import { failed, type Hop, HopFailure, type Target } from "./Hop.ts"
import { readPlain, readSecret } from "./Secrets.ts"
import { socksBind } from "./SocksBind.ts"
import { openUdp } from "./UdpRelay.ts"

interface Prepared {
  readonly routes: ReadonlyMap<string, Route>
  readonly groups: ReadonlyMap<string, Ir.GroupIR>
}

interface Active {
  readonly routes: ReadonlyMap<string, Route>
  readonly groups: ReadonlyMap<string, GroupRuntime>
}

class NoHealthy extends HopFailure {}

export interface UpstreamOutbound extends Outbound.OutboundProvider {
  /** Group state for the admin API and metrics: members, up/down, probe latency. */
  status(): ReadonlyArray<GroupStatus>
}

const where = (span: Ir.UpstreamIR["span"]): string => `${span.file}:${span.start.line}`

const num = (v: unknown): number | undefined => (typeof v === "number" ? v : undefined)

const makeHop = (u: Ir.UpstreamIR, problems: Array<string>): Hop => {
  const at = `upstream \`${u.name}\` (${where(u.span)})`
  let user: string | undefined
  let pass: string | undefined
  if (u.auth !== undefined) {
    const a = readSecret(u.auth.user, u.span.file)
    const b = readSecret(u.auth.pass, u.span.file)
    if (a.ok) user = a.value
    else problems.push(`${at}: the user name cannot be read: ${a.problem}`)
    if (b.ok) pass = b.value
    else problems.push(`${at}: the password cannot be read: ${b.problem}`)
  }
  let ca: Buffer | undefined
  const caPath = u.settings["tls-ca"]
  if (typeof caPath === "string") {
    const r = readPlain(caPath, u.span.file)
    if (r.ok) ca = r.value
    else problems.push(`${at}: tls-ca ${r.problem}`)
  }
  const sni = u.settings["sni"]
  const timeout = num(u.settings["connect-timeout"])
  return {
    name: u.name, kind: u.kind, host: u.host, port: u.port,
    ...(user === undefined ? {} : { user }),
    ...(pass === undefined ? {} : { pass }),
    ...(timeout === undefined ? {} : { connectTimeoutMs: timeout }),
    ...(u.kind === "https" ? { tls: { ...(ca === undefined ? {} : { ca }), ...(typeof sni === "string" ? { sni } : {}), insecure: u.settings["insecure"] === true } } : {}),
  }
}

export const prepareProgram = (program: Ir.Program): { readonly prepared: Prepared; readonly problems: Array<string> } => {
  const problems: Array<string> = []
  const hops = new Map<string, Hop>()
  for (const u of program.upstreams.values()) hops.set(u.name, makeHop(u, problems))
  const flatten = (name: string, depth: number): Array<Hop> | undefined => {
    const h = hops.get(name)
    if (h !== undefined) return [h]
    const c = program.chains.get(name)
    if (c === undefined || depth > 16) return undefined
    const out: Array<Hop> = []
    for (const x of c.hops) {
      const f = flatten(x, depth + 1)
      if (f === undefined) return undefined
      out.push(...f)
    }
    return out
  }
  const routes = new Map<string, Route>()
  for (const h of hops.values()) routes.set(h.name, { name: h.name, hops: [h] })
  for (const c of program.chains.values()) {
    const flat = flatten(c.name, 0)
    if (flat === undefined) { problems.push(`chain \`${c.name}\` (${where(c.span)}): its hops cannot be resolved`); continue }
    const per = num(c.settings?.["connect-timeout"])
    const overall = num(c.settings?.["timeout"])
    routes.set(c.name, { name: c.name, hops: flat, ...(per === undefined ? {} : { perHopMs: per }), ...(overall === undefined ? {} : { overallMs: overall }) })
  }
  for (const g of program.groups.values()) {
    if (g.probe !== undefined && probeTarget(g.probe) === undefined) problems.push(`group \`${g.name}\` (${where(g.span)}): the probe target \`${g.probe.target}\` is not usable`)
  }
  return { prepared: { routes, groups: program.groups }, problems }
}

const sameGroup = (a: Ir.GroupIR, b: Ir.GroupIR): boolean =>
  JSON.stringify([a.strategy, a.members, a.hashBy, a.probe, a.tries]) === JSON.stringify([b.strategy, b.members, b.hashBy, b.probe, b.tries])

const reasonOf = (e: HopFailure): Errors.OutboundReason => e.reason

export const makeUpstreams = (): UpstreamOutbound => {
  const prepared = new WeakMap<Ir.Program, Prepared>()
  let active: Active = { routes: new Map(), groups: new Map() }

  /**
   * Opens `name`: a route with `leaf`; a group through its healthy candidates in order (at most
   * `tries`), each opened the same way. With `health`, attempts are counted, outcomes reported to
   * the group's passive health, and a failure at the destination stops the tries (TCP); UDP
   * paths just try the next candidate.
   */
  const through = <A>(state: Active, name: string, key: { user?: string; dst: string; src: string }, depth: number, leaf: (route: Route, member: string) => Effect.Effect<A, HopFailure>, health?: { readonly tried: { n: number } }): Effect.Effect<A, HopFailure> => {
    const route = state.routes.get(name)
    if (route !== undefined) return leaf(route, name)
    const g = state.groups.get(name)
    if (g === undefined || depth > 8) return Effect.fail(failed(name, `\`${name}\` is not declared in the current rules`))
    return throughGroup(state, name, g, key, depth, leaf, health) as Effect.Effect<A, HopFailure>
  }

  /** A group's candidates in order (see `through`); one generator function for all calls (docs/design/runtime.md). */
  const throughGroup = Effect.fnUntraced(function*(state: Active, name: string, g: GroupRuntime, key: { user?: string; dst: string; src: string }, depth: number, leaf: (route: Route, member: string) => Effect.Effect<unknown, HopFailure>, health: { readonly tried: { n: number } } | undefined) {
    const cands = g.candidates(key)
    if (cands.length === 0) return yield* Effect.fail(new NoHealthy({ _tag: "UpstreamFailed", hop: name }, false, `group ${name} has no healthy member`))
    let last: HopFailure | undefined
    for (const c of cands.slice(0, Math.max(1, g.ir.tries))) {
      if (health !== undefined) health.tried.n++
      const r = yield* Effect.result(through(state, c, key, depth + 1, leaf, health))
      if (r._tag === "Success") {
        if (health !== undefined) g.report(c, undefined)
        return r.success
      }
      last = r.failure
      if (health === undefined) continue
      if (r.failure.destination) break
      g.report(c, r.failure.message)
    }
    return yield* Effect.fail(last!)
  })

  const open = (state: Active, name: string, dest: Target, key: { user?: string; dst: string; src: string }, ctx: Outbound.OutboundContext, depth: number, tried: { n: number }): Effect.Effect<{ socket: net.Socket; member: string }, HopFailure> =>
    through(state, name, key, depth, (route, member) => openRoute(route, dest, ctx).pipe(Effect.map((socket) => ({ socket, member }))), { tried })

  /** A UDP path: the target's route (a group: its candidates in order, bounded by `tries`). */
  const openUdpPath = (state: Active, name: string, key: { user?: string; dst: string; src: string }, ctx: Outbound.OutboundContext, depth: number): Effect.Effect<{ channel: Inbound.UdpChannel; member: string }, HopFailure> =>
    through(state, name, key, depth, (route, member) => openUdp(route, ctx).pipe(Effect.map((channel) => ({ channel, member }))))

  const udpVia: Outbound.UdpConnector = (decided, ctx) => {
    const a = decided.decision.action
    if (a.k !== "via") return Effect.fail(new Errors.OutboundError({ reason: { _tag: "CommandNotSupported" } }))
    const req = decided.request
    const key = { ...(req.user === undefined ? {} : { user: req.user }), dst: req.dstHost, src: req.srcIp ?? "" }
    return openUdpPath(active, a.target, key, ctx, 0).pipe(
      Effect.map((r) => { ctx.note?.({ upstream_udp: r.member }); return r.channel }),
      Effect.mapError((e) => {
        ctx.note?.({ upstream_udp_error: e.message })
        return new Errors.OutboundError({ reason: e.reason })
      }),
    )
  }

  /** BIND at a single SOCKS upstream; chains, HTTP upstreams and groups answer `CommandNotSupported` with a logged reason. */
  const bindVia: Outbound.BindConnector = (decided, ctx) => {
    const a = decided.decision.action
    const unsupported = (why: string) => {
      ctx.note?.({ upstream_bind_error: why })
      return Effect.fail(new Errors.OutboundError({ reason: { _tag: "CommandNotSupported" } }))
    }
    if (a.k !== "via") return unsupported("not a via decision")
    const route = active.routes.get(a.target)
    if (route === undefined) return unsupported(`BIND needs a single SOCKS upstream; \`${a.target}\` is ${active.groups.has(a.target) ? "a group" : "not declared"}`)
    const hop = route.hops[0]!
    if (route.hops.length !== 1) return unsupported(`BIND needs a single SOCKS upstream; \`${a.target}\` is a chain`)
    if (hop.kind !== "socks5" && hop.kind !== "socks4" && hop.kind !== "socks4a") return unsupported(`BIND needs a SOCKS upstream; \`${a.target}\` is ${hop.kind}`)
    const req = decided.request
    return socksBind(hop, { host: decided.resolved ?? req.dstHost, port: req.dstPort }, ctx).pipe(
      Effect.map((b) => { ctx.note?.({ upstream: hop.name, upstream_bound: `${b.host}:${b.port}` }); return b }),
      Effect.mapError((e) => {
        const r = reasonOf(e)
        ctx.note?.({ upstream_hop: "hop" in r ? r.hop : undefined, upstream_error: e.message })
        return new Errors.OutboundError({ reason: r })
      }),
    )
  }

  const startGroups = (state: Active, env: Outbound.OutboundEnv): void => {
    const probeCtx: Outbound.OutboundContext = { resolver: env.resolver, connectTimeoutMs: 10_000 }
    const member = (m: string, t: Target) => open(state, m, t, { dst: t.host, src: "" }, probeCtx, 1, { n: 0 }).pipe(Effect.map((x) => x.socket))
    for (const g of state.groups.values()) g.start(member, env.log)
  }

  const via = (all: () => Outbound.Registry): Outbound.Connector => (decided, ctx) => {
    const a = decided.decision.action
    if (a.k !== "via") return Effect.fail(new Errors.OutboundError({ reason: { _tag: "General", message: "not a via decision" } }))
    const req = decided.request
    if (req.command !== "connect") return Effect.fail(new Errors.OutboundError({ reason: { _tag: "CommandNotSupported" } }))
    const state = active
    const dest: Target = { host: decided.resolved ?? req.dstHost, port: req.dstPort }
    const tried = { n: 0 }
    const key = { ...(req.user === undefined ? {} : { user: req.user }), dst: req.dstHost, src: req.srcIp ?? "" }
    return open(state, a.target, dest, key, ctx, 0, tried).pipe(
      Effect.map((r) => {
        ctx.note?.({ upstream: r.member, ...(tried.n > 1 ? { upstream_tries: tried.n } : {}) })
        return r.socket
      }),
      Effect.catch((e: HopFailure) => {
        if (e instanceof NoHealthy && a.else !== undefined) {
          const other = all().get(a.else.k)
          ctx.note?.({ upstream_else: a.else.k, upstream_error: e.message })
          if (other !== undefined) return other({ ...decided, decision: { ...decided.decision, action: a.else } }, ctx)
        }
        const r = reasonOf(e)
        ctx.note?.({ upstream_hop: "hop" in r ? r.hop : undefined, upstream_error: e.message, ...(tried.n > 1 ? { upstream_tries: tried.n } : {}) })
        return Effect.fail(new Errors.OutboundError({ reason: r }))
      }),
    )
  }

  return {
    kinds: ["via"],
    prepare: (program) => {
      const r = prepareProgram(program)
      if (r.problems.length === 0) prepared.set(program, r.prepared)
      return r.problems
    },
    activate: (program, env) => {
      const p = prepared.get(program) ?? prepareProgram(program).prepared
      const old = active
      const groups = new Map<string, GroupRuntime>()
      for (const g of p.groups.values()) {
        const prev = old.groups.get(g.name)
        groups.set(g.name, makeGroup(g, prev !== undefined && sameGroup(prev.ir, g) ? prev : undefined))
      }
      for (const g of old.groups.values()) g.stop()
      active = { routes: p.routes, groups }
      startGroups(active, env)
    },
    connectors: (all) => new Map([["via", via(all)]]),
    udpConnectors: () => new Map([["via", udpVia]]),
    bindConnectors: () => new Map([["via", bindVia]]),
    close: () => { for (const g of active.groups.values()) g.stop() },
    status: () => [...active.groups.values()].map((g) => g.status()),
  }
}
