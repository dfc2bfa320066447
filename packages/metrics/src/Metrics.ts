/**
 * The Metrics service: Prometheus metrics over prom-client, or a no-op layer.
 *
 * Details: one `Registry` per service (never prom-client's global one, so two
 * servers in one process, e.g. tests, do not collide). Connection metrics come
 * from the runtime's `Observer` hooks (`observer`), which `startServer`
 * receives in `observers`; gauges that mirror state (active connections,
 * policy version/hash, GeoIP lookups, upstream health) are read at scrape
 * time from the sources bound with `bind*`. Other plugins report through
 * `recordBan`, `recordProbe`. Node process metrics are prom-client's defaults
 * (`process_*`, `nodejs_*`), unprefixed as every Node dashboard expects.
 * Every metric is listed in `docs/metrics.md`.
 *
 * Gotchas: label values are bounded: listener, policy and rule names come
 * from the configuration, protocol/action kinds and outcomes are fixed words
 * (an outcome outside `OUTCOMES` is counted as `other`; a handler may note
 * free text). Nothing user-controlled (hosts, users, addresses) is a label.
 */
import { createHash } from "node:crypto"
import { readFileSync } from "node:fs"
import { Context, Effect, Layer } from "effect"
import * as Prom from "prom-client"
import type { Observe, Plugin } from "@proxyd/runtime"

export const OUTCOMES: ReadonlySet<string> = new Set([
  "ok", "blocked", "error", "idle-timeout", "handshake-timeout", "closed-before-handshake", "tls-error",
  "shutdown", "killed", "rejected", "auth-failed", "proxy-untrusted", "proxy-protocol-error",
])

/** Group/member health as `@proxyd/upstream` reports it (`UpstreamOutbound.status()`). */
export interface UpstreamGroupStatus {
  readonly group: string
  readonly members: ReadonlyArray<{ readonly name: string; readonly up: boolean; readonly latencyMs?: number }>
}

/** What the metrics read from the server (a `ServerHandle` fits). */
export interface BoundServer {
  readonly store: { current(): { readonly version: number; readonly files: ReadonlyArray<string> } }
  readonly sessions: { size(): number }
}

export interface GeoLookupCounts {
  readonly lookups: Readonly<Record<string, number>>
}

export interface MetricsShape extends Plugin.MetricsShape {
  /** Hand to `startServer({ observers })` (the server registers it itself when this is the Metrics plugin service). */
  readonly observer: Observe.Observer
  /** The exposition text (`text/plain; version=0.0.4`); empty for the no-op layer. */
  scrape(): Promise<string>
  readonly contentType: string
  /** Mirrors the policy state (version, source hash) and open sessions at scrape time. */
  bindServer(s: BoundServer): void
  /** GeoIP lookup counters (`GeoIp.stats()`), read at scrape time. */
  bindGeoIp(stats: () => GeoLookupCounts): void
  /** Upstream group health (`UpstreamOutbound.status()`), read at scrape time. */
  bindUpstreams(status: () => ReadonlyArray<UpstreamGroupStatus>): void
  /** A temporary ban started (auth brute-force defence); `scope`: "ip" or "user". */
  recordBan(scope: "ip" | "user"): void
  /** One health probe of an upstream group member. */
  recordProbe(group: string, member: string, ok: boolean, latencyMs: number): void
  /** Rule hits by policy and rule since start (the admin API's counts). */
  ruleHits(): ReadonlyArray<{ readonly policy: string; readonly rule: string; readonly hits: number }>
  /** The metrics as prom-client JSON (`getMetricsAsJSON`), for `aggregate` over workers; empty for the no-op layer. */
  scrapeJson(): Promise<ReadonlyArray<object>>
}

/**
 * One exposition from several workers' `scrapeJson()` (`workers N`): counters and histograms
 * are summed, gauges by their `aggregator` (policy version/info: max, upstream health: min,
 * probe latency: average, the rest: sum). `process_*` metrics describe the one process every
 * worker thread shares (CPU, memory, file descriptors), so they are taken once (max), not summed.
 */
