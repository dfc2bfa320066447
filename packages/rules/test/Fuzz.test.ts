/**
 * Robustness fuzz test of the whole toolchain: parse, format, check, compile,
 * evaluate must never throw, whatever the input.
 *
 * Details: seeded (the seed is printed; `FUZZ_SEED=n` replays a run,
 * `FUZZ_SEED=random` draws one). Inputs: random characters, token soups,
 * random valid files, and 1-3 mutations of valid files (fixtures,
 * `rulesets/*.rules`, generated files): deleted, duplicated or swapped lines
 * and tokens, inserted characters, truncation, unbalanced brackets, huge
 * numbers, deep nesting, unicode, CR/CRLF, NUL. Plus a fixed set of deeply
 * nested inputs (parentheses, `not`, lists, calls, blocks) around the parser's
 * limit (`MAX_DEPTH`, P004) and far past it.
 * Checked for each input: every diagnostic's span lies in its file and its
 * line/column match its offset; a file that parses formats (idempotently, to
 * the same AST) and one that does not is refused; the checker reports no
 * internal error (T000); every policy of a clean program compiles and
 * evaluates sample requests.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import type { FileNode } from "../src/Ast.ts"
import { checkSource } from "../src/Check.ts"
import { compile } from "../src/Compiler.ts"
import type { Diagnostic } from "../src/Diagnostic.ts"
import { evaluate } from "../src/Evaluator.ts"
import { format, shape } from "../src/Format.ts"
import type { Request } from "../src/Ir.ts"
import { parse } from "../src/Parser.ts"
import { randomText, type Rng, rng, tokenSoup, validFile } from "./RandomRules.ts"

const env = process.env["FUZZ_SEED"]
const SEED = env === "random" ? Math.floor(Math.random() * 2 ** 31) : Number(env ?? 1)
const FILE = "fuzz.rules"

const FIXTURES = join(import.meta.dirname, "fixtures/format")
const RULESETS = join(import.meta.dirname, "../../../rulesets")
const rulesFiles = (dir: string) => (existsSync(dir) ? readdirSync(dir).filter((f) => f.endsWith(".rules")).map((f) => readFileSync(join(dir, f), "utf8")) : [])
const SEEDS = [...rulesFiles(FIXTURES), ...rulesFiles(RULESETS)]

const REQUESTS: ReadonlyArray<Request> = [
  { command: "connect", dstHost: "example.com", dstPort: 443, srcIp: "10.0.0.5", srcPort: 40000, user: "alice", groups: ["ops"], auth: "password", protocol: "socks5", listener: "socks5", time: Date.parse("2026-03-02T10:00:00Z") },
  { command: "udp", dstHost: "192.168.1.1", dstPort: 53 },
  { command: "bind", dstHost: "::1", dstPort: 0, srcIp: "::ffff:10.0.0.1", facts: { "dst.ip": null } },
  { command: "connect", dstHost: "abc.onion", dstPort: 80, user: "bob" },
]

// ----------------------------------------------------------------------------
// Mutations
// ----------------------------------------------------------------------------

const WEIRD = ["é", "😀", "\u202e", "\u0301", "\uD800", "\uDFFF", "\uFEFF", "日本", "\u00a0", "\u2028", "\0", "\r", "\\"]

const pos = (r: Rng, s: string) => r.int(s.length + 1)
const insertAt = (s: string, at: number, x: string) => s.slice(0, at) + x + s.slice(at)
const swap = <A>(xs: A[], i: number, j: number): A[] => {
  const ys = [...xs]
  ;[ys[i], ys[j]] = [ys[j]!, ys[i]!]
  return ys
}

/** Wraps the first condition in `n` parentheses (or `not`s). */
const nest = (s: string, n: number, not: boolean): string => {
  const when = s.indexOf("when ")
  const arrow = s.indexOf("->", when)
  if (when < 0 || arrow < 0) return s
  const cond = s.slice(when + 5, arrow)
  return s.slice(0, when + 5) + (not ? "not ".repeat(n) + cond : `${"(".repeat(n)}${cond}${")".repeat(n)} `) + s.slice(arrow)
}

