/**
 * `workers N`: a supervisor on the main thread and N servers on worker threads.
 *
 * Details (docs/design/workers.md): each worker runs the whole server (`startServer`) with
 * `WorkerOptions`: its listeners bind with `SO_REUSEPORT`, its gates count in one shared
 * table (`SharedGate`), and a listener declared with port 0 binds the port worker 1 got
 * (`pins`). The supervisor starts worker 1, then the others; reloads them (SIGHUP, changes to
 * the files worker 1 reports, the set files' refresh period) worker 1 first (the first serving
 * one while worker 1 restarts), the rest only if it accepted the file, and again (up to 3
 * rounds) if they disagree; a worker starting during a round is reloaded once it serves;
 * shuts them down on SIGTERM/SIGINT (each drains); restarts a worker that exits on its own
 * (more than `MAX_RESTARTS` within `RESTART_WINDOW_MS` stops everything, exit 1). The plugins'
 * `SharedState` (brute-force counters, bans) is one in-memory store here, reached by message.
 * `peers()` lets a worker ask every serving worker (the admin API of worker 1 does).
 *
 * Messages (structured clone over the worker's port):
 *   worker → supervisor: ready { report }, failed { message }, reloaded { id, outcome, report },
 *                        state { id, op, args } (SharedState calls), ask { id, topic, arg },
 *                        answer { id, value }, stopped
 *   supervisor → worker: reload { id, pins }, shutdown, state-reply { id, value },
 *                        asked { id, topic, arg }, answers { id, values }
 *
 * Gotchas: the worker entry is a module URL the CLI gives (the runtime knows no protocol
 * handler); it must call `workerInit()` to tell whether it runs as a worker.
 */
import { isMainThread, parentPort, Worker, workerData } from "node:worker_threads"
import { Effect, Layer } from "effect"
import type { Log } from "./Log.ts"
import * as PolicyStore from "./PolicyStore.ts"
import { SharedState, type SharedStateShape } from "./Plugin.ts"
import type { ListenerAddress, ReloadOutcome, ServerHandle, WorkerOptions } from "./Server.ts"
import { refreshPeriod } from "./Server.ts"
import * as SharedGate from "./SharedGate.ts"
import * as Shared from "./SharedState.ts"

/** What every worker is started with (its `workerData.proxydWorker`). */
export interface Init {
  readonly index: number
  readonly workers: number
  readonly rulesFile: string
  readonly listen: ReadonlyArray<string>
  readonly logLevel?: string
  readonly logFormat?: "json" | "pretty"
  readonly express?: boolean
  readonly table: SharedArrayBuffer
  readonly pins: Readonly<Record<string, number>>
}

/** What a worker reports after starting and after each reload. */
export interface Report {
  readonly version: number
  readonly addresses: ReadonlyArray<ListenerAddress>
  readonly files: ReadonlyArray<string>
  readonly refreshMs: number | undefined
}

type FromWorker =
  | { readonly t: "ready"; readonly report: Report }
  | { readonly t: "ask"; readonly id: number; readonly topic: string; readonly arg: unknown }
  | { readonly t: "answer"; readonly id: number; readonly value: unknown }
  | { readonly t: "failed"; readonly message: string }
  | { readonly t: "reloaded"; readonly id: number; readonly outcome: ReloadOutcome; readonly report: Report }
  | { readonly t: "state"; readonly id: number; readonly op: "incr" | "get" | "set" | "del"; readonly args: ReadonlyArray<unknown> }
  | { readonly t: "stopped" }

type ToWorker =
  | { readonly t: "reload"; readonly id: number; readonly pins: Readonly<Record<string, number>> }
  | { readonly t: "asked"; readonly id: number; readonly topic: string; readonly arg: unknown }
  | { readonly t: "answers"; readonly id: number; readonly values: ReadonlyArray<Answer> }
  | { readonly t: "shutdown" }
  | { readonly t: "state-reply"; readonly id: number; readonly value: unknown }

/** One worker's answer to a question every worker was asked (`Peers.all`). */
export interface Answer { readonly worker: number; readonly value: unknown }

