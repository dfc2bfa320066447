import { describe, expect, it } from "vitest"
import type { DeclNode, ExprNode, PolicyNode, TestNode } from "../src/Ast.ts"
import { forgetLastParse, parse } from "../src/Parser.ts"

const ok = (text: string) => {
  const r = parse(text, "t.rules")
  expect(r.diagnostics).toEqual([])
  return r.file
}

/** Strips spans so trees compare structurally. */
const strip = (x: unknown): unknown =>
  Array.isArray(x) ? x.map(strip)
  : x !== null && typeof x === "object" ? Object.fromEntries(Object.entries(x).filter(([k]) => k !== "span").map(([k, v]) => [k, strip(v)]))
  : x

const cond = (when: string): unknown => {
  const f = ok(`policy p {\n  rule r when ${when} -> allow\n  default block\n}\n`)
  const rule = (f.items[0] as PolicyNode).items[0]!
  return strip(rule.kind === "default" ? undefined : rule.when)
}

describe("Parser: declarations", () => {
  it("parses a generic declaration with a name, inline tokens and a block", () => {
    const f = ok(`listen public = mixed 0.0.0.0:7890 { tls cert file("/c.pem") key file("/k.pem"); policy edge }\n`)
    const d = f.items[0] as DeclNode
    expect(d.keyword.text).toBe("listen")
    expect(d.name?.text).toBe("public")
    expect(strip(d.args)).toEqual([{ kind: "bare", text: "mixed" }, { kind: "bare", text: "0.0.0.0:7890" }])
    expect(d.block?.length).toBe(2)
    expect(strip(d.block![1]!.tokens)).toEqual([{ kind: "bare", text: "policy" }, { kind: "bare", text: "edge" }])
    expect(strip(d.block![0]!.tokens[2])).toEqual({ kind: "call", name: "file", args: [{ kind: "string", value: "/c.pem" }] })
  })

  it("keeps bracketed IPv6 host:port as one token and lists of IPv6 CIDRs", () => {
    const f = ok(`tor t = socks [::1]:9050\nset lan = cidrs [fd00::/8, ::1, 10.0.0.0/8]\n`)
    expect(strip((f.items[0] as DeclNode).args[1])).toEqual({ kind: "bare", text: "[::1]:9050" })
    const list = (f.items[1] as DeclNode).args[1]
    expect(strip(list)).toEqual({ kind: "list", open: "bracket", items: [
      { kind: "bare", text: "fd00::/8" }, { kind: "bare", text: "::1" }, { kind: "bare", text: "10.0.0.0/8" }] })
  })

  it("lexes chains with and without spaces around ->", () => {
    const a = ok(`chain c = a -> b -> c\n`).items[0] as DeclNode
    const b = ok(`chain c = a->b->c\n`).items[0] as DeclNode
    expect(strip(a.args)).toEqual(strip(b.args))
    expect(a.args.map((t) => t.kind)).toEqual(["bare", "arrow", "bare", "arrow", "bare"])
  })

  it("allows a multi-line block with comments and a line continuation", () => {
    const f = ok(`options {\n  # timeouts\n  handshake-timeout 10s   # short\n  idle-timeout 5m\n}\nupstream u = socks5://h:1 \\\n  auth env(U) env(P)\n`)
    expect((f.items[0] as DeclNode).block!.map((l) => strip(l.tokens))).toEqual([
      [{ kind: "bare", text: "handshake-timeout" }, { kind: "bare", text: "10s" }],
      [{ kind: "bare", text: "idle-timeout" }, { kind: "bare", text: "5m" }],
    ])
    expect((f.items[1] as DeclNode).args.length).toBe(4)
    expect(f.comments.map((c) => c.text)).toEqual([" timeouts", " short"])
  })
})

