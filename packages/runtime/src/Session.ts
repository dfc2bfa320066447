/**
 * One client connection: its `SessionContext`, its handshake deadline, and its close log line.
 *
 * Details: `serveConnection` runs a connection to its end: (mixed listeners)
 * sniff the protocol, build the context, run the handler (a timer interrupts
 * the connection's fiber when the handshake deadline passes), run the relay
 * the handler handed over (after the handler has returned, so its state is
 * garbage while bytes flow), then destroy every socket the connection opened
 * and write ONE log line. The handshake phase lasts from accept until the handler
 * first calls `decide` (the client has said what it wants); then the connect
 * timeout and the relay's idle timeout apply. The decision and the policy are
 * taken from the policy state current at `decide` time; a reload later does
 * not change a running connection.
 *
 * Close line fields: `id listener protocol src user dst dst_ip (as connected)
 * rule action bytes_up bytes_down duration_ms outcome error tags` plus the
 * handler's `note`s (a noted `outcome` replaces the runtime's). Bytes are summed
 * over every outbound socket of the connection (relayed or forwarded). Never a password (authenticate's arguments are not kept).
 *
 * TLS listeners: the handshake runs first, inside the handshake deadline
 * (which counts from accept, so a PROXY header read before it is included);
 * the handler gets the TLS socket. A failed handshake ends the connection
 * with outcome `tls-error` and OpenSSL's reason. `src` is `env.peer` (the
 * address a PROXY header carried, else the TCP peer); with PROXY protocol the
 * line also has `proxy` (the load balancer's address).
 *
 * Observers and sessions (`Observe.ts`, optional): each connection is listed
 * in `env.sessions` while open (a `kill` destroys its sockets: outcome
 * `killed`) and reported to `env.observers` (accepted, authenticated, decided,
 * connected, closed) for metrics and the admin API. `env.geo` answers the
 * country/ASN facts of `decide`.
 */
import type { Socket } from "node:net"
import { threadId } from "node:worker_threads"
import { Effect, type Fiber } from "effect"
import type { Ir } from "@proxyd/rules"
import type { AuthSource } from "./Auth.ts"
import { decide, decideNow } from "./Decide.ts"
import type { Compiled } from "./Engine.ts"
import { OutboundError } from "./Errors.ts"
import type { AuthResult, Connected, Decided, ExpressContext, InboundHandler, ProtocolName, RequestInput, SessionContext, UdpChannel, UpstreamBind } from "./Inbound.ts"
import type { GeoLookup } from "./Geo.ts"
import type { Log } from "./Log.ts"
import { notify, type Observer, type SessionEntry, type SessionInfo, type Sessions } from "./Observe.ts"
import { type BindRegistry, knownPeer, type OutboundContext, type Registry, type UdpRegistry } from "./Outbound.ts"
import { startRelay } from "./Relay.ts"
import type { ResolverShape } from "./Resolver.ts"
import { protocolOf, readFirst } from "./Sniff.ts"
import { ByteReader, readNow, type EOF } from "./Wire.ts"
import { handshake, type TlsContext } from "./Tls.ts"
import type { ConnectionHandle } from "./Listener.ts"

/** What a connection needs from the policy state current when it is served. */
export interface PolicyView {
  readonly compiled: Compiled
  readonly usergroups: ReadonlyMap<string, ReadonlyArray<string>>
  readonly auth: AuthSource | undefined
  readonly authRequired: boolean
  /** The policy's name (for observers); absent in views built by hand. */
  readonly policy?: string
}

export interface ListenerView {
  readonly name: string
  readonly kind: Ir.ListenerKind
  readonly handshakeMs: number
  readonly idleMs: number
  readonly connectMs: number
}