const mutate = (r: Rng, s: string): string => {
  const lines = s.split("\n")
  const tokens = s.split(/(\s+)/)
  const li = r.int(lines.length), lj = r.int(lines.length)
  const ti = r.int(tokens.length), tj = r.int(tokens.length)
  switch (r.int(15)) {
    case 0: return lines.filter((_, i) => i !== li).join("\n")
    case 1: return [...lines.slice(0, li), lines[li]!, ...lines.slice(li)].join("\n")
    case 2: return swap(lines, li, lj).join("\n")
    case 3: return tokens.filter((_, i) => i !== ti).join("")
    case 4: return [...tokens.slice(0, ti), tokens[ti]!, " ", ...tokens.slice(ti)].join("")
    case 5: return swap(tokens, ti, tj).join("")
    case 6: return insertAt(s, pos(r, s), randomText(r).slice(0, 1 + r.int(8)))
    case 7: return s.slice(0, pos(r, s))
    case 8: {
      const brackets = [...s.matchAll(/[{}()[\]]/g)].map((m) => m.index)
      return r.chance(0.5) && brackets.length > 0 ? (() => { const at = r.pick(brackets); return s.slice(0, at) + s.slice(at + 1) })() : insertAt(s, pos(r, s), r.pick(["{", "}", "(", ")", "[", "]", "\""]))
    }
    case 9: return s.replace(/\d+/, r.pick(["9".repeat(400), "18446744073709551617", "4294967296", "0".repeat(50), "65536", "-1"]))
    case 10: return nest(s, r.pick([20, 200, 300]), r.chance(0.3))
    case 11: return insertAt(s, pos(r, s), r.pick(WEIRD))
    case 12: return r.chance(0.5) ? s.replace(/\n/g, "\r\n") : s.replace(/\n/g, "\r")
    case 13: return insertAt(insertAt(s, pos(r, s), "\0"), pos(r, s), "\0")
    default: return tokens.map((t) => (/^\d+$/.test(t) && r.chance(0.5) ? `${t}${t}${t}` : t)).join("")
  }
}

// ----------------------------------------------------------------------------
// The probe
// ----------------------------------------------------------------------------

const lineStarts = (text: string): number[] => {
  const starts = [0]
  for (let i = 0; i < text.length; i++) if (text.charCodeAt(i) === 10) starts.push(i + 1)
  return starts
}

/** Why the span of `d` is not a valid place in `text`, or undefined. */
const badSpan = (d: Diagnostic, text: string): string | undefined => {
  const { start, end } = d.span
  if (!Number.isInteger(start.offset) || start.offset < 0 || start.offset > text.length) return `start offset ${start.offset} outside 0..${text.length}`
  if (end.offset < start.offset || end.offset > text.length + 1) return `end offset ${end.offset} (start ${start.offset}, length ${text.length})`
  const starts = lineStarts(text)
  let line = starts.length
  while (starts[line - 1]! > start.offset) line--
  if (start.line !== line || start.column !== start.offset - starts[line - 1]! + 1) return `start ${start.line}:${start.column} is not offset ${start.offset} (${line}:${start.offset - starts[line - 1]! + 1})`
  return undefined
}

/** The parse without spans (iterative: deep inputs would overflow `JSON.stringify`). */
const meaning = (f: FileNode): string => shape(f.items)
/** Refused only because the input is at the parser's nesting limit (the limit depends on the stack left). */
const tooDeep = (ds: ReadonlyArray<Diagnostic>) => ds.some((d) => d.code === "P004")

/** How far inputs got: a fuzz run that never reaches the compiler proves nothing about it. */
const reached = { formatted: 0, compiled: 0 }

/** Runs the toolchain on one input; returns the first broken promise, or undefined. */
const probe = (text: string): string | undefined => {
  try {
    const parsed = parse(text, FILE)
    for (const d of parsed.diagnostics) {
      const bad = badSpan(d, text)
      if (bad !== undefined) return `parse diagnostic ${d.code} "${d.message}": ${bad}`
    }
    const formatted = format(text, FILE)
    if (parsed.diagnostics.length > 0 && formatted.ok) return "formatted a file with parse errors"
    if (parsed.diagnostics.length === 0) {
      if (!formatted.ok) {
        if (!tooDeep(formatted.diagnostics)) return `format refused a file that parses: ${formatted.diagnostics[0]?.message}`
      } else {
        reached.formatted++
        const again = format(formatted.text, FILE)
        if (again.ok ? again.text !== formatted.text : !tooDeep(again.diagnostics)) return "format is not idempotent"
        const reparsed = parse(formatted.text, FILE)
        if (!tooDeep(reparsed.diagnostics) && meaning(reparsed.file) !== meaning(parsed.file)) return "format changed the AST"
      }
    }
    const checked = checkSource(text, FILE)
    for (const d of checked.diagnostics) {
      // A stack overflow on input nested near the parser's limit is reported as T000 by design; any other T000 is a bug.
      if (d.code === "T000" && !d.message.includes("call stack")) return `checker internal error: ${d.message}`
      const source = checked.sources.get(d.span.file)
      const bad = source === undefined ? undefined : badSpan(d, source)
      if (bad !== undefined) return `check diagnostic ${d.code} "${d.message}": ${bad}`
    }
    if (checked.program !== undefined && !checked.diagnostics.some((d) => d.severity === "error")) {
      for (const [name, policy] of checked.program.policies) {
        let compiled
        try {
          compiled = compile(policy)
          reached.compiled++
        } catch (e) {
          return `compile(${name}) threw: ${String(e)}`
        }
        for (const req of REQUESTS) {
          try {
            evaluate(compiled, req, { missing: "unknown" })
            evaluate(compiled, req, { missing: "need" })
          } catch (e) {
            return `evaluate(${name}, ${req.dstHost}) threw: ${String(e)}`
          }
        }
      }
    }
    return undefined
  } catch (e) {
    return `threw: ${e instanceof Error ? `${e.name}: ${e.message}\n${e.stack?.split("\n").slice(1, 6).join("\n")}` : String(e)}`
  }
}

