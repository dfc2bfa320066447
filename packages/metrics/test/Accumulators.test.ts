import { describe, expect, it } from "vitest"
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
})