export const aggregate = async (workers: ReadonlyArray<ReadonlyArray<object>>): Promise<string> => {
  const arr = workers.map((ms) => ms.map((m) => {
    const name = (m as { name?: unknown }).name
    return typeof name === "string" && name.startsWith("process_") ? { ...m, aggregator: "max" } : m
  }))
  return Prom.AggregatorRegistry.aggregate(arr).metrics()
}

/** sha256 over the policy's files (paths and contents, in load order), hex. */
export const sourceHash = (files: ReadonlyArray<string>): string => {
  const h = createHash("sha256")
  for (const f of files) {
    h.update(f).update("\0")
    try { h.update(readFileSync(f)) } catch { h.update("(unreadable)") }
    h.update("\0")
  }
  return h.digest("hex")
}

const DURATION = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
const LONG = [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600]

export const makeProm = (opts: { readonly processMetrics?: boolean } = {}): MetricsShape => {
  const registers = [new Prom.Registry()]
  const reg = registers[0]!
  // The event-loop delay is sampled every 100 ms, not prom-client's default 10 ms: its timer
  // was what woke an idle proxyd (100 times a second, ~0.4 % of a core doing nothing).
  if (opts.processMetrics !== false) Prom.collectDefaultMetrics({ register: reg, eventLoopMonitoringPrecision: 100 })
  const hits = new Map<string, { policy: string; rule: string; hits: number }>()
  let server: BoundServer | undefined
  let geo: (() => GeoLookupCounts) | undefined
  let upstreams: (() => ReadonlyArray<UpstreamGroupStatus>) | undefined
  let hashed: { version: number; hash: string } | undefined

  // Hot path: counters/gauges fed by the observer accumulate in plain maps keyed by the
  // joined label values and are published to prom-client at scrape time (collect).
  type Acc = Map<string, { labels: Record<string, string>; n: number }>
  const add = (m: Acc, key: string, labels: () => Record<string, string>, by: number): void => {
    const a = m.get(key)
    if (a === undefined) m.set(key, { labels: labels(), n: by })
    else a.n += by
  }
  const publish = (m: Acc) => function(this: Prom.Counter | Prom.Gauge) {
    this.reset()
    for (const a of m.values()) {
      if (this instanceof Prom.Gauge) this.set(a.labels, a.n)
      else this.inc(a.labels, a.n)
    }
  }
  const acceptedN: Acc = new Map(), closedN: Acc = new Map(), activeN: Acc = new Map(), bytesN: Acc = new Map(), ruleHitsN: Acc = new Map()
  const accepted = new Prom.Counter({ name: "proxyd_connections_accepted_total", help: "Client connections accepted, by listener.", labelNames: ["listener"], registers, collect: publish(acceptedN) })
  const closed = new Prom.Counter({ name: "proxyd_connections_closed_total", help: "Client connections closed, by listener, protocol, action and outcome.", labelNames: ["listener", "protocol", "action", "outcome"], registers, collect: publish(closedN) })
  const active = new Prom.Gauge({ name: "proxyd_connections_active", help: "Client connections open now, by listener.", labelNames: ["listener"], registers, collect: publish(activeN) })
  const bytes = new Prom.Counter({ name: "proxyd_bytes_total", help: "Bytes relayed to (up) and from (down) destinations, by listener.", labelNames: ["listener", "direction"], registers, collect: publish(bytesN) })
  // Histograms fed by the observer, same idea: per label set, plain (non-cumulative) bucket
  // counts, sum and count. At scrape, collect() writes them into the prom-client Histogram's
  // own per-label state (`hashMap`: { labels, bucketValues keyed by upper bound, sum, count },
  // what its observe() builds, prom-client 15), so its exporter renders the exposition
  // (cumulative buckets, +Inf, _sum, _count, label order) exactly as before.
  type Hist = { labels: Record<string, string>; buckets: Float64Array; sum: number; count: number }
  type HAcc = { bounds: ReadonlyArray<number>; m: Map<string, Hist> }
  const hAcc = (bounds: ReadonlyArray<number>): HAcc => ({ bounds, m: new Map() })
  const observeH = (h: HAcc, key: string, labels: () => Record<string, string>, v: number): void => {
    if (!Number.isFinite(v)) return // prom-client's observe() throws and records nothing
    let a = h.m.get(key)
    if (a === undefined) h.m.set(key, a = { labels: labels(), buckets: new Float64Array(h.bounds.length), sum: 0, count: 0 })
    const b = h.bounds
    let i = 0
    while (i < b.length && v > b[i]!) i++
    if (i < b.length) a.buckets[i]!++ // above the last bound: only +Inf (count)
    a.sum += v
    a.count++
  }
  const publishH = (h: HAcc) => function(this: Prom.Histogram) {
    const state: Record<string, { labels: Record<string, string>; bucketValues: Record<number, number>; sum: number; count: number }> = {}
    for (const [k, a] of h.m) {
      const bucketValues: Record<number, number> = {}
      for (let i = 0; i < h.bounds.length; i++) bucketValues[h.bounds[i]!] = a.buckets[i]!
      // "#" prefix: never an integer-like key, so insertion (first-observed) order is kept.
      state[`#${k}`] = { labels: a.labels, bucketValues, sum: a.sum, count: a.count }
    }
    ;(this as unknown as { hashMap: typeof state }).hashMap = state
  }
  const handshakeH = hAcc(DURATION), decisionH = hAcc(DURATION), connectH = hAcc(DURATION), totalH = hAcc(LONG)
  new Prom.Histogram({ name: "proxyd_handshake_duration_seconds", help: "From accept to the client's request (TLS, sniffing, protocol handshake, auth).", labelNames: ["listener"], buckets: DURATION, registers, collect: publishH(handshakeH) })
  new Prom.Histogram({ name: "proxyd_decision_duration_seconds", help: "Policy decision time including DNS and GeoIP lookups the policy needed.", labelNames: ["listener"], buckets: DURATION, registers, collect: publishH(decisionH) })
  new Prom.Histogram({ name: "proxyd_outbound_connect_duration_seconds", help: "Outbound connect time (direct, upstream chain or Tor), by action kind and result.", labelNames: ["listener", "action", "result"], buckets: DURATION, registers, collect: publishH(connectH) })
  new Prom.Histogram({ name: "proxyd_connection_duration_seconds", help: "Whole connection lifetime, by listener and protocol.", labelNames: ["listener", "protocol"], buckets: LONG, registers, collect: publishH(totalH) })
  const auth = new Prom.Counter({ name: "proxyd_auth_attempts_total", help: "Password checks, by listener and result (success, failure).", labelNames: ["listener", "result"], registers })
  const ruleHits = new Prom.Counter({ name: "proxyd_rule_hits_total", help: "Decisions by policy, rule and action kind.", labelNames: ["policy", "rule", "action"], registers, collect: publish(ruleHitsN) })
  const reloads = new Prom.Counter({ name: "proxyd_reloads_total", help: "Policy reloads, by result (success, failure).", labelNames: ["result"], registers })
  const guarded = new Prom.Counter({ name: "proxyd_auth_guard_total", help: "Checks through the brute-force guard, by auth declaration and outcome (success, failure, banned).", labelNames: ["auth", "outcome"], registers })
  const bans = new Prom.Counter({ name: "proxyd_bans_total", help: "Temporary bans started by the brute-force defence, by scope (ip, user).", labelNames: ["scope"], registers })
  const probes = new Prom.Counter({ name: "proxyd_upstream_probes_total", help: "Health probes of upstream group members, by result.", labelNames: ["group", "member", "result"], registers })
  const probeLatency = new Prom.Histogram({ name: "proxyd_upstream_probe_duration_seconds", help: "Health probe latency of upstream group members.", labelNames: ["group", "member"], buckets: DURATION, registers })
  for (const r of ["success", "failure"]) reloads.inc({ result: r }, 0)
  new Prom.Gauge({
    name: "proxyd_policy_version", help: "Version of the policy serving now (1 at start, +1 per accepted reload).", registers, aggregator: "max",
    collect() { if (server !== undefined) this.set(server.store.current().version) },
  })
  new Prom.Gauge({
    name: "proxyd_policy_info", help: "Always 1; `hash` is the sha256 of the rules files serving now.", labelNames: ["hash"], registers, aggregator: "max",
    collect() {
      if (server === undefined) return
      const s = server.store.current()
      if (hashed?.version !== s.version) hashed = { version: s.version, hash: sourceHash(s.files) }
      this.reset()
      this.set({ hash: hashed.hash }, 1)
    },
  })
  new Prom.Gauge({
    name: "proxyd_sessions_open", help: "Sessions listed by the admin API now (all listeners).", registers,
    collect() { if (server !== undefined) this.set(server.sessions.size()) },
  })
  const geoSeen = new Map<string, number>()
  new Prom.Counter({
    name: "proxyd_geoip_lookups_total", help: "GeoIP lookups, by kind (country, asn) and result (hit, miss).", labelNames: ["kind", "result"], registers,
    collect() {
      if (geo === undefined) return
      for (const [k, n] of Object.entries(geo().lookups)) {
        const [kind, result] = k.split("_") as [string, string]
        const d = n - (geoSeen.get(k) ?? 0)
        if (d > 0) this.inc({ kind, result }, d)
        else this.inc({ kind, result }, 0)
        geoSeen.set(k, n)
      }
    },
  })
  new Prom.Gauge({
    name: "proxyd_upstream_up", help: "1 when an upstream group member is healthy, else 0.", labelNames: ["group", "member"], registers, aggregator: "min",
    collect() {
      if (upstreams === undefined) return
      this.reset()
      for (const g of upstreams()) for (const m of g.members) this.set({ group: g.group, member: m.name }, m.up ? 1 : 0)
    },
  })
  new Prom.Gauge({
    name: "proxyd_upstream_latency_seconds", help: "Smoothed probe latency of upstream group members.", labelNames: ["group", "member"], registers, aggregator: "average",
    collect() {
      if (upstreams === undefined) return
      this.reset()
      for (const g of upstreams()) for (const m of g.members) if (m.latencyMs !== undefined) this.set({ group: g.group, member: m.name }, m.latencyMs / 1000)
    },
  })

  // Metrics other plugins report by name (`Plugin.MetricsShape`): created on first use, label names fixed then.
  const named = new Map<string, Prom.Counter | Prom.Gauge | Prom.Histogram>()
  named.set("proxyd_bans_total", bans)
  named.set("proxyd_auth_guard_total", guarded)
  const byName = <M extends Prom.Counter | Prom.Gauge | Prom.Histogram>(name: string, labels: Readonly<Record<string, string>>, make: (cfg: { name: string; help: string; labelNames: Array<string>; registers: Array<Prom.Registry> }) => M): M | undefined => {
    const have = named.get(name) ?? reg.getSingleMetric(name)
    if (have !== undefined) return have as M
    if (!/^proxyd_[a-z0-9_]+$/.test(name)) return undefined
    const m = make({ name, help: `${name} (reported by a plugin)`, labelNames: Object.keys(labels), registers })
    named.set(name, m)
    return m
  }
  const safely = (f: () => void): void => { try { f() } catch { /* a mislabelled call never breaks the caller */ } }

  const observer: Observe.Observer = {
    accepted: (e) => { const l = e.listener; add(acceptedN, l, () => ({ listener: l }), 1); add(activeN, l, () => ({ listener: l }), 1) },
    authenticated: (e) => auth.inc({ listener: e.listener, result: e.ok ? "success" : "failure" }),
    decided: (e) => {
      const l = e.listener
      observeH(decisionH, l, () => ({ listener: l }), e.durationMs / 1000)
      const k = `${e.policy}\0${e.rule}`
      add(ruleHitsN, `${k}\0${e.action}`, () => ({ policy: e.policy, rule: e.rule, action: e.action }), 1)
      const h = hits.get(k)
      if (h === undefined) hits.set(k, { policy: e.policy, rule: e.rule, hits: 1 })
      else h.hits++
    },
    connected: (e) => {
      const l = e.listener, action = e.action, result = e.ok ? "success" : "failure"
      observeH(connectH, `${l}\0${action}\0${result}`, () => ({ listener: l, action, result }), e.durationMs / 1000)
    },
    closed: (e) => {
      const l = e.listener
      add(activeN, l, () => ({ listener: l }), -1)
      const protocol = e.protocol ?? "none"
      const action = e.action ?? "none"
      const outcome = OUTCOMES.has(e.outcome) ? e.outcome : "other"
      add(closedN, `${l}\0${protocol}\0${action}\0${outcome}`, () => ({ listener: l, protocol, action, outcome }), 1)
      if (e.bytesUp > 0) add(bytesN, `${l}\0up`, () => ({ listener: l, direction: "up" }), e.bytesUp)
      if (e.bytesDown > 0) add(bytesN, `${l}\0down`, () => ({ listener: l, direction: "down" }), e.bytesDown)
      if (e.handshakeMs !== undefined) observeH(handshakeH, l, () => ({ listener: l }), e.handshakeMs / 1000)
      observeH(totalH, `${l}\0${protocol}`, () => ({ listener: l, protocol }), e.durationMs / 1000)
    },
    reloaded: (e) => reloads.inc({ result: e.ok ? "success" : "failure" }),
  }
  return {
    observer,
    scrape: () => reg.metrics(),
    scrapeJson: () => reg.getMetricsAsJSON(),
    contentType: reg.contentType,
    bindServer: (s) => { server = s },
    bindGeoIp: (f) => { geo = f },
    bindUpstreams: (f) => { upstreams = f },
    recordBan: (scope) => bans.inc({ scope }),
    recordProbe: (group, member, ok, ms) => {
      probes.inc({ group, member, result: ok ? "success" : "failure" })
      if (ok) probeLatency.observe({ group, member }, ms / 1000)
    },
    ruleHits: () => [...hits.values()].map((h) => ({ ...h })),
    inc: (name, labels = {}, by = 1) => safely(() => (byName(name, labels, (c) => new Prom.Counter(c)) as Prom.Counter | undefined)?.inc(labels, by)),
    observe: (name, v, labels = {}) => safely(() => (byName(name, labels, (c) => new Prom.Histogram({ ...c, buckets: DURATION })) as Prom.Histogram | undefined)?.observe(labels, v)),
    set: (name, v, labels = {}) => safely(() => (byName(name, labels, (c) => new Prom.Gauge(c)) as Prom.Gauge | undefined)?.set(labels, v)),
  }
}

