/**
 * The admin API: a small HTTP server beside the proxy's listeners.
 *
 * Details: plain `node:http` (no framework: ten routes, JSON in and out, no
 * new dependency; the effect HTTP stack would need `@effect/platform-node`).
 * Routes (documented in `docs/admin-api.yaml`):
 *   GET    /healthz             200 while the process serves
 *   GET    /readyz              200 when the policy is loaded and every listener is bound, else 503
 *   GET    /metrics             Prometheus text (the Metrics service)
 *   GET    /api/sessions        open sessions; `?user=`, `?dst=` (substring), `?rule=`, `?listener=` filter
 *   DELETE /api/sessions/:id    closes one (204; 404 when not open)
 *   GET    /api/policy          version, source hash, files, listeners, policies, rule hits
 *   POST   /api/reload          200 `{ ok: true, version }`; 422 `{ ok: false, diagnostics }`
 *   POST   /api/explain         `proxyd explain --format json` output for a JSON request
 *   GET    /api/upstreams       upstream groups (health, latency) and Tor endpoints; 501 without them
 *   POST   /api/tor/newnym      new Tor circuits (`?name=`); 501 without Tor
 * With a token, every route but /healthz and /readyz needs
 * `Authorization: Bearer TOKEN` (compared in constant time; 401 otherwise).
 * Errors are `{ "error": "..." }`. Request bodies are limited to 64 KiB.
 *
 * Gotchas: the server holds no state of its own: it reads the `ServerHandle`
 * (policy store, sessions, reload) at each request.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from "node:http"
import { timingSafeEqual, createHash } from "node:crypto"
import type { AddressInfo } from "node:net"
import { Effect } from "effect"
import { Explain } from "@proxyd/rules"
import type { Ir } from "@proxyd/rules"
import type { Log, Observe } from "@proxyd/runtime"
import { Metrics } from "@proxyd/metrics"
import { buildExplainRequest } from "./ExplainRequest.ts"

export interface AdminOptions {
  readonly host: string
  readonly port: number
  readonly token: string | undefined
  /** The server's handle (`ServerHandle` fits). */
  readonly server: Observe.StartedServer
  readonly metrics: Metrics.MetricsShape
  readonly log?: Log.Log
  /** `@proxyd/upstream`'s `status()`, when upstreams are served. */
  readonly upstreams?: () => ReadonlyArray<Metrics.UpstreamGroupStatus>
  /** `@proxyd/tor`'s outbound, when Tor is served. */
  readonly tor?: { newnym(name?: string): Promise<void>; status(): ReadonlyArray<unknown> }
  /** Set under `workers N`: answers for every worker, not this one alone. */
  readonly cluster?: Cluster
}

/**
 * The other workers of `workers N` (`Workers.peers()` behind it): the API of worker 1 answers
 * for the whole process — sessions and rule hits of every worker, metrics summed over them,
 * reloads of all, ready when all serve.
 */
export interface Cluster {
  metrics(): Promise<string>
  sessions(): Promise<ReadonlyArray<Observe.SessionInfo>>
  kill(id: string): Promise<boolean>
  hits(): Promise<ReadonlyArray<{ readonly policy: string; readonly rule: string; readonly hits: number }>>
  reload(): Promise<{ readonly ok: boolean; readonly version: number; readonly message?: string }>
  status(): Promise<{ readonly ready: number; readonly workers: number }>
}

export interface RunningAdmin {
  readonly host: string
  readonly port: number
  close(): Promise<void>
}

const MAX_BODY = 64 * 1024

class HttpError extends Error {
  readonly status: number
  constructor(status: number, message: string) {
    super(message)
    this.status = status
  }
}

const send = (res: ServerResponse, status: number, body: unknown): void => {
  const text = body === undefined ? "" : `${JSON.stringify(body, null, 2)}\n`
  res.writeHead(status, { "content-type": "application/json; charset=utf-8", "cache-control": "no-store", "content-length": Buffer.byteLength(text) })
  res.end(text)
}

