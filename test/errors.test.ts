/**
 * Outbound failures through the real binary get the protocol's complete error
 * reply: SOCKS5 REP 06 (TTL expired) on a connect timeout and REP 05 on a
 * refused port, SOCKS4 CD 91, HTTP 504 / 502 for forwarding and CONNECT.
 *
 * Details: the silent destination is a stopped process whose accept queue is
 * full, so the kernel drops further SYNs (loopback only); proxyd runs with
 * `options { connect-timeout 300ms }`. The refused destination is a port that
 * was just closed. Each case also checks proxyd's close line (`outcome:
 * "error"`, `error: "Timeout"` or `"Refused"`) and the timing.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { connect, createServer, type Socket } from "node:net"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { cleanEnv, needTool, type Running, start, stop, waitFor } from "./spawn.ts"

let dir = ""
let silent: ChildProcess | undefined
let silentPort = 0
const fillers: Array<Socket> = []
let refusedPort = 0
let p: Running | undefined

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "proxyd-errors-"))
  silent = spawn(process.execPath, ["-e", "const s=require('net').createServer();s.listen({port:0,host:'127.0.0.1',backlog:1},()=>console.log(s.address().port))"], { stdio: ["ignore", "pipe", "ignore"] })
  silentPort = await new Promise<number>((r) => silent!.stdout!.once("data", (d: Buffer) => r(Number(String(d)))))
  silent.kill("SIGSTOP")
  for (let i = 0; i < 2; i++) { const f = connect(silentPort, "127.0.0.1"); f.on("error", () => {}); fillers.push(f) }
  await Promise.all(fillers.map((f) => new Promise((r) => { f.once("connect", r); setTimeout(r, 1_000) })))
  const gone = createServer()
  await new Promise<void>((r) => gone.listen(0, "127.0.0.1", r))
  refusedPort = (gone.address() as AddressInfo).port
  await new Promise<void>((r) => gone.close(() => r()))
  const file = join(dir, "errors.rules")
  writeFileSync(file, "listen mixed 127.0.0.1:0\noptions { connect-timeout 300ms }\npolicy default { default allow }\n")
  p = await start(file)
}, 40_000)
afterAll(async () => {
  if (p !== undefined) expect(await stop(p)).toBe(0)
  for (const f of fillers) f.destroy()
  silent?.kill("SIGKILL")
  rmSync(dir, { recursive: true, force: true })
})

/** Sends `bytes`, collects the reply until the server closes (bounded). */
const exchange = (bytes: Buffer): Promise<{ reply: Buffer; closed: boolean; ms: number }> => new Promise((resolve) => {
  const t0 = Date.now()
  const s = connect(p!.port, "127.0.0.1")
  let reply = Buffer.alloc(0)
  const t = setTimeout(() => { s.destroy(); resolve({ reply, closed: false, ms: Date.now() - t0 }) }, 5_000)
  s.on("data", (d: Buffer) => { reply = Buffer.concat([reply, d]) })
  s.on("error", () => {})
  s.on("close", () => { clearTimeout(t); resolve({ reply, closed: true, ms: Date.now() - t0 }) })
  s.write(bytes)
})

const socks5 = (port: number) => Buffer.from([5, 1, 0, 5, 1, 0, 1, 127, 0, 0, 1, port >> 8, port & 255])
const socks4 = (port: number) => Buffer.from([4, 1, port >> 8, port & 255, 127, 0, 0, 1, 0])

const curl = (args: ReadonlyArray<string>): Promise<string> => new Promise((resolve) => {
  execFile("curl", ["-sS", "--max-time", "10", "-o", "/dev/null", ...args], { env: cleanEnv(), encoding: "utf8", timeout: 20_000 }, (_err, stdout) => resolve(stdout))
})

/** Outbound failures are logged `outcome: "error"` by every protocol (docs/running.md). */
const failed = "error"

const lastLine = async (dst: string, n: number) => {
  expect(await waitFor(() => p!.closes().filter((c) => c["dst"] === dst).length >= n)).toBe(true)
  return p!.closes().filter((c) => c["dst"] === dst)[n - 1]
}

describe("outbound failures get complete protocol replies (real binary)", () => {
  it("SOCKS5: connect timeout → REP 06 after connect-timeout; refused → REP 05; both close", async () => {
    const t = await exchange(socks5(silentPort))
    expect(t.closed).toBe(true)
    expect([...t.reply.subarray(0, 4)]).toEqual([5, 0, 5, 0x06])
    expect(t.reply.length).toBe(12) // method reply + a complete 10-byte reply
    expect(t.ms).toBeGreaterThanOrEqual(250)
    expect(t.ms).toBeLessThan(3_000)
    expect(await lastLine(`127.0.0.1:${silentPort}`, 1)).toMatchObject({ protocol: "socks5", outcome: failed, error: "Timeout" })
    const r = await exchange(socks5(refusedPort))
    expect(r.closed).toBe(true)
    expect([...r.reply.subarray(0, 4)]).toEqual([5, 0, 5, 0x05])
    expect(r.reply.length).toBe(12)
    expect(await lastLine(`127.0.0.1:${refusedPort}`, 1)).toMatchObject({ protocol: "socks5", outcome: failed, error: "Refused" })
  }, 30_000)

  it("SOCKS4: connect timeout and refused → CD 91 (complete 8-byte reply, VN 0), then close", async () => {
    for (const port of [silentPort, refusedPort]) {
      const r = await exchange(socks4(port))
      expect(r.closed).toBe(true)
      expect(r.reply.length).toBe(8)
      expect([...r.reply.subarray(0, 2)]).toEqual([0, 91])
    }
  }, 30_000)

  it("HTTP: connect timeout → 504, refused → 502, for forwarding and CONNECT (curl)", async (ctx) => {
    needTool(ctx, "curl")
    const proxy = `http://127.0.0.1:${p!.port}`
    expect(await curl(["-x", proxy, "-w", "%{http_code}", `http://127.0.0.1:${silentPort}/`])).toBe("504")
    expect(await curl(["-p", "-x", proxy, "-w", "%{http_connect}", `http://127.0.0.1:${silentPort}/`])).toBe("504")
    expect(await curl(["-x", proxy, "-w", "%{http_code}", `http://127.0.0.1:${refusedPort}/`])).toBe("502")
    expect(await curl(["-p", "-x", proxy, "-w", "%{http_connect}", `http://127.0.0.1:${refusedPort}/`])).toBe("502")
    expect(await waitFor(() => p!.closes().filter((c) => c["protocol"] === "http").length >= 4)).toBe(true)
    const lines = p!.closes().filter((c) => c["protocol"] === "http")
    // The reply body explains the failure in words; the log keeps the reason, as SOCKS does.
    expect(lines.map((l) => [l["status"], l["outcome"], l["error"]])).toEqual([
      [504, "error", "Timeout"], [504, "error", "Timeout"], [502, "error", "Refused"], [502, "error", "Refused"],
    ])
  }, 40_000)

  it("HTTP: a malformed request (origin-form to the proxy) gets a complete 400 and is logged `rejected`, not `ok`", async () => {
    const before = p!.closes().filter((c) => c["protocol"] === "http").length
    const r = await exchange(Buffer.from("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"))
    expect(r.closed).toBe(true)
    expect(r.reply.toString("latin1")).toMatch(/^HTTP\/1\.1 400 /)
    expect(await waitFor(() => p!.closes().filter((c) => c["protocol"] === "http").length > before)).toBe(true)
    expect(p!.closes().filter((c) => c["protocol"] === "http").at(-1)).toMatchObject({ status: 400, outcome: "rejected" })
  }, 20_000)
})
