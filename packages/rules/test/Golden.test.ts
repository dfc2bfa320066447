/**
 * Golden files: every diagnostic code has `golden/CODE.rules` (a bad example),
 * `golden/CODE.expected` (its rendered diagnostics) and `golden/CODE.fixed.rules`
 * (the fix, which must check without errors and without that code).
 * `docs/diagnostics.md` is generated from the same files, so the reference
 * cannot drift from what the checker prints. `UPDATE_GOLDEN=1` rewrites both.
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from "node:fs"
import { join, posix } from "node:path"
import { describe, expect, it } from "vitest"
import { analyzePolicy } from "../src/Analysis.ts"
import { checkFiles, compareDiagnostics, type SourceReader } from "../src/Check.ts"
import { renderHuman } from "../src/Render.ts"

const DIR = join(import.meta.dirname, "golden")
const DOCS = join(import.meta.dirname, "../../../docs/diagnostics.md")
const UPDATE = process.env.UPDATE_GOLDEN === "1"

const reader: SourceReader = {
  read: (path) => (existsSync(join(DIR, path)) ? readFileSync(join(DIR, path), "utf8") : undefined),
  resolve: (from, rel) => posix.join(posix.dirname(from), rel),
}

const codes = readdirSync(DIR).filter((f) => /^[A-Z]\d{3}\.rules$/.test(f)).map((f) => f.slice(0, 4)).sort()

/** What `proxyd check` reports before running tests: the checker, then the analysis of every policy. */
const render = (file: string) => {
  const checked = checkFiles([file], reader)
  const analysis = checked.program === undefined ? [] : [...checked.program.policies.values()].flatMap((p) => analyzePolicy(p))
  const diagnostics = [...checked.diagnostics, ...analysis].sort(compareDiagnostics)
  const r = { ...checked, diagnostics }
  return { r, text: renderHuman(r.diagnostics, r.sources) }
}

const ORDER = ["P", "T", "L"]

const START = "<!-- generated from packages/rules/test/golden: start -->"
const END = "<!-- generated from packages/rules/test/golden: end -->"

const HEAD = `# Diagnostics

Every diagnostic of \`proxyd check\` has a stable code: \`P0xx\` parse errors, \`T0xx\`
names, types and ranges, \`L001–L049\` checker lints (warnings unless marked as
errors), \`L050–L079\` analysis lints, \`X0xx\` test failures, \`E0xx\` usage and
I/O errors of the CLI.

Each entry shows a bad example, what \`proxyd check\` prints for it, and the fix.
The part between the \`generated\` markers comes from \`packages/rules/test/golden/\`
(\`UPDATE_GOLDEN=1 npx vitest run packages/rules/test/Golden.test.ts\` rewrites it;
the test fails when it is out of date). Text outside the markers is kept.

`

/** The generated part, between the markers. */
const generated = (): string => {
  const head = `| code | meaning |
|---|---|
`
  const sorted = [...codes].sort((a, b) => ORDER.indexOf(a[0]!) - ORDER.indexOf(b[0]!) || a.localeCompare(b))
  const titles = sorted.map((c) => {
    const lines = readFileSync(join(DIR, `${c}.rules`), "utf8").split("\n")
    return { c, title: lines[0]!.replace(/^# [A-Z]\d{3}: /, ""), why: lines[1]!.replace(/^# /, "") }
  })
  const table = titles.map((t) => `| [${t.c}](#${t.c.toLowerCase()}) | ${t.title} |`).join("\n")
  const sections = titles.map(({ c, title, why }) => {
    const bad = readFileSync(join(DIR, `${c}.rules`), "utf8")
    const fixed = readFileSync(join(DIR, `${c}.fixed.rules`), "utf8").split("\n").slice(1).join("\n")
    const out = readFileSync(join(DIR, `${c}.expected`), "utf8")
    return `## ${c}\n\n**${title}.** ${why}\n\nBad (\`${c}.rules\`):\n\n\`\`\`\n${bad}\`\`\`\n\nReported:\n\n\`\`\`\n${out}\`\`\`\n\nFixed:\n\n\`\`\`\n${fixed}\`\`\`\n`
  })
  const extra = `## Codes without an example

- **P099 formatter self-check failed.** \`proxyd fmt\` re-parses its own output and refuses to write it when it differs from the input (a formatter bug); the file is left unchanged. Please report it with the file.
- **L059 analysis truncated.** The shadowing/overlap analysis has a work budget (it runs on every \`proxyd check\`); on very large or very branchy policies it stops and names the first rule it did not analyse. The file is still checked; nothing is reported for the unanalysed rules.
- **P004 nesting too deep.** Brackets or parentheses nest so deeply (thousands of levels) that the parser would overflow its stack; the position is the deepest point. Flatten the expression or list.
- **E001 cannot read the file.** An entry file given to \`proxyd check\` does not exist or cannot be read.
- **T000 internal checker error.** The checker failed on this input. This is a bug: please report it with the file. The rest of the file is still checked.
`
  return `${START}\n${head}${table}\n\n${sections.join("\n")}\n${extra}${END}`
}

describe("Golden diagnostics", () => {
  it("has a golden for every code the checker and parser emit", () => {
    const required = ["P001", "P002", "P003", "T001", "T002", "T003", "T004", "T005", "T006", "T010", "T011", "T012", "T013", "T014", "T015", "T020", "T021", "T022", "T023", "T024", "T025", "T026", "T027", "T028", "T029", "T030", "T031", "T032", "T033", "T040", "T041", "T042", "T043", "T050", "T051", "T052", "T053", "T054", "T055", "T056", "T058", "T059", "T060", "T061", "T062", "T063", "T070", "T072", "L001", "L002", "L003", "L004", "L005", "L006", "L007", "L008", "L009", "L010", "L050", "L051", "L052"]
    expect(codes).toEqual([...required].sort())
  })

  for (const code of codes) {
    it(`${code}: the bad example reports ${code} as recorded, the fixed one does not`, () => {
      const bad = render(`${code}.rules`)
      const expectedPath = join(DIR, `${code}.expected`)
      if (UPDATE) writeFileSync(expectedPath, bad.text)
      expect(bad.r.diagnostics.map((d) => d.code)).toContain(code)
      expect(bad.text).toBe(readFileSync(expectedPath, "utf8"))
      const fixed = render(`${code}.fixed.rules`)
      expect(fixed.r.diagnostics.filter((d) => d.code === code || d.severity === "error").map((d) => `${d.code} ${d.message}`)).toEqual([])
    })
  }

  it("docs/diagnostics.md holds the generated reference between its markers", () => {
    const current = existsSync(DOCS) ? readFileSync(DOCS, "utf8") : ""
    const from = current.indexOf(START)
    const to = current.indexOf(END)
    const text = generated()
    if (UPDATE) {
      writeFileSync(DOCS, from === -1 || to === -1 ? `${HEAD}${text}\n` : current.slice(0, from) + text + current.slice(to + END.length))
    }
    const now = readFileSync(DOCS, "utf8")
    expect(now.slice(now.indexOf(START), now.indexOf(END) + END.length)).toBe(text)
  })
})
