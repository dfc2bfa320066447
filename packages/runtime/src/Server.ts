/**
 * The server: listeners from the rules file, reload, graceful shutdown.
 *
 * Details: `startServer` loads the rules file (a file that does not check, or
 * uses what the runtime cannot enforce, fails with `StartError` carrying the
 * same rendered diagnostics as `proxyd check`), opens every listener and
 * returns a handle. `reload()` loads beside the running state and, when valid,
 * swaps it and reconciles listeners: unchanged ones keep their socket (their
 * policy/auth/limits follow the new state), added ones open, removed ones stop
 * accepting and drain in the background, a changed kind/host/port rebinds.
 * File changes (rules, includes, sets, htpasswd) trigger the same reload.
 * `shutdown()` stops accepting everywhere, lets open connections finish up to
 * `drain-timeout` (default 30 s), then interrupts the rest.
 * `runServer` adds the process: SIGHUP reloads, SIGTERM/SIGINT shut down
 * gracefully (the effect then completes: exit 0), a second SIGTERM/SIGINT exits
 * at once (128 + signal number).
 *
 * TLS listeners: certificate, key and client CA are read at every load; a
 * broken one fails the start or the reload (the old policy, with its
 * certificate, keeps serving). The files are watched like the rules files, so
 * a rotation is picked up; new connections use the new context. PROXY
 * protocol listeners read the header (trusted peers only) before the limits
 * are applied. A connection refused by a limit on a TLS listener is closed
 * without a protocol reply (answering would take a TLS handshake).
 *
 * GeoIP, observers and sessions (optional, passed in like the handlers):
 * `geoip` answers country/ASN facts (its `prepare` runs with each load and
 * may refuse it); `observers` hear every connection's steps and each reload;
 * `handle.sessions` lists open connections and closes one on demand.
 *
 * Under `workers N` (`worker`, set by `Workers.ts` in each worker thread): the gates count in
 * the workers' shared table, listeners bind with `SO_REUSEPORT`, a listener declared with
 * port 0 binds the port worker 1 got, and reloads come from the supervisor (the caller passes
 * `watch: false`; no refresh timer here). A reload that changes `workers` itself is applied and
 * logs that the number of workers changes at the next start.
 *
 * Gotchas: the runtime never imports protocol packages; the CLI passes the
 * handlers, and outbound providers (`outbounds`: upstreams for `via`) the same
 * way; a provider's `prepare` refuses a program like any other check. A listener kind without its handler refuses to start (mixed needs
 * socks5, socks4 and http).
 */
import type { Socket } from "node:net"
import * as v8 from "node:v8"
import * as vm from "node:vm"
import { Data, Effect, Fiber, Semaphore } from "effect"
import { type Ir, Parser } from "@proxyd/rules"
import { parseListen, type ListenerSpec, type ListenOverride } from "./Config.ts"
import type { InboundHandler, ProtocolName } from "./Inbound.ts"
import { makeGate, serve, type Gate, type Peer, type RunningListener } from "./Listener.ts"
import * as Log from "./Log.ts"
import { providerOf, type GeoProvider } from "./Geo.ts"
import { makeSessions, notify, type Observer, type Sessions } from "./Observe.ts"
import { type BindConnector, defaultRegistry, type Connector, type OutboundProvider, type Registry, type UdpConnector } from "./Outbound.ts"
import type { Host } from "./Registry.ts"
import * as PolicyStore from "./PolicyStore.ts"
import * as Resolver from "./Resolver.ts"
import { type ConnectionEnv, serveConnection, serveExpress, type PolicyView } from "./Session.ts"
import { sniff } from "./Sniff.ts"
import * as ProxyProtocol from "./ProxyProtocol.ts"
import { loadContext, type TlsContext } from "./Tls.ts"

export type Handlers = Partial<Record<ProtocolName, InboundHandler>>

