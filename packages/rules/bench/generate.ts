/**
 * Generated policies and requests for the rules benchmark.
 *
 * Details: policies mix exact domains, domain suffixes, IPv4/IPv6 CIDRs,
 * ports, users, groups and conjunctions of them, plus three guards; values are
 * random and mostly distinct, like a large real block list. Requests draw
 * destinations from the policy's own values (hits) and from outside (misses),
 * with every costly fact given (the runtime's last call in `need` mode).
 */
import type { Cidr, Cond, Matcher, PolicyIR, Request, RuleIR } from "../src/Ir.ts"
import { int, pick, rng, type Rng } from "../src/Random.ts"

export interface Pools {
  readonly domains: string[]
  readonly suffixes: string[]
  readonly v4: Cidr[]
  readonly v6: Cidr[]
  readonly users: string[]
}

const m = (matcher: Matcher): Cond => ({ k: "match", m: matcher })
const word = (r: Rng, n = 8): string => Array.from({ length: n }, () => String.fromCharCode(97 + int(r, 0, 25))).join("")
const v4 = (r: Rng): Cidr => {
  const prefix = pick(r, [8, 12, 16, 20, 24, 24, 28, 32, 32])
  const addr = (int(r, 0, 0xffffffff) & (prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0)) >>> 0
  return { family: 4, addr: BigInt(addr), prefix }
}
const v6 = (r: Rng): Cidr => {
  const prefix = pick(r, [32, 48, 56, 64, 128])
  let addr = 0x2001n << 112n
  for (let i = 0; i < 7; i++) addr |= BigInt(int(r, 0, 0xffff)) << BigInt(96 - i * 16)
  const host = (1n << BigInt(128 - prefix)) - 1n
  return { family: 6, addr: addr & ~host, prefix }
}

export const generate = (size: number, seed: number): { policy: PolicyIR; pools: Pools } => {
  const r = rng(seed)
  const pools: Pools = { domains: [], suffixes: [], v4: [], v6: [], users: [] }
  const tlds = ["com", "net", "org", "io", "de"]
  const domain = () => {
    const d = `${word(r, int(r, 3, 6))}.${word(r, int(r, 4, 10))}.${pick(r, tlds)}`
    pools.domains.push(d)
    return d
  }
  const suffix = () => {
    const d = `${word(r, int(r, 4, 10))}.${pick(r, tlds)}`
    pools.suffixes.push(d)
    return d
  }
  const cidr4 = () => { const c = v4(r); pools.v4.push(c); return c }
  const cidr6 = () => { const c = v6(r); pools.v6.push(c); return c }
  const user = () => { const u = `u${int(r, 0, Math.max(100, size / 10))}`; pools.users.push(u); return u }
  const port = (): readonly [number, number] => (r() < 0.7 ? (([p]) => [p, p] as const)([pick(r, [22, 25, 80, 443, 993, 3306, 5432, 8080, 8443])]) : (([a]) => [a, a + int(r, 0, 999)] as const)([int(r, 1024, 60000)]))
  const cond = (): Cond => {
    const x = r()
    if (x < 0.28) return m({ kind: "domain", field: "dst.domain", patterns: Array.from({ length: int(r, 1, 3) }, () => ({ t: "exact" as const, d: domain() })) })
    if (x < 0.46) return m({ kind: "domain", field: "dst.domain", patterns: [{ t: r() < 0.8 ? "suffix" : "sub", d: suffix() }] })
    if (x < 0.6) return m({ kind: "ip", field: "dst.ip", cidrs: Array.from({ length: int(r, 1, 3) }, cidr4) })
    if (x < 0.65) return m({ kind: "ip", field: "dst.ip", cidrs: [cidr6()] })
    if (x < 0.72) return m({ kind: "string", field: "user", patterns: [{ t: "exact", s: user() }] })
    if (x < 0.8) return { k: "and", items: [m({ kind: "domain", field: "dst.domain", patterns: [{ t: "suffix", d: suffix() }] }), m({ kind: "port", field: "dst.port", ranges: [port()] })] }
    if (x < 0.86) return { k: "and", items: [m({ kind: "string", field: "user", patterns: [{ t: "exact", s: user() }] }), m({ kind: "ip", field: "dst.ip", cidrs: [cidr4()] })] }
    if (x < 0.91) return { k: "and", items: [m({ kind: "ip", field: "src.ip", cidrs: [cidr4()] }), m({ kind: "port", field: "dst.port", ranges: [port()] })] }
    if (x < 0.95) return { k: "and", items: [m({ kind: "port", field: "dst.port", ranges: [port()] }), m({ kind: "group", field: "group", values: [`g${int(r, 0, 50)}`] }), { k: "not", c: m({ kind: "domain", field: "dst.domain", patterns: [{ t: "suffix", d: suffix() }] }) }] }
    if (x < 0.98) return { k: "or", items: [m({ kind: "domain", field: "dst.domain", patterns: [{ t: "exact", d: domain() }] }), m({ kind: "ip", field: "dst.ip", cidrs: [cidr4()] })] }
    return { k: "and", items: [m({ kind: "enum", field: "command", values: ["udp"] }), m({ kind: "port", field: "dst.port", ranges: [[53, 53]] })] }
  }
  const actions: RuleIR["action"][] = [{ k: "allow" }, { k: "block" }, { k: "via", target: "up", targetKind: "upstream" }]
  const rules: RuleIR[] = Array.from({ length: size }, (_, i) => ({ name: `r${i}`, kind: "rule", cond: cond(), action: pick(r, actions), modifiers: [] }))
  const guards: RuleIR[] = [
    { name: "no-cn", kind: "guard", cond: m({ kind: "country", field: "src.country", values: ["CN", "KP"] }), action: { k: "block" }, modifiers: [] },
    { name: "no-smtp", kind: "guard", cond: { k: "and", items: [m({ kind: "port", field: "dst.port", ranges: [[25, 25]] }), { k: "not", c: m({ kind: "group", field: "group", values: ["mail"] }) }] }, action: { k: "block" }, modifiers: [] },
    { name: "no-metadata", kind: "guard", cond: m({ kind: "ip", field: "dst.ip", cidrs: [{ family: 4, addr: 0xa9fea9fen, prefix: 32 }] }), action: { k: "block" }, modifiers: [] },
  ]
  return { policy: { name: `bench${size}`, guards, rules, default: { name: "default", kind: "default", cond: { k: "true" }, action: { k: "block" }, modifiers: [] } }, pools }
}

