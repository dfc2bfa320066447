import { describe, expect, it } from "vitest"
import type { Span } from "../src/Ast.ts"
import type { Cond, PolicyIR, Program, Request, RuleIR, TestIR } from "../src/Ir.ts"
import { parseCidr } from "../src/Ip.ts"
import { evaluateReference } from "../src/Reference.ts"
import { explainCommand, formatAction, mismatch, runTests } from "../src/TestRunner.ts"

const span = (line: number): Span => ({ file: "t.rules", start: { offset: 0, line, column: 1 }, end: { offset: 1, line, column: 2 } })

const cidrs = (...xs: string[]): Cond => ({
  k: "match",
  m: { kind: "ip", field: "dst.ip", cidrs: xs.map((x) => { const r = parseCidr(x); if (!r.ok) throw new Error(x); return r.cidr }) },
})
const domains = (...ds: string[]): Cond => ({ k: "match", m: { kind: "domain", field: "dst.domain", patterns: ds.map((d) => ({ t: "suffix" as const, d })) } })

const rule = (name: string, kind: RuleIR["kind"], cond: Cond, action: RuleIR["action"], line: number): RuleIR =>
  ({ name, kind, cond, action, modifiers: [], span: span(line) })

const policy: PolicyIR = {
  name: "main",
  guards: [rule("loopback", "guard", cidrs("127.0.0.0/8", "::1/128"), { k: "block", message: "loopback" }, 2)],
  rules: [
    rule("ads", "rule", domains("ads.example"), { k: "block", message: "ad" }, 3),
    rule("corp", "rule", domains("corp.example"), { k: "via", target: "exit", targetKind: "upstream", else: { k: "block" } }, 4),
    rule("onion", "rule", domains("onion"), { k: "tor", target: "tor1" }, 5),
    rule("old", "rule", domains("old.example"), { k: "redirect", host: "new.example", port: 443 }, 6),
  ],
  default: rule("default", "default", { k: "true" }, { k: "allow" }, 7),
  span: span(1),
}

const test = (name: string, req: Partial<Request> & { dstHost: string }, expect: TestIR["expect"], expectRule?: string): TestIR => ({
  name,
  policy: "main",
  request: { command: "connect", dstPort: 443, ...req },
  expect,
  ...(expectRule === undefined ? {} : { expectRule }),
  span: span(10),
})

const program = (tests: TestIR[]): Program => ({
  files: ["t.rules"], listeners: [], auths: new Map(), usergroups: new Map(), sets: new Map(), upstreams: new Map(),
  chains: new Map(), groups: new Map(), tors: new Map(), plugins: [], options: {}, policies: new Map([["main", policy]]),
  defaultPolicy: "main", tests,
})

