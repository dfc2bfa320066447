import { Effect, Exit } from "effect"
import { describe, expect, it } from "vitest"
import { reasonOf } from "../src/Outbound.ts"
import * as Log from "../src/Log.ts"
import * as Resolver from "../src/Resolver.ts"

const run = <A, E>(e: Effect.Effect<A, E>) => Effect.runPromiseExit(e)

describe("Resolver", () => {
  it("resolves localhost through the system resolver and returns IP literals as they are", async () => {
    const r = Resolver.make()
    const local = await run(r.resolve("localhost"))
    expect(Exit.isSuccess(local) && local.value.includes("127.0.0.1")).toBe(true)
    expect(await run(r.resolve("192.0.2.1"))).toEqual(Exit.succeed(["192.0.2.1"]))
    expect(await run(r.resolve("[::1]"))).toEqual(Exit.succeed(["::1"]))
    expect(await run(r.resolve("LOCALHOST."))).toEqual(local)
  })

  it("refuses bad names and .onion without any query (an unreachable DNS server would time out)", async () => {
    // 192.0.2.1 (TEST-NET-1) answers nothing: a query would take the full timeout.
    const r = Resolver.make({ servers: ["192.0.2.1"], timeoutMs: 2_000 })
    const t0 = Date.now()
    for (const [name, tag] of [["", "AddressNotSupported"], ["a\0b.example", "AddressNotSupported"], ["a\nb.example", "AddressNotSupported"], ["x y.example", "AddressNotSupported"], ["abc.onion", "DnsFailed"], ["ABC.ONION.", "DnsFailed"]] as const) {
      const e = await run(Effect.flip(r.resolve(name)))
      expect(Exit.isSuccess(e) ? e.value.reason._tag : "none").toBe(tag)
    }
    expect(Date.now() - t0).toBeLessThan(200)
  })

  it("caches answers (a second lookup does not wait) and caches failures for a short time", async () => {
    let now = 1_000_000
    const r = Resolver.make({ now: () => now, negativeTtlMs: 5_000 })
    const a = await run(r.resolve("localhost"))
    const t0 = Date.now()
    for (let i = 0; i < 100; i++) expect(await run(r.resolve("localhost"))).toEqual(a)
    expect(Date.now() - t0).toBeLessThan(500)
    const bad = await run(r.resolve("no-such-name.invalid"))
    expect(Exit.isFailure(bad)).toBe(true)
    now += 1_000
    expect(await run(r.resolve("no-such-name.invalid"))).toEqual(bad)
  })
})

describe("errno mapping", () => {
  it("maps connect errors to protocol-neutral reasons", () => {
    expect(reasonOf({ code: "ECONNREFUSED" }, "h")).toEqual({ _tag: "Refused" })
    expect(reasonOf({ code: "EHOSTUNREACH" }, "h")).toEqual({ _tag: "HostUnreachable" })
    expect(reasonOf({ code: "ENETUNREACH" }, "h")).toEqual({ _tag: "NetworkUnreachable" })
    expect(reasonOf({ code: "ETIMEDOUT" }, "h")).toEqual({ _tag: "Timeout" })
    expect(reasonOf({ code: "ENOTFOUND" }, "h")).toEqual({ _tag: "DnsFailed", host: "h" })
    expect(reasonOf({ errors: [{ code: "ECONNREFUSED" }, { code: "ENETUNREACH" }] }, "h")).toEqual({ _tag: "Refused" })
  })
})

describe("Log", () => {
  it("writes JSON or pretty lines, drops lines below the level, redacts credential-like keys", () => {
    const lines: Array<string> = []
    const j = Log.make({ level: "info", write: (l) => lines.push(l) })
    j.debug("hidden")
    j.info("connection", { id: "1", password: "hunter2", authorization: "Basic xyz", user: "alice", skipped: undefined })
    expect(lines).toHaveLength(1)
    const o = JSON.parse(lines[0]!) as Record<string, unknown>
    expect(o).toMatchObject({ level: "info", msg: "connection", id: "1", user: "alice", password: "[redacted]", authorization: "[redacted]" })
    expect("skipped" in o).toBe(false)
    const p = Log.make({ level: "debug", format: "pretty", write: (l) => lines.push(l) })
    p.warn("reload failed", { file: "a b.rules", n: 2 })
    expect(lines[1]).toMatch(/ WARN  reload failed file="a b.rules" n=2$/)
    p.info("x", { dst: "evil\x1b[31m.example" })
    expect(lines[2]).toContain('dst="evil\\u001b[31m.example"')
    expect(lines.join("\n")).not.toContain("hunter2")
  })

  it("JSON lines: time, level and msg first, then the fields as given; undefined fields left out; a field named like the envelope still goes through the redacting copy", () => {
    const lines: Array<string> = []
    const j = Log.make({ level: "info", write: (l) => lines.push(l) })
    j.info('say "hi"\n', { id: "7", tags: ["a", "b"], user: undefined, bytes_up: 0, nested: { k: 1 } })
    j.info("empty")
    j.info("env", { msg: "spoofed", level: "debug", token: "t0ken" })
    const [a, b, c] = lines.map((l) => JSON.parse(l) as Record<string, unknown>)
    expect(Object.keys(a!)).toEqual(["time", "level", "msg", "id", "tags", "bytes_up", "nested"])
    expect(a).toMatchObject({ level: "info", msg: 'say "hi"\n', id: "7", tags: ["a", "b"], bytes_up: 0, nested: { k: 1 } })
    expect(new Date(a!["time"] as string).toISOString()).toBe(a!["time"])
    expect(Object.keys(b!)).toEqual(["time", "level", "msg"])
    // Such a field replaces the envelope's value, as it always has; credential-like keys are still redacted.
    expect(c).toMatchObject({ msg: "spoofed", level: "debug", token: "[redacted]" })
    expect(lines[2]).not.toContain("t0ken")
  })
})