/** What every connection of a listener shares (built once per listener, not per connection). */
export interface ConnectionEnv {
  readonly listener: ListenerView
  /** The listener's policy view, read at `decide`/`authenticate` time. */
  readonly view: () => PolicyView
  readonly handlers: Partial<Record<ProtocolName, InboundHandler>>
  readonly resolver: ResolverShape
  readonly registry: Registry
  /** UDP paths by action kind (from outbound providers); absent: none. */
  readonly udpRegistry?: UdpRegistry
  /** BIND at an upstream by action kind (from outbound providers); absent: none. */
  readonly bindRegistry?: BindRegistry
  readonly log: Log
  /** Country/ASN facts for `decide` (absent: unknown). */
  readonly geo?: GeoLookup | undefined
  /** Told about the connection's steps (metrics, admin counters). */
  readonly observers?: ReadonlyArray<Observer>
  /** Lists the connection while it is open (admin API). */
  readonly sessions?: Sessions | undefined
  /** Serve on the express path where a handler offers it (default true; `PROXYD_EXPRESS=off` turns it off everywhere). */
  readonly express?: boolean
}

/** What is particular to one accepted connection. */
export interface Accepted {
  /** The client's address for policy, logs and limits (default: the TCP peer). */
  readonly peer?: { readonly ip: string; readonly port: number } | undefined
  /** When the connection was accepted (default: now); the handshake deadline counts from it. */
  readonly acceptedAt?: number | undefined
  /** Wrap the connection in TLS with this context before anything else. */
  readonly tls?: TlsContext | undefined
  /**
   * Lets the relay outlive the connection's fiber (the Listener's `ConnectionHandle`): the
   * fiber ends when the handler returns and the relay runs on plain callbacks, so an idle
   * relayed connection holds no fiber.
   */
  readonly handle: ConnectionHandle
}

let counter = 0
/** `workers N`: each worker thread counts on its own, its thread id keeps the ids apart. */
const nextId = (): string => `${Date.now().toString(36)}-${threadId === 0 ? "" : `${threadId.toString(36)}.`}${(++counter).toString(36)}`

const hostPort = (h: string, p: number): string => (h.includes(":") ? `[${h}]:${p}` : `${h}:${p}`)

const reasonText = (e: OutboundError): string => {
  const r = e.reason
  if (r._tag === "UpstreamFailed") {
    const code = r.socksCode !== undefined ? ` socks 0x${r.socksCode.toString(16).padStart(2, "0")}` : r.httpStatus !== undefined ? ` http ${r.httpStatus}` : ""
    return `UpstreamFailed${r.hop === undefined ? "" : `: hop ${r.hop}`}${code}`
  }
  if (r._tag === "Timeout" && r.hop !== undefined) return `Timeout: hop ${r.hop}`
  return r._tag === "General" ? `General: ${r.message}` : r._tag === "DnsFailed" ? `DnsFailed: ${r.host}` : r._tag
}

const unionGroups = (user: string, own: ReadonlyArray<string>, usergroups: ReadonlyMap<string, ReadonlyArray<string>>): Array<string> => {
  const gs = new Set(own)
  for (const [g, members] of usergroups) if (members.includes(user)) gs.add(g)
  return [...gs]
}

/** Ends a socket whose last reply is still queued, destroying it once flushed (at most 2 s later). */
const closeAfterFlush = (s: Socket): void => {
  const t = setTimeout(() => s.destroy(), 2_000)
  s.once("finish", () => { clearTimeout(t); s.destroy() })
  s.once("close", () => clearTimeout(t))
  s.end()
}

const NO_OBSERVERS: ReadonlyArray<Observer> = []
const EMPTY = Buffer.alloc(0)

/** `Connected` reading the socket's addresses when asked (each is a syscall the first time). */
class ConnectedSocket implements Connected {
  readonly socket: Socket
  constructor(socket: Socket) { this.socket = socket }
  get localAddress(): string { return this.socket.localAddress ?? "" }
  get localPort(): number { return this.socket.localPort ?? 0 }
  get remoteAddress(): string { return this.socket.remoteAddress ?? "?" }
  get remotePort(): number { return this.socket.remotePort ?? 0 }
}