describe("runTests", () => {
  it("passes tests whose expectation holds, for every action kind", () => {
    const run = runTests(program([
      test("lo", { dstHost: "127.0.0.1" }, { k: "block", message: "loopback" }, "loopback"),
      test("mapped lo", { dstHost: "::ffff:127.0.0.1" }, { k: "block" }, "loopback"),
      test("resolved lo", { dstHost: "x.example", facts: { "dst.ip": "127.0.0.2" } }, { k: "block" }),
      test("ads", { dstHost: "eu.ads.example" }, { k: "block", message: "ad" }, "ads"),
      test("corp", { dstHost: "corp.example" }, { k: "via", target: "exit" }, "corp"),
      test("onion any tor", { dstHost: "abc.onion" }, { k: "tor" }),
      test("onion named tor", { dstHost: "abc.onion" }, { k: "tor", target: "tor1" }, "onion"),
      test("redirect any", { dstHost: "old.example" }, { k: "redirect" }),
      test("redirect target", { dstHost: "old.example" }, { k: "redirect", target: "new.example:443" }, "old"),
      test("default", { dstHost: "example.com" }, { k: "allow" }, "default"),
    ]))
    expect(run.results.map((r) => [r.test.name, r.passed, r.message])).toEqual([
      ["lo", true, undefined], ["mapped lo", true, undefined], ["resolved lo", true, undefined], ["ads", true, undefined],
      ["corp", true, undefined], ["onion any tor", true, undefined], ["onion named tor", true, undefined],
      ["redirect any", true, undefined], ["redirect target", true, undefined], ["default", true, undefined],
    ])
    expect(run.diagnostics).toEqual([])
    expect(run.uncovered).toEqual([])
  })

  it("reports a failing test as X001 with expected, got and the deciding rule", () => {
    const run = runTests(program([test("wrong", { dstHost: "ads.example" }, { k: "allow" }, "default")]))
    expect(run.results[0]!.passed).toBe(false)
    const x001 = run.diagnostics.find((d) => d.code === "X001")!
    expect(x001.severity).toBe("error")
    expect(x001.message).toBe('test "wrong" failed: expected allow by default, got block "ad" by ads')
    expect(x001.span.start.line).toBe(10)
    expect(x001.notes?.[0]?.message).toBe("decided by rule `ads` of policy `main`")
    expect(x001.notes?.[0]?.span?.start.line).toBe(3)
    expect(x001.hint).toBe("to see every rule it visits, run: proxyd explain t.rules --policy main connect ads.example:443")
  })

  it("compares messages, targets and rule names", () => {
    const run = runTests(program([
      test("msg", { dstHost: "ads.example" }, { k: "block", message: "nope" }),
      test("via", { dstHost: "corp.example" }, { k: "via", target: "other" }),
      test("tor", { dstHost: "a.onion" }, { k: "tor", target: "tor2" }),
      test("redir", { dstHost: "old.example" }, { k: "redirect", target: "new.example:80" }),
      test("by", { dstHost: "ads.example" }, { k: "block" }, "loopback"),
    ]))
    expect(run.results.map((r) => r.passed)).toEqual([false, false, false, false, false])
    expect(run.results.map((r) => r.message)).toEqual([
      'test "msg" failed: expected block "nope", got block "ad" by ads',
      'test "via" failed: expected via other, got via exit by corp',
      'test "tor" failed: expected tor tor2, got tor tor1 by onion',
      'test "redir" failed: expected redirect "new.example:80", got redirect "new.example:443" by old',
      'test "by" failed: expected block by loopback, got block "ad" by ads',
    ])
  })

  it("leaves facts the test does not give unknown: an unresolved name passes the dst.ip guard", () => {
    const run = runTests(program([test("name", { dstHost: "localhost.example" }, { k: "allow" }, "default")]))
    expect(run.results[0]!.passed).toBe(true)
  })

  it("warns X010 once per policy with the rules no test reaches", () => {
    const run = runTests(program([test("d", { dstHost: "example.com" }, { k: "allow" })]))
    expect(run.uncovered).toEqual([{ policy: "main", rules: ["loopback", "ads", "corp", "onion", "old"] }])
    const x010 = run.diagnostics.filter((d) => d.code === "X010")
    expect(x010).toHaveLength(1)
    expect(x010[0]!.severity).toBe("warning")
    expect(x010[0]!.message).toBe("no test reaches rules `loopback`, `ads`, `corp`, `onion`, `old` of policy `main`")
    expect(x010[0]!.span.start.line).toBe(2) // the first rule no test reaches
  })

  it("reports no coverage when the program has no tests", () => {
    const run = runTests(program([]))
    expect(run.diagnostics).toEqual([])
    expect(run.uncovered).toEqual([])
  })

  it("reports X099 when the compiled evaluator disagrees with the reference", () => {
    const lying = { evaluate: (p: PolicyIR, r: Request) => {
      const o = evaluateReference(p, r, { missing: "unknown" })
      return o.type === "decision" ? { type: "decision" as const, decision: { ...o.decision, rule: "bogus" } } : o
    } }
    const run = runTests(program([test("d", { dstHost: "example.com" }, { k: "allow" })]), lying)
    const x099 = run.diagnostics.find((d) => d.code === "X099")!
    expect(x099.severity).toBe("error")
    expect(x099.message).toContain("compiled evaluator decided allow by bogus, the reference interpreter allow by default")
    expect(run.results[0]!.passed).toBe(false)
  })

  it("reports X099 when the compiled evaluator throws", () => {
    const run = runTests(program([test("d", { dstHost: "example.com" }, { k: "allow" })]), { evaluate: () => { throw new Error("boom") } })
    expect(run.diagnostics.map((d) => [d.code, d.message])).toContainEqual(["X099", 'internal error in test "d": the compiled evaluator threw: boom'])
  })

  it("uses the compiled evaluator by default and agrees with the reference", () => {
    const run = runTests(program([
      test("a", { dstHost: "127.0.0.1" }, { k: "block" }),
      test("b", { dstHost: "corp.example" }, { k: "via", target: "exit" }),
    ]))
    expect(run.diagnostics.filter((d) => d.code === "X099")).toEqual([])
    expect(run.results.every((r) => r.passed)).toBe(true)
  })
})

describe("mismatch and formatAction", () => {
  const decision = { action: { k: "redirect" as const, host: "::1", port: 80 }, rule: "r", ruleKind: "rule" as const, modifiers: [] }
  it("accepts a bracketed IPv6 redirect target", () => {
    expect(mismatch({ k: "redirect", target: "[::1]:80" }, undefined, decision)).toBeUndefined()
    expect(mismatch({ k: "redirect", target: "[::1]:81" }, undefined, decision)).toBe('expected redirect "[::1]:81", got redirect "[::1]:80" by r')
  })
  it("formats actions as a test would write them", () => {
    expect(formatAction({ k: "block", message: 'say "hi"' })).toBe('block "say \\"hi\\""')
    expect(formatAction({ k: "tor" })).toBe("tor")
    expect(formatAction({ k: "via", target: "x", targetKind: "chain" })).toBe("via x")
  })
})

describe("explainCommand", () => {
  it("reproduces every part of a test's request as proxyd explain flags", () => {
    const t = test("x", {
      dstHost: "::1", dstPort: 80, command: "udp", srcIp: "10.0.0.1", srcPort: 5353, user: "bob smith", groups: ["ops"], listener: "l",
      protocol: "socks5", auth: "none", time: Date.UTC(2026, 2, 1, 23), facts: { "dst.country": "DE", "dst.asn": 13335, "src.country": null },
    }, { k: "allow" })
    expect(explainCommand(t)).toBe(
      "proxyd explain t.rules --policy main --src 10.0.0.1:5353 --user 'bob smith' --group ops --listener l --protocol socks5 --auth none " +
      "--at 2026-03-01T23:00:00.000Z --fact dst.country=DE --fact dst.asn=13335 udp [::1]:80",
    )
  })
})
