import { describe, expect, it } from "vitest"
import { type ListPool, listOf, ListsBuilder, type Sink } from "../src/Candidates.ts"
import { compile, factsOf, plans } from "../src/Compiler.ts"
import { collectDomain, DomainIndexBuilder, type DomainKind } from "../src/DomainIndex.ts"
import { newBox, parseInto } from "../src/FastIp.ts"
import type { Cidr, Cond, Matcher, PolicyIR, RuleIR } from "../src/Ir.ts"
import { cidrContains, parseCidr, parseIp } from "../src/Ip.ts"
import { collectIp, hasIp, IpIndexBuilder, ipSet } from "../src/IpIndex.ts"
import { domainPatternMatches } from "../src/Match.ts"
import { alignedBlocks, collectPort, PortIndexBuilder } from "../src/PortIndex.ts"
import * as Random from "../src/Random.ts"

const m = (matcher: Matcher): Cond => ({ k: "match", m: matcher })
const cidr = (t: string): Cidr => { const r = parseCidr(t); if (!r.ok) throw new Error(r.message); return r.cidr }
const rule = (name: string, cond: Cond, kind: RuleIR["kind"] = "rule"): RuleIR => ({ name, kind, cond, action: { k: "allow" }, modifiers: [] })
const policy = (rules: RuleIR[], guards: RuleIR[] = []): PolicyIR => ({ name: "p", guards, rules, default: rule("default", { k: "true" }, "default") })
const sink = (): Sink => ({ ids: new Int32Array(1), n: 0 })
/** Sorted distinct positions in a sink. */
const positions = (pool: ListPool, s: Sink): number[] => [...new Set(Array.from(s.ids.subarray(0, s.n)).flatMap((id) => listOf(pool, id)))].sort((a, b) => a - b)

const dstIp = (...cidrs: string[]) => m({ kind: "ip", field: "dst.ip", cidrs: cidrs.map(cidr) })
const domain = (t: "exact" | "suffix" | "sub", d: string) => m({ kind: "domain", field: "dst.domain", patterns: [{ t, d }] })
const port = (lo: number, hi = lo) => m({ kind: "port", field: "dst.port", ranges: [[lo, hi]] })
const country = (field: "dst.country" | "src.country", ...values: string[]) => m({ kind: "country", field, values })
const asn = (field: "dst.asn" | "src.asn", ...values: number[]) => m({ kind: "asn", field, values })
const user = (s: string) => m({ kind: "string", field: "user", patterns: [{ t: "exact", s }] })

describe("Compiler: needs and factsNeeded", () => {
  it("lists the costly facts of each rule, in canonical order, through and/or/not", () => {
    const p = policy(
      [
        rule("cheap", { k: "and", items: [domain("suffix", "example.com"), port(443), user("alice")] }),
        rule("geo", { k: "or", items: [country("dst.country", "DE"), { k: "not", c: asn("src.asn", 13335) }, dstIp("10.0.0.0/8")] }),
        rule("src-ip-is-cheap", m({ kind: "ip", field: "src.ip", cidrs: [cidr("10.0.0.0/8")] })),
      ],
      [rule("g", country("src.country", "CN"), "guard")],
    )
    const c = compile(p)
    const needs = new Map([...p.guards, ...p.rules, p.default].map((r) => [r.name, factsOf(r.cond)]))
    expect(needs.get("cheap")).toEqual([])
    expect(needs.get("geo")).toEqual(["dst.ip", "dst.country", "src.asn"])
    expect(needs.get("src-ip-is-cheap")).toEqual([])
    expect(needs.get("g")).toEqual(["src.country"])
    expect(needs.get("default")).toEqual([])
    expect(c.factsNeeded).toEqual(["dst.ip", "dst.country", "src.country", "src.asn"])
  })

  it("has no facts to resolve for a policy on cheap fields only", () => {
    const c = compile(policy([rule("a", domain("exact", "a.example")), rule("b", { k: "not", c: user("bob") })]))
    expect(c.factsNeeded).toEqual([])
    expect(factsOf({ k: "true" })).toEqual([])
  })
})

