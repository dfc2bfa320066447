/**
 * Loopback endpoints and client-side handshakes for the network benchmark.
 *
 * Details: the sink (counts what it reads) and the source (writes for a fixed time) run in
 * worker threads and read/write in paused mode with 1 MiB buffers, so neither shares an event
 * loop with the client nor pays `data`-event overhead (see peer-baseline.md). The echo server
 * and the first-byte server (writes one byte on accept) run in a separate process, so the
 * client's and the endpoints' file descriptors have a limit each (the memory test holds
 * thousands) and their CPU time is counted apart. `open` connects to a target and completes a
 * SOCKS5 no-auth CONNECT or an HTTP CONNECT, one step at a time like curl, to 127.0.0.1:`port`;
 * it returns the socket paused, with any bytes that came after the handshake put back
 * (`track` sees the socket at once, so a caller can destroy connections still under way).
 * Gotchas: every endpoint is stopped by `close()` (workers terminated, the process killed by PID).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { connect, type Socket } from "node:net"
import { Worker } from "node:worker_threads"
import type { Target } from "./Targets.ts"

/** Milliseconds on a clock shared by the main thread and the workers (epoch based). */
export const now = (): number => performance.timeOrigin + performance.now()

export interface SinkResult { readonly bytes: number; readonly closedAt: number }
export interface SourceResult { readonly bytes: number; readonly startedAt: number; readonly endedAt: number }

/** The sink's server: counts the bytes of each connection, reports them when it closes. */
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

/** The source's server: on accept, writes 1 MiB chunks for workerData.seconds, then ends; reports the bytes written. */
const SOURCE = `
const { createServer } = require("node:net")
const { parentPort, workerData } = require("node:worker_threads")
const CHUNK = Buffer.alloc(1 << 20, 0x63)
const now = () => performance.timeOrigin + performance.now()
const server = createServer(async (s) => {
  s.on("error", () => {})
  let closed = false
  s.once("close", () => { closed = true })
  const startedAt = now()
  const deadline = startedAt + workerData.seconds * 1000
  let bytes = 0
  for (let i = 0; i < 1e7 && !closed && now() < deadline; i++) {
    bytes += CHUNK.length
    if (!s.write(CHUNK)) await new Promise((r) => { const f = () => { s.off("drain", f); s.off("close", f); r() }; s.on("drain", f); s.on("close", f) })
  }
  s.end()
  parentPort.postMessage({ bytes, startedAt, endedAt: now(), closed })
})
server.listen({ host: "127.0.0.1", port: 0, backlog: 1024 }, () => parentPort.postMessage({ port: server.address().port }))
`

/**
 * Echo (writes back what it reads), echo-close (writes back its first chunk and ends: the origin
 * closes first, so a chain's TIME_WAIT lands on the accepting sides, not on ephemeral ports) and
 * first byte (writes one byte on accept) in one process.
 */
const ENDPOINTS = `
const { createServer } = require("node:net")
const conns = new Set()
const echo = createServer((s) => { conns.add(s); s.on("close", () => conns.delete(s)); s.on("data", (c) => s.write(c)); s.on("error", () => {}) })
// "close-echo": end every echo connection from this side (TIME_WAIT lands on the echo port, not on ephemeral ports)
process.on("message", (m) => { if (m === "close-echo") { const n = conns.size; for (const s of conns) s.end(); process.send({ closed: n }) } })
const echoClose = createServer((s) => { s.on("error", () => {}); s.once("data", (c) => s.end(c)) })
const hello = createServer((s) => { s.on("error", () => {}); s.on("data", () => {}); s.write("h") })
let n = 0
const up = () => { if (++n === 3) process.stdout.write(JSON.stringify({ echo: echo.address().port, echoClose: echoClose.address().port, hello: hello.address().port }) + "\\n") }
echo.listen({ host: "127.0.0.1", port: 0, backlog: 4096 }, up)
echoClose.listen({ host: "127.0.0.1", port: 0, backlog: 4096 }, up)
hello.listen({ host: "127.0.0.1", port: 0, backlog: 4096 }, up)
process.on("disconnect", () => process.exit(0))
`

