/**
 * The relay on its own, over real loopback sockets: a "front" server accepts
 * the client (paused, half-open, as the listener does) and the relay connects
 * it to an origin server. Covers the pump (plain sockets read into reusable
 * buffers) and its `pipe` fallback (TLS client, a source with a `data`
 * listener): byte-exact bulk both ways with a slow reader, many connections at
 * once (the shared read buffer must never mix them up), bytes buffered before
 * the relay, half-close both ways, idle timeout, errors, interruption.
 */
import { createHash, randomBytes } from "node:crypto"
import { mkdtempSync, readFileSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import * as tls from "node:tls"
import { Effect, Fiber } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { canPump, PRIVATE_SIZE, pumping, SHARED_SIZE } from "../src/Pump.ts"
import { relay, type RelayResult } from "../src/Relay.ts"
import { issue, makeCa, requireTool } from "./pki.ts"

const cleanups: Array<() => void> = []
afterEach(() => { for (const c of cleanups.splice(0)) c() })

const listen = (server: net.Server): Promise<number> =>
  new Promise((resolve) => server.listen({ host: "127.0.0.1", port: 0 }, () => resolve((server.address() as net.AddressInfo).port)))

const within = <A>(p: Promise<A>, ms: number, what: string): Promise<A> =>
  new Promise((resolve, reject) => {
    const t = setTimeout(() => reject(new Error(`${what}: not within ${ms} ms`)), ms)
    p.then((a) => { clearTimeout(t); resolve(a) }, (e: unknown) => { clearTimeout(t); reject(e) })
  })

const sha = (b: Buffer | Array<Buffer>): string => {
  const h = createHash("sha256")
  for (const c of Array.isArray(b) ? b : [b]) h.update(c)
  return h.digest("hex")
}

/** A server whose accepted sockets are handed to `next()`; closed after the test. */
const acceptor = async (opts: net.ServerOpts = {}, server?: net.Server) => {
  const waiting: Array<(s: net.Socket) => void> = []
  const ready: Array<net.Socket> = []
  const srv = server ?? net.createServer(opts)
  const all: Array<net.Socket> = []
  srv.on(server instanceof tls.Server ? "secureConnection" : "connection", (s: net.Socket) => {
    all.push(s)
    s.on("error", () => {})
    const w = waiting.shift()
    if (w !== undefined) w(s)
    else ready.push(s)
  })
  const port = await listen(srv)
  cleanups.push(() => { for (const s of all) s.destroy(); srv.close() })
  return {
    port,
    next: (): Promise<net.Socket> => { const s = ready.shift(); return s !== undefined ? Promise.resolve(s) : new Promise((r) => waiting.push(r)) },
  }
}

const connect = (port: number, halfOpen = true, highWaterMark?: number): Promise<net.Socket> =>
  new Promise((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port, allowHalfOpen: halfOpen, ...(highWaterMark !== undefined ? { highWaterMark } : {}) })
    cleanups.push(() => s.destroy())
    s.once("connect", () => { s.off("error", reject); s.on("error", () => {}); resolve(s) })
    s.once("error", reject)
  })

/** client <-> [front | relay | upstream] <-> origin. */
const rig = async (highWaterMark?: number) => {
  const front = await acceptor({ pauseOnConnect: true, allowHalfOpen: true, ...(highWaterMark !== undefined ? { highWaterMark } : {}) })
  const origin = await acceptor({ allowHalfOpen: true })
  return {
    /** One relayed connection; `before` runs on the accepted client socket before the relay starts. */
    open: async (idleMs = 0, before?: (proxySide: net.Socket, client: net.Socket) => Promise<void>) => {
      const client = await connect(front.port)
      const proxySide = await front.next()
      if (before !== undefined) await before(proxySide, client)
      const upstream = await connect(origin.port, true, highWaterMark)
      const server = await origin.next()
      const fiber = Effect.runFork(relay(proxySide, upstream, idleMs))
      const result = Effect.runPromise(Fiber.join(fiber)) as Promise<RelayResult>
      return { client, server, proxySide, upstream, fiber, result }
    },
  }
}

/** Collects everything `s` sends until it ends; optionally pauses every `every` bytes for `ms`. */
const collect = (s: net.Socket, slow?: { every: number; ms: number }): Promise<Array<Buffer>> =>
  new Promise((resolve) => {
    const chunks: Array<Buffer> = []
    let since = 0
    s.on("data", (c: Buffer) => {
      chunks.push(c)
      since += c.length
      if (slow !== undefined && since >= slow.every) { since = 0; s.pause(); setTimeout(() => s.resume(), slow.ms) }
    })
    s.once("end", () => resolve(chunks))
  })

