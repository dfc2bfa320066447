/**
 * `workers N` through the real binary: several worker threads serve one port, with limits,
 * reloads and drain that hold for the whole process.
 *
 * Details: each proxyd is started with `options { workers 2 }` on `--listen
 * mixed://127.0.0.1:0` and stopped by its PID (SIGTERM, must exit 0). Which worker serves a
 * connection is the kernel's choice (SO_REUSEPORT hashes the 4-tuple), so the tests make
 * enough connections that both workers must have served some (each log line names its worker):
 * the chance that 20 connections all land on one of two workers is 2 * 2^-20.
 */
import { randomBytes, scryptSync } from "node:crypto"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:http"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { curl } from "@proxyd/testkit"
import { proxyd } from "./proxyd.ts"
import { needTool, type Running, start, stop, waitFor } from "./spawn.ts"

let dir = ""
let origin: Server
let originPort = 0
let echo: net.Server
let echoPort = 0
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "proxyd-workers-"))
  origin = createServer((req, res) => res.end(`hello ${req.url}`))
  await new Promise<void>((r) => origin.listen(0, "127.0.0.1", r))
  originPort = (origin.address() as net.AddressInfo).port
  echo = net.createServer((s) => s.pipe(s))
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r))
  echoPort = (echo.address() as net.AddressInfo).port
})
afterAll(async () => {
  await new Promise<void>((r) => origin.close(() => r()))
  await new Promise<void>((r) => echo.close(() => r()))
  rmSync(dir, { recursive: true, force: true })
})

const rulesFile = (name: string, options: string, policy = "default allow"): string => {
  const path = join(dir, `${name}.rules`)
  writeFileSync(path, `options {\n  workers 2\n${options}\n}\nlisten mixed 127.0.0.1:0\npolicy default {\n  ${policy}\n}\n`)
  return path
}

const startWorkers = (file: string): Promise<Running> => start(file, { ready: "workers started" })

/** The `worker` field of the close lines so far, counted. */
const byWorker = (p: Running, pred: (c: Record<string, unknown>) => boolean = () => true): Map<unknown, number> => {
  const m = new Map<unknown, number>()
  for (const c of p.closes()) if (pred(c)) m.set(c["worker"], (m.get(c["worker"]) ?? 0) + 1)
  return m
}

interface Client {
  readonly socket: net.Socket
  readonly received: () => Buffer
  readonly closed: () => boolean
}

/** A raw SOCKS5 client: greeting, then (when `connect`) CONNECT to the echo server. */
const socks5 = (port: number): Client => {
  const socket = net.connect(port, "127.0.0.1")
  let data = Buffer.alloc(0)
  let closed = false
  socket.on("data", (d: Buffer) => { data = Buffer.concat([data, d]) })
  socket.on("close", () => { closed = true })
  socket.on("error", () => {})
  socket.write(Buffer.from([5, 1, 0]))
  return { socket, received: () => data, closed: () => closed }
}

/** A SOCKS5 connection relayed to the echo server (greeting, CONNECT, one echoed line). */
const relayed = async (port: number): Promise<Client> => {
  const c = socks5(port)
  expect(await waitFor(() => c.received().length >= 2 || c.closed())).toBe(true)
  expect([...c.received().subarray(0, 2)]).toEqual([5, 0])
  c.socket.write(Buffer.from([5, 1, 0, 1, 127, 0, 0, 1, echoPort >> 8, echoPort & 0xff]))
  expect(await waitFor(() => c.received().length >= 12 || c.closed())).toBe(true)
  expect(c.received()[1]).toBe(0)
  c.socket.write("ping\n")
  expect(await waitFor(() => c.received().subarray(12).toString() === "ping\n")).toBe(true)
  return c
}

/** A connection the limits must refuse: closed without the method reply `05 00`. */
const refused = async (port: number): Promise<void> => {
  const c = socks5(port)
  expect(await waitFor(() => c.closed(), 5_000)).toBe(true)
  expect(c.received().subarray(0, 2).equals(Buffer.from([5, 0]))).toBe(false)
}

