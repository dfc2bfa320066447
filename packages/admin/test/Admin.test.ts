/**
 * The admin API against the real server: `startServer` with the HTTP handler,
 * the GeoIP provider and the Prometheus metrics, every endpoint called on
 * 127.0.0.1, `/metrics` fetched with curl and parsed by a strict parser.
 * Traffic only to a local echo server (never a public address).
 */
import { execFile } from "node:child_process"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { createServer, type Server as NetServer, connect, type Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { promisify } from "node:util"
import { Effect } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Check, Explain } from "@proxyd/rules"
import { Log, Server } from "@proxyd/runtime"
import { makeHttpHandler } from "@proxyd/http"
import { GeoIp } from "@proxyd/geoip"
import { Metrics, PromText } from "@proxyd/metrics"
import { Admin, AdminConfig } from "../src/index.ts"

const RULES = `
set loopback = cidrs [127.0.0.0/8, ::1/128]
listen web = http 127.0.0.1:0
policy main {
  guard embargo when dst.country in [KP, IR] -> block "embargo"
  rule us-dns when dst.country == US and dst.port == 53 -> block "no foreign DNS"
  rule local when dst.ip in loopback -> allow
  default block
}
`

let dir: string
let file: string
let echo: NetServer
let echoPort: number
let handle: Server.ServerHandle
let admin: Admin.RunningAdmin
let base: string
const log = Log.memory("debug")
const metrics = Metrics.makeProm()
const geo = GeoIp.make({ watch: false })

const proxyPort = () => handle.addresses()[0]!.port

/** An HTTP CONNECT tunnel through proxyd to the local echo server, open after the 200. */
const tunnel = (): Promise<Socket> => new Promise((ok, fail) => {
  const s = connect(proxyPort(), "127.0.0.1", () => s.write(`CONNECT 127.0.0.1:${echoPort} HTTP/1.1\r\nHost: 127.0.0.1:${echoPort}\r\n\r\n`))
  let head = ""
  const onData = (d: Buffer) => {
    head += d.toString("latin1")
    if (!head.includes("\r\n\r\n")) return
    s.off("data", onData)
    if (head.startsWith("HTTP/1.1 200")) ok(s)
    else fail(new Error(head))
  }
  s.on("data", onData)
  s.on("error", fail)
})

const api = async (method: string, path: string, body?: unknown, token?: string, at = base) => {
  const r = await fetch(`${at}${path}`, {
    method,
    headers: { ...(body === undefined ? {} : { "content-type": "application/json" }), ...(token === undefined ? {} : { authorization: `Bearer ${token}` }) },
    ...(body === undefined ? {} : { body: JSON.stringify(body) }),
  })
  const text = await r.text()
  return { status: r.status, json: text === "" ? undefined : (JSON.parse(text) as Record<string, any>), headers: r.headers }
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "proxyd-admin-"))
  file = join(dir, "main.rules")
  writeFileSync(file, RULES)
  echo = createServer((s) => s.pipe(s))
  await new Promise<void>((r) => echo.listen(0, "127.0.0.1", () => r()))
  echoPort = (echo.address() as { port: number }).port
  handle = await Effect.runPromise(Server.startServer({
    rulesFile: file, handlers: { http: makeHttpHandler() }, log, watch: false, geoip: geo, observers: [metrics.observer],
  }))
  metrics.bindServer(handle)
  metrics.bindGeoIp(() => geo.stats())
  admin = await Admin.startAdmin({ host: "127.0.0.1", port: 0, token: undefined, server: handle, metrics, log })
  base = `http://127.0.0.1:${admin.port}`
})

afterAll(async () => {
  await admin?.close()
  await Effect.runPromise(handle.shutdown(0))
  geo.close()
  echo?.close()
  rmSync(dir, { recursive: true, force: true })
})

