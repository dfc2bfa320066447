import { describe, expect, it } from "vitest"
import { analyzePolicy, findings, findWitness, formatRequest, witness } from "../src/Analysis.ts"
import { checkSource } from "../src/Check.ts"
import type { Cond, Matcher, PolicyIR, Request } from "../src/Ir.ts"
import { parseCidr } from "../src/Ip.ts"
import { randomCond, randomPolicy, randomRequest, randomFacts, rng } from "../src/Random.ts"
import { evalCond, evaluateReference, view } from "../src/Reference.ts"
import { truth } from "../src/Space.ts"

const OPTS = { missing: "unknown" } as const

const policyOf = (body: string, extra = ""): PolicyIR => {
  const r = checkSource(`${extra}policy main {\n${body}\n  default block\n}\n`, "t.rules")
  const errors = r.diagnostics.filter((d) => d.severity === "error")
  if (errors.length > 0) throw new Error(errors.map((d) => `${d.code} ${d.message}`).join("\n"))
  return r.program!.policies.get("main")!
}

/** Code, line:column, message and hint of each diagnostic. */
const brief = (p: PolicyIR) => analyzePolicy(p).map((d) => ({ code: d.code, at: `${d.span.start.line}:${d.span.start.column}`, message: d.message, hint: d.hint, notes: (d.notes ?? []).map((n) => `${n.span?.start.line}: ${n.message}`) }))

const m = (x: Matcher): Cond => ({ k: "match", m: x })
const port = (lo: number, hi = lo): Cond => m({ kind: "port", field: "dst.port", ranges: [[lo, hi]] })
const and = (...items: Cond[]): Cond => ({ k: "and", items })
const or = (...items: Cond[]): Cond => ({ k: "or", items })
const not = (c: Cond): Cond => ({ k: "not", c })
const cidr = (t: string) => {
  const r = parseCidr(t)
  if (!r.ok) throw new Error(t)
  return r.cidr
}
const isTrue = (c: Cond, req: Request): boolean => evalCond(c, view(req, OPTS)) === "true"

