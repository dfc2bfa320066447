import { describe, expect, it } from "vitest"
import { checkSource } from "../src/Check.ts"
import { diffPolicies, type DiffEntry, formatEntry } from "../src/Diff.ts"
import type { Decision, PolicyIR, RuleIR } from "../src/Ir.ts"
import { chance, int, randomFacts, randomPolicy, randomRequest, rng } from "../src/Random.ts"
import { evaluateReference } from "../src/Reference.ts"

const OPTS = { missing: "unknown" } as const

const pol = (body: string, def = "allow"): PolicyIR => {
  const r = checkSource(`upstream up = socks5://127.0.0.1:1080\npolicy main {\n${body}\n  default ${def}\n}\n`, "t.rules")
  if (r.program === undefined) throw new Error(r.diagnostics.map((d) => `${d.code} ${d.message}`).join("\n"))
  return r.program.policies.get("main")!
}

const BASE = [
  `  rule ssh when dst.port == 22 -> block`,
  `  rule lan when dst.ip in 10.0.0.0/16 -> via up`,
  `  rule ads when dst.domain in [.ads.example] -> block "ads"`,
].join("\n")

const lines = (a: PolicyIR, b: PolicyIR, limit?: number): ReadonlyArray<string> => diffPolicies(a, b, limit).map(formatEntry)

const decision = (p: PolicyIR, e: DiffEntry["request"]): Decision => {
  const o = evaluateReference(p, e, OPTS)
  if (o.type !== "decision") throw new Error("undecided")
  return o.decision
}