/** The handshake deadline passed: interrupt the connection's fiber (module-level: no closure per connection). */
const onDeadline = (c: Conn): void => {
  c.handshakeTimer = undefined
  c.timedOut = true
  const f = c.fiber
  c.fiber = undefined
  if (f !== undefined) f.interruptUnsafe()
  else if (c.express) c.expressTimeout()
}

/** `PROXYD_EXPRESS=off` serves every connection on the effect path (a way out, and for A/B runs). */
const expressOn = process.env["PROXYD_EXPRESS"] !== "off"

/** What a throwing parser step turned into (the express path must not throw into a socket event). */
class Thrown { readonly error: unknown; constructor(error: unknown) { this.error = error } }

const takeAll = (r: ByteReader): Buffer | undefined => (r.size > 0 ? r.rest() : undefined)

/**
 * One connection's state, its `SessionContext` (the handler calls its methods) and its entry in
 * the session listing — one object, so a connection allocates no closures for them and an idle
 * relayed connection holds little more than this object, its close-line fields and its sockets.
 */
class Conn implements ExpressContext, SessionEntry {
  readonly id: string
  readonly listener: string
  readonly srcIp: string
  readonly srcPort: number
  readonly handshakeTimeoutMs: number
  readonly started: number
  readonly env: ConnectionEnv
  readonly tls: TlsContext | undefined
  readonly handle: ConnectionHandle
  readonly raw: Socket
  readonly observers: ReadonlyArray<Observer>
  client: Socket
  /** Every socket the connection opened (the client's first); destroyed at the end. */
  sockets: Array<Socket>
  /** Close-line fields in order (handlers' notes included). */
  readonly line: Record<string, unknown>
  outcome = "ok"
  protocol: ProtocolName | undefined = undefined
  user: string | undefined = undefined
  groups: ReadonlyArray<string> | undefined = undefined
  authMethod = "none"
  tags: Array<string> | undefined = undefined
  /** A rule with the `log` modifier decided this connection: its close line is logged at warn. */
  logged = false
  /** What the handshake deadline found being waited for (close line). */
  phase: "tls" | "sniff" | "handler" = "handler"
  timedOut = false
  /** The connection's fiber while the handshake deadline may interrupt it. */
  fiber: Fiber.Fiber<unknown, unknown> | undefined = undefined
  handshakeTimer: ReturnType<typeof setTimeout> | undefined = undefined
  lastDecided: Decided | undefined = undefined
  handedOff: { readonly client: Socket; readonly upstream: Socket; readonly idleMs: number } | undefined = undefined
  handshakeMs: number | undefined = undefined
  killed = false
  finished = false
  detachedRelay = false
  /** Served on the express path (callbacks; a fiber only for a `fallback`). */
  express = false
  /** Ends the connection's hold on its listener (set once it outlives its fiber: relay or express); called by `finish`. */
  release: (() => void) | undefined = undefined
  /** The express path's pending read, connect, relay and fallback fiber (shutdown and `finish` stop them). */
  cancelRead: (() => void) | undefined = undefined
  cancelConnect: (() => void) | undefined = undefined
  relayAbort: (() => void) | undefined = undefined
  fallbackFiber: Fiber.Fiber<unknown, unknown> | undefined = undefined
  /** This connection's place in the session listing (removed at `finish`). */
  listed: { remove(): void } | undefined = undefined

