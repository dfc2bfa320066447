/**
 * Groups through the real server with real microsocks members: failover when a
 * member is killed mid-test, fastest by probe latency (a delaying relay adds
 * latency), round-robin distribution, hash stickiness, the `else` action.
 */
import { afterAll, describe, expect, it } from "vitest"
import { closedPort } from "@proxyd/testkit"
import { delayingRelay, greetServer, need, type Peer, startMicrosocks } from "./Peers.ts"
import { readN, repOf, startProxyd, through, type Proxyd } from "./Harness.ts"

const stops: Array<() => Promise<void>> = []
afterAll(async () => { for (const s of stops.reverse()) await s() })
const keep = <T extends { stop?: () => Promise<void>; close?: () => Promise<void> }>(x: T): T => {
  stops.push(async () => { await (x.stop ?? x.close)?.() })
  return x
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms))

const groupRules = (members: ReadonlyArray<[string, number]>, group: string, extra = ""): string => `
listen s = socks5 127.0.0.1:0
${members.map(([n, port]) => `upstream ${n} = socks5://127.0.0.1:${port}`).join("\n")}
${group}
policy default {
  rule r when command connect -> via g${extra}
  default block
}
`

/** One greeting round trip; resolves with the member the close line names. */
const viaMember = async (p: Proxyd, port: number): Promise<string> => {
  const before = p.lines().filter((l) => l["msg"] === "connection").length
  const s = await through(p.port, "127.0.0.1", port)
  expect(await readN(s, 6)).toBe("hello:")
  s.destroy()
  for (let i = 0; i < 200; i++) {
    const lines = p.lines().filter((l) => l["msg"] === "connection")
    if (lines.length > before) return String(lines[lines.length - 1]!["upstream"])
    await sleep(10)
  }
  throw new Error("no close line")
}

const waitFor = async (f: () => boolean, ms: number): Promise<boolean> => {
  for (let i = 0; i < ms / 20; i++) {
    if (f()) return true
    await sleep(20)
  }
  return f()
}

describe("groups", () => {
  it("failover: a killed member's connections move to the healthy one; none fails meanwhile", async (ctx) => {
    if (!need(ctx, "microsocks", "microsocks")) return
    const g = keep(await greetServer())
    const a: Peer = keep(await startMicrosocks())
    const b = keep(await startMicrosocks())
    const every = 300
    const p = keep(await startProxyd(groupRules([["a", a.port], ["b", b.port]], `group g = failover(a, b) probe tcp 127.0.0.1:${g.port} every ${every}ms down-after 1 up-after 1 tries 2`)))
    expect(await viaMember(p, g.port)).toBe("a")
    expect(await viaMember(p, g.port)).toBe("a")
    await a.stop()
    const killed = Date.now()
    // Connections right after the kill: the first try hits the dead member, the second carries it.
    let firstCleanAt: number | undefined
    for (let i = 0; i < 40; i++) {
      expect(await viaMember(p, g.port)).toBe("b")
      const last = p.lines().filter((l) => l["msg"] === "connection").at(-1)!
      if (last["upstream_tries"] === undefined && firstCleanAt === undefined) firstCleanAt = Date.now()
      await sleep(25)
    }
    expect(firstCleanAt).toBeDefined()
    console.log(`failover: member a killed; new connections go straight to b after ${firstCleanAt! - killed} ms (probe every ${every} ms)`)
    // Within one probe interval (plus its 10 % jitter and a probe's own time) new connections go to b directly.
    expect(firstCleanAt! - killed).toBeLessThan(every * 1.1 + 250)
    const st = p.upstreams.status()[0]!
    expect(st.members.find((m) => m.name === "a")!.up).toBe(false)
    expect(st.members.find((m) => m.name === "b")!.up).toBe(true)
    const down = p.lines().find((l) => l["msg"] === "upstream member down")
    expect(down).toMatchObject({ group: "g", member: "a", state: "down" })
  }, 30_000)

  it("fastest prefers the member with lower probe latency", async (ctx) => {
    if (!need(ctx, "microsocks", "microsocks")) return
    const g = keep(await greetServer())
    const a = keep(await startMicrosocks())
    const b = keep(await startMicrosocks())
    const slow = keep(await delayingRelay(a.port, 60))
    // The slow member is declared first: failover order would pick it.
    const p = keep(await startProxyd(groupRules([["slow", slow.port], ["fast", b.port]], `group g = fastest(slow, fast) probe tcp 127.0.0.1:${g.port} every 200ms`)))
    expect(await waitFor(() => p.upstreams.status()[0]!.members.every((m) => m.latencyMs !== undefined), 3_000)).toBe(true)
    const st = p.upstreams.status()[0]!
    console.log(`fastest: probe latency EWMA ${JSON.stringify(st.members.map((m) => [m.name, m.latencyMs]))}`)
    expect(st.members.find((m) => m.name === "slow")!.latencyMs!).toBeGreaterThan(st.members.find((m) => m.name === "fast")!.latencyMs!)
    for (let i = 0; i < 5; i++) expect(await viaMember(p, g.port)).toBe("fast")
  }, 30_000)

  it("round-robin distributes over the members", async (ctx) => {
    if (!need(ctx, "microsocks", "microsocks")) return
    const g = keep(await greetServer())
    const ms = [keep(await startMicrosocks()), keep(await startMicrosocks()), keep(await startMicrosocks())]
    const p = keep(await startProxyd(groupRules([["a", ms[0]!.port], ["b", ms[1]!.port], ["c", ms[2]!.port]], "group g = round-robin(a, b, c)")))
    const seen: Record<string, number> = {}
    for (let i = 0; i < 9; i++) {
      const m = await viaMember(p, g.port)
      seen[m] = (seen[m] ?? 0) + 1
    }
    expect(seen).toEqual({ a: 3, b: 3, c: 3 })
  }, 30_000)

  it("hash is sticky: one source keeps its member", async (ctx) => {
    if (!need(ctx, "microsocks", "microsocks")) return
    const g = keep(await greetServer())
    const ms = [keep(await startMicrosocks()), keep(await startMicrosocks()), keep(await startMicrosocks())]
    const p = keep(await startProxyd(groupRules([["a", ms[0]!.port], ["b", ms[1]!.port], ["c", ms[2]!.port]], "group g = hash(a, b, c) by src")))
    const first = await viaMember(p, g.port)
    for (let i = 0; i < 8; i++) expect(await viaMember(p, g.port)).toBe(first)
  }, 30_000)

  it("http probes: GET through the member, the expected status keeps it up, another one takes it down", async (ctx) => {
    if (!need(ctx, "microsocks", "microsocks")) return
    const { createServer } = await import("node:http")
    const paths: Array<string> = []
    const web = createServer((req, res) => { paths.push(req.url ?? ""); res.writeHead(req.url === "/health" ? 204 : 500); res.end() })
    await new Promise<void>((r) => web.listen(0, "127.0.0.1", () => r()))
    stops.push(() => new Promise((r) => { web.closeAllConnections(); web.close(() => r()) }))
    const webPort = (web.address() as { port: number }).port
    const a = keep(await startMicrosocks())
    const good = keep(await startProxyd(groupRules([["a", a.port]], `group g = failover(a) probe http "http://127.0.0.1:${webPort}/health" expect 204 every 100ms down-after 1`)))
    const bad = keep(await startProxyd(groupRules([["a", a.port]], `group g = failover(a) probe http "http://127.0.0.1:${webPort}/other" every 100ms down-after 1`)))
    expect(await waitFor(() => good.upstreams.status()[0]!.members[0]!.latencyMs !== undefined, 3_000)).toBe(true)
    expect(good.upstreams.status()[0]!.members[0]!.up).toBe(true)
    expect(await waitFor(() => bad.upstreams.status()[0]!.members[0]!.up === false, 3_000)).toBe(true)
    expect(bad.upstreams.status()[0]!.members[0]!.lastError).toBe("probe answered 500")
    expect(paths).toContain("/health")
    expect(paths).toContain("/other")
  }, 30_000)

  it("no healthy member: the rule's else action runs; without else the client gets a clean failure", async (ctx) => {
    if (!need(ctx, "microsocks", "microsocks")) return
    const g = keep(await greetServer())
    const a = keep(await startMicrosocks())
    const dead = await closedPort()
    const group = `group g = failover(a) probe tcp 127.0.0.1:${dead} every 100ms down-after 1`
    const withElse = keep(await startProxyd(groupRules([["a", a.port]], group, " else allow")))
    expect(await waitFor(() => withElse.upstreams.status()[0]!.members[0]!.up === false, 3_000)).toBe(true)
    const s = await through(withElse.port, "127.0.0.1", g.port)
    expect(await readN(s, 6)).toBe("hello:")
    s.destroy()
    expect(await waitFor(() => withElse.lines().some((l) => l["msg"] === "connection" && l["upstream_else"] === "allow"), 2_000)).toBe(true)

    const noElse = keep(await startProxyd(groupRules([["a", a.port]], group)))
    expect(await waitFor(() => noElse.upstreams.status()[0]!.members[0]!.up === false, 3_000)).toBe(true)
    expect(await repOf(noElse.port, "127.0.0.1", g.port)).toBe(0x01)
    expect(await waitFor(() => noElse.lines().some((l) => l["msg"] === "connection" && l["upstream_hop"] === "g"), 2_000)).toBe(true)
  }, 30_000)

  it("passive health (no probe): after down-after failed connects the dead member is skipped without a try", async (ctx) => {
    if (!need(ctx, "microsocks", "microsocks")) return
    const g = keep(await greetServer())
    const a = keep(await startMicrosocks())
    const b = keep(await startMicrosocks())
    const p = keep(await startProxyd(groupRules([["a", a.port], ["b", b.port]], "group g = failover(a, b) tries 2")))
    expect(await viaMember(p, g.port)).toBe("a")
    await a.stop()
    const tries: Array<unknown> = []
    for (let i = 0; i < 6; i++) {
      expect(await viaMember(p, g.port)).toBe("b")
      tries.push(p.lines().filter((l) => l["msg"] === "connection").at(-1)!["upstream_tries"])
    }
    // Three connections try the dead member first (2 tries), then it is down and skipped (1 try, no field).
    expect(tries).toEqual([2, 2, 2, undefined, undefined, undefined])
    expect(p.lines().find((l) => l["msg"] === "upstream member down")).toMatchObject({ group: "g", member: "a", state: "down", health: "passive" })
    expect(p.upstreams.status()[0]!.members.find((m) => m.name === "a")!.up).toBe(false)
  }, 30_000)
})
