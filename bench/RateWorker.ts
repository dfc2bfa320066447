/**
 * One load-generating thread of the connection-rate measurement (see Rate.ts).
 *
 * Details: runs `concurrency` loops that each connect, hand-shake, echo 64 bytes and close,
 * until the deadline (closing with a reset: no TIME_WAIT on the client side, see Wire.reset); posts back every iteration's latency (ms), the errors, and this
 * thread's own CPU time. Waits for a "go" message so all threads start together.
 */
import { parentPort, workerData } from "node:worker_threads"
import { echoOnce, open, reset, type Via } from "./Wire.ts"

export interface RateJob { readonly via: Via; readonly port: number; readonly concurrency: number; readonly seconds: number }
export interface RateDone { readonly lat: Float64Array; readonly errors: number; readonly firstError: string | null; readonly cpuSeconds: number; readonly wall: number }

const job = workerData as RateJob
const PING = Buffer.alloc(64, 0x62)
const threadCpu = (): number => {
  const u = (process as unknown as { threadCpuUsage?: () => { user: number; system: number } }).threadCpuUsage?.()
  return u === undefined ? Number.NaN : (u.user + u.system) / 1e6
}

const run = async (): Promise<RateDone> => {
  const t0 = performance.now()
  const cpu0 = threadCpu()
  const deadline = t0 + job.seconds * 1000
  let lat = new Float64Array(1 << 16)
  let n = 0
  let errors = 0
  let firstError: string | null = null
  const loop = async () => {
    for (let i = 0; i < 10_000_000 && performance.now() < deadline; i++) {
      const a = performance.now()
      let s
      try {
        s = await open(job.via, job.port, 5_000)
        await echoOnce(s, PING, 5_000)
        const ms = performance.now() - a
        if (n === lat.length) { const b = new Float64Array(lat.length * 2); b.set(lat); lat = b }
        lat[n++] = ms
      } catch (e) {
        errors++
        firstError ??= (e as Error).message
        if (errors > 1000) return
        await new Promise((r) => setTimeout(r, 10))
      } finally {
        reset(s)
      }
    }
  }
  await Promise.all(Array.from({ length: job.concurrency }, loop))
  return { lat: lat.slice(0, n), errors, firstError, cpuSeconds: threadCpu() - cpu0, wall: (performance.now() - t0) / 1000 }
}

parentPort!.once("message", () => {
  void run().then((done) => parentPort!.postMessage(done, [done.lat.buffer as ArrayBuffer]))
})
parentPort!.postMessage("ready")
