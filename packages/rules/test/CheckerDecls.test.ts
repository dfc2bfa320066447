import { describe, expect, it } from "vitest"
import { check, diags, only, POLICY } from "./CheckerHelpers.ts"

describe("Checker: declarations into the Program", () => {
  it("fills options, plugins and both geoip databases", () => {
    const r = check('options { handshake-timeout 10s; max-connections 500 }\noptions workers 4\nplugin "./geo.ts"\ngeoip "c.mmdb"\ngeoip asn "a.mmdb"\n' + POLICY)
    expect(r.diagnostics).toEqual([])
    expect([r.program?.options, r.program?.plugins.map((p) => p.spec), r.program?.geoip]).toEqual([
      { "handshake-timeout": 10_000, "max-connections": 500, workers: 4 }, ["./geo.ts"], { country: "c.mmdb", asn: "a.mmdb" },
    ])
  })

  it("fills static and webhook auths, optional listener auth and proxy-protocol from a cidrs set", () => {
    const r = check('auth staff = static {\n  alice "$argon2id$x" groups [ops, dev]\n  bob "$scrypt$y"\n}\nauth hook = webhook "http://127.0.0.1:9000/auth" timeout 2s cache 5m\nset lbs = cidrs [10.1.0.0/16]\nlisten a = socks5 127.0.0.1:1080 auth staff optional proxy-protocol from lbs\nlisten b = http 127.0.0.1:3128 auth hook\n' + POLICY)
    expect(r.diagnostics).toEqual([])
    const p = r.program!
    expect([p.auths.get("staff")?.settings, p.auths.get("hook")?.settings]).toEqual([
      { users: [{ user: "alice", hash: "$argon2id$x", groups: ["ops", "dev"] }, { user: "bob", hash: "$scrypt$y", groups: [] }] },
      { url: "http://127.0.0.1:9000/auth", timeout: 2000, cache: 300_000 },
    ])
    expect(p.listeners.map((l) => [l.name, l.auth, l.proxyProtocol?.length])).toEqual([["a", { source: "staff", required: false }, 1], ["b", { source: "hook", required: true }, undefined]])
  })

  it("takes proxy-protocol sources as CIDRs and `cidrs` set names, also mixed in one list", () => {
    const r = check("set lbs = cidrs [10.1.0.0/16, fd00::/8]\nset names = domains [a.example]\nlisten a = socks5 127.0.0.1:1 proxy-protocol from [192.168.0.0/24, lbs]\nlisten b = http 127.0.0.1:2 proxy-protocol from [names, nope]\n" + POLICY)
    expect(r.diagnostics.map((d) => `${d.span.start.line}:${d.span.start.column} ${d.code} ${d.message}`)).toEqual([
      "4:50 T012 set `names` holds domains, expected cidrs",
      "4:57 T010 undefined set `nope`",
    ])
    expect(check("set lbs = cidrs [10.1.0.0/16, fd00::/8]\nlisten a = socks5 127.0.0.1:1 proxy-protocol from [192.168.0.0/24, lbs]\n" + POLICY).program?.listeners[0]?.proxyProtocol?.map((c) => c.prefix)).toEqual([24, 16, 8])
  })

  it("fills group settings and rejects `by` on a non-hash group", () => {
    const r = check("upstream a = socks5://a:1\nupstream b = socks5://b:1\ngroup h = hash(a, b) by user tries 3 probe tcp 1.1.1.1:53 every 10s down-after 5 up-after 1\ngroup f = failover(a, b) by dst\npolicy p {\n  rule r -> via h\n  default via f\n}\n")
    expect(r.diagnostics.map((d) => `${d.span.start.line}:${d.span.start.column} ${d.code} ${d.message}`)).toEqual(["4:26 T004 `by` only applies to `hash` groups"])
    expect(check("upstream a = socks5://a:1\ngroup h = hash(a) by user tries 3 probe tcp 1.1.1.1:53 every 10s down-after 5 up-after 1\npolicy p {\n  default via h\n}\n").program?.groups.get("h")).toMatchObject({
      strategy: "hash", hashBy: "user", tries: 3, probe: { kind: "tcp", target: "1.1.1.1:53", everyMs: 10_000, downAfter: 5, upAfter: 1 },
    })
  })

  it("reports a setting given twice with a note", () => {
    expect(only(["T006"], "listen socks5 127.0.0.1:1 idle-timeout 1m idle-timeout 2m\n" + POLICY)).toEqual(["1:43 T006 setting `idle-timeout` is given more than once"])
  })

  it("reports duplicate test names", () => {
    expect(only(["T011"], POLICY + 'test "t" { connect a:1 } expect block\ntest "t" { connect b:1 } expect block\n')).toEqual(['5:6 T011 duplicate test `t`'])
  })

  it("checks tor control auth and isolation", () => {
    expect(diags("tor t = socks 127.0.0.1:9050 cookie \"/run/tor/cookie\" isolate per-host\npolicy p {\n  default tor\n}\n")).toEqual([
      "1:30 T003 `cookie`/`password` authenticate the control port: add `control HOST:PORT`",
      "1:63 T004 `isolate` expects `per-user`, `per-rule`, `per-src`, `per-connection` or `none`, found `per-host`",
    ])
  })
})
