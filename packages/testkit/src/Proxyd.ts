/**
 * End-to-end support: the real runtime (`startServer`) serving protocol
 * handlers from a rules file, and a local HTTP origin.
 *
 * Details: the handlers are a parameter (the testkit does not depend on the
 * protocol packages), other server options (outbounds, plugins…) go in
 * `opts`. The rules file goes to `opts.dir` when given, else to a temp dir
 * that `stop()` removes; the file is not watched unless `opts.watch`. The log is in memory; `connections()` are its
 * close lines (`msg == "connection"`).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type IncomingHttpHeaders } from "node:http"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { Log, Server } from "@proxyd/runtime"

export interface Proxyd {
  port(listener: string): number
  readonly handle: Server.ServerHandle
  /** The rules file. */
  readonly file: string
  readonly log: { readonly lines: Array<string> }
  readonly lines: Array<string>
  /** Parsed JSON log lines that describe a closed connection (`msg == "connection"`). */
  connections(): Array<Record<string, unknown>>
  reload(): Promise<{ ok: boolean; message?: string }>
  stop(): Promise<void>
}

export interface ProxydOptions extends Partial<Omit<Server.ServerOptions, "rulesFile" | "handlers" | "log">> {
  /** Where the rules file goes (default: a temp dir removed by `stop()`). */
  readonly dir?: string
}

export const startProxyd = async (rules: string, handlers: Server.Handlers, opts: ProxydOptions = {}): Promise<Proxyd> => {
  const { dir, ...extra } = opts
  const own = dir === undefined ? mkdtempSync(join(tmpdir(), "proxyd-e2e-")) : undefined
  const file = join(dir ?? own!, "test.rules")
  writeFileSync(file, rules)
  const log = Log.memory("debug")
  const handle = await Effect.runPromise(Server.startServer({ watch: false, ...extra, rulesFile: file, handlers, log }))
  return {
    port: (name) => {
      const a = handle.addresses().find((x) => x.listener === name)
      if (a === undefined) throw new Error(`no listener ${name}`)
      return a.port
    },
    handle,
    file,
    log,
    lines: log.lines,
    connections: () => log.lines.flatMap((l) => {
      try {
        const o = JSON.parse(l) as Record<string, unknown>
        return o["msg"] === "connection" ? [o] : []
      } catch {
        return []
      }
    }),
    reload: () => Effect.runPromise(handle.reload()),
    stop: async () => {
      await Effect.runPromise(handle.shutdown(0))
      if (own !== undefined) rmSync(own, { recursive: true, force: true })
    },
  }
}

/** Polls `cond` every 5 ms for up to `ms`; its last answer. */
export const until = async (cond: () => boolean, ms = 5_000): Promise<boolean> => {
  const end = Date.now() + ms
  while (Date.now() < end) {
    if (cond()) return true
    await new Promise((r) => setTimeout(r, 5))
  }
  return cond()
}

export interface Origin { readonly port: number; readonly seen: Array<{ method: string; url: string; headers: IncomingHttpHeaders }>; close(): Promise<void> }

/** An HTTP server on 127.0.0.1 that records requests and answers `answer(method, url, body)` (default: `origin says hi to METHOD URL[ with BODY]`). */
export const httpOrigin = async (
  answer: (method: string, url: string, body: string) => string = (m, u, b) => `origin says hi to ${m} ${u}${b.length > 0 ? ` with ${b}` : ""}`,
): Promise<Origin> => {
  const seen: Origin["seen"] = []
  const server = createServer((req, res) => {
    seen.push({ method: req.method!, url: req.url!, headers: req.headers })
    const parts: Buffer[] = []
    req.on("data", (d: Buffer) => parts.push(d))
    req.on("end", () => res.end(answer(req.method!, req.url!, Buffer.concat(parts).toString())))
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
