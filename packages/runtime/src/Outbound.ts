/**
 * Outbound connections: a registry of outbound kinds, keyed by the decision's action.
 *
 * Details: `allow` connects directly to the requested destination: to an IP
 * literal as given; to the address the policy resolved (exactly that one: no
 * second lookup, no DNS-rebinding gap); to a name the policy did not need
 * resolved via the Resolver cache and Happy Eyeballs (`autoSelectFamily` with
 * a lookup that returns the cached addresses). `redirect` connects to the
 * rewritten host:port the same way. The redirect target is the operator's
 * choice: it is NOT evaluated against the policy again (it would be a loop of
 * the operator's own making), but `.onion` is still never resolved. `via` and
 * `tor` fail with `General` unless an `OutboundProvider` (`@proxyd/upstream`
 * for `via`) registers them through `startServer({ outbounds })`
 * (`Support.ts` refuses programs that use a kind nobody provides); protocol
 * code never changes.
 *
 * Gotchas: the connect timeout (default 10 s) covers lookup + all attempts.
 * Every outbound socket is `allowHalfOpen` and `noDelay` and keeps a no-op `error` listener
 * (the session destroys it; an unhandled `error` would crash the process).
 * errno → reason: ECONNREFUSED Refused, EHOSTUNREACH HostUnreachable,
 * ENETUNREACH NetworkUnreachable, ETIMEDOUT/timeout Timeout, ENOTFOUND DnsFailed.
 */
import * as net from "node:net"
import { Effect } from "effect"
import type { Ir } from "@proxyd/rules"
import { OutboundError, type OutboundReason } from "./Errors.ts"
import type { Decided, UdpChannel, UpstreamBind } from "./Inbound.ts"
import type { Log } from "./Log.ts"
import { isOnion, type ResolverShape } from "./Resolver.ts"

export interface OutboundContext {
  readonly resolver: ResolverShape
  readonly connectTimeoutMs: number
  /** Adds fields to the connection's close log line (never secrets); absent outside a connection. */
  readonly note?: (fields: Readonly<Record<string, unknown>>) => void
}

/**
 * Opens the connection a decision asks for. `now` (optional): the same without an effect, for
 * the express path: starts connecting and returns a cancel function, or returns `undefined`
 * without doing anything when this connection needs a wait the callback form does not do (a
 * name to resolve); the caller then uses the effect.
 */
export interface Connector {
  (decided: Decided, ctx: OutboundContext): Effect.Effect<net.Socket, OutboundError>
  readonly now?: (decided: Decided, ctx: OutboundContext, done: (r: net.Socket | OutboundError) => void) => (() => void) | undefined
}

export type Registry = ReadonlyMap<Ir.ActionIR["k"], Connector>

/** Opens a UDP path for a `command udp` decision (SOCKS5 UDP ASSOCIATE through an upstream). */
export type UdpConnector = (decided: Decided, ctx: OutboundContext) => Effect.Effect<UdpChannel, OutboundError>

export type UdpRegistry = ReadonlyMap<Ir.ActionIR["k"], UdpConnector>

/** Opens a BIND at an upstream for a `command bind` decision (`via` a SOCKS upstream). */
export type BindConnector = (decided: Decided, ctx: OutboundContext) => Effect.Effect<UpstreamBind, OutboundError>

export type BindRegistry = ReadonlyMap<Ir.ActionIR["k"], BindConnector>

/** What a provider gets when its program becomes current. */
export interface OutboundEnv {
  readonly log: Log
  readonly resolver: ResolverShape
}

/**
 * Outbound kinds from another package (issue 4: `@proxyd/upstream` for `via`),
 * passed to `startServer` as `outbounds` like the protocol handlers.
 * `prepare` runs at every load (start and reload) and returns problems that
 * refuse the program (e.g. a missing credential); `activate` is called once
 * that program is current; `connectors` receives the server's full registry
 * (for fallbacks such as `via g else allow`); `close` stops timers at shutdown.
 */
