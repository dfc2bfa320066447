import { spawn, type ChildProcess } from "node:child_process"
import { writeFileSync } from "node:fs"
import { afterEach, describe, expect, it } from "vitest"
import { dial, localServer, tempDir, until, writeRules, type TestServer } from "./support.ts"

const fixture = new URL("./fixtures/serve.ts", import.meta.url).pathname

interface Proc { readonly child: ChildProcess; readonly lines: Array<Record<string, unknown>>; readonly stderr: () => string; exit: () => number | null | undefined }

const children: Array<ChildProcess> = []
const servers: Array<TestServer> = []
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL")
  for (const s of servers.splice(0)) await s.close()
})

const run = (rulesFile: string): Proc => {
  const child = spawn(process.execPath, [fixture, rulesFile], { stdio: ["ignore", "ignore", "pipe"], env: { ...process.env, WATCH: "0" } })
  children.push(child)
  let err = ""
  const lines: Array<Record<string, unknown>> = []
  let code: number | null | undefined
  child.on("exit", (c) => { code = c })
  child.stderr!.on("data", (d: Buffer) => {
    err += d.toString()
    const parts = err.split("\n")
    err = parts.pop()!
    for (const p of parts) {
      try { lines.push(JSON.parse(p) as Record<string, unknown>) } catch { lines.push({ msg: "raw", text: p }) }
    }
  })
  return { child, lines, stderr: () => lines.map((l) => JSON.stringify(l)).join("\n") + err, exit: () => code }
}

const portOf = async (p: Proc): Promise<number> => {
  expect(await until(() => p.lines.some((l) => l["msg"] === "listening"), 20_000)).toBe(true)
  return p.lines.find((l) => l["msg"] === "listening")!["port"] as number
}

const rules = (drain: string, blockPort = 0) => `
options { drain-timeout ${drain} }
listen t = http 127.0.0.1:0
policy default {
  rule b when dst.port == ${blockPort} -> block "closed by reload"
  default allow
}
`

describe("the server process", () => {
  it("SIGHUP reloads; SIGTERM drains and exits 0", async () => {
    const echo = await localServer()
    servers.push(echo)
    const file = writeRules(tempDir(), rules("500ms"))
    const p = run(file)
    const port = await portOf(p)
    const open = await dial(port, `CONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await open.waitText("OK ")).toBe(true)
    writeFileSync(file, rules("500ms", echo.port))
    p.child.kill("SIGHUP")
    expect(await until(() => p.lines.some((l) => l["msg"] === "policy reloaded"), 10_000)).toBe(true)
    const blocked = await dial(port, `CONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await until(() => blocked.closed())).toBe(true)
    expect(blocked.text()).toBe("ERR blocked closed by reload\n")
    open.socket.write("still here\n")
    expect(await open.waitText("still here\n")).toBe(true)
    const t0 = Date.now()
    p.child.kill("SIGTERM")
    expect(await until(() => p.exit() !== undefined, 10_000)).toBe(true)
    expect(p.exit()).toBe(0)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(400)
    expect(await until(() => open.closed())).toBe(true)
    expect(p.lines.some((l) => l["msg"] === "stopped")).toBe(true)
  })

  it("a second signal exits at once", async () => {
    const echo = await localServer()
    servers.push(echo)
    const p = run(writeRules(tempDir(), rules("30s")))
    const port = await portOf(p)
    const open = await dial(port, `CONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await open.waitText("OK ")).toBe(true)
    p.child.kill("SIGTERM")
    expect(await until(() => p.lines.some((l) => l["msg"] === "shutting down"), 5_000)).toBe(true)
    const t0 = Date.now()
    p.child.kill("SIGINT")
    expect(await until(() => p.exit() !== undefined, 5_000)).toBe(true)
    expect(p.exit()).toBe(130)
    expect(Date.now() - t0).toBeLessThan(3_000)
  })

  it("a rules file that does not check refuses to start (exit 1, diagnostics on stderr)", async () => {
    const p = run(writeRules(tempDir(), "listen t = http 127.0.0.1:0\npolicy default { default alow }\n"))
    expect(await until(() => p.exit() !== undefined, 20_000)).toBe(true)
    expect(p.exit()).toBe(1)
    expect(p.stderr()).toMatch(/error\[/)
  })
})
