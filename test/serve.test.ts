/**
 * End-to-end: `proxyd --rules FILE` serving real clients (curl) on loopback,
 * the shipped default policy refusing local destinations, and a graceful
 * SIGTERM. The proxyd process is the real binary, stopped by its PID.
 */
import { type ChildProcess, execFile, execFileSync, spawn } from "node:child_process"
import { createServer, type Server } from "node:http"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { BIN, ROOT } from "./proxyd.ts"

const hasCurl = (() => { try { execFileSync("curl", ["--version"], { stdio: "ignore" }); return true } catch { return false } })()
/** curl is a required tool: under CI=true its absence fails the test; elsewhere the test is skipped with a message. */
const needCurl = (ctx: { skip: (note?: string) => void }) => {
  if (hasCurl) return
  if (process.env["CI"] === "true") throw new Error("curl is not installed: .ci/run must install it")
  ctx.skip("curl is not installed")
}

const curl = (args: ReadonlyArray<string>): Promise<{ code: number; out: string }> => new Promise((resolve) => {
  const env = { ...process.env }
  for (const k of ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"]) delete env[k]
  execFile("curl", ["-sS", "--max-time", "10", ...args], { env, encoding: "utf8" }, (err, stdout) => {
    resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : 1, out: stdout })
  })
})

interface Running { readonly child: ChildProcess; readonly port: number; readonly lines: string[]; readonly exited: Promise<number | null> }

/** Starts the binary on a free port (`--listen 127.0.0.1:0`) and waits for its `listening` log line. */
const start = (rules: string): Promise<Running> => new Promise((resolve, reject) => {
  const child = spawn(process.execPath, [BIN, "--rules", rules, "--listen", "mixed://127.0.0.1:0", "--log-format", "json"], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] })
  const lines: string[] = []
  const exited = new Promise<number | null>((res) => child.once("exit", (code) => res(code)))
  let buf = ""
  const timer = setTimeout(() => reject(new Error(`proxyd did not start: ${lines.join("\n")}`)), 20_000)
  const onData = (chunk: Buffer) => {
    buf += chunk.toString("utf8")
    let nl: number
    while ((nl = buf.indexOf("\n")) !== -1) {
      const line = buf.slice(0, nl)
      buf = buf.slice(nl + 1)
      lines.push(line)
      if (line.includes('"listening"')) {
        const port = JSON.parse(line).port ?? JSON.parse(line).annotations?.port
        clearTimeout(timer)
        resolve({ child, port: Number(port), lines, exited })
      }
    }
  }
  child.stdout.on("data", onData)
  child.stderr.on("data", onData)
  child.once("exit", (code) => { clearTimeout(timer); reject(new Error(`proxyd exited ${code}: ${lines.join("\n")}`)) })
})

let origin: Server
let originPort = 0
let originHits = 0
beforeAll(async () => {
  origin = createServer((req, res) => { originHits++; res.end(`hello ${req.method} ${req.url}`) })
  await new Promise<void>((r) => origin.listen(0, "127.0.0.1", r))
  originPort = (origin.address() as AddressInfo).port
})
afterAll(() => new Promise<void>((r) => origin.close(() => r())))

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
        expect(await curl(args), args.join(" ")).toEqual({ code: 0, out: "hello GET /x" })
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
      const before = originHits
      const socks = `127.0.0.1:${p.port}`
      const r1 = await curl(["--socks5", socks, `http://127.0.0.1:${originPort}/`])
      const r2 = await curl(["--socks5-hostname", socks, `http://localhost:${originPort}/`])
      const r3 = await curl(["--socks5-hostname", socks, `http://[::ffff:127.0.0.1]:${originPort}/`])
      const r4 = await curl(["-x", `http://${socks}`, "-w", "%{http_code}", "-o", "/dev/null", `http://127.0.0.1:${originPort}/`])
      const r5 = await curl(["-x", `http://${socks}`, "-w", "%{http_code}", "-o", "/dev/null", `http://169.254.169.254/latest/meta-data/`])
      for (const r of [r1, r2, r3]) expect(r.code).not.toBe(0)
      expect(r4.out).toBe("403")
      expect(r5.out).toBe("403")
      expect(originHits).toBe(before)
    } finally {
      p.child.kill("SIGTERM")
      expect(await p.exited).toBe(0)
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
