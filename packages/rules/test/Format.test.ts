/**
 * Tests of `proxyd fmt` (Format.ts): golden files, and the four properties on
 * fixtures, `rulesets/*.rules` and random files: idempotent, same AST (modulo
 * spans), same comments, refuses broken files without throwing.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import type { FileNode } from "../src/Ast.ts"
import { checkSource } from "../src/Check.ts"
import { format } from "../src/Format.ts"
import { parse } from "../src/Parser.ts"
import { rng, validFile } from "./RandomRules.ts"

const FIXTURES = join(import.meta.dirname, "fixtures/format")
const RULESETS = join(import.meta.dirname, "../../../rulesets")
const read = (path: string) => readFileSync(path, "utf8")
const inputs = readdirSync(FIXTURES).filter((f) => f.endsWith(".in.rules")).sort()
const rulesets = existsSync(RULESETS) ? readdirSync(RULESETS).filter((f) => f.endsWith(".rules")).sort() : []

/** The parse tree without spans: what the file means. */
const meaning = (f: FileNode): unknown => JSON.parse(JSON.stringify(f.items, (k, v: unknown) => (k === "span" ? undefined : v)))
const commentTexts = (f: FileNode): string[] => f.comments.map((c) => c.text).sort()

const formatted = (source: string, file = "t.rules"): string => {
  const r = format(source, file)
  if (!r.ok) throw new Error(`not formatted: ${r.diagnostics.map((d) => `${d.code} ${d.message} at ${d.span.start.line}:${d.span.start.column}`).join("; ")}`)
  return r.text
}

/** Asserts the four properties for a file that parses. */
const assertProperties = (source: string, file: string) => {
  const before = parse(source, file)
  expect(before.diagnostics).toEqual([])
  const once = formatted(source, file)
  expect(formatted(once, file)).toBe(once)
  const after = parse(once, file)
  expect(after.diagnostics).toEqual([])
  expect(meaning(after.file)).toEqual(meaning(before.file))
  expect(commentTexts(after.file)).toEqual(commentTexts(before.file))
  expect(once.endsWith("\n") || once === "").toBe(true)
  for (const line of once.split("\n")) if (!line.includes("#")) expect(line).not.toMatch(/[ \t]$/) // no trailing blanks (a comment keeps its own)
}

describe("golden files", () => {
  it("has one expected output per input", () => {
    expect(inputs.length).toBeGreaterThanOrEqual(6)
    for (const f of inputs) expect(existsSync(join(FIXTURES, f.replace(".in.", ".out.")))).toBe(true)
  })
  for (const f of inputs) {
    it(`${f} → ${f.replace(".in.", ".out.")}`, () => {
      const expected = read(join(FIXTURES, f.replace(".in.", ".out.")))
      expect(formatted(read(join(FIXTURES, f)), f)).toBe(expected)
      expect(formatted(expected, f)).toBe(expected)
    })
  }
})

describe("properties", () => {
  it.each(inputs)("hold for fixture %s", (f) => assertProperties(read(join(FIXTURES, f)), f))

  // One test per file present (none is fine: the directory is written by another module).
  for (const f of rulesets) {
    it(`hold for rulesets/${f}, and the checker says the same of the formatted file`, () => {
      const source = read(join(RULESETS, f))
      assertProperties(source, f)
      const said = (text: string) => checkSource(text, f).diagnostics.map((d) => `${d.code} ${d.message}`).sort()
      expect(said(formatted(source, f))).toEqual(said(source))
    })
  }

  it("hold for 400 random files in random layouts", () => {
    const seed = Number(process.env["FUZZ_SEED"] ?? 20261122)
    for (let i = 0; i < 400; i++) {
      const source = validFile(rng(seed + i))
      try {
        assertProperties(source, "random.rules")
      } catch (e) {
        throw new Error(`seed ${seed + i}: ${JSON.stringify(source)}\n${String(e)}`)
      }
    }
  })
})

