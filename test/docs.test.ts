/**
 * The examples in docs/language.md are true: every ```rules block is a
 * complete file that checks without errors, and its tests pass.
 */
import { readFileSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { Check, Render, TestRunner } from "@proxyd/rules"

const doc = readFileSync(new URL("../docs/language.md", import.meta.url), "utf8")
const blocks = [...doc.matchAll(/^```rules\n([\s\S]*?)^```$/gm)].map((m, i) => ({
  text: m[1]!,
  line: doc.slice(0, m.index).split("\n").length + 1,
  index: i,
}))

// Files the examples name and `check` reads (set files).
const extra = { "docs/lists/ads.txt": "ads.example\n.ads.example\n" }

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