describe("witness", () => {
  it("finds a request for which the condition is true, leaving other fields unknown", () => {
    const c = and(port(8000, 8999), m({ kind: "string", field: "user", patterns: [{ t: "exact", s: "alice" }] }))
    const w = witness(c)!
    expect(formatRequest(w)).toBe("connect example.com:8000 user alice")
    expect(isTrue(c, w)).toBe(true)
  })

  it("says none for a contradiction and gives up (saying why) on patterns it cannot sample", () => {
    expect(findWitness(and(port(80), port(443)))).toEqual({ t: "none" })
    const regex = m({ kind: "domain", field: "dst.domain", patterns: [{ t: "regex", r: "^(?=q)z$" }] })
    const r = findWitness(regex)
    expect(r.t).toBe("gave-up")
    expect(r.t === "gave-up" && r.reason).toMatch(/^`dst\.domain`: no domain found/)
    expect(witness(regex)).toBeUndefined()
  })

  it("combines a domain with a resolved-IP fact, and never uses .onion for IP facts", () => {
    const c = and(m({ kind: "domain", field: "dst.domain", patterns: [{ t: "exact", d: "a.com" }] }), m({ kind: "ip", field: "dst.ip", cidrs: [cidr("10.0.0.0/8")] }))
    expect(formatRequest(witness(c)!)).toBe("connect a.com:443 dst.ip 10.0.0.1")
    const onion = and(m({ kind: "domain", field: "dst.domain", patterns: [{ t: "suffix", d: "onion" }] }), m({ kind: "country", field: "dst.country", values: ["DE"] }))
    expect(findWitness(onion)).toEqual({ t: "none" })
  })

  it("treats `not` three-valued: `not user == bob` needs a known user", () => {
    const c = not(m({ kind: "string", field: "user", patterns: [{ t: "exact", s: "bob" }] }))
    expect(formatRequest(witness(c)!)).toBe("connect example.com:443 user alice")
  })

  it("covers groups, enums, countries, ASNs, time windows and IPv6", () => {
    const c = and(
      m({ kind: "group", field: "group", values: ["admins"] }),
      not(m({ kind: "group", field: "group", values: ["guests"] })),
      m({ kind: "enum", field: "command", values: ["udp"] }),
      m({ kind: "enum", field: "protocol", values: ["socks5"] }),
      not(m({ kind: "country", field: "src.country", values: ["US", "DE"] })),
      m({ kind: "asn", field: "dst.asn", values: [13335] }),
      m({ kind: "time", field: "time", days: 0b0100000, windows: [[1320, 120]], tz: "Europe/Berlin" }),
      m({ kind: "ip", field: "src.ip", cidrs: [cidr("2001:db8::/32")] }),
    )
    const w = witness(c)!
    expect(isTrue(c, w)).toBe(true)
    expect(formatRequest(w)).toBe("udp example.com:443 src 2001:db8::1 user alice group admins protocol socks5 at 2026-01-09T21:00Z dst.asn 13335 src.country NL")
  })

  it("prints what a test block reads back to the same request", () => {
    const conds: Cond[] = [
      and(port(22), m({ kind: "ip", field: "src.ip", cidrs: [cidr("192.168.0.0/16")] }), m({ kind: "port", field: "src.port", ranges: [[1000, 2000]] })),
      and(m({ kind: "domain", field: "dst.domain", patterns: [{ t: "sub", d: "ads.example" }] }), m({ kind: "ip", field: "dst.ip", cidrs: [cidr("2001:db8::/64")] })),
      and(m({ kind: "enum", field: "auth", values: ["none"] }), m({ kind: "string", field: "user", patterns: [{ t: "glob", g: "svc-*" }] })),
      m({ kind: "ip", field: "dst.ip", cidrs: [cidr("::1/128")] }),
      and(
        m({ kind: "group", field: "group", values: ["admins"] }), m({ kind: "group", field: "group", values: ["x y"] }),
        m({ kind: "string", field: "user", patterns: [{ t: "exact", s: "a b" }] }),
        m({ kind: "enum", field: "command", values: ["udp"] }), m({ kind: "enum", field: "protocol", values: ["socks5"] }),
        m({ kind: "country", field: "src.country", values: ["NL"] }), m({ kind: "asn", field: "dst.asn", values: [13335] }),
        m({ kind: "time", field: "time", days: 0b0100000, windows: [[1320, 120]], tz: "Europe/Berlin" }),
      ),
    ]
    for (const c of conds) {
      const w = witness(c)!
      const text = formatRequest(w)
      const r = checkSource(`policy main {\n  default allow\n}\ntest "w" {\n  ${text}\n} expect allow\n`, "t.rules")
      expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([])
      const back = r.program!.tests[0]!.request
      expect({ text, ok: isTrue(c, back), back: formatRequest(back) }).toEqual({ text, ok: true, back: text })
    }
  })

  it("solves port tests exactly (interval arithmetic against brute force over every port)", () => {
    const r = rng(9)
    let sat = 0
    for (let i = 0; i < 80; i++) {
      const lits = Array.from({ length: 1 + Math.floor(r() * 3) }, () => {
        const ranges = Array.from({ length: 1 + Math.floor(r() * 4) }, (): readonly [number, number] => {
          const a = Math.floor(r() * 70000) % 65536
          const b = Math.min(65535, a + Math.floor(r() * (r() < 0.5 ? 10 : 30000)))
          return [a, b]
        })
        return r() < 0.5 ? m({ kind: "port", field: "dst.port", ranges }) : not(m({ kind: "port", field: "dst.port", ranges }))
      })
      const c = and(...lits)
      const res = findWitness(c)
      let exists = false
      for (let p = 0; p <= 65535 && !exists; p++) exists = isTrue(c, { command: "connect", dstHost: "example.com", dstPort: p })
      expect(res.t).toBe(exists ? "found" : "none")
      if (res.t === "found") { sat++; expect(isTrue(c, res.request)).toBe(true) }
    }
    expect(sat).toBeGreaterThan(15)
    expect(sat).toBeLessThan(80)
  })

  it("is verified: on 1,500 random conditions every witness makes the condition true, and `none` is never contradicted", () => {
    const r = rng(7)
    let found = 0
    let none = 0
    for (let i = 0; i < 1500; i++) {
      const c = randomCond(r)
      const res = findWitness(c)
      if (res.t === "found") {
        found++
        expect(isTrue(c, res.request)).toBe(true)
      } else if (res.t === "none") {
        none++
        for (let k = 0; k < 50; k++) expect(isTrue(c, randomRequest(r, randomFacts(r), 0.8))).toBe(false)
      }
    }
    expect(found).toBeGreaterThan(1200)
    expect(none).toBeGreaterThan(5)
  })
})

