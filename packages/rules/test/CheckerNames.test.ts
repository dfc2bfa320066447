import { describe, expect, it } from "vitest"
import { check, diags, only, POLICY } from "./CheckerHelpers.ts"

describe("Checker: name resolution", () => {
  it("reports an undefined outbound with a did-you-mean hint, and does not call the suggested name unused", () => {
    const r = check("upstream corp = socks5://c.example:1080\npolicy p {\n  rule r -> via corpp\n  default block\n}\n")
    expect(r.diagnostics.map((d) => [d.code, d.message, d.span.start.line, d.span.start.column, d.span.end.column, d.hint])).toEqual([
      ["T010", "undefined outbound `corpp`", 3, 17, 22, "did you mean `corp`?"],
    ])
  })

  it("reports a duplicate name with a note at the first definition", () => {
    const r = check("set a = users [x]\nset a = users [y]\n" + POLICY)
    const d = r.diagnostics.find((x) => x.code === "T011")!
    expect([d.message, d.span.start.line, d.span.start.column, d.notes?.[0]?.message, d.notes?.[0]?.span?.start.line, d.notes?.[0]?.span?.start.column])
      .toEqual(["duplicate set `a`", 2, 5, "first defined here", 1, 5])
  })

  it("shares one namespace between upstreams, chains and groups", () => {
    expect(only(["T011"], "upstream x = socks5://a:1\nupstream y = socks5://b:1\nchain x = y -> y\n" + POLICY))
      .toEqual(["3:7 T011 duplicate name `x`: an upstream already has this name"])
  })

  it("asks to name two unnamed listeners of one kind", () => {
    const r = check("listen socks5 127.0.0.1:1080\nlisten socks5 127.0.0.1:1081\n" + POLICY)
    expect(r.diagnostics.map((d) => [d.code, d.message, d.hint])).toEqual([
      ["T011", "duplicate listener `socks5`", "an unnamed listener is named after its kind; name them: `listen NAME = socks5 ...`"],
    ])
  })

  it("reports routing via a set as the wrong kind of name", () => {
    expect(only(["T012"], "set ads = domains [a.com]\npolicy p {\n  rule r when dst.domain in ads -> via ads\n  default block\n}\n"))
      .toEqual(["3:40 T012 `ads` is a set, expected an upstream, chain or group"])
  })

  it("reports `via` a tor endpoint and `tor` an upstream with the right action as hint", () => {
    const r = check("tor t = socks 127.0.0.1:9050\nupstream u = socks5://a:1\npolicy p {\n  rule a -> via t\n  rule b -> tor u\n  default block\n}\n")
    expect(r.diagnostics.filter((d) => d.code === "T012").map((d) => [d.message, d.hint])).toEqual([
      ["`t` is a tor endpoint, not an upstream, chain or group", "write `tor t`"],
      ["`u` is an outbound, not a tor endpoint", "write `via u`"],
    ])
  })

  it("reports a set of the wrong type in a condition", () => {
    expect(only(["T012"], "set ads = domains [a.com]\npolicy p {\n  rule r when dst.ip in ads -> block\n  default allow\n}\n"))
      .toEqual(["3:25 T012 set `ads` holds domains, but `dst.ip` needs cidrs"])
  })

  it("reports an undefined set with a did-you-mean", () => {
    const r = check("set lan = cidrs [10.0.0.0/8]\npolicy p {\n  rule r when dst.ip in lna -> allow\n  default block\n}\n")
    expect(r.diagnostics.map((d) => [d.code, d.message, d.hint])).toEqual([
      ["T010", "undefined set `lna`", "did you mean `lan`?"],
    ])
  })

  it("reports an undefined listener policy and an undefined listener auth", () => {
    expect(only(["T010"], "listen socks5 127.0.0.1:1080 policy mian auth usrs\n" + "policy main {\n  default block\n}\n"))
      .toEqual(["1:37 T010 undefined policy `mian`", "1:47 T010 undefined auth `usrs`"])
  })

  it("detects cycles among chains and among groups and lists the path", () => {
    const r = check("upstream u = socks5://a:1\nchain c = u -> d\nchain d = u -> c\ngroup g = failover(h, u)\ngroup h = fastest(g)\npolicy p {\n  rule r -> via g\n  rule s -> via c\n  default block\n}\n")
    expect(r.diagnostics.filter((x) => x.code === "T013").map((d) => [d.message, d.span.start.line, d.span.start.column, d.notes?.map((n) => n.span?.start.line)])).toEqual([
      ["cycle in outbounds: c -> d -> c", 2, 7, [3]],
      ["cycle in outbounds: g -> h -> g", 4, 7, [5]],
    ])
  })

  it("resolves names declared later in the file (forward references)", () => {
    expect(diags("policy p {\n  rule r -> via late\n  default block\n}\nupstream late = socks5://a:1\n")).toEqual([])
  })

  it("reports an unknown declaration keyword with a did-you-mean", () => {
    const r = check("upstrem x = socks5://a:1\n" + POLICY)
    expect(r.diagnostics.map((d) => [d.code, d.message, d.span.start.column, d.span.end.column, d.hint])).toEqual([["T001", "unknown declaration `upstrem`", 1, 8, "did you mean `upstream`?"]])
  })

  it("reports `rule`, `guard` and `default` outside a policy", () => {
    expect(only(["T055"], "rule r -> allow\nguard g -> block\ndefault block\n" + POLICY)).toEqual([
      "1:1 T055 `rule` is only allowed inside a policy",
      "2:1 T055 `guard` is only allowed inside a policy",
      "3:1 T055 `default` is only allowed inside a policy",
    ])
  })
})

describe("Checker: chain hops", () => {
  it("rejects a group as a chain hop", () => {
    expect(only(["T012"], "upstream a = socks5://a:1\ngroup g = failover(a)\nchain c = a -> g\npolicy p {\n  default via c\n}\n")).toEqual(["3:16 T012 `g` is a group; chain hops are upstreams or chains"])
  })
})
