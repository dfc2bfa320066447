/**
 * The GeoIP fact source the decide loop asks for `src/dst.country` and `src/dst.asn`.
 *
 * Details: the runtime never imports a database reader; `@proxyd/geoip`
 * implements `GeoProvider` and the CLI passes it in (`startServer({ geoip })`),
 * like the protocol handlers. `prepare` runs with every load (start and
 * reload): it opens the databases the program names (`geoip "file"`,
 * `geoip asn "file"`, relative to the rules file) and returns refusals, like a
 * check; `activate` switches lookups to that program's databases once the
 * load is accepted. Lookups are synchronous (in-memory databases).
 *
 * Gotchas: a program that uses country/ASN fields and no provider refuses to
 * start (`Support.ts`): a missing fact would silently never match.
 */
import type { Ir } from "@proxyd/rules"

export interface GeoLookup {
  /** ISO 3166-1 alpha-2 code, or null (no entry, not an address). */
  country(ip: string): string | null
  /** Autonomous system number, or null. */
  asn(ip: string): number | null
}

export interface GeoProvider extends GeoLookup {
  /** Opens what the program needs; each string refuses the program (start or reload). */
  prepare(program: Ir.Program, rulesFile: string): ReadonlyArray<string>
  /** Serves lookups from the databases prepared for this program. */
  activate(program: Ir.Program, rulesFile: string): void
  close(): void
}

/** A provider from a plugin's GeoIp service (its per-load hooks when it has them, else none). */
export const providerOf = (g: (GeoLookup & { readonly prepare?: GeoProvider["prepare"]; readonly activate?: GeoProvider["activate"] }) | undefined): GeoProvider | undefined =>
  g === undefined ? undefined : {
    country: (ip) => g.country(ip),
    asn: (ip) => g.asn(ip),
    prepare: (p, f) => g.prepare?.(p, f) ?? [],
    activate: (p, f) => g.activate?.(p, f),
    close: () => {},
  }