const expectRobust = (kind: string, inputs: Iterable<string>) => {
  let n = 0
  for (const text of inputs) {
    const why = probe(text)
    if (why !== undefined) {
      expect.fail(`FUZZ_SEED=${SEED} ${kind} #${n}: ${why}\ninput (${text.length} chars): ${JSON.stringify(text.length > 3000 ? `${text.slice(0, 3000)}…` : text)}`)
    }
    n++
  }
  expect(n).toBeGreaterThan(0)
}

function* generate(count: number, salt: number, make: (r: Rng) => string): Generator<string> {
  for (let i = 0; i < count; i++) yield make(rng(SEED * 7919 + salt * 1_000_003 + i))
}

describe(`fuzz (FUZZ_SEED=${SEED})`, () => {
  console.log(`fuzz: FUZZ_SEED=${SEED} (set FUZZ_SEED to replay, FUZZ_SEED=random for a new run)`)

  it("handles the seed files themselves", () => expectRobust("seed file", SEEDS))

  it("survives random characters", () => expectRobust("random text", generate(500, 1, randomText)))

  it("survives token soups", () => expectRobust("token soup", generate(500, 2, tokenSoup)))

  it("survives random valid files", () => expectRobust("valid file", generate(200, 3, validFile)))

  const mutants = (seeds: () => (r: Rng) => string) => (r: Rng) => {
    let s = seeds()(r)
    for (let k = 1 + r.int(3); k > 0; k--) s = mutate(r, s)
    return s
  }

  it("survives mutations of the fixtures and rulesets", () => {
    expect(SEEDS.length).toBeGreaterThan(0)
    const before = { ...reached }
    expectRobust("mutant of a seed file", generate(500, 4, mutants(() => (r) => r.pick(SEEDS))))
    // Many mutants still parse, and some still check clean and reach the compiler.
    expect(reached.formatted - before.formatted).toBeGreaterThan(50)
    expect(reached.compiled - before.compiled).toBeGreaterThan(10)
    console.log(`fuzz: of 500 mutants, ${reached.formatted - before.formatted} parsed and ${reached.compiled - before.compiled} policies compiled`)
  })

  it("survives mutations of random valid files", () => expectRobust("mutant of a random file", generate(500, 5, mutants(() => validFile))))

  it("survives deep nesting, with P004 instead of a stack overflow", () => {
    const policy = (cond: string) => `policy p {\n  rule r when ${cond} -> allow\n  default block\n}\n`
    const inputs: string[] = []
    for (const n of [10, 100, 255, 257, 1000, 3000]) {
      inputs.push(
        policy(`${"(".repeat(n)}dst.port == 22${")".repeat(n)}`),
        policy(`${"not ".repeat(n)}dst.port == 22`),
        policy(`${"(dst.port == 1 or ".repeat(n)}dst.port == 2${")".repeat(n)}`),
        `set s = ports ${"[".repeat(n)}22${"]".repeat(n)}\n`,
        `upstream u = socks5://a:1 auth ${"env(".repeat(n)}X${")".repeat(n)}\n`,
        `options ${"{ workers 1 ".repeat(n)}${"}".repeat(n)}\n`,
      )
    }
    // Long but flat: many operands, many rules.
    inputs.push(policy(Array.from({ length: 2000 }, (_, i) => `dst.port == ${i + 1}`).join(" and ")))
    inputs.push(`policy p {\n${Array.from({ length: 500 }, (_, i) => `  rule r${i} when dst.port == ${i + 1} -> allow\n`).join("")}  default block\n}\n`)
    expectRobust("deep", inputs)
    // Past the limit: P004, whether the tree is too deep or the parser's own stack overflows.
    for (const n of [257, 1000, 20000]) {
      expect(parse(policy(`${"(".repeat(n)}dst.port == 22${")".repeat(n)}`), FILE).diagnostics.map((d) => d.code)).toEqual(["P004"])
    }
    expect(parse(policy(`${"(".repeat(200)}dst.port == 22${")".repeat(200)}`), FILE).diagnostics).toEqual([])
  })
})
