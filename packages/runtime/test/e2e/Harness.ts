/**
 * End-to-end support for TLS and PROXY protocol tests: the real runtime serving the real
 * protocol handlers (`@proxyd/testkit`'s `startProxyd` with them bound), a local HTTP
 * origin, and HAProxy as a child process.
 *
 * Details: this is its own TypeScript project (it imports `@proxyd/socks` and
 * `@proxyd/http`, which depend on the runtime). HAProxy runs in the
 * foreground (`-db`) from a config written to a temp dir, bound to a free
 * 127.0.0.1 port, and is stopped by its PID.
 */
import { spawn, type ChildProcess } from "node:child_process"
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import type { Server } from "@proxyd/runtime"
import * as Testkit from "@proxyd/testkit"
import { httpHandler } from "@proxyd/http"
import { socks4Handler, socks5Handler } from "@proxyd/socks"

export const handlers: Server.Handlers = { socks5: socks5Handler, socks4: socks4Handler, http: httpHandler }

/** The real runtime with the real handlers, the rules file written to `dir`. */
export const startProxyd = (dir: string, rules: string): Promise<Testkit.Proxyd> => Testkit.startProxyd(rules, handlers, { dir })

/** An HTTP server on 127.0.0.1 answering `origin: METHOD URL`. */
export const httpOrigin = (): Promise<Testkit.Origin> => Testkit.httpOrigin((method, url) => `origin: ${method} ${url}`)

export interface Haproxy { readonly port: number; readonly pid: number; output(): string; stop(): Promise<void> }

/** HAProxy in TCP mode on a free 127.0.0.1 port, forwarding to 127.0.0.1:`target` with `serverOptions` (e.g. `send-proxy-v2`). */
export const startHaproxy = async (dir: string, target: number, serverOptions: string): Promise<Haproxy> => {
  const port = await Testkit.closedPort()
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
  const stop = async () => {
    if (!exited && child.pid !== undefined) process.kill(child.pid, "SIGTERM")
    await Promise.race([exit, new Promise((r) => setTimeout(r, 3_000))])
    if (!exited && child.pid !== undefined) process.kill(child.pid, "SIGKILL")
  }
  try {
    await Testkit.waitPort(port, child)
  } catch (e) {
    await stop()
    throw new Error(`haproxy did not start (${(e as Error).message}): ${out}`)
  }
  return { port, pid: child.pid!, output: () => out, stop }
}