describe("layout", () => {
  it("spaces tokens, lists, calls and strings canonically", () => {
    expect(formatted(`set   x =  domains [a.example,b.example , ]\nupstream u = socks5://u:1 auth env( U ) env(P)\nset s = users ["a\\"b", "tab\there"]\n`))
      .toBe(`set x = domains [a.example, b.example]\nupstream u = socks5://u:1 auth env(U) env(P)\nset s = users ["a\\"b", "tab\\there"]\n`)
  })

  it("keeps one blank line for a run of blank lines, none at the ends or after `{`", () => {
    expect(formatted(`\n\nlisten a 1:1\n\n\n\nlisten b 1:2\npolicy p {\n\n  rule r -> allow\n\n\n  default block\n\n}\n\n`))
      .toBe(`listen a 1:1\n\nlisten b 1:2\npolicy p {\n  rule r -> allow\n\n  default block\n}\n`)
  })

  it("puts a block with one short setting on one line and others one setting per line", () => {
    expect(formatted(`listen a 1:1 {\n  policy edge\n}\nlisten b 1:2 { policy edge; auth u }\n`))
      .toBe(`listen a 1:1 { policy edge }\nlisten b 1:2 {\n  policy edge\n  auth u\n}\n`)
  })

  it("breaks a long condition before each top-level `and`, aligned under `when`", () => {
    const long = `policy p {\n  rule r when dst.domain in [alpha.example, beta.example, gamma.example] and dst.port in {80, 443} and user != mallory -> allow\n  default block\n}\n`
    expect(formatted(long)).toBe(`policy p {\n  rule r when dst.domain in [alpha.example, beta.example, gamma.example]\n         and dst.port in {80, 443}\n         and user != mallory -> allow\n  default block\n}\n`)
  })

  it("joins a short condition written over several lines", () => {
    expect(formatted(`policy p {\n  rule r when user == a\n    and dst.port == 1\n    -> allow\n  default block\n}\n`))
      .toBe(`policy p {\n  rule r when user == a and dst.port == 1 -> allow\n  default block\n}\n`)
  })

  it("keeps parentheses, implicit comparisons and `not in` as written", () => {
    expect(formatted(`policy p {\n  rule r when ((command connect)) and not (protocol   http) and dst.ip not\n in lan -> allow\n  default block\n}\n`))
      .toBe(`policy p {\n  rule r when ((command connect)) and not (protocol http) and dst.ip not in lan -> allow\n  default block\n}\n`)
  })

  it("aligns `when` and `->` of a run of one-line rules; a blank line or a broken rule ends the run", () => {
    const src = `policy p {\n  guard g when dst.port == 25 -> block\n  rule long-name when user == a -> allow\n  rule r -> allow\n\n  rule x when user == b -> allow\n  rule yy when dst.port == 1 -> block\n  default block\n}\n`
    expect(formatted(src)).toBe(`policy p {\n  guard g         when dst.port == 25 -> block\n  rule  long-name when user == a      -> allow\n  rule  r                             -> allow\n\n  rule x  when user == b     -> allow\n  rule yy when dst.port == 1 -> block\n  default block\n}\n`)
  })

  it("does not align a run that would pass the width limit", () => {
    const src = `policy p {\n  rule a when user == a -> block "a message long enough to push the aligned line of this run past the limit"\n  rule bbbbbbbbbbbbbbbb when dst.domain in [a.example, b.example] -> allow\n  default block\n}\n`
    expect(formatted(src)).toBe(src)
  })

  it("writes a test on one line when it fits, else one setting per line", () => {
    expect(formatted(`test "t" {\n  user alice\n  connect x:443\n} expect block by r\n`)).toBe(`test "t" { user alice; connect x:443 } expect block by r\n`)
    const long = `test "a rather long test name that takes room" { user alice; connect x.example:443; src 10.0.0.1 } expect allow\n`
    expect(formatted(long)).toBe(`test "a rather long test name that takes room" {\n  user alice\n  connect x.example:443\n  src 10.0.0.1\n} expect allow\n`)
  })

  it("writes an empty file as an empty file", () => {
    expect(formatted("")).toBe("")
    expect(formatted("\n\n  \n")).toBe("")
  })
})