describe("diffPolicies", () => {
  it("finds nothing between identical policies", () => {
    expect(diffPolicies(pol(BASE), pol(BASE))).toEqual([])
  })

  it("a rule added", () => {
    expect(lines(pol(BASE), pol(`${BASE}\n  rule bob when user == bob -> block`))).toEqual([
      "connect example.com:443 user bob: allow (default) -> block (rule bob)",
    ])
  })

  it("a rule removed: every rule that now decides its requests", () => {
    expect(lines(pol(BASE), pol(BASE.replace(/ {2}rule lan.*\n/, "")))).toEqual([
      "connect 10.0.0.1:443: via up (rule lan) -> allow (default)",
      "connect ads.example:443 dst.ip 10.0.0.1: via up (rule lan) -> block \"ads\" (rule ads)",
    ])
  })

  it("rules reordered: the requests both match", () => {
    const swapped = [
      `  rule lan when dst.ip in 10.0.0.0/16 -> via up`,
      `  rule ssh when dst.port == 22 -> block`,
      `  rule ads when dst.domain in [.ads.example] -> block "ads"`,
    ].join("\n")
    expect(lines(pol(BASE), pol(swapped))).toEqual([
      "connect 10.0.0.1:22: block (rule ssh) -> via up (rule lan)",
    ])
  })

  it("a CIDR widened: the first address past the old network", () => {
    expect(lines(pol(BASE), pol(BASE.replace("10.0.0.0/16", "10.0.0.0/8")))).toEqual([
      "connect 10.1.0.0:443: allow (default) -> via up (rule lan)",
      "connect ads.example:443 dst.ip 10.1.0.0: block \"ads\" (rule ads) -> via up (rule lan)",
    ])
  })

  it("the default changed, and a block message changed", () => {
    expect(lines(pol(BASE), pol(BASE, "block"))).toEqual(["connect example.com:443: allow (default) -> block (default)"])
    expect(lines(pol(BASE), pol(BASE.replace(`"ads"`, `"no ads"`)))).toEqual([
      "connect ads.example:443: block \"ads\" (rule ads) -> block \"no ads\" (rule ads)",
    ])
  })

  it("a guard added takes requests from rules and the default", () => {
    expect(lines(pol(BASE), pol(`  guard no-lan when src.ip in 192.168.0.0/16 -> block "lan"\n${BASE}`))).toEqual([
      "connect example.com:443 src 192.168.0.1: allow (default) -> block \"lan\" (guard no-lan)",
      "connect example.com:22 src 192.168.0.1: block (rule ssh) -> block \"lan\" (guard no-lan)",
      "connect 10.0.0.1:443 src 192.168.0.1: via up (rule lan) -> block \"lan\" (guard no-lan)",
      "connect ads.example:443 src 192.168.0.1: block \"ads\" (rule ads) -> block \"lan\" (guard no-lan)",
    ])
  })

  it("respects the limit, keeps one entry per (rule before, rule after) pair and is deterministic", () => {
    const before = pol(Array.from({ length: 30 }, (_, i) => `  rule r${i} when dst.port == ${100 + i} -> block`).join("\n"), "block")
    const after = pol("", "block")
    const all = diffPolicies(before, after)
    expect(all.length).toBe(30)
    expect(new Set(all.map((e) => `${e.before.rule}/${e.after.rule}`)).size).toBe(30)
    expect(diffPolicies(before, after, 5).map(formatEntry)).toEqual(all.slice(0, 5).map(formatEntry))
    expect(diffPolicies(before, after).map(formatEntry)).toEqual(all.map(formatEntry))
  })

  it("on random edits: every entry is a real difference, and a difference random requests show is found", () => {
    const r = rng(5)
    let sampledDiffers = 0
    let found = 0
    for (let i = 0; i < 150; i++) {
      const a = randomPolicy(r, { maxRules: 6 })
      const rules: RuleIR[] = [...a.rules]
      const edit = int(r, 0, 3)
      if (edit === 0 && rules.length > 1) rules.splice(int(r, 0, rules.length - 1), 1)
      else if (edit === 1 && rules.length > 1) rules.reverse()
      else if (edit === 2) rules.push({ ...randomPolicy(r, { maxRules: 1 }).rules[0]!, name: "added" })
      const b: PolicyIR = edit === 3 ? { ...a, default: { ...a.default, action: chance(r, 0.5) ? { k: "allow" } : { k: "block", message: "changed" } } } : { ...a, rules }
      const entries = diffPolicies(a, b)
      for (const e of entries) {
        const [da, db] = [decision(a, e.request), decision(b, e.request)]
        expect({ before: da.rule, after: db.rule }).toEqual({ before: e.before.rule, after: e.after.rule })
        expect(JSON.stringify([da.action, da.rule]) === JSON.stringify([db.action, db.rule])).toBe(false)
      }
      let differs = false
      for (let k = 0; k < 200 && !differs; k++) {
        const q = randomRequest(r, randomFacts(r), 0.6)
        const [da, db] = [decision(a, q), decision(b, q)]
        differs = JSON.stringify([da.action, da.rule]) !== JSON.stringify([db.action, db.rule])
      }
      if (differs) {
        sampledDiffers++
        if (entries.length > 0) found++
      }
    }
    expect(sampledDiffers).toBeGreaterThan(40)
    expect(found / sampledDiffers).toBeGreaterThan(0.97)
  })

  it("is bounded on 2,000 rules: reversed order yields at most `limit` verified entries, an unchanged copy none", () => {
    const body = Array.from({ length: 2000 }, (_, i) => {
      const a = ["allow", "block", "via up"][i % 3]
      switch (i % 4) {
        case 0: return `  rule r${i} when dst.domain in [.d${i}.example.com] -> ${a}`
        case 1: return `  rule r${i} when dst.port == ${1000 + i} -> ${a}`
        case 2: return `  rule r${i} when dst.ip in 10.${(i >> 8) & 255}.${i & 255}.0/24 and user == u${i % 50} -> ${a}`
        default: return `  rule r${i} when src.ip in 192.168.${i % 256}.0/24 or dst.domain == h${i}.example.org -> ${a}`
      }
    }).join("\n")
    const p = pol(body, "block")
    const reversed: PolicyIR = { ...p, rules: [...p.rules].reverse() }
    const entries = diffPolicies(p, reversed, 20)
    expect(entries.length).toBe(20)
    for (const e of entries) {
      expect(decision(p, e.request).rule).toBe(e.before.rule)
      expect(decision(reversed, e.request).rule).toBe(e.after.rule)
      expect(e.before.rule).not.toBe(e.after.rule)
    }
    expect(diffPolicies(p, pol(body, "block"))).toEqual([])
  })
})