  constructor(raw: Socket, env: ConnectionEnv, a: Accepted) {
    this.started = a.acceptedAt ?? Date.now()
    this.id = nextId()
    this.env = env
    this.tls = a.tls
    this.handle = a.handle
    this.raw = raw
    this.client = raw
    this.sockets = [raw]
    this.listener = env.listener.name
    this.handshakeTimeoutMs = env.listener.handshakeMs
    this.observers = env.observers ?? NO_OBSERVERS
    const rawIp = raw.remoteAddress ?? ""
    const rawPort = raw.remotePort ?? 0
    this.srcIp = a.peer?.ip ?? rawIp
    this.srcPort = a.peer?.port ?? rawPort
    this.line = { id: this.id, listener: this.listener, src: hostPort(this.srcIp === "" ? "?" : this.srcIp, this.srcPort) }
    if (this.srcIp !== rawIp || this.srcPort !== rawPort) this.line["proxy"] = hostPort(rawIp === "" ? "?" : rawIp, rawPort)
  }

  /** Sniffed bytes for a handler that `takesFirstBytes`. */
  first: Buffer | undefined = undefined

  // --- SessionContext ------------------------------------------------------------------------

  firstBytes(): Buffer {
    const b = this.first
    this.first = undefined
    return b ?? EMPTY
  }

  get localAddress(): string { return this.client.localAddress ?? "" }

  /** The handshake deadline is this connection's timer (`onDeadline`): handlers need no timer of their own. */
  get enforcesHandshakeDeadline(): boolean { return true }

  get auth(): SessionContext["auth"] {
    const v = this.env.view()
    return v.auth === undefined ? "none" : v.authRequired ? "required" : "optional"
  }

  authenticate(u: string, p: string): Effect.Effect<AuthResult> {
    const v = this.env.view()
    if (v.auth === undefined) return Effect.succeed({ ok: false })
    const source = v.auth
    return Effect.promise(() => source.verify(u, p, { src: this.srcIp, listener: this.listener })).pipe(Effect.map((r) => {
      notify(this.observers, "authenticated", { listener: this.listener, ok: r.ok })
      return r.ok ? { ok: true, user: u, groups: unionGroups(u, r.groups, v.usergroups) } : { ok: false }
    }))
  }

  setUser(u: string | undefined, gs?: ReadonlyArray<string>): void {
    this.user = u
    this.authMethod = u === undefined ? "none" : "password"
    this.groups = u === undefined ? undefined : unionGroups(u, gs ?? [], this.env.view().usergroups)
  }

  private request(input: RequestInput): Ir.Request {
    return {
      command: input.command,
      dstHost: input.dstHost,
      dstPort: input.dstPort,
      listener: this.listener,
      protocol: input.protocol,
      srcIp: this.srcIp,
      srcPort: this.srcPort,
      auth: this.authMethod,
      time: Date.now(),
      ...(this.user !== undefined ? { user: this.user } : {}),
      ...(this.groups !== undefined ? { groups: this.groups } : {}),
    }
  }

  /** Records a decision (close line, observers, modifiers). */
  private decided(d: Decided, v: PolicyView, input: RequestInput, decideStart: number): Decided {
    this.lastDecided = d
    const action = d.decision.action.k
    notify(this.observers, "decided", {
      listener: this.listener, protocol: this.protocol ?? input.protocol, policy: v.policy ?? "", rule: d.decision.rule, action,
      durationMs: performance.now() - decideStart,
    })
    this.line["rule"] = d.decision.rule
    this.line["action"] = action
    if (d.resolved !== undefined) this.line["dst_ip"] = d.resolved
    if (action === "block") this.outcome = "blocked"
    for (const m of d.decision.modifiers) {
      if (m.k === "tag") (this.tags ??= []).push(m.value)
      else if (m.k === "log") this.logged = true
    }
    return d
  }

  decide(input: RequestInput): Effect.Effect<Decided> {
    this.endHandshake()
    this.handshakeMs ??= Date.now() - this.started
    const decideStart = performance.now()
    const v = this.env.view()
    const req = this.request(input)
    this.line["dst"] = hostPort(input.dstHost, input.dstPort)
    return Effect.map(decide(v.compiled, req, this.env.resolver, this.env.geo), (d) => this.decided(d, v, input, decideStart))
  }

