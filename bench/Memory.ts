/**
 * Memory per idle relayed connection: hold K connections through a target, wait, read the
 * target's memory; the marginal KiB per connection between two K.
 *
 * Details: connections are opened 50 at a time, each with the full handshake and one 64-byte
 * echo (so the relay is set up both ways), then left idle and paused. At each stage (e.g.
 * 2,000 then 9,000 held) the benchmark waits `settleMs` and sums VmRSS (and PSS from
 * smaps_rollup) over the target's process tree, and counts its open descriptors. Marginal
 * KiB/connection = (memory at the last stage − memory at the first) / (connections between).
 * A target that cannot hold a stage (refused, reset, timed out) is reported with the count it
 * held and why; the later stages are not attempted. At the end the echo endpoint closes every
 * connection first (so the TIME_WAIT of thousands of connections does not hold ephemeral ports
 * that the next target needs), then the benchmark waits (bounded) for the target's descriptors.
 * Gotchas: the target needs 2 descriptors per connection (its file limit is inherited from the
 * harness); the client holds K and the echo endpoint K in its own process. Node targets'
 * memory depends on when their GC last ran.
 */
import type { Socket } from "node:net"
import { type Memory, meter, type MeterReading, openFds, tree, treeMemory } from "./Proc.ts"
import { echoOnce, open, reset, type Via, within } from "./Wire.ts"

export interface Stage { readonly want: number; readonly held: number; readonly memory: Memory; readonly fds: number | null }
export interface Hold {
  readonly idle: Memory
  readonly stages: ReadonlyArray<Stage>
  readonly marginalRssKiB: number | null
  readonly marginalPssKiB: number | null
  readonly stoppedAt: number | null
  readonly stopReason: string | null
  readonly openSeconds: number
  readonly load: MeterReading
}

const PING = Buffer.alloc(64, 0x6d)
const PARALLEL = 50

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

/** Open descriptors summed over `pid`'s process tree (null when unreadable). */
const fdsOf = (pid: number): number | null => tree(pid).reduce<number | null>((acc, p) => { const n = openFds(p); return acc === null || n === null ? null : acc + n }, 0)

export const hold = async (t: Via & { pid: number | undefined }, echoPort: number, wants: ReadonlyArray<number>, settleMs: number, budgetMs: number, endpointPid: number | undefined, closeEcho: () => Promise<number>): Promise<Hold> => {
  if (t.pid === undefined) throw new Error("no process to measure")
  const read = meter(t.pid, endpointPid)
  const pid = t.pid
  const held: Array<Socket> = []
  const stages: Array<Stage> = []
  let stopReason: string | null = null
  let openMs = 0
  const deadline = performance.now() + budgetMs
  await sleep(settleMs)
  const idle = treeMemory(pid)
  const idleFds = fdsOf(pid)
  try {
    for (const want of wants) {
      const a = performance.now()
      let failed = false
      const opening = new Set<Socket>() // connections under way, so the parallel loops stop at exactly `want`
      const loop = async () => {
        while (!failed && held.length + opening.size < want && performance.now() < deadline) {
          let s: Socket | undefined
          try {
            s = await open(t, echoPort, 10_000, (x) => { s = x; opening.add(x) })
            await echoOnce(s, PING, 10_000)
            if (!failed) held.push(s)
            else s.destroy()
          } catch (e) {
            s?.destroy()
            if (!failed) {
              stopReason = `${(e as Error).message} (at ${held.length} held)`
              failed = true
              for (const x of opening) x.destroy() // do not wait for the others' timeouts
            }
          } finally {
            if (s !== undefined) opening.delete(s)
          }
        }
      }
      await Promise.all(Array.from({ length: PARALLEL }, loop))
      openMs += performance.now() - a
      if (!failed && held.length < want) { stopReason = `time budget of ${budgetMs / 1000} s spent at ${held.length} held`; failed = true }
      if (failed) break
      await sleep(settleMs)
      stages.push({ want, held: held.length, memory: treeMemory(pid), fds: fdsOf(pid) })
    }
  } finally {
    // the echo side closes first: its TIME_WAIT lands on the echo port, and the target's outbound
    // sockets close passively, so thousands of ephemeral ports are not held for 60 s afterwards
    const closed = Promise.all(held.map((s) => s.closed ? Promise.resolve() : new Promise<void>((r) => { s.once("close", () => r()); s.resume() })))
    await closeEcho().then(() => within(closed, 3_000, "connections closing")).catch(() => {}) // tinyproxy does not pass the close on
    for (const s of held) reset(s)
    // let the target close its side before the next measurement: wait (bounded) until its descriptors are back near idle
    for (let i = 0; i < 100 && held.length > 0; i++) {
      await sleep(100)
      const n = fdsOf(pid)
      if (idleFds === null || n === null || n <= idleFds + 10) break
    }
  }
  const first = stages[0]
  const last = stages[stages.length - 1]
  const per = (f: (m: Memory) => number | null) => {
    if (first === undefined || last === undefined || last.held === first.held) return null
    const a = f(first.memory)
    const b = f(last.memory)
    return a === null || b === null ? null : (b - a) / (last.held - first.held)
  }
  return {
    idle,
    stages,
    marginalRssKiB: per((m) => m.rssKiB),
    marginalPssKiB: per((m) => m.pssKiB),
    stoppedAt: stopReason === null ? null : held.length,
    stopReason,
    openSeconds: openMs / 1000,
    load: read(),
  }
}
