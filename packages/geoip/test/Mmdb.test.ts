/**
 * MaxMind-layout databases written by the test (`MiniMmdb.ts`): City and ASN
 * records read through `maxmind`, and ASN/country decisions in the decide loop.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { Check } from "@proxyd/rules"
import { Decide, Engine, type Resolver } from "@proxyd/runtime"
import { GeoIp } from "../src/index.ts"
import { writeMmdb } from "./MiniMmdb.ts"

const dir = mkdtempSync(join(tmpdir(), "geoip-mmdb-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const city = join(dir, "city.mmdb")
const asn = join(dir, "asn.mmdb")
writeFileSync(city, writeMmdb("GeoLite2-City", [
  ["203.0.113.0/24", { city: { names: { en: "Berlin" } }, country: { iso_code: "DE" }, registered_country: { iso_code: "DE" } }],
  ["198.51.100.0/25", { registered_country: { iso_code: "FR" } }],
]))
writeFileSync(asn, writeMmdb("GeoLite2-ASN", [
  ["203.0.113.0/24", { autonomous_system_number: 64500, autonomous_system_organization: "Example Net" }],
  ["192.0.2.0/24", { asn: "AS64501" }],
]))

describe("MaxMind City and ASN layouts (generated databases)", () => {
  it("reads country from City records (registered_country as the fallback) and ASNs from both ASN layouts", () => {
    expect(GeoIp.lookupFile(city, "203.0.113.7")).toEqual({ country: "DE", asn: null })
    expect(GeoIp.lookupFile(city, "198.51.100.1").country).toBe("FR")
    expect(GeoIp.lookupFile(city, "198.51.100.200").country).toBeNull()
    expect(GeoIp.lookupFile(asn, "203.0.113.250").asn).toBe(64500)
    expect(GeoIp.lookupFile(asn, "192.0.2.1").asn).toBe(64501)
    expect(GeoIp.lookupFile(asn, "10.0.0.1").asn).toBeNull()
  })

  it("decides on dst.asn and src.country with `geoip` and `geoip asn` databases", async () => {
    const file = join(dir, "p.rules")
    writeFileSync(file, [
      'geoip "city.mmdb"',
      'geoip asn "asn.mmdb"',
      "policy main {",
      "  guard private-as when dst.asn in [64500, 64501] -> block",
      "  rule de when src.country == DE -> allow",
      "  default block",
      "}",
    ].join("\n"))
    const program = Check.checkFiles([file], Check.nodeReader).program!
    const geo = GeoIp.make({ watch: false })
    expect(geo.prepare(program, file)).toEqual([])
    geo.activate(program, file)
    expect(geo.databases().asn?.type).toBe("GeoLite2-ASN")
    const compiled = Engine.compile(program.policies.get("main")!)
    const none = { resolve: () => Effect.succeed([]) } as unknown as Resolver.ResolverShape
    const run = (dstHost: string, srcIp: string) =>
      Effect.runPromise(Decide.decide(compiled, { command: "connect", dstHost, dstPort: 443, srcIp, srcPort: 1 }, none, geo)).then((d) => d.decision.rule)
    expect(await run("192.0.2.9", "10.0.0.1")).toBe("private-as")
    expect(await run("198.51.100.9", "203.0.113.5")).toBe("de")
    expect(await run("198.51.100.9", "10.0.0.1")).toBe("default")
    expect(await run("unresolvable.example", "10.0.0.1")).toBe("default")
    expect(geo.stats().lookups.asn_hit).toBeGreaterThanOrEqual(1)
    geo.close()
  })

  it("refuses ASN fields without an ASN database (the checker says T060; the provider says so too)", () => {
    const file = join(dir, "q.rules")
    writeFileSync(file, "policy main {\n  rule a when dst.asn == 1 -> allow\n  default block\n}\n")
    const r = Check.checkFiles([file], Check.nodeReader)
    expect(r.diagnostics.map((d) => d.code)).toContain("T060")
  })
})
