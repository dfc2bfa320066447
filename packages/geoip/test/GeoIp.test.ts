import { copyFileSync, mkdtempSync, writeFileSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { Check } from "@proxyd/rules"
import { Decide, Engine, Resolver } from "@proxyd/runtime"
import { GeoIp, Layout } from "../src/index.ts"

const db = GeoIp.defaultCountryDatabase()

describe("built-in CC0 country database (lookups only, no traffic)", () => {
  it("gives the registered country of well-known public addresses", () => {
    // Google DNS, Quad9, RIPE NCC, AusNIC-registered 1.1.1.1 (Cloudflare/APNIC), Google DNS over IPv6.
    expect(GeoIp.lookupFile(db, "8.8.8.8").country).toBe("US")
    expect(GeoIp.lookupFile(db, "9.9.9.9").country).toBe("US")
    expect(GeoIp.lookupFile(db, "193.0.6.139").country).toBe("NL")
    expect(GeoIp.lookupFile(db, "1.1.1.1").country).toBe("AU")
    expect(GeoIp.lookupFile(db, "2001:4860:4860::8888").country).toBe("US")
    expect(GeoIp.lookupFile(db, "::ffff:8.8.8.8").country).toBe("US")
  })

  it("has no country for private, loopback or malformed addresses", () => {
    for (const ip of ["127.0.0.1", "10.1.2.3", "::1", "not-an-ip", ""]) expect(GeoIp.lookupFile(db, ip).country).toBeNull()
  })
})

describe("record layouts", () => {
  it("reads MaxMind and ip-location-db country fields alike", () => {
    expect(Layout.countryOf({ country: { iso_code: "DE" }, registered_country: { iso_code: "FR" } })).toBe("DE")
    expect(Layout.countryOf({ registered_country: { iso_code: "FR" } })).toBe("FR")
    expect(Layout.countryOf({ country_code: "jp" })).toBe("JP")
    expect(Layout.countryOf({ city: { names: { en: "Berlin" } } })).toBeNull()
    expect(Layout.countryOf(null)).toBeNull()
  })

  it("reads ASN fields from MaxMind and ip-location-db layouts", () => {
    expect(Layout.asnOf({ autonomous_system_number: 15169, autonomous_system_organization: "GOOGLE" })).toBe(15169)
    expect(Layout.asnOf({ asn: 13335 })).toBe(13335)
    expect(Layout.asnOf({ asn: "AS13335" })).toBe(13335)
    expect(Layout.asnOf({ country_code: "US" })).toBeNull()
  })
})

const programOf = (dir: string, text: string) => {
  const f = join(dir, "p.rules")
  writeFileSync(f, text)
  const r = Check.checkFiles([f], Check.nodeReader)
  if (r.program === undefined) throw new Error(JSON.stringify(r.diagnostics))
  return { file: f, program: r.program }
}

const noDns: Resolver.ResolverShape = {
  resolve: (h) => Effect.succeed(h === "dns.google.test" ? ["8.8.8.8"] : []),
} as Resolver.ResolverShape

describe("GeoIp provider in the decide loop", () => {
  it("answers dst.country for an IP literal, for a resolved name, src.country, and nothing for .onion", async () => {
    const dir = mkdtempSync(join(tmpdir(), "geoip-"))
    try {
      const { file, program } = programOf(dir, [
        "policy main {",
        "  guard us when dst.country == US -> block \"US\"",
        "  rule nl when src.country == NL -> allow",
        "  default block \"other\"",
        "}",
      ].join("\n"))
      const geo = GeoIp.make({ watch: false })
      expect(geo.prepare(program, file)).toEqual([])
      geo.activate(program, file)
      const compiled = Engine.compile(program.policies.get("main")!)
      const run = (dstHost: string, srcIp: string) =>
        Effect.runPromise(Decide.decide(compiled, { command: "connect", dstHost, dstPort: 443, srcIp, srcPort: 5000 }, noDns, geo))
      const lit = await run("8.8.8.8", "127.0.0.1")
      expect(lit.decision.rule).toBe("us")
      const named = await run("dns.google.test", "127.0.0.1")
      expect(named.decision.rule).toBe("us")
      expect(named.resolved).toBe("8.8.8.8")
      expect((await run("193.0.6.139", "193.0.6.139")).decision.rule).toBe("nl")
      const onion = await run("expyuzz4wqqyqhjn.onion", "127.0.0.1")
      expect(onion.decision.rule).toBe("default")
      expect(onion.resolved).toBeUndefined()
      expect(geo.stats().lookups.country_hit).toBeGreaterThanOrEqual(3)
      geo.close()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it("opens `geoip \"file\"` relative to the rules file, refuses a missing file, and reloads a replaced one", async () => {
    const dir = mkdtempSync(join(tmpdir(), "geoip-"))
    try {
      copyFileSync(db, join(dir, "country.mmdb"))
      const { file, program } = programOf(dir, 'geoip "country.mmdb"\npolicy main {\n  rule a when dst.country == US -> allow\n  default block\n}\n')
      const geo = GeoIp.make()
      expect(geo.prepare(program, file)).toEqual([])
      geo.activate(program, file)
      expect(geo.databases().country?.path).toBe(join(dir, "country.mmdb"))
      expect(geo.country("8.8.8.8")).toBe("US")
      const before = geo.databases().country!.loadedAt
      await new Promise((r) => setTimeout(r, 20))
      copyFileSync(db, join(dir, "country.mmdb.tmp"))
      const { renameSync } = await import("node:fs")
      renameSync(join(dir, "country.mmdb.tmp"), join(dir, "country.mmdb"))
      for (let i = 0; i < 50 && geo.stats().reloads.ok === 0; i++) await new Promise((r) => setTimeout(r, 100))
      expect(geo.stats().reloads.ok).toBeGreaterThanOrEqual(1)
      expect(geo.databases().country!.loadedAt >= before).toBe(true)
      expect(geo.country("8.8.8.8")).toBe("US")
      geo.close()
      const missing = programOf(dir, 'geoip "nope.mmdb"\npolicy main {\n  rule a when dst.country == US -> allow\n  default block\n}\n')
      const g2 = GeoIp.make({ watch: false })
      expect(g2.prepare(missing.program, missing.file).join("\n")).toMatch(/nope\.mmdb.*cannot be opened/)
      g2.close()
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })
})