/** Reports from an endpoint worker, one per connection, in order. */
export interface Queue<A> { readonly port: number; next(timeoutMs: number): Promise<A>; clear(): void; close(): Promise<void> }

const worker = async <A>(source: string, workerData: unknown): Promise<Queue<A>> => {
  const waiting: Array<(r: A) => void> = []
  const done: Array<A> = []
  const w = new Worker(source, { eval: true, workerData })
  const port = await new Promise<number>((resolve, reject) => {
    w.once("error", reject)
    w.on("message", (m: A & { port?: number }) => {
      if (m.port !== undefined) { resolve(m.port); return }
      const next = waiting.shift()
      if (next !== undefined) next(m)
      else done.push(m)
    })
  })
  return {
    port,
    next: (timeoutMs) => {
      const r = done.shift()
      if (r !== undefined) return Promise.resolve(r)
      return new Promise((resolve, reject) => {
        const t = setTimeout(() => { const i = waiting.indexOf(ok); if (i >= 0) waiting.splice(i, 1); reject(new Error(`no report from the endpoint within ${timeoutMs} ms`)) }, timeoutMs)
        const ok = (a: A) => { clearTimeout(t); resolve(a) }
        waiting.push(ok)
      })
    },
    clear: () => { done.length = 0 },
    close: async () => { await w.terminate() },
  }
}

/** A sink: each accepted connection's byte count, in order, when it closes (`closedAt` on the `now()` clock). */
export const startSink = (): Promise<Queue<SinkResult>> => worker<SinkResult>(SINK, undefined)

/** A source: each accepted connection gets `seconds` of writes; reports bytes written and when (`now()` clock). */
export const startSource = (seconds: number): Promise<Queue<SourceResult>> => worker<SourceResult>(SOURCE, { seconds })

export interface Endpoints {
  readonly echo: number
  /** echoes the first chunk of each connection, then ends it (the origin closes first) */
  readonly echoClose: number
  readonly hello: number
  readonly pid: number | undefined
  /** ends every open echo connection from the server's side; resolves with how many */
  closeEcho(): Promise<number>
  close(): Promise<void>
}

/** The echo and first-byte servers in a child process, stopped by its PID. */
export const startEndpoints = async (): Promise<Endpoints> => {
  const child: ChildProcess = spawn(process.execPath, ["-e", ENDPOINTS], { stdio: ["ignore", "pipe", "inherit", "ipc"] })
  const close = async () => {
    if (child.exitCode !== null || child.signalCode !== null) return
    const exited = new Promise<void>((r) => child.once("exit", () => r()))
    if (child.pid !== undefined) process.kill(child.pid, "SIGKILL")
    await exited
  }
  try {
    const ports = await new Promise<{ echo: number; echoClose: number; hello: number }>((resolve, reject) => {
      let buf = ""
      const t = setTimeout(() => reject(new Error("endpoints did not start within 10 s")), 10_000)
      child.stdout?.on("data", (c: Buffer) => {
        buf += c.toString()
        const i = buf.indexOf("\n")
        if (i >= 0) { clearTimeout(t); resolve(JSON.parse(buf.slice(0, i)) as { echo: number; echoClose: number; hello: number }) }
      })
      child.once("exit", (code) => { clearTimeout(t); reject(new Error(`endpoints exited ${code}`)) })
    })
    const closeEcho = () => within(new Promise<number>((resolve) => {
      const on = (m: { closed?: number }) => { if (m.closed !== undefined) { child.off("message", on); resolve(m.closed) } }
      child.on("message", on)
      child.send("close-echo")
    }), 10_000, "closing the echo connections")
    return { ...ports, pid: child.pid, closeEcho, close }
  } catch (e) {
    await close()
    throw e
  }
}

