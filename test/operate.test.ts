/**
 * Operating the real binary: credentials with curl (SOCKS5 and HTTP, the
 * file's `auth` kept under `--listen`), reload when an included file or a set
 * file changes, `proxyd run --rules` with `--log-format pretty`, and
 * `--log-level warn` hiding the per-connection lines.
 *
 * Details: every proxyd is stopped by its PID with SIGTERM and must exit 0.
 * Passwords and hashes are generated per run and must never appear in any
 * line proxyd prints.
 */
import { type ChildProcess, spawn } from "node:child_process"
import { randomBytes, scryptSync } from "node:crypto"
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:http"
import { connect, type AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { curl } from "@proxyd/testkit"
import { BIN, proxyd, ROOT } from "./proxyd.ts"
import { cleanEnv, needTool, start, stop, waitFor } from "./spawn.ts"

let dir = ""
let origin: Server
let originPort = 0
beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "proxyd-operate-"))
  origin = createServer((req, res) => res.end(`hello ${req.url}`))
  await new Promise<void>((r) => origin.listen(0, "127.0.0.1", r))
  originPort = (origin.address() as AddressInfo).port
})
afterAll(async () => {
  await new Promise<void>((r) => origin.close(() => r()))
  rmSync(dir, { recursive: true, force: true })
})


/** passlib's scrypt PHC string (ab64: `.` for `+`, no padding), cheap parameters. */
const scryptHash = (password: string): string => {
  const salt = randomBytes(16)
  const key = scryptSync(password, salt, 32, { N: 1 << 4, r: 8, p: 1 })
  const ab64 = (b: Buffer) => b.toString("base64").replace(/=+$/, "").replace(/\+/g, ".")
  return `$scrypt$ln=4,r=8,p=1$${ab64(salt)}$${ab64(key)}`
}

describe("credentials through the real binary (curl)", () => {
  it("SOCKS5 and HTTP (forwarding and CONNECT) with the right, wrong and no credentials; --listen keeps the file's auth; no secret in any line", async (ctx) => {
    needTool(ctx, "curl")
    const password = `pw-${randomBytes(6).toString("hex")}`
    const hash = scryptHash(password)
    const file = join(dir, "auth.rules")
    writeFileSync(file, `listen mixed 127.0.0.1:1 auth staff\nauth staff = static {\n  alice "${hash}"\n}\npolicy default { default allow }\n`)
    const p = await start(file)
    try {
      const at = `127.0.0.1:${p.port}`
      const url = `http://127.0.0.1:${originPort}/secret-page`
      const good = `alice:${password}`
      const bad = "alice:wrong-password"
      expect(await curl(["--socks5-hostname", `${good}@${at}`, url])).toMatchObject({ code: 0, stdout: "hello /secret-page" })
      expect(await curl(["--socks5", at, "--proxy-user", good, url])).toMatchObject({ code: 0, stdout: "hello /secret-page" })
      expect((await curl(["--socks5-hostname", `${bad}@${at}`, url])).code).not.toBe(0)
      expect((await curl(["--socks5-hostname", at, url])).code).not.toBe(0)
      expect(await curl(["-x", `http://${at}`, "--proxy-user", good, url])).toMatchObject({ code: 0, stdout: "hello /secret-page" })
      expect(await curl(["-p", "-x", `http://${at}`, "--proxy-user", good, url])).toMatchObject({ code: 0, stdout: "hello /secret-page" })
      expect((await curl(["-x", `http://${at}`, "-w", "%{http_code}", "-o", "/dev/null", url])).stdout).toBe("407")
      expect((await curl(["-x", `http://${at}`, "--proxy-user", bad, "-w", "%{http_code}", "-o", "/dev/null", url])).stdout).toBe("407")
      expect((await curl(["-p", "-x", `http://${at}`, "--proxy-user", bad, "-w", "%{http_connect}", "-o", "/dev/null", url])).stdout).toBe("407")
      expect(await waitFor(() => p.closes().length >= 9)).toBe(true)
      const served = p.closes().filter((c) => c["dst_connected"] !== undefined)
      expect(served.map((c) => [c["protocol"], c["user"], c["outcome"]])).toEqual([
        ["socks5", "alice", "ok"], ["socks5", "alice", "ok"], ["http", "alice", "ok"], ["http", "alice", "ok"],
      ])
      const refused = p.closes().filter((c) => c["dst_connected"] === undefined)
      expect(refused.length).toBe(5)
      for (const c of refused) expect(c["user"]).toBeUndefined()
      // Authentication failures are logged `rejected` by both protocols; HTTP adds `status: 407`.
      expect(refused.filter((c) => c["protocol"] === "socks5").map((c) => c["outcome"])).toEqual(["rejected", "rejected"])
      expect(refused.filter((c) => c["protocol"] === "http").map((c) => [c["status"], c["outcome"]])).toEqual([[407, "rejected"], [407, "rejected"], [407, "rejected"]])
    } finally {
      expect(await stop(p)).toBe(0)
    }
    const all = p.lines.join("\n")
    expect(all).not.toContain(password)
    expect(all).not.toContain(hash)
    expect(all).not.toContain(hash.split("$")[5]!)
    expect(all).not.toContain("wrong-password")
  }, 60_000)
})

