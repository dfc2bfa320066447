import { describe, expect, it } from "vitest"
import { compile, plans } from "../src/Compiler.ts"
import { evaluate } from "../src/Evaluator.ts"
import { newBox, parseInto, words } from "../src/FastIp.ts"
import type { Cidr, Cond, Matcher, Outcome, PolicyIR, Request, RuleIR } from "../src/Ir.ts"
import { parseCidr, parseIp } from "../src/Ip.ts"
import * as Random from "../src/Random.ts"
import { evaluateWithOracle } from "../src/Reference.ts"

const m = (matcher: Matcher): Cond => ({ k: "match", m: matcher })
const cidr = (t: string): Cidr => { const r = parseCidr(t); if (!r.ok) throw new Error(r.message); return r.cidr }
const rule = (name: string, cond: Cond, kind: RuleIR["kind"] = "rule"): RuleIR => ({ name, kind, cond, action: kind === "guard" ? { k: "block", message: name } : { k: "allow" }, modifiers: [] })
const policy = (rules: RuleIR[], guards: RuleIR[] = []): PolicyIR => ({ name: "p", guards, rules, default: { name: "default", kind: "default", cond: { k: "true" }, action: { k: "block" }, modifiers: [] } })
const req = (r: Partial<Request>): Request => ({ command: "connect", dstHost: "example.com", dstPort: 443, ...r })
const ruleOf = (o: Outcome): string => (o.type === "decision" ? o.decision.rule : `need ${o.fact}`)

describe("FastIp", () => {
  const alphabet = "0123456789abcdefABCDEF:.%[]x "
  const check = (text: string) => {
    const box = newBox()
    const ok = parseInto(text, box)
    const ip = parseIp(text)
    expect(ok, text).toBe(ip !== undefined)
    if (ip === undefined) return expect(box.fam, text).toBe(0)
    expect(box.fam, text).toBe(ip.family)
    if (ip.family === 4) expect(box.v4, text).toBe(Number(ip.value))
    else expect([box.w0, box.w1, box.w2, box.w3], text).toEqual(words(ip.value))
  }

  it("agrees with Ip.parseIp on the pools and on edge cases", () => {
    const cases = [...Random.V4, ...Random.V6, ...Random.MAPPED, "", ":", "::", ":::", "1::", "::1:2:3:4:5:6:7", "1:2:3:4:5:6:7::", "1:2:3:4:5:6:7:8::", "1::2::3",
      "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8:", ":1:2:3:4:5:6:7:8", "12345::", "0000:0000::FFFF:0102:0304", "::ffff:0:0", "::ffff:ffff:ffff", "::fffe:1:2",
      "256.1.1.1", "1.2.3.04", "0.0.0.0", "00.1.2.3", "1.2.3", "1.2.3.4.5", "1..2.3", "1.2.3.4.", "fe80::1%eth0", "::1.2.3.4", "1:2:3:4:5:6:1.2.3.4", "::ffff:1.2.3.4", "example.com"]
    for (const c of cases) check(c)
  })

  it("agrees with Ip.parseIp on 30,000 random strings", () => {
    const r = Random.rng(42)
    for (let i = 0; i < 30_000; i++) {
      let s = ""
      if (Random.chance(r, 0.5)) {
        // Mostly well-formed: join random hex groups, sometimes with a gap.
        const n = Random.int(r, 1, 9)
        const groups = Array.from({ length: n }, () => Random.int(r, 0, 0xfffff).toString(16).slice(0, Random.int(r, 0, 5)))
        if (Random.chance(r, 0.5)) groups.splice(Random.int(r, 0, n), 0, "")
        s = groups.join(":")
        if (Random.chance(r, 0.1)) s += `:${Random.int(r, 0, 300)}.${Random.int(r, 0, 300)}.1.2`
      } else if (Random.chance(r, 0.5)) {
        s = Array.from({ length: Random.int(r, 3, 5) }, () => String(Random.int(r, 0, 300)).padStart(Random.int(r, 1, 3), "0")).join(".")
      } else {
        const n = Random.int(r, 0, 12)
        for (let k = 0; k < n; k++) s += alphabet[Random.int(r, 0, alphabet.length - 1)]
      }
      check(s)
    }
  })
})