  decideNow(input: RequestInput): Decided | undefined {
    const decideStart = performance.now()
    const v = this.env.view()
    const d = decideNow(v.compiled, this.request(input), this.env.geo, this.env.resolver.cached)
    if (d === undefined) return undefined
    this.endHandshake()
    this.handshakeMs ??= Date.now() - this.started
    this.line["dst"] = hostPort(input.dstHost, input.dstPort)
    return this.decided(d, v, input, decideStart)
  }

  private outboundContext(): OutboundContext {
    return { resolver: this.env.resolver, connectTimeoutMs: this.env.listener.connectMs, note: (f) => this.note(f) }
  }

  private noOutbound(action: string): OutboundError {
    this.outcome = "error"
    this.line["error"] = `General: no outbound for ${action}`
    notify(this.observers, "connected", { listener: this.listener, action, ok: false, durationMs: 0 })
    return new OutboundError({ reason: { _tag: "General", message: `no outbound for ${action}` } })
  }

  private connected(s: Socket, action: string, connectStart: number): Connected {
    this.sockets.push(s)
    const durationMs = performance.now() - connectStart
    // The handler's reply needs only the local address; the peer address (a syscall) and the
    // observers wait until the handler has answered (a microtask: before any other I/O).
    queueMicrotask(() => {
      notify(this.observers, "connected", { listener: this.listener, action, ok: true, durationMs })
      this.line["dst_connected"] = knownPeer(s) ?? hostPort(s.remoteAddress ?? "?", s.remotePort ?? 0)
    })
    return new ConnectedSocket(s)
  }

  private connectFailed(e: OutboundError, action: string, connectStart: number): OutboundError {
    if (e.reason._tag !== "Blocked") {
      notify(this.observers, "connected", { listener: this.listener, action, ok: false, durationMs: performance.now() - connectStart })
      this.outcome = "error"
      this.line["error"] = reasonText(e)
    }
    return e
  }

  connect(decided: Decided): Effect.Effect<Connected, OutboundError> {
    const action = decided.decision.action.k
    const connector = this.env.registry.get(action)
    if (connector === undefined) return Effect.fail(this.noOutbound(action))
    const connectStart = performance.now()
    return Effect.matchEffect(connector(decided, this.outboundContext()), {
      onSuccess: (s) => Effect.succeed(this.connected(s, action, connectStart)),
      onFailure: (e) => Effect.fail(this.connectFailed(e, action, connectStart)),
    })
  }

  connectNow(decided: Decided, done: (r: Connected | OutboundError) => void): boolean {
    const action = decided.decision.action.k
    const now = this.env.registry.get(action)?.now
    if (now === undefined) return false
    const connectStart = performance.now()
    const cancel = now(decided, this.outboundContext(), (r) => {
      this.cancelConnect = undefined
      if (this.finished) {
        if (!(r instanceof OutboundError)) r.destroy()
        return
      }
      if (r instanceof OutboundError) this.safely(done, this.connectFailed(r, action, connectStart))
      else this.safely(done, this.connected(r, action, connectStart))
    })
    if (cancel === undefined) return false
    this.cancelConnect = cancel
    return true
  }

  connectUdp(decided: Decided): Effect.Effect<UdpChannel, OutboundError> {
    const c = this.env.udpRegistry?.get(decided.decision.action.k)
    if (c === undefined) return Effect.fail(new OutboundError({ reason: { _tag: "CommandNotSupported" } }))
    return c(decided, this.outboundContext())
  }

  connectBind(decided: Decided): Effect.Effect<UpstreamBind, OutboundError> {
    const c = this.env.bindRegistry?.get(decided.decision.action.k)
    if (c === undefined) return Effect.fail(new OutboundError({ reason: { _tag: "CommandNotSupported" } }))
    return c(decided, this.outboundContext())
  }

