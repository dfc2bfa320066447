import { describe, expect, it } from "vitest"
import type { Cond } from "../src/Ir.ts"
import { check, diags } from "./CheckerHelpers.ts"

/** The condition of the first rule, without spans. */
const cond = (when: string, decls = "", action = "allow"): Cond | string[] => {
  const r = check(`${decls}policy p {\n  rule r when ${when} -> ${action}\n  default block\n}\n`)
  const c = r.program?.policies.get("p")?.rules[0]?.cond
  if (c === undefined) return r.diagnostics.map((d) => `${d.code} ${d.message}`)
  return JSON.parse(JSON.stringify(c, (k, v) => (k === "span" ? undefined : typeof v === "bigint" ? Number(v) : v))) as Cond
}

describe("Checker: conditions to Cond", () => {
  it("turns `!=` and `not in` into not(match)", () => {
    expect(cond("dst.port != 22")).toEqual({ k: "not", c: { k: "match", m: { kind: "port", field: "dst.port", ranges: [[22, 22]] } } })
    expect(cond("command not in [bind, udp]")).toEqual({ k: "not", c: { k: "match", m: { kind: "enum", field: "command", values: ["bind", "udp"] } } })
  })

  it("turns port comparisons into ranges", () => {
    const ranges = ["< 1024", "<= 1024", "> 1024", ">= 1024"].map((op) => (cond(`dst.port ${op}`) as { m: { ranges: unknown } }).m.ranges)
    expect(ranges).toEqual([[[0, 1023]], [[0, 1024]], [[1025, 65535]], [[1024, 65535]]])
    expect(cond("src.port < 0")).toEqual(["T024 `src.port < 0` is never true"])
  })

  it("inlines set references and keeps the set name", () => {
    expect(cond("dst.ip in lan", "set lan = cidrs [10.0.0.0/8, ::1]\n")).toEqual({
      k: "match", setRef: "lan", m: { kind: "ip", field: "dst.ip", cidrs: [{ family: 4, addr: 167772160, prefix: 8 }, { family: 6, addr: 1, prefix: 128 }] },
    })
  })

  it("normalises domains: lower case, no trailing dot, suffix and subdomain forms", () => {
    expect(cond("dst.domain in [Example.COM., .corp.example, *.cdn.example]")).toEqual({
      k: "match", m: { kind: "domain", field: "dst.domain", patterns: [{ t: "exact", d: "example.com" }, { t: "suffix", d: "corp.example" }, { t: "sub", d: "cdn.example" }] },
    })
    expect(cond('dst.domain suffix ".Onion"', "", "block")).toEqual({ k: "match", m: { kind: "domain", field: "dst.domain", patterns: [{ t: "suffix", d: "onion" }] } })
    expect(cond('dst.domain matches "Ads.*"')).toEqual({ k: "match", m: { kind: "domain", field: "dst.domain", patterns: [{ t: "glob", g: "ads.*" }] } })
  })

  it("upper-cases countries and reads ASNs as numbers", () => {
    const geo = 'geoip "c.mmdb"\ngeoip asn "a.mmdb"\n'
    expect(cond("dst.country in [de, FR] and src.asn == AS13335", geo)).toEqual({
      k: "and", items: [
        { k: "match", m: { kind: "country", field: "dst.country", values: ["DE", "FR"] } },
        { k: "match", m: { kind: "asn", field: "src.asn", values: [13335] } },
      ],
    })
  })

  it("turns time specs into a days bitmask, windows and a zone", () => {
    expect(cond('time Mon-Fri 08:00-12:00 13:00-17:00 tz "Europe/Berlin"')).toEqual({
      k: "match", m: { kind: "time", field: "time", days: 62, windows: [[480, 720], [780, 1020]], tz: "Europe/Berlin" },
    })
    expect(cond("time in Sat,Sun")).toEqual({ k: "match", m: { kind: "time", field: "time", days: 65, windows: [[0, 1440]], tz: "UTC" } })
  })

  it("keeps and/or/not structure and parentheses", () => {
    expect(cond("not (protocol http or auth none) and user matches \"svc-*\"")).toEqual({
      k: "and", items: [
        { k: "not", c: { k: "or", items: [{ k: "match", m: { kind: "enum", field: "protocol", values: ["http"] } }, { k: "match", m: { kind: "enum", field: "auth", values: ["none"] } }] } },
        { k: "match", m: { kind: "string", field: "user", patterns: [{ t: "glob", g: "svc-*" }] } },
      ],
    })
  })

  it("allows `FIELD VALUE` only for enum fields", () => {
    expect(cond("command connect")).toEqual({ k: "match", m: { kind: "enum", field: "command", values: ["connect"] } })
    const r = check("policy p {\n  rule r when dst.port 443 -> allow\n  default block\n}\n")
    expect(r.diagnostics.map((d) => [d.code, d.message, d.span.start.column, d.hint])).toEqual([["T062", "`dst.port` needs an operator", 15, "write `dst.port == 443`"]])
  })

  it("reports unknown fields, operators and enum values with suggestions", () => {
    const r = check('policy p {\n  rule a when dst.domian == a.com -> allow\n  rule b when dst.ip suffix "x" -> allow\n  rule c when command conect -> allow\n  rule d when listener == lan -> allow\n  default block\n}\n')
    expect(r.diagnostics.map((d) => [d.code, d.message, d.hint])).toEqual([
      ["T061", "unknown field `dst.domian`", "did you mean `dst.domain`?"],
      ["T062", "operator `suffix` does not apply to `dst.ip`", "`dst.ip` takes `==`, `!=`, `in`, `not in`"],
      ["T063", "`conect` is not a command", "did you mean `connect`?"],
      ["T010", "undefined listener `lan`", undefined],
    ])
  })

  it("requires geoip for country fields and geoip asn for ASN fields", () => {
    expect(diags('geoip "c.mmdb"\npolicy p {\n  rule a when src.country == DE -> allow\n  rule b when dst.asn == 1 -> allow\n  default block\n}\n')).toEqual([
      "4:15 T060 `dst.asn` needs a GeoIP ASN database",
    ])
  })

  it("accepts country fields with no geoip declaration (built-in database) but not ASN fields", () => {
    expect(diags("policy p {\n  rule a when dst.country in [KP, IR] -> block\n  rule b when src.asn == 1 -> allow\n  default allow\n}\n")).toEqual([
      "3:15 T060 `src.asn` needs a GeoIP ASN database",
    ])
  })

  it("asks for `in` when `==` is given a list", () => {
    expect(diags("policy p {\n  rule a when dst.port == [80, 443] -> allow\n  default block\n}\n")).toEqual(["2:24 T004 `==` compares with one value; use `in` for a list"])
  })

  it("accepts a single CIDR after `in`", () => {
    expect(cond("src.ip in 192.168.0.0/16")).toEqual({ k: "match", m: { kind: "ip", field: "src.ip", cidrs: [{ family: 4, addr: 3232235520, prefix: 16 }] } })
  })
})

describe("Checker: user groups in conditions", () => {
  it("reads `group in NAME` of a user group as membership, and points `user in NAME` at `group ==`", () => {
    const decls = "usergroup admins = [alice]\n"
    expect(cond("group in admins", decls)).toEqual({ k: "match", m: { kind: "group", field: "group", values: ["admins"] } })
    const r = check(`${decls}policy p {\n  rule r when user in admins -> allow\n  default block\n}\n`)
    expect(r.diagnostics.map((d) => [d.code, d.message, d.hint])).toEqual([["T012", "`admins` is a user group, not a set", "to test membership write `group == admins`"]])
  })
})
