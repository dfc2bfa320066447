import { describe, expect, it } from "vitest"
import type { Cond, Matcher, PolicyIR, Request, RuleIR } from "../src/Ir.ts"
import { parseCidr } from "../src/Ip.ts"
import { evaluateReference, evaluateWithOracle, type Trace } from "../src/Reference.ts"

const m = (matcher: Matcher): Cond => ({ k: "match", m: matcher })
const not = (c: Cond): Cond => ({ k: "not", c })
const cidr = (t: string) => { const r = parseCidr(t); if (!r.ok) throw new Error(r.message); return r.cidr }
const rule = (name: string, cond: Cond, action: RuleIR["action"] = { k: "allow" }, kind: RuleIR["kind"] = "rule"): RuleIR =>
  ({ name, kind, cond, action, modifiers: [] })
const policy = (rules: RuleIR[], guards: RuleIR[] = [], def: RuleIR["action"] = { k: "block", message: "default" }): PolicyIR =>
  ({ name: "p", guards, rules, default: rule("default", { k: "true" }, def, "default") })
const decide = (p: PolicyIR, req: Request) => {
  const out = evaluateReference(p, req, { missing: "unknown" })
  if (out.type !== "decision") throw new Error("expected a decision")
  return out.decision.rule
}
const req = (r: Partial<Request>): Request => ({ command: "connect", dstHost: "example.com", dstPort: 443, ...r })

describe("Reference: three-valued logic", () => {
  const notAlice = policy([rule("not-alice", not(m({ kind: "string", field: "user", patterns: [{ t: "exact", s: "alice" }] })))])

  it("`not` over a missing fact is unknown, so the rule does not fire", () => {
    expect(decide(notAlice, req({}))).toBe("default")
    expect(decide(notAlice, req({ user: "bob" }))).toBe("not-alice")
    expect(decide(notAlice, req({ user: "alice" }))).toBe("default")
  })

  it("`or` with a true operand is true even when the other is unknown; `and` with a false one is false", () => {
    const userA = m({ kind: "string", field: "user", patterns: [{ t: "exact", s: "a" }] })
    const port443 = m({ kind: "port", field: "dst.port", ranges: [[443, 443]] })
    const p = policy([rule("or", { k: "or", items: [userA, port443] }), rule("and", { k: "and", items: [not(port443), userA] })])
    expect(decide(p, req({}))).toBe("or")
    expect(decide(p, req({ dstPort: 80 }))).toBe("default") // or: unknown ∨ false; and: true ∧ unknown
    expect(decide(p, req({ dstPort: 80, user: "a" }))).toBe("or")
  })

  it("dst.domain is unknown for IP destinations, dst.ip unknown for names without a resolved fact", () => {
    const p = policy([
      rule("not-ads", not(m({ kind: "domain", field: "dst.domain", patterns: [{ t: "suffix", d: "ads.example" }] }))),
    ])
    expect(decide(p, req({ dstHost: "10.0.0.1" }))).toBe("default")
    expect(decide(p, req({ dstHost: "www.example" }))).toBe("not-ads")
    const q = policy([rule("lan", m({ kind: "ip", field: "dst.ip", cidrs: [cidr("10.0.0.0/8")] }))])
    expect(decide(q, req({ dstHost: "intranet.example" }))).toBe("default")
    expect(decide(q, req({ dstHost: "intranet.example", facts: { "dst.ip": "10.1.2.3" } }))).toBe("lan")
  })
})

describe("Reference: destinations", () => {
  const loopback = policy([rule("loop", m({ kind: "ip", field: "dst.ip", cidrs: [cidr("127.0.0.0/8"), cidr("::1/128")] }), { k: "block" })], [], { k: "allow" })

  it("matches IPv4-mapped IPv6 literals against IPv4 CIDRs, bracketed or not", () => {
    expect(decide(loopback, req({ dstHost: "::ffff:127.0.0.1" }))).toBe("loop")
    expect(decide(loopback, req({ dstHost: "[::ffff:7f00:1]" }))).toBe("loop")
    expect(decide(loopback, req({ dstHost: "::1" }))).toBe("loop")
    expect(decide(loopback, req({ dstHost: "::2" }))).toBe("default")
  })

  it("never gives .onion names an IP, country or ASN, whatever facts are passed", () => {
    const p = policy([
      rule("ip", m({ kind: "ip", field: "dst.ip", cidrs: [cidr("0.0.0.0/0")] })),
      rule("cc", m({ kind: "country", field: "dst.country", values: ["DE"] })),
    ])
    expect(decide(p, req({ dstHost: "abc.onion", facts: { "dst.ip": "1.2.3.4", "dst.country": "DE" } }))).toBe("default")
    const out = evaluateReference(p, req({ dstHost: "abc.ONION." }), { missing: "need" })
    expect(out).toMatchObject({ type: "decision", decision: { rule: "default" } })
  })

  it("normalises domain case and trailing dots; suffix matches on label boundaries", () => {
    const p = policy([rule("ex", m({ kind: "domain", field: "dst.domain", patterns: [{ t: "suffix", d: "example.com" }] }))])
    expect(decide(p, req({ dstHost: "WWW.Example.COM." }))).toBe("ex")
    expect(decide(p, req({ dstHost: "example.com" }))).toBe("ex")
    expect(decide(p, req({ dstHost: "badexample.com" }))).toBe("default")
  })
})