  relay(c: Socket, upstream: Socket): Effect.Effect<void> {
    this.endHandshake()
    if (!this.sockets.includes(upstream)) this.sockets.push(upstream)
    const mod = this.lastDecided?.decision.modifiers.find((m) => m.k === "idle")
    this.handedOff = { client: c, upstream, idleMs: mod?.k === "idle" ? mod.ms : this.env.listener.idleMs }
    return Effect.void
  }

  relayNow(client: Socket, upstream: Socket): void {
    void this.relay(client, upstream)
    this.startHandedOff()
  }

  readNow<T>(reader: ByteReader, step: (reader: ByteReader) => T | undefined, done: (r: T | typeof EOF) => void): void {
    const cancel = readNow<T | Thrown>(this.client, reader, (r) => {
      try { return step(r) } catch (e) { return new Thrown(e) }
    }, (r) => {
      this.cancelRead = undefined
      if (this.finished) return
      if (r instanceof Thrown) return this.failed(r.error)
      this.safely(done, r)
    })
    if (this.cancelRead === undefined && !this.finished) this.cancelRead = cancel
  }

  fallback(effect: Effect.Effect<void>): void {
    if (this.finished) return
    Effect.runFork(this.guarded(Effect.withFiber((fiber) => {
      this.fallbackFiber = fiber
      if (this.handshakeTimer !== undefined) this.fiber = fiber
      return Effect.flatMap(effect, () => this.relayPhase())
    })))
  }

  endNow(): void { this.finish() }

  note(fields: Readonly<Record<string, unknown>>): void {
    for (const k of Object.keys(fields)) {
      if (k === "outcome" && typeof fields[k] === "string") this.outcome = fields[k]
      else this.line[k] = fields[k]
    }
  }

  // --- SessionEntry (admin listing) ----------------------------------------------------------

  info(): SessionInfo {
    let up = 0, down = 0
    for (const s of this.sockets) if (s !== this.client) { up += s.bytesWritten; down += s.bytesRead }
    const line = this.line
    const str = (k: string): Record<string, string> => (typeof line[k] === "string" ? { [k]: line[k] } : {})
    return {
      id: this.id, listener: this.listener, src: line["src"] as string, startedAt: new Date(this.started).toISOString(),
      ...str("protocol"), ...(this.user === undefined ? {} : { user: this.user }), ...str("dst"), ...str("rule"), ...str("action"),
      bytesUp: up, bytesDown: down,
    }
  }

  kill(): void {
    this.killed = true
    for (const s of this.sockets) s.destroy()
  }

  // --- the connection's course ---------------------------------------------------------------

  endHandshake(): void {
    if (this.handshakeTimer !== undefined) { clearTimeout(this.handshakeTimer); this.handshakeTimer = undefined }
    this.fiber = undefined
  }

  /** Destroys the sockets, reports `closed` and writes the close line; once. */
  finish(): void {
    if (this.finished) return
    this.finished = true
    this.endHandshake()
    this.cancelRead?.()
    this.cancelConnect?.()
    this.cancelRead = this.cancelConnect = undefined
    const env = this.env
    // Bytes exchanged with destinations, from the sockets themselves (relay or a handler's own forwarding).
    let bytesUp = 0, bytesDown = 0
    for (const s of this.sockets) {
      if (s !== this.client) { bytesUp += s.bytesWritten; bytesDown += s.bytesRead }
    }
    for (const s of this.sockets) {
      if (s === this.client && this.outcome !== "shutdown" && !s.destroyed && s.writableLength > 0) closeAfterFlush(s)
      else s.destroy()
    }
    this.listed?.remove()
    this.listed = undefined
    if (this.killed) this.outcome = "killed"
    const durationMs = Date.now() - this.started
    const line = this.line
    notify(this.observers, "closed", {
      listener: this.listener,
      protocol: this.protocol,
      action: typeof line["action"] === "string" ? line["action"] : undefined,
      rule: typeof line["rule"] === "string" ? line["rule"] : undefined,
      outcome: this.outcome, bytesUp, bytesDown, durationMs, handshakeMs: this.handshakeMs,
    })
    line["user"] = this.user
    line["bytes_up"] = bytesUp
    line["bytes_down"] = bytesDown
    line["duration_ms"] = durationMs
    line["outcome"] = this.outcome
    line["tags"] = this.tags
    env.log.log(this.logged ? "warn" : "info", "connection", line)
    const release = this.release
    this.release = undefined
    release?.()
  }