describe("Parser: policies and expressions", () => {
  it("gives `and` precedence over `or` and keeps parentheses", () => {
    expect(cond("user == a or user == b and dst.port == 1")).toEqual({ kind: "or", items: [
      { kind: "cmp", field: { text: "user" }, op: { text: "==" }, value: { kind: "bare", text: "a" } },
      { kind: "and", items: [
        { kind: "cmp", field: { text: "user" }, op: { text: "==" }, value: { kind: "bare", text: "b" } },
        { kind: "cmp", field: { text: "dst.port" }, op: { text: "==" }, value: { kind: "bare", text: "1" } }] }] })
    const p = cond("(user == a or user == b) and not dst.port in {1, 2..3}") as { kind: string; items: Array<{ kind: string }> }
    expect(p.kind).toBe("and")
    expect(p.items.map((i) => i.kind)).toEqual(["paren", "not"])
  })

  it("parses implicit comparisons, `not in`, suffix, matches, regex and time windows", () => {
    expect(cond("command connect")).toEqual({ kind: "cmp", field: { text: "command" }, op: { text: "==", implicit: true }, value: { kind: "bare", text: "connect" } })
    expect((cond("dst.port not in {22}") as { op: unknown }).op).toEqual({ text: "not in" })
    expect((cond(`dst.domain suffix ".onion"`) as { op: unknown }).op).toEqual({ text: "suffix" })
    expect((cond(`user matches "ops-*"`) as { op: unknown }).op).toEqual({ text: "matches" })
    expect((cond(`dst.domain regex "^a+$"`) as { op: unknown }).op).toEqual({ text: "regex" })
    expect(cond(`time Mon-Fri 08:00-20:00 tz "Europe/Berlin"`)).toEqual({ kind: "time", field: { text: "time" },
      specs: [{ kind: "bare", text: "Mon-Fri" }, { kind: "bare", text: "08:00-20:00" }], tz: { kind: "string", value: "Europe/Berlin" } })
  })

  it("lets conditions span lines and keeps modifiers after the action", () => {
    const f = ok(`policy p {\n  rule r when user in ops\n    and dst.port == 22 -> via corp else block "down" limit 20/s per user log\n  default allow\n}\n`)
    const r = (f.items[0] as PolicyNode).items[0]!
    expect(r.kind).toBe("rule")
    expect(strip(r.action)).toEqual({ kind: "via", target: { text: "corp" }, else: { kind: "block", message: { kind: "string", value: "down" } } })
    expect(r.modifiers.map((t) => (t.kind === "bare" ? t.text : t.kind))).toEqual(["limit", "20/s", "per", "user", "log"])
  })

  it("does not take a modifier for a tor endpoint name", () => {
    const f = ok(`policy p {\n  rule a when dst.domain suffix ".onion" -> tor log\n  rule b -> tor onion\n  default allow\n}\n`)
    const [a, b] = (f.items[0] as PolicyNode).items
    expect(strip(a!.action)).toEqual({ kind: "tor" })
    expect(strip(b!.action)).toEqual({ kind: "tor", target: { text: "onion" } })
  })

  it("parses test blocks with an expectation and a deciding rule", () => {
    const f = ok(`test "ads" { user alice; connect t.ads.example:443 } expect block by no-ads\ntest "o" { connect a.onion:80 } expect tor by onions\n`)
    const t = f.items[0] as TestNode
    expect(t.name.value).toBe("ads")
    expect(t.body.length).toBe(2)
    expect(strip(t.expect)).toEqual({ action: { kind: "block" }, rule: { text: "no-ads" } })
    expect(strip((f.items[1] as TestNode).expect)).toEqual({ action: { kind: "tor" }, rule: { text: "onions" } })
  })

  it("records spans with 1-based lines and columns", () => {
    const f = ok(`\n\npolicy p {\n  default allow\n}\n`)
    const p = f.items[0] as PolicyNode
    expect(p.name.span.start).toEqual({ offset: 9, line: 3, column: 8 })
    expect(p.items[0]!.span.start.line).toBe(4)
    expect(p.items[0]!.span.start.column).toBe(3)
  })
})

describe("Parser: errors and recovery", () => {
  it("reports the position and the expected tokens", () => {
    const r = parse(`policy p {\n  rule a when user == -> allow\n  default allow\n}\n`, "t.rules")
    expect(r.diagnostics.map((d) => [d.code, d.span.start.line, d.span.start.column])).toEqual([["P001", 2, 23]])
    expect(r.diagnostics[0]!.message).toBe("syntax error: unexpected `-`, expected value")
  })

  it("reports every broken statement in one run, keeping line numbers exact", () => {
    const text = [
      `listen socks5 127.0.0.1:1080`,
      `policy p {`,
      `  rule a when user == -> allow`,
      `  rule b when dst.port = 3 -> allow`,
      `  rule c when dst.port == 3 -> allow`,
      `  default allow`,
      `}`,
      `set x = "abc`,
      `upstream u = socks5://h:1 ( broken`,
      `test "t" { connect a:1 } expect allow`,
    ].join("\n") + "\n"
    const r = parse(text, "t.rules")
    expect(r.diagnostics.map((d) => [d.code, d.span.start.line])).toEqual([["P001", 3], ["P001", 4], ["P002", 8], ["P001", 9]])
    // What did parse is kept: the listener, the policy with rule c, the test.
    const kinds = r.file.items.map((i) => i.kind)
    expect(kinds).toEqual(["decl", "policy", "test"])
    expect((r.file.items[1] as PolicyNode).items.map((i) => (i.kind === "default" ? "default" : i.name.text))).toEqual(["c", "default"])
  })

  it("reports an unclosed brace at the end of the file", () => {
    const r = parse(`policy p {\n  default allow\n`, "t.rules")
    expect(r.diagnostics.map((d) => d.code)).toEqual(["P003"])
  })

  it("never throws on garbage", () => {
    for (const text of ["{", "}", "((((", "policy", "test", "\u0000\u0001", "rule x", "->", "\"", "[", "set a = [", "a = b = c"]) {
      const r = parse(text, "g.rules")
      expect(Array.isArray(r.diagnostics)).toBe(true)
    }
  })
})

describe("Parser: expression nodes", () => {
  it("nests not", () => {
    const e = cond("not not user == a") as ExprNode
    expect(e.kind).toBe("not")
  })
})

describe("the kept last parse", () => {
  // 2,000 rules: above the size under which texts are parsed again rather than kept
  const big = `policy p {\n${Array.from({ length: 2000 }, (_, i) => `  rule r${i} when dst.port == ${1 + i} -> block`).join("\n")}\n  default allow\n}\n`

  it("a large text parsed twice gives the same tree; after forgetLastParse a new one", () => {
    expect(big.length).toBeGreaterThan(64 * 1024)
    const a = parse(big, "big.rules")
    expect(parse(big, "big.rules")).toBe(a)
    forgetLastParse()
    const b = parse(big, "big.rules")
    expect(b).not.toBe(a)
    expect(b.diagnostics).toEqual(a.diagnostics)
    forgetLastParse()
  })
})