describe("Evaluator: first match over indexes", () => {
  const p = policy(
    [
      rule("ads", m({ kind: "domain", field: "dst.domain", patterns: [{ t: "suffix", d: "ads.example" }] })),
      rule("lan-ssh", { k: "and", items: [m({ kind: "ip", field: "dst.ip", cidrs: [cidr("10.0.0.0/8")] }), m({ kind: "port", field: "dst.port", ranges: [[22, 22]] })] }),
      rule("lan", m({ kind: "ip", field: "dst.ip", cidrs: [cidr("10.0.0.0/8"), cidr("fd00::/8")] })),
      rule("alice-not-ads", { k: "and", items: [m({ kind: "string", field: "user", patterns: [{ t: "exact", s: "alice" }] }), { k: "not", c: m({ kind: "domain", field: "dst.domain", patterns: [{ t: "suffix", d: "ads.example" }] }) }] }),
      rule("de", m({ kind: "country", field: "dst.country", values: ["DE"] })),
    ],
    [rule("no-bob", m({ kind: "string", field: "user", patterns: [{ t: "exact", s: "bob" }] }), "guard")],
  )
  const c = compile(p)
  const unknown = (r: Partial<Request>) => ruleOf(evaluate(c, req(r), { missing: "unknown" }))
  const need = (r: Partial<Request>) => ruleOf(evaluate(c, req(r)))

  it("keeps file order across indexes and lets guards win", () => {
    expect(unknown({ dstHost: "x.ads.example", user: "alice" })).toBe("ads")
    expect(unknown({ dstHost: "x.ads.example", user: "bob" })).toBe("no-bob")
    expect(unknown({ dstHost: "10.1.2.3", dstPort: 22, user: "alice" })).toBe("lan-ssh")
    expect(unknown({ dstHost: "10.1.2.3", dstPort: 80, user: "alice" })).toBe("lan")
    expect(unknown({ dstHost: "[fd12::1]", dstPort: 80 })).toBe("lan")
    expect(unknown({ dstHost: "www.example", user: "alice" })).toBe("alice-not-ads")
    expect(unknown({ dstHost: "www.example", facts: { "dst.country": "de" } })).toBe("de")
    expect(unknown({ dstHost: "www.example" })).toBe("default")
  })

  it("in need mode, asks for dst.ip only when a candidate before the decision needs it", () => {
    expect(need({ dstHost: "x.ads.example" })).toBe("ads")
    expect(need({ dstHost: "www.example" })).toBe("need dst.ip")
    expect(need({ dstHost: "www.example", facts: { "dst.ip": "10.0.0.1" } })).toBe("lan")
    expect(need({ dstHost: "www.example", facts: { "dst.ip": "1.1.1.1" } })).toBe("need dst.country")
    expect(need({ dstHost: "www.example", facts: { "dst.ip": null, "dst.country": null } })).toBe("default")
    // .onion never has an IP or a country: no lookups, whatever facts are given.
    expect(need({ dstHost: "abc.onion", facts: { "dst.ip": "10.0.0.1", "dst.country": "DE" } })).toBe("default")
    const run = (r: Partial<Request>) => evaluateWithOracle((q) => evaluate(c, q), req(r), (f) => (f === "dst.ip" ? "192.0.2.1" : "DE"))
    expect(run({ dstHost: "www.example" })).toMatchObject({ asked: ["dst.ip", "dst.country"], decision: { rule: "de" } })
    expect(run({ dstHost: "x.ads.example" })).toMatchObject({ asked: [], decision: { rule: "ads" } })
  })

  it("skips, without compiling its closure, a candidate that needs a user or a name the request lacks", () => {
    const port = (lo: number, hi: number) => m({ kind: "port", field: "dst.port", ranges: [[lo, hi]] })
    const group = m({ kind: "group", field: "group", values: ["staff"] })
    const name = m({ kind: "domain", field: "dst.domain", patterns: [{ t: "suffix", d: "example" }] })
    const q = compile(policy([
      rule("staff-web", { k: "and", items: [port(440, 450), group] }),
      rule("named-web", { k: "and", items: [port(441, 450), name] }),
      rule("not-staff", { k: "and", items: [port(442, 450), { k: "not", c: group }] }),
      rule("staff-ssh", { k: "and", items: [port(22, 22), group] }),
      rule("named-ssh", { k: "and", items: [port(22, 22), name] }),
    ]))
    expect(Array.from(q.requires)).toEqual([1, 2, 0, 1, 2])
    // The group and the name are shared and each range is used once, so the port ranges are the triggers: all three are candidates for port 443.
    expect(plans(q).slice(0, 3).map((p) => p.triggers?.map((t) => t.field))).toEqual([["dst.port"], ["dst.port"], ["dst.port"]])
    const run = (r: Partial<Request>) => ruleOf(evaluate(q, req(r), { missing: "unknown" }))
    // Anonymous, IP literal: both port-triggered candidates are skipped; `not group` is unknown too.
    expect(run({ dstHost: "192.0.2.1" })).toBe("default")
    expect(q.tests.slice(0, 2)).toEqual([undefined, undefined])
    expect(q.tests[2]).toBeTypeOf("function")
    expect(run({ dstHost: "www.example" })).toBe("named-web")
    expect(run({ dstHost: "192.0.2.1", user: "alice", groups: ["staff"] })).toBe("staff-web")
    expect(run({ dstHost: "192.0.2.1", user: "alice", groups: ["ops"] })).toBe("not-staff")
  })

  it("does not mix state between policies evaluated in turn", () => {
    const q = compile(policy([rule("any-port", m({ kind: "port", field: "dst.port", ranges: [[0, 65535]] }))]))
    for (let i = 0; i < 3; i++) {
      expect(ruleOf(evaluate(q, req({})))).toBe("any-port")
      expect(unknown({ dstHost: "10.1.2.3", dstPort: 22 })).toBe("lan-ssh")
      expect(ruleOf(evaluate(q, req({ dstPort: 70000 }), { missing: "unknown" }))).toBe("default")
    }
  })

  it("decides wrapping time windows in the rule's zone", () => {
    // 22:00-06:00 Mon-Fri, Europe/Berlin; the window belongs to the day it starts.
    const night = compile(policy([rule("night", m({ kind: "time", field: "time", days: 0b0111110, windows: [[22 * 60, 6 * 60]], tz: "Europe/Berlin" }))]))
    const at = (iso: string) => ruleOf(evaluate(night, req({ time: Date.parse(iso) }), { missing: "unknown" }))
    expect(at("2026-01-05T21:30:00Z")).toBe("night") // Mon 22:30 Berlin
    expect(at("2026-01-10T04:00:00Z")).toBe("night") // Sat 05:00 Berlin, window started Fri
    expect(at("2026-01-11T04:00:00Z")).toBe("default") // Sun 05:00, window would have started Sat
    expect(at("2026-01-05T12:00:00Z")).toBe("default")
    expect(ruleOf(evaluate(night, req({}), { missing: "unknown" }))).toBe("default")
  })
})