/** More restarts than this within `RESTART_WINDOW_MS` stop the server. */
export const MAX_RESTARTS = 5
export const RESTART_WINDOW_MS = 60_000
/** How long the supervisor waits for each worker's answer to `Peers.all`. */
export const ANSWER_MS = 5_000
/** How long a worker that reported `stopped` may take to end before it is terminated. */
export const STOPPED_EXIT_MS = 2_000

// ---------------------------------------------------------------------------------------------
// Worker side

/** This thread's `Init` when it runs as a proxyd worker, else undefined. */
export const workerInit = (): Init | undefined => {
  if (isMainThread || parentPort === null) return undefined
  const d = (workerData as { proxydWorker?: Init } | null)?.proxydWorker
  return d
}

const post = (m: FromWorker): void => parentPort?.postMessage(m)

/** A worker's `WorkerOptions`, whose pins each reload round replaces (a port-0 listener the reload added). */
export interface WorkerSide extends WorkerOptions {
  setPins(pins: Readonly<Record<string, number>>): void
}

/** The shared-table gates and the pinned ports of worker `init`. */
export const workerOptions = (init: Init): WorkerSide => {
  const counters = SharedGate.attach(init.table)
  let pins = init.pins
  return {
    gate: counters.gate,
    full: counters.full,
    pinnedPort: (name) => pins[name],
    setPins: (p) => { pins = p },
  }
}

let stateCalls = 0
const statePending = new Map<number, (v: unknown) => void>()
/** Replies to SharedState calls; listened to only while calls are owed (a listener keeps the thread alive). */
const onStateReply = (m: ToWorker): void => {
  if (m.t !== "state-reply") return
  const r = statePending.get(m.id)
  statePending.delete(m.id)
  if (statePending.size === 0) parentPort?.off("message", onStateReply)
  r?.(m.value)
}
/** The plugins' SharedState in a worker: every call answered by the supervisor's store. */
export const layerRemoteState: Layer.Layer<SharedState> = Layer.sync(SharedState, (): SharedStateShape => {
  const call = (op: "incr" | "get" | "set" | "del", args: ReadonlyArray<unknown>): Promise<unknown> =>
    new Promise((resolve) => {
      const id = ++stateCalls
      if (statePending.size === 0) parentPort?.on("message", onStateReply)
      statePending.set(id, resolve)
      post({ t: "state", id, op, args })
    })
  return {
    incr: (key, windowMs) => call("incr", [key, windowMs]) as Promise<number>,
    get: (key) => call("get", [key]) as Promise<string | undefined>,
    set: (key, value, ttlMs) => call("set", [key, value, ttlMs]) as Promise<void>,
    del: (key) => call("del", [key]) as Promise<void>,
  }
})

/**
 * The other workers, from inside one (plugins use it: the admin API of worker 1 lists every
 * worker's sessions, sums their metrics, reloads them all). Questions are answered by the
 * `serve`d handler of every serving worker (this one included), through the supervisor.
 */
export interface Peers {
  readonly index: number
  readonly workers: number
  /** Answers `topic` for the others (replaces an earlier handler). */
  serve(topic: string, answer: (arg: unknown) => unknown): void
  /** Every serving worker's answer (a worker that does not answer within `ANSWER_MS` is left out). */
  all(topic: string, arg?: unknown): Promise<ReadonlyArray<Answer>>
  /** One reload round of every worker (what SIGHUP does). */
  reload(): Promise<ReloadOutcome>
  /** How many workers serve now, of how many. */
  status(): Promise<{ readonly ready: number; readonly workers: number }>
}

const answerers = new Map<string, (arg: unknown) => unknown>()
let asks = 0
const askPending = new Map<number, (values: ReadonlyArray<Answer>) => void>()

const ask = (topic: string, arg: unknown): Promise<ReadonlyArray<Answer>> => new Promise((resolve) => {
  const id = ++asks
  askPending.set(id, resolve)
  post({ t: "ask", id, topic, arg })
})