export interface OutboundProvider {
  readonly kinds: ReadonlyArray<Ir.ActionIR["k"]>
  prepare(program: Ir.Program): ReadonlyArray<string>
  activate(program: Ir.Program, env: OutboundEnv): void
  connectors(all: () => Registry): ReadonlyMap<Ir.ActionIR["k"], Connector>
  /** Optional UDP paths for the same kinds (`via` a SOCKS5 upstream). */
  udpConnectors?(): UdpRegistry
  /** Optional BIND at an upstream for the same kinds (`via` a SOCKS upstream). */
  bindConnectors?(): BindRegistry
  close(): void
}

const fail = (reason: OutboundReason) => Effect.fail(new OutboundError({ reason }))
const noop = (): void => {}

export const reasonOf = (e: unknown, host: string): OutboundReason => {
  const err = e as { code?: string; errors?: ReadonlyArray<{ code?: string }> }
  const code = err.code ?? err.errors?.[0]?.code
  switch (code) {
    case "ECONNREFUSED": return { _tag: "Refused" }
    case "EHOSTUNREACH": case "EHOSTDOWN": return { _tag: "HostUnreachable" }
    case "ENETUNREACH": case "ENETDOWN": return { _tag: "NetworkUnreachable" }
    case "ETIMEDOUT": return { _tag: "Timeout" }
    case "ENOTFOUND": case "EAI_AGAIN": return { _tag: "DnsFailed", host }
    case "EAFNOSUPPORT": case "EADDRNOTAVAIL": return { _tag: "AddressNotSupported" }
    default: return { _tag: "General", message: `connect failed${code === undefined ? "" : ` (${code})`}` }
  }
}

const kPeer = Symbol("proxyd.peer")
/**
 * The address a socket was connected to when the connector knew it (an IP literal, no lookup),
 * as `host:port` (`[v6]:port`): the close line's `dst_connected` without a `getpeername` call.
 */
export const knownPeer = (s: net.Socket): string | undefined => (s as net.Socket & { [kPeer]?: string })[kPeer]

/**
 * Connects a socket with a deadline and calls `done` once: the connected socket or why not.
 * Returns a cancel function (destroys the socket; `done` is not called). The callback form of
 * `connectSocket` (the express path).
 */
export const connectNow = (
  /** Fresh per call (completed here with `allowHalfOpen` and `noDelay`, not copied). */
  opts: net.TcpNetConnectOpts & { readonly host: string; readonly port: number },
  timeoutMs: number,
  done: (r: net.Socket | OutboundError) => void,
): () => void => {
  let over = false
  opts.allowHalfOpen = true
  opts.noDelay = true
  const s = net.connect(opts)
  s.on("error", noop)
  const finish = (r: net.Socket | OutboundError) => {
    if (over) return
    over = true
    clearTimeout(timer)
    s.off("connect", onConnect)
    s.off("error", onError)
    done(r)
  }
  const onConnect = () => {
    if (!("lookup" in opts) || opts.lookup === undefined) (s as net.Socket & { [kPeer]?: string })[kPeer] = opts.host.includes(":") ? `[${opts.host}]:${opts.port}` : `${opts.host}:${opts.port}`
    finish(s)
  }
  const onError = (e: Error) => { s.destroy(); finish(new OutboundError({ reason: reasonOf(e, opts.host) })) }
  const timer = setTimeout(() => { s.destroy(); finish(new OutboundError({ reason: { _tag: "Timeout" } })) }, timeoutMs)
  s.once("connect", onConnect)
  s.once("error", onError)
  return () => {
    if (!over) { over = true; clearTimeout(timer); s.destroy() }
  }
}

/** Connects a socket with a deadline; interruption destroys it. */
export const connectSocket = (opts: net.TcpNetConnectOpts & { readonly host: string; readonly port: number }, timeoutMs: number): Effect.Effect<net.Socket, OutboundError> =>
  Effect.callback<net.Socket, OutboundError>((resume) => {
    const cancel = connectNow(opts, timeoutMs, (r) => resume(r instanceof OutboundError ? Effect.fail(r) : Effect.succeed(r)))
    return Effect.sync(cancel)
  })

const familyOf = (a: string): 4 | 6 => (net.isIPv6(a) ? 6 : 4)