describe("truth (indexed three-valued evaluation)", () => {
  it("agrees with the reference on random conditions and large domain/user sets", () => {
    const r = rng(3)
    const names = ["example.com", "www.example.com", "a.b.example.com", "tracker.net", "ads.tracker.net", "x.onion", "com", "internal.corp"]
    const bigDomains = (): Cond => m({ kind: "domain", field: "dst.domain", patterns: Array.from({ length: 40 }, (_, i) => {
      const d = i < names.length && r() < 0.5 ? names[i]! : `n${i}.example`
      const k = Math.floor(r() * 4)
      return k === 0 ? { t: "exact" as const, d } : k === 1 ? { t: "suffix" as const, d } : k === 2 ? { t: "sub" as const, d } : { t: "glob" as const, g: `*.${d}` }
    }) })
    const bigUsers = (): Cond => m({ kind: "string", field: "user", patterns: Array.from({ length: 30 }, (_, i) => (i === 7 ? { t: "glob" as const, g: "c*" } : { t: "exact" as const, s: i % 3 === 0 ? "alice" : `u${i}` })) })
    let agreedTrue = 0
    for (let i = 0; i < 3000; i++) {
      const c = i % 3 === 0 ? randomCond(r) : i % 3 === 1 ? and(bigDomains(), not(bigUsers())) : or(not(bigDomains()), bigUsers())
      const q = randomRequest(r, randomFacts(r), 0.6)
      const v = view(q, OPTS)
      expect(truth(c, v)).toBe(evalCond(c, v))
      if (evalCond(c, v) === "true") agreedTrue++
    }
    expect(agreedTrue).toBeGreaterThan(300)
  })
})