const ip4 = (x: number) => [x >>> 24, (x >>> 16) & 255, (x >>> 8) & 255, x & 255].join(".")
const inside4 = (r: Rng, c: Cidr): string => ip4((Number(c.addr) + int(r, 0, 2 ** (32 - c.prefix) - 1)) >>> 0)
const inside6 = (r: Rng, c: Cidr): string => {
  const host = c.prefix === 128 ? 0n : BigInt(int(r, 0, 0xffffff)) & ((1n << BigInt(128 - c.prefix)) - 1n)
  const v = c.addr | host
  return Array.from({ length: 8 }, (_, i) => ((v >> BigInt(112 - i * 16)) & 0xffffn).toString(16)).join(":")
}

export const requests = (pools: Pools, n: number, seed: number): Request[] => {
  const r = rng(seed)
  return Array.from({ length: n }, (): Request => {
    const x = r()
    const randomIp = () => (r() < 0.5 && pools.v4.length > 0 ? inside4(r, pick(r, pools.v4)) : ip4(int(r, 0, 0xffffffff)))
    let dstHost: string
    let dstIp: string | undefined
    if (x < 0.55) {
      const y = r()
      dstHost = y < 0.35 ? pick(r, pools.domains) : y < 0.7 ? `${word(r, 3)}.${pick(r, pools.suffixes)}` : `${word(r, 6)}.${word(r, 7)}.com`
      dstIp = randomIp()
    } else if (x < 0.9) dstHost = randomIp()
    else dstHost = pools.v6.length > 0 && r() < 0.7 ? inside6(r, pick(r, pools.v6)) : `2001:db8::${int(r, 0, 0xffff).toString(16)}`
    const user = r() < 0.7 ? (r() < 0.5 && pools.users.length > 0 ? pick(r, pools.users) : `x${int(r, 0, 1e6)}`) : undefined
    return {
      command: r() < 0.9 ? "connect" : "udp",
      dstHost,
      dstPort: pick(r, [443, 443, 443, 80, 22, 8080, 53, 25, int(r, 1024, 65535)]),
      listener: "main",
      protocol: "socks5",
      srcIp: ip4(int(r, 0, 0xffffffff)),
      srcPort: int(r, 1024, 65535),
      ...(user !== undefined ? { user, groups: [`g${int(r, 0, 60)}`], auth: "password" } : { auth: "none" }),
      facts: { ...(dstIp !== undefined ? { "dst.ip": dstIp } : {}), "dst.country": "DE", "dst.asn": 3320, "src.country": r() < 0.02 ? "CN" : "US", "src.asn": 3320 },
    }
  })
}