export interface ServerOptions {
  readonly rulesFile: string
  /** `[proto://]host:port` overrides of the file's listeners. */
  readonly listen?: ReadonlyArray<string>
  readonly logLevel?: string
  readonly logFormat?: "json" | "pretty"
  readonly handlers: Handlers
  /** Injected for tests and embedding; defaults built from the options above. */
  readonly log?: Log.Log
  readonly resolver?: Resolver.ResolverShape
  readonly registry?: Registry
  /** Outbound kinds from other packages (`@proxyd/upstream` for `via`), passed in like the handlers. */
  readonly outbounds?: ReadonlyArray<OutboundProvider>
  /** Watch the rules files for changes (default true). */
  readonly watch?: boolean
  /** Plugins built by `Registry.start` (vocabularies, auth kinds, guard, fact sources). Absent: the built-in auth kinds only. */
  readonly plugins?: Host
  /** Country/ASN lookups (`@proxyd/geoip`); without it, policies using those fields refuse to start. */
  readonly geoip?: GeoProvider
  /** Hear connection steps and reloads (metrics, admin). */
  readonly observers?: ReadonlyArray<Observer>
  /** Serve the common requests on the handlers' express path (default true; false: always the effect path, for tests and A/B runs). */
  readonly express?: boolean
  /** Set when this server is one of `workers N` (worker threads): shared limits, shared ports. */
  readonly worker?: WorkerOptions
}

/** What a worker thread's server shares with the others (`Workers.ts`). */
export interface WorkerOptions {
  /** A gate counting in the workers' shared table (`SharedGate`), one per scope. */
  gate(scope: string, limits: () => { readonly max: number; readonly perIp: number }): Gate
  /** Whether the last refusal was for want of room in the shared table. */
  full(): boolean
  /** The port a listener declared with port 0 got in the first worker (all workers bind it). */
  pinnedPort(listener: string): number | undefined
}

export class StartError extends Data.TaggedError("StartError")<{ readonly message: string }> {}

export interface ListenerAddress { readonly listener: string; readonly kind: Ir.ListenerKind; readonly host: string; readonly port: number }

export interface ReloadOutcome { readonly ok: boolean; readonly version: number; readonly message?: string }

export interface ServerHandle {
  addresses(): Array<ListenerAddress>
  /** Reloads now (what SIGHUP does). */
  reload(): Effect.Effect<ReloadOutcome>
  /** Graceful shutdown: stop accepting, drain up to the deadline (default: the file's `drain-timeout`), close the rest. */
  shutdown(drainMs?: number): Effect.Effect<void>
  readonly store: PolicyStore.PolicyStore
  /** Connections open now. */
  readonly sessions: Sessions
  /** The files a reload depends on now (rules, includes, sets, htpasswd, TLS certificates and keys). */
  files(): Array<string>
}

/** The shortest `refresh` period of the program's set files (at least 1 s), or undefined. */
export const refreshPeriod = (program: Ir.Program): number | undefined => {
  let ms = Number.POSITIVE_INFINITY
  for (const set of program.sets.values()) if (set.file?.refreshMs !== undefined) ms = Math.min(ms, set.file.refreshMs)
  return ms === Number.POSITIVE_INFINITY ? undefined : Math.max(1_000, ms)
}

const NEEDS: Readonly<Record<Ir.ListenerKind, ReadonlyArray<ProtocolName>>> = {
  socks5: ["socks5"], socks4: ["socks4"], http: ["http"], mixed: ["socks5", "socks4", "http"],
}

const sameBinding = (a: ListenerSpec, b: ListenerSpec): boolean => a.kind === b.kind && a.host === b.host && a.port === b.port

interface Open {
  spec: ListenerSpec
  readonly running: RunningListener
  readonly gate: Gate
  /** The last policy state that has this listener (a retired listener's connections drain on it). */
  state: PolicyStore.PolicyState
  /** Shared by the listener's connections (`envFor`), for `envSpec`. */
  env?: ConnectionEnv
  envSpec?: ListenerSpec
  view?: () => PolicyView
}

/** Heap in use above which start-up collects garbage before the listeners open (a 1-rule policy: ~30 MB, nothing to gain). */
const COLLECT_ABOVE = 128 * 1024 * 1024