describe("reload from files the rules file depends on (real binary)", () => {
  it("editing an included file, then a set file, reloads by itself; new connections get the new decision", async (ctx) => {
    needTool(ctx, "curl")
    const main = join(dir, "main.rules")
    const inc = join(dir, "ports.rules")
    const names = join(dir, "names.txt")
    writeFileSync(inc, "set closed-ports = ports [9]\n")
    writeFileSync(names, "nothing.example\n")
    writeFileSync(main, [
      "listen mixed 127.0.0.1:1",
      'include "ports.rules"',
      'set closed-names = domains file "names.txt"',
      "policy default {",
      '  rule port when dst.port in closed-ports -> block "closed port"',
      '  rule name when dst.domain in closed-names -> block "closed name"',
      "  default allow",
      "}",
      "",
    ].join("\n"))
    const p = await start(main)
    const reloads = () => p.lines.filter((l) => l.includes('"policy reloaded"')).length
    try {
      const via = ["--socks5-hostname", `127.0.0.1:${p.port}`]
      const byName = `http://localhost:${originPort}/`
      expect((await curl([...via, byName])).code).toBe(0)
      writeFileSync(inc, `set closed-ports = ports [9, ${originPort}]\n`)
      expect(await waitFor(() => reloads() >= 1, 10_000)).toBe(true)
      expect((await curl([...via, byName])).code).not.toBe(0)
      expect(await waitFor(() => p.closes().length >= 2)).toBe(true)
      expect(p.closes()[1]).toMatchObject({ rule: "port", action: "block" })
      writeFileSync(inc, "set closed-ports = ports [9]\n")
      expect(await waitFor(() => reloads() >= 2, 10_000)).toBe(true)
      expect((await curl([...via, byName])).code).toBe(0)
      writeFileSync(names, "nothing.example\nlocalhost\n")
      expect(await waitFor(() => reloads() >= 3, 10_000)).toBe(true)
      expect((await curl([...via, byName])).code).not.toBe(0)
      expect(await waitFor(() => p.closes().length >= 4)).toBe(true)
      expect(p.closes()[3]).toMatchObject({ rule: "name", action: "block" })
      expect(p.lines.filter((l) => l.includes("rules changed on disk")).length).toBeGreaterThanOrEqual(3)
    } finally {
      expect(await stop(p)).toBe(0)
    }
  }, 60_000)
})

/** Spawns `proxyd ARGS...` and collects its output lines. */
const spawnRaw = (args: ReadonlyArray<string>) => {
  const child: ChildProcess = spawn(process.execPath, [BIN, ...args], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...cleanEnv(), NO_COLOR: "1" } })
  const lines: Array<string> = []
  let buf = ""
  const on = (d: Buffer) => {
    buf += d.toString("utf8")
    const parts = buf.split("\n")
    buf = parts.pop()!
    lines.push(...parts)
  }
  child.stdout!.on("data", on)
  child.stderr!.on("data", on)
  const exited = new Promise<number | null>((r) => child.once("exit", (c) => r(c)))
  const stopIt = async () => {
    child.kill("SIGTERM")
    const t = setTimeout(() => child.kill("SIGKILL"), 20_000)
    try { return await exited } finally { clearTimeout(t) }
  }
  return { child, lines, exited, stop: stopIt }
}

const freePort = async (): Promise<number> => {
  const s = createServer()
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r))
  const port = (s.address() as AddressInfo).port
  await new Promise<void>((r) => s.close(() => r()))
  return port
}

