/**
 * The shipped default policy (`rulesets/default.rules`) through the real
 * binary refuses local destinations before any connection is made.
 *
 * Details: curl asks for 127.0.0.1, ::1, ::ffff:127.0.0.1, a name that
 * resolves to 127.0.0.1, 169.254.169.254 and 10.1.2.3 with SOCKS5 (address
 * and hostname forms), HTTP forwarding and HTTP CONNECT. For the loopback
 * ones, local origins (IPv4 and IPv6) count every TCP connection they accept:
 * none may arrive. Traffic must never leave for 10/8 or 169.254.169.254, so
 * for those the proof is proxyd's close line: `action: "block"` by the named
 * guard and no `dst_connected`. The same requests against
 * `rulesets/local-dev.rules` (loopback allowed) show the harness does see the
 * connection (origin count and `dst_connected`), so the checks can fail.
 * Gotchas: the name resolving to 127.0.0.1 comes from a hosts file: proxyd
 * runs in a private mount namespace (`unshare -m`, needs root) where
 * /etc/hosts maps `rebind-me.test` to 127.0.0.1; without root, a name the
 * machine's /etc/hosts already maps to 127.0.0.1 (not `localhost`) is used.
 */
import { execFileSync } from "node:child_process"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { curl } from "@proxyd/testkit"
import { needTool, type Running, start, stop, waitFor } from "./spawn.ts"

let dir = ""
const origins: Array<{ server: Server; port: number; accepted: number }> = []
let v4 = { port: 0, accepted: 0 }
let v6: { port: number; accepted: number } | undefined

const listen = async (host: string) => {
  const o = { server: createServer((_req, res) => res.end("origin")), port: 0, accepted: 0 }
  o.server.on("connection", () => { o.accepted++ })
  await new Promise<void>((resolve, reject) => { o.server.once("error", reject); o.server.listen(0, host, resolve) })
  o.port = (o.server.address() as AddressInfo).port
  origins.push(o)
  return o
}

