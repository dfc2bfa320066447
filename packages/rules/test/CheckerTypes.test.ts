import { describe, expect, it } from "vitest"
import { check, diags, only, POLICY } from "./CheckerHelpers.ts"

describe("Checker: types and ranges", () => {
  it("reports CIDR problems at the entry: address, prefix, host bits (with the fixed CIDR)", () => {
    const r = check("set s = cidrs [10.0.0.0/33, fd00::/129, 10.0.0.1/8, 10.0.0.300]\n" + POLICY)
    expect(r.diagnostics.filter((d) => d.code.startsWith("T")).map((d) => [d.code, d.message, d.span.start.column, d.hint])).toEqual([
      ["T021", "prefix `/33` is out of range for IPv4 (0..32)", 16, undefined],
      ["T021", "prefix `/129` is out of range for IPv6 (0..128)", 29, undefined],
      ["T022", "`10.0.0.1/8` has host bits set under the /8 mask", 41, "write `10.0.0.0/8`"],
      ["T020", "`10.0.0.300` is not an IP address", 53, undefined],
    ])
  })

  it("reports ports out of range and inverted port ranges in conditions", () => {
    expect(only(["T023", "T024"], "policy p {\n  rule r when dst.port in {80, 70000, 9000..8000} -> allow\n  default block\n}\n")).toEqual([
      "2:32 T023 port `70000` is out of range (0..65535)",
      "2:39 T024 port range `9000..8000` is inverted (9000 > 8000)",
    ])
  })

  it("reports bad countries with a hint (GB for UK, did-you-mean otherwise)", () => {
    const r = check('geoip "c.mmdb"\nset c = countries [UK, DEU]\npolicy p {\n  rule r when dst.country == DX -> block\n  default allow\n}\n')
    expect(r.diagnostics.filter((d) => d.code === "T026").map((d) => [d.message, d.hint])).toEqual([
      ["`UK` is not an ISO 3166-1 alpha-2 country code", "the code for the United Kingdom is `GB`"],
      ["`DEU` is not an ISO 3166-1 alpha-2 country code", "use the two-letter ISO 3166-1 alpha-2 code (e.g. `DE`, not `DEU`)"],
      ["`DX` is not an ISO 3166-1 alpha-2 country code", "did you mean `DE`?"],
    ])
  })

  it("reports a bad time zone, weekday and time window", () => {
    expect(diags('policy p {\n  rule r when time Mon-Fry 08:00-25:00 tz "Europe/Berln" -> allow\n  default block\n}\n')).toEqual([
      "2:20 T029 `Fry` is not a weekday",
      "2:28 T029 `25:00` is not a time of day (00:00..24:00)",
      "2:43 T028 unknown time zone `Europe/Berln`",
    ])
  })

  it("rejects invalid and super-linear regexes", () => {
    expect(diags('policy p {\n  rule a when dst.domain regex "(" -> allow\n  rule b when dst.domain regex "(a|ab)*c" -> allow\n  rule c when user regex "(x)\\\\1" -> allow\n  rule d when dst.domain regex "^[a-z]+\\\\.example$" -> allow\n  default block\n}\n')).toEqual([
      "2:32 T032 invalid regular expression: /(/i: Unterminated group",
      "3:32 T033 nested repetition in `regex` can take exponential time (a repeated group containing a quantifier or `|`)",
      "4:26 T033 backreferences are not allowed in `regex` (matching could take exponential time)",
    ])
  })

  it("reports bad durations, sizes and rates", () => {
    expect(diags("options { connect-timeout 10 }\noptions { idle-timeout 5w }\npolicy p {\n  rule r -> allow limit 5/w bandwidth 3XB/s\n  default block\n}\n")).toEqual([
      "1:27 T025 duration `10` has no unit",
      "2:24 T025 `idle-timeout` expects a duration (`500ms`, `10s`, `5m`, `2h`, `1d`), found `5w`",
      "4:25 T058 unknown rate period `/w`",
    ])
  })

  it("reports an unknown setting with a did-you-mean and a missing value", () => {
    expect(check("upstream u = socks5://a:1 conect-timeout 5s\ntor t = socks\n" + POLICY).diagnostics.map((d) => [d.code, d.message, d.span.start.line, d.span.start.column, d.hint])).toEqual([
      ["L001", "upstream `u` is never used", 1, 10, "remove it, or refer to it from a rule"],
      ["T002", "unknown setting `conect-timeout` for `upstream`", 1, 27, "did you mean `connect-timeout`?"],
      ["L001", "tor endpoint `t` is never used", 2, 5, "remove it, or refer to it from a rule"],
      ["T003", "`tor` needs the setting `socks`", 2, 5, "add `socks HOSTPORT`"],
      ["T003", "`socks` needs host:port", 2, 9, "write `socks HOSTPORT`"],
    ])
  })

  it("reports a value of the wrong type", () => {
    expect(only(["T004"], "listen socks5 127.0.0.1:1080 max-connections many\n" + POLICY)).toEqual(["1:46 T004 `max-connections` expects a whole number, found `many`"])
  })

  it("requires env() or file() for secrets", () => {
    const r = check('upstream u = socks5://a:1 auth "alice" env(PASS)\n' + POLICY)
    expect(r.diagnostics.filter((d) => d.code === "T040").map((d) => [d.message, d.span.start.column, d.hint])).toEqual([
      ["a secret must not be written into the rules file", 32, 'use `env(NAME)` to read it from the environment or `file("path")` to read it from a file'],
    ])
  })

  it("rejects credentials in an upstream URL and unknown schemes", () => {
    expect(only(["T041", "T042"], "upstream a = socks5://bob:pw@a.example:1080\nupstream b = sock5://b.example:1080\n" + POLICY)).toEqual([
      "1:14 T041 credentials in an upstream URL would be stored in the rules file",
      "2:14 T042 unsupported upstream scheme `sock5`",
    ])
  })

  it("reports a bad listener kind and a bad listen address", () => {
    expect(only(["T004", "T030"], "listen sock5 127.0.0.1:1080\nlisten http 127.0.0.1\n" + POLICY)).toEqual([
      "1:8 T004 expected a listener kind (socks5, socks4, http, mixed), found `sock5`",
      "2:13 T030 expected host:port, found `127.0.0.1`",
    ])
  })

  it("reports a declaration without its required name, and a name where none is taken", () => {
    expect(only(["T005"], "upstream socks5://a:1\ngeoip g = \"c.mmdb\"\n" + POLICY)).toEqual([
      "1:1 T005 `upstream` needs a name",
      "2:7 T005 `geoip` does not take a name",
    ])
  })

  it("reports a domain entry that is not a domain name", () => {
    expect(only(["T031"], "set d = domains [a..b, 10.0.0.1, ex*ample.com]\n" + POLICY)).toEqual([
      "1:18 T031 `a..b` is not a domain name",
      "1:24 T031 `10.0.0.1` is an address, not a domain name",
      "1:34 T031 `ex*ample.com` is not a domain name",
    ])
  })

  it("reads set files relative to the declaring file and reports bad entries at their line", () => {
    expect(diags('include "sub/sets.rules"\npolicy p {\n  rule r when dst.ip in bad -> block\n  default allow\n}\n', {
      "sub/sets.rules": 'set bad = cidrs file "bad.txt"\n',
      "sub/bad.txt": "# comment\n10.0.0.0/8\n\n  192.168.1.1/16\n",
    })).toEqual(["sub/bad.txt:4:3 T022 `192.168.1.1/16` has host bits set under the /16 mask"])
  })

  it("accepts hosts-file lines in a domains set file", () => {
    const r = check('set ads = domains file "ads.txt"\npolicy p {\n  rule r when dst.domain in ads -> block\n  default allow\n}\n', { "ads.txt": "0.0.0.0 ads.example\n127.0.0.1 Track.Example.\n" })
    expect(r.program?.sets.get("ads")?.entries).toEqual(["ads.example", "track.example"])
  })
})