/** Reads exactly `n` bytes (or up to and including `delim`) from a flowing socket; `detach` returns what is left over. */
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
  const onEnd = () => want?.reject(new Error("closed during the handshake"))
  s.on("data", onData)
  s.on("close", onEnd)
  return {
    take: (n: number) => new Promise<Buffer>((resolve, reject) => { want = { n, resolve, reject }; pump() }),
    until: (delim: string) => new Promise<Buffer>((resolve, reject) => { want = { delim, resolve, reject }; pump() }),
    detach: (): Buffer => { s.off("data", onData); s.off("close", onEnd); return buf },
  }
}

/** Where a connection goes: the target's kind and port (enough for a worker thread to `open`). */
export interface Via { readonly name: string; readonly kind: Target["kind"]; readonly port: number }

/**
 * A connected socket to 127.0.0.1:`port` through `t` (handshake done), paused, ready for payload.
 * Bytes that arrived with the handshake's reply are put back (`unshift`); call `resume()` or read it.
 */
export const open = async (t: Via, port: number, timeoutMs = 10_000, track?: (s: Socket) => void): Promise<Socket> => {
  const s = connect({ host: "127.0.0.1", port: t.kind === "direct" ? port : t.port, noDelay: true })
  s.on("error", () => {})
  track?.(s)
  const timer = setTimeout(() => s.destroy(new Error(`${t.name}: no connection and handshake within ${timeoutMs} ms`)), timeoutMs)
  try {
    await new Promise<void>((resolve, reject) => {
      s.once("connect", () => resolve())
      s.once("error", reject)
      s.once("close", () => reject(new Error(`${t.name}: closed before connecting`)))
    })
    if (t.kind === "direct") { s.pause(); return s }
    const r = reader(s)
    let rest: Buffer = Buffer.alloc(0)
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
    } finally {
      rest = r.detach()
    }
    s.pause()
    if (rest.length > 0) s.unshift(rest)
    return s
  } catch (e) {
    s.destroy()
    throw e
  } finally {
    clearTimeout(timer)
  }
}

/** Writes `payload` and resolves when as many bytes came back (the socket is left paused, or closed on error). */
export const echoOnce = (s: Socket, payload: Buffer, timeoutMs = 10_000): Promise<void> =>
  new Promise<void>((resolve, reject) => {
    let got = 0
    const done = (e?: Error) => {
      clearTimeout(timer)
      s.off("data", onData)
      s.off("close", onClose)
      s.pause()
      if (e === undefined) resolve()
      else reject(e)
    }
    const onData = (c: Buffer) => { got += c.length; if (got >= payload.length) done() }
    const onClose = () => done(new Error(`echo closed after ${got} of ${payload.length} bytes`))
    const timer = setTimeout(() => done(new Error(`echo: ${got} of ${payload.length} bytes within ${timeoutMs} ms`)), timeoutMs)
    s.on("data", onData)
    s.once("close", onClose)
    s.resume()
    s.write(payload)
  })

/** `p`, or a rejection after `ms` (the timer is cleared either way). */
export const within = <A>(p: Promise<A>, ms: number, what: string): Promise<A> => {
  let timer: ReturnType<typeof setTimeout> | undefined
  const t = new Promise<never>((_, reject) => { timer = setTimeout(() => reject(new Error(`${what}: not done within ${(ms / 1000).toFixed(0)} s`)), ms) })
  return Promise.race([p, t]).finally(() => clearTimeout(timer))
}

/**
 * Closes `s` with a reset (SO_LINGER 0), so the client leaves no TIME_WAIT behind: the harness
 * opens tens of thousands of connections a minute and would otherwise fill the ephemeral port
 * range for 60 s, starving the next target (Dante binds a port for each outbound connection).
 * The proxy still sees its client leave first and closes its outbound side first.
 */
export const reset = (s: Socket | undefined): void => {
  if (s === undefined || s.destroyed) return
  try { s.resetAndDestroy() } catch { s.destroy() }
}