/** This worker's view of the others, or undefined outside `workers N`. */
export const peers = (): Peers | undefined => {
  const init = workerInit()
  if (init === undefined) return undefined
  return {
    index: init.index,
    workers: init.workers,
    serve: (topic, answer) => { answerers.set(topic, answer) },
    all: (topic, arg) => ask(topic, arg),
    reload: async () => ((await ask(RELOAD, undefined))[0]?.value as ReloadOutcome | undefined) ?? { ok: false, version: 0, message: "no answer from the supervisor" },
    status: async () => ((await ask(STATUS, undefined))[0]?.value as { ready: number; workers: number } | undefined) ?? { ready: 0, workers: init.workers },
  }
}

/** Topics the supervisor answers itself. */
const RELOAD = "proxyd:reload"
const STATUS = "proxyd:status"

const answer = (m: Extract<ToWorker, { t: "asked" }>): void => {
  const f = answerers.get(m.topic)
  Promise.resolve()
    .then(() => (f === undefined ? undefined : f(m.arg)))
    .then((value) => post({ t: "answer", id: m.id, value }), () => post({ t: "answer", id: m.id, value: undefined }))
}

const reportOf = (h: ServerHandle): Report => ({
  version: h.store.current().version,
  addresses: h.addresses(),
  files: h.files(),
  refreshMs: refreshPeriod(h.store.current().program),
})

/** Tells the supervisor this worker could not start. */
export const failed = (message: string): void => post({ t: "failed", message })

/**
 * Serves as a worker until the supervisor says `shutdown`: reports `ready`, answers reloads
 * and SharedState replies, then drains (`handle.shutdown()`) and reports `stopped`.
 */
export const serveWorker = (handle: ServerHandle, options: WorkerSide): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    const port = parentPort
    if (port === null) return resume(Effect.void)
    const onMessage = (m: ToWorker): void => {
      if (m.t === "asked") answer(m)
      else if (m.t === "answers") {
        const r = askPending.get(m.id)
        askPending.delete(m.id)
        r?.(m.values)
      } else if (m.t === "reload") {
        options.setPins(m.pins)
        Effect.runFork(handle.reload().pipe(Effect.tap((outcome) => Effect.sync(() => post({ t: "reloaded", id: m.id, outcome, report: reportOf(handle) })))))
      } else if (m.t === "shutdown") {
        port.off("message", onMessage)
        Effect.runFork(handle.shutdown().pipe(Effect.ensuring(Effect.sync(() => {
          // SharedState replies still owed are answered by nobody now.
          for (const r of statePending.values()) r(undefined)
          statePending.clear()
          port.off("message", onStateReply)
          for (const r of askPending.values()) r([])
          askPending.clear()
          resume(Effect.void)
        }))))
      }
    }
    port.on("message", onMessage)
    post({ t: "ready", report: reportOf(handle) })
  })

/** The last word of a worker that drained: the supervisor may end it now. */
export const stopped = (): void => post({ t: "stopped" })

// ---------------------------------------------------------------------------------------------
// Supervisor side

export interface SuperviseOptions {
  readonly workers: number
  /** The module a worker thread runs (it calls `workerInit()`). */
  readonly entry: URL
  readonly rulesFile: string
  readonly listen?: ReadonlyArray<string>
  readonly logLevel?: string
  readonly logFormat?: "json" | "pretty"
  readonly express?: boolean
  /** `max-connections` at start, for the shared table's size. */
  readonly maxConnections: number
  readonly log: Log
  /** Handle SIGHUP/SIGTERM/SIGINT (default true; tests drive the handle instead). */
  readonly signals?: boolean
  readonly onStarted?: (s: Supervisor) => void
}

export interface Supervisor {
  /** Every listener's address (as worker 1 bound it). */
  addresses(): ReadonlyArray<ListenerAddress>
  /** One reload round (what SIGHUP does). */
  reload(): Promise<ReloadOutcome>
  /** Graceful shutdown of every worker; resolves when all have ended. */
  shutdown(): Promise<void>
  /** Thread ids of the running workers, in worker order (tests). */
  threads(): ReadonlyArray<number>
  /** Worker restarts so far. */
  restarts(): number
  /** Workers serving now. */
  ready(): number
}

