/**
 * The examples in docs/language.md are true: every ```rules block is a
 * complete file that checks without errors, and its tests pass.
 */
import { existsSync, readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { Check, Render, TestRunner } from "@proxyd/rules"
import { proxyd } from "./proxyd.ts"

const doc = readFileSync(new URL("../docs/language.md", import.meta.url), "utf8")
const blocks = [...doc.matchAll(/^```rules\n([\s\S]*?)^```$/gm)].map((m, i) => ({
  text: m[1]!,
  line: doc.slice(0, m.index).split("\n").length + 1,
  index: i,
}))

// Files the examples name and `check` reads (set files).
const extra = { "docs/lists/ads.txt": "ads.example\n.ads.example\n", "docs/common.rules": "set lan = cidrs [10.0.0.0/8]\n" }

describe("docs/language.md examples", () => {
  it("has examples", () => {
    expect(blocks.length).toBeGreaterThan(15)
  })

  for (const b of blocks) {
    it(`example ${b.index + 1} (line ${b.line}) checks and its tests pass`, () => {
      const file = `docs/example-${b.index + 1}.rules`
      const r = Check.checkSource(b.text, file, extra)
      const errors = r.diagnostics.filter((d) => d.severity === "error")
      expect(Render.renderHuman(errors, r.sources)).toBe("")
      expect(r.program).toBeDefined()
      const run = TestRunner.runTests(r.program!)
      expect(run.results.length).toBeGreaterThan(0)
      expect(run.results.filter((t) => !t.passed).map((t) => t.message)).toEqual([])
    })
  }
})

/**
 * The console sessions pasted in README.md and docs/cli.md are real: every
 * `$ proxyd ...` (or `$ npx proxyd ...`) over files of this repository is run
 * again and must print what the doc shows. Lines `...` in the doc stand for
 * left-out output: the shown lines must then appear in order.
 */
const sessions = (path: string) => {
  const text = readFileSync(new URL(`../${path}`, import.meta.url), "utf8")
  const out: Array<{ readonly args: string[]; readonly expected: string[]; readonly where: string }> = []
  for (const m of text.matchAll(/^```console\n([\s\S]*?)^```$/gm)) {
    const lines = m[1]!.replace(/\n$/, "").split("\n")
    const start = text.slice(0, m.index).split("\n").length + 1
    for (let i = 0; i < lines.length; i++) {
      const cmd = /^\$ (?:npx )?proxyd (.*)$/.exec(lines[i]!)
      if (cmd === null) continue
      let j = i + 1
      while (j < lines.length && !lines[j]!.startsWith("$ ")) j++
      const args = cmd[1]!.split(/\s+/)
      const repoFiles = args.filter((a) => a.endsWith(".rules"))
      const self = repoFiles.length > 0 && repoFiles.every((f) => existsSync(new URL(`../${f}`, import.meta.url)))
      if (self && !/[|>*]/.test(cmd[1]!)) out.push({ args, expected: lines.slice(i + 1, j), where: `${path}:${start + i}` })
      i = j - 1
    }
  }
  return out
}

describe("console sessions in the docs", () => {
  const all = [...sessions("README.md"), ...sessions("docs/cli.md")]
  it("finds sessions to replay", () => {
    expect(all.length).toBeGreaterThan(5)
  })
  for (const s of all) {
    it(`${s.where}: proxyd ${s.args.join(" ")}`, () => {
      const r = proxyd(s.args)
      const got = (r.out + r.err).replace(/\n$/, "").split("\n")
      if (s.expected.some((l) => l.trim() === "...")) {
        let k = 0
        for (const line of s.expected.filter((l) => l.trim() !== "...")) {
          while (k < got.length && got[k] !== line) k++
          expect(k, `missing or out of order: ${line}`).toBeLessThan(got.length)
          k++
        }
      } else {
        expect(got).toEqual(s.expected)
      }
    })
  }
})