describe("workers 2 (real binary)", () => {
  it("both workers serve one port: curl through SOCKS5 and HTTP, every request answered", async (ctx) => {
    needTool(ctx, "curl")
    const p = await startWorkers(rulesFile("spread", ""))
    try {
      const listening = () => p.lines.filter((l) => l.includes('"msg":"listening"')).map((l) => JSON.parse(l) as Record<string, unknown>)
      // Workers' lines reach stderr through their own stdio channel, maybe after the supervisor's.
      expect(await waitFor(() => listening().length === 2)).toBe(true)
      // Each worker bound the same port (the second one the port the first got for port 0).
      expect(listening().map((l) => [l["worker"], l["port"]]).sort()).toEqual([[1, p.port], [2, p.port]])
      for (let i = 0; i < 20; i++) {
        const args = i % 2 === 0 ? ["--socks5-hostname", `127.0.0.1:${p.port}`] : ["--proxy", `http://127.0.0.1:${p.port}`]
        expect(await curl([...args, `http://127.0.0.1:${originPort}/r${i}`])).toMatchObject({ code: 0, stdout: `hello /r${i}` })
      }
      expect(await waitFor(() => p.closes().length >= 20)).toBe(true)
      const served = byWorker(p, (c) => c["outcome"] === "ok")
      expect([...served.keys()].sort()).toEqual([1, 2])
      expect([...served.values()].reduce((a, b) => a + b, 0)).toBe(20)
      // Session ids stay unique across workers.
      const ids = p.closes().map((c) => c["id"])
      expect(new Set(ids).size).toBe(ids.length)
    } finally {
      expect(await stop(p)).toBe(0)
    }
  }, 90_000)

  it("max-connections-per-ip holds for the whole process, and a file change moves it in every worker", async () => {
    const file = rulesFile("limits", "  max-connections-per-ip 2")
    const p = await startWorkers(file)
    const held: Array<Client> = []
    try {
      held.push(await relayed(p.port), await relayed(p.port))
      // Twenty more attempts reach both workers, and every one is over the shared limit.
      for (let i = 0; i < 20; i++) await refused(p.port)
      expect(await waitFor(() => byWorker(p, (c) => c["outcome"] === "rejected").size === 2)).toBe(true)
      for (const c of p.closes().filter((c) => c["outcome"] === "rejected")) expect(c["error"]).toBe("connection limit reached")

      // The watcher (the supervisor's) reloads every worker: 3 per IP now.
      rulesFile("limits", "  max-connections-per-ip 3")
      expect(await waitFor(() => p.lines.some((l) => l.includes('"policy reloaded in every worker"')), 10_000)).toBe(true)
      expect(p.lines.filter((l) => l.includes('"msg":"policy reloaded"')).map((l) => (JSON.parse(l) as Record<string, unknown>)["worker"]).sort()).toEqual([1, 2])
      held.push(await relayed(p.port))
      for (let i = 0; i < 10; i++) await refused(p.port)

      // Leaving frees the count everywhere.
      held.shift()!.socket.end()
      expect(await waitFor(() => byWorker(p, (c) => c["outcome"] === "ok").size > 0)).toBe(true)
      held.push(await relayed(p.port))
    } finally {
      for (const c of held) c.socket.destroy()
      expect(await stop(p)).toBe(0)
    }
  }, 90_000)

  it("max-connections counts every worker's connections", async () => {
    const p = await startWorkers(rulesFile("total", "  max-connections 3"))
    const held: Array<Client> = []
    try {
      for (let i = 0; i < 3; i++) held.push(await relayed(p.port))
      for (let i = 0; i < 20; i++) await refused(p.port)
      expect(await waitFor(() => byWorker(p, (c) => c["outcome"] === "rejected").size === 2)).toBe(true)
    } finally {
      for (const c of held) c.socket.destroy()
      expect(await stop(p)).toBe(0)
    }
  }, 90_000)

  it("SIGHUP reloads every worker; a broken file is refused once and every worker keeps the old policy", async (ctx) => {
    needTool(ctx, "curl")
    const file = rulesFile("hup", "")
    const p = await startWorkers(file)
    try {
      p.child.kill("SIGHUP")
      expect(await waitFor(() => p.lines.some((l) => l.includes('"policy reloaded in every worker"') && l.includes('"version":2')), 10_000)).toBe(true)
      writeFileSync(file, "options { workers 2 }\nlisten mixed 127.0.0.1:0\npolicy default {\n  default alow\n}\n")
      expect(await waitFor(() => p.lines.some((l) => l.includes("reload failed")), 10_000)).toBe(true)
      // Worker 1 refused the file; nobody else was asked.
      const failed = p.lines.filter((l) => l.includes("reload failed")).map((l) => (JSON.parse(l) as Record<string, unknown>)["worker"])
      expect(failed).toEqual([1])
      for (let i = 0; i < 20; i++) {
        expect(await curl(["--socks5-hostname", `127.0.0.1:${p.port}`, `http://127.0.0.1:${originPort}/k${i}`])).toMatchObject({ code: 0, stdout: `hello /k${i}` })
      }
      expect(await waitFor(() => byWorker(p, (c) => c["outcome"] === "ok").size === 2)).toBe(true)
      // A new worker count is accepted (the rest of the file applies) and takes effect at the next start.
      writeFileSync(file, "options { workers 3 }\nlisten mixed 127.0.0.1:0\npolicy default {\n  default allow\n}\n")
      expect(await waitFor(() => p.lines.filter((l) => l.includes("option `workers` changed")).length === 2, 10_000)).toBe(true)
      expect(p.lines.find((l) => l.includes("option `workers` changed"))).toMatch(/"running":2,"in_file":3/)
    } finally {
      expect(await stop(p)).toBe(0)
    }
  }, 90_000)

  it("SIGTERM drains: relayed connections of both workers keep working until they end, then exit 0", async () => {
    const p = await startWorkers(rulesFile("drain", "  drain-timeout 20s"))
    const held: Array<Client> = []
    for (let i = 0; i < 8; i++) held.push(await relayed(p.port))
    p.child.kill("SIGTERM")
    expect(await waitFor(() => p.lines.filter((l) => l.includes('"shutting down"')).length === 2)).toBe(true)
    // New connections are no longer accepted; open ones still relay.
    const late = socks5(p.port)
    expect(await waitFor(() => late.closed(), 5_000)).toBe(true)
    for (const c of held) {
      const before = c.received().length
      c.socket.write("still\n")
      expect(await waitFor(() => c.received().subarray(before).toString() === "still\n")).toBe(true)
    }
    expect(p.child.exitCode).toBe(null)
    for (const c of held) c.socket.end()
    const code = await Promise.race([p.exited, new Promise<string>((r) => setTimeout(() => r("timeout"), 15_000))])
    expect(code).toBe(0)
    expect(p.lines.filter((l) => l.includes('"msg":"stopped"')).length).toBe(2)
  }, 90_000)

  it("the admin API (worker 1's) answers for every worker: sessions, kill, rule hits, metrics, reload, readyz", async (ctx) => {
    needTool(ctx, "curl")
    const file = join(dir, "admin.rules")
    writeFileSync(file, "options { workers 2 }\nlisten mixed 127.0.0.1:0\nadmin { listen 127.0.0.1:0 }\npolicy default {\n  default allow\n}\n")
    const p = await startWorkers(file)
    const held: Array<Client> = []
    try {
      expect(await waitFor(() => p.lines.some((l) => l.includes('"admin API listening"')))).toBe(true)
      const adminLines = p.lines.filter((l) => l.includes('"admin API listening"'))
      expect(adminLines).toHaveLength(1)
      expect(adminLines[0]).toContain('"worker":1')
      const admin = `http://127.0.0.1:${Number(/"port":(\d+)/.exec(adminLines[0]!)?.[1])}`
      const api = async (path: string, method = "GET") => {
        const r = await fetch(`${admin}${path}`, { method })
        return { status: r.status, text: await r.text() }
      }
      for (let i = 0; i < 20; i++) {
        expect(await curl(["--socks5-hostname", `127.0.0.1:${p.port}`, `http://127.0.0.1:${originPort}/m${i}`])).toMatchObject({ code: 0 })
      }
      expect(await waitFor(() => p.closes().length >= 20)).toBe(true)
      // 12 held connections: all of them on one worker has a chance of 2 * 2^-12.
      for (let i = 0; i < 12; i++) held.push(await relayed(p.port))
      const sessions = JSON.parse((await api("/api/sessions")).text) as { sessions: Array<{ id: string }> }
      expect(sessions.sessions).toHaveLength(12)

      const metric = (text: string, name: string): number => text.split("\n")
        .filter((l) => l.startsWith(name) && !l.startsWith("#"))
        .reduce((n, l) => n + Number(l.slice(l.lastIndexOf(" ") + 1)), 0)
      const m1 = await api("/metrics")
      expect(m1.status).toBe(200)
      expect(metric(m1.text, 'proxyd_connections_closed_total{listener="mixed",protocol="socks5",action="allow",outcome="ok"}')).toBe(20)
      expect(metric(m1.text, "proxyd_connections_active{")).toBe(12)
      expect(metric(m1.text, "proxyd_policy_version ")).toBe(1)
      expect(metric(m1.text, "proxyd_rule_hits_total{")).toBe(32)

      const policy = JSON.parse((await api("/api/policy")).text) as { policies: Array<{ rules: Array<{ hits: number }> }> }
      expect(policy.policies[0]!.rules.reduce((n, r) => n + r.hits, 0)).toBe(32)

      // Every session can be closed through the API, whichever worker holds it.
      for (const s of sessions.sessions) expect((await api(`/api/sessions/${s.id}`, "DELETE")).status).toBe(204)
      expect(await waitFor(() => held.every((c) => c.closed()))).toBe(true)
      expect((await api(`/api/sessions/${sessions.sessions[0]!.id}`, "DELETE")).status).toBe(404)
      expect(await waitFor(() => p.closes().filter((c) => c["outcome"] === "killed").length === 12)).toBe(true)
      expect(byWorker(p, (c) => c["outcome"] === "killed").size).toBe(2)

      const reload = await api("/api/reload", "POST")
      expect(reload).toEqual({ status: 200, text: expect.stringContaining('"version": 2') as unknown as string })
      expect(await waitFor(() => p.lines.filter((l) => l.includes('"msg":"policy reloaded"')).length === 2)).toBe(true)
      expect(metric((await api("/metrics")).text, "proxyd_policy_version ")).toBe(2)
      const ready = await api("/readyz")
      expect(ready.status).toBe(200)
      expect(JSON.parse(ready.text)).toMatchObject({ ready: true, workers: { ready: 2, workers: 2 } })
    } finally {
      for (const c of held) c.socket.destroy()
      expect(await stop(p)).toBe(0)
    }
  }, 90_000)

  it("brute-force counters and bans are one store: 10 failures spread over both workers ban the source in both", async (ctx) => {
    needTool(ctx, "curl")
    const salt = randomBytes(16)
    const ab64 = (b: Buffer) => b.toString("base64").replace(/=+$/, "").replace(/\+/g, ".")
    const hash = `$scrypt$ln=4,r=8,p=1$${ab64(salt)}$${ab64(scryptSync("right", salt, 32, { N: 1 << 4, r: 8, p: 1 }))}`
    const file = join(dir, "guard.rules")
    writeFileSync(file, [
      "options { workers 2 }",
      `auth users = static {\n  alice "${hash}"\n}`,
      "auth-guard delay 10ms max-delay 50ms ban-after 10 ban 10m",
      "admin listen 127.0.0.1:0",
      "listen mixed 127.0.0.1:0 auth users",
      "policy p {",
      "  default allow",
      "}",
      "",
    ].join("\n"))
    const p = await startWorkers(file)
    const socks = (cred: string) => curl(["--socks5-hostname", `127.0.0.1:${p.port}`, "--proxy-user", cred, `http://127.0.0.1:${originPort}/g`])
    try {
      expect((await socks("alice:right")).stdout).toBe("hello /g")
      for (let i = 0; i < 10; i++) expect((await socks(`alice:wrong${i}`)).code).not.toBe(0)
      // Counted per worker, ten failures spread over two would ban nobody (all ten on one: 2^-9).
      for (let i = 0; i < 6; i++) expect((await socks("alice:right")).code).not.toBe(0)
      expect(await waitFor(() => p.lines.filter((l) => l.includes('"msg":"auth failure"')).length === 16)).toBe(true)
      const failures = p.lines.filter((l) => l.includes('"msg":"auth failure"')).map((l) => (JSON.parse(l) as Record<string, unknown>)["worker"])
      expect(new Set(failures)).toEqual(new Set([1, 2]))
      expect(p.lines.filter((l) => l.includes('"msg":"auth ban"'))).toHaveLength(1)
      expect(await waitFor(() => p.lines.some((l) => l.includes('"admin API listening"')))).toBe(true)
      const admin = Number(/"port":(\d+)/.exec(p.lines.find((l) => l.includes('"admin API listening"'))!)?.[1])
      const scraped = (await fetch(`http://127.0.0.1:${admin}/metrics`).then((r) => r.text())).split("\n")
      expect(scraped.filter((l) => l.startsWith("proxyd_bans_total"))).toEqual(['proxyd_bans_total{scope="ip"} 1'])
      expect(scraped.filter((l) => l.startsWith("proxyd_auth_guard_total")).sort()).toEqual([
        'proxyd_auth_guard_total{auth="users",outcome="banned"} 6',
        'proxyd_auth_guard_total{auth="users",outcome="failure"} 10',
        'proxyd_auth_guard_total{auth="users",outcome="success"} 1',
      ])
    } finally {
      expect(await stop(p)).toBe(0)
    }
  }, 90_000)

  it("SIGTERM while worker 2 is still starting: the start completes, then every worker drains, exit 0", async () => {
    // Resolves at worker 1's `listening` line, before the supervisor has started worker 2.
    const p = await start(rulesFile("early", ""))
    p.child.kill("SIGTERM")
    const code = await Promise.race([p.exited, new Promise<string>((r) => setTimeout(() => r("timeout"), 20_000))])
    expect(code).toBe(0)
    expect(p.lines.some((l) => l.includes('"workers started"'))).toBe(true)
    expect(p.lines.filter((l) => l.includes('"msg":"stopped"')).length).toBe(2)
    expect(p.lines.join("\n")).not.toContain("not started")
  }, 60_000)

  it("refuses to start when a worker cannot bind (port in use): exit 1, the reason named", async () => {
    const blocker = net.createServer()
    await new Promise<void>((r) => blocker.listen(0, "127.0.0.1", r))
    const port = (blocker.address() as net.AddressInfo).port
    try {
      const r = proxyd(["--rules", rulesFile("busy", ""), "--listen", `socks5://127.0.0.1:${port}`])
      expect(r.code).toBe(1)
      expect(r.err).toMatch(/EADDRINUSE/)
      expect(r.err).toContain("proxyd: not started")
      expect(r.err + r.out).not.toContain("workers started")
    } finally {
      await new Promise<void>((res) => blocker.close(() => res()))
    }
  }, 60_000)
})