/**
 * With a large live heap (a 100k-rule policy: ~120 MB), every full collection marks all of it,
 * and V8's own heap growth left only ~10-30 MB of headroom, so connections' promoted garbage
 * (~4 KB per connection) brought a full collection every few thousand connections (~100-300 ms
 * of CPU each). Growing the heap by 100 % of the live size instead makes that ~10x rarer for the
 * price of memory the size of the policy. `PROXYD_HEAP_GROWING` sets the percentage (`0`: V8's
 * heuristics). V8 reads the flag whenever it sets the next limit, so setting it here takes effect
 * from the next collection on.
 */
const growForLargeHeap = (): void => {
  const pct = process.env["PROXYD_HEAP_GROWING"] ?? "100"
  if (/^[0-9]+$/.test(pct)) v8.setFlagsFromString(`--heap-growing-percent=${pct}`)
}

/**
 * A full, synchronous, memory-reducing collection before serving when loading left a large heap
 * (a 100k-rule policy: ~400-880 MB in use, ~120 MB live). V8's "last resort" flavour collects
 * repeatedly and compacts, so more of the pages start-up used are given back before the first
 * client (at 100k rules: ~0.5-0.7 s; RSS after it ~300 MB). `gc` comes from turning
 * `--expose-gc` on and reading it in a fresh context (the process's own global is untouched);
 * without it, V8 collects when it decides to.
 */
const collectBeforeServing = (log: Log.Log): void => {
  const before = process.memoryUsage().heapUsed
  if (before < COLLECT_ABOVE) return
  try {
    v8.setFlagsFromString("--expose-gc")
    growForLargeHeap()
    const gc = vm.runInNewContext("gc") as unknown
    if (typeof gc !== "function") return
    const t0 = performance.now()
    ;(gc as (o: object) => void)({ type: "major", execution: "sync", flavor: "last-resort" })
    const m = process.memoryUsage()
    log.info("collected start-up garbage", { heap_before_mb: Math.round(before / 1048576), heap_after_mb: Math.round(m.heapUsed / 1048576), heap_committed_mb: Math.round(m.heapTotal / 1048576), rss_mb: Math.round(m.rss / 1048576), ms: Math.round(performance.now() - t0) })
  } catch {
    // not available here: V8 collects when it decides to
  }
}

