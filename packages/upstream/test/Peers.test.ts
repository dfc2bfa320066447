/**
 * Upstreams against real peers on loopback: microsocks, Dante, tinyproxy.
 * Every connection goes client → proxyd (socks5 inbound) → upstream(s) → a
 * local server that speaks first (its greeting is early data) and echoes.
 */
import { afterAll, describe, expect, it } from "vitest"
import { hashBytes, sendRandom, until } from "@proxyd/testkit"
import { DANTE_PASS, DANTE_USER, ensureDanteUser, greetServer, hashServer, need, type Peer, startDante, startMicrosocks, startTinyproxy } from "./Peers.ts"
import { httpConnectStatus, readN, refusal, repOf, startProxyd, through } from "./Harness.ts"

const stops: Array<() => Promise<void>> = []
afterAll(async () => { for (const s of stops.reverse()) await s() })
const keep = <T extends { stop?: () => Promise<void>; close?: () => Promise<void> }>(x: T): T => {
  stops.push(async () => { await (x.stop ?? x.close)?.() })
  return x
}

const rulesVia = (decls: string, target: string): string => `
listen s = socks5 127.0.0.1:0
${decls}
policy default {
  rule r when command connect -> via ${target}
  default block
}
`

/** One connection through `via target`: the greeting arrives first, then an echo. */
const roundTrip = async (decls: string, target: string, greetPort: number): Promise<void> => {
  const p = await startProxyd(rulesVia(decls, target))
  try {
    const s = await through(p.port, "127.0.0.1", greetPort)
    expect(await readN(s, 6)).toBe("hello:")
    s.write("ping")
    expect(await readN(s, 4)).toBe("ping")
    s.destroy()
  } finally {
    await p.stop()
  }
}

const closeLine = (lines: Array<Record<string, unknown>>): Record<string, unknown> | undefined => lines.find((l) => l["msg"] === "connection")

describe("one upstream of each kind", () => {
  it("microsocks SOCKS5 without and with user/pass", async (ctx) => {
    if (!need(ctx, "microsocks", "microsocks")) return
    const g = keep(await greetServer())
    const open = keep(await startMicrosocks())
    const authed = keep(await startMicrosocks({ user: "alice", pass: "s3cret" }))
    await roundTrip(`upstream m = socks5://127.0.0.1:${open.port}`, "m", g.port)
    process.env["PROXYD_TEST_M_USER"] = "alice"
    process.env["PROXYD_TEST_M_PASS"] = "s3cret"
    await roundTrip(`upstream m = socks5://127.0.0.1:${authed.port} auth env(PROXYD_TEST_M_USER) env(PROXYD_TEST_M_PASS)`, "m", g.port)
  }, 30_000)

  it("Dante SOCKS4, SOCKS4a and SOCKS5", async (ctx) => {
    if (!need(ctx, "danted", "dante-server")) return
    const g = keep(await greetServer())
    const d = keep(await startDante(false))
    for (const kind of ["socks4", "socks4a", "socks5"]) {
      await roundTrip(`upstream d = ${kind}://127.0.0.1:${d.port}`, "d", g.port)
    }
  }, 30_000)

  it("Dante SOCKS5 with username auth (system user, root only)", async (ctx) => {
    if (!need(ctx, "danted", "dante-server")) return
    if (!ensureDanteUser()) {
      if (process.env["CI"] === "true") throw new Error("Dante username auth needs root to create the test user in CI")
      ctx.skip("not root: cannot create the system user Dante authenticates")
      return
    }
    const g = keep(await greetServer())
    const d = keep(await startDante(true))
    process.env["PROXYD_TEST_D_USER"] = DANTE_USER
    process.env["PROXYD_TEST_D_PASS"] = DANTE_PASS
    await roundTrip(`upstream d = socks5://127.0.0.1:${d.port} auth env(PROXYD_TEST_D_USER) env(PROXYD_TEST_D_PASS)`, "d", g.port)
    process.env["PROXYD_TEST_D_PASS"] = "wrong"
    const p = await startProxyd(rulesVia(`upstream d = socks5://127.0.0.1:${d.port} auth env(PROXYD_TEST_D_USER) env(PROXYD_TEST_D_PASS)`, "d"))
    try {
      expect(await repOf(p.port, "127.0.0.1", g.port)).toBe(0x01)
      expect(await until(() => closeLine(p.lines()) !== undefined, 2_000)).toBe(true)
      expect(closeLine(p.lines())!["upstream_hop"]).toBe("d")
    } finally {
      await p.stop()
    }
  }, 30_000)

  it("tinyproxy HTTP CONNECT without and with Basic auth", async (ctx) => {
    if (!need(ctx, "tinyproxy", "tinyproxy")) return
    const g = keep(await greetServer())
    const t = keep(await startTinyproxy())
    const ta = keep(await startTinyproxy({ user: "bob", pass: "pa55" }))
    await roundTrip(`upstream t = http://127.0.0.1:${t.port}`, "t", g.port)
    process.env["PROXYD_TEST_T_USER"] = "bob"
    process.env["PROXYD_TEST_T_PASS"] = "pa55"
    await roundTrip(`upstream t = http://127.0.0.1:${ta.port} auth env(PROXYD_TEST_T_USER) env(PROXYD_TEST_T_PASS)`, "t", g.port)
  }, 30_000)
})