describe("Compiler: triggers", () => {
  it("indexes a positive conjunct, prefers cheap selective fields, and keeps `not`/`true` rules as always-candidates", () => {
    const c = compile(policy([
      rule("and", { k: "and", items: [port(443), dstIp("10.0.0.0/8"), domain("exact", "rare.example")] }),
      rule("ip-only", { k: "and", items: [dstIp("10.0.0.0/8"), port(443)] }),
      rule("not", { k: "not", c: domain("exact", "x.example") }),
      rule("bare", { k: "true" }),
      rule("or", { k: "or", items: [user("alice"), domain("suffix", "b.example")] }),
      rule("or-with-not", { k: "or", items: [user("alice"), { k: "not", c: user("bob") }] }),
    ]))
    const triggers = plans(c).map((p) => p.triggers?.map((t) => t.field))
    expect(triggers).toEqual([["dst.domain"], ["dst.port"], undefined, undefined, ["user", "dst.domain"], undefined])
    expect(listOf(c.lists, c.always)).toEqual([2, 3, 5])
    // The residual is what is left once the trigger holds.
    expect(plans(c)[0].residual).toEqual({ k: "and", items: [port(443), dstIp("10.0.0.0/8")] })
    expect(plans(c)[3].residual).toEqual({ k: "true" })
  })

  it("puts guards before rules in position order", () => {
    const c = compile(policy([rule("r", port(80, 81))], [rule("g", port(80), "guard")]))
    expect(plans(c).map((p) => p.rule.name)).toEqual(["g", "r"])
    expect(Array.from(c.dstPort!.index.lists).flatMap((id) => listOf(c.lists, id)).sort()).toEqual([0, 1])
  })

  it("leaves a rule with the same condition as an earlier one out of every index", () => {
    const c = compile(policy([rule("a", port(22)), rule("b", port(80)), rule("a-again", port(22)), rule("t", { k: "true" }), rule("t-again", { k: "true" })]))
    expect(plans(c).map((p) => p.shadowedBy)).toEqual([undefined, undefined, 0, undefined, 3])
    expect(Array.from(c.shadowedBy)).toEqual([-1, -1, 0, -1, 3])
    expect(Array.from(c.dstPort!.index.lists).flatMap((id) => listOf(c.lists, id)).sort()).toEqual([0, 1])
    expect(listOf(c.lists, c.always)).toEqual([3])
  })

  it("does not mistake different conditions for the same one", () => {
    const e = (...values: string[]) => m({ kind: "enum", field: "listener", values })
    const u = (...s: string[]) => m({ kind: "string", field: "user", patterns: s.map((x) => ({ t: "exact" as const, s: x })) })
    const conds: Cond[] = [
      e(), e(""), e("", ""), e("a,b"), e("a", "b"), e("a\u0000b"), e("a\u0004", "b"), e("a", "\u0004b"),
      u("a"), { k: "not", c: u("a") }, { k: "and", items: [u("a")] }, { k: "or", items: [u("a")] }, { k: "and", items: [u("a"), u("b")] }, { k: "and", items: [u("a", "b")] },
      { k: "and", items: [] }, { k: "or", items: [] }, { k: "true" },
      m({ kind: "group", field: "group", values: ["a"] }), m({ kind: "domain", field: "dst.domain", patterns: [{ t: "exact", d: "a" }] }), m({ kind: "domain", field: "dst.domain", patterns: [{ t: "suffix", d: "a" }] }),
      m({ kind: "ip", field: "dst.ip", cidrs: [cidr("10.0.0.0/8")] }), m({ kind: "ip", field: "dst.ip", cidrs: [cidr("10.0.0.0/16")] }), m({ kind: "ip", field: "src.ip", cidrs: [cidr("10.0.0.0/8")] }),
      m({ kind: "time", field: "time", days: 3, windows: [[0, 60]], tz: "UTC" }), m({ kind: "time", field: "time", days: 3, windows: [[0, 60]], tz: "Europe/Berlin" }),
    ]
    const c = compile(policy(conds.map((cond, i) => rule(`r${i}`, cond))))
    expect(plans(c).filter((p) => p.shadowedBy !== undefined).map((p) => p.rule.name)).toEqual([])
  })
})

describe("DomainIndex", () => {
  it("returns exactly the patterns that match, per Match.domainPatternMatches, on random names", () => {
    const r = Random.rng(7)
    const names0 = [...Random.DOMAINS, "", "a..b", "b", ".b", "x.a..b", "EXAMPLE.com", "example.com."]
    const pats: Array<{ t: DomainKind; d: string }> = []
    const lists = new ListsBuilder()
    const b = new DomainIndexBuilder(lists)
    for (let i = 0; i < 60; i++) {
      const p = { t: Random.pick(r, ["exact", "suffix", "sub"] as const), d: Random.pick(r, names0) }
      pats.push(p)
      b.add(p.t, p.d, i)
    }
    const ix = b.build()
    const pool = lists.build()
    const names = [...names0, "q.www.example.com", "z.facebookcorewwwi.onion", "x.b", "y.x.a..b", "..b"]
    for (const name of names) {
      const s = sink()
      collectDomain(ix, name, s)
      const want = pats.flatMap((p, i) => (domainPatternMatches(p, name) ? [i] : []))
      expect(positions(pool, s), name).toEqual(want)
    }
  })
})

