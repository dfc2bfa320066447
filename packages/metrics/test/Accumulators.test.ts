import { describe, expect, it } from "vitest"
import * as Prom from "prom-client"
import * as Metrics from "../src/Metrics.ts"

describe("observer accumulators publish exact values at scrape", () => {
  it("counts, gauges and bytes after a known sequence", async () => {
    const m = Metrics.makeProm({ processMetrics: false })
    const o = m.observer
    for (let i = 0; i < 3; i++) o.accepted!({ listener: "s" })
    o.decided!({ listener: "s", protocol: "socks5", policy: "p", rule: "r", action: "direct", durationMs: 2 })
    o.closed!({ listener: "s", protocol: "socks5", action: "direct", rule: "r", outcome: "ok", bytesUp: 10, bytesDown: 0, durationMs: 30, handshakeMs: 1 })
    o.closed!({ listener: "s", protocol: undefined, action: undefined, rule: undefined, outcome: "weird", bytesUp: 5, bytesDown: 7, durationMs: 1, handshakeMs: undefined })
    const t = await m.scrape()
    expect(t).toContain('proxyd_connections_accepted_total{listener="s"} 3\n')
    expect(t).toContain('proxyd_connections_active{listener="s"} 1\n')
    expect(t).toContain('proxyd_connections_closed_total{listener="s",protocol="socks5",action="direct",outcome="ok"} 1\n')
    expect(t).toContain('proxyd_connections_closed_total{listener="s",protocol="none",action="none",outcome="other"} 1\n')
    expect(t).toContain('proxyd_bytes_total{listener="s",direction="up"} 15\n')
    expect(t).toContain('proxyd_bytes_total{listener="s",direction="down"} 7\n')
    expect(t).toContain('proxyd_rule_hits_total{policy="p",rule="r",action="direct"} 1\n')
    expect(t).toContain('proxyd_decision_duration_seconds_bucket{le="0.005",listener="s"} 1\n')
    expect(t).toContain('proxyd_connection_duration_seconds_count{listener="s",protocol="socks5"} 1\n')
    // a second scrape does not double-count
    expect(await m.scrape()).toContain('proxyd_connections_accepted_total{listener="s"} 3\n')
  })

  // One metric family's lines (HELP, TYPE, samples) from an exposition.
  const family = (text: string, name: string): string => {
    const blocks = text.split("\n\n").filter((b) => b.startsWith(`# HELP ${name} `))
    expect(blocks).toHaveLength(1)
    return blocks[0]!.trimEnd()
  }

  it("histograms: exact bucket lines, _sum, _count for two label sets", async () => {
    const m = Metrics.makeProm({ processMetrics: false })
    const o = m.observer
    // a: on a bound (0.005 falls in le=0.005), just above it, in the first bucket, above the last bound
    for (const ms of [5, 5.5, 0.5, 20000]) o.decided!({ listener: "a", protocol: "socks5", policy: "p", rule: "r", action: "direct", durationMs: ms })
    // b: first seen after a, one value in le=0.25
    o.decided!({ listener: "b", protocol: "http", policy: "p", rule: "r", action: "direct", durationMs: 200 })
    const want = [
      "# HELP proxyd_decision_duration_seconds Policy decision time including DNS and GeoIP lookups the policy needed.",
      "# TYPE proxyd_decision_duration_seconds histogram",
      ...([["0.001", 1], ["0.005", 2], ["0.01", 3], ["0.025", 3], ["0.05", 3], ["0.1", 3], ["0.25", 3], ["0.5", 3], ["1", 3], ["2.5", 3], ["5", 3], ["10", 3], ["+Inf", 4]] as const)
        .map(([le, n]) => `proxyd_decision_duration_seconds_bucket{le="${le}",listener="a"} ${n}`),
      `proxyd_decision_duration_seconds_sum{listener="a"} ${0.005 + 0.0055 + 0.0005 + 20}`,
      'proxyd_decision_duration_seconds_count{listener="a"} 4',
      ...([["0.001", 0], ["0.005", 0], ["0.01", 0], ["0.025", 0], ["0.05", 0], ["0.1", 0], ["0.25", 1], ["0.5", 1], ["1", 1], ["2.5", 1], ["5", 1], ["10", 1], ["+Inf", 1]] as const)
        .map(([le, n]) => `proxyd_decision_duration_seconds_bucket{le="${le}",listener="b"} ${n}`),
      'proxyd_decision_duration_seconds_sum{listener="b"} 0.2',
      'proxyd_decision_duration_seconds_count{listener="b"} 1',
    ].join("\n")
    expect(family(await m.scrape(), "proxyd_decision_duration_seconds")).toBe(want)
    // a rescrape neither double-counts nor changes anything
    expect(family(await m.scrape(), "proxyd_decision_duration_seconds")).toBe(want)
  })

  it("histograms: exposition identical to prom-client's own observe() for the same events", async () => {
    const m = Metrics.makeProm({ processMetrics: false })
    const o = m.observer
    const ref = new Prom.Registry()
    const DURATION = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    const mk = (name: string, help: string, labelNames: Array<string>, buckets: Array<number>) => new Prom.Histogram({ name, help, labelNames, buckets, registers: [ref] })
    const handshake = mk("proxyd_handshake_duration_seconds", "From accept to the client's request (TLS, sniffing, protocol handshake, auth).", ["listener"], DURATION)
    const decision = mk("proxyd_decision_duration_seconds", "Policy decision time including DNS and GeoIP lookups the policy needed.", ["listener"], DURATION)
    const connect = mk("proxyd_outbound_connect_duration_seconds", "Outbound connect time (direct, upstream chain or Tor), by action kind and result.", ["listener", "action", "result"], DURATION)
    const total = mk("proxyd_connection_duration_seconds", "Whole connection lifetime, by listener and protocol.", ["listener", "protocol"], [0.1, 0.5, 1, 5, 15, 60, 300, 900, 3600])
    // Deterministic spread over every bucket, bounds included, and above the last one.
    const ms = [0, 1, 3, 5, 7, 10, 25, 49, 100, 250, 400, 500, 999, 1000, 2500, 4999, 5000, 10000, 15000, 60000, 77777, 300000, 900000, 3600000, 4000000]
    for (let i = 0; i < 200; i++) {
      const listener = ["a", "b", "c"][i % 3]!, protocol = i % 4 === 0 ? "http" : "socks5", action = i % 5 === 0 ? "block" : "direct", ok = i % 7 !== 0
      const d = ms[i % ms.length]!, d2 = ms[(i * 7) % ms.length]!
      o.decided!({ listener, protocol, policy: "p", rule: "r", action, durationMs: d })
      decision.observe({ listener }, d / 1000)
      o.connected!({ listener, action, ok, durationMs: d2 })
      connect.observe({ listener, action, result: ok ? "success" : "failure" }, d2 / 1000)
      const hs = i % 6 === 0 ? undefined : d2 / 3
      o.closed!({ listener, protocol: i % 9 === 0 ? undefined : protocol, action, rule: "r", outcome: "ok", bytesUp: 0, bytesDown: 0, durationMs: d * 3, handshakeMs: hs })
      if (hs !== undefined) handshake.observe({ listener }, hs / 1000)
      total.observe({ listener, protocol: i % 9 === 0 ? "none" : protocol }, (d * 3) / 1000)
    }
    const got = await m.scrape(), exp = await ref.metrics()
    for (const name of ["proxyd_handshake_duration_seconds", "proxyd_decision_duration_seconds", "proxyd_outbound_connect_duration_seconds", "proxyd_connection_duration_seconds"]) {
      expect(family(got, name)).toBe(family(exp, name))
    }
  })
})