describe("analyzePolicy", () => {
  it("L050: a rule whose condition is never true", () => {
    const p = policyOf(`  rule never when dst.port == 80 and dst.port == 443 -> block`)
    expect(brief(p)).toEqual([{
      code: "L050", at: "2:3", message: "rule `never` can never match: its condition is never true",
      hint: "no value of `dst.port` satisfies its tests (they contradict each other, or test an empty set); fix the condition or remove the rule", notes: [],
    }])
  })

  it("does not call a domain with a resolved address unreachable", () => {
    const p = policyOf(`  rule internal when dst.domain == a.com and dst.ip in 10.0.0.0/8 -> block`)
    expect(analyzePolicy(p)).toEqual([])
  })

  it("L051: a rule shadowed by one earlier rule, with a witness the earlier rule decides", () => {
    const p = policyOf([
      `  rule all-web when dst.port in {80, 443} -> allow`,
      `  rule web when dst.port == 443 and dst.domain == example.com -> block`,
    ].join("\n"))
    expect(brief(p)).toEqual([{
      code: "L051", at: "3:3",
      message: "rule `web` is shadowed by rule `all-web` (line 2): every request it matches is decided earlier; e.g. connect example.com:443",
      hint: "move it above `all-web` or remove it", notes: ["2: rule `all-web` is here"],
    }])
  })

  it("L051: a rule covered by the union of earlier port ranges", () => {
    const p = policyOf([
      `  rule low when dst.port in 1..100 -> block`,
      `  rule high when dst.port in 101..200 -> block`,
      `  rule mid when dst.port in 50..150 -> allow`,
    ].join("\n"))
    expect(brief(p)).toEqual([{
      code: "L051", at: "4:3",
      message: "rule `mid` is shadowed by rule `low` (line 2) and rule `high` (line 3): every request it matches is decided earlier; e.g. connect example.com:80",
      hint: "move it above `low` or remove it", notes: ["2: rule `low` is here", "3: rule `high` is here"],
    }])
  })

  it("L051: a union of earlier rules that share the rest of the condition", () => {
    const p = policyOf([
      `  rule a when user == alice and dst.port in 1..100 -> block`,
      `  rule b when dst.port in 101..200 and user in [alice, bob] -> block`,
      `  rule c when user == alice and dst.port in 50..150 and command connect -> allow`,
      `  rule d when user == carol and dst.port in 50..150 -> allow`,
    ].join("\n"))
    expect(brief(p).map((d) => `${d.code} ${d.message}`)).toEqual([
      "L051 rule `c` is shadowed by rule `a` (line 2) and rule `b` (line 3): every request it matches is decided earlier; e.g. connect example.com:80 user alice",
    ])
  })

  it("L051: a union of many rules names three of them and counts the rest", () => {
    const p = policyOf([
      ...Array.from({ length: 5 }, (_, i) => `  rule p${i} when dst.port in ${i * 10 + 1}..${i * 10 + 10} -> block`),
      `  rule all when dst.port in 1..50 -> allow`,
    ].join("\n"))
    const ds = analyzePolicy(p)
    expect(ds.map((d) => `${d.code} ${d.message}`)).toEqual([
      "L051 rule `all` is shadowed by rule `p0` (line 2), rule `p1` (line 3), rule `p2` (line 4) and 2 more: every request it matches is decided earlier; e.g. connect example.com:1",
    ])
    expect(ds[0]!.notes!.length).toBe(3)
  })

  it("L051: a guard that blocks every request of a rule", () => {
    const p = policyOf([
      `  guard no-ads when dst.domain in [.ads.example] -> block "ads"`,
      `  rule tracker when dst.domain == t.ads.example -> allow`,
    ].join("\n"))
    expect(brief(p)).toEqual([{
      code: "L051", at: "3:3",
      message: "rule `tracker` is shadowed by guard `no-ads` (line 2): the guard blocks every request it matches; e.g. connect t.ads.example:443",
      hint: "remove it, or narrow guard `no-ads`", notes: ["2: guard `no-ads` is here"],
    }])
  })

  it("L051: a guard and an earlier rule together", () => {
    const p = policyOf([
      `  guard low when dst.port in 1..100 -> block`,
      `  rule high when dst.port in 101..200 -> allow`,
      `  rule mid when dst.port in 50..150 -> block "mid"`,
    ].join("\n"))
    expect(brief(p)).toEqual([{
      code: "L051", at: "4:3",
      message: "rule `mid` is shadowed by guard `low` (line 2) and rule `high` (line 3): every request it matches is decided earlier; e.g. connect example.com:80",
      hint: "remove it, or narrow the guards and rules above that cover it", notes: ["2: guard `low` is here", "3: rule `high` is here"],
    }])
  })

  it("three-valued covers: `not user == bob` covers a known user, not a rule without one", () => {
    const p = policyOf([
      `  rule not-bob when user != bob -> block`,
      `  rule alice when user == alice -> allow`,
      `  rule ssh when dst.port == 22 -> allow`,
    ].join("\n"))
    expect(brief(p).map((d) => `${d.code} ${d.message}`)).toEqual([
      "L051 rule `alice` is shadowed by rule `not-bob` (line 2): every request it matches is decided earlier; e.g. connect example.com:443 user alice",
    ])
  })

  it("L052: partial overlap on a shared field with different outcomes", () => {
    const p = policyOf([
      `  rule admins when user in [alice, bob] -> allow`,
      `  rule staff when user in [bob, carol] -> block`,
    ].join("\n"))
    expect(brief(p)).toEqual([{
      code: "L052", at: "3:3",
      message: "rule `staff` overlaps rule `admins` (line 2), which comes first and decides differently; e.g. connect example.com:443 user bob: allowed by `admins`, would be blocked by `staff`",
      hint: "order decides these requests: move `staff` above `admins` if it should win, or narrow one of the conditions",
      notes: ["2: rule `admins` is here"],
    }])
  })

  it("L052 is not reported for a specific exception before a general rule, nor for rules on unrelated fields, nor for equal outcomes", () => {
    const p = policyOf([
      `  rule api when dst.domain == api.ads.example -> allow`,
      `  rule ads when dst.domain in [.ads.example] -> block`,
      `  rule admin when user == alice -> allow`,
      `  rule no-ssh when dst.port == 22 -> block`,
      `  rule web when dst.port in 1..100 -> block`,
    ].join("\n"))
    expect(analyzePolicy(p)).toEqual([])
  })

  it("reports at most one L052 per later rule (the first earlier rule)", () => {
    const p = policyOf([
      `  rule a when dst.port in 1..100 -> allow`,
      `  rule b when dst.port in 50..60 or dst.port == 500 -> redirect "127.0.0.1:8080"`,
      `  rule c when dst.port in 40..1000 -> block`,
    ].join("\n"))
    expect(brief(p).map((d) => `${d.code} ${d.message}`)).toEqual([
      "L052 rule `b` overlaps rule `a` (line 2), which comes first and decides differently; e.g. connect example.com:50: allowed by `a`, would be redirected to 127.0.0.1:8080 by `b`",
      "L052 rule `c` overlaps rule `a` (line 2), which comes first and decides differently; e.g. connect example.com:80: allowed by `a`, would be blocked by `c`",
    ])
  })

  it("is sound on random policies: every reported witness is checked against the reference interpreter", () => {
    const r = rng(11)
    const seen: Record<string, number> = {}
    for (let i = 0; i < 400; i++) {
      const p = randomPolicy(r, { maxRules: 8 })
      for (const f of findings(p)) {
        seen[f.code] = (seen[f.code] ?? 0) + 1
        if (f.code === "L050") {
          for (let k = 0; k < 30; k++) expect(isTrue(f.rule.cond, randomRequest(r, randomFacts(r), 0.8))).toBe(false)
          continue
        }
        if (f.code === "L059") continue
        const w = f.request!
        const d = evaluateReference(p, w, OPTS)
        expect(isTrue(f.rule.cond, w)).toBe(true)
        expect(d.type === "decision" && d.decision.rule !== f.rule.name).toBe(true)
        if (f.code === "L052") {
          expect(d.type === "decision" && d.decision.rule).toBe(f.by[0]!.name)
          expect(isTrue(f.by[0]!.cond, w)).toBe(true)
        }
        if (f.code === "L051") {
          // Shadowed: random requests the rule matches are all decided earlier.
          for (let k = 0; k < 30; k++) {
            const q = randomRequest(r, randomFacts(r), 0.8)
            if (!isTrue(f.rule.cond, q)) continue
            const dq = evaluateReference(p, q, OPTS)
            expect(dq.type === "decision" && dq.decision.rule !== f.rule.name).toBe(true)
          }
        }
      }
    }
    expect(seen.L050 ?? 0).toBeGreaterThan(0)
    expect(seen.L051 ?? 0).toBeGreaterThan(5)
    expect(seen.L052 ?? 0).toBeGreaterThan(5)
  })

  it("finishes on 2,000 generated rules and still finds a planted shadowed rule at the end", () => {
    const lines: string[] = []
    const actions = ["allow", "block", "redirect \"127.0.0.1:8080\""]
    for (let i = 0; i < 2000; i++) {
      const a = actions[i % 3]
      switch (i % 4) {
        case 0: lines.push(`  rule r${i} when dst.domain in [.d${i}.example.com] -> ${a}`); break
        case 1: lines.push(`  rule r${i} when dst.port == ${1000 + i} -> ${a}`); break
        case 2: lines.push(`  rule r${i} when dst.ip in 10.${(i >> 8) & 255}.${i & 255}.0/24 and user == u${i % 50} -> ${a}`); break
        default: lines.push(`  rule r${i} when src.ip in 192.168.${i % 256}.0/24 or dst.domain == h${i}.example.org -> ${a}`)
      }
    }
    lines.push(`  rule planted when dst.domain == www.d4.example.com -> allow`)
    const p = policyOf(lines.join("\n"))
    const ds = analyzePolicy(p)
    expect(ds.length).toBeLessThanOrEqual(p.rules.length)
    expect(ds.filter((d) => d.code === "L059")).toEqual([])
    expect(ds.filter((d) => d.code === "L051").map((d) => d.message)).toEqual([
      "rule `planted` is shadowed by rule `r4` (line 6): every request it matches is decided earlier; e.g. connect www.d4.example.com:443",
    ])
  })

  it("stops with a single L059 when the pairwise work exceeds the budget", () => {
    // 2,000 rules of 64 DNF terms each: far beyond the budget.
    const user = (u: string): Cond => m({ kind: "string", field: "user", patterns: [{ t: "glob", g: `${u}*` }] })
    const rules = Array.from({ length: 2000 }, (_, i) => ({
      name: `r${i}`, kind: "rule" as const, modifiers: [],
      cond: and(or(...Array.from({ length: 8 }, (_, k) => port(1 + ((i + k) % 50)))), or(...Array.from({ length: 8 }, (_, k) => user(`u${(i + k) % 7}`)))),
      action: i % 2 === 0 ? { k: "block" as const } : { k: "allow" as const },
    }))
    const p: PolicyIR = { name: "big", guards: [], rules, default: { name: "default", kind: "default", cond: { k: "true" }, action: { k: "allow" }, modifiers: [] } }
    const ds = analyzePolicy(p)
    const stops = ds.filter((d) => d.code === "L059")
    expect(stops.length).toBe(1)
    expect(stops[0]!.message).toMatch(/^analysis of policy `big` stopped at rule `r\d+`: the policy is too large to compare every pair of rules$/)
    expect(ds.length).toBeLessThan(200)
  })

  it("handles large sets (20,000 domains, 5,000 port ranges, 5,000 networks) exactly and quickly", () => {
    const ads = m({ kind: "domain", field: "dst.domain", patterns: Array.from({ length: 20000 }, (_, i) => ({ t: "suffix" as const, d: `ads${i}.example` })) })
    const ports = m({ kind: "port", field: "dst.port", ranges: Array.from({ length: 5000 }, (_, i) => [i * 6 + 1, i * 6 + 3] as const) })
    const nets = m({ kind: "ip", field: "dst.ip", cidrs: Array.from({ length: 5000 }, (_, i) => ({ family: 4 as const, addr: BigInt((11 << 24) + i * 256), prefix: 24 })) })
    const rule = (name: string, cond: Cond, k: "allow" | "block") => ({ name, kind: "rule" as const, cond, action: { k }, modifiers: [] })
    const p: PolicyIR = {
      name: "p",
      guards: [{ name: "no-ads", kind: "guard", cond: ads, action: { k: "block" }, modifiers: [] }],
      rules: [
        rule("odd-ports", ports, "block"),
        rule("nets", nets, "allow"),
        rule("tracker", m({ kind: "domain", field: "dst.domain", patterns: [{ t: "exact", d: "t.ads4711.example" }] }), "allow"),
        rule("p7", port(7, 8), "allow"),
        rule("never", and(m({ kind: "domain", field: "dst.domain", patterns: [{ t: "suffix", d: "ads7.example" }] }), not(ads)), "allow"),
        rule("rest", and(not(ads), not(ports), not(nets), m({ kind: "ip", field: "dst.ip", cidrs: [cidr("11.0.0.0/8")] })), "allow"),
      ],
      default: { name: "default", kind: "default", cond: { k: "true" }, action: { k: "allow" }, modifiers: [] },
    }
    expect(findings(p).map((f) => `${f.code} ${f.rule.name} by ${f.by.map((b) => b.name).join(",")}${f.request === undefined ? "" : `: ${formatRequest(f.request)}`}`)).toEqual([
      "L051 tracker by no-ads: connect t.ads4711.example:443",
      "L051 p7 by odd-ports: connect example.com:7",
      "L050 never by ",
    ])
    expect(formatRequest(witness(p.rules[5]!.cond)!)).toBe("connect example.com:443 dst.ip 11.19.136.0")
  })
})