const readJson = (req: IncomingMessage): Promise<unknown> => new Promise((ok, fail) => {
  const chunks: Array<Buffer> = []
  let size = 0
  req.on("data", (c: Buffer) => {
    size += c.length
    if (size > MAX_BODY) { fail(new HttpError(413, "request body over 64 KiB")); req.destroy(); return }
    chunks.push(c)
  })
  req.on("end", () => {
    const text = Buffer.concat(chunks).toString("utf8").trim()
    if (text === "") return ok({})
    try { ok(JSON.parse(text)) } catch { fail(new HttpError(400, "the body is not JSON")) }
  })
  req.on("error", fail)
})

const digest = (s: string): Buffer => createHash("sha256").update(s).digest()

/** Summary of the policy state (GET /api/policy). */
export const policySummary = (state: { readonly version: number; readonly files: ReadonlyArray<string>; readonly program: Ir.Program; readonly listeners: ReadonlyArray<{ readonly name: string; readonly kind: string; readonly host: string; readonly port: number; readonly policy: string }> }, hits: ReturnType<Metrics.MetricsShape["ruleHits"]>) => {
  const counts = new Map<string, number>()
  for (const h of hits) counts.set(`${h.policy}\0${h.rule}`, (counts.get(`${h.policy}\0${h.rule}`) ?? 0) + h.hits)
  return {
    version: state.version,
    hash: Metrics.sourceHash(state.files),
    files: state.files,
    defaultPolicy: state.program.defaultPolicy ?? null,
    listeners: state.listeners.map((l) => ({ name: l.name, kind: l.kind, host: l.host, port: l.port, policy: l.policy })),
    policies: [...state.program.policies.values()].map((p) => ({
      name: p.name,
      rules: [...p.guards, ...p.rules, p.default].map((r) => ({
        name: r.name,
        kind: r === p.default ? "default" : p.guards.includes(r) ? "guard" : "rule",
        action: r.action.k,
        location: r.span === undefined ? null : `${r.span.file}:${r.span.start.line}`,
        hits: counts.get(`${p.name}\0${r.name}`) ?? 0,
      })),
    })),
    tests: state.program.tests.length,
  }
}

