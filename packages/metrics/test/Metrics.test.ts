import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { Metrics, PromText } from "../src/index.ts"

const docs = readFileSync(new URL("../../../docs/metrics.md", import.meta.url), "utf8")
const dashboard = readFileSync(new URL("../../../docs/grafana/proxyd.json", import.meta.url), "utf8")

/** A Metrics service fed one of everything, with fake sources bound. */
const fed = () => {
  const m = Metrics.makeProm()
  m.bindServer({ store: { current: () => ({ version: 3, files: [] }) }, sessions: { size: () => 2 } })
  m.bindGeoIp(() => ({ lookups: { country_hit: 5, country_miss: 1, asn_hit: 0, asn_miss: 2 } }))
  m.bindUpstreams(() => [{ group: "pool", members: [{ name: "a", up: true, latencyMs: 40 }, { name: "b", up: false }] }])
  const o = m.observer
  o.accepted?.({ listener: "l" })
  o.authenticated?.({ listener: "l", ok: false })
  o.decided?.({ listener: "l", protocol: "socks5", policy: "p", rule: "r", action: "allow", durationMs: 2 })
  o.connected?.({ listener: "l", action: "allow", ok: true, durationMs: 30 })
  o.closed?.({ listener: "l", protocol: "socks5", action: "allow", rule: "r", outcome: "weird free text", bytesUp: 10, bytesDown: 20, durationMs: 1000, handshakeMs: 5 })
  o.reloaded?.({ ok: true, version: 2 })
  m.recordBan("ip")
  m.recordProbe("pool", "a", true, 40)
  return m
}

