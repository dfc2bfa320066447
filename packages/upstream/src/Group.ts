/**
 * A group of upstreams: health probes, member state, and the order to try members in.
 *
 * Details: strategies: `failover` (healthy members in declared order),
 * `fastest` (healthy members by probe latency, an EWMA with weight 0.3;
 * members not measured yet come last in declared order), `round-robin`
 * (a counter over the healthy members), `hash` (rendezvous hashing of the
 * key, `by user|dst|src`, default user else src, over the healthy members:
 * a member going down moves only its own keys). The first candidate is the
 * choice, the rest are the fallbacks a connection tries (bounded by `tries`).
 * Probes (when the group has `probe`) run every `every` ±10 % jitter, all
 * members at once: `tcp HOST:PORT` opens the member to the target; `http
 * URL` sends GET through it and compares the status (`expect N`, default any
 * 2xx/3xx). A member is down after `down-after` consecutive failures, up
 * again after `up-after` consecutive successes; each change is one log line
 * (group, member, state, latency). Members start up.
 *
 * Passive health (a group without `probe`): connections report their
 * outcome (`report`); a member whose connect fails `PASSIVE_DOWN_AFTER` (3)
 * times in a row is marked down (same log line, `health: "passive"`) and left out
 * of the candidates; after `PASSIVE_RETRY_MS` (30 s) it is a candidate again
 * for one trial connection (its next retry is pushed back at once, so
 * concurrent connections do not all try it); a success marks it up.
 *
 * Gotchas: with `probe`, `report` does nothing (the probes decide). Only
 * failures that are the member's own count (not "destination unreachable"
 * answers, see `Upstreams.ts`). Probes skip a round while the previous one
 * is still running.
 */
import { createHash } from "node:crypto"
import type * as net from "node:net"
import * as tls from "node:tls"
import { Effect } from "effect"
import type { Ir } from "@proxyd/rules"
import type { Log } from "@proxyd/runtime"
import type { HopFailure, Target } from "./Hop.ts"
import { readHead } from "./HttpConnect.ts"

export interface MemberState {
  readonly name: string
  up: boolean
  fails: number
  oks: number
  latencyMs: number | undefined
  lastError: string | undefined
  /** Passive health: when a down member may get its next trial connection (epoch ms). */
  retryAt?: number
}

export interface MemberStatus { readonly name: string; readonly up: boolean; readonly latencyMs?: number; readonly lastError?: string }
export interface GroupStatus { readonly group: string; readonly strategy: Ir.GroupStrategy; readonly members: ReadonlyArray<MemberStatus> }

/** Opens a member (route or nested group) to a target; used by probes. */
export type OpenMember = (member: string, t: Target) => Effect.Effect<net.Socket, HopFailure>

export interface GroupRuntime {
  readonly ir: Ir.GroupIR
  readonly members: ReadonlyArray<MemberState>
  /** Healthy members, best first, for a request. */
  candidates(key: { readonly user?: string; readonly dst: string; readonly src: string }): Array<string>
  healthy(): boolean
  /** Passive health (groups without `probe`): a connection's outcome through `member`; `error` undefined on success. */
  report(member: string, error: string | undefined): void
  status(): GroupStatus
  start(open: OpenMember, log: Log.Log): void
  stop(): void
}

const ALPHA = 0.3
/** Passive health: consecutive connect failures that mark a member down. */
export const PASSIVE_DOWN_AFTER = 3
/** Passive health: back-off before a down member gets a trial connection. */
export const PASSIVE_RETRY_MS = 30_000

const weight = (key: string, member: string): bigint => createHash("sha256").update(`${member}\u0000${key}`).digest().readBigUInt64BE(0)

/** Parses a probe target: `host:port` or `http(s)://host[:port]/path`. */
export const probeTarget = (p: Ir.ProbeIR): { target: Target; tls: boolean; path: string; hostHeader: string } | undefined => {
  if (p.kind === "tcp") {
    const m = /^\[?([^\]]+?)\]?:(\d+)$/.exec(p.target)
    return m === null ? undefined : { target: { host: m[1]!, port: Number(m[2]) }, tls: false, path: "/", hostHeader: p.target }
  }
  try {
    const u = new URL(p.target)
    const secure = u.protocol === "https:"
    const host = u.hostname.replace(/^\[|\]$/g, "")
    return { target: { host, port: u.port === "" ? (secure ? 443 : 80) : Number(u.port) }, tls: secure, path: `${u.pathname}${u.search}`, hostHeader: u.host }
  } catch {
    return undefined
  }
}

const httpProbe = (sock: net.Socket, pt: NonNullable<ReturnType<typeof probeTarget>>, expect: number | undefined, ms: number, name: string): Promise<string | undefined> =>
  new Promise<net.Socket>((resolve, reject) => {
    if (!pt.tls) return resolve(sock)
    const t = tls.connect({ socket: sock, servername: pt.target.host })
    t.once("secureConnect", () => resolve(t))
    t.once("error", reject)
  }).then(async (s) => {
    s.write(`GET ${pt.path} HTTP/1.1\r\nHost: ${pt.hostHeader}\r\nUser-Agent: proxyd-probe\r\nConnection: close\r\n\r\n`)
    const h = await readHead(s, ms, name)
    s.destroy()
    const ok = expect === undefined ? h.status >= 200 && h.status < 400 : h.status === expect
    return ok ? undefined : `probe answered ${h.status}`
  }, (e: Error) => `probe TLS failed: ${e.message.slice(0, 80)}`)