  /** A handler or parser threw on the express path: the connection ends as `error` (the effect path catches the same as a defect). */
  failed(e: unknown): void {
    if (this.finished) return
    this.outcome = "error"
    this.line["error"] = String(e).slice(0, 200)
    this.finish()
  }

  private safely<A>(f: (a: A) => void, a: A): void {
    try { f(a) } catch (e) { this.failed(e) }
  }

  /** The handshake deadline passed on the express path (no fiber is waiting): end the connection without a reply. */
  expressTimeout(): void {
    if (this.outcome === "ok") this.outcome = "handshake-timeout"
    this.finish()
  }

  /** Shutdown reached this connection after it outlived its fiber: stop everything, outcome `shutdown`. */
  private abortAll(): void {
    this.outcome = "shutdown"
    const r = this.relayAbort
    this.relayAbort = undefined
    r?.()
    this.cancelRead?.()
    this.cancelConnect?.()
    this.fallbackFiber?.interruptUnsafe()
    this.finish()
  }

  /** Runs the handler of this connection's protocol (after TLS and sniffing). */
  private serve(handler: InboundHandler | undefined): Effect.Effect<void> {
    if (handler === undefined) {
      this.outcome = "error"
      this.line["error"] = "no handler for this protocol"
      return Effect.void
    }
    this.protocol = handler.protocol
    this.line["protocol"] = handler.protocol
    return handler.handle(this.client, this)
  }

  private afterTls(): Effect.Effect<void> {
    const env = this.env
    if (env.listener.kind !== "mixed") return this.serve(env.handlers[env.listener.kind])
    this.phase = "sniff"
    return Effect.flatMap(readFirst(this.client), (bytes) => {
      this.phase = "handler"
      if (bytes === undefined) { this.outcome = "closed-before-handshake"; return Effect.void }
      const handler = env.handlers[protocolOf(bytes[0]!)]
      if (handler?.takesFirstBytes === true) this.first = bytes
      else this.client.unshift(bytes)
      return this.serve(handler)
    })
  }

  private body(): Effect.Effect<void> {
    const tls = this.tls
    if (tls === undefined) return this.afterTls()
    this.phase = "tls"
    const raw = this.raw
    return Effect.flatMap(handshake(raw, tls), (r) => {
      this.phase = "handler"
      if (!r.ok) { this.outcome = "tls-error"; this.line["error"] = r.message; return Effect.void }
      const client = r.socket
      this.client = client
      // The TLS socket owns the raw socket's handle: close through it (flushing close_notify), then the raw one.
      this.sockets[0] = client
      client.once("close", () => raw.destroy())
      this.line["tls"] = client.getProtocol() ?? "tls"
      return this.afterTls()
    })
  }

  /**
   * The relay runs once the handler has returned, so the handler's state (its generators,
   * buffers) is garbage while the bytes flow, and the fiber ends too: the relay runs on
   * callbacks, detached through the listener's handle; its end (or the listener's abort at
   * shutdown) writes the close line.
   */
  private relayPhase(): Effect.Effect<void> {
    if (this.handedOff !== undefined) this.startHandedOff()
    return Effect.void
  }

  private startHandedOff(): void {
    const h = this.handedOff
    if (h === undefined) return
    this.handedOff = undefined
    this.detachedRelay = true
    // Detach first (unless the express path did): a relay whose sockets are already closed ends inside `startRelay`.
    this.release ??= this.handle.detach(() => this.abortAll())
    this.relayAbort = startRelay(h.client, h.upstream, h.idleMs, (r) => {
      this.relayAbort = undefined
      if (r.end === "idle") this.outcome = "idle-timeout"
      this.finish()
    })
  }