/** Writes `data` in pieces of varying size (1 byte to 1 MiB), honouring backpressure, then ends. */
const send = async (s: net.Socket, data: Buffer, seed: number): Promise<void> => {
  const sizes = [1, 700, 16 * 1024, SHARED_SIZE, SHARED_SIZE + 1, PRIVATE_SIZE, 1 << 20, 3000]
  let off = 0
  for (let i = seed; off < data.length && i < 1_000_000; i++) {
    const n = Math.min(sizes[i % sizes.length]!, data.length - off)
    if (!s.write(data.subarray(off, off + n))) await new Promise((r) => s.once("drain", r))
    off += n
    if (i % 7 === 0) await new Promise((r) => setImmediate(r))
  }
  s.end()
}

describe("relay", () => {
  it("moves 24 MiB each way at once byte-exact, with a slow reader on each side, and counts the bytes", async () => {
    const r = await rig()
    const c = await r.open()
    expect(pumping(c.proxySide) && pumping(c.upstream)).toBe(true)
    const up = randomBytes(24 << 20), down = randomBytes(24 << 20)
    const gotUp = collect(c.server, { every: 4 << 20, ms: 30 })
    const gotDown = collect(c.client, { every: 3 << 20, ms: 30 })
    await within(Promise.all([send(c.client, up, 0), send(c.server, down, 3)]), 30_000, "send")
    const [u, d, res] = await within(Promise.all([gotUp, gotDown, c.result]), 60_000, "bulk")
    expect(sha(u)).toBe(sha(up))
    expect(sha(d)).toBe(sha(down))
    expect(res).toEqual({ bytesUp: up.length, bytesDown: down.length, end: "done" })
  }, 90_000)

  it("keeps 24 connections apart: each gets exactly its own bytes both ways", async () => {
    const r = await rig()
    const n = 24
    const conns = await Promise.all(Array.from({ length: n }, () => r.open()))
    const runs = conns.map(async (c, i) => {
      const size = (i % 4 === 0 ? 3 << 20 : 200_000) + i * 1013
      const up = randomBytes(size), down = randomBytes(size + 17)
      const gotUp = collect(c.server, i % 3 === 0 ? { every: 1 << 20, ms: 10 } : undefined)
      const gotDown = collect(c.client, i % 5 === 0 ? { every: 1 << 20, ms: 10 } : undefined)
      await within(Promise.all([send(c.client, up, i), send(c.server, down, i + 1)]), 30_000, "send")
      expect(pumping(c.proxySide) && pumping(c.upstream)).toBe(true)
      const [u, d, res] = await Promise.all([gotUp, gotDown, c.result])
      expect(sha(u)).toBe(sha(up))
      expect(sha(d)).toBe(sha(down))
      expect(res).toEqual({ bytesUp: up.length, bytesDown: down.length, end: "done" })
    })
    await within(Promise.all(runs), 60_000, "24 connections")
  }, 90_000)

  // Writes stay queued while reading goes on: the destination's kernel buffer is full (reader paused)
  // and, with a large highWaterMark, `write` keeps returning true. A buffer still referenced by a
  // queued write must not be read into again (private buffers), and the shared one is copied from.
  for (const hwm of [undefined, 16 << 20]) {
    it(`never overwrites bytes still queued for writing (reader paused, small and big reads, highWaterMark ${hwm ?? "default"})`, async () => {
      const r = await rig(hwm)
      const runs = Array.from({ length: 6 }, async (_, i) => {
        const c = await r.open()
        const pieces: Array<Buffer> = []
        const gotUp = new Promise<Array<Buffer>>((resolve) => {
          const chunks: Array<Buffer> = []
          c.server.pause()
          setTimeout(() => { c.server.on("data", (b: Buffer) => chunks.push(b)); c.server.resume() }, 400)
          c.server.once("end", () => resolve(chunks))
        })
        const bulk = randomBytes(6 << 20)
        pieces.push(bulk)
        c.client.write(bulk)
        for (let j = 0; j < 1500; j++) {
          const p = randomBytes(1 + ((j * 7919 + i * 131) % (j % 50 === 0 ? 300_000 : 5000)))
          pieces.push(p)
          if (!c.client.write(p)) await new Promise((res) => c.client.once("drain", res))
          if (j % 3 === 0) await new Promise((res) => setImmediate(res))
        }
        c.client.end()
        const u = await gotUp
        expect(sha(u)).toBe(sha(pieces))
        c.server.end()
        const res = await c.result
        expect(res.bytesUp).toBe(pieces.reduce((a, b) => a + b.length, 0))
      })
      await within(Promise.all(runs), 60_000, "queued writes")
    }, 90_000)
  }

  it("relays bytes the client socket buffered before the relay first, in order", async () => {
    const r = await rig()
    const head = Buffer.from("HEAD\n")
    const early = randomBytes(100_000), late = randomBytes(3 << 20)
    const c = await r.open(0, async (proxySide, client) => {
      client.write(Buffer.concat([head, early]))
      // A handler reads its head and leaves the rest buffered (unshift), as the SOCKS/HTTP handlers do.
      const all = await within(new Promise<Buffer>((resolve) => {
        let buf = Buffer.alloc(0)
        const onReadable = () => {
          for (let i = 0; i < 1000; i++) {
            const x = proxySide.read() as Buffer | null
            if (x === null) break
            buf = Buffer.concat([buf, x])
          }
          if (buf.length >= head.length + early.length) { proxySide.off("readable", onReadable); resolve(buf) }
        }
        proxySide.on("readable", onReadable)
      }), 5_000, "head")
      expect(all.subarray(0, head.length)).toEqual(head)
      proxySide.unshift(all.subarray(head.length))
    })
    const got = collect(c.server)
    await within(send(c.client, late, 2), 30_000, "send")
    expect(sha(await within(got, 10_000, "early + late"))).toBe(sha(Buffer.concat([early, late])))
    c.server.end()
    expect(await within(c.result, 5_000, "result")).toEqual({ bytesUp: early.length + late.length, bytesDown: 0, end: "done" })
  })

  it("half-close: the client ends first and still gets the origin's late reply; then the origin ends", async () => {
    const r = await rig()
    const c = await r.open()
    const gotDown = collect(c.client)
    const gotUp = collect(c.server)
    c.client.end("request")
    expect(Buffer.concat(await within(gotUp, 5_000, "request")).toString()).toBe("request")
    await new Promise((res) => setTimeout(res, 50))
    c.server.end("late reply")
    expect(Buffer.concat(await within(gotDown, 5_000, "reply")).toString()).toBe("late reply")
    expect(await within(c.result, 5_000, "result")).toEqual({ bytesUp: 7, bytesDown: 10, end: "done" })
  })

  it("half-close the other way: the origin ends first and the client keeps sending", async () => {
    const r = await rig()
    const c = await r.open()
    const gotDown = collect(c.client)
    const gotUp = collect(c.server)
    c.server.end("bye")
    expect(Buffer.concat(await within(gotDown, 5_000, "bye")).toString()).toBe("bye")
    const more = randomBytes(2 << 20)
    await within(send(c.client, more, 0), 30_000, "send")
    expect(sha(await within(gotUp, 10_000, "more"))).toBe(sha(more))
    expect(await within(c.result, 5_000, "result")).toEqual({ bytesUp: more.length, bytesDown: 3, end: "done" })
  })

  it("an idle relay ends after the idle timeout; traffic keeps it open", async () => {
    const r = await rig()
    const c = await r.open(300)
    const t0 = performance.now()
    c.server.on("data", () => {})
    for (let i = 0; i < 5; i++) { c.client.write("x"); await new Promise((res) => setTimeout(res, 150)) }
    expect(performance.now() - t0).toBeGreaterThan(700)
    const res = await within(c.result, 5_000, "idle")
    expect(res).toEqual({ bytesUp: 5, bytesDown: 0, end: "idle" })
    expect(c.proxySide.destroyed && c.upstream.destroyed).toBe(true)
  })

  it("shares its listeners between relays (no closure per connection) and removes them when it ends", async () => {
    const r = await rig()
    const a = await r.open(10_000), b = await r.open(10_000)
    const mine = (s: net.Socket, ev: string) => s.listeners(ev).at(-1)
    for (const ev of ["close", "error", "timeout"]) {
      expect(mine(a.proxySide, ev)).toBe(mine(b.proxySide, ev))
      expect(mine(a.upstream, ev)).toBe(mine(b.proxySide, ev))
    }
    expect(mine(a.upstream, "drain")).toBe(mine(b.proxySide, "drain"))
    const fns = ["close", "error", "timeout"].map((ev) => mine(a.proxySide, ev))
    a.client.end("hi"); a.server.resume(); a.server.end()
    expect(await within(a.result, 5_000, "a")).toEqual({ bytesUp: 2, bytesDown: 0, end: "done" })
    for (const [i, ev] of ["close", "error", "timeout"].entries()) {
      expect(a.proxySide.listeners(ev)).not.toContain(fns[i])
      expect(b.proxySide.listeners(ev)).toContain(fns[i])
    }
  })

  it("an error on one side destroys both", async () => {
    const r = await rig()
    const c = await r.open()
    c.server.on("data", () => {})
    c.client.write(randomBytes(1 << 20))
    await new Promise((res) => setTimeout(res, 50))
    c.server.resetAndDestroy()
    const res = await within(c.result, 5_000, "error")
    expect(res.end).toBe("error")
    expect(res.bytesUp).toBeGreaterThan(0)
    expect(c.proxySide.destroyed && c.upstream.destroyed).toBe(true)
  })

  it("interruption destroys both sockets", async () => {
    const r = await rig()
    const c = await r.open()
    c.client.write("hello")
    await new Promise((res) => setTimeout(res, 50))
    c.result.catch(() => {})
    const serverEnd = new Promise((res) => { c.server.once("end", res); c.server.resume() })
    await Effect.runPromise(Fiber.interrupt(c.fiber))
    expect(c.proxySide.destroyed && c.upstream.destroyed).toBe(true)
    await within(serverEnd, 5_000, "origin sees the end")
  })

  it("a source with a data listener of its own falls back to pipe", async () => {
    const r = await rig()
    let seen = 0
    const c = await r.open(0, async (proxySide) => { proxySide.on("data", (b: Buffer) => { seen += b.length }) ; proxySide.pause() })
    const got = collect(c.server)
    c.client.end("abc")
    expect(Buffer.concat(await within(got, 5_000, "abc")).toString()).toBe("abc")
    expect(seen).toBe(3)
    expect(pumping(c.proxySide)).toBe(false)
    expect(pumping(c.upstream)).toBe(true)
    c.server.end()
    expect((await within(c.result, 5_000, "result")).bytesUp).toBe(3)
  })
})

