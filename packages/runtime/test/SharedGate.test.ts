import { Worker } from "node:worker_threads"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { makeGate } from "../src/Listener.ts"
import * as SharedGate from "../src/SharedGate.ts"

describe("SharedGate", () => {
  it("admits and refuses exactly like the one-loop gate (random operation sequences)", () => {
    const op = fc.record({ enter: fc.boolean(), ip: fc.constantFrom("10.0.0.1", "10.0.0.2", "::1", "192.0.2.7") })
    fc.assert(fc.property(fc.integer({ min: 0, max: 6 }), fc.integer({ min: 0, max: 4 }), fc.array(op, { maxLength: 200 }), (max, perIp, ops) => {
      const limits = () => ({ max, perIp })
      const local = makeGate(limits)
      const counters = SharedGate.attach(SharedGate.allocate(64))
      const shared = counters.gate("l:x", limits)
      const held: Array<string> = []
      for (const o of ops) {
        if (o.enter) {
          const a = local.tryEnter(o.ip)
          expect(shared.tryEnter(o.ip)).toBe(a)
          if (a) held.push(o.ip)
        } else {
          const i = held.indexOf(o.ip)
          if (i < 0) continue
          held.splice(i, 1)
          local.leave(o.ip)
          shared.leave(o.ip)
        }
        expect(shared.active()).toBe(local.active())
        expect(counters.count("l:x", o.ip)).toBe(held.filter((h) => h === o.ip).length)
      }
      for (const ip of held.splice(0)) shared.leave(ip)
      expect(shared.active()).toBe(0)
      expect(counters.live()).toBe(0)
    }), { numRuns: 300 })
  })

  it("keeps gates with different scopes apart", () => {
    const counters = SharedGate.attach(SharedGate.allocate(64))
    const a = counters.gate("*", () => ({ max: 1, perIp: 1 }))
    const b = counters.gate("l:one", () => ({ max: 1, perIp: 1 }))
    expect(a.tryEnter("10.0.0.1")).toBe(true)
    expect(b.tryEnter("10.0.0.1")).toBe(true)
    expect(a.tryEnter("10.0.0.2")).toBe(false)
    expect(counters.count("*")).toBe(1)
    expect(counters.count("l:one", "10.0.0.1")).toBe(1)
    expect(counters.count("l:one", "10.0.0.2")).toBe(0)
  })

  it("refuses a new key when three quarters of the table are live, and says it was full", () => {
    const counters = SharedGate.attach(SharedGate.allocate(16))
    const g = counters.gate("*", () => ({ max: 1000, perIp: 1000 }))
    // 12 live keys fit (3/4 of 16): the total and 11 source addresses.
    for (let i = 1; i <= 11; i++) expect(g.tryEnter(`10.0.0.${i}`)).toBe(true)
    expect(g.tryEnter("10.0.0.99")).toBe(false)
    expect(counters.full()).toBe(true)
    // An address already counted needs no new key.
    expect(g.tryEnter("10.0.0.1")).toBe(true)
    g.leave("10.0.0.5")
    expect(g.tryEnter("10.0.0.99")).toBe(true)
    expect(counters.full()).toBe(true)
    expect(g.active()).toBe(12)
  })

  it("reuses deleted slots: many more distinct addresses over time than the table holds", () => {
    const counters = SharedGate.attach(SharedGate.allocate(64))
    const g = counters.gate("*", () => ({ max: 10, perIp: 2 }))
    for (let i = 0; i < 5_000; i++) {
      const ips = [0, 1, 2, 3].map((k) => `2001:db8::${(i * 4 + k).toString(16)}`)
      for (const ip of ips) expect(g.tryEnter(ip)).toBe(true)
      for (const ip of ips) g.leave(ip)
    }
    expect(g.active()).toBe(0)
    expect(counters.live()).toBe(0)
  })

  it("holds the limits under four threads admitting and leaving at once", async () => {
    const sab = SharedGate.allocate(SharedGate.capacityFor(100))
    const ips = ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
    const inside = new SharedArrayBuffer(4 * (2 + ips.length))
    // Each thread holds two connections at a time: one thread alone stays inside the limits,
    // two at once do not, so refusals happen whenever two threads overlap (even on 2 cores).
    const max = 3
    const perIp = 1
    const rounds = 20_000
    const threads = 4
    const results = await Promise.all(Array.from({ length: threads }, () => new Promise<{ admitted: number; refused: number; overLimit: number }>((resolve, reject) => {
      const w = new Worker(new URL("./fixtures/gate-worker.ts", import.meta.url), { workerData: { sab, inside, rounds, ips, max, perIp, threads } })
      w.once("message", resolve)
      w.once("error", reject)
    })))
    const counters = SharedGate.attach(sab)
    expect(results.map((r) => r.overLimit)).toEqual([0, 0, 0, 0])
    expect(results.reduce((n, r) => n + r.admitted + r.refused, 0)).toBe(threads * 2 * rounds)
    // The threads did contend: some admissions were refused by the limits.
    expect(results.reduce((n, r) => n + r.refused, 0)).toBeGreaterThan(0)
    expect(counters.count("*")).toBe(0)
    for (const ip of ips) expect(counters.count("*", ip)).toBe(0)
    expect(counters.live()).toBe(0)
  }, 60_000)
})