  /** Accept-time bookkeeping: the handshake deadline, `accepted`, the session listing. */
  private begin(): void {
    this.handshakeTimer = setTimeout(onDeadline, Math.max(0, this.env.listener.handshakeMs - (Date.now() - this.started)), this)
    notify(this.observers, "accepted", { listener: this.listener })
    this.listed = this.env.sessions?.add(this)
  }

  private guarded(body: Effect.Effect<void>): Effect.Effect<void> {
    return body.pipe(
      Effect.onInterrupt(() => Effect.sync(() => {
        if (!this.timedOut) { this.outcome = "shutdown"; return }
        // A handler that already answered (a rejection) and was waiting for the client to leave keeps its outcome.
        if (this.outcome !== "ok") return
        this.outcome = "handshake-timeout"
        if (this.phase === "tls") this.line["error"] = "TLS handshake not completed"
      })),
      Effect.catchCause((cause) => Effect.sync(() => { this.outcome = "error"; this.line["error"] = String(cause).slice(0, 200) })),
      Effect.ensuring(Effect.sync(() => { if (!this.detachedRelay) this.finish() })),
    )
  }


  /**
   * The express path: the connection outlives its (short) fiber from the start; sniffing and a
   * handler's `express` run on callbacks, and anything else continues in a `fallback` fiber.
   */
  startExpress(): void {
    this.express = true
    this.begin()
    this.release = this.handle.detach(() => this.abortAll())
    try {
      const env = this.env
      if (env.listener.kind !== "mixed") return this.expressServe(env.handlers[env.listener.kind], undefined)
      this.phase = "sniff"
      this.readNow(new ByteReader(), takeAll, (b) => {
        this.phase = "handler"
        if (!(b instanceof Buffer)) { this.outcome = "closed-before-handshake"; return this.finish() }
        this.expressServe(env.handlers[protocolOf(b[0]!)], b)
      })
    } catch (e) {
      this.failed(e)
    }
  }

  private expressServe(handler: InboundHandler | undefined, first: Buffer | undefined): void {
    if (handler?.express === undefined) {
      if (first !== undefined) {
        if (handler?.takesFirstBytes === true) this.first = first
        else this.client.unshift(first)
      }
      return this.fallback(this.serve(handler))
    }
    this.protocol = handler.protocol
    this.line["protocol"] = handler.protocol
    if (first !== undefined) this.first = first
    handler.express(this.client, this)
  }

  run(): Effect.Effect<void> {
    if (canExpress(this.env, this.tls)) return Effect.sync(() => this.startExpress())
    return this.guarded(Effect.withFiber((fiber) => {
      this.fiber = fiber
      this.begin()
      return Effect.flatMap(this.body(), () => this.relayPhase())
    }))
  }
}

/** Whether a connection of this listener goes on the express path (no TLS, a handler that has one, or a mixed port: sniffed on callbacks). */
const canExpress = (env: ConnectionEnv, tls: TlsContext | undefined): boolean => {
  if (!expressOn || tls !== undefined || env.express === false) return false
  const kind = env.listener.kind
  return kind === "mixed" || env.handlers[kind]?.express !== undefined
}

/**
 * Serves the connection on the express path without a fiber when it can (true: it has
 * detached through `accepted.handle`), else does nothing and returns false (use `serveConnection`).
 */
export const serveExpress = (raw: Socket, env: ConnectionEnv, accepted: Accepted): boolean => {
  if (!canExpress(env, accepted.tls)) return false
  new Conn(raw, env, accepted).startExpress()
  return true
}

/** Serves one accepted (paused) client socket to its end. Never fails. */
export const serveConnection = (raw: Socket, env: ConnectionEnv, accepted: Accepted): Effect.Effect<void> =>
  Effect.suspend(() => new Conn(raw, env, accepted).run())
