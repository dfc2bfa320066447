import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { checkFiles, checkSource, nodeReader } from "../src/Check.ts"

const SITE = join(import.meta.dirname, "fixtures/checker/site.rules")

describe("Checker: the example file becomes a complete Program", () => {
  const r = checkFiles([SITE], nodeReader)
  const p = r.program!

  it("checks clean (no diagnostics at all)", () => {
    expect(r.diagnostics).toEqual([])
    expect([...r.sources.keys()].map((f) => f.slice(f.indexOf("fixtures")))).toEqual(["fixtures/checker/site.rules", "fixtures/checker/lists/ads.txt"])
  })

  it("fills listeners with resolved policy, auth and tls", () => {
    expect(p.listeners.map((l) => [l.name, l.kind, l.host, l.port, l.policy, l.auth, l.tls])).toEqual([
      ["socks5", "socks5", "127.0.0.1", 1080, "edge", undefined, undefined],
      ["http", "http", "127.0.0.1", 3128, "edge", undefined, undefined],
      ["mixed", "mixed", "0.0.0.0", 7890, "edge", { source: "users", required: true }, { cert: { from: "file", path: "/etc/proxyd/tls.crt" }, key: { from: "file", path: "/etc/proxyd/tls.key" } }],
    ])
  })

  it("fills sets (file sets read relative to the declaring file), upstreams, chains, groups, tors", () => {
    expect([...p.sets.values()].map((s) => [s.name, s.type, s.entries, s.file])).toEqual([
      ["ads", "domains", ["ads.example", ".tracker.example", "evil.example"], { path: SITE.replace("site.rules", "lists/ads.txt"), refreshMs: 21_600_000, onError: "keep-last" }],
      ["lan", "cidrs", ["10.0.0.0/8", "192.168.0.0/16", "fd00::/8"], undefined],
      ["embargo", "countries", ["KP", "IR"], undefined],
      ["ops", "users", ["alice", "bob"], undefined],
    ])
    expect(p.upstreams.get("corp")).toMatchObject({ kind: "socks5", host: "proxy.corp.example", port: 1080, auth: { user: { from: "env", name: "CORP_USER" }, pass: { from: "env", name: "CORP_PASS" } } })
    expect(p.upstreams.get("exit")).toMatchObject({ kind: "http", host: "exit.example", port: 3128 })
    expect(p.chains.get("deep")?.hops).toEqual(["corp", "exit"])
    expect(p.groups.get("egress")).toMatchObject({ strategy: "failover", members: ["corp", "exit"], tries: 2, probe: { kind: "http", target: "http://probe.example/204", everyMs: 30_000, downAfter: 3, upAfter: 2 } })
    expect(p.tors.get("onion")).toMatchObject({ socksHost: "127.0.0.1", socksPort: 9050, control: { host: "127.0.0.1", port: 9051 }, isolate: "per-user" })
    expect([p.geoip, p.defaultPolicy, p.auths.get("users")?.kind, p.auths.get("users")?.settings]).toEqual([{ country: "GeoLite2-Country.mmdb" }, "edge", "htpasswd", { path: "users.htpasswd" }])
  })

  it("fills the policy: guards, rules in order, default", () => {
    const edge = p.policies.get("edge")!
    expect([edge.guards.map((g) => g.name), edge.rules.map((x) => [x.name, x.action.k]), edge.default.action]).toEqual([
      ["embargo"],
      [["no-ads", "block"], ["lan", "allow"], ["ops-ssh", "via"], ["legacy", "redirect"], ["onions", "tor"], ["web", "via"], ["deep-web", "via"]],
      { k: "block", message: "no rule matched" },
    ])
    expect(edge.rules[3]!.action).toEqual({ k: "redirect", host: "new.example.com", port: 443 })
    expect(edge.rules[5]!.action).toEqual({ k: "via", target: "egress", targetKind: "group" })
  })

  it("fills the tests", () => {
    expect(p.tests.map((t) => [t.name, t.policy, t.request.command, t.request.dstHost, t.expect.k, t.expectRule])).toEqual([
      ["ads are blocked", "edge", "connect", "tracker.ads.example", "block", "no-ads"],
      ["onions use tor", "edge", "connect", "abc.onion", "tor", "onions"],
      ["ssh out of hours", "edge", "connect", "203.0.113.9", "block", undefined],
    ])
  })
})

describe("Check entry points", () => {
  it("checks several entries independently, concatenates diagnostics and returns no program", () => {
    const dir = mkdtempSync(join(tmpdir(), "rules-check-"))
    writeFileSync(join(dir, "a.rules"), "policy p {\n  rule r -> allow\n}\n")
    writeFileSync(join(dir, "b.rules"), "bogus\n")
    const r = checkFiles([join(dir, "a.rules"), join(dir, "b.rules"), join(dir, "missing.rules")], nodeReader)
    expect(r.diagnostics.map((d) => [d.span.file.slice(dir.length + 1), d.code])).toEqual([["a.rules", "T051"], ["b.rules", "T001"], ["missing.rules", "E001"]])
    expect(r.program).toBeUndefined()
  })

  it("reads set files relative to their declaring file, and keeps other paths as written", () => {
    const r = checkSource('include "conf/up.rules"\npolicy p {\n  default via u\n}\n', "etc/main.rules", {
      "etc/conf/up.rules": 'upstream u = socks5://u.example:1080 tls-ca "ca.pem" auth env(U) file("secrets/pass")\nlisten socks5 127.0.0.1:1 { tls cert file("/abs/c.pem") key "k.pem" }\nset s = users file "users.txt"\n',
      "etc/conf/users.txt": "alice\n",
    })
    expect(r.diagnostics.map((d) => d.code)).toEqual(["L001"])
    expect([r.program?.upstreams.get("u")?.settings["tls-ca"], r.program?.upstreams.get("u")?.auth?.pass, r.program?.listeners[0]?.tls, r.program?.sets.get("s")?.file?.path]).toEqual([
      "ca.pem", { from: "file", path: "secrets/pass" }, { cert: { from: "file", path: "/abs/c.pem" }, key: { from: "file", path: "k.pem" } }, "etc/conf/users.txt",
    ])
  })

  it("returns the program with warnings but not with errors", () => {
    expect(checkSource("set s = users [a]\npolicy p {\n  default block\n}\n").program?.policies.has("p")).toBe(true)
    expect(checkSource("policy p {\n  default via nowhere\n}\n").program).toBeUndefined()
  })

  it("splices includes in place and detects include cycles", () => {
    const r = checkSource('include "a.rules"\npolicy p {\n  rule r -> via u\n  default block\n}\n', "main.rules", { "a.rules": 'include "b.rules"\n', "b.rules": 'include "a.rules"\nupstream u = socks5://u:1\n' })
    expect(r.diagnostics.map((d) => `${d.span.file}:${d.span.start.line}:${d.span.start.column} ${d.code} ${d.message}`)).toEqual([
      "b.rules:1:9 T015 include cycle: a.rules -> b.rules -> a.rules",
    ])
    expect([...r.sources.keys()]).toEqual(["main.rules", "a.rules", "b.rules"])
  })

  it("never throws on garbage and reports parse errors", () => {
    const r = checkSource("policy { ]] \u0000 -> -> \"unterminated\n")
    expect(r.diagnostics.length).toBeGreaterThan(0)
    expect(r.diagnostics.every((d) => d.code.startsWith("P"))).toBe(true)
  })
})