describe("a three-hop chain of mixed kinds", () => {
  it("microsocks SOCKS5 → tinyproxy HTTP → Dante SOCKS4a carries 100 MiB each way byte-exact", async (ctx) => {
    if (!need(ctx, "microsocks", "microsocks") || !need(ctx, "tinyproxy", "tinyproxy") || !need(ctx, "danted", "dante-server")) return
    const TOTAL = 100 * 1024 * 1024
    const h = keep(await hashServer(TOTAL))
    const m = keep(await startMicrosocks())
    const t = keep(await startTinyproxy())
    const d = keep(await startDante(false))
    const p = keep(await startProxyd(rulesVia(`
upstream m = socks5://127.0.0.1:${m.port}
upstream t = http://127.0.0.1:${t.port}
upstream d = socks4a://127.0.0.1:${d.port}
chain c = m -> t -> d`, "c")))
    const started = Date.now()
    const s = await through(p.port, "127.0.0.1", h.port)
    const [sent, got] = await Promise.all([sendRandom(s, TOTAL, false), hashBytes(s, TOTAL)])
    const far = await h.results[0]!
    s.destroy()
    const secs = (Date.now() - started) / 1000
    console.log(`three-hop chain: 100 MiB each way in ${secs.toFixed(1)} s (${(200 / secs).toFixed(0)} MiB/s total)`)
    expect(far.gotBytes).toBe(TOTAL)
    expect(far.got).toBe(sent)
    expect(got.bytes).toBe(TOTAL)
    expect(got.hash).toBe(far.sent)
    expect(await until(() => closeLine(p.lines()) !== undefined, 5_000)).toBe(true)
    const line = closeLine(p.lines())!
    expect(line["upstream"]).toBe("c")
    // Counted on the socket to the first hop: the payload plus the hops' handshakes.
    expect(line["bytes_up"]).toBeGreaterThanOrEqual(TOTAL)
    expect(line["bytes_up"]).toBeLessThan(TOTAL + 1024)
    expect(line["bytes_down"]).toBeGreaterThanOrEqual(TOTAL)
    expect(line["bytes_down"]).toBeLessThan(TOTAL + 1024)
  }, 120_000)
})

describe("chains of the same kind", () => {
  it("SOCKS5 → SOCKS5 → SOCKS4 and HTTP → HTTP → SOCKS5 deliver early data and echo", async (ctx) => {
    if (!need(ctx, "microsocks", "microsocks") || !need(ctx, "tinyproxy", "tinyproxy") || !need(ctx, "danted", "dante-server")) return
    const g = keep(await greetServer())
    const m1 = keep(await startMicrosocks())
    const m2 = keep(await startMicrosocks())
    const t1 = keep(await startTinyproxy())
    const t2 = keep(await startTinyproxy())
    const d = keep(await startDante(false))
    await roundTrip(`
upstream m1 = socks5://127.0.0.1:${m1.port}
upstream m2 = socks5://127.0.0.1:${m2.port}
upstream d = socks4://127.0.0.1:${d.port}
chain c = m1 -> m2 -> d`, "c", g.port)
    await roundTrip(`
upstream t1 = http://127.0.0.1:${t1.port}
upstream t2 = http://127.0.0.1:${t2.port}
upstream m1 = socks5://127.0.0.1:${m1.port}
chain c = t1 -> t2 -> m1`, "c", g.port)
  }, 30_000)
})