interface Slot {
  readonly index: number
  worker: Worker | undefined
  ready: boolean
  stopping: boolean
  /** A reload round passed while it was starting (it may have read the files before they changed). */
  behind: boolean
}

class StartFailure extends Error {}

/**
 * Runs the supervisor until every worker has stopped. Resolves with the exit status:
 * 0 after a graceful shutdown, 1 when the workers could not start (the message is on
 * stderr) or kept crashing.
 */
export const supervise = (opts: SuperviseOptions): Promise<number> => {
  const log = opts.log
  const table = SharedGate.allocate(SharedGate.capacityFor(opts.maxConnections))
  const state = Shared.memory()
  const sweep = setInterval(() => state.sweep(), 60_000)
  sweep.unref()
  const slots: Array<Slot> = Array.from({ length: opts.workers }, (_, i) => ({ index: i + 1, worker: undefined, ready: false, stopping: false, behind: false }))
  let pins: Record<string, number> = {}
  let report: Report | undefined
  let shuttingDown = false
  let restartTimes: Array<number> = []
  let restartCount = 0
  let reloadIds = 0
  const waiting = new Map<number, { readonly slot: Slot; readonly resolve: (r: { outcome: ReloadOutcome; report: Report }) => void }>()
  let finish: (code: number) => void = () => {}
  const done = new Promise<number>((r) => { finish = r })
  let exitCode = 0

  const send = (s: Slot, m: ToWorker): void => s.worker?.postMessage(m)
  /** Worker 1's last report, or an empty one before the first (what a failed reload answers with). */
  const lastReport = (): Report => report ?? { version: 0, addresses: [], files: [], refreshMs: undefined }

  let answerIds = 0
  const answering = new Map<number, (v: unknown) => void>()
  /** A question for every serving worker (or the supervisor's own topics), answers by worker. */
  const fanOut = async (topic: string, arg: unknown): Promise<ReadonlyArray<Answer>> => {
    if (topic === RELOAD) return [{ worker: 0, value: await reload() }]
    if (topic === STATUS) return [{ worker: 0, value: { ready: slots.filter((sl) => sl.ready).length, workers: slots.length } }]
    const asked = slots.filter((sl) => sl.ready && sl.worker !== undefined).map((sl) => new Promise<Answer | undefined>((resolve) => {
      const id = ++answerIds
      const t = setTimeout(() => { answering.delete(id); resolve(undefined) }, ANSWER_MS)
      answering.set(id, (value) => { clearTimeout(t); resolve({ worker: sl.index, value }) })
      send(sl, { t: "asked", id, topic, arg })
    }))
    return (await Promise.all(asked)).filter((a): a is Answer => a !== undefined)
  }

  const answerState = async (s: Slot, m: Extract<FromWorker, { t: "state" }>): Promise<void> => {
    const a = m.args
    let value: unknown
    if (m.op === "incr") value = await state.incr(a[0] as string, a[1] as number)
    else if (m.op === "get") value = await state.get(a[0] as string)
    else if (m.op === "set") value = await state.set(a[0] as string, a[1] as string, a[2] as number)
    else value = await state.del(a[0] as string)
    send(s, { t: "state-reply", id: m.id, value })
  }

  /** Starts the worker of `slot`; resolves with its report once it serves. */
  const startWorker = (slot: Slot): Promise<Report> => new Promise((resolve, reject) => {
    const init: Init = {
      index: slot.index,
      workers: opts.workers,
      rulesFile: opts.rulesFile,
      listen: opts.listen ?? [],
      ...(opts.logLevel === undefined ? {} : { logLevel: opts.logLevel }),
      ...(opts.logFormat === undefined ? {} : { logFormat: opts.logFormat }),
      ...(opts.express === undefined ? {} : { express: opts.express }),
      table,
      pins,
    }
    const w = new Worker(opts.entry, { workerData: { proxydWorker: init } })
    slot.worker = w
    slot.ready = false
    slot.stopping = false
    let settled = false
    let lastError: string | undefined
    w.on("message", (m: FromWorker) => {
      switch (m.t) {
        case "ready":
          slot.ready = true
          settled = true
          resolve(m.report)
          if (slot.behind) {
            slot.behind = false
            void ask(slot).then((r) => { if (!r.outcome.ok) log.error("a restarted worker refused the reloaded files", { worker: slot.index, error: r.outcome.message }) })
          }
          return
        case "failed":
          settled = true
          slot.stopping = true
          reject(new StartFailure(m.message))
          return
        case "reloaded": {
          const p = waiting.get(m.id)
          if (p !== undefined && p.slot === slot) { waiting.delete(m.id); p.resolve({ outcome: m.outcome, report: m.report }) }
          return
        }
        case "state":
          void answerState(slot, m)
          return
        case "ask":
          void fanOut(m.topic, m.arg).then((values) => send(slot, { t: "answers", id: m.id, values }))
          return
        case "answer": {
          const p = answering.get(m.id)
          if (p !== undefined) { answering.delete(m.id); p(m.value) }
          return
        }
        case "stopped": {
          slot.stopping = true
          // Its server has drained; a handle something left open must not keep the process up.
          const t = setTimeout(() => { void w.terminate() }, STOPPED_EXIT_MS)
          t.unref()
          w.once("exit", () => clearTimeout(t))
          return
        }
      }
    })
    w.on("error", (e) => {
      lastError = e instanceof Error ? (e.stack ?? e.message) : String(e)
      log.error("worker failed", { worker: slot.index, error: lastError })
    })
    w.on("exit", (code) => {
      const wasReady = slot.ready
      slot.worker = undefined
      slot.ready = false
      // Reloads this worker owed an answer: it has none now.
      for (const [id, p] of waiting) if (p.slot === slot) { waiting.delete(id); p.resolve({ outcome: { ok: false, version: 0, message: `worker ${slot.index} exited` }, report: lastReport() }) }
      if (!settled) { settled = true; reject(new StartFailure(lastError ?? `worker ${slot.index} exited (code ${code}) before serving`)) }
      if (slot.stopping || shuttingDown) { maybeDone(); return }
      if (!wasReady) return
      log.error("worker exited; restarting it", { worker: slot.index, code })
      restart(slot)
    })
  })

  const restart = (slot: Slot): void => {
    const now = Date.now()
    restartTimes = restartTimes.filter((t) => now - t < RESTART_WINDOW_MS)
    restartTimes.push(now)
    restartCount++
    if (restartTimes.length > MAX_RESTARTS) {
      log.error("workers keep exiting; stopping", { restarts: restartTimes.length, window_ms: RESTART_WINDOW_MS })
      exitCode = 1
      void shutdown()
      return
    }
    startWorker(slot).catch((e: unknown) => {
      log.error("worker could not be restarted", { worker: slot.index, error: e instanceof Error ? e.message : String(e) })
      if (!shuttingDown) restart(slot)
    })
  }

  const maybeDone = (): void => {
    if (!shuttingDown) return
    if (slots.every((s) => s.worker === undefined)) {
      clearInterval(sweep)
      watcher?.close()
      if (refreshTimer !== undefined) clearTimeout(refreshTimer)
      finish(exitCode)
    }
  }

  const ask = (slot: Slot): Promise<{ outcome: ReloadOutcome; report: Report }> => new Promise((resolve) => {
    if (slot.worker === undefined || !slot.ready) {
      resolve({ outcome: { ok: false, version: 0, message: `worker ${slot.index} is not running` }, report: lastReport() })
      return
    }
    const id = ++reloadIds
    waiting.set(id, { slot, resolve })
    send(slot, { t: "reload", id, pins })
  })

  const pinFrom = (r: Report): void => {
    pins = {}
    for (const a of r.addresses) pins[a.listener] = a.port
  }

  let watcher: PolicyStore.Watcher | undefined
  let refreshTimer: ReturnType<typeof setTimeout> | undefined
  const track = (r: Report): void => {
    report = r
    if (watcher === undefined) {
      watcher = PolicyStore.watchFiles(r.files, () => {
        log.info("rules changed on disk; reloading")
        void reload()
      })
    } else watcher.update(r.files)
    if (refreshTimer !== undefined) clearTimeout(refreshTimer)
    refreshTimer = undefined
    if (r.refreshMs !== undefined && !shuttingDown) {
      refreshTimer = setTimeout(() => {
        log.debug("set files due for refresh; reloading")
        void reload()
      }, r.refreshMs)
      refreshTimer.unref()
    }
  }

  const reloadRound = async (): Promise<ReloadOutcome> => {
    for (let round = 1; round <= 3; round++) {
      // The first serving worker goes first (worker 1 unless it is being restarted).
      const first = slots.find((sl) => sl.ready) ?? slots[0]!
      const r1 = await ask(first)
      if (!r1.outcome.ok) return r1.outcome
      pinFrom(r1.report)
      // A worker (re)starting now is asked once it serves (`behind`).
      const rest = await Promise.all(slots.filter((sl) => sl !== first).filter((sl) => {
        if (sl.worker !== undefined && !sl.ready) { sl.behind = true; return false }
        return true
      }).map(ask))
      const disagree = rest.filter((r) => !r.outcome.ok)
      if (disagree.length === 0) {
        track(r1.report)
        log.info("policy reloaded in every worker", { version: r1.outcome.version, workers: slots.length })
        return r1.outcome
      }
      log.warn("workers disagree after a reload (the files changed meanwhile?); reloading again", { round, failed: disagree.map((r) => r.outcome.message) })
    }
    return { ok: false, version: report?.version ?? 0, message: "the workers did not agree on the reloaded files after 3 rounds" }
  }
  let reloading: Promise<ReloadOutcome> = Promise.resolve({ ok: true, version: 0 })
  const reload = (): Promise<ReloadOutcome> => {
    if (shuttingDown) return Promise.resolve({ ok: false, version: report?.version ?? 0, message: "shutting down" })
    reloading = reloading.then(reloadRound, reloadRound)
    return reloading
  }

  const shutdown = (): Promise<void> => {
    if (!shuttingDown) {
      shuttingDown = true
      watcher?.close()
      if (refreshTimer !== undefined) clearTimeout(refreshTimer)
      for (const s of slots) {
        if (s.worker === undefined) continue
        if (s.ready) send(s, { t: "shutdown" })
        else void s.worker.terminate()
      }
      maybeDone()
    }
    return done.then(() => undefined)
  }

  const supervisor: Supervisor = {
    addresses: () => report?.addresses ?? [],
    reload,
    shutdown,
    threads: () => slots.flatMap((s) => (s.worker === undefined ? [] : [s.worker.threadId])),
    restarts: () => restartCount,
    ready: () => slots.filter((sl) => sl.ready).length,
  }

  // Signals: SIGHUP reloads; SIGTERM/SIGINT drain; a second one exits at once. During start-up
  // they wait until every worker serves (a worker stopped half-started would read as a failed start).
  let signalled = 0
  let started = false
  let hupDuringStart = false
  const onHup = () => {
    if (started) void reload()
    else hupDuringStart = true
  }
  const onStop = (sig: NodeJS.Signals) => {
    signalled++
    if (signalled === 1) { if (started) void shutdown() }
    else process.exit(128 + (sig === "SIGINT" ? 2 : 15))
  }
  if (opts.signals !== false) {
    process.on("SIGHUP", onHup)
    process.on("SIGTERM", onStop)
    process.on("SIGINT", onStop)
    void done.then(() => {
      process.off("SIGHUP", onHup)
      process.off("SIGTERM", onStop)
      process.off("SIGINT", onStop)
    })
  }

  const begin = async (): Promise<void> => {
    try {
      const r1 = await startWorker(slots[0]!)
      pinFrom(r1)
      report = r1
      await Promise.all(slots.slice(1).map(startWorker))
      track(r1)
      started = true
      log.info("workers started", { workers: slots.length })
      opts.onStarted?.(supervisor)
      if (signalled > 0) void shutdown()
      else if (hupDuringStart) void reload()
    } catch (e) {
      exitCode = 1
      process.stderr.write(`${e instanceof Error ? e.message.replace(/\n?$/, "\n") : String(e)}proxyd: not started\n`)
      void shutdown()
    }
  }
  void begin()
  return done
}
