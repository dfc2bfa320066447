/**
 * Real clients through the real binary: proxychains4 (SOCKS5 and HTTP entries)
 * and headless Chromium loading a local page through the mixed port.
 *
 * Details: proxyd serves `rulesets/local-dev.rules` (loopback allowed) on
 * `mixed://127.0.0.1:0`. The origin is a local HTTP server. Each client is told
 * to use the proxy; the proof that the connection really went through proxyd
 * is its close log line (`dst` is the origin, `dst_connected` set, bytes
 * counted, outcome ok) together with the origin having served the request: a
 * client that went direct would leave no close line.
 * Gotchas: proxychains4 hooks libc `connect`, and Chromium bypasses proxies
 * for loopback unless told `--proxy-bypass-list=<-loopback>`. Under CI=true a
 * missing client fails the test (`.ci/run` installs both).
 */
import { execFile } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type Server } from "node:http"
import type { AddressInfo } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { cleanEnv, needTool, type Running, start, stop, waitFor } from "./spawn.ts"

const MARK = "proxyd-origin-marker-7f3a"
let origin: Server
let originPort = 0
/** Remote ports the origin saw, to compare with proxyd's outbound sockets. */
const seen: Array<{ url: string; remotePort: number }> = []
let dir = ""

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "proxyd-clients-"))
  origin = createServer((req, res) => {
    seen.push({ url: req.url ?? "", remotePort: req.socket.remotePort ?? 0 })
    if (req.url === "/app.js") {
      res.setHeader("content-type", "text/javascript")
      res.end(`document.body.insertAdjacentHTML("beforeend", "<p id=js>script-ran-${MARK}</p>")`)
    } else {
      res.setHeader("content-type", "text/html")
      res.end(`<!doctype html><html><head><title>t</title></head><body><div id=m>${MARK}</div><script src="/app.js"></script></body></html>`)
    }
  })
  await new Promise<void>((r) => origin.listen(0, "127.0.0.1", r))
  originPort = (origin.address() as AddressInfo).port
})
afterAll(async () => {
  await new Promise<void>((r) => origin.close(() => r()))
  rmSync(dir, { recursive: true, force: true })
})

const run = (cmd: string, args: ReadonlyArray<string>, timeoutMs: number): Promise<{ code: number; out: string; err: string }> =>
  new Promise((resolve) => {
    execFile(cmd, args, { env: cleanEnv(), encoding: "utf8", timeout: timeoutMs, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : 1, out: stdout, err: stderr })
    })
  })

/** The close lines for connections to the origin (by destination as asked). */
const toOrigin = (p: Running) => p.closes().filter((c) => String(c["dst"]).endsWith(`:${originPort}`))

describe("proxychains4 through proxyd", () => {
  for (const kind of ["socks5", "http"] as const) {
    it(`curl under proxychains4 with a ${kind} entry reaches the origin only through proxyd`, async (ctx) => {
      needTool(ctx, "proxychains4", "-h")
      needTool(ctx, "curl")
      const p = await start("rulesets/local-dev.rules")
      try {
        const cfg = join(dir, `${kind}.conf`)
        writeFileSync(cfg, `strict_chain\nquiet_mode\ntcp_read_time_out 15000\ntcp_connect_time_out 8000\n[ProxyList]\n${kind} 127.0.0.1 ${p.port}\n`)
        const before = seen.length
        const r = await run("proxychains4", ["-q", "-f", cfg, "curl", "-sS", "--noproxy", "*", "--max-time", "15", `http://127.0.0.1:${originPort}/pc-${kind}`], 30_000)
        expect(r.err).toBe("")
        expect(r.out).toContain(MARK)
        expect(await waitFor(() => toOrigin(p).length >= 1)).toBe(true)
        const [c] = toOrigin(p)
        expect(c).toMatchObject({ protocol: kind, dst: `127.0.0.1:${originPort}`, action: "allow", outcome: "ok" })
        expect(c?.["dst_connected"]).toBe(`127.0.0.1:${originPort}`)
        expect(Number(c?.["bytes_down"])).toBeGreaterThan(MARK.length)
        // Exactly one request reached the origin, and proxyd carried it.
        expect(seen.slice(before).map((s) => s.url)).toEqual([`/pc-${kind}`])
      } finally {
        expect(await stop(p)).toBe(0)
      }
    }, 60_000)
  }
})

describe("headless Chromium through the mixed port", () => {
  for (const scheme of ["socks5", "http"] as const) {
    it(`loads a local page and its script with --proxy-server=${scheme}://`, async (ctx) => {
      needTool(ctx, "chromium")
      const p = await start("rulesets/local-dev.rules")
      const profile = mkdtempSync(join(dir, `chromium-${scheme}-`))
      try {
        const before = seen.length
        const r = await run("chromium", [
          "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
          "--disable-background-networking", "--disable-component-update", "--disable-sync",
          "--disable-dev-shm-usage", `--user-data-dir=${profile}`,
          `--proxy-server=${scheme}://127.0.0.1:${p.port}`, "--proxy-bypass-list=<-loopback>",
          "--virtual-time-budget=5000", "--dump-dom", `http://127.0.0.1:${originPort}/page-${scheme}`,
        ], 90_000)
        expect(r.out, r.err.slice(-2000)).toContain(`<div id="m">${MARK}</div>`)
        expect(r.out).toContain(`script-ran-${MARK}`)
        expect(seen.slice(before).map((s) => s.url)).toEqual(expect.arrayContaining([`/page-${scheme}`, "/app.js"]))
        // Chromium keeps its connections open until it exits; by now it has, so proxyd logged them.
        expect(await waitFor(() => toOrigin(p).length >= 1)).toBe(true)
        const cs = toOrigin(p)
        for (const c of cs) expect(c).toMatchObject({ protocol: scheme, action: "allow", dst_connected: `127.0.0.1:${originPort}` })
        const down = cs.reduce((n, c) => n + Number(c["bytes_down"]), 0)
        expect(down).toBeGreaterThan(2 * MARK.length)
      } finally {
        expect(await stop(p)).toBe(0)
      }
    }, 120_000)
  }
})
