import { describe, expect, it } from "vitest"
import type { Span } from "../src/Ast.ts"
import { condText, explain, matcherText, renderExplain, requestText } from "../src/Explain.ts"
import type { Cond, PolicyIR, Program, RuleIR } from "../src/Ir.ts"
import { parseCidr } from "../src/Ip.ts"

const span = (line: number): Span => ({ file: "x.rules", start: { offset: 0, line, column: 3 }, end: { offset: 1, line, column: 4 } })
const cidr = (x: string) => { const r = parseCidr(x); if (!r.ok) throw new Error(x); return r.cidr }

const loopback: Cond = { k: "match", m: { kind: "ip", field: "dst.ip", cidrs: [cidr("127.0.0.0/8"), cidr("::1")] }, setRef: "loopback" }
const localNames: Cond = { k: "match", m: { kind: "domain", field: "dst.domain", patterns: [{ t: "suffix", d: "localhost" }] } }
const web: Cond = { k: "and", items: [
  { k: "match", m: { kind: "port", field: "dst.port", ranges: [[80, 80], [443, 443]] } },
  { k: "not", c: { k: "match", m: { kind: "string", field: "user", patterns: [{ t: "exact", s: "mallory" }] } } },
] }

const rule = (name: string, kind: RuleIR["kind"], cond: Cond, action: RuleIR["action"], line: number): RuleIR =>
  ({ name, kind, cond, action, modifiers: [], span: span(line) })

const policy: PolicyIR = {
  name: "main",
  guards: [rule("loopback", "guard", { k: "or", items: [loopback, localNames] }, { k: "block", message: "loopback" }, 4)],
  rules: [rule("web", "rule", web, { k: "via", target: "corp", targetKind: "upstream" }, 5)],
  default: rule("default", "default", { k: "true" }, { k: "block", message: "no rule matched" }, 6),
  span: span(3),
}

const program: Program = {
  files: ["x.rules"], listeners: [], auths: new Map(), usergroups: new Map(), sets: new Map(), upstreams: new Map(),
  chains: new Map(), groups: new Map(), tors: new Map(), plugins: [], options: {}, policies: new Map([["main", policy]]),
  defaultPolicy: "main", tests: [],
}

describe("explain", () => {
  it("names the deciding guard with file:line and each matcher's value", () => {
    const r = explain(program, undefined, { command: "connect", dstHost: "app.localhost", dstPort: 80 })
    expect(r.decision.action).toEqual({ k: "block", message: "loopback" })
    expect(r.rule).toBe("loopback")
    expect(r.location).toBe("x.rules:4")
    expect(r.steps).toEqual([
      { rule: "loopback", matcher: "dst.ip in loopback", value: "unknown" },
      { rule: "loopback", matcher: "dst.domain in [.localhost]", value: "true" },
    ])
    expect(r.factsUsed).toEqual([{ fact: "dst.ip", value: null }])
  })

  it("shows unknown matchers and false rules before the default", () => {
    const r = explain(program, "main", { command: "connect", dstHost: "example.com", dstPort: 22, facts: { "dst.ip": "93.184.215.14" } })
    expect(r.rule).toBe("default")
    expect(r.rules.map((x) => [x.rule, x.kind, x.value])).toEqual([["loopback", "guard", "false"], ["web", "rule", "false"], ["default", "default", "true"]])
    expect(r.factsUsed).toEqual([{ fact: "dst.ip", value: "93.184.215.14" }])
    const text = renderExplain(r)
    expect(text).toContain('→ block "no rule matched" by default (x.rules:6) in policy main')
    expect(text).toContain("guard loopback: false  (x.rules:4)")
    expect(text).toMatch(/dst\.port in \[80, 443\]\s+false/)
    expect(text).toContain("facts used: dst.ip = 93.184.215.14")
  })

  it("reports a literal destination address as the dst.ip fact", () => {
    const r = explain(program, undefined, { command: "connect", dstHost: "::ffff:127.0.0.1", dstPort: 80 })
    expect(r.rule).toBe("loopback")
    expect(r.factsUsed).toEqual([{ fact: "dst.ip", value: "::ffff:127.0.0.1" }])
  })

  it("keeps an unknown user unknown under `not`", () => {
    const r = explain(program, undefined, { command: "connect", dstHost: "example.com", dstPort: 443 })
    expect(r.steps.filter((s) => s.rule === "web")).toEqual([
      { rule: "web", matcher: "dst.port in [80, 443]", value: "true" },
      { rule: "web", matcher: "user == mallory", value: "unknown" },
    ])
    expect(r.rules.find((x) => x.rule === "web")?.value).toBe("unknown")
    expect(renderExplain(r)).toContain("facts used: dst.ip = unknown")
  })

  it("throws on an unknown policy", () => {
    expect(() => explain(program, "nope", { command: "connect", dstHost: "a", dstPort: 1 })).toThrow("no policy named `nope`")
  })

  it("is JSON-serialisable", () => {
    const r = explain(program, undefined, { command: "udp", dstHost: "1.1.1.1", dstPort: 53 })
    expect(JSON.parse(JSON.stringify(r)).rule).toBe("default")
  })
})

describe("texts", () => {
  it("renders matchers and conditions", () => {
    expect(matcherText({ kind: "time", field: "time", days: 0b0111110, windows: [[480, 1080]], tz: "Europe/Berlin" })).toBe('time Mon-Fri 08:00-18:00 tz "Europe/Berlin"')
    expect(matcherText({ kind: "time", field: "time", days: 0b1000001, windows: [[0, 1440]], tz: "UTC" })).toBe('time Sat,Sun tz "UTC"')
    expect(matcherText({ kind: "time", field: "time", days: 0b0111010, windows: [[1320, 360]], tz: "UTC" })).toBe('time Mon,Wed-Fri 22:00-06:00 tz "UTC"')
    expect(matcherText({ kind: "domain", field: "dst.domain", patterns: [{ t: "glob", g: "ads.*" }] })).toBe('dst.domain matches "ads.*"')
    expect(condText(web)).toBe("dst.port in [80, 443] and not user == mallory")
  })
  it("renders requests", () => {
    expect(requestText({ command: "connect", dstHost: "::1", dstPort: 80, srcIp: "10.0.0.1", user: "alice", groups: ["eng"], auth: "password" }))
      .toBe("connect [::1]:80 from 10.0.0.1 user alice groups [eng]")
    expect(requestText({ command: "udp", dstHost: "a.example", dstPort: 53, user: "bob", auth: "none", time: Date.UTC(2026, 2, 1, 23) }))
      .toBe("udp a.example:53 user bob auth none at 2026-03-01T23:00:00.000Z")
  })
})
