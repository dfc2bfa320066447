/**
 * Seeded random policies and requests over the IR, for differential tests and
 * benchmarks (reusable by any test that needs random but reproducible input).
 *
 * Details: `rng(seed)` is mulberry32 (a 32-bit seed, floats in [0, 1)). Values
 * come from small shared pools (domains, addresses, ports, users, groups, …) so
 * that random rules and random requests overlap and rules actually fire.
 * `randomPolicy` covers every matcher kind (IPv4/IPv6/mapped CIDRs, port
 * ranges, exact/suffix/sub/glob/regex domains, user patterns, groups, enums,
 * countries, ASNs, time windows with zones, wrapping windows) under nested
 * `and`/`or`/`not`; `randomRequest` covers IP, name and `.onion`
 * destinations, bracketed and odd spellings, and missing fields and facts;
 * `randomFacts` gives a fixed fact oracle for `missing: "need"` runs.
 */
import type { ActionIR, Cidr, Cond, DomainPattern, Facts, FactName, Matcher, ModifierIR, PolicyIR, Request, RuleIR, StringPattern } from "./Ir.ts"
import { parseCidr, parseIp } from "./Ip.ts"

export type Rng = () => number

/** mulberry32: a small, fast, seeded generator. */
export const rng = (seed: number): Rng => {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

export const int = (r: Rng, lo: number, hi: number): number => lo + Math.floor(r() * (hi - lo + 1))
export const pick = <A>(r: Rng, xs: ReadonlyArray<A>): A => xs[Math.floor(r() * xs.length)]
export const chance = (r: Rng, p: number): boolean => r() < p
const some = <A>(r: Rng, xs: ReadonlyArray<A>, max: number): Array<A> => Array.from({ length: int(r, 1, max) }, () => pick(r, xs))

export const DOMAINS = ["example.com", "www.example.com", "a.b.example.com", "example.org", "ads.tracker.net", "tracker.net", "cdn.tracker.net", "localhost", "internal.corp", "git.internal.corp", "facebookcorewwwi.onion", "x.facebookcorewwwi.onion", "onion", "com"]
export const V4 = ["10.0.0.1", "10.0.1.2", "10.1.0.0", "192.168.1.10", "192.168.1.200", "8.8.8.8", "127.0.0.1", "0.0.0.0", "255.255.255.255"]
export const V6 = ["2001:db8::1", "2001:db8:0:1::5", "2001:db8:ffff::", "::1", "::", "fe80::1", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"]
export const MAPPED = ["::ffff:10.0.0.1", "::ffff:a00:102", "::ffff:127.0.0.1", "::FFFF:C0A8:10A"]
export const PORTS = [0, 22, 53, 80, 443, 1024, 8080, 8443, 65535]
export const USERS = ["alice", "bob", "carol", "dave", "Alice", "svc-backup"]
export const GROUPS = ["admins", "staff", "guests", "ops"]
export const LISTENERS = ["main", "public", "socks5"]
export const PROTOCOLS = ["socks4", "socks5", "http"]
export const COMMANDS = ["connect", "bind", "udp"] as const
export const AUTHS = ["none", "password"]
export const COUNTRIES = ["DE", "US", "FR", "CN"]
export const ASNS = [13335, 15169, 64512, 3320]
export const ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Asia/Kolkata"]

const cidrOf = (text: string): Cidr => {
  const r = parseCidr(text)
  if (!r.ok) throw new Error(`bad CIDR ${text}: ${r.message}`)
  return r.cidr
}

/** A CIDR around a pool address, host bits cleared. */
export const randomCidr = (r: Rng): Cidr => {
  const text = pick(r, chance(r, 0.6) ? V4 : chance(r, 0.7) ? V6 : MAPPED)
  const ip = parseIp(text)!
  const width = ip.family === 4 ? 32 : 128
  const prefix = chance(r, 0.3) ? width : ip.family === 4 ? pick(r, [0, 8, 16, 24, 31, 32]) : pick(r, [0, 16, 32, 48, 64, 127, 128])
  const host = (1n << BigInt(width - prefix)) - 1n
  return { family: ip.family, addr: ip.value & ~host, prefix }
}

const domainPattern = (r: Rng): DomainPattern => {
  const d = pick(r, DOMAINS)
  const x = r()
  if (x < 0.35) return { t: "exact", d }
  if (x < 0.65) return { t: "suffix", d }
  if (x < 0.85) return { t: "sub", d }
  if (x < 0.95) return { t: "glob", g: pick(r, ["*.example.*", "ads.*", "*tracker*", "*.onion", "git.*"]) }
  return { t: "regex", r: pick(r, ["^www\\.", "corp$", "^[a-z]+\\.example\\.com$"]) }
}

const stringPattern = (r: Rng): StringPattern => {
  const x = r()
  if (x < 0.8) return { t: "exact", s: pick(r, USERS) }
  if (x < 0.92) return { t: "glob", g: pick(r, ["a*", "*o*", "svc-*"]) }
  return { t: "regex", r: pick(r, ["^c", "e$"]) }
}

const portRange = (r: Rng): readonly [number, number] => {
  const a = pick(r, PORTS)
  if (chance(r, 0.6)) return [a, a]
  const b = pick(r, PORTS)
  return a <= b ? [a, b] : [b, a]
}

export const randomMatcher = (r: Rng): Matcher => {
  switch (int(r, 0, 13)) {
    case 0: case 1: return { kind: "ip", field: chance(r, 0.6) ? "dst.ip" : "src.ip", cidrs: some(r, [0, 1, 2, 3], 3).map(() => randomCidr(r)) }
    case 2: case 3: return { kind: "port", field: chance(r, 0.75) ? "dst.port" : "src.port", ranges: some(r, [0], 3).map(() => portRange(r)) }
    case 4: case 5: case 6: return { kind: "domain", field: "dst.domain", patterns: some(r, [0], 3).map(() => domainPattern(r)) }
    case 7: return { kind: "string", field: "user", patterns: some(r, [0], 2).map(() => stringPattern(r)) }
    case 8: return { kind: "group", field: "group", values: some(r, GROUPS, 2) }
    case 9: {
      const field = pick(r, ["listener", "protocol", "command", "auth"] as const)
      const pool = field === "listener" ? LISTENERS : field === "protocol" ? PROTOCOLS : field === "command" ? COMMANDS : AUTHS
      return { kind: "enum", field, values: some(r, pool, 2) }
    }
    case 10: return { kind: "country", field: chance(r, 0.6) ? "dst.country" : "src.country", values: some(r, COUNTRIES, 2) }
    case 11: return { kind: "asn", field: chance(r, 0.6) ? "dst.asn" : "src.asn", values: some(r, ASNS, 2) }
    case 12: {
      const windows = some(r, [0], 2).map((): readonly [number, number] => {
        const a = int(r, 0, 47) * 30
        const b = int(r, 1, 48) * 30
        return [a, b]
      })
      return { kind: "time", field: "time", days: chance(r, 0.3) ? 127 : int(r, 1, 126), windows: chance(r, 0.2) ? [[0, 1440]] : windows, tz: pick(r, ZONES) }
    }
    default: return { kind: "domain", field: "dst.domain", patterns: [domainPattern(r)] }
  }
}

export const randomCond = (r: Rng, depth = 3): Cond => {
  const x = r()
  if (depth <= 0 || x < 0.45) return { k: "match", m: randomMatcher(r) }
  if (x < 0.7) return { k: "and", items: Array.from({ length: int(r, 1, 3) }, () => randomCond(r, depth - 1)) }
  if (x < 0.88) return { k: "or", items: Array.from({ length: int(r, 1, 3) }, () => randomCond(r, depth - 1)) }
  if (x < 0.98) return { k: "not", c: randomCond(r, depth - 1) }
  return { k: "true" }
}

const randomAction = (r: Rng): ActionIR => {
  switch (int(r, 0, 4)) {
    case 0: return { k: "allow" }
    case 1: return chance(r, 0.5) ? { k: "block" } : { k: "block", message: "no" }
    case 2: return { k: "redirect", host: "127.0.0.1", port: 8080 }
    case 3: return { k: "via", target: "up", targetKind: "upstream" }
    default: return { k: "tor", target: "tor" }
  }
}

const modifiers = (r: Rng): ReadonlyArray<ModifierIR> => (chance(r, 0.2) ? [{ k: "log" }] : [])

export interface PolicyOptions {
  readonly maxGuards?: number
  readonly maxRules?: number
}

export const randomPolicy = (r: Rng, opts: PolicyOptions = {}): PolicyIR => {
  const guards: RuleIR[] = Array.from({ length: int(r, 0, opts.maxGuards ?? 2) }, (_, i) => ({
    name: `g${i}`, kind: "guard", cond: randomCond(r), action: chance(r, 0.5) ? { k: "block", message: `guard ${i}` } : { k: "block" }, modifiers: [],
  }))
  const rules: RuleIR[] = Array.from({ length: int(r, 1, opts.maxRules ?? 10) }, (_, i) => ({
    name: `r${i}`, kind: "rule", cond: chance(r, 0.05) ? { k: "true" } : randomCond(r), action: randomAction(r), modifiers: modifiers(r),
  }))
  return { name: "p", guards, rules, default: { name: "default", kind: "default", cond: { k: "true" }, action: randomAction(r), modifiers: [] } }
}

const odd = (r: Rng, host: string): string => {
  const x = r()
  if (x < 0.1) return host.toUpperCase()
  if (x < 0.18) return `${host}.`
  return host
}

export const randomHost = (r: Rng): string => {
  const x = r()
  if (x < 0.45) return odd(r, pick(r, DOMAINS))
  if (x < 0.7) return pick(r, V4)
  if (x < 0.85) return chance(r, 0.3) ? `[${pick(r, V6)}]` : pick(r, V6)
  if (x < 0.93) return pick(r, MAPPED)
  return pick(r, ["", "a..b", "1.2.3", "01.2.3.4", "::ffff:1.2.3.4", "1:2:3:4:5:6:7:8:9", "abc::def::1", "xn--bcher-kva.example"])
}

export const randomFacts = (r: Rng): Facts => ({
  "dst.ip": chance(r, 0.15) ? null : pick(r, chance(r, 0.7) ? V4 : chance(r, 0.8) ? V6 : ["not-an-ip", ...MAPPED]),
  "dst.country": chance(r, 0.2) ? null : pick(r, [...COUNTRIES, "de"]),
  "dst.asn": chance(r, 0.2) ? null : pick(r, ASNS),
  "src.country": chance(r, 0.2) ? null : pick(r, COUNTRIES),
  "src.asn": chance(r, 0.2) ? null : pick(r, ASNS),
})

/** A request; with `full`, facts are drawn from `full` (each kept with probability `keep`). */
export const randomRequest = (r: Rng, full?: Facts, keep = 0.4): Request => {
  const user = chance(r, 0.7) ? pick(r, USERS) : undefined
  const facts: Record<string, unknown> = {}
  if (full !== undefined) for (const [k, v] of Object.entries(full)) if (chance(r, keep)) facts[k] = v
  return {
    command: pick(r, COMMANDS),
    dstHost: randomHost(r),
    dstPort: pick(r, PORTS),
    ...(chance(r, 0.8) ? { listener: pick(r, LISTENERS) } : {}),
    ...(chance(r, 0.8) ? { protocol: pick(r, PROTOCOLS) } : {}),
    ...(chance(r, 0.8) ? { srcIp: pick(r, chance(r, 0.7) ? V4 : [...V6, ...MAPPED]) } : {}),
    ...(chance(r, 0.7) ? { srcPort: pick(r, PORTS) } : {}),
    ...(user !== undefined ? { user } : {}),
    ...(user !== undefined && chance(r, 0.8) ? { groups: GROUPS.filter(() => chance(r, 0.4)) } : {}),
    ...(chance(r, 0.8) ? { auth: user !== undefined ? "password" : "none" } : {}),
    // 2026-01-05 (a Monday) 00:00 UTC plus up to two weeks, on 15-minute steps and odd minutes.
    ...(chance(r, 0.75) ? { time: Date.UTC(2026, 0, 5) + int(r, 0, 14 * 96) * 15 * 60_000 + (chance(r, 0.2) ? int(r, 0, 14) * 60_000 : 0) } : {}),
    ...(Object.keys(facts).length > 0 ? { facts: facts as Facts } : {}),
  }
}

/** A fact oracle over fixed facts. */
export const oracle = (facts: Facts) => (fact: FactName): string | number | null => facts[fact] ?? null
