/**
 * Connection rate through a target: connect, handshake, 64-byte echo, close, as fast as
 * `concurrency` loops can, for `seconds`.
 *
 * Details: the loops run in `threads` worker threads (RateWorker.ts, concurrency split evenly),
 * so at concurrency 50 the load generator is not one event loop. Reports connections per second
 * over the whole run, p50/p99 of the per-iteration latency, the target's CPU per connection
 * (the figure that carries over to other machines when the load generator shares the CPUs),
 * and the CPU split of the run (target, load generator threads, echo process, other load).
 * Gotchas: an iteration that fails (or takes more than 5 s) counts as an error, not a latency;
 * a run with errors is reported with its count.
 */
import { Worker } from "node:worker_threads"
import { meter, type MeterReading } from "./Proc.ts"
import type { RateDone, RateJob } from "./RateWorker.ts"
import { quantile } from "./Stats.ts"
import { type Via, within } from "./Wire.ts"

export interface Rate {
  readonly cps: number
  readonly p50: number
  readonly p99: number
  readonly conns: number
  readonly errors: number
  readonly firstError: string | null
  readonly cpuPerConn: number | null
  /** CPU seconds used by the load generator's threads (sum over threads) */
  readonly clientThreadCpu: number
  readonly load: MeterReading
}

const WORKER = new URL("./RateWorker.ts", import.meta.url)

export const rate = async (t: Via & { pid: number | undefined }, port: number, concurrency: number, seconds: number, threads: number, endpointPid: number | undefined): Promise<Rate> => {
  const n = Math.max(1, Math.min(threads, concurrency))
  const workers: Array<Worker> = []
  try {
    const ready: Array<Promise<void>> = []
    const done: Array<Promise<RateDone>> = []
    for (let i = 0; i < n; i++) {
      const share = Math.floor(concurrency / n) + (i < concurrency % n ? 1 : 0)
      const job: RateJob = { via: { name: t.name, kind: t.kind, port: t.port }, port, concurrency: share, seconds }
      const w = new Worker(WORKER, { workerData: job })
      workers.push(w)
      let onReady: () => void = () => {}
      const r = new Promise<void>((res) => { onReady = res })
      const d = new Promise<RateDone>((resolve, reject) => {
        w.on("message", (m: RateDone | "ready") => { if (m === "ready") onReady(); else resolve(m) })
        w.once("error", reject)
        w.once("exit", (code) => reject(new Error(`rate worker exited ${code}`)))
      })
      d.catch(() => {}) // observed below; terminating the workers later must not be an unhandled rejection
      done.push(d)
      ready.push(Promise.race([r, d.then(() => {})]))
    }
    await within(Promise.all(ready), 30_000, "rate: load-generator threads starting")
    const read = meter(t.pid, endpointPid)
    const t0 = performance.now()
    for (const w of workers) w.postMessage("go")
    const results = await within(Promise.all(done), seconds * 1000 + 30_000, "rate: load-generator threads")
    const elapsed = (performance.now() - t0) / 1000
    const load = read()
    const conns = results.reduce((a, r) => a + r.lat.length, 0)
    const lat = new Float64Array(conns)
    let o = 0
    for (const r of results) { lat.set(r.lat, o); o += r.lat.length }
    lat.sort()
    const errors = results.reduce((a, r) => a + r.errors, 0)
    if (conns === 0) throw new Error(`no connection completed (${errors} errors: ${results.find((r) => r.firstError !== null)?.firstError ?? "?"})`)
    return {
      cps: conns / elapsed,
      p50: quantile(lat, 0.5),
      p99: quantile(lat, 0.99),
      conns,
      errors,
      firstError: results.find((r) => r.firstError !== null)?.firstError ?? null,
      cpuPerConn: t.pid === undefined ? null : load.proxyCpu / conns,
      clientThreadCpu: results.reduce((a, r) => a + r.cpuSeconds, 0),
      load,
    }
  } finally {
    await Promise.all(workers.map((w) => w.terminate()))
  }
}
