/**
 * The GeoIp service: country and ASN lookups from the databases the rules file names.
 *
 * Details: implements the runtime's `GeoProvider`. Country: `geoip "file"`
 * (or `geoip country "file"`) in the rules file, else the built-in CC0
 * database (`@ip-location-db/geo-whois-asn-country-mmdb`, shipped with the
 * package, no download). ASN: `geoip asn "file"` only (the checker requires it,
 * T060). Paths are relative to the rules file. MaxMind GeoLite2/GeoIP2
 * Country/City/ASN and the ip-location-db layouts are read alike (`Layout.ts`).
 * `prepare` opens what a program names beside the running databases (a file
 * that does not open refuses the load); `activate` switches to them and closes
 * the ones no longer named. Each database reloads itself when its file
 * changes. Counters of lookups by kind and result feed the metrics.
 *
 * Gotchas: in the packed CLI the database is `dist/geo-whois-asn-country.mmdb`
 * next to the bundle (found through `import.meta.url`), since the package has
 * no dependencies. The default database is opened lazily (first program that does not
 * name a country database), so a proxy whose policy never asks pays nothing.
 */
import { existsSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, isAbsolute, resolve } from "node:path"
import { fileURLToPath } from "node:url"
import { Context, Effect, Layer } from "effect"
import type { Ir } from "@proxyd/rules"
import type { Geo, Log } from "@proxyd/runtime"
import { openDatabase, type Database, type DatabaseInfo, type ReloadEvent } from "./Database.ts"
import { asnOf, countryOf } from "./Layout.ts"

/** File name of the built-in CC0 country database (IPv4 + IPv6). */
export const DEFAULT_COUNTRY_FILE = "geo-whois-asn-country.mmdb"

/**
 * The built-in CC0 country database: beside the running module when it is the
 * packed CLI bundle (`packages/cli/build.ts` copies it into `dist/`), else
 * from `@ip-location-db/geo-whois-asn-country-mmdb` in node_modules.
 */
export const defaultCountryDatabase = (): string => {
  const beside = fileURLToPath(new URL(DEFAULT_COUNTRY_FILE, import.meta.url))
  return existsSync(beside) ? beside : createRequire(import.meta.url).resolve(`@ip-location-db/geo-whois-asn-country-mmdb/${DEFAULT_COUNTRY_FILE}`)
}

export type LookupKind = "country" | "asn"
export type LookupResult = "hit" | "miss"

export interface GeoIpStats {
  /** Lookups so far, by kind and result. */
  readonly lookups: Readonly<Record<`${LookupKind}_${LookupResult}`, number>>
  readonly reloads: { readonly ok: number; readonly failed: number }
}

export interface GeoIpShape extends Geo.GeoProvider {
  /** The databases in use. */
  databases(): { readonly country?: DatabaseInfo; readonly asn?: DatabaseInfo }
  stats(): GeoIpStats
}

export interface GeoIpOptions {
  /** Replaces the built-in country database used when the rules file names none. */
  readonly defaultCountry?: string
  readonly log?: Log.Log
  /** Watch database files and reopen them on change (default true). */
  readonly watch?: boolean
}

const pathOf = (p: string, rulesFile: string): string => (isAbsolute(p) ? p : resolve(dirname(rulesFile), p))

