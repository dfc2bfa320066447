/** (A copy of packages/socks/test/Proxyd.ts: test packages do not import each other.)
 *
 * End-to-end support: the real runtime (`startServer`) serving the real
 * protocol handlers from a rules file, a local HTTP origin, and `curl`.
 *
 * Details: `curl` is looked up once; when it is missing, `needCurl` fails the
 * test under `CI=true` (CI must install it) and skips it otherwise. curl runs
 * with an environment stripped of proxy variables and a 10 s ceiling.
 */
import { execFile, execFileSync } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type IncomingHttpHeaders } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { Log, Server } from "@proxyd/runtime"

export interface Proxyd {
  port(listener: string): number
  readonly log: { readonly lines: Array<string> }
  /** Parsed JSON log lines that describe a closed connection. */
  connections(): Array<Record<string, unknown>>
  stop(): Promise<void>
}

export const startProxyd = async (rules: string, handlers: Server.Handlers): Promise<Proxyd> => {
  const dir = mkdtempSync(join(tmpdir(), "proxyd-e2e-"))
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
    log,
    connections: () => log.lines.flatMap((l) => {
      try {
        const o = JSON.parse(l) as Record<string, unknown>
        return "bytes_up" in o || "outcome" in o ? [o] : []
      } catch {
        return []
      }
    }),
    stop: async () => {
      await Effect.runPromise(handle.shutdown(0))
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

export interface Origin { readonly port: number; readonly seen: Array<{ method: string; url: string; headers: IncomingHttpHeaders }>; close(): Promise<void> }

export const httpOrigin = async (): Promise<Origin> => {
  const seen: Origin["seen"] = []
  const server = createServer((req, res) => {
    seen.push({ method: req.method!, url: req.url!, headers: req.headers })
    const parts: Buffer[] = []
    req.on("data", (d: Buffer) => parts.push(d))
    req.on("end", () => res.end(`origin says hi to ${req.method} ${req.url}${parts.length > 0 ? ` with ${Buffer.concat(parts).toString()}` : ""}`))
  })
  await new Promise<void>((r) => server.listen({ host: "127.0.0.1", port: 0 }, () => r()))
  const a = server.address()
  return {
    port: typeof a === "object" && a !== null ? a.port : 0,
    seen,
    close: () => new Promise((r) => {
      server.closeAllConnections()
      server.close(() => r())
    }),
  }
}

const curlPath = (() => {
  try {
    execFileSync("curl", ["--version"], { stdio: "ignore" })
    return "curl"
  } catch {
    return undefined
  }
})()

/** Fails under CI=true when curl is missing; otherwise skips with a message. Returns whether curl is usable. */
export const needCurl = (ctx: { skip: (note?: string) => void }): boolean => {
  if (curlPath !== undefined) return true
  if (process.env["CI"] === "true") throw new Error("curl is required for these tests in CI (.ci/run must `apt-get install -y curl`)")
  ctx.skip("curl is not installed: skipping the curl end-to-end test")
  return false
}

export interface CurlResult { readonly code: number; readonly stdout: string; readonly stderr: string }

export const curl = (args: ReadonlyArray<string>): Promise<CurlResult> =>
  new Promise((resolve) => {
    execFile(curlPath ?? "curl", ["--silent", "--show-error", "--max-time", "10", ...args], { env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin" }, timeout: 15_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : -1
      resolve({ code, stdout, stderr })
    })
  })