describe("comments", () => {
  it("keeps own-line, trailing, in-block and end-of-file comments in place", () => {
    const src = `# top\nlisten a 1:1 # trailing\n# before\nlisten b 1:2 { # brace\n  policy p # in block\n  # own\n} # after\n# end\n`
    expect(formatted(src)).toBe(src)
  })

  it("keeps comments between the operands of a multi-line condition on their lines", () => {
    const src = `policy p {\n  rule r when user == a # first\n    # own line\n    and dst.port == 1 # second\n    -> allow # action\n  default block\n}\n`
    expect(formatted(src)).toBe(`policy p {\n  rule r when user == a # first\n         # own line\n         and dst.port == 1 # second\n         -> allow # action\n  default block\n}\n`)
  })

  it("moves a comment from inside a one-line construct to its own line before it", () => {
    expect(formatted(`set s = domains [a.example, # why\n  b.example]\n`)).toBe(`# why\nset s = domains [a.example, b.example]\n`)
    expect(formatted(`policy p {\n  rule r # why\n    when user == a -> allow\n  default block\n}\n`)).toBe(`policy p {\n  # why\n  rule r when user == a -> allow\n  default block\n}\n`)
  })
})

describe("refusal", () => {
  it.each([
    ["an unterminated string", `listen a "x\n`],
    ["a missing brace", `policy p {\n  default allow\n`],
    ["a broken rule", `policy p {\n  rule r when -> allow\n  default block\n}\n`],
    ["an extra brace", `listen a 1:1 }\n`],
    ["deep nesting", `policy p {\n  rule r when ${"(".repeat(20000)}a == 1${")".repeat(20000)} -> allow\n  default block\n}\n`],
  ])("refuses %s with its parse diagnostics, without throwing", (_, src) => {
    const r = format(src, "bad.rules")
    expect(r.ok).toBe(false)
    if (!r.ok) {
      expect(r.diagnostics.length).toBeGreaterThan(0)
      expect(r.diagnostics.every((d) => d.code.startsWith("P") && d.severity === "error")).toBe(true)
      expect(r.diagnostics).toEqual(parse(src, "bad.rules").diagnostics)
    }
  })
})

describe("CRLF", () => {
  it.each(inputs)("%s with CRLF line endings parses like LF and formats to the same LF text", (f) => {
    const lf = read(join(FIXTURES, f))
    const crlf = lf.replace(/\n/g, "\r\n")
    const a = parse(lf, f), b = parse(crlf, f)
    expect(b.diagnostics).toEqual([])
    expect(meaning(b.file)).toEqual(meaning(a.file))
    expect(commentTexts(b.file)).toEqual(commentTexts(a.file))
    expect(formatted(crlf, f)).toBe(formatted(lf, f))
  })

  it("reads a file with a byte-order mark like one without", () => {
    const src = "# c\r\nlisten a 1:1\r\n"
    expect(parse(`\uFEFF${src}`, "t.rules").diagnostics).toEqual([])
    expect(formatted(`\uFEFF${src}`)).toBe("# c\nlisten a 1:1\n")
  })
})

describe("declarations kept in meaning", () => {
  it("keeps include, plugin and test blocks with all their parts", () => {
    const src = `include   "common.rules" # shared\nplugin "./x.ts"\nplugin "pkg-name"\ntest "t" {\n  user "a b"; groups [x,y]\n  connect x.example:443\n} expect   via corp by r\ntest "u" { connect a:1 } expect block "m"\ntest "v" { connect a:1 } expect redirect by legacy\n`
    const out = formatted(src)
    expect(out).toBe(`include "common.rules" # shared\nplugin "./x.ts"\nplugin "pkg-name"\ntest "t" { user "a b"; groups [x, y]; connect x.example:443 } expect via corp by r\ntest "u" { connect a:1 } expect block "m"\ntest "v" { connect a:1 } expect redirect by legacy\n`)
    const items = parse(out, "t.rules").file.items
    expect(items.map((i) => (i.kind === "decl" ? `${i.keyword.text} ${i.args.map((a) => (a.kind === "string" ? a.value : "?")).join()}` : i.kind)))
      .toEqual(["include common.rules", "plugin ./x.ts", "plugin pkg-name", "test", "test", "test"])
    expect(meaning(parse(out, "t.rules").file)).toEqual(meaning(parse(src, "t.rules").file))
  })
})
