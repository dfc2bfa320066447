/**
 * Load and lifecycle through the real binary: 1,000 concurrent SOCKS5
 * connections relayed byte-exact across a SIGHUP reload and a rules-file edit,
 * and SIGTERM during a transfer (drained within the deadline, exit 0).
 *
 * Details: a local echo origin; each client pipelines the SOCKS5 greeting and
 * CONNECT, waits for the reply, sends the first half of a 64 KiB random
 * payload, and sends the second half only after both reloads have happened,
 * so every connection is open and mid-transfer across them. It then reads
 * back exactly 64 KiB and compares. proxyd must log one `ok` close line per
 * connection with 64 KiB counted each way.
 * Gotchas: 2 shared cores, so payloads are small; every wait is bounded.
 */
import { createHash, randomBytes } from "node:crypto"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { connect, createServer, type Server, type Socket } from "node:net"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { type Running, start, stop, waitFor } from "./spawn.ts"

let dir = ""
let echo: Server
let echoPort = 0
const originSockets = new Set<Socket>()
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "proxyd-load-"))
  echo = createServer((s) => { originSockets.add(s); s.on("close", () => originSockets.delete(s)); s.on("error", () => {}); s.pipe(s) })
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", 1024, r))
  echoPort = (echo.address() as AddressInfo).port
})
afterAll(async () => {
  for (const s of originSockets) s.destroy()
  await new Promise<void>((r) => echo.close(() => r()))
  rmSync(dir, { recursive: true, force: true })
})

const rules = (drain: string, blockedPort: number) => `listen mixed 127.0.0.1:0
options { drain-timeout ${drain} }
policy default {
  rule marker when dst.port == ${blockedPort} -> block "marker ${blockedPort}"
  default allow
}
`

const socks5Connect = (ip: string, port: number): Buffer =>
  Buffer.from([5, 1, 0, 5, 1, 0, 1, ...ip.split(".").map(Number), port >> 8, port & 255])

/** A SOCKS5 client through proxyd: resolves once the CONNECT reply arrived (REP must be 0). */
const open = (proxyPort: number, dstPort: number): Promise<{ s: Socket; data: () => Buffer; onData: (f: () => void) => void; ended: () => boolean }> =>
  new Promise((resolve, reject) => {
    const s = connect(proxyPort, "127.0.0.1")
    let buf = Buffer.alloc(0)
    let ready = false
    let ended = false
    let listener = () => {}
    s.on("error", reject)
    s.on("close", () => { ended = true; if (!ready) reject(new Error(`closed before the reply (${buf.toString("hex")})`)) })
    s.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      if (!ready && buf.length >= 12) {
        if (buf[0] !== 5 || buf[1] !== 0 || buf[3] !== 0 || buf[2 + 3] !== 1) return reject(new Error(`bad reply ${buf.subarray(0, 12).toString("hex")}`))
        ready = true
        buf = buf.subarray(12)
        resolve({ s, data: () => buf, onData: (f) => { listener = f }, ended: () => ended })
      }
      if (ready) listener()
    })
    s.write(socks5Connect("127.0.0.1", dstPort))
  })

const reloads = (p: Running) => p.lines.filter((l) => l.includes('"policy reloaded"')).length

