/**
 * Time to first byte through a target: from starting the TCP connect to the first byte of a
 * reply, one connection at a time, for `seconds`.
 *
 * Details: the endpoint writes one byte as soon as it accepts (Wire.ts, "hello"), so the time
 * covers connect, the proxy's handshake (SOCKS5 method + CONNECT, or HTTP CONNECT, one step at
 * a time), the proxy's own connect to the endpoint and relaying one byte back. Reports p50/p99
 * over all connections of the run and the handshake-only p50 (connect to CONNECT reply).
 */
import { meter, type MeterReading } from "./Proc.ts"
import { quantile } from "./Stats.ts"
import { open, reset, type Via } from "./Wire.ts"

export interface Ttfb { readonly p50: number; readonly p99: number; readonly handshakeP50: number; readonly n: number; readonly errors: number; readonly load: MeterReading }

const firstByte = (s: import("node:net").Socket, timeoutMs: number): Promise<void> =>
  new Promise<void>((resolve, reject) => {
    const done = (e?: Error) => { clearTimeout(timer); s.off("data", onData); s.off("close", onClose); if (e === undefined) resolve(); else reject(e) }
    const onData = () => done()
    const onClose = () => done(new Error("closed before the first byte"))
    const timer = setTimeout(() => done(new Error(`no first byte within ${timeoutMs} ms`)), timeoutMs)
    s.on("data", onData)
    s.once("close", onClose)
    s.resume()
  })

export const ttfb = async (t: Via & { pid: number | undefined }, helloPort: number, seconds: number, endpointPid: number | undefined): Promise<Ttfb> => {
  const read = meter(t.pid, endpointPid)
  const deadline = performance.now() + seconds * 1000
  const total: Array<number> = []
  const hs: Array<number> = []
  let errors = 0
  let firstError = ""
  for (let i = 0; i < 1_000_000 && performance.now() < deadline && errors < 100; i++) {
    const a = performance.now()
    let s
    try {
      s = await open(t, helloPort, 5_000)
      hs.push(performance.now() - a)
      await firstByte(s, 5_000)
      total.push(performance.now() - a)
    } catch (e) {
      errors++
      firstError ||= (e as Error).message
    } finally {
      reset(s)
    }
  }
  if (total.length === 0) throw new Error(`no first byte (${errors} errors: ${firstError})`)
  total.sort((x, y) => x - y)
  hs.sort((x, y) => x - y)
  return { p50: quantile(total, 0.5), p99: quantile(total, 0.99), handshakeP50: quantile(hs, 0.5), n: total.length, errors, load: read() }
}
