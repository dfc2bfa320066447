/**
 * The admin plugin (`proxyd.admin`): Prometheus metrics for the server, and the admin API when the file declares `admin`.
 *
 * Details: vocabulary: the `admin` declaration (`Config.ts`). Layer: provides
 * `Plugin.Metrics` (prom-client, `@proxyd/metrics`) whose `observer` the
 * server registers; that observer also drives the admin API: on `started`
 * it binds the metrics to the server (policy version/hash, sessions, GeoIP
 * counters) and opens the admin listener the program declares; on an
 * accepted reload it rebinds when the declaration changed; on `stopping` it
 * closes. A declaration that cannot be served safely (off loopback without a
 * token, unreadable token) fails the plugin at start (the server does not
 * start) and is logged and ignored on reload (the running API stays).
 * Upstream health and Tor NEWNYM come from the outbound providers the server
 * runs with (`status()`, `newnym()`), when present.
 */
import { Effect, Layer } from "effect"
import { Log, Observe, Plugin, Workers } from "@proxyd/runtime"
import { Metrics } from "@proxyd/metrics"
import { type Cluster, startAdmin, type RunningAdmin } from "./Admin.ts"
import { adminConfig, adminVocabulary, type AdminConfig } from "./Config.ts"

type Status = () => ReadonlyArray<Metrics.UpstreamGroupStatus>
type Tor = { newnym(name?: string): Promise<void>; status(): ReadonlyArray<unknown> }

const isFn = (o: unknown, k: string): boolean => typeof o === "object" && o !== null && typeof (o as Record<string, unknown>)[k] === "function"

type Hits = ReturnType<Metrics.MetricsShape["ruleHits"]>

/**
 * Under `workers N`: every worker answers for its own sessions, metrics and rule hits; the
 * API (worker 1's alone) asks them all. Undefined outside workers.
 */
const clusterOf = (metrics: Metrics.MetricsShape, server: Observe.StartedServer): Cluster | undefined => {
  const peers = Workers.peers()
  if (peers === undefined) return undefined
  peers.serve("admin:metrics", () => metrics.scrapeJson())
  peers.serve("admin:sessions", () => server.sessions.list())
  peers.serve("admin:kill", (id) => typeof id === "string" && server.sessions.kill(id))
  peers.serve("admin:hits", () => metrics.ruleHits())
  if (peers.index !== 1) return undefined
  const values = async <T>(topic: string, arg?: unknown): Promise<Array<T>> => (await peers.all(topic, arg)).map((a) => a.value as T)
  return {
    metrics: async () => Metrics.aggregate(await values<ReadonlyArray<object>>("admin:metrics")),
    sessions: async () => (await values<ReadonlyArray<Observe.SessionInfo>>("admin:sessions")).flat(),
    kill: async (id) => (await values<boolean>("admin:kill", id)).includes(true),
    hits: async () => (await values<Hits>("admin:hits")).flat(),
    reload: () => peers.reload(),
    status: () => peers.status(),
  }
}

export const makeController = (metrics: Metrics.MetricsShape, log: Log.Log, initial: AdminConfig | undefined): Observe.Observer => {
  let running: Promise<RunningAdmin | undefined> = Promise.resolve(undefined)
  let cluster: Cluster | undefined
  /** Only one worker serves the API under `workers N` (worker 1); the others only answer it. */
  let serves = true
  let config = initial
  let server: Observe.StartedServer | undefined
  let upstreams: Status | undefined
  let tor: Tor | undefined
  const open = (c: AdminConfig | undefined) => {
    const s = server
    running = running.then(async (old) => {
      await old?.close()
      if (c === undefined || s === undefined || !serves) return undefined
      return startAdmin({ ...c, server: s, metrics, log, ...(upstreams === undefined ? {} : { upstreams }), ...(tor === undefined ? {} : { tor }), ...(cluster === undefined ? {} : { cluster }) })
        .catch((e: unknown) => { log.error("admin API failed to listen", { host: c.host, port: c.port, error: e instanceof Error ? e.message : String(e) }); return undefined })
    })
  }
  return {
    started: (e) => {
      server = e.server
      cluster = clusterOf(metrics, e.server)
      serves = Workers.peers() === undefined || cluster !== undefined
      metrics.bindServer(e.server)
      if (isFn(e.geoip, "stats")) metrics.bindGeoIp(() => (e.geoip as { stats(): Metrics.GeoLookupCounts }).stats())
      for (const o of e.outbounds) {
        if (isFn(o, "newnym") && isFn(o, "status")) tor = o as Tor
        else if (isFn(o, "status")) upstreams = () => (o as { status: Status }).status()
      }
      if (upstreams !== undefined) metrics.bindUpstreams(upstreams)
      open(config)
    },
    reloaded: (e) => {
      if (!e.ok || server === undefined) return
      const c = adminConfig(server.store.current().program)
      if (Array.isArray(c)) { log.error("admin declaration refused; the admin API keeps its old settings", { problems: c }); return }
      const next = c as AdminConfig | undefined
      if (JSON.stringify(next) === JSON.stringify(config)) return
      config = next
      open(config)
    },
    stopping: () => { open(undefined) },
  }
}

/** Fans one event out to several observers: handlers bound once, no per-call allocation; a throwing observer never breaks a connection. */
const both = (a: Observe.Observer, b: Observe.Observer): Observe.Observer => {
  const out: Record<string, (e: never) => void> = {}
  const keys = new Set([...Object.keys(a), ...Object.keys(b)]) as Set<keyof Observe.Observer>
  for (const k of keys) {
    const fa = a[k] as ((e: unknown) => void) | undefined
    const fb = b[k] as ((e: unknown) => void) | undefined
    if (fa !== undefined && fb !== undefined) {
      out[k] = (e: never) => {
        try { fa.call(a, e) } catch { /* an observer never breaks a connection */ }
        try { fb.call(b, e) } catch { /* idem */ }
      }
    } else {
      const f = (fa ?? fb)!
      const o = fa !== undefined ? a : b
      out[k] = (e: never) => { try { f.call(o, e) } catch { /* an observer never breaks a connection */ } }
    }
  }
  return out as Observe.Observer
}

export const adminPlugin: Plugin.Plugin = Plugin.make({
  id: "proxyd.admin",
  vocabulary: adminVocabulary,
  doc: "Prometheus metrics and the admin API (`admin { listen 127.0.0.1:9090 token env(ADMIN_TOKEN) }`)",
  layer: Layer.effect(Plugin.Metrics, Effect.gen(function*() {
    const ctx = yield* Plugin.PluginContext
    const c = adminConfig(ctx.program)
    if (Array.isArray(c)) return yield* new Plugin.PluginError({ plugin: "proxyd.admin", message: c.join("; ") })
    const metrics = Metrics.makeProm()
    const controller = makeController(metrics, ctx.log, c as AdminConfig | undefined)
    yield* Effect.addFinalizer(() => Effect.sync(() => controller.stopping?.({})))
    return { ...metrics, observer: both(metrics.observer, controller) }
  })),
})