export const startServer = (opts: ServerOptions): Effect.Effect<ServerHandle, StartError> =>
  Effect.gen(function*() {
    const level = opts.logLevel ?? "info"
    if (!Log.isLevel(level)) return yield* new StartError({ message: `unknown log level \`${level}\` (debug, info, warn, error)` })
    const log = opts.log ?? Log.make({ level, format: opts.logFormat ?? "json" })
    const overrides: Array<ListenOverride> = []
    for (const l of opts.listen ?? []) {
      const o = parseListen(l)
      if (typeof o === "string") return yield* new StartError({ message: `--listen: ${o}` })
      overrides.push(o)
    }
    // Secure contexts are built with each load, keyed by the listener spec they belong to.
    const tlsOf = new WeakMap<ListenerSpec, TlsContext>()
    const geoip = opts.geoip ?? providerOf(opts.plugins?.geoIp)
    const extraCheck = (_p: Ir.Program, ls: ReadonlyArray<ListenerSpec>): Array<string> => {
      const out = (opts.outbounds ?? []).flatMap((p) => [...p.prepare(_p)])
      if (geoip !== undefined) out.push(...geoip.prepare(_p, opts.rulesFile))
      out.push(...ls.flatMap((l) => NEEDS[l.kind].filter((p) => opts.handlers[p] === undefined)
        .map((p) => `listener \`${l.name}\` (${l.kind}): no ${p} protocol handler is available`)))
      for (const l of ls) {
        if (l.tls === undefined) continue
        const c = typeof l.tls === "string" ? l.tls : loadContext(l.tls)
        if (typeof c === "string") out.push(`listener \`${l.name}\`: ${c}`)
        else tlsOf.set(l, c)
      }
      return out
    }
    const tlsFiles = (ls: ReadonlyArray<ListenerSpec>): Array<string> =>
      ls.flatMap((l) => (l.tls === undefined || typeof l.tls === "string" ? [] : [l.tls.cert, l.tls.key, ...(l.tls.ca === undefined ? [] : [l.tls.ca])]))
    const outbounds = opts.outbounds ?? []
    const provided = new Set<string>(outbounds.flatMap((p) => p.kinds))
    if (geoip !== undefined) provided.add("geoip")
    const observers = [...(opts.observers ?? []), ...(opts.plugins?.metrics.observer === undefined ? [] : [opts.plugins.metrics.observer])]
    const sessions = makeSessions()
    const loadOpts: PolicyStore.LoadOptions = { rulesFile: opts.rulesFile, overrides, extraCheck, provided, plugins: opts.plugins }
    const first = PolicyStore.load(loadOpts, 1)
    if (!first.ok) return yield* new StartError({ message: first.message })
    if (first.warnings !== undefined) log.warn("rules file has warnings", { diagnostics: first.warnings })
    const store = PolicyStore.make(loadOpts, first.state)
    const resolver = opts.resolver ?? Resolver.make()
    let registry: Registry = opts.registry ?? defaultRegistry
    if (outbounds.length > 0) {
      const all = new Map<Ir.ActionIR["k"], Connector>(registry)
      for (const p of outbounds) for (const [k, c] of p.connectors(() => registry)) all.set(k, c)
      registry = all
    }
    const udpRegistry = new Map<Ir.ActionIR["k"], UdpConnector>()
    for (const p of outbounds) for (const [k, c] of p.udpConnectors?.() ?? []) udpRegistry.set(k, c)
    const bindRegistry = new Map<Ir.ActionIR["k"], BindConnector>()
    for (const p of outbounds) for (const [k, c] of p.bindConnectors?.() ?? []) bindRegistry.set(k, c)
    for (const p of outbounds) p.activate(first.state.program, { log, resolver })
    geoip?.activate(first.state.program, opts.rulesFile)
    const lock = yield* Semaphore.make(1)
    const gateOf = opts.worker === undefined ? (_scope: string, l: () => { readonly max: number; readonly perIp: number }) => makeGate(l) : opts.worker.gate
    const globalGate = gateOf("*", () => {
      const g = store.current().global
      return { max: g.maxConnections, perIp: g.maxPerIp }
    })
    const open = new Map<string, Open>()
    const draining = new Set<Fiber.Fiber<void>>()

    const viewOf = (state: PolicyStore.PolicyState, spec: ListenerSpec): PolicyView => {
      const compiled = state.compiled.get(spec.policy)
      if (compiled === undefined) throw new Error(`policy ${spec.policy} is missing`)
      return {
        compiled,
        usergroups: state.program.usergroups,
        auth: spec.auth === undefined ? undefined : state.auths.get(spec.auth.source),
        authRequired: spec.auth?.required ?? false,
        policy: spec.policy,
      }
    }
    /**
     * The policy view of a listener's connections: from the current state while it has this
     * listener, else from the last state that had it (a retired listener drains on it). Built
     * once per state, not per call.
     */
    const viewFor = (o: Open): () => PolicyView => {
      let cached: { readonly state: PolicyStore.PolicyState; readonly view: PolicyView } | undefined
      return () => {
        const now = store.current()
        if (cached !== undefined && cached.state === now) return cached.view
        const spec = now.listeners.find((l) => l.name === o.spec.name)
        const state = spec === undefined ? o.state : now
        if (cached !== undefined && cached.state === state) return cached.view
        cached = { state, view: viewOf(state, spec ?? o.spec) }
        return cached.view
      }
    }
    /** The listener's `ConnectionEnv`, rebuilt when a reload changes its spec. */
    const envFor = (o: Open): ConnectionEnv => {
      if (o.env !== undefined && o.envSpec === o.spec) return o.env
      const s = o.spec
      o.envSpec = s
      o.env = {
        listener: { name: s.name, kind: s.kind, handshakeMs: s.handshakeMs, idleMs: s.idleMs, connectMs: s.connectMs },
        view: o.view ??= viewFor(o),
        handlers: opts.handlers,
        resolver,
        registry,
        udpRegistry,
        bindRegistry,
        log,
        geo: geoip,
        observers,
        sessions,
        express: opts.express ?? true,
      }
      return o.env
    }

    const rejectConnection = (o: Open, socket: Socket, peer: Peer): void => {
      const src = `${peer.ip.includes(":") ? `[${peer.ip}]` : peer.ip}:${peer.port}`
      const error = opts.worker?.full() === true ? "shared connection table full" : "connection limit reached"
      if (o.spec.tls !== undefined) {
        log.info("connection", { listener: o.spec.name, src, outcome: "rejected", error })
        socket.destroy()
        return
      }
      const answer = (p: ProtocolName | undefined) => {
        const h = p === undefined ? undefined : opts.handlers[p]
        log.info("connection", { listener: o.spec.name, protocol: p, src, outcome: "rejected", error })
        if (h?.reject !== undefined) {
          try { h.reject(socket) } catch { socket.destroy() }
          const t = setTimeout(() => socket.destroy(), 2_000)
          socket.once("close", () => clearTimeout(t))
        } else socket.destroy()
      }
      if (o.spec.kind !== "mixed") return answer(o.spec.kind)
      Effect.runFork(sniff(socket).pipe(
        Effect.timeoutOrElse({ duration: 2_000, orElse: () => Effect.succeed(undefined) }),
        Effect.flatMap((p) => Effect.sync(() => (p === undefined ? socket.destroy() : answer(p)))),
      ))
    }

    /** PROXY protocol: trusted peers only, one header within the handshake timeout; else the connection is dropped (logged). */
    const readProxyHeader = (spec: ListenerSpec, cidrs: ReadonlyArray<Ir.Cidr>, socket: Socket): Effect.Effect<Peer | undefined> => {
      const real: Peer = { ip: socket.remoteAddress ?? "", port: socket.remotePort ?? 0 }
      const src = `${real.ip.includes(":") ? `[${real.ip}]` : real.ip}:${real.port}`
      const refuse = (outcome: string, error: string) =>
        Effect.sync(() => { log.info("connection", { listener: spec.name, src, outcome, error }); return undefined })
      if (!ProxyProtocol.trusted(cidrs, real.ip)) return refuse("proxy-untrusted", "peer is not trusted to send a PROXY protocol header")
      return ProxyProtocol.readHeader(socket).pipe(
        Effect.timeoutOrElse({ duration: spec.handshakeMs, orElse: () => Effect.succeed({ k: "error", message: "PROXY header not received in time" } as const) }),
        Effect.flatMap((r) => (r.k === "error" ? refuse("proxy-protocol-error", r.message) : Effect.succeed(r.src ?? real))),
      )
    }

    const openListener = (spec: ListenerSpec) => Effect.gen(function*() {
      const o: Partial<Open> & { spec: ListenerSpec; state: PolicyStore.PolicyState } = { spec, state: store.current() }
      // Shared by the workers: one scope per binding (a rebound listener counts afresh, as in one loop).
      const gate = gateOf(`l:${spec.name}|${spec.kind}|${spec.host}|${spec.port}`, () => ({ max: o.spec.maxConnections, perIp: o.spec.maxPerIp }))
      const running = yield* serve({
        host: spec.host,
        port: spec.port === 0 ? (opts.worker?.pinnedPort(spec.name) ?? 0) : spec.port,
        ...(opts.worker === undefined ? {} : { reusePort: true }),
        gates: [globalGate, gate],
        preamble: (socket) => {
          const cidrs = o.spec.proxyProtocol
          return cidrs === undefined ? undefined : readProxyHeader(o.spec, cidrs, socket)
        },
        onConnection: (socket, peer, acceptedAt, handle) => {
          const s = o.spec
          const secure = s.tls === undefined ? undefined : tlsOf.get(s)
          if (s.tls !== undefined && secure === undefined) {
            // Never serve a TLS listener in plain text (a spec without its loaded context).
            return Effect.sync(() => {
              log.error("connection", { listener: s.name, outcome: "tls-error", error: "no TLS context for this listener" })
              socket.destroy()
            })
          }
          return serveConnection(socket, envFor(o as Open), { peer, acceptedAt, tls: secure, handle })
        },
        onConnectionNow: (socket, peer, acceptedAt, handle) =>
          o.spec.tls === undefined && serveExpress(socket, envFor(o as Open), { peer, acceptedAt, handle }),
        onReject: (socket, peer) => rejectConnection(o as Open, socket, peer),
      })
      const done: Open = Object.assign(o, { running, gate }) as Open
      open.set(spec.name, done)
      log.info("listening", { listener: spec.name, kind: spec.kind, host: running.host, port: running.port })
      return done
    })

    const retire = (o: Open, drainMs: number) => Effect.gen(function*() {
      o.running.stop()
      open.delete(o.spec.name)
      log.info("listener closed", { listener: o.spec.name, open_connections: o.running.active() })
      const f = yield* Effect.forkDetach(o.running.close(drainMs))
      draining.add(f)
      f.addObserver(() => draining.delete(f))
    })

    const reconcile = (state: PolicyStore.PolicyState) => Effect.gen(function*() {
      const wanted = new Map(state.listeners.map((l) => [l.name, l]))
      for (const o of [...open.values()]) {
        const w = wanted.get(o.spec.name)
        if (w === undefined || !sameBinding(w, o.spec)) yield* retire(o, state.global.drainMs)
        else { o.spec = w; o.state = state }
      }
      for (const spec of state.listeners) {
        if (open.has(spec.name)) continue
        yield* openListener(spec).pipe(Effect.catch((e) => Effect.sync(() => log.error("listener failed to open", { listener: spec.name, error: e.message }))))
      }
    })

    // Start-up's garbage (at 100k rules: ~700 MB, with the parse tree the parser keeps for a
    // moment) is collected now, before a client can connect, not by V8's first full GC under traffic.
    Parser.forgetLastParse()
    collectBeforeServing(log)
    // Initial listeners: any failure closes the ones already open and refuses to start.
    for (const spec of first.state.listeners) {
      const r = yield* Effect.result(openListener(spec))
      if (r._tag === "Failure") {
        for (const o of open.values()) { o.running.stop(); yield* o.running.close(0) }
        for (const p of outbounds) p.close()
        return yield* new StartError({ message: r.failure.message })
      }
    }

    let watcher: PolicyStore.Watcher | undefined
    const reload = (): Effect.Effect<ReloadOutcome> => reloadOnce().pipe(Effect.ensuring(Effect.sync(() => armRefresh())))
    const reloadOnce = (): Effect.Effect<ReloadOutcome> => Semaphore.withPermit(lock, Effect.gen(function*() {
      const before = store.current().program.options["workers"]
      const r = yield* store.reload()
      // A reloaded file's parse tree is garbage now, not in `PARSE_MEMO_MS`.
      Parser.forgetLastParse()
      if (!r.ok) {
        log.error("reload failed; the current policy keeps serving", { diagnostics: r.message })
        notify(observers, "reloaded", { ok: false, version: store.current().version })
        return { ok: false, version: store.current().version, message: r.message }
      }
      const after = r.state.program.options["workers"]
      if ((after ?? 1) !== (before ?? 1)) log.warn("option `workers` changed; the number of workers changes at the next start", { running: before ?? 1, in_file: after ?? 1 })
      // A reload that brought a large policy (the start-up one may have been small).
      if (process.memoryUsage().heapUsed >= COLLECT_ABOVE) growForLargeHeap()
      for (const p of outbounds) p.activate(r.state.program, { log, resolver })
      geoip?.activate(r.state.program, opts.rulesFile)
      notify(observers, "reloaded", { ok: true, version: r.state.version })
      yield* reconcile(r.state)
      watcher?.update([...r.state.files, ...tlsFiles(r.state.listeners)])
      log.info("policy reloaded", { version: r.state.version })
      return { ok: true, version: r.state.version }
    }))
    if (opts.watch !== false) {
      watcher = PolicyStore.watchFiles([...first.state.files, ...tlsFiles(first.state.listeners)], () => {
        log.info("rules changed on disk; reloading")
        Effect.runFork(reload())
      })
    }

    let shut = false
    // `set NAME = TYPE file PATH refresh DUR`: also re-read on the shortest such period (at least 1 s).
    // The watcher sees most changes at once; this covers files changed without a file-system event.
    let refreshTimer: ReturnType<typeof setTimeout> | undefined
    const armRefresh = (): void => {
      if (refreshTimer !== undefined) clearTimeout(refreshTimer)
      refreshTimer = undefined
      // A worker is reloaded by its supervisor, which keeps the period for all of them.
      if (shut || opts.worker !== undefined) return
      const ms = refreshPeriod(store.current().program)
      if (ms === undefined) return
      refreshTimer = setTimeout(() => {
        log.debug("set files due for refresh; reloading")
        Effect.runFork(reload())
      }, ms)
      refreshTimer.unref()
    }
    armRefresh()
    const shutdown = (drainMs?: number): Effect.Effect<void> => Effect.gen(function*() {
      if (shut) return
      shut = true
      if (refreshTimer !== undefined) clearTimeout(refreshTimer)
      watcher?.close()
      notify(observers, "stopping", {})
      const deadline = drainMs ?? store.current().global.drainMs
      const all = [...open.values()]
      for (const o of all) o.running.stop()
      const active = all.reduce((n, o) => n + o.running.active(), 0)
      log.info("shutting down", { open_connections: active, drain_ms: deadline })
      yield* Effect.forEach(all, (o) => o.running.close(deadline), { concurrency: "unbounded", discard: true })
      yield* Effect.forEach([...draining], (f) => Fiber.join(f), { discard: true })
      open.clear()
      for (const p of outbounds) p.close()
      log.info("stopped")
    })

    const handle: ServerHandle = {
      store,
      sessions,
      addresses: () => [...open.values()].map((o) => ({ listener: o.spec.name, kind: o.spec.kind, host: o.running.host, port: o.running.port })),
      files: () => [...store.current().files, ...tlsFiles(store.current().listeners)],
      reload,
      shutdown,
    }
    notify(observers, "started", { server: handle, outbounds, geoip: opts.geoip ?? opts.plugins?.geoIp })
    return handle
  })

