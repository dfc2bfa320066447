/**
 * Test support: a tiny line protocol (a real InboundHandler used only by these
 * tests), real local servers, and a buffered test client. Everything listens on
 * 127.0.0.1 and every wait is bounded.
 */
import * as net from "node:net"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { afterEach } from "vitest"
import type { InboundHandler, ProtocolName } from "../src/Inbound.ts"
import * as Log from "../src/Log.ts"
import { startServer, type Handlers, type ServerHandle, type ServerOptions } from "../src/Server.ts"

/** Reads one `\n`-terminated line from a paused socket; unshifts what follows. */
export const readLine = (s: net.Socket): Effect.Effect<string | undefined> =>
  Effect.callback<string | undefined>((resume) => {
    let buf = Buffer.alloc(0)
    const cleanup = () => { s.off("readable", onReadable); s.off("end", onEnd); s.off("close", onEnd) }
    const onReadable = () => {
      for (let i = 0; i < 10_000; i++) {
        const chunk = s.read() as Buffer | null
        if (chunk === null) return
        buf = Buffer.concat([buf, chunk])
        const nl = buf.indexOf(10)
        if (nl >= 0) {
          cleanup()
          const rest = buf.subarray(nl + 1)
          if (rest.length > 0) s.unshift(rest)
          resume(Effect.succeed(buf.subarray(0, nl).toString("utf8")))
          return
        }
      }
    }
    const onEnd = () => { cleanup(); resume(Effect.succeed(undefined)) }
    s.on("readable", onReadable)
    s.once("end", onEnd)
    s.once("close", onEnd)
    return Effect.sync(cleanup)
  })

/**
 * The test protocol: optional `AUTH user pass\n`, then `CONNECT host port\n`;
 * replies `OK <remote address>\n` then relays, or `ERR <reason>\n` and closes.
 * A line containing `HELLO` is answered `HELLO <protocol> <the line as JSON>`
 * (sniffing tests: proves which handler got it and that no byte was lost).
 */
export const lineHandler = (protocol: ProtocolName): InboundHandler => ({
  protocol,
  reject: (client) => { client.end(`ERR limit ${protocol}\n`) },
  handle: (client, ctx) => Effect.gen(function*() {
    let line = yield* readLine(client)
    if (line === undefined) return
    if (line.startsWith("AUTH ")) {
      const [, user = "", ...rest] = line.split(" ")
      const pass = rest.join(" ")
      const r = yield* ctx.authenticate(user, pass)
      if (!r.ok) { client.end("ERR auth\n"); return }
      ctx.setUser(r.user, r.groups)
      line = yield* readLine(client)
      if (line === undefined) return
    } else if (ctx.auth === "required") {
      client.end("ERR auth-required\n")
      return
    }
    if (line.includes("HELLO")) { client.end(`HELLO ${protocol} ${JSON.stringify(line)}\n`); return }
    // A leading 0x04/0x05 (sniffing tests address the socks handlers) is not part of the command.
    const m = /^[\x04\x05]?CONNECT (\S+) (\d+)$/.exec(line)
    if (m === null) { client.end("ERR bad-request\n"); return }
    const d = yield* ctx.decide({ command: "connect", dstHost: m[1]!, dstPort: Number(m[2]), protocol })
    const a = d.decision.action
    if (a.k === "block") { client.end(`ERR blocked ${a.message ?? ""}\n`); return }
    const r = yield* Effect.result(ctx.connect(d))
    if (r._tag === "Failure") { client.end(`ERR ${r.failure.reason._tag}\n`); return }
    client.write(`OK ${r.success.remoteAddress}:${r.success.remotePort}\n`)
    yield* ctx.relay(client, r.success.socket)
  }),
})

export const allHandlers: Handlers = { http: lineHandler("http"), socks5: lineHandler("socks5"), socks4: lineHandler("socks4") }

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

/** Polls `cond` every 5 ms until true or `ms` elapse; returns whether it became true. */
export const until = async (cond: () => boolean, ms = 5_000): Promise<boolean> => {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (cond()) return true
    await sleep(5)
  }
  return cond()
}

