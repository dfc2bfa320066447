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
import { Effect, type Fiber } from "effect"
import type { Ir } from "@proxyd/rules"
import type { AuthSource } from "./Auth.ts"
import { decide } from "./Decide.ts"
import type { Compiled } from "./Engine.ts"
import { OutboundError } from "./Errors.ts"
import type { Connected, Decided, InboundHandler, ProtocolName, RequestInput, SessionContext } from "./Inbound.ts"
import type { GeoLookup } from "./Geo.ts"
import type { Log } from "./Log.ts"
import { notify, type Observer, type Sessions } from "./Observe.ts"
import type { BindRegistry, OutboundContext, Registry, UdpRegistry } from "./Outbound.ts"
import { relay, startRelay } from "./Relay.ts"
import type { ResolverShape } from "./Resolver.ts"
import { sniff } from "./Sniff.ts"
import { handshake, type TlsContext } from "./Tls.ts"

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
  /** The client's address for policy, logs and limits (default: the TCP peer). */
  readonly peer?: { readonly ip: string; readonly port: number }
  /** When the connection was accepted (default: now); the handshake deadline counts from it. */
  readonly acceptedAt?: number
  /** Wrap the connection in TLS with this context before anything else. */
  readonly tls?: TlsContext | undefined
  /** Country/ASN facts for `decide` (absent: unknown). */
  readonly geo?: GeoLookup | undefined
  /** Told about the connection's steps (metrics, admin counters). */
  readonly observers?: ReadonlyArray<Observer>
  /** Lists the connection while it is open (admin API). */
  readonly sessions?: Sessions | undefined
  /**
   * Lets the relay outlive the connection's fiber (Listener's `ConnectionHandle.detach`): the
   * fiber ends when the handler returns and the relay runs on plain callbacks, so an idle
   * relayed connection holds no fiber. Absent: the relay runs inside the fiber.
   */
  readonly detach?: ((abort: () => void) => () => void) | undefined
}

let counter = 0
const nextId = (): string => `${Date.now().toString(36)}-${(++counter).toString(36)}`

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

