import { describe, expect, it } from "vitest"
import { check, diags, only } from "./CheckerHelpers.ts"

describe("Checker: policies", () => {
  it("reports a missing default at the policy name", () => {
    const r = check("policy edge {\n  rule r -> allow\n}\n")
    expect(r.diagnostics.map((d) => [d.code, d.message, d.span.start.line, d.span.start.column, d.span.end.column, d.hint])).toEqual([
      ["T051", "policy `edge` has no `default`", 1, 8, 12, "end the policy with `default block` (or `default allow`); nothing is allowed implicitly"],
    ])
    expect(r.program).toBeUndefined()
  })

  it("reports a second default with a note at the first, and a default that is not last", () => {
    const r = check("policy p {\n  default block\n  rule r -> allow\n  default allow\n}\n")
    expect(r.diagnostics.map((d) => [d.code, d.message, d.span.start.line, d.span.start.column, d.notes?.[0]?.span?.start.line])).toEqual([
      ["T053", "`default` must be the last item of a policy", 2, 3, undefined],
      ["T052", "policy `p` has more than one `default`", 4, 3, 2],
    ])
  })

  it("requires guards to block and to have a condition", () => {
    expect(diags("policy p {\n  guard g when user == x -> allow\n  guard h -> block\n  default block\n}\n")).toEqual([
      "2:29 T054 guard `g` must `block`; found `allow`",
      "3:9 T054 guard `h` has no condition and would block everything",
    ])
  })

  it("reports duplicate rule names, also between guards and rules, and the reserved name `default`", () => {
    expect(only(["T011"], "policy p {\n  guard a when user == x -> block\n  rule a -> allow\n  rule default -> allow\n  default block\n}\n")).toEqual([
      "3:8 T011 duplicate rule `a` in policy `p`",
      "4:8 T011 `default` is reserved for the policy's default",
    ])
  })

  it("resolves `tor` without a name only when exactly one tor is declared", () => {
    expect(diags("policy p {\n  rule r when dst.domain suffix onion -> tor\n  default block\n}\n")).toEqual([
      "2:42 T056 `tor` needs a declared tor endpoint",
    ])
    const one = check("tor t = socks 127.0.0.1:9050\npolicy p {\n  rule r when dst.domain suffix onion -> tor\n  default block\n}\n")
    expect(one.diagnostics).toEqual([])
    expect(one.program?.policies.get("p")?.rules[0]?.action).toEqual({ k: "tor", target: "t" })
  })

  it("checks `else` actions and rejects `else` via the same outbound", () => {
    expect(diags("upstream a = socks5://a:1\nupstream b = socks5://b:1\npolicy p {\n  rule r -> via a else via a\n  rule s -> via a else via bb\n  default via b else block\n}\n")).toEqual([
      "4:28 T059 `else` routes via `a` again",
      "5:28 T010 undefined outbound `bb`",
    ])
  })

  it("parses modifiers into the IR with their defaults", () => {
    const r = check('policy p {\n  rule r -> allow limit 20/s per user limit 100 bandwidth 1MiB/s idle 5m log tag "web"\n  default block\n}\n')
    expect(r.diagnostics).toEqual([])
    expect(r.program?.policies.get("p")?.rules[0]?.modifiers.map(({ span: _, ...m }) => m)).toEqual([
      { k: "rate", count: 20, perSeconds: 1, per: "user" },
      { k: "conns", max: 100, per: "src" },
      { k: "bandwidth", bytesPerSecond: 1048576, per: "connection" },
      { k: "idle", ms: 300000 },
      { k: "log" },
      { k: "tag", value: "web" },
    ])
  })

  it("reports an unknown modifier with a did-you-mean and a bad `per` key", () => {
    const r = check("policy p {\n  rule r -> allow limt 5/s\n  rule s -> allow limit 5/s per host\n  default block\n}\n")
    expect(r.diagnostics.map((d) => [d.code, d.message, d.span.start.line, d.span.start.column, d.hint])).toEqual([
      ["T058", "unknown modifier `limt`", 2, 19, "did you mean `limit`?"],
      ["T058", "`per` needs one of user, src, rule, dst, listener", 3, 33, undefined],
    ])
  })

  it("reports a redirect target that is not host:port", () => {
    expect(diags('policy p {\n  rule r -> redirect "new.example.com"\n  default block\n}\n')).toEqual([
      "2:22 T030 redirect target: expected host:port, found `new.example.com`",
    ])
  })

  it("resolves listeners to their policy, the only policy, or the one named `default`", () => {
    const one = check("listen socks5 127.0.0.1:1080\npolicy only {\n  default block\n}\n")
    expect(one.program?.listeners.map((l) => [l.name, l.policy])).toEqual([["socks5", "only"]])
    const named = check("listen a = socks5 127.0.0.1:1080\nlisten b = http 127.0.0.1:3128 policy web\npolicy default {\n  default block\n}\npolicy web {\n  default allow\n}\n")
    expect(named.program?.listeners.map((l) => [l.name, l.policy])).toEqual([["a", "default"], ["b", "web"]])
    expect(named.program?.defaultPolicy).toBe("default")
    expect(diags("listen socks5 127.0.0.1:1080\npolicy a {\n  default block\n}\npolicy b {\n  default block\n}\n")).toEqual([
      "1:8 T050 listener `socks5` has no policy",
      "2:8 L010 policy `a` is not used by any listener or test",
      "5:8 L010 policy `b` is not used by any listener or test",
    ])
  })
})