export const make = (opts: GeoIpOptions = {}): GeoIpShape => {
  const open = new Map<string, Database>()
  let country: Database | undefined
  let asn: Database | undefined
  const lookups = { country_hit: 0, country_miss: 0, asn_hit: 0, asn_miss: 0 }
  const reloads = { ok: 0, failed: 0 }
  const onReload = (e: ReloadEvent) => {
    if (e.ok) { reloads.ok++; opts.log?.info("geoip database reloaded", { path: e.path }) }
    else { reloads.failed++; opts.log?.error("geoip database reload failed; the old one keeps serving", { path: e.path, error: e.error }) }
  }
  const wanted = (program: Ir.Program, rulesFile: string): { country: string; asn?: string } => {
    const c = program.geoip?.country
    const a = program.geoip?.asn
    return {
      country: c === undefined ? opts.defaultCountry ?? defaultCountryDatabase() : pathOf(c, rulesFile),
      ...(a === undefined ? {} : { asn: pathOf(a, rulesFile) }),
    }
  }
  const get = (path: string): Database => {
    let db = open.get(path)
    if (db === undefined) {
      db = openDatabase(path, { watchFile: opts.watch ?? true, onReload })
      open.set(path, db)
    }
    return db
  }
  const usesGeo = (program: Ir.Program): { country: boolean; asn: boolean } => {
    let c = program.geoip?.country !== undefined
    let a = program.geoip?.asn !== undefined
    const walk = (x: Ir.Cond): void => {
      if (x.k === "match") { if (x.m.kind === "country") c = true; else if (x.m.kind === "asn") a = true }
      else if (x.k === "not") walk(x.c)
      else if (x.k === "and" || x.k === "or") for (const i of x.items) walk(i)
    }
    for (const p of program.policies.values()) for (const r of [...p.guards, ...p.rules, p.default]) walk(r.cond)
    return { country: c, asn: a }
  }
  return {
    prepare: (program, rulesFile) => {
      const use = usesGeo(program)
      let w: ReturnType<typeof wanted>
      try {
        w = wanted(program, rulesFile)
      } catch (e) {
        return [`the built-in country database cannot be found (${e instanceof Error ? e.message.split("\n")[0] : String(e)}); declare \`geoip "GeoLite2-Country.mmdb"\``]
      }
      const out: Array<string> = []
      for (const p of [use.country ? w.country : undefined, w.asn]) {
        if (p === undefined) continue
        try { get(p) } catch (e) { out.push(e instanceof Error ? e.message : String(e)) }
      }
      if (use.asn && w.asn === undefined) out.push("ASN fields need an ASN database: declare `geoip asn \"GeoLite2-ASN.mmdb\"`")
      return out
    },
    activate: (program, rulesFile) => {
      const use = usesGeo(program)
      let w: { country?: string; asn?: string }
      try { w = wanted(program, rulesFile) } catch { w = { ...(program.geoip?.asn === undefined ? {} : { asn: pathOf(program.geoip.asn, rulesFile) }) } }
      country = use.country && w.country !== undefined ? open.get(w.country) : undefined
      asn = w.asn === undefined ? undefined : open.get(w.asn)
      for (const [p, db] of open) if (db !== country && db !== asn) { db.close(); open.delete(p) }
    },
    country: (ip) => {
      const v = country === undefined ? null : countryOf(country.get(ip))
      if (v === null) lookups.country_miss++
      else lookups.country_hit++
      return v
    },
    asn: (ip) => {
      const v = asn === undefined ? null : asnOf(asn.get(ip))
      if (v === null) lookups.asn_miss++
      else lookups.asn_hit++
      return v
    },
    databases: () => ({ ...(country === undefined ? {} : { country: country.info() }), ...(asn === undefined ? {} : { asn: asn.info() }) }),
    stats: () => ({ lookups: { ...lookups }, reloads: { ...reloads } }),
    close: () => {
      for (const db of open.values()) db.close()
      open.clear()
      country = undefined
      asn = undefined
    },
  }
}

/** Looks up one address in one database file, without a program (for `proxyd` tools and tests). */
export const lookupFile = (path: string, ip: string): { readonly country: string | null; readonly asn: number | null } => {
  const db = openDatabase(path, { watchFile: false })
  try {
    const r = db.get(ip)
    return { country: countryOf(r), asn: asnOf(r) }
  } finally {
    db.close()
  }
}

export class GeoIp extends Context.Service<GeoIp, GeoIpShape>()("proxyd/GeoIp") {
  /** The provider, closed (watchers stopped) when the layer's scope ends. */
  static readonly layer = (opts: GeoIpOptions = {}): Layer.Layer<GeoIp> =>
    Layer.effect(GeoIp, Effect.acquireRelease(Effect.sync(() => make(opts)), (g) => Effect.sync(() => g.close())))
}
