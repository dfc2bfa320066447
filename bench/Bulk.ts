/**
 * Bulk throughput through a target, one TCP stream each way, time-bounded, byte counts checked.
 *
 * Details: upload — the client (harness main thread) writes 1 MiB chunks for `seconds`, ends,
 * and the sink (worker thread, paused-mode reads) reports what it counted when the stream
 * closes; MiB/s = counted bytes / (sink close − first write). Download — the source (worker
 * thread) starts writing 1 MiB chunks when the target connects to it, for `seconds`, then ends;
 * the client counts in paused mode (`readable` + `read()`) until the end of the stream;
 * MiB/s = counted bytes / (client saw the end − source's first write). Both check that the
 * bytes counted equal the bytes written, exactly.
 * Gotchas: `verified` false means the proxy lost or added bytes (or closed early): the figure
 * is reported but marked.
 */
import type { MeterReading } from "./Proc.ts"
import { meter } from "./Proc.ts"
import { now, open, type Queue, type SinkResult, type SourceResult, type Via } from "./Wire.ts"

const CHUNK = Buffer.alloc(1 << 20, 0x61)

export interface Bulk { readonly mibps: number; readonly bytes: number; readonly verified: boolean; readonly cpuPerGiB: number | null; readonly load: MeterReading }

export const upload = async (t: Via & { pid: number | undefined }, sink: Queue<SinkResult>, seconds: number, endpointPid: number | undefined): Promise<Bulk> => {
  sink.clear()
  const s = await open(t, sink.port)
  const read = meter(t.pid, endpointPid)
  const t0 = now()
  const deadline = t0 + seconds * 1000
  let sent = 0
  let closed = false
  s.once("close", () => { closed = true })
  for (let i = 0; i < 10_000_000 && !closed && now() < deadline; i++) {
    sent += CHUNK.length
    if (!s.write(CHUNK)) await new Promise<void>((r) => { const f = () => { s.off("drain", f); s.off("close", f); r() }; s.on("drain", f); s.on("close", f) })
  }
  const closedEarly = closed
  s.end()
  s.resume()
  const r = await sink.next(seconds * 1000 + 30_000).finally(() => s.destroy())
  const load = read()
  return { mibps: r.bytes / 2 ** 20 / ((r.closedAt - t0) / 1000), bytes: r.bytes, verified: !closedEarly && r.bytes === sent, cpuPerGiB: t.pid === undefined ? null : load.proxyCpu / (r.bytes / 2 ** 30), load }
}

export const download = async (t: Via & { pid: number | undefined }, source: Queue<SourceResult>, seconds: number, endpointPid: number | undefined): Promise<Bulk> => {
  source.clear()
  const read = meter(t.pid, endpointPid)
  const s = await open(t, source.port)
  const counted = await new Promise<{ bytes: number; endAt: number }>((resolve, reject) => {
    let bytes = 0
    const timer = setTimeout(() => { s.destroy(); reject(new Error(`download: no end of stream within ${seconds + 30} s (${bytes} bytes)`)) }, seconds * 1000 + 30_000)
    s.on("readable", () => { let c: Buffer | null; while ((c = s.read() as Buffer | null) !== null) bytes += c.length })
    s.once("end", () => { clearTimeout(timer); resolve({ bytes, endAt: now() }) })
    s.once("close", () => { clearTimeout(timer); reject(new Error(`download: closed without an end of stream after ${bytes} bytes`)) })
  }).finally(() => s.destroy())
  const r = await source.next(30_000)
  const load = read()
  return { mibps: counted.bytes / 2 ** 20 / ((counted.endAt - r.startedAt) / 1000), bytes: counted.bytes, verified: counted.bytes === r.bytes, cpuPerGiB: t.pid === undefined ? null : load.proxyCpu / (counted.bytes / 2 ** 30), load }
}
