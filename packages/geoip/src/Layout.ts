/**
 * Country and ASN out of one mmdb record, whatever the database's layout.
 *
 * Details: MaxMind GeoLite2/GeoIP2 Country and City records carry
 * `country.iso_code` (falling back to `registered_country.iso_code`, e.g. for
 * anycast ranges with no physical country); the ip-location-db country layouts
 * carry a flat `country_code`. ASN: MaxMind GeoLite2-ASN and ip-location-db's
 * asn mmdb both use `autonomous_system_number`; some builds use `asn`
 * (a number, or a string such as "AS13335"). Codes come back upper-case.
 *
 * Gotchas: a record that has neither shape yields `null` (unknown), never an
 * empty string; the rules evaluator treats null as "no entry".
 */

type Rec = Readonly<Record<string, unknown>>

const obj = (v: unknown): Rec | undefined => (typeof v === "object" && v !== null ? v as Rec : undefined)

const code = (v: unknown): string | null => (typeof v === "string" && /^[A-Za-z]{2}$/.test(v) ? v.toUpperCase() : null)

/** The ISO 3166-1 alpha-2 code of a record, or null. */
export const countryOf = (record: unknown): string | null => {
  const r = obj(record)
  if (r === undefined) return null
  return code(obj(r["country"])?.["iso_code"]) ?? code(r["country_code"]) ?? code(obj(r["registered_country"])?.["iso_code"])
}

const asNumber = (v: unknown): number | null => {
  if (typeof v === "number" && Number.isInteger(v) && v >= 0) return v
  if (typeof v === "string") {
    const m = /^(?:AS)?(\d{1,10})$/i.exec(v.trim())
    if (m !== null) return Number(m[1])
  }
  return null
}

/** The autonomous system number of a record, or null. */
export const asnOf = (record: unknown): number | null => {
  const r = obj(record)
  if (r === undefined) return null
  return asNumber(r["autonomous_system_number"]) ?? asNumber(r["asn"])
}