describe("Prometheus metrics", () => {
  it("exposes what the observer saw, with bounded labels", async () => {
    const fams = PromText.parse(await fed().scrape())
    expect(PromText.value(fams, "proxyd_connections_closed_total", "proxyd_connections_closed_total", { outcome: "other" })).toBe(1)
    expect(PromText.value(fams, "proxyd_connections_active", "proxyd_connections_active", { listener: "l" })).toBe(0)
    expect(PromText.value(fams, "proxyd_bytes_total", "proxyd_bytes_total", { direction: "down" })).toBe(20)
    expect(PromText.value(fams, "proxyd_auth_attempts_total", "proxyd_auth_attempts_total", { result: "failure" })).toBe(1)
    expect(PromText.value(fams, "proxyd_policy_version", "proxyd_policy_version")).toBe(3)
    expect(PromText.value(fams, "proxyd_sessions_open", "proxyd_sessions_open")).toBe(2)
    expect(PromText.value(fams, "proxyd_geoip_lookups_total", "proxyd_geoip_lookups_total", { kind: "asn", result: "miss" })).toBe(2)
    expect(PromText.value(fams, "proxyd_upstream_up", "proxyd_upstream_up", { group: "pool", member: "b" })).toBe(0)
    expect(PromText.value(fams, "proxyd_upstream_latency_seconds", "proxyd_upstream_latency_seconds", { member: "a" })).toBe(0.04)
    expect(PromText.value(fams, "proxyd_bans_total", "proxyd_bans_total", { scope: "ip" })).toBe(1)
    expect(PromText.value(fams, "proxyd_connection_duration_seconds", "proxyd_connection_duration_seconds_sum", { listener: "l" })).toBe(1)
  })

  it("GeoIP counters grow by the difference between scrapes", async () => {
    const m = Metrics.makeProm({ processMetrics: false })
    let hits = 1
    m.bindGeoIp(() => ({ lookups: { country_hit: hits } }))
    expect(PromText.value(PromText.parse(await m.scrape()), "proxyd_geoip_lookups_total", "proxyd_geoip_lookups_total", { result: "hit" })).toBe(1)
    hits = 4
    expect(PromText.value(PromText.parse(await m.scrape()), "proxyd_geoip_lookups_total", "proxyd_geoip_lookups_total", { result: "hit" })).toBe(4)
  })

  it("plugins report by name; bad names and changed label sets are ignored, never thrown", async () => {
    const m = Metrics.makeProm({ processMetrics: false })
    m.inc("proxyd_bans_total", { scope: "user" })
    m.inc("proxyd_plugin_things_total", { kind: "a" }, 2)
    m.inc("proxyd_plugin_things_total", { other: "x" })
    m.inc("Not A Name", {})
    m.set("proxyd_plugin_level", 7)
    m.observe("proxyd_plugin_wait_seconds", 0.2, { step: "x" })
    const fams = PromText.parse(await m.scrape())
    expect(PromText.value(fams, "proxyd_bans_total", "proxyd_bans_total", { scope: "user" })).toBe(1)
    expect(PromText.value(fams, "proxyd_plugin_things_total", "proxyd_plugin_things_total", { kind: "a" })).toBe(2)
    expect(PromText.value(fams, "proxyd_plugin_level", "proxyd_plugin_level")).toBe(7)
    expect(PromText.value(fams, "proxyd_plugin_wait_seconds", "proxyd_plugin_wait_seconds_count", { step: "x" })).toBe(1)
  })

  it("the no-op layer exposes nothing but still counts rule hits for the admin API", async () => {
    const m = Metrics.makeNoop()
    m.observer.decided?.({ listener: "l", protocol: "http", policy: "p", rule: "r", action: "block", durationMs: 1 })
    m.inc("proxyd_x_total")
    expect(await m.scrape()).toBe("")
    expect(m.ruleHits()).toEqual([{ policy: "p", rule: "r", hits: 1 }])
  })

  it("docs/metrics.md lists exactly the proxyd metrics and the process metrics exposed; the dashboard uses only listed metrics", async () => {
    const fams = PromText.parse(await fed().scrape())
    const listed = new Set([...docs.matchAll(/`((?:proxyd|process|nodejs)_[a-z0-9_]+)`/g)].map((x) => x[1]!))
    for (const name of fams.keys()) expect(listed, `${name} is not in docs/metrics.md`).toContain(name)
    for (const name of listed) if (name.startsWith("proxyd_")) expect(fams.has(name), `${name} is documented but not exposed`).toBe(true)
    const used = new Set([...dashboard.matchAll(/\b((?:proxyd|process|nodejs)_[a-z0-9_]+?)(?:_bucket|_sum|_count)?\b/g)].map((x) => x[1]!))
    for (const name of used) expect(listed.has(name) || fams.has(name), `dashboard uses ${name}`).toBe(true)
  })
})

describe("strict Prometheus text parser", () => {
  it("accepts a well-formed exposition", () => {
    const f = PromText.parse('# HELP a_total A.\n# TYPE a_total counter\na_total{x="1\\"q\\\\ \\n"} 3\n# TYPE h histogram\nh_bucket{le="1"} 1\nh_bucket{le="+Inf"} 2\nh_sum 1.5\nh_count 2\n')
    expect(f.get("a_total")!.samples[0]!.labels["x"]).toBe('1"q\\ \n')
    expect(PromText.value(f, "h", "h_count")).toBe(2)
  })

  it.each([
    ["a_total 1", /newline/],
    ["a-b 1\n", /not a sample/],
    ['a{x="1",x="2"} 1\n', /twice/],
    ['a{x="\\q"} 1\n', /escape/],
    ["a 1\na 2\n", /duplicate/],
    ["a one\n", /bad value/],
    ["# TYPE a counter\n# TYPE a gauge\n", /twice/],
    ['# TYPE h histogram\nh_bucket{le="1"} 2\nh_bucket{le="+Inf"} 1\nh_count 1\n', /cumulative/],
    ['# TYPE h histogram\nh_bucket{le="1"} 1\nh_count 1\n', /\+Inf/],
    ['# TYPE h histogram\nh_bucket{le="+Inf"} 2\nh_count 1\n', /_count/],
  ])("rejects %j", (text, why) => {
    expect(() => PromText.parse(text)).toThrow(why)
  })
})