describe("IpIndex and IpSet", () => {
  it("finds every CIDR containing an address (nested, v4 and v6, edges) and agrees with Ip.cidrContains", () => {
    const r = Random.rng(11)
    const cidrs: Cidr[] = []
    const lists = new ListsBuilder()
    const b = new IpIndexBuilder(lists)
    for (let i = 0; i < 80; i++) {
      const c = Random.randomCidr(r)
      cidrs.push(c)
      b.add(c, i)
    }
    b.add(cidr("0.0.0.0/0"), 80)
    b.add(cidr("::/0"), 81)
    cidrs.push(cidr("0.0.0.0/0"), cidr("::/0"))
    const ix = b.build()
    const pool = lists.build()
    const addrs = [...Random.V4, ...Random.V6, ...Random.MAPPED, "10.0.0.0", "10.255.255.255", "11.0.0.0", "9.255.255.255", "192.168.1.11", "2001:db8::", "2001:db8::2", "fe80::", "fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]
    for (const a of addrs) {
      const box = newBox()
      expect(parseInto(a, box)).toBe(true)
      const s = sink()
      collectIp(ix, box, s)
      const ip = parseIp(a)!
      expect(positions(pool, s), a).toEqual(cidrs.flatMap((c, i) => (cidrContains(c, ip) ? [i] : [])))
      const set = ipSet(cidrs.slice(0, 10))
      expect(hasIp(set, box), a).toBe(cidrs.slice(0, 10).some((c) => cidrContains(c, ip)))
    }
  })

  it("handles an empty index", () => {
    const ix = new IpIndexBuilder(new ListsBuilder()).build()
    const box = newBox()
    parseInto("1.2.3.4", box)
    const s = sink()
    collectIp(ix, box, s)
    expect(s.n).toBe(0)
  })
})

describe("PortIndex", () => {
  it("splits ranges into aligned blocks that cover them exactly", () => {
    expect(alignedBlocks(0, 65535)).toEqual([[0, 65535]])
    expect(alignedBlocks(443, 443)).toEqual([[443, 443]])
    expect(alignedBlocks(1, 6)).toEqual([[1, 1], [2, 3], [4, 5], [6, 6]])
    const r = Random.rng(3)
    for (let i = 0; i < 200; i++) {
      const lo = Random.int(r, 0, 65535)
      const hi = Random.int(r, lo, 65535)
      const blocks = alignedBlocks(lo, hi)
      expect(blocks.length).toBeLessThanOrEqual(32)
      expect(blocks[0][0]).toBe(lo)
      expect(blocks[blocks.length - 1][1]).toBe(hi)
      for (let k = 1; k < blocks.length; k++) expect(blocks[k][0]).toBe(blocks[k - 1][1] + 1)
    }
  })

  it("finds every range containing a port, and refuses ports outside 0..65535", () => {
    const r = Random.rng(5)
    const ranges: Array<[number, number]> = []
    const lists = new ListsBuilder()
    const b = new PortIndexBuilder(lists)
    for (let i = 0; i < 100; i++) {
      const lo = Random.chance(r, 0.5) ? Random.pick(r, Random.PORTS) : Random.int(r, 0, 65535)
      const hi = Random.chance(r, 0.5) ? lo : Random.int(r, lo, 65535)
      ranges.push([lo, hi])
      b.add(lo, hi, i)
    }
    const ix = b.build()
    const pool = lists.build()
    for (let k = 0; k < 500; k++) {
      const p = k < Random.PORTS.length ? Random.PORTS[k] : Random.int(r, 0, 65535)
      const s = sink()
      expect(collectPort(ix, p, s)).toBe(true)
      expect(positions(pool, s), String(p)).toEqual(ranges.flatMap(([lo, hi], i) => (p >= lo && p <= hi ? [i] : [])))
    }
    expect(collectPort(ix, 65536, sink())).toBe(false)
    expect(collectPort(ix, -1, sink())).toBe(false)
    expect(collectPort(ix, 1.5, sink())).toBe(false)
  })
})