describe("relay with a TLS client socket (pipe fallback for that direction)", () => {
  it("moves 8 MiB each way byte-exact", async (ctx) => {
    if (!requireTool("openssl", ctx, ["version"])) return
    const dir = mkdtempSync(join(tmpdir(), "relay-tls-"))
    const ca = makeCa(dir, "ca")
    const leaf = issue(dir, ca, "server", "server")
    const server = tls.createServer({ cert: readFileSync(leaf.cert), key: readFileSync(leaf.key), allowHalfOpen: true })
    const front = await acceptor({}, server)
    const origin = await acceptor({ allowHalfOpen: true })
    // Half-open (Node's documented tls.connect option, missing from the typings): else the client would end its
    // side when the origin's data ends first, and the rest of its upload would be lost.
    const client = tls.connect({ host: "127.0.0.1", port: front.port, ca: readFileSync(ca.cert), allowHalfOpen: true } as tls.ConnectionOptions)
    cleanups.push(() => client.destroy())
    expect(client.allowHalfOpen).toBe(true)
    client.on("error", () => {})
    await new Promise((res) => client.once("secureConnect", res))
    const proxySide = await front.next()
    expect(proxySide).toBeInstanceOf(tls.TLSSocket)
    expect(canPump(proxySide)).toBe(false)
    const upstream = await connect(origin.port)
    const server2 = await origin.next()
    const result = Effect.runPromise(relay(proxySide, upstream, 0))
    expect(pumping(proxySide)).toBe(false)
    expect(pumping(upstream)).toBe(true)
    const up = randomBytes(8 << 20), down = randomBytes(8 << 20)
    const gotUp = collect(server2), gotDown = collect(client)
    await within(Promise.all([send(client, up, 0), send(server2, down, 1)]), 30_000, "send")
    const [u, d, res] = await within(Promise.all([gotUp, gotDown, result]), 30_000, "tls bulk")
    expect(sha(u)).toBe(sha(up))
    expect(sha(d)).toBe(sha(down))
    expect(res).toEqual({ bytesUp: up.length, bytesDown: down.length, end: "done" })
  }, 60_000)
})