describe("command line (real binary)", () => {
  it("the server re-executes itself (same PID) with a bounded V8 young generation, no memory reducer and no allocation-site pretenuring; PROXYD_YOUNG_MB=0, PROXYD_MEMORY_REDUCER=on, PROXYD_PRETENURING=on or a flag of the user's own leaves Node's flags alone", async () => {
    const argsOf = (pid: number | undefined): Array<string> => readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")
    const rules = join(ROOT, "rulesets/local-dev.rules")
    const cases: Array<[NodeJS.ProcessEnv, (args: Array<string>) => void]> = [
      [{}, (a) => expect(a.filter((x) => x.startsWith("--max-semi-space-size"))).toEqual(["--max-semi-space-size=8"])],
      [{ PROXYD_YOUNG_MB: "16" }, (a) => expect(a).toContain("--max-semi-space-size=16")],
      [{ PROXYD_YOUNG_MB: "0" }, (a) => expect(a.some((x) => x.startsWith("--max-semi-space-size"))).toBe(false)],
      [{ NODE_OPTIONS: "--max-semi-space-size=16" }, (a) => expect(a.some((x) => x.startsWith("--max-semi-space-size"))).toBe(false)],
      [{}, (a) => expect(a.filter((x) => x.includes("memory-reducer"))).toEqual(["--no-memory-reducer"])],
      [{ PROXYD_MEMORY_REDUCER: "on" }, (a) => expect(a.some((x) => x.includes("memory-reducer"))).toBe(false)],
      [{}, (a) => expect(a.filter((x) => x.includes("pretenuring"))).toEqual(["--no-allocation-site-pretenuring"])],
      [{ PROXYD_PRETENURING: "on" }, (a) => expect(a.some((x) => x.includes("pretenuring"))).toBe(false)],
      // No flag wanted: no re-execution at all.
      [{ PROXYD_MEMORY_REDUCER: "on", PROXYD_YOUNG_MB: "0", PROXYD_PRETENURING: "on" }, (a) => expect(a.slice(1, a.indexOf(BIN))).toEqual([])],
    ]
    for (const [env, check] of cases) {
      const p = await start(rules, { env })
      try {
        // The PID the caller started is the one serving (execve, not a child process).
        const args = argsOf(p.child.pid)
        expect(args[1] === BIN || args.includes(BIN)).toBe(true)
        check(args)
      } finally {
        expect(await stop(p)).toBe(0)
      }
    }
  }, 60_000)

  it("PROXYD_BUNDLE=FILE runs that file instead of the workspace sources, after the same re-execution; a missing file exits 2 naming it", () => {
    const dir = mkdtempSync(join(tmpdir(), "proxyd-bundle-"))
    try {
      // A stand-in bundle that says it ran and with which Node flags.
      const file = join(dir, "proxyd.mjs")
      writeFileSync(file, "process.stdout.write(JSON.stringify({ ran: 'stand-in', argv: process.argv.slice(2), execArgv: process.execArgv }) + '\\n')\n")
      const ran = proxyd(["--rules", "x.rules"], { env: { PROXYD_BUNDLE: file } })
      expect(ran.err).toBe("")
      const said = JSON.parse(ran.out) as { ran: string; argv: Array<string>; execArgv: Array<string> }
      expect(said.ran).toBe("stand-in")
      expect(said.argv).toEqual(["--rules", "x.rules"])
      expect(said.execArgv).toContain("--no-allocation-site-pretenuring")
      const missing = proxyd(["--version"], { env: { PROXYD_BUNDLE: join(dir, "nope.mjs") } })
      expect(missing.code).toBe(2)
      expect(missing.err).toContain(`PROXYD_BUNDLE=${join(dir, "nope.mjs")}: no such file`)
      // Empty means unset: the sources run.
      expect(proxyd(["--version"], { env: { PROXYD_BUNDLE: "" } }).out).toMatch(/^proxyd \d/)
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  }, 60_000)

  it("`proxyd run --rules` with --log-format pretty: `time LEVEL msg key=value` lines, one per connection", async (ctx) => {
    needTool(ctx, "curl")
    const p = spawnRaw(["run", "--rules", "rulesets/local-dev.rules", "--listen", "socks5://127.0.0.1:0", "--log-format", "pretty"])
    try {
      expect(await waitFor(() => p.lines.some((l) => / INFO +listening .*port=\d+/.test(l)), 20_000)).toBe(true)
      const port = Number(/port=(\d+)/.exec(p.lines.find((l) => / INFO +listening /.test(l))!)![1])
      expect((await curl(["--socks5-hostname", `127.0.0.1:${port}`, `http://127.0.0.1:${originPort}/pretty`])).stdout).toBe("hello /pretty")
      expect(await waitFor(() => p.lines.some((l) => / INFO +connection /.test(l)))).toBe(true)
      const line = p.lines.find((l) => / INFO +connection /.test(l))!
      expect(line).toMatch(/^\S+ INFO +connection .*protocol=socks5/)
      expect(line).toContain(`dst=127.0.0.1:${originPort}`)
      expect(line).toContain("outcome=ok")
      expect(p.lines.some((l) => l.trimStart().startsWith("{"))).toBe(false)
    } finally {
      expect(await p.stop()).toBe(0)
    }
  }, 40_000)

  it("--log-level warn: serves without per-connection lines except those of `log` rules, still logs a failed reload", async (ctx) => {
    needTool(ctx, "curl")
    const file = join(dir, "quiet.rules")
    writeFileSync(file, "listen mixed 127.0.0.1:1\npolicy default {\n  rule audited when dst.domain == localhost -> allow log\n  default allow\n}\n")
    const port = await freePort()
    const p = spawnRaw(["--rules", file, "--listen", `mixed://127.0.0.1:${port}`, "--log-level", "warn"])
    try {
      const up = await (async () => {
        for (let i = 0; i < 200; i++) {
          const ok = await new Promise<boolean>((r) => { const s = connect(port, "127.0.0.1"); s.on("connect", () => { s.destroy(); r(true) }); s.on("error", () => r(false)) })
          if (ok) return true
          await new Promise((r) => setTimeout(r, 100))
        }
        return false
      })()
      expect(up).toBe(true)
      expect((await curl(["--socks5", `127.0.0.1:${port}`, `http://127.0.0.1:${originPort}/quiet`])).stdout).toBe("hello /quiet")
      expect((await curl(["--socks5-hostname", `127.0.0.1:${port}`, `http://localhost:${originPort}/audited`])).stdout).toBe("hello /audited")
      expect(await waitFor(() => p.lines.some((l) => l.includes('"connection"')))).toBe(true)
      await new Promise((r) => setTimeout(r, 300))
      const audited = p.lines.filter((l) => l.includes('"connection"')).map((l) => JSON.parse(l) as Record<string, unknown>)
      expect(audited.map((c) => [c["level"], c["rule"], c["dst"]])).toEqual([["warn", "audited", `localhost:${originPort}`]])
      writeFileSync(file, "listen mixed 127.0.0.1:1\npolicy default { rule r when dst.prot == 1 -> block\n default allow }\n")
      expect(await waitFor(() => p.lines.some((l) => l.includes("reload failed")), 10_000)).toBe(true)
      expect((await curl(["--socks5", `127.0.0.1:${port}`, `http://127.0.0.1:${originPort}/still`])).stdout).toBe("hello /still")
      expect(p.lines.filter((l) => l.includes('"connection"')).length).toBe(1)
      expect(p.lines.filter((l) => l.includes('"listening"'))).toEqual([])
    } finally {
      expect(await p.stop()).toBe(0)
    }
  }, 40_000)
})

describe("redirect (real binary)", () => {
  it("a redirect rule sends SOCKS5, SOCKS4 and HTTP (forwarding and CONNECT) to the rewritten target", async (ctx) => {
    needTool(ctx, "curl")
    const asked = await freePort() // nothing listens there: only the redirect can succeed
    const file = join(dir, "redirect.rules")
    writeFileSync(file, `listen mixed 127.0.0.1:1\npolicy default {\n  rule moved when dst.port == ${asked} -> redirect "127.0.0.1:${originPort}"\n  default block\n}\n`)
    const p = await start(file)
    try {
      const at = `127.0.0.1:${p.port}`
      const url = `http://127.0.0.1:${asked}/moved`
      for (const args of [["--socks5", at], ["--socks5-hostname", at], ["--socks4", at], ["-x", `http://${at}`], ["-p", "-x", `http://${at}`]]) {
        expect(await curl([...args, url]), args.join(" ")).toMatchObject({ code: 0, stdout: "hello /moved" })
      }
      expect(await waitFor(() => p.closes().length >= 5)).toBe(true)
      for (const c of p.closes()) expect(c).toMatchObject({ rule: "moved", action: "redirect", dst: `127.0.0.1:${asked}`, dst_connected: `127.0.0.1:${originPort}`, outcome: "ok" })
    } finally {
      expect(await stop(p)).toBe(0)
    }
  }, 40_000)
})