export const startAdmin = (opts: AdminOptions): Promise<RunningAdmin> => {
  const { server: handle, metrics, cluster } = opts
  const want = opts.token === undefined ? undefined : digest(opts.token)
  const authorized = (req: IncomingMessage): boolean => {
    if (want === undefined) return true
    const h = req.headers.authorization ?? ""
    const m = /^Bearer (.+)$/.exec(h)
    return m !== null && timingSafeEqual(digest(m[1]!), want)
  }

  const route = async (req: IncomingMessage, res: ServerResponse): Promise<void> => {
    const url = new URL(req.url ?? "/", "http://admin")
    const path = url.pathname
    const method = req.method ?? "GET"
    const only = (m: string) => { if (method !== m) throw new HttpError(405, `${path} takes ${m}`) }
    if (path === "/healthz") { only("GET"); return send(res, 200, { status: "ok" }) }
    if (path === "/readyz") {
      only("GET")
      const state = handle.store.current()
      const bound = handle.addresses().map((a) => a.listener)
      const missing = state.listeners.filter((l) => !bound.includes(l.name)).map((l) => l.name)
      const workers = cluster === undefined ? undefined : await cluster.status()
      const ready = missing.length === 0 && (workers === undefined || workers.ready === workers.workers)
      return send(res, ready ? 200 : 503, { ready, version: state.version, listeners: bound, missing, ...(workers === undefined ? {} : { workers }) })
    }
    if (!authorized(req)) {
      res.setHeader("www-authenticate", 'Bearer realm="proxyd"')
      throw new HttpError(401, "a bearer token is required")
    }
    if (path === "/metrics") {
      only("GET")
      const text = await (cluster === undefined ? metrics.scrape() : cluster.metrics())
      res.writeHead(200, { "content-type": metrics.contentType, "cache-control": "no-store" })
      res.end(text)
      return
    }
    if (path === "/api/sessions") {
      only("GET")
      const q = url.searchParams
      const user = q.get("user"), dst = q.get("dst"), rule = q.get("rule"), listener = q.get("listener")
      const sessions = (cluster === undefined ? handle.sessions.list() : await cluster.sessions()).filter((s) =>
        (user === null || s.user === user) && (rule === null || s.rule === rule) && (listener === null || s.listener === listener)
        && (dst === null || (s.dst ?? "").includes(dst)))
      return send(res, 200, { sessions })
    }
    const sm = /^\/api\/sessions\/([^/]+)$/.exec(path)
    if (sm !== null) {
      only("DELETE")
      const id = decodeURIComponent(sm[1]!)
      if (!(cluster === undefined ? handle.sessions.kill(id) : await cluster.kill(id))) throw new HttpError(404, `no open session \`${sm[1]}\``)
      opts.log?.info("admin: session closed", { session: sm[1] })
      res.writeHead(204)
      res.end()
      return
    }
    if (path === "/api/policy") {
      only("GET")
      return send(res, 200, policySummary(handle.store.current(), cluster === undefined ? metrics.ruleHits() : await cluster.hits()))
    }
    if (path === "/api/reload") {
      only("POST")
      const r = cluster === undefined ? await Effect.runPromise(handle.reload()) : await cluster.reload()
      opts.log?.info("admin: reload", { ok: r.ok, version: r.version })
      return send(res, r.ok ? 200 : 422, r.ok ? { ok: true, version: r.version } : { ok: false, version: r.version, diagnostics: r.message ?? "" })
    }
    if (path === "/api/explain") {
      only("POST")
      const body = await readJson(req)
      const program = handle.store.current().program
      const built = buildExplainRequest(program, body)
      if (typeof built === "string") throw new HttpError(400, built)
      return send(res, 200, Explain.explain(program, built.policy, built.request))
    }
    if (path === "/api/upstreams") {
      only("GET")
      if (opts.upstreams === undefined && opts.tor === undefined) throw new HttpError(501, "this server runs without upstream groups or Tor (start it with @proxyd/upstream / @proxyd/tor)")
      return send(res, 200, { groups: opts.upstreams?.() ?? [], tor: opts.tor?.status() ?? [] })
    }
    if (path === "/api/tor/newnym") {
      only("POST")
      if (opts.tor === undefined) throw new HttpError(501, "this server runs without Tor: NEWNYM needs a `tor` declaration and the Tor outbound (@proxyd/tor)")
      const name = url.searchParams.get("name") ?? undefined
      try {
        await opts.tor.newnym(name)
      } catch (e) {
        throw new HttpError(502, `NEWNYM failed: ${e instanceof Error ? e.message : String(e)}`)
      }
      opts.log?.info("admin: tor newnym", { tor: name })
      return send(res, 200, { ok: true })
    }
    throw new HttpError(404, `no route ${method} ${path}`)
  }

  const http: Server = createServer((req, res) => {
    route(req, res).catch((e: unknown) => {
      if (res.headersSent) { res.destroy(); return }
      if (e instanceof HttpError) send(res, e.status, { error: e.message })
      else {
        opts.log?.error("admin: internal error", { error: e instanceof Error ? e.message : String(e) })
        send(res, 500, { error: "internal error" })
      }
    })
  })
  http.headersTimeout = 10_000
  http.requestTimeout = 30_000
  return new Promise((ok, fail) => {
    http.once("error", fail)
    http.listen(opts.port, opts.host, () => {
      http.off("error", fail)
      const a = http.address() as AddressInfo
      opts.log?.info("admin API listening", { host: a.address, port: a.port, auth: opts.token === undefined ? "none" : "bearer token" })
      ok({
        host: a.address,
        port: a.port,
        close: () => new Promise<void>((done) => { http.close(() => done()); http.closeAllConnections() }),
      })
    })
  })
}