export interface TestServer {
  readonly port: number
  accepted(): number
  readonly sockets: Set<net.Socket>
  close(): Promise<void>
}

/** A real TCP server on 127.0.0.1: echo (default), or a custom connection handler. */
export const localServer = async (onConn?: (s: net.Socket) => void): Promise<TestServer> => {
  let accepted = 0
  const sockets = new Set<net.Socket>()
  const server = net.createServer({ allowHalfOpen: true }, (s) => {
    accepted++
    sockets.add(s)
    s.on("close", () => sockets.delete(s))
    s.on("error", () => {})
    if (onConn !== undefined) onConn(s)
    else s.pipe(s)
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  return {
    port: (server.address() as net.AddressInfo).port,
    accepted: () => accepted,
    sockets,
    close: () => new Promise<void>((r) => { for (const s of sockets) s.destroy(); server.close(() => r()) }),
  }
}

export interface TestClient {
  readonly socket: net.Socket
  readonly data: () => Buffer
  text(): string
  ended(): boolean
  closed(): boolean
  /** Waits until the received text contains `s`. */
  waitText(s: string, ms?: number): Promise<boolean>
}

/** Connects to 127.0.0.1:port. Not half-open unless asked: the client closes when the server ends. */
export const dial = async (port: number, send?: string, halfOpen = false): Promise<TestClient> => {
  const socket = net.connect({ host: "127.0.0.1", port, allowHalfOpen: halfOpen })
  const chunks: Array<Buffer> = []
  let ended = false, closed = false
  socket.on("data", (c: Buffer) => chunks.push(c))
  socket.on("end", () => { ended = true })
  socket.on("close", () => { closed = true })
  socket.on("error", () => {})
  await new Promise<void>((resolve, reject) => { socket.once("connect", resolve); socket.once("error", reject) })
  if (send !== undefined) socket.write(send)
  const data = () => Buffer.concat(chunks)
  return {
    socket,
    data,
    text: () => data().toString("utf8"),
    ended: () => ended,
    closed: () => closed,
    waitText: (s, ms = 5_000) => until(() => data().toString("utf8").includes(s), ms),
  }
}

export const tempDir = (): string => mkdtempSync(join(tmpdir(), "proxyd-runtime-"))

export const writeRules = (dir: string, text: string, name = "test.rules"): string => {
  const p = join(dir, name)
  writeFileSync(p, text)
  return p
}

export interface Started {
  readonly handle: ServerHandle
  readonly log: Log.Log & { readonly lines: Array<string> }
  readonly port: number
  port_of(listener: string): number
  /** Parsed close lines (`msg == "connection"`). */
  connections(): Array<Record<string, unknown>>
  stop(drainMs?: number): Promise<void>
}

export const start = async (rulesFile: string, extra: Partial<ServerOptions> = {}): Promise<Started> => {
  const log = Log.memory("debug")
  const handle = await Effect.runPromise(startServer({ rulesFile, handlers: allHandlers, log, watch: false, ...extra }))
  const addrs = handle.addresses()
  return {
    handle,
    log,
    port: addrs[0]!.port,
    port_of: (l) => addrs.find((a) => a.listener === l)!.port,
    connections: () => log.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l["msg"] === "connection"),
    stop: (drainMs = 0) => Effect.runPromise(handle.shutdown(drainMs)),
  }
}

/**
 * Registers an `afterEach` in the calling test file (call once, at the top level): after each test,
 * what `track` was given is stopped (drain 0) or closed and what `defer` was given runs, last first.
 */
export const tracker = () => {
  const cleanups: Array<() => Promise<void>> = []
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c()
  })
  return {
    defer: (cleanup: () => Promise<void>): void => {
      cleanups.push(cleanup)
    },
    track: <A extends Started | TestServer>(x: A): A => {
      cleanups.push(() => ("handle" in x ? x.stop(0) : x.close()))
      return x
    },
  }
}
