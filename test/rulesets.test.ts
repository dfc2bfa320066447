/**
 * Every file in rulesets/ checks cleanly with `proxyd check`: no errors, all
 * its tests pass, every rule is reached by a test. This is how CI checks the
 * shipped rulesets.
 */
import { readdirSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { proxyd } from "./proxyd.ts"

const files = readdirSync(new URL("../rulesets", import.meta.url)).filter((f) => f.endsWith(".rules")).sort()

describe("rulesets/", () => {
  it("holds the documented rulesets", () => {
    expect(files).toEqual(expect.arrayContaining([
      "adblock.rules", "corporate-egress.rules", "default.rules", "geo-routing.rules", "local-dev.rules", "privacy-tor.rules",
    ]))
  })

  for (const file of files) {
    it(`${file}: proxyd check exits 0 and every test passes`, () => {
      const r = proxyd(["check", "--format", "json", `rulesets/${file}`])
      expect(r.err).toBe("")
      expect(r.code).toBe(0)
      const doc = JSON.parse(r.out)
      expect(doc.diagnostics.filter((d: { severity: string }) => d.severity === "error")).toEqual([])
      expect(doc.tests.failed).toBe(0)
      expect(doc.tests.passed).toBeGreaterThan(0)
      expect(doc.uncovered).toEqual([])
    })
  }

  it("every ruleset is in canonical layout (proxyd fmt --check)", () => {
    const r = proxyd(["fmt", "--check", ...files.map((f) => `rulesets/${f}`)])
    expect(r.out).toBe("")
    expect(r.code).toBe(0)
  })

  it("default.rules: human summary line", () => {
    const r = proxyd(["check", "rulesets/default.rules"])
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/^rulesets\/default\.rules: ok, \d+ tests passed, 0 warnings\n$/)
  })
})