/** Serves one accepted (paused) client socket to its end. Never fails. */
export const serveConnection = (raw: Socket, env: ConnectionEnv): Effect.Effect<void> =>
  Effect.gen(function*() {
    const started = env.acceptedAt ?? Date.now()
    const id = nextId()
    let client = raw
    const sockets = new Set<Socket>([client])
    const srcIp = env.peer?.ip ?? client.remoteAddress ?? ""
    const srcPort = env.peer?.port ?? client.remotePort ?? 0
    const line: Record<string, unknown> = {
      id,
      listener: env.listener.name,
      src: hostPort(srcIp === "" ? "?" : srcIp, srcPort),
    }
    if (srcIp !== (raw.remoteAddress ?? "") || srcPort !== (raw.remotePort ?? 0)) line["proxy"] = hostPort(raw.remoteAddress ?? "?", raw.remotePort ?? 0)
    let outcome = "ok"
    let user: string | undefined
    let groups: ReadonlyArray<string> | undefined
    let authMethod = "none"
    let bytesUp = 0, bytesDown = 0
    const tags: Array<string> = []
    // A rule with the `log` modifier decided this connection: its close line is logged at warn,
    // so `--log-level warn` keeps exactly those.
    let logged = false
    // The handshake deadline interrupts the connection's fiber (no racing fibers per connection);
    // `phase` says what was being waited for, for the close line.
    let phase: "tls" | "sniff" | "handler" = "handler"
    let timedOut = false
    const self: Fiber.Fiber<unknown, unknown> = yield* Effect.withFiber((f) => Effect.succeed(f))
    let handshakeTimer: ReturnType<typeof setTimeout> | undefined = setTimeout(() => {
      handshakeTimer = undefined
      timedOut = true
      self.interruptUnsafe()
    }, Math.max(0, env.listener.handshakeMs - (Date.now() - started)))
    const endHandshake = () => {
      if (handshakeTimer !== undefined) { clearTimeout(handshakeTimer); handshakeTimer = undefined }
    }
    let lastDecided: Decided | undefined
    let handedOff: { readonly client: Socket; readonly upstream: Socket; readonly idleMs: number } | undefined
    const observers = env.observers ?? []
    let handshakeMs: number | undefined
    let killed = false
    notify(observers, "accepted", { listener: env.listener.name })
    env.sessions?.add(id, {
      info: () => {
        let up = 0, down = 0
        for (const s of sockets) if (s !== client) { up += s.bytesWritten; down += s.bytesRead }
        const str = (k: string): Record<string, string> => (typeof line[k] === "string" ? { [k]: line[k] } : {})
        return {
          id, listener: env.listener.name, src: line["src"] as string, startedAt: new Date(started).toISOString(),
          ...str("protocol"), ...(user === undefined ? {} : { user }), ...str("dst"), ...str("rule"), ...str("action"),
          bytesUp: up, bytesDown: down,
        }
      },
      kill: () => {
        killed = true
        for (const s of sockets) s.destroy()
      },
    })

    let finished = false
    const finish = (): void => {
      if (finished) return
      finished = true
      endHandshake()
      // Bytes exchanged with destinations, from the sockets themselves (relay or a handler's own forwarding).
      for (const s of sockets) {
        if (s !== client) { bytesUp += s.bytesWritten; bytesDown += s.bytesRead }
      }
      for (const s of sockets) {
        if (s === client && outcome !== "shutdown" && !s.destroyed && s.writableLength > 0) closeAfterFlush(s)
        else s.destroy()
      }
      env.sessions?.remove(id)
      if (killed) outcome = "killed"
      notify(observers, "closed", {
        listener: env.listener.name,
        protocol: typeof line["protocol"] === "string" ? line["protocol"] : undefined,
        action: typeof line["action"] === "string" ? line["action"] : undefined,
        rule: typeof line["rule"] === "string" ? line["rule"] : undefined,
        outcome, bytesUp, bytesDown, durationMs: Date.now() - started, handshakeMs,
      })
      env.log.log(logged ? "warn" : "info", "connection", {
        ...line,
        user,
        bytes_up: bytesUp,
        bytes_down: bytesDown,
        duration_ms: Date.now() - started,
        outcome,
        tags: tags.length > 0 ? tags : undefined,
      })
    }

    const body = Effect.gen(function*() {
      if (env.tls !== undefined) {
        phase = "tls"
        const r = yield* handshake(raw, env.tls)
        phase = "handler"
        if (!r.ok) { outcome = "tls-error"; line["error"] = r.message; return }
        client = r.socket
        // The TLS socket owns the raw socket's handle: close through it (flushing close_notify), then the raw one.
        sockets.delete(raw)
        sockets.add(client)
        client.once("close", () => raw.destroy())
        line["tls"] = r.socket.getProtocol() ?? "tls"
      }
      let handler: InboundHandler | undefined
      if (env.listener.kind === "mixed") {
        phase = "sniff"
        const protocol = yield* sniff(client)
        phase = "handler"
        if (protocol === undefined) { outcome = "closed-before-handshake"; return }
        handler = env.handlers[protocol]
      } else {
        handler = env.handlers[env.listener.kind]
      }
      if (handler === undefined) { outcome = "error"; line["error"] = "no handler for this protocol"; return }
      line["protocol"] = handler.protocol
      const protocol = handler.protocol
      const initialView = env.view()

      const ctx: SessionContext = {
        id,
        listener: env.listener.name,
        srcIp,
        srcPort,
        localAddress: client.localAddress ?? "",
        auth: initialView.auth === undefined ? "none" : initialView.authRequired ? "required" : "optional",
        handshakeTimeoutMs: env.listener.handshakeMs,
        authenticate: (u, p) => {
          const v = env.view()
          if (v.auth === undefined) return Effect.succeed({ ok: false })
          const source = v.auth
          return Effect.promise(() => source.verify(u, p, { src: ctx.srcIp, listener: env.listener.name })).pipe(Effect.map((r) => {
            notify(observers, "authenticated", { listener: env.listener.name, ok: r.ok })
            return r.ok ? { ok: true, user: u, groups: unionGroups(u, r.groups, v.usergroups) } : { ok: false }
          }))
        },
        setUser: (u, gs) => {
          user = u
          authMethod = u === undefined ? "none" : "password"
          groups = u === undefined ? undefined : unionGroups(u, gs ?? [], env.view().usergroups)
        },
        decide: (input: RequestInput) => {
          endHandshake()
          handshakeMs ??= Date.now() - started
          const decideStart = performance.now()
          const v = env.view()
          const req: Ir.Request = {
            command: input.command,
            dstHost: input.dstHost,
            dstPort: input.dstPort,
            listener: env.listener.name,
            protocol: input.protocol,
            srcIp: ctx.srcIp,
            srcPort: ctx.srcPort,
            auth: authMethod,
            time: Date.now(),
            ...(user !== undefined ? { user } : {}),
            ...(groups !== undefined ? { groups } : {}),
          }
          line["dst"] = hostPort(input.dstHost, input.dstPort)
          return decide(v.compiled, req, env.resolver, env.geo).pipe(Effect.tap((d) => Effect.sync(() => {
            lastDecided = d
            notify(observers, "decided", {
              listener: env.listener.name, protocol, policy: v.policy ?? "", rule: d.decision.rule, action: d.decision.action.k,
              durationMs: performance.now() - decideStart,
            })
            line["rule"] = d.decision.rule
            line["action"] = d.decision.action.k
            if (d.resolved !== undefined) line["dst_ip"] = d.resolved
            if (d.decision.action.k === "block") outcome = "blocked"
            for (const m of d.decision.modifiers) {
              if (m.k === "tag") tags.push(m.value)
              else if (m.k === "log") logged = true
            }
          })))
        },
        connect: (decided: Decided) => {
          const octx: OutboundContext = { resolver: env.resolver, connectTimeoutMs: env.listener.connectMs, note: (f) => ctx.note(f) }
          const connector = env.registry.get(decided.decision.action.k)
          const connectStart = performance.now()
          const connected = (ok: boolean) => notify(observers, "connected", { listener: env.listener.name, action: decided.decision.action.k, ok, durationMs: performance.now() - connectStart })
          const attempt = connector === undefined
            ? Effect.fail(new OutboundError({ reason: { _tag: "General", message: `no outbound for ${decided.decision.action.k}` } }))
            : connector(decided, octx)
          return attempt.pipe(
            Effect.map((s): Connected => {
              sockets.add(s)
              connected(true)
              line["dst_connected"] = hostPort(s.remoteAddress ?? "?", s.remotePort ?? 0)
              return { socket: s, localAddress: s.localAddress ?? "", localPort: s.localPort ?? 0, remoteAddress: s.remoteAddress ?? "", remotePort: s.remotePort ?? 0 }
            }),
            Effect.tapError((e) => Effect.sync(() => {
              if (e.reason._tag !== "Blocked") connected(false)
              if (e.reason._tag !== "Blocked") { outcome = "error"; line["error"] = reasonText(e) }
            })),
          )
        },
        connectUdp: (decided: Decided) => {
          const c = env.udpRegistry?.get(decided.decision.action.k)
          if (c === undefined) return Effect.fail(new OutboundError({ reason: { _tag: "CommandNotSupported" } }))
          return c(decided, { resolver: env.resolver, connectTimeoutMs: env.listener.connectMs, note: (f) => ctx.note(f) })
        },
        connectBind: (decided: Decided) => {
          const c = env.bindRegistry?.get(decided.decision.action.k)
          if (c === undefined) return Effect.fail(new OutboundError({ reason: { _tag: "CommandNotSupported" } }))
          return c(decided, { resolver: env.resolver, connectTimeoutMs: env.listener.connectMs, note: (f) => ctx.note(f) })
        },
        relay: (c: Socket, upstream: Socket) => {
          endHandshake()
          sockets.add(upstream)
          const mod = lastDecided?.decision.modifiers.find((m) => m.k === "idle")
          handedOff = { client: c, upstream, idleMs: mod?.k === "idle" ? mod.ms : env.listener.idleMs }
          return Effect.void
        },
        note: (fields) => {
          for (const k of Object.keys(fields)) {
            if (k === "outcome" && typeof fields[k] === "string") outcome = fields[k]
            else line[k] = fields[k]
          }
        },
      }
      yield* handler.handle(client, ctx)
    })

    // The relay runs once the handler has returned, so the handler's state (its generators, the
    // context object, buffers) is garbage while the bytes flow. With `env.detach` the fiber ends
    // too: the relay's end (or the listener's abort at shutdown) writes the close line.
    let detachedRelay = false
    const relayPhase = Effect.suspend(() => {
      const h = handedOff
      if (h === undefined) return Effect.void
      handedOff = undefined
      if (env.detach === undefined) {
        return relay(h.client, h.upstream, h.idleMs).pipe(Effect.map((r) => {
          if (r.end === "idle") outcome = "idle-timeout"
        }))
      }
      detachedRelay = true
      // Detach first: a relay whose sockets are already closed ends inside `startRelay`.
      let abort: () => void = () => {}
      const done = env.detach(() => {
        outcome = "shutdown"
        abort()
        finish()
      })
      abort = startRelay(h.client, h.upstream, h.idleMs, (r) => {
        if (r.end === "idle") outcome = "idle-timeout"
        finish()
        done()
      })
      return Effect.void
    })

    yield* Effect.andThen(body, relayPhase).pipe(
      Effect.onInterrupt(() => Effect.sync(() => {
        if (!timedOut) { outcome = "shutdown"; return }
        outcome = "handshake-timeout"
        if (phase === "tls") line["error"] = "TLS handshake not completed"
      })),
      Effect.catchCause((cause) => Effect.sync(() => { outcome = "error"; line["error"] = String(cause).slice(0, 200) })),
      Effect.ensuring(Effect.sync(() => { if (!detachedRelay) finish() })),
    )
  })
