/**
 * Passive health of a group without `probe`: down after consecutive connect
 * failures, one trial connection after the back-off, up again on success.
 */
import { afterEach, describe, expect, it, vi } from "vitest"
import type { Log } from "@proxyd/runtime"
import { makeGroup, PASSIVE_DOWN_AFTER, PASSIVE_RETRY_MS } from "../src/Group.ts"

const span = { file: "x", start: { line: 1, col: 1, offset: 0 }, end: { line: 1, col: 1, offset: 0 } }
const key = { dst: "d", src: "s" }

afterEach(() => { vi.useRealTimers() })

describe("passive health", () => {
  it("marks a member down after consecutive failures, retries it once after the back-off, success brings it up", () => {
    vi.useFakeTimers({ toFake: ["Date"] })
    vi.setSystemTime(1_000_000)
    const lines: Array<[string, Record<string, unknown> | undefined]> = []
    const push = (m: string, f?: Readonly<Record<string, unknown>>): void => { lines.push([m, f as Record<string, unknown> | undefined]) }
    const log: Log.Log = { level: "info", format: "json", enabled: () => true, log: (_l, m, f) => push(m, f), debug: push, info: push, warn: push, error: push }
    const g = makeGroup({ name: "g", strategy: "failover", members: ["a", "b"], tries: 2, span } as never)
    g.start(() => { throw new Error("no probes without probe") }, log)
    for (let i = 0; i < PASSIVE_DOWN_AFTER - 1; i++) g.report("a", "refused")
    expect(g.candidates(key)).toEqual(["a", "b"])
    g.report("b", undefined)
    g.report("a", "refused")
    expect(g.candidates(key)).toEqual(["b"])
    expect(lines).toEqual([["upstream member down", { group: "g", member: "a", state: "down", error: "refused", health: "passive" }]])
    vi.setSystemTime(1_000_000 + PASSIVE_RETRY_MS - 1)
    expect(g.candidates(key)).toEqual(["b"])
    vi.setSystemTime(1_000_000 + PASSIVE_RETRY_MS + 1)
    // One trial connection: the next request does not get the down member again.
    expect(g.candidates(key)).toEqual(["a", "b"])
    expect(g.candidates(key)).toEqual(["b"])
    g.report("a", "refused")
    vi.setSystemTime(1_000_000 + 2 * PASSIVE_RETRY_MS + 2)
    expect(g.candidates(key)).toEqual(["a", "b"])
    g.report("a", undefined)
    expect(g.candidates(key)).toEqual(["a", "b"])
    expect(g.candidates(key)).toEqual(["a", "b"])
    expect(lines.at(-1)).toEqual(["upstream member up", { group: "g", member: "a", state: "up", health: "passive" }])
  })

  it("a group with probe ignores reports", () => {
    const g = makeGroup({ name: "g", strategy: "failover", members: ["a", "b"], tries: 2, span, probe: { kind: "tcp", target: "127.0.0.1:1", everyMs: 1000, downAfter: 1, upAfter: 1 } } as never)
    for (let i = 0; i < 10; i++) g.report("a", "refused")
    expect(g.candidates(key)).toEqual(["a", "b"])
  })
})