describe("the real binary under load", () => {
  it("1,000 concurrent connections relayed byte-exact; a SIGHUP and a file edit mid-transfer drop none", async () => {
    const N = 1000
    const SIZE = 64 * 1024
    const file = join(dir, "load.rules")
    writeFileSync(file, rules("20s", 9))
    const p = await start(file)
    try {
      const payloads = Array.from({ length: N }, () => randomBytes(SIZE))
      const conns = await Promise.all(payloads.map(() => open(p.port, echoPort)))
      expect(conns.length).toBe(N)
      for (const [i, c] of conns.entries()) c.s.write(payloads[i]!.subarray(0, SIZE / 2))
      // Every connection is open and half-way through; reload twice.
      p.child.kill("SIGHUP")
      expect(await waitFor(() => reloads(p) >= 1, 15_000)).toBe(true)
      writeFileSync(file, rules("20s", 19))
      expect(await waitFor(() => reloads(p) >= 2, 15_000)).toBe(true)
      // The edited policy is live for new connections (port 19 now blocked: REP 02), the old decisions stand.
      const blocked = connect(p.port, "127.0.0.1")
      const rep = await new Promise<Buffer>((r) => { let b = Buffer.alloc(0); blocked.on("data", (d: Buffer) => { b = Buffer.concat([b, d]); if (b.length >= 4) r(b) }); blocked.on("error", () => r(b)); blocked.write(socks5Connect("127.0.0.1", 19)) })
      blocked.destroy()
      expect(rep[3]).toBe(2)
      const done = conns.map((c, i) => new Promise<boolean>((resolve) => {
        const check = () => { if (c.data().length >= SIZE) { c.s.destroy(); resolve(c.data().equals(payloads[i]!)) } }
        c.onData(check)
        c.s.on("close", () => resolve(c.data().equals(payloads[i]!)))
        c.s.write(payloads[i]!.subarray(SIZE / 2))
        check()
      }))
      const timeout = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 90_000))
      const results = await Promise.race([Promise.all(done), timeout])
      expect(results).not.toBe("timeout")
      expect((results as Array<boolean>).filter((ok) => !ok).length).toBe(0)
      // proxyd's view: N ok close lines to the echo origin, 64 KiB each way.
      expect(await waitFor(() => p.closes().filter((c) => c["dst"] === `127.0.0.1:${echoPort}`).length >= N, 20_000)).toBe(true)
      const closes = p.closes().filter((c) => c["dst"] === `127.0.0.1:${echoPort}`)
      expect(closes.length).toBe(N)
      expect(closes.filter((c) => c["outcome"] !== "ok" || c["bytes_up"] !== SIZE || c["bytes_down"] !== SIZE)).toEqual([])
      expect(p.lines.filter((l) => l.includes("reload failed"))).toEqual([])
    } finally {
      expect(await stop(p)).toBe(0)
    }
  }, 180_000)

  it("SIGTERM during a transfer: no new connections, the transfer finishes byte-exact within the drain deadline, exit 0", async () => {
    const SIZE = 8 * 1024 * 1024
    const CHUNK = 64 * 1024
    const body = randomBytes(SIZE)
    const slow = createServer((s) => {
      s.on("error", () => {})
      let off = 0
      const t = setInterval(() => {
        if (off >= SIZE) { clearInterval(t); s.end(); return }
        s.write(body.subarray(off, off + CHUNK))
        off += CHUNK
      }, 20) // 128 chunks × 20 ms ≈ 2.6 s
      s.on("close", () => clearInterval(t))
    })
    await new Promise<void>((r) => slow.listen(0, "127.0.0.1", r))
    const slowPort = (slow.address() as AddressInfo).port
    const file = join(dir, "drain.rules")
    writeFileSync(file, rules("10s", 9))
    const p = await start(file)
    try {
      const c = await open(p.port, slowPort)
      const got = new Promise<void>((r) => { c.onData(() => { if (c.data().length >= SIZE) r() }); c.s.on("close", () => r()) })
      expect(await waitFor(() => c.data().length >= 512 * 1024, 10_000)).toBe(true)
      const t0 = Date.now()
      p.child.kill("SIGTERM")
      expect(await waitFor(() => p.lines.some((l) => l.includes('"shutting down"')), 5_000)).toBe(true)
      expect(c.data().length).toBeLessThan(SIZE) // still mid-transfer when the signal landed
      // Listeners are closed: a new client is refused.
      const refused = await new Promise<string>((r) => { const s = connect(p.port, "127.0.0.1"); s.on("connect", () => { s.destroy(); r("connected") }); s.on("error", (e: NodeJS.ErrnoException) => r(e.code ?? "error")) })
      expect(refused).toBe("ECONNREFUSED")
      await Promise.race([got, new Promise((r) => setTimeout(r, 15_000))])
      expect(createHash("sha256").update(c.data()).digest("hex")).toBe(createHash("sha256").update(body).digest("hex"))
      const code = await Promise.race([p.exited, new Promise<"late">((r) => setTimeout(() => r("late"), 15_000))])
      expect(code).toBe(0)
      expect(Date.now() - t0).toBeLessThan(10_000 + 2_000)
      const shutting = JSON.parse(p.lines.find((l) => l.includes('"shutting down"'))!) as Record<string, unknown>
      expect(shutting).toMatchObject({ open_connections: 1, drain_ms: 10_000 })
      expect(p.closes().find((l) => l["dst"] === `127.0.0.1:${slowPort}`)).toMatchObject({ outcome: "ok", bytes_down: SIZE })
      c.s.destroy()
    } finally {
      await stop(p)
      await new Promise<void>((r) => slow.close(() => r()))
    }
  }, 60_000)

  it("SIGTERM with a connection that outlasts drain-timeout: closed at the deadline (outcome shutdown), exit 0", async () => {
    const file = join(dir, "deadline.rules")
    writeFileSync(file, rules("1s", 9))
    const p = await start(file)
    try {
      const c = await open(p.port, echoPort)
      const t0 = Date.now()
      p.child.kill("SIGTERM")
      const code = await Promise.race([p.exited, new Promise<"late">((r) => setTimeout(() => r("late"), 10_000))])
      expect(code).toBe(0)
      const took = Date.now() - t0
      expect(took).toBeGreaterThanOrEqual(900)
      expect(took).toBeLessThan(5_000)
      expect(await waitFor(() => c.ended(), 2_000)).toBe(true)
      expect(p.closes().find((l) => l["dst"] === `127.0.0.1:${echoPort}`)).toMatchObject({ outcome: "shutdown" })
    } finally {
      await stop(p)
    }
  }, 30_000)
})

describe("signals as soon as `listening` is logged", () => {
  it("SIGHUP then SIGTERM right after the listening line: reloads, then exits 0 (no default signal action)", async () => {
    const file = join(dir, "early.rules")
    writeFileSync(file, rules("1s", 9))
    for (let i = 0; i < 3; i++) {
      const p = await start(file)
      p.child.kill("SIGHUP")
      expect(await waitFor(() => reloads(p) >= 1, 10_000)).toBe(true)
      p.child.kill("SIGTERM")
      const code = await Promise.race([p.exited, new Promise<"late">((r) => setTimeout(() => r("late"), 10_000))])
      expect(code).toBe(0)
      const q = await start(file)
      q.child.kill("SIGTERM")
      expect(await Promise.race([q.exited, new Promise<"late">((r) => setTimeout(() => r("late"), 10_000))])).toBe(0)
    }
  }, 90_000)
})

describe("a second signal", () => {
  it("SIGTERM, then SIGTERM again while a connection drains: exits at once with 143", async () => {
    const file = join(dir, "second.rules")
    writeFileSync(file, rules("30s", 9))
    const p = await start(file)
    const c = await open(p.port, echoPort)
    p.child.kill("SIGTERM")
    expect(await waitFor(() => p.lines.some((l) => l.includes('"shutting down"')), 5_000)).toBe(true)
    const t0 = Date.now()
    p.child.kill("SIGTERM")
    const code = await Promise.race([p.exited, new Promise<"late">((r) => setTimeout(() => r("late"), 10_000))])
    expect(code).toBe(143)
    expect(Date.now() - t0).toBeLessThan(2_000)
    c.s.destroy()
  }, 30_000)
})
