/**
 * End-to-end: `proxyd --rules FILE` serving real clients (curl) on loopback,
 * the shipped default policy refusing local destinations, and a graceful
 * SIGTERM. The proxyd process is the real binary, stopped by its PID.
 */
import { execFileSync, spawn } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { closedPort, curl, httpOrigin, needCurl, type Origin, waitPort } from "@proxyd/testkit"
import { BIN, ROOT } from "./proxyd.ts"
import { start } from "./spawn.ts"

let origin: Origin
let originPort = 0
beforeAll(async () => {
  origin = await httpOrigin((method, url) => `hello ${method} ${url}`)
  originPort = origin.port
})
afterAll(() => origin.close())

describe("proxyd --rules serves real clients", () => {
  it("local-dev.rules: curl through one mixed port with socks5h, socks5, socks4, socks4a, http forwarding and CONNECT", async (ctx) => {
    needCurl(ctx)
    const p = await start("rulesets/local-dev.rules")
    try {
      const url = `http://localhost:${originPort}/x`
      const modes = [["--socks5-hostname"], ["--socks5"], ["--socks4"], ["--socks4a"], ["-x", "http://"], ["-p", "-x", "http://"]] as const
      for (const mode of modes) {
        const flag = mode.slice(0, -1)
        const proxy = `${mode.at(-1) === "http://" ? "http://" : ""}127.0.0.1:${p.port}`
        const args = mode.at(-1) === "http://" ? [...flag, proxy, url] : [mode[0], proxy, url]
        expect(await curl(args), args.join(" ")).toMatchObject({ code: 0, stdout: "hello GET /x" })
      }
      // One JSON close line per connection, with the deciding rule.
      await new Promise((r) => setTimeout(r, 200))
      const closes = p.lines.filter((l) => l.includes('"connection"')).map((l) => JSON.parse(l))
      expect(closes.length).toBeGreaterThanOrEqual(modes.length)
      expect(JSON.stringify(closes)).toContain("this-machine")
    } finally {
      p.child.kill("SIGTERM")
      expect(await p.exited).toBe(0)
    }
  })

  it("default.rules: refuses loopback by address, by IPv4-mapped IPv6 and by a name resolving to it; the origin never sees a connection", async (ctx) => {
    needCurl(ctx)
    const p = await start("rulesets/default.rules")
    try {
      const before = origin.seen.length
      const socks = `127.0.0.1:${p.port}`
      const r1 = await curl(["--socks5", socks, `http://127.0.0.1:${originPort}/`])
      const r2 = await curl(["--socks5-hostname", socks, `http://localhost:${originPort}/`])
      const r3 = await curl(["--socks5-hostname", socks, `http://[::ffff:127.0.0.1]:${originPort}/`])
      const r4 = await curl(["-x", `http://${socks}`, "-w", "%{http_code}", "-o", "/dev/null", `http://127.0.0.1:${originPort}/`])
      const r5 = await curl(["-x", `http://${socks}`, "-w", "%{http_code}", "-o", "/dev/null", `http://169.254.169.254/latest/meta-data/`])
      for (const r of [r1, r2, r3]) expect(r.code).not.toBe(0)
      expect(r4.stdout).toBe("403")
      expect(r5.stdout).toBe("403")
      expect(origin.seen.length).toBe(before)
    } finally {
      p.child.kill("SIGTERM")
      expect(await p.exited).toBe(0)
    }
  })

  it("via: routes through a real upstream (microsocks) named in the rules file", async (ctx) => {
    needCurl(ctx)
    let hasMicrosocks = true
    try { execFileSync("sh", ["-c", "command -v microsocks"], { stdio: "ignore" }) } catch { hasMicrosocks = false }
    if (!hasMicrosocks) {
      if (process.env["CI"] === "true") throw new Error("microsocks is not installed: .ci/run must install it")
      ctx.skip("microsocks is not installed")
    }
    const upPort = await closedPort()
    const micro = spawn("microsocks", ["-i", "127.0.0.1", "-p", String(upPort)], { stdio: "ignore" })
    await waitPort(upPort, micro)
    const dir = mkdtempSync(join(tmpdir(), "proxyd-via-"))
    const file = join(dir, "via.rules")
    writeFileSync(file, [
      "listen mixed 127.0.0.1:0",
      `upstream up = socks5://127.0.0.1:${upPort}`,
      "policy main {",
      `  rule to-origin when dst.port == ${originPort} -> via up`,
      "  default block",
      "}",
      `test "origin via up" { connect localhost:${originPort} } expect via up by to-origin`,
      "",
    ].join("\n"))
    const p = await start(file)
    try {
      const before = origin.seen.length
      expect(await curl(["--socks5-hostname", `127.0.0.1:${p.port}`, `http://localhost:${originPort}/via`])).toMatchObject({ code: 0, stdout: "hello GET /via" })
      expect(origin.seen.length).toBe(before + 1)
      await new Promise((r) => setTimeout(r, 200))
      const close = p.lines.filter((l) => l.includes('"connection"')).map((l) => JSON.parse(l)).at(-1)
      expect(JSON.stringify(close)).toContain("to-origin")
      expect(close.action ?? close.annotations?.action).toBe("via")
    } finally {
      p.child.kill("SIGTERM")
      micro.kill("SIGTERM")
      expect(await p.exited).toBe(0)
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it("a rules file that does not check refuses to start with the check diagnostics (exit 1)", async () => {
    const dir = mkdtempSync(join(tmpdir(), "proxyd-serve-"))
    const file = join(dir, "bad.rules")
    writeFileSync(file, "listen socks5 127.0.0.1:0\npolicy p {\n  rule r when dst.port == 99999 -> allow\n  default allow\n}\n")
    const child = spawn(process.execPath, [BIN, "--rules", file], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] })
    let err = ""
    child.stderr.on("data", (c: Buffer) => { err += c.toString() })
    child.stdout.on("data", (c: Buffer) => { err += c.toString() })
    const code = await new Promise<number | null>((r) => child.once("exit", r))
    rmSync(dir, { recursive: true, force: true })
    expect(code).toBe(1)
    expect(err).toContain(`${file}:3:`)
    expect(err).toMatch(/error\[T\d+\]/)
  })
})