export const makeGroup = (ir: Ir.GroupIR, previous?: GroupRuntime): GroupRuntime => {
  const members: Array<MemberState> = ir.members.map((name) => {
    const old = previous?.members.find((m) => m.name === name)
    return old !== undefined ? { ...old } : { name, up: true, fails: 0, oks: 0, latencyMs: undefined, lastError: undefined }
  })
  let rr = 0
  let timer: ReturnType<typeof setTimeout> | undefined
  let running = false
  let stopped = false
  let passiveLog: Log.Log | undefined

  const probeOnce = (open: OpenMember, log: Log.Log, probe: Ir.ProbeIR): Promise<void> => {
    const pt = probeTarget(probe)
    const ms = Math.max(1_000, Math.min(probe.everyMs, 10_000))
    return Promise.all(members.map(async (m) => {
      const started = performance.now()
      let error: string | undefined
      if (pt === undefined) error = "probe target is not usable"
      else {
        const r = await Effect.runPromise(Effect.result(open(m.name, pt.target).pipe(Effect.timeoutOrElse({ duration: ms, orElse: () => Effect.fail(undefined) }))))
        if (r._tag === "Failure") error = r.failure === undefined ? "probe timed out" : r.failure.message
        else if (probe.kind === "tcp") r.success.destroy()
        else error = await httpProbe(r.success, pt, probe.expectStatus, ms, m.name).catch((e: unknown) => (e instanceof Error ? e.message : "probe failed"))
      }
      if (stopped) return
      const took = performance.now() - started
      if (error === undefined) {
        m.latencyMs = m.latencyMs === undefined ? took : m.latencyMs * (1 - ALPHA) + took * ALPHA
        m.fails = 0
        m.oks++
        m.lastError = undefined
        if (!m.up && m.oks >= probe.upAfter) {
          m.up = true
          log.info("upstream member up", { group: ir.name, member: m.name, state: "up", latency_ms: Math.round(m.latencyMs) })
        }
      } else {
        m.oks = 0
        m.fails++
        m.lastError = error
        if (m.up && m.fails >= probe.downAfter) {
          m.up = false
          log.warn("upstream member down", { group: ir.name, member: m.name, state: "down", error, ...(m.latencyMs === undefined ? {} : { latency_ms: Math.round(m.latencyMs) }) })
        }
      }
    })).then(() => undefined)
  }

  const healthyMembers = (): Array<MemberState> => {
    if (ir.probe !== undefined) return members.filter((m) => m.up)
    const now = Date.now()
    return members.filter((m) => {
      if (m.up) return true
      if (m.retryAt === undefined || m.retryAt > now) return false
      m.retryAt = now + PASSIVE_RETRY_MS
      return true
    })
  }

  const report = (name: string, error: string | undefined): void => {
    if (ir.probe !== undefined) return
    const m = members.find((x) => x.name === name)
    if (m === undefined) return
    if (error === undefined) {
      m.fails = 0
      m.lastError = undefined
      if (!m.up) {
        m.up = true
        delete m.retryAt
        passiveLog?.info("upstream member up", { group: ir.name, member: m.name, state: "up", health: "passive" })
      }
      return
    }
    m.fails++
    m.lastError = error
    if (m.up && m.fails >= PASSIVE_DOWN_AFTER) {
      m.up = false
      m.retryAt = Date.now() + PASSIVE_RETRY_MS
      passiveLog?.warn("upstream member down", { group: ir.name, member: m.name, state: "down", error, health: "passive" })
    }
  }

  return {
    ir,
    members,
    healthy: () => members.some((m) => m.up),
    report,
    candidates: (key) => {
      const ok = healthyMembers()
      if (ok.length === 0) return []
      switch (ir.strategy) {
        case "failover": return ok.map((m) => m.name)
        case "fastest": return ok.map((m, i) => ({ m, i })).sort((a, b) => (a.m.latencyMs ?? Infinity) - (b.m.latencyMs ?? Infinity) || a.i - b.i).map((x) => x.m.name)
        case "round-robin": {
          const start = rr++ % ok.length
          if (rr > 1e9) rr = 0
          return [...ok.slice(start), ...ok.slice(0, start)].map((m) => m.name)
        }
        case "hash": {
          const k = ir.hashBy === "dst" ? key.dst : ir.hashBy === "src" ? key.src : ir.hashBy === "user" ? (key.user ?? "") : (key.user ?? key.src)
          return ok.map((m) => ({ n: m.name, w: weight(k, m.name) })).sort((a, b) => (a.w < b.w ? 1 : a.w > b.w ? -1 : 0)).map((x) => x.n)
        }
      }
    },
    status: () => ({
      group: ir.name,
      strategy: ir.strategy,
      members: members.map((m) => ({
        name: m.name, up: m.up,
        ...(m.latencyMs === undefined ? {} : { latencyMs: Math.round(m.latencyMs * 10) / 10 }),
        ...(m.lastError === undefined ? {} : { lastError: m.lastError }),
      })),
    }),
    start: (open, log) => {
      const probe = ir.probe
      passiveLog = log
      if (probe === undefined || timer !== undefined) return
      const schedule = (first: boolean): void => {
        if (stopped) return
        const jitter = probe.everyMs * 0.1 * (Math.random() * 2 - 1)
        timer = setTimeout(() => {
          if (running) return schedule(false)
          running = true
          void probeOnce(open, log, probe).finally(() => { running = false; schedule(false) })
        }, first ? Math.min(50, probe.everyMs) : Math.max(10, probe.everyMs + jitter))
        timer.unref()
      }
      schedule(true)
    },
    stop: () => {
      stopped = true
      if (timer !== undefined) clearTimeout(timer)
    },
  }
}
