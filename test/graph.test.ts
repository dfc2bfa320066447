/**
 * `proxyd graph` output is valid Graphviz: every shipped ruleset's graph
 * renders with `dot -Tsvg`.
 *
 * Gotchas: needs Graphviz (`dot`). Without it the test is skipped locally;
 * under CI (`CI=true`) the tests run anyway and a missing `dot` fails them,
 * so CI cannot pass by skipping them (.ci/run installs graphviz).
 */
import { spawnSync } from "node:child_process"
import { readdirSync } from "node:fs"
import { describe, expect, it } from "vitest"
import { proxyd } from "./proxyd.ts"

const hasDot = spawnSync("dot", ["-V"], { encoding: "utf8" }).status === 0
const inCi = (process.env["CI"] ?? "") !== "" && process.env["CI"] !== "false"
const files = readdirSync(new URL("../rulesets", import.meta.url)).filter((f) => f.endsWith(".rules")).sort()

describe("proxyd graph renders with Graphviz", () => {
  for (const file of files) {
    it.runIf(hasDot || inCi)(`${file}: dot -Tsvg accepts the graph`, () => {
      const g = proxyd(["graph", `rulesets/${file}`])
      expect(g.code).toBe(0)
      const svg = spawnSync("dot", ["-Tsvg"], { input: g.out, encoding: "utf8", timeout: 60_000 })
      expect(svg.error, "`dot` (graphviz) must be installed under CI").toBeUndefined()
      expect(svg.stderr).toBe("")
      expect(svg.status).toBe(0)
      expect(svg.stdout).toContain("<svg")
    })
  }
})