describe("Reference: guards, order and facts", () => {
  it("checks guards before rules, and a guard always blocks", () => {
    const p = policy([rule("all", { k: "true" })], [rule("g", m({ kind: "port", field: "dst.port", ranges: [[25, 25]] }), { k: "block", message: "smtp" }, "guard")])
    expect(evaluateReference(p, req({ dstPort: 25 }), { missing: "unknown" })).toMatchObject({ type: "decision", decision: { rule: "g", action: { k: "block", message: "smtp" } } })
    expect(decide(p, req({ dstPort: 80 }))).toBe("all")
  })

  it("asks for a costly fact only when a reachable rule needs it", () => {
    const p = policy([
      rule("web", m({ kind: "port", field: "dst.port", ranges: [[443, 443]] })),
      rule("cc", m({ kind: "country", field: "dst.country", values: ["KP"] }), { k: "block" }),
    ])
    expect(evaluateReference(p, req({ dstPort: 443 }), { missing: "need" }).type).toBe("decision")
    expect(evaluateReference(p, req({ dstPort: 22 }), { missing: "need" })).toEqual({ type: "need", fact: "dst.country" })
    const r = evaluateWithOracle((q) => evaluateReference(p, q, { missing: "need" }), req({ dstPort: 22 }), () => "KP")
    expect(r).toMatchObject({ asked: ["dst.country"], decision: { rule: "cc" } })
  })

  it("treats groups as unknown without a user and as empty with one", () => {
    const p = policy([rule("not-ops", not(m({ kind: "group", field: "group", values: ["ops"] })))])
    expect(decide(p, req({}))).toBe("default")
    expect(decide(p, req({ user: "u" }))).toBe("not-ops")
    expect(decide(p, req({ user: "u", groups: ["ops"] }))).toBe("default")
  })

  it("evaluates time windows in their zone, including windows that wrap midnight", () => {
    // Mon-Fri 22:00-06:00 Europe/Berlin
    const night = m({ kind: "time", field: "time", days: 0b0111110, windows: [[22 * 60, 6 * 60]], tz: "Europe/Berlin" })
    const p = policy([rule("night", night)])
    expect(decide(p, req({ time: Date.parse("2026-03-02T21:30:00Z") }))).toBe("night") // Mon 22:30 CET
    expect(decide(p, req({ time: Date.parse("2026-03-07T04:00:00Z") }))).toBe("night") // Sat 05:00, window began Fri
    expect(decide(p, req({ time: Date.parse("2026-03-08T04:00:00Z") }))).toBe("default") // Sun 05:00, began Sat
    expect(decide(p, req({ time: Date.parse("2026-03-02T12:00:00Z") }))).toBe("default")
    expect(decide(p, req({}))).toBe("default")
  })

  it("records a trace of every matcher visited", () => {
    const p = policy([rule("a", m({ kind: "port", field: "dst.port", ranges: [[1, 1]] })), rule("b", m({ kind: "ip", field: "dst.ip", cidrs: [cidr("10.0.0.0/8")] }))])
    const trace: Trace = { steps: [], rules: [], facts: new Set() }
    evaluateReference(p, req({}), { missing: "unknown" }, trace)
    expect(trace.rules).toEqual([{ rule: "a", value: "false" }, { rule: "b", value: "unknown" }, { rule: "default", value: "true" }])
    expect(trace.steps.map((s) => s.value)).toEqual(["false", "unknown"])
    expect([...trace.facts]).toEqual(["dst.ip"])
  })
})