describe("failures", () => {
  it("wrong credentials: the client gets a clean SOCKS failure and the log names the hop", async (ctx) => {
    if (!need(ctx, "microsocks", "microsocks") || !need(ctx, "tinyproxy", "tinyproxy")) return
    const g = keep(await greetServer())
    const m = keep(await startMicrosocks({ user: "alice", pass: "s3cret" }))
    const ta = keep(await startTinyproxy({ user: "bob", pass: "pa55" }))
    const open: Peer = keep(await startMicrosocks())
    process.env["PROXYD_TEST_W_USER"] = "alice"
    process.env["PROXYD_TEST_W_PASS"] = "not-the-password"
    const cases: Array<[string, string, string, RegExp]> = [
      [`upstream m = socks5://127.0.0.1:${m.port} auth env(PROXYD_TEST_W_USER) env(PROXYD_TEST_W_PASS)`, "m", "m", /refused the credentials/],
      [`upstream o = socks5://127.0.0.1:${open.port}
upstream t = http://127.0.0.1:${ta.port} auth env(PROXYD_TEST_W_USER) env(PROXYD_TEST_W_PASS)
chain c = o -> t`, "c", "t", /refused the credentials \(40[17]\)/],
    ]
    for (const [decls, target, hop, error] of cases) {
      const p = await startProxyd(rulesVia(decls, target))
      try {
        expect(await repOf(p.port, "127.0.0.1", g.port)).toBe(0x01)
        expect(await until(() => closeLine(p.lines()) !== undefined, 2_000)).toBe(true)
        const line = closeLine(p.lines())!
        expect(line["upstream_hop"]).toBe(hop)
        expect(line["upstream_error"]).toMatch(error)
        expect(JSON.stringify(p.log.lines)).not.toContain("not-the-password")
      } finally {
        await p.stop()
      }
    }
  }, 30_000)

  it("an HTTP client gets 502 for refused upstream credentials and 504 for an upstream that does not answer", async (ctx) => {
    if (!need(ctx, "tinyproxy", "tinyproxy")) return
    const g = keep(await greetServer())
    const ta = keep(await startTinyproxy({ user: "bob", pass: "pa55" }))
    const held = new Set<import("node:net").Socket>()
    const silent = await import("node:net").then((net) => net.createServer((c) => { held.add(c); c.resume(); c.on("close", () => held.delete(c)) }))
    await new Promise<void>((r) => silent.listen({ host: "127.0.0.1", port: 0 }, () => r()))
    stops.push(() => new Promise((r) => { for (const c of held) c.destroy(); silent.close(() => r()) }))
    const silentPort = (silent.address() as { port: number }).port
    process.env["PROXYD_TEST_X_USER"] = "bob"
    process.env["PROXYD_TEST_X_PASS"] = "wrong"
    const p = await startProxyd(`
listen h = http 127.0.0.1:0
upstream t = http://127.0.0.1:${ta.port} auth env(PROXYD_TEST_X_USER) env(PROXYD_TEST_X_PASS)
upstream s = socks5://127.0.0.1:${silentPort} connect-timeout 300ms
policy default {
  rule a when dst.port == ${g.port} -> via t
  rule b when command connect -> via s
  default block
}
`)
    try {
      expect(await httpConnectStatus(p.portOf("h"), `127.0.0.1:${g.port}`)).toMatch(/^HTTP\/1\.1 502/)
      expect(await httpConnectStatus(p.portOf("h"), "127.0.0.1:9")).toMatch(/^HTTP\/1\.1 504/)
      expect(await until(() => p.lines().filter((l) => l["msg"] === "connection").length >= 2, 2_000)).toBe(true)
      const lines = p.lines().filter((l) => l["msg"] === "connection")
      expect(lines.map((l) => l["upstream_hop"]).sort()).toEqual(["s", "t"])
      expect(JSON.stringify(p.log.lines)).not.toContain("wrong")
      // The timed-out hop's socket is closed, not leaked.
      expect(await until(() => held.size === 0, 2_000)).toBe(true)
    } finally {
      await p.stop()
    }
  }, 30_000)

  it("an unreachable first hop fails cleanly and is named", async () => {
    const p = await startProxyd(rulesVia(`upstream gone = socks5://127.0.0.1:1`, "gone"))
    try {
      expect(await repOf(p.port, "127.0.0.1", 9)).toBe(0x01)
      expect(await until(() => closeLine(p.lines()) !== undefined, 2_000)).toBe(true)
      expect(closeLine(p.lines())!["upstream_error"]).toMatch(/cannot connect to the upstream \(Refused\)/)
      expect(closeLine(p.lines())!["upstream_hop"]).toBe("gone")
    } finally {
      await p.stop()
    }
  })

  it("a missing credential refuses to start, naming the upstream and the variable, never a value", async () => {
    delete process.env["PROXYD_TEST_MISSING"]
    process.env["PROXYD_TEST_PRESENT"] = "value-that-must-not-leak"
    const msg = await refusal(rulesVia(`upstream up = socks5://127.0.0.1:1080 auth env(PROXYD_TEST_PRESENT) env(PROXYD_TEST_MISSING)`, "up"))
    expect(msg).toContain("upstream `up`")
    expect(msg).toContain("PROXYD_TEST_MISSING")
    expect(msg).not.toContain("value-that-must-not-leak")
    const msg2 = await refusal(rulesVia(`upstream up = socks5://127.0.0.1:1080 auth env(PROXYD_TEST_PRESENT) file("no-such-secret.txt")`, "up"))
    expect(msg2).toMatch(/upstream `up`.*no-such-secret\.txt.*ENOENT/)
  })
})
