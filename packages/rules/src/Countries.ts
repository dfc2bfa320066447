/**
 * ISO 3166-1 alpha-2 country codes (the 249 officially assigned ones), for
 * validating `src.country`/`dst.country` values and `countries` sets.
 *
 * Gotchas: `UK` is not a code (Great Britain is `GB`), `EU` is not a country;
 * both get a specific hint from the checker.
 */

const CODES = (
  "AD AE AF AG AI AL AM AO AQ AR AS AT AU AW AX AZ BA BB BD BE BF BG BH BI BJ BL BM BN BO BQ BR BS BT BV BW BY BZ " +
  "CA CC CD CF CG CH CI CK CL CM CN CO CR CU CV CW CX CY CZ DE DJ DK DM DO DZ EC EE EG EH ER ES ET FI FJ FK FM FO FR " +
  "GA GB GD GE GF GG GH GI GL GM GN GP GQ GR GS GT GU GW GY HK HM HN HR HT HU ID IE IL IM IN IO IQ IR IS IT JE JM JO JP " +
  "KE KG KH KI KM KN KP KR KW KY KZ LA LB LC LI LK LR LS LT LU LV LY MA MC MD ME MF MG MH MK ML MM MN MO MP MQ MR MS MT " +
  "MU MV MW MX MY MZ NA NC NE NF NG NI NL NO NP NR NU NZ OM PA PE PF PG PH PK PL PM PN PR PS PT PW PY QA RE RO RS RU RW " +
  "SA SB SC SD SE SG SH SI SJ SK SL SM SN SO SR SS ST SV SX SY SZ TC TD TF TG TH TJ TK TL TM TN TO TR TT TV TW TZ UA UG " +
  "UM US UY UZ VA VC VE VG VI VN VU WF WS YE YT ZA ZM ZW"
).split(" ")

export const countries: ReadonlySet<string> = new Set(CODES)

export const isCountry = (code: string): boolean => countries.has(code.toUpperCase())

/** A hint for a code that is not a country: well-known confusions first. */
export const countryHint = (code: string): string | undefined => {
  const c = code.toUpperCase()
  if (c === "UK") return "the code for the United Kingdom is `GB`"
  if (c === "EU") return "`EU` is not a country; list the member states or use a `countries` set"
  if (/^[A-Z]{3}$/.test(c)) return "use the two-letter ISO 3166-1 alpha-2 code (e.g. `DE`, not `DEU`)"
  return undefined
}