/** Counts nothing and exposes nothing (rule hits are still counted for the admin API). */
export const makeNoop = (): MetricsShape => {
  const hits = new Map<string, { policy: string; rule: string; hits: number }>()
  return {
    observer: {
      decided: (e) => {
        const k = `${e.policy}\0${e.rule}`
        const h = hits.get(k)
        if (h === undefined) hits.set(k, { policy: e.policy, rule: e.rule, hits: 1 })
        else h.hits++
      },
    },
    scrape: () => Promise.resolve(""),
    scrapeJson: () => Promise.resolve([]),
    contentType: "text/plain; version=0.0.4; charset=utf-8",
    bindServer: () => {},
    bindGeoIp: () => {},
    bindUpstreams: () => {},
    recordBan: () => {},
    recordProbe: () => {},
    inc: () => {},
    observe: () => {},
    set: () => {},
    ruleHits: () => [...hits.values()].map((h) => ({ ...h })),
  }
}

export class Metrics extends Context.Service<Metrics, MetricsShape>()("proxyd/Metrics") {
  static readonly prom = (opts: { readonly processMetrics?: boolean } = {}): Layer.Layer<Metrics> => Layer.effect(Metrics, Effect.sync(() => makeProm(opts)))
  static readonly noop: Layer.Layer<Metrics> = Layer.effect(Metrics, Effect.sync(makeNoop))
}