/** How proxyd gets a hosts file: a name and the command prefix that makes it resolve to 127.0.0.1. */
let rebind: { name: string; prefix?: ReadonlyArray<string> } | undefined

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "proxyd-refusals-"))
  v4 = await listen("127.0.0.1")
  try { v6 = await listen("::1") } catch { v6 = undefined }
  const hosts = join(dir, "hosts")
  writeFileSync(hosts, "127.0.0.1 localhost rebind-me.test\n::1 localhost\n")
  try {
    execFileSync("unshare", ["-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && grep -q rebind-me.test /etc/hosts', hosts], { stdio: "ignore", timeout: 10_000 })
    rebind = { name: "rebind-me.test", prefix: ["unshare", "-m", "sh", "-c", 'mount --bind "$0" /etc/hosts && exec "$@"', hosts] }
  } catch {
    const line = readFileSync("/etc/hosts", "utf8").split("\n").map((l) => l.replace(/#.*/, "").trim().split(/\s+/))
      .find((f) => f[0] === "127.0.0.1" && f.slice(1).some((n) => n !== "localhost" && !n.endsWith(".localhost")))
    const name = line?.slice(1).find((n) => n !== "localhost" && !n.endsWith(".localhost"))
    rebind = name === undefined ? undefined : { name }
  }
})
afterAll(async () => {
  for (const o of origins) await new Promise<void>((r) => o.server.close(() => r()))
  rmSync(dir, { recursive: true, force: true })
})

type Mode = "socks5" | "socks5h" | "http" | "connect"
const ask = (p: Running, mode: Mode, url: string) => {
  const proxy = `127.0.0.1:${p.port}`
  switch (mode) {
    case "socks5": return curl(["--socks5", proxy, url])
    case "socks5h": return curl(["--socks5-hostname", proxy, url])
    case "http": return curl(["-x", `http://${proxy}`, "-w", "%{http_code}", "-o", "/dev/null", url])
    case "connect": return curl(["-p", "-x", `http://${proxy}`, "-w", "%{http_connect}", "-o", "/dev/null", url])
  }
}

/** The close lines whose destination as asked is `dst` (SOCKS5 and HTTP write IPv4-mapped IPv6 the same way). */
const linesFor = (p: Running, dst: string) => p.closes().filter((c) => c["dst"] === dst)

interface Case { readonly label: string; readonly url: () => string; readonly dst: () => string; readonly modes: ReadonlyArray<Mode>; readonly guard: string; readonly origin?: () => { accepted: number } }
const cases: ReadonlyArray<Case> = [
  { label: "127.0.0.1", url: () => `http://127.0.0.1:${v4.port}/`, dst: () => `127.0.0.1:${v4.port}`, modes: ["socks5", "socks5h", "http", "connect"], guard: "loopback", origin: () => v4 },
  { label: "::ffff:127.0.0.1", url: () => `http://[::ffff:127.0.0.1]:${v4.port}/`, dst: () => `[::ffff:127.0.0.1]:${v4.port}`, modes: ["socks5", "http", "connect"], guard: "loopback", origin: () => v4 },
  { label: "169.254.169.254", url: () => "http://169.254.169.254/latest/meta-data/", dst: () => "169.254.169.254:80", modes: ["socks5", "http", "connect"], guard: "metadata" },
  { label: "10.1.2.3", url: () => "http://10.1.2.3:8080/", dst: () => "10.1.2.3:8080", modes: ["socks5", "http", "connect"], guard: "private" },
]

const expectRefused = async (p: Running, c: Case, mode: Mode, dst: string, guard: string) => {
  const before = linesFor(p, dst).length
  const r = await ask(p, mode, c.url())
  if (mode === "http" || mode === "connect") expect(r.stdout, `${c.label} ${mode}`).toBe("403")
  else expect(r.code, `${c.label} ${mode}`).not.toBe(0)
  expect(await waitFor(() => linesFor(p, dst).length > before), `${c.label} ${mode}: close line`).toBe(true)
  const lines = linesFor(p, dst)
  for (const l of lines) {
    expect(l, `${c.label} ${mode}`).toMatchObject({ action: "block", rule: guard, outcome: "blocked" })
    expect(l["dst_connected"], `${c.label} ${mode}`).toBeUndefined()
    expect(l["bytes_up"] ?? 0).toBe(0)
  }
}

describe("default.rules refuses local destinations before connecting", () => {
  it("127.0.0.1, ::ffff:127.0.0.1, 169.254.169.254 and 10/8 over SOCKS5, HTTP forwarding and CONNECT: blocked by the guard, never connected", async (ctx) => {
    needTool(ctx, "curl")
    const before = v4.accepted
    const p = await start("rulesets/default.rules")
    try {
      for (const c of cases) for (const mode of c.modes) await expectRefused(p, c, mode, c.dst(), c.guard)
      expect(p.closes().length).toBe(cases.reduce((n, c) => n + c.modes.length, 0))
    } finally {
      expect(await stop(p)).toBe(0)
    }
    expect(v4.accepted).toBe(before)
  }, 120_000)

  it("::1 (an IPv6 loopback origin): blocked, the origin never sees a connection", async (ctx) => {
    needTool(ctx, "curl")
    if (v6 === undefined) {
      if (process.env["CI"] === "true") throw new Error("no IPv6 loopback (::1) on this machine")
      return ctx.skip("no IPv6 loopback (::1) on this machine")
    }
    const o = v6
    const c: Case = { label: "::1", url: () => `http://[::1]:${o.port}/`, dst: () => `[::1]:${o.port}`, modes: ["socks5", "http", "connect"], guard: "loopback" }
    const p = await start("rulesets/default.rules")
    try {
      for (const mode of c.modes) await expectRefused(p, c, mode, c.dst(), "loopback")
    } finally {
      expect(await stop(p)).toBe(0)
    }
    expect(o.accepted).toBe(0)
  }, 60_000)

  it("a name that resolves to 127.0.0.1: resolved for the guard, blocked, the origin never sees a connection", async (ctx) => {
    needTool(ctx, "curl")
    if (rebind === undefined) {
      if (process.env["CI"] === "true") throw new Error("no way to make a name resolve to 127.0.0.1 (needs root for unshare -m, or a non-localhost 127.0.0.1 name in /etc/hosts)")
      return ctx.skip("no name resolving to 127.0.0.1")
    }
    const r = rebind
    const dst = `${r.name}:${v4.port}`
    const before = v4.accepted
    const p = await start("rulesets/default.rules", r.prefix === undefined ? {} : { prefix: r.prefix })
    try {
      const c: Case = { label: r.name, url: () => `http://${dst}/`, dst: () => dst, modes: ["socks5h", "http", "connect"], guard: "loopback" }
      for (const mode of c.modes) await expectRefused(p, c, mode, dst, "loopback")
      for (const l of linesFor(p, dst)) expect(l["dst_ip"]).toBe("127.0.0.1")
    } finally {
      expect(await stop(p)).toBe(0)
    }
    expect(v4.accepted).toBe(before)
  }, 60_000)

  it("control: local-dev.rules lets the same loopback requests through, and the harness sees them", async (ctx) => {
    needTool(ctx, "curl")
    const p = await start("rulesets/local-dev.rules", rebind?.prefix === undefined ? {} : { prefix: rebind.prefix })
    try {
      const targets: Array<{ url: string; dst: string; origin: { accepted: number } }> = [
        { url: `http://127.0.0.1:${v4.port}/`, dst: `127.0.0.1:${v4.port}`, origin: v4 },
        { url: `http://[::ffff:127.0.0.1]:${v4.port}/`, dst: `[::ffff:127.0.0.1]:${v4.port}`, origin: v4 },
        ...(rebind === undefined ? [] : [{ url: `http://${rebind.name}:${v4.port}/`, dst: `${rebind.name}:${v4.port}`, origin: v4 }]),
        ...(v6 === undefined ? [] : [{ url: `http://[::1]:${v6.port}/`, dst: `[::1]:${v6.port}`, origin: v6 }]),
      ]
      for (const t of targets) {
        const before = t.origin.accepted
        const r = await ask(p, t.dst.startsWith("127.") || t.dst.startsWith("[") ? "socks5" : "socks5h", t.url)
        expect(r, t.dst).toMatchObject({ code: 0, stdout: "origin" })
        expect(t.origin.accepted).toBe(before + 1)
        expect(await waitFor(() => linesFor(p, t.dst).length >= 1)).toBe(true)
        expect(linesFor(p, t.dst)[0]?.["dst_connected"]).toBeDefined()
        expect(linesFor(p, t.dst)[0]).toMatchObject({ action: "allow", outcome: "ok" })
      }
      // 10/8 and the metadata address stay blocked there too; their lines look the same as under default.rules.
      const m = await ask(p, "http", "http://169.254.169.254/latest/meta-data/")
      expect(m.stdout).toBe("403")
    } finally {
      expect(await stop(p)).toBe(0)
    }
  }, 60_000)
})