describe("admin API on the real server", () => {
  it("GET /healthz and /readyz (policy loaded, every listener bound)", async () => {
    expect(await api("GET", "/healthz")).toMatchObject({ status: 200, json: { status: "ok" } })
    const r = await api("GET", "/readyz")
    expect(r.status).toBe(200)
    expect(r.json).toMatchObject({ ready: true, version: 1, listeners: ["web"], missing: [] })
  })

  it("lists open sessions (filtered), closes one with DELETE, and 404s an unknown id", async () => {
    const s = await tunnel()
    s.write("ping")
    await new Promise<void>((r) => s.once("data", () => r()))
    const all = await api("GET", "/api/sessions")
    expect(all.status).toBe(200)
    const mine = (all.json!["sessions"] as Array<Record<string, unknown>>).find((x) => x["dst"] === `127.0.0.1:${echoPort}`)
    expect(mine).toMatchObject({ listener: "web", protocol: "http", rule: "local", action: "allow" })
    expect(mine!["bytesUp"]).toBe(4)
    expect((await api("GET", "/api/sessions?rule=local")).json!["sessions"]).toHaveLength(1)
    expect((await api("GET", `/api/sessions?dst=${echoPort}`)).json!["sessions"]).toHaveLength(1)
    expect((await api("GET", "/api/sessions?rule=embargo")).json!["sessions"]).toHaveLength(0)
    expect((await api("GET", "/api/sessions?user=alice")).json!["sessions"]).toHaveLength(0)
    const closed = new Promise<void>((r) => s.once("close", () => r()))
    const del = await api("DELETE", `/api/sessions/${mine!["id"] as string}`)
    expect(del.status).toBe(204)
    await closed
    for (let i = 0; i < 50 && !log.lines.some((l) => l.includes('"outcome":"killed"')); i++) await new Promise((r) => setTimeout(r, 20))
    expect(log.lines.some((l) => l.includes('"outcome":"killed"') && l.includes('"rule":"local"'))).toBe(true)
    expect((await api("GET", "/api/sessions")).json!["sessions"]).toHaveLength(0)
    expect((await api("DELETE", `/api/sessions/${mine!["id"] as string}`)).status).toBe(404)
  })

  it("GET /api/policy: version, source hash, rules with hit counts", async () => {
    const r = await api("GET", "/api/policy")
    expect(r.status).toBe(200)
    expect(r.json!["version"]).toBe(1)
    expect(r.json!["hash"]).toMatch(/^[0-9a-f]{64}$/)
    const rules = (r.json!["policies"] as Array<{ name: string; rules: Array<{ name: string; hits: number; kind: string }> }>)[0]!.rules
    expect(rules.map((x) => [x.name, x.kind])).toEqual([["embargo", "guard"], ["us-dns", "rule"], ["local", "rule"], ["default", "default"]])
    expect(rules.find((x) => x.name === "local")!.hits).toBeGreaterThanOrEqual(1)
    expect(rules.find((x) => x.name === "embargo")!.hits).toBe(0)
  })

  it("POST /api/explain answers what `proxyd explain --format json` prints", async () => {
    const body = { target: "203.0.113.9:443", facts: { "dst.country": "KP", "dst.ip": "203.0.113.9" } }
    const r = await api("POST", "/api/explain", body)
    expect(r.status).toBe(200)
    expect(r.json!["rule"]).toBe("embargo")
    const program = Check.checkFiles([file], Check.nodeReader).program!
    const direct = Explain.explain(program, "main", { command: "connect", dstHost: "203.0.113.9", dstPort: 443, auth: "none", facts: { "dst.country": "KP", "dst.ip": "203.0.113.9" } })
    expect(r.json).toEqual(JSON.parse(JSON.stringify(direct)))
    const bad = await api("POST", "/api/explain", { target: "nope" })
    expect(bad.status).toBe(400)
    expect(bad.json!["error"]).toMatch(/target/)
  })

  it("decides on GeoIP country at run time (built-in database, no traffic leaves the machine)", async () => {
    // 8.8.8.8:53 is US in the CC0 database: blocked by `us-dns` before any connect.
    const s = connect(proxyPort(), "127.0.0.1", () => s.write("CONNECT 8.8.8.8:53 HTTP/1.1\r\nHost: 8.8.8.8:53\r\n\r\n"))
    const head = await new Promise<string>((r) => { let h = ""; s.on("data", (d) => { h += d.toString(); if (h.includes("\r\n\r\n")) r(h) }) })
    s.destroy()
    expect(head).toMatch(/^HTTP\/1\.1 403/)
    for (let i = 0; i < 50 && !log.lines.some((l) => l.includes('"rule":"us-dns"')); i++) await new Promise((r) => setTimeout(r, 20))
    const line = JSON.parse(log.lines.find((l) => l.includes('"rule":"us-dns"'))!) as Record<string, unknown>
    expect(line).toMatchObject({ action: "block", outcome: "blocked", dst: "8.8.8.8:53" })
    expect(line["dst_connected"]).toBeUndefined()
  })

  it("GET /metrics (curl) parses as Prometheus text and counts what happened", async () => {
    const { stdout } = await promisify(execFile)("curl", ["-sS", "--fail", "-H", "Accept: text/plain", `${base}/metrics`])
    const fams = PromText.parse(stdout)
    for (const f of fams.keys()) if (!f.startsWith("process_") && !f.startsWith("nodejs_")) expect(f).toMatch(/^proxyd_/)
    expect(PromText.value(fams, "proxyd_connections_accepted_total", "proxyd_connections_accepted_total", { listener: "web" })).toBeGreaterThanOrEqual(2)
    expect(PromText.value(fams, "proxyd_connections_closed_total", "proxyd_connections_closed_total", { listener: "web", protocol: "http", action: "allow", outcome: "killed" })).toBe(1)
    expect(PromText.value(fams, "proxyd_connections_closed_total", "proxyd_connections_closed_total", { listener: "web", action: "block", outcome: "blocked" })).toBe(1)
    expect(PromText.value(fams, "proxyd_rule_hits_total", "proxyd_rule_hits_total", { policy: "main", rule: "us-dns", action: "block" })).toBe(1)
    expect(PromText.value(fams, "proxyd_bytes_total", "proxyd_bytes_total", { listener: "web", direction: "up" })).toBe(4)
    expect(PromText.value(fams, "proxyd_connections_active", "proxyd_connections_active", { listener: "web" })).toBe(0)
    expect(PromText.value(fams, "proxyd_decision_duration_seconds", "proxyd_decision_duration_seconds_count", { listener: "web" })).toBeGreaterThanOrEqual(2)
    expect(PromText.value(fams, "proxyd_outbound_connect_duration_seconds", "proxyd_outbound_connect_duration_seconds_count", { action: "allow", result: "success" })).toBe(1)
    expect(PromText.value(fams, "proxyd_geoip_lookups_total", "proxyd_geoip_lookups_total", { kind: "country", result: "hit" })).toBeGreaterThanOrEqual(1)
    expect(PromText.value(fams, "proxyd_policy_version", "proxyd_policy_version")).toBe(1)
    expect(fams.get("proxyd_policy_info")!.samples[0]!.labels["hash"]).toMatch(/^[0-9a-f]{64}$/)
    expect(fams.get("process_cpu_user_seconds_total")?.type).toBe("counter")
    expect(fams.get("proxyd_handshake_duration_seconds")?.type).toBe("histogram")
  })

  it("POST /api/reload: 422 with diagnostics for a broken file (old policy keeps serving), 200 when fixed", async () => {
    writeFileSync(file, RULES.replace("default block", "default blok"))
    const bad = await api("POST", "/api/reload")
    expect(bad.status).toBe(422)
    expect(bad.json).toMatchObject({ ok: false, version: 1 })
    expect(bad.json!["diagnostics"]).toMatch(/blok/)
    writeFileSync(file, RULES)
    const good = await api("POST", "/api/reload")
    expect(good).toMatchObject({ status: 200, json: { ok: true, version: 2 } })
    writeFileSync(file, `geoip "missing.mmdb"\n${RULES}`)
    const noDb = await api("POST", "/api/reload")
    expect(noDb.status).toBe(422)
    expect(noDb.json!["diagnostics"]).toMatch(/missing\.mmdb.*cannot be opened/)
    writeFileSync(file, RULES)
    const fams = PromText.parse(await metrics.scrape())
    expect(PromText.value(fams, "proxyd_reloads_total", "proxyd_reloads_total", { result: "failure" })).toBe(2)
    expect(PromText.value(fams, "proxyd_reloads_total", "proxyd_reloads_total", { result: "success" })).toBe(1)
  })

  it("GET /api/upstreams and POST /api/tor/newnym: 501 when the server runs without them", async () => {
    const u = await api("GET", "/api/upstreams")
    expect(u.status).toBe(501)
    expect(u.json!["error"]).toMatch(/without upstream/)
    const t = await api("POST", "/api/tor/newnym")
    expect(t.status).toBe(501)
    expect(t.json!["error"]).toMatch(/without Tor/)
    expect((await api("GET", "/api/tor/newnym")).status).toBe(405)
    expect((await api("GET", "/nope")).status).toBe(404)
  })

  it("GET /api/upstreams and POST /api/tor/newnym with providers: status and NEWNYM", async () => {
    let nym = 0
    const a = await Admin.startAdmin({
      host: "127.0.0.1", port: 0, token: "s3cret-token", server: handle, metrics,
      upstreams: () => [{ group: "pool", members: [{ name: "a", up: true, latencyMs: 12 }, { name: "b", up: false }] }],
      tor: { newnym: async () => { nym++ }, status: () => [{ name: "tor", socks: "127.0.0.1:9050" }] },
    })
    try {
      const at = `http://127.0.0.1:${a.port}`
      expect((await api("GET", "/api/upstreams", undefined, undefined, at)).status).toBe(401)
      expect((await api("GET", "/api/upstreams", undefined, "wrong", at)).status).toBe(401)
      expect((await api("GET", "/healthz", undefined, undefined, at)).status).toBe(200)
      const u = await api("GET", "/api/upstreams", undefined, "s3cret-token", at)
      expect(u).toMatchObject({ status: 200, json: { groups: [{ group: "pool", members: [{ name: "a", up: true, latencyMs: 12 }, { name: "b", up: false }] }] } })
      expect(await api("POST", "/api/tor/newnym", undefined, "s3cret-token", at)).toMatchObject({ status: 200, json: { ok: true } })
      expect(nym).toBe(1)
      expect((await api("GET", "/metrics", undefined, undefined, at)).status).toBe(401)
    } finally {
      await a.close()
    }
  })
})