/** Connects to host:port: a literal or an exact address directly, a name via the Resolver with Happy Eyeballs. */
export const direct = (host: string, port: number, ctx: OutboundContext, address?: string): Effect.Effect<net.Socket, OutboundError> => {
  const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host
  if (address !== undefined) return connectSocket({ host: address, port }, ctx.connectTimeoutMs)
  if (net.isIP(bare) !== 0) return connectSocket({ host: bare, port }, ctx.connectTimeoutMs)
  if (isOnion(bare)) return fail({ _tag: "DnsFailed", host: bare })
  const started = Date.now()
  return ctx.resolver.resolve(bare).pipe(
    Effect.timeoutOrElse({ duration: ctx.connectTimeoutMs, orElse: () => fail({ _tag: "Timeout" }) }),
    Effect.flatMap((addrs) => connectSocket(byName(bare, port, addrs), Math.max(1, ctx.connectTimeoutMs - (Date.now() - started)))),
  )
}

/** Connect options for a name whose addresses are known: Happy Eyeballs over exactly them (a lookup answering from the list). */
const byName = (name: string, port: number, addrs: ReadonlyArray<string>): net.TcpNetConnectOpts & { readonly host: string; readonly port: number } => {
  const list = addrs.map((a) => ({ address: a, family: familyOf(a) }))
  const lookup = (_h: string, o: { all?: boolean }, cb: (...args: Array<unknown>) => void): void => {
    if (o.all === true) cb(null, list)
    else cb(null, list[0]!.address, list[0]!.family)
  }
  return { host: name, port, lookup: lookup as unknown as net.LookupFunction, autoSelectFamily: true }
}

/** `direct` without an effect when no lookup is needed (a literal, the resolved address, a name the Resolver has cached); else undefined. */
const directNow = (host: string, port: number, ctx: OutboundContext, address: string | undefined, done: (r: net.Socket | OutboundError) => void): (() => void) | undefined => {
  if (address !== undefined) return connectNow({ host: address, port }, ctx.connectTimeoutMs, done)
  const bare = host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host
  if (net.isIP(bare) !== 0) return connectNow({ host: bare, port }, ctx.connectTimeoutMs, done)
  if (isOnion(bare)) return undefined
  const addrs = ctx.resolver.cached?.(bare)
  return addrs === undefined ? undefined : connectNow(byName(bare, port, addrs), ctx.connectTimeoutMs, done)
}

const allow: Connector = (decided, ctx) => {
  const req = decided.request
  const ip = req.facts?.["dst.ip"]
  // The policy needed the address and the lookup failed: do not resolve a second time.
  if (ip === null && net.isIP(req.dstHost) === 0) return fail({ _tag: "DnsFailed", host: req.dstHost })
  return direct(req.dstHost, req.dstPort, ctx, decided.resolved)
}

const allowNow: NonNullable<Connector["now"]> = (decided, ctx, done) => {
  const req = decided.request
  if (req.facts?.["dst.ip"] === null && net.isIP(req.dstHost) === 0) return undefined
  return directNow(req.dstHost, req.dstPort, ctx, decided.resolved, done)
}

const redirect: Connector = (decided, ctx) => {
  const a = decided.decision.action
  if (a.k !== "redirect") return fail({ _tag: "General", message: "not a redirect" })
  return direct(a.host, a.port, ctx)
}

const redirectNow: NonNullable<Connector["now"]> = (decided, ctx, done) => {
  const a = decided.decision.action
  return a.k === "redirect" ? directNow(a.host, a.port, ctx, undefined, done) : undefined
}

const blocked: Connector = (decided) => {
  const a = decided.decision.action
  return fail(a.k === "block" && a.message !== undefined ? { _tag: "Blocked", message: a.message } : { _tag: "Blocked" })
}

const later: Connector = () => fail({ _tag: "General", message: "upstreams arrive with issue 4" })

/** The built-in kinds. Issue 4 extends this map (`new Map([...defaultRegistry, ["via", ...]])`). */
export const defaultRegistry: Registry = new Map<Ir.ActionIR["k"], Connector>([
  ["allow", Object.assign(allow, { now: allowNow })],
  ["redirect", Object.assign(redirect, { now: redirectNow })],
  ["block", blocked],
  ["via", later],
  ["tor", later],
])
