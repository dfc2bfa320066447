/**
 * End-to-end support for TLS and PROXY protocol tests: the real runtime serving the real
 * protocol handlers, a local HTTP origin, curl, and HAProxy as a child process.
 *
 * Details: this is its own TypeScript project (it imports `@proxyd/socks` and
 * `@proxyd/http`, which depend on the runtime). curl runs with an environment
 * stripped of proxy variables and a 10 s ceiling. HAProxy runs in the
 * foreground (`-db`) from a config written to a temp dir, bound to a free
 * 127.0.0.1 port, and is stopped by its PID.
 */
import { execFile, spawn, type ChildProcess } from "node:child_process"
import { writeFileSync } from "node:fs"
import { createServer } from "node:http"
import * as net from "node:net"
import { join } from "node:path"
import { Effect } from "effect"
import { Log, Server } from "@proxyd/runtime"
import { httpHandler } from "@proxyd/http"
import { socks4Handler, socks5Handler } from "@proxyd/socks"

export const handlers: Server.Handlers = { socks5: socks5Handler, socks4: socks4Handler, http: httpHandler }

export const until = async (cond: () => boolean, ms = 5_000): Promise<boolean> => {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (cond()) return true
    await new Promise((r) => setTimeout(r, 5))
  }
  return cond()
}

export interface Proxyd {
  port(listener: string): number
  readonly lines: Array<string>
  /** Close lines (`msg == "connection"`). */
  connections(): Array<Record<string, unknown>>
  reload(): Promise<{ ok: boolean; message?: string }>
  stop(): Promise<void>
}

export const startProxyd = async (dir: string, rules: string): Promise<Proxyd> => {
  const file = join(dir, "test.rules")
  writeFileSync(file, rules)
  const log = Log.memory("debug")
  const handle = await Effect.runPromise(Server.startServer({ rulesFile: file, handlers, log, watch: false }))
  const addrs = handle.addresses()
  return {
    port: (name) => {
      const a = addrs.find((x) => x.listener === name)
      if (a === undefined) throw new Error(`no listener ${name}`)
      return a.port
    },
    lines: log.lines,
    connections: () => log.lines.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l["msg"] === "connection"),
    reload: () => Effect.runPromise(handle.reload()),
    stop: () => Effect.runPromise(handle.shutdown(0)),
  }
}

export interface Origin { readonly port: number; close(): Promise<void> }

/** An HTTP server on 127.0.0.1 answering `origin: METHOD URL`. */
export const httpOrigin = async (): Promise<Origin> => {
  const server = createServer((req, res) => { res.end(`origin: ${req.method} ${req.url}`) })
  await new Promise<void>((r) => server.listen({ host: "127.0.0.1", port: 0 }, () => r()))
  return {
    port: (server.address() as net.AddressInfo).port,
    close: () => new Promise((r) => { server.closeAllConnections(); server.close(() => r()) }),
  }
}

export interface CurlResult { readonly code: number; readonly stdout: string; readonly stderr: string }

export const curl = (args: ReadonlyArray<string>): Promise<CurlResult> =>
  new Promise((resolve) => {
    execFile("curl", ["--silent", "--show-error", "--max-time", "10", ...args], { env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin" }, timeout: 15_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : -1
      resolve({ code, stdout, stderr })
    })
  })

/** A port that was free a moment ago on 127.0.0.1. */
export const freePort = async (): Promise<number> => {
  const s = net.createServer()
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r))
  const port = (s.address() as net.AddressInfo).port
  await new Promise<void>((r) => s.close(() => r()))
  return port
}

const accepts = (port: number): Promise<boolean> => new Promise((resolve) => {
  const c = net.connect(port, "127.0.0.1")
  c.once("connect", () => { c.destroy(); resolve(true) })
  c.once("error", () => resolve(false))
})

export interface Haproxy { readonly port: number; readonly pid: number; output(): string; stop(): Promise<void> }

/** HAProxy in TCP mode on a free 127.0.0.1 port, forwarding to 127.0.0.1:`target` with `serverOptions` (e.g. `send-proxy-v2`). */
export const startHaproxy = async (dir: string, target: number, serverOptions: string): Promise<Haproxy> => {
  const port = await freePort()
  const cfg = join(dir, `haproxy-${port}.cfg`)
  writeFileSync(cfg, [
    "global", "  maxconn 200",
    "defaults", "  mode tcp", "  timeout connect 5s", "  timeout client 30s", "  timeout server 30s",
    "frontend fe", `  bind 127.0.0.1:${port}`, "  default_backend be",
    "backend be", `  server proxyd 127.0.0.1:${target} ${serverOptions}`,
    "",
  ].join("\n"))
  const child: ChildProcess = spawn("haproxy", ["-f", cfg, "-db"], { stdio: ["ignore", "pipe", "pipe"] })
  let out = ""
  child.stdout?.on("data", (d: Buffer) => { out += d.toString() })
  child.stderr?.on("data", (d: Buffer) => { out += d.toString() })
  let exited = false
  const exit = new Promise<void>((r) => child.once("exit", () => { exited = true; r() }))
  const up = async () => {
    for (let i = 0; i < 200 && !exited; i++) {
      if (await accepts(port)) return true
      await new Promise((r) => setTimeout(r, 25))
    }
    return false
  }
  const stop = async () => {
    if (!exited && child.pid !== undefined) process.kill(child.pid, "SIGTERM")
    await Promise.race([exit, new Promise((r) => setTimeout(r, 3_000))])
    if (!exited && child.pid !== undefined) process.kill(child.pid, "SIGKILL")
  }
  if (!(await up())) {
    await stop()
    throw new Error(`haproxy did not start: ${out}`)
  }
  return { port, pid: child.pid!, output: () => out, stop }
}
