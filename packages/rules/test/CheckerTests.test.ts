import { describe, expect, it } from "vitest"
import { check, diags } from "./CheckerHelpers.ts"

const BASE = "upstream corp = socks5://corp.example:1080\ntor onion = socks 127.0.0.1:9050\nusergroup admins = [alice]\npolicy p {\n  rule web when dst.port == 443 -> via corp\n  rule o when dst.domain suffix onion -> tor\n  rule adm when group == admins -> block\n  default block\n}\n"

describe("Checker: test blocks", () => {
  it("builds the request with defaults, usergroup membership and facts", () => {
    const r = check(BASE + 'test "t" { connect Example.com:443; user alice; group ops; src 10.0.0.1:5000; at 2026-03-01T23:00Z; dst.ip 93.184.216.34; listener socks5 } expect via corp by web\nlisten socks5 127.0.0.1:1080\n')
    expect(r.diagnostics).toEqual([])
    const t = r.program!.tests[0]!
    expect([t.name, t.policy, t.request, t.expect, t.expectRule]).toEqual([
      "t", "p",
      { command: "connect", dstHost: "Example.com", dstPort: 443, listener: "socks5", srcIp: "10.0.0.1", srcPort: 5000, user: "alice", groups: ["ops", "admins"], auth: "password", time: Date.UTC(2026, 2, 1, 23), facts: { "dst.ip": "93.184.216.34" } },
      { k: "via", target: "corp" }, "web",
    ])
  })

  it("splits request settings written on one line", () => {
    const r = check(BASE + 'test "t" { udp [2001:db8::1]:53 protocol socks5 auth none } expect block by default\n')
    expect(r.program?.tests[0]?.request).toEqual({ command: "udp", dstHost: "2001:db8::1", dstPort: 53, protocol: "socks5", auth: "none" })
  })

  it("requires exactly one of connect, bind and udp", () => {
    expect(diags(BASE + 'test "none" { user bob } expect block\ntest "two" { connect a:1; udp b:2 } expect block\n')).toEqual([
      '10:6 T070 test "none" has no request',
      "11:27 T070 a test makes exactly one request",
    ])
  })

  it("checks expected outbounds, tor endpoints and the deciding rule (did-you-mean)", () => {
    const r = check(BASE + 'test "a" { connect a:443 } expect via corpp\ntest "b" { connect a:443 } expect tor onoin\ntest "c" { connect a:443 } expect via corp by wbe\n')
    expect(r.diagnostics.map((d) => [d.code, d.message, d.span.start.line, d.span.start.column, d.hint])).toEqual([
      ["T010", "undefined outbound `corpp`", 10, 39, "did you mean `corp`?"],
      ["T010", "undefined tor endpoint `onoin`", 11, 39, "did you mean `onion`?"],
      ["T010", "policy `p` has no rule `wbe`", 12, 47, "did you mean `web`?"],
    ])
  })

  it("reports bad request values at their token", () => {
    expect(diags(BASE + 'test "t" { connect a.example; src 10.0.0.300; at yesterday; protocol sock5; frob 1 } expect block\n')).toEqual([
      "10:20 T030 `connect` expects host:port, found `a.example`",
      "10:35 T030 `src` expects an IP address or IP:PORT, found `10.0.0.300`",
      "10:50 T004 `at` expects an ISO 8601 time with a zone like `2026-03-01T23:00Z`, found `yesterday`",
      "10:70 T004 `protocol` expects `socks4`, `socks5` or `http`, found `sock5`",
      "10:77 T002 unknown setting `frob` for a test request",
    ])
  })

  it("resolves the policy: the test's, else the listener's, else the default, else an error", () => {
    const two = "listen l = socks5 127.0.0.1:1 policy b\npolicy a {\n  default allow\n}\npolicy b {\n  default block\n}\n"
    const r = check(two + 'test "x" { connect h:1; policy a } expect allow\ntest "y" { connect h:1; listener l } expect block\ntest "z" { connect h:1 } expect block\n')
    expect(r.diagnostics.map((d) => `${d.span.start.line} ${d.code} ${d.message}`)).toEqual(['10 T072 test "z" does not say which policy it tests'])
  })
})