describe("the admin declaration", () => {
  const programOf = (text: string) => {
    const f = join(dir, "decl.rules")
    writeFileSync(f, text)
    return Check.checkFiles([f], Check.nodeReader, { plugins: [{ ...AdminConfig.adminVocabulary, plugin: "proxyd.admin" }] })
  }
  const base = "listen mixed 127.0.0.1:1080\npolicy main {\n  default allow\n}\n"

  it("defaults to 127.0.0.1:9090 without a token; reads the token from the environment", () => {
    const r = programOf(`admin {\n  listen 127.0.0.1:9191\n}\n${base}`)
    expect(AdminConfig.adminConfig(r.program!)).toEqual({ host: "127.0.0.1", port: 9191, token: undefined })
    process.env["PROXYD_TEST_ADMIN_TOKEN"] = "t0k"
    const t = programOf(`admin {\n  listen 0.0.0.0:9090\n  token env(PROXYD_TEST_ADMIN_TOKEN)\n}\n${base}`)
    expect(AdminConfig.adminConfig(t.program!)).toEqual({ host: "0.0.0.0", port: 9090, token: "t0k" })
    expect(AdminConfig.adminConfig(programOf(base).program!)).toBeUndefined()
  })

  it("refuses a non-loopback admin listener without a token", () => {
    // `check` refuses this declaration (T082); adminConfig refuses it again at load, for programs built without check.
    expect(programOf(`admin {\n  listen 0.0.0.0:9090\n}\n${base}`).diagnostics.map((d) => d.code)).toEqual(["T082"])
    const r = programOf(`admin {\n  listen 127.0.0.1:9090\n}\n${base}`)
    const d = r.program!.pluginDecls![0]!
    const c = AdminConfig.adminConfig({ ...r.program!, pluginDecls: [{ ...d, settings: { ...d.settings, listen: { host: "0.0.0.0", port: 9090 } } }] })
    expect(Array.isArray(c)).toBe(true)
    expect((c as Array<string>)[0]).toMatch(/not loopback.*token/)
  })

  it("check rejects unknown admin settings (the plugin vocabulary)", () => {
    const r = programOf(`admin {\n  listn 127.0.0.1:9090\n}\n${base}`)
    expect(r.program).toBeUndefined()
    expect(r.diagnostics.map((d) => d.message).join("\n")).toMatch(/listn/)
  })
})

describe("docs/admin-api.yaml", () => {
  it("documents exactly the routes the server answers", async () => {
    const { readFileSync } = await import("node:fs")
    const text = readFileSync(new URL("../../../docs/admin-api.yaml", import.meta.url), "utf8")
    const paths = [...text.matchAll(/^ {2}(\/[^:]+):$/gm)].map((m) => m[1])
    expect(paths).toEqual(["/healthz", "/readyz", "/metrics", "/api/sessions", "/api/sessions/{id}", "/api/policy", "/api/reload", "/api/explain", "/api/upstreams", "/api/tor/newnym"])
    const src = readFileSync(new URL("../src/Admin.ts", import.meta.url), "utf8")
    for (const p of paths) expect(src).toContain(p === "/api/sessions/{id}" ? "\\/api\\/sessions\\/([^/]+)" : `"${p}"`)
  })
})