/**
 * Runs until SIGTERM/SIGINT, then shuts down gracefully. SIGHUP reloads.
 * Interrupting the returned effect shuts down the same way (drain, then close).
 */
export const runServer = (opts: ServerOptions): Effect.Effect<void, StartError> =>
  Effect.gen(function*() {
    // Handlers go in before the listeners open (and log `listening`): a SIGTERM or SIGHUP
    // sent as soon as that line appears must not hit Node's default action (terminate).
    let handle: ServerHandle | undefined
    let signalled = 0
    let wake: (() => void) | undefined
    const onHup = () => { if (handle !== undefined) Effect.runFork(handle.reload()) }
    const onStop = (sig: NodeJS.Signals) => {
      signalled++
      if (signalled === 1) wake?.()
      else process.exit(128 + (sig === "SIGINT" ? 2 : 15))
    }
    process.on("SIGHUP", onHup)
    process.on("SIGTERM", onStop)
    process.on("SIGINT", onStop)
    const removeSignals = Effect.sync(() => {
      process.off("SIGHUP", onHup)
      process.off("SIGTERM", onStop)
      process.off("SIGINT", onStop)
    })
    const started = yield* startServer(opts).pipe(Effect.onError(() => removeSignals))
    handle = started
    yield* Effect.callback<void>((resume) => {
      // A signal during start-up: shut down as soon as the server is up.
      if (signalled > 0) resume(Effect.void)
      else wake = () => resume(Effect.void)
    }).pipe(
      Effect.andThen(Effect.sync(() => process.off("SIGHUP", onHup))),
      Effect.andThen(started.shutdown()),
      Effect.onInterrupt(() => started.shutdown()),
      Effect.ensuring(removeSignals),
    )
  })
