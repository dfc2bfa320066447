/**
 * The admin and GeoIP plugins through the plugin registry, as `proxyd --rules` runs them:
 * the `admin` declaration opens the API, the metrics observer is registered by the
 * server, GeoIP facts come from the plugin's service; an unsafe declaration refuses to start.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { connect } from "node:net"
import { join } from "node:path"
import { Effect, Exit } from "effect"
import { describe, expect, it } from "vitest"
import { Log, Registry, Server } from "@proxyd/runtime"
import { makeHttpHandler } from "@proxyd/http"
import { geoIpPlugin } from "@proxyd/geoip"
import { PromText } from "@proxyd/metrics"
import { adminPlugin } from "../src/index.ts"

const builtins = [...Registry.builtins, geoIpPlugin, adminPlugin]

const withFile = async <A>(text: string, f: (file: string) => Promise<A>): Promise<A> => {
  const dir = mkdtempSync(join(tmpdir(), "proxyd-admin-plugin-"))
  try {
    const file = join(dir, "main.rules")
    writeFileSync(file, text)
    return await f(file)
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

describe("admin + geoip plugins via the registry", () => {
  it("opens the declared admin API, scrapes metrics, and blocks by country from the built-in database", () =>
    withFile(`admin {\n  listen 127.0.0.1:0\n}\nlisten web = http 127.0.0.1:0\npolicy main {\n  guard no-us when dst.country == US -> block\n  default allow\n}\n`, async (file) => {
      const log = Log.memory("debug")
      await Effect.runPromise(Effect.scoped(Effect.gen(function*() {
        const host = yield* Registry.start(file, { log, builtins })
        const handle = yield* Server.startServer({ rulesFile: file, handlers: { http: makeHttpHandler() }, log, watch: false, plugins: host })
        let port: number | undefined
        for (let i = 0; i < 100 && port === undefined; i++) {
          const l = log.lines.find((x) => x.includes("admin API listening"))
          if (l !== undefined) port = (JSON.parse(l) as { port: number }).port
          else yield* Effect.sleep(20)
        }
        expect(port).toBeGreaterThan(0)
        const base = `http://127.0.0.1:${port}`
        // A decision through the real listener: 8.8.8.8 is US, blocked before any connect.
        const head = yield* Effect.promise(() => new Promise<string>((ok) => {
          const s = connect(handle.addresses()[0]!.port, "127.0.0.1", () => s.write("CONNECT 8.8.8.8:443 HTTP/1.1\r\nHost: 8.8.8.8:443\r\n\r\n"))
          let h = ""
          s.on("data", (d) => { h += d.toString(); if (h.includes("\r\n\r\n")) { s.destroy(); ok(h) } })
        }))
        expect(head).toMatch(/^HTTP\/1\.1 403/)
        for (let i = 0; i < 50 && !log.lines.some((l) => l.includes('"rule":"no-us"')); i++) yield* Effect.sleep(20)
        const metrics = yield* Effect.promise(() => fetch(`${base}/metrics`).then((x) => x.text()))
        const fams = PromText.parse(metrics)
        expect(PromText.value(fams, "proxyd_policy_version", "proxyd_policy_version")).toBe(1)
        expect(PromText.value(fams, "proxyd_connections_accepted_total", "proxyd_connections_accepted_total", { listener: "web" })).toBeGreaterThanOrEqual(1)
        expect(PromText.value(fams, "proxyd_rule_hits_total", "proxyd_rule_hits_total", { policy: "main", rule: "no-us" })).toBe(1)
        expect(PromText.value(fams, "proxyd_geoip_lookups_total", "proxyd_geoip_lookups_total", { kind: "country", result: "hit" })).toBeGreaterThanOrEqual(1)
        const ready = yield* Effect.promise(() => fetch(`${base}/readyz`).then((x) => x.status))
        expect(ready).toBe(200)
        yield* handle.shutdown(0)
        for (let i = 0; i < 50; i++) {
          const ok = yield* Effect.promise(() => fetch(`${base}/healthz`).then(() => true, () => false))
          if (!ok) break
          yield* Effect.sleep(20)
        }
        const after = yield* Effect.promise(() => fetch(`${base}/healthz`).then(() => "open", () => "closed"))
        expect(after).toBe("closed")
      })))
    }))

  it("refuses to start with an admin API off loopback and no token (the file does not check: T082)", () =>
    withFile(`admin {\n  listen 0.0.0.0:0\n}\nlisten web = http 127.0.0.1:0\npolicy main {\n  default allow\n}\n`, async (file) => {
      const log = Log.memory()
      const exit = await Effect.runPromiseExit(Effect.scoped(Effect.gen(function*() {
        const host = yield* Registry.start(file, { log, builtins })
        yield* Server.startServer({ rulesFile: file, handlers: { http: makeHttpHandler() }, log, watch: false, plugins: host })
      })))
      expect(Exit.isFailure(exit)).toBe(true)
      expect(JSON.stringify(exit)).toMatch(/T082.*not loopback/)
    }))
})
