import { describe, expect, it } from "vitest"
import type { Span } from "../src/Ast.ts"
import { error, warning } from "../src/Diagnostic.ts"
import { renderHuman, renderJson } from "../src/Render.ts"

const span = (line: number, col: number, endCol: number, endLine = line, file = "a.rules"): Span => ({
  file, start: { offset: 0, line, column: col }, end: { offset: 0, line: endLine, column: endCol },
})

const SRC = new Map([["a.rules", "upstream corp = socks5://c:1\npolicy p {\n\trule r -> via corpp\n  default block\n}\n"]])

describe("Render.renderHuman", () => {
  it("prints location, severity and code, a code frame with a caret under the span, the hint, and notes with their own frames", () => {
    const d = error("T010", "undefined outbound `corpp`", span(3, 16, 21), { hint: "did you mean `corp`?", notes: [{ message: "`corp` is declared here", span: span(1, 10, 14) }] })
    expect(renderHuman([d], SRC)).toBe([
      "a.rules:3:16: error[T010]: undefined outbound `corpp`",
      "  3 | \trule r -> via corpp",
      "    | \t              ^^^^^",
      "  hint: did you mean `corp`?",
      "  note: `corp` is declared here",
      "  --> a.rules:1:10",
      "  1 | upstream corp = socks5://c:1",
      "    |          ^^^^",
      "",
      "1 error, 0 warnings",
      "",
    ].join("\n"))
  })

  it("underlines a multi-line span to the end of its first line and pads wide line numbers", () => {
    const src = new Map([["a.rules", `${"\n".repeat(9)}policy p {\n  default block\n}\n`]])
    expect(renderHuman([warning("L010", "policy `p` is not used", span(10, 8, 2, 12))], src)).toBe([
      "a.rules:10:8: warning[L010]: policy `p` is not used",
      "  10 | policy p {",
      "     |        ^^^",
      "",
      "0 errors, 1 warning",
      "",
    ].join("\n"))
  })

  it("leaves the frame out when the source is unknown, and prints nothing for no diagnostics", () => {
    expect(renderHuman([error("E001", "cannot read `x.rules`", span(1, 1, 2, 1, "x.rules"))], SRC)).toBe("x.rules:1:1: error[E001]: cannot read `x.rules`\n\n1 error, 0 warnings\n")
    expect(renderHuman([], SRC)).toBe("")
  })

  it("frames the right line of a large file for every diagnostic (CRLF, last line without newline, a line past the end) in linear time", () => {
    const n = 50_000
    const lines = Array.from({ length: n }, (_, i) => `  rule r${i} when dst.port == ${i % 65536} -> block`)
    const text = `${lines.join("\r\n")}`
    const src = new Map([["big.rules", text]])
    const ds = [...Array.from({ length: 5_000 }, (_, k) => warning("L051", "w", span(1 + k * 10, 3, 7, 1 + k * 10, "big.rules"))), warning("L051", "last", span(n, 3, 7, n, "big.rules")), warning("L051", "past", span(n + 1, 1, 2, n + 1, "big.rules"))]
    const started = performance.now()
    const out = renderHuman(ds, src)
    // Splitting the whole file per diagnostic took seconds here; indexed line starts take milliseconds.
    expect(performance.now() - started).toBeLessThan(2_000)
    const blocks = out.split("\n\n")
    expect(blocks[1]).toBe(["big.rules:11:3: warning[L051]: w", `  11 | ${lines[10]}`, "     |   ^^^^"].join("\n"))
    expect(blocks[5_000]).toBe([`big.rules:${n}:3: warning[L051]: last`, `  ${n} | ${lines[n - 1]}`, "        |   ^^^^"].join("\n"))
    expect(blocks[5_001]).toBe(`big.rules:${n + 1}:1: warning[L051]: past`)
  })

  it("colours severity, caret and hint only when asked", () => {
    const d = error("T010", "undefined outbound `corpp`", span(3, 16, 21), { hint: "did you mean `corp`?" })
    const colored = renderHuman([d], SRC, { color: true })
    expect(colored).toContain("\u001b[1;31merror[T010]\u001b[0m")
    expect(colored).toContain("\u001b[1;31m^^^^^\u001b[0m")
    expect(colored.replace(/\u001b\[[0-9;]*m/g, "")).toBe(renderHuman([d], SRC))
  })
})

describe("Render.renderJson", () => {
  it("gives one plain object per diagnostic with 1-based positions, hint and notes", () => {
    const d = error("T011", "duplicate set `a`", span(2, 5, 6), { hint: "rename one", notes: [{ message: "first defined here", span: span(1, 5, 6) }, { message: "no location" }] })
    expect(renderJson([d, warning("L001", "set `a` is never used", span(1, 5, 6))])).toEqual([
      { code: "T011", severity: "error", message: "duplicate set `a`", file: "a.rules", line: 2, column: 5, endLine: 2, endColumn: 6, hint: "rename one", notes: [{ message: "first defined here", file: "a.rules", line: 1, column: 5 }, { message: "no location" }] },
      { code: "L001", severity: "warning", message: "set `a` is never used", file: "a.rules", line: 1, column: 5, endLine: 1, endColumn: 6, notes: [] },
    ])
    expect(JSON.parse(JSON.stringify(renderJson([d])))).toEqual(renderJson([d]))
  })
})
