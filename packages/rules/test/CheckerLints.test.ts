import { describe, expect, it } from "vitest"
import { check, diags, only, POLICY } from "./CheckerHelpers.ts"

describe("Checker: lints", () => {
  it("warns about unused sets, outbounds, tors, auths and user groups", () => {
    expect(only(["L001"], "set s = users [a]\nupstream u = socks5://a:1\nchain c = u -> u\ngroup g = failover(u)\ntor t = socks 127.0.0.1:9050\nauth a = htpasswd \"x\"\nusergroup ug = [a]\n" + POLICY)).toEqual([
      "1:5 L001 set `s` is never used",
      "3:7 L001 chain `c` is never used",
      "4:7 L001 group `g` is never used",
      "5:5 L001 tor endpoint `t` is never used",
      "6:6 L001 auth `a` is never used",
      "7:11 L001 user group `ug` is never used",
    ])
  })

  it("warns about duplicate and covered set entries, with a note at the covering entry", () => {
    const r = check("set d = domains [a.example, .b.example, x.b.example, *.b.example, a.example]\nset c = cidrs [10.0.0.0/8, 10.1.2.0/24, fd00::/8, fd00:1::/32]\nset p = ports [22, 20..30, 8000..9000, 8080..8090]\npolicy p {\n  rule r when dst.domain in d or dst.ip in c or dst.port in p -> block\n  default allow\n}\n")
    expect(r.diagnostics.map((d) => [`${d.span.start.line}:${d.span.start.column}`, d.code, d.message, d.notes?.[0]?.span?.start.column])).toEqual([
      ["1:41", "L003", "entry `x.b.example` in set `d` is already covered by `.b.example`", 29],
      ["1:54", "L003", "entry `*.b.example` in set `d` is already covered by `.b.example`", 29],
      ["1:67", "L002", "duplicate entry `a.example` in set `d`", 18],
      ["2:28", "L003", "entry `10.1.2.0/24` in set `c` is already covered by `10.0.0.0/8`", 16],
      ["2:51", "L003", "entry `fd00:1::/32` in set `c` is already covered by `fd00::/8`", 41],
      ["3:16", "L003", "entry `22` in set `p` is already covered by `20..30`", 20],
      ["3:40", "L003", "entry `8080..8090` in set `p` is already covered by `8000..9000`", 28],
    ])
  })

  it("warns about an empty set", () => {
    expect(only(["L004"], "set e = domains []\npolicy p {\n  rule r when dst.domain in e -> block\n  default allow\n}\n")).toEqual(["1:5 L004 set `e` is empty"])
  })

  it("warns once per field about negations over facts that can be unknown, with a three-valued-logic hint", () => {
    const r = check("policy p {\n  rule a when user != bob -> block\n  rule b when not (dst.domain in [x.com] or command connect) -> block\n  rule c when command != udp -> allow\n  default allow\n}\n")
    expect(r.diagnostics.map((d) => [`${d.span.start.line}:${d.span.start.column}`, d.code, d.message])).toEqual([
      ["2:20", "L005", "`user != ...` over `user`, which can be unknown: then the negation is unknown too and the rule does not fire"],
      ["3:15", "L005", "`not ...` over `dst.domain`, which can be unknown: then the negation is unknown too and the rule does not fire"],
    ])
    expect(r.diagnostics[0]!.hint).toBe("there is no user when the client did not log in; with three-valued logic `not unknown` is unknown. Match the positive case in an earlier rule, or accept that the rule skips such connections")
  })

  it("rejects .onion names routed anywhere but tor (error)", () => {
    expect(only(["L006"], 'upstream u = socks5://a:1\ntor t = socks 127.0.0.1:9050\npolicy p {\n  rule a when dst.domain suffix ".onion" -> via u\n  rule b when dst.domain matches "*.onion" and dst.port == 80 -> allow\n  rule c when dst.domain == abc.onion -> redirect "x:1"\n  rule d when dst.domain suffix onion -> tor t\n  rule e when dst.domain in [a.onion, b.com] -> allow\n  default block\n}\n')).toEqual([
      "4:45 L006 rule `a` routes .onion names via `u`, not through tor",
      "5:66 L006 rule `b` routes .onion names with `allow`, not through tor",
      "6:42 L006 rule `c` routes .onion names with `redirect`, not through tor",
    ])
    expect(check('policy p {\n  rule a when dst.domain suffix ".onion" -> allow\n  default block\n}\n').diagnostics.map((d) => d.severity)).toEqual(["error"])
  })

  it("warns when a rule that can match udp/bind routes via http, and errors when it explicitly does", () => {
    const r = check("upstream h = http://h:3128\nupstream s = socks5://s:1080\nchain c = s -> h\npolicy p {\n  rule a when command udp -> via c\n  rule b when dst.port == 443 -> via h\n  rule c when command connect -> via h\n  rule d -> via s\n  default block\n}\n")
    expect(r.diagnostics.map((d) => [d.severity, `${d.span.start.line}:${d.span.start.column}`, d.code, d.message])).toEqual([
      ["error", "5:30", "L008", "rule `a` sends `udp` via `c`, which goes through http upstream `h`, which can only carry `connect`"],
      ["warning", "6:8", "L007", "rule `b` can match `command udp` but routes via http upstream `h`, which can only carry `connect`"],
    ])
  })

  it("warns about a listener on a non-loopback address without auth (open proxy)", () => {
    expect(only(["L009"], 'listen a = socks5 0.0.0.0:1080\nlisten b = http [::]:3128 auth u\nlisten c = mixed 127.0.0.1:7890\nauth u = htpasswd "p"\n' + POLICY)).toEqual([
      "1:19 L009 listener `a` accepts connections from the network without authentication (open proxy)",
    ])
  })

  it("reports every problem of a file in one run", () => {
    expect(diags("set lan = cidrs [10.0.0.0/33]\nupstream corp = socks5://c:1\npolicy p {\n  rule a when dst.domian == x -> via corpp\n  rule b when dst.port in {70000} -> allow\n}\nbogus x\n").map((l) => l.split(" ").slice(0, 2).join(" "))).toEqual([
      "1:5 L001", "1:18 T021", "3:8 T051", "4:15 T061", "4:38 T010", "5:28 T023", "7:1 T001",
    ])
  })
})
