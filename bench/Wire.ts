/**
 * Loopback endpoints and client-side handshakes for the network benchmark.
 *
 * Details: the sink runs in a worker thread and reads in paused mode (`readable` + `read()` loop) and counts bytes, so it
 * is not capped by `data`-event overhead (see peer-baseline.md); the echo server writes back
 * what it reads. `open` connects to a target and completes a SOCKS5 no-auth CONNECT or an
 * HTTP CONNECT, one step at a time like curl, to 127.0.0.1:`port`.
 */
import { connect, createServer, type Server, type Socket } from "node:net"
import { Worker } from "node:worker_threads"
import type { Target } from "./Targets.ts"

export interface SinkResult { readonly bytes: number; readonly closedAt: number }

const listen = (server: Server): Promise<number> =>
  new Promise((resolve) => server.listen({ host: "127.0.0.1", port: 0, backlog: 1024 }, () => {
    const a = server.address()
    resolve(typeof a === "object" && a !== null ? a.port : 0)
  }))

/** The sink's server, run in a worker thread so the writing client and the counting sink do not share one event loop. */
const SINK = `
const { createServer } = require("node:net")
const { parentPort } = require("node:worker_threads")
const server = createServer((s) => {
  let bytes = 0
  s.on("readable", () => { let c; while ((c = s.read()) !== null) bytes += c.length })
  s.on("error", () => {})
  s.on("close", () => parentPort.postMessage({ bytes, closedAt: performance.timeOrigin + performance.now() }))
})
server.listen({ host: "127.0.0.1", port: 0, backlog: 1024 }, () => parentPort.postMessage({ port: server.address().port }))
`

/**
 * A sink: each accepted connection resolves the next `next()` promise with its byte count when it closes.
 * `closedAt` is on the `now()` clock (epoch milliseconds, shared across threads).
 */
export const startSink = async (): Promise<{ port: number; next(): Promise<SinkResult>; close(): Promise<void> }> => {
  const waiting: Array<(r: SinkResult) => void> = []
  const done: Array<SinkResult> = []
  const worker = new Worker(SINK, { eval: true })
  const port = await new Promise<number>((resolve, reject) => {
    worker.once("error", reject)
    worker.on("message", (m: { port?: number; bytes?: number; closedAt?: number }) => {
      if (m.port !== undefined) { resolve(m.port); return }
      const r = { bytes: m.bytes ?? 0, closedAt: m.closedAt ?? 0 }
      const w = waiting.shift()
      if (w !== undefined) w(r)
      else done.push(r)
    })
  })
  return {
    port,
    next: () => { const r = done.shift(); return r !== undefined ? Promise.resolve(r) : new Promise((res) => waiting.push(res)) },
    close: async () => { await worker.terminate() },
  }
}

/** Milliseconds on a clock shared by the main thread and the sink's worker. */
export const now = (): number => performance.timeOrigin + performance.now()

export const startEcho = async (): Promise<{ port: number; close(): void }> => {
  const server = createServer((s) => { s.on("data", (c) => s.write(c)); s.on("error", () => {}) })
  const port = await listen(server)
  return { port, close: () => { server.close() } }
}

/** Reads exactly `n` bytes (or up to and including `delim`) from a flowing socket. */
const reader = (s: Socket) => {
  let buf: Buffer = Buffer.alloc(0)
  let want: { n?: number; delim?: string; resolve: (b: Buffer) => void; reject: (e: Error) => void } | undefined
  const pump = () => {
    if (want === undefined) return
    let end = -1
    if (want.n !== undefined && buf.length >= want.n) end = want.n
    if (want.delim !== undefined) { const i = buf.indexOf(want.delim); if (i >= 0) end = i + want.delim.length }
    if (end < 0) return
    const out = buf.subarray(0, end)
    buf = buf.subarray(end)
    const w = want
    want = undefined
    w.resolve(out)
  }
  const onData = (c: Buffer) => { buf = buf.length === 0 ? c : Buffer.concat([buf, c]); pump() }
  const onEnd = () => want?.reject(new Error("closed early"))
  s.on("data", onData)
  s.on("close", onEnd)
  return {
    take: (n: number) => new Promise<Buffer>((resolve, reject) => { want = { n, resolve, reject }; pump() }),
    until: (delim: string) => new Promise<Buffer>((resolve, reject) => { want = { delim, resolve, reject }; pump() }),
    detach: () => { s.off("data", onData); s.off("close", onEnd) },
  }
}

/** A connected socket to 127.0.0.1:`port`, through `t` (handshake done), ready for payload. */
export const open = async (t: Target, port: number): Promise<Socket> => {
  const s = connect({ host: "127.0.0.1", port: t.kind === "direct" ? port : t.port, noDelay: true })
  s.on("error", () => {})
  await new Promise<void>((resolve, reject) => { s.once("connect", () => resolve()); s.once("error", reject) })
  if (t.kind === "direct") return s
  const r = reader(s)
  try {
    if (t.kind === "socks5") {
      s.write(Buffer.from([5, 1, 0]))
      const m = await r.take(2)
      if (m[0] !== 5 || m[1] !== 0) throw new Error(`${t.name}: SOCKS5 method reply ${m.toString("hex")}`)
      s.write(Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, port >> 8, port & 255]))
      const h = await r.take(5)
      if (h[1] !== 0) throw new Error(`${t.name}: SOCKS5 CONNECT reply ${h[1]}`)
      await r.take(h[3] === 1 ? 5 : h[3] === 4 ? 17 : h[4]! + 2)
    } else {
      s.write(`CONNECT 127.0.0.1:${port} HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`)
      const head = (await r.until("\r\n\r\n")).toString("latin1")
      if (!/^HTTP\/1\.[01] 200/.test(head)) throw new Error(`${t.name}: CONNECT ${head.split("\r\n")[0]}`)
    }
  } catch (e) {
    s.destroy()
    throw e
  } finally {
    r.detach()
  }
  return s
}
