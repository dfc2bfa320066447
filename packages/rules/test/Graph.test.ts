import { spawnSync } from "node:child_process"
import { describe, expect, it } from "vitest"
import { compile } from "../src/Compiler.ts"
import { toDot } from "../src/Graph.ts"
import type { Cidr, Cond, Matcher, PolicyIR, RuleIR } from "../src/Ir.ts"
import { parseCidr } from "../src/Ip.ts"
import * as Random from "../src/Random.ts"

const m = (matcher: Matcher): Cond => ({ k: "match", m: matcher })
const cidr = (t: string): Cidr => { const r = parseCidr(t); if (!r.ok) throw new Error(r.message); return r.cidr }
const rule = (name: string, cond: Cond, kind: RuleIR["kind"] = "rule", action: RuleIR["action"] = { k: "allow" }): RuleIR => ({ name, kind, cond, action, modifiers: [] })

/** Splits DOT into statements, honouring quoted strings; checks braces balance and that every edge's ends are declared nodes. */
const structure = (text: string): { nodes: Set<string>; edges: Array<[string, string]> } => {
  const statements: string[] = []
  let depth = 0
  let cur = ""
  for (let i = 0; i < text.length; i++) {
    const ch = text[i]
    if (ch === '"') {
      let j = i + 1
      while (j < text.length && text[j] !== '"') j += text[j] === "\\" ? 2 : 1
      if (j >= text.length) throw new Error("unterminated string")
      cur += "STR"
      i = j
    } else if (ch === "{") {
      depth++
      cur = ""
    } else if (ch === "}") {
      depth--
      if (depth < 0) throw new Error("unbalanced }")
    } else if (ch === ";") {
      statements.push(cur.trim())
      cur = ""
    } else cur += ch
  }
  if (depth !== 0) throw new Error("unbalanced {")
  const nodes = new Set<string>()
  const edges: Array<[string, string]> = []
  for (const st of statements) {
    const edge = /^(\w+)\s*->\s*(\w+)(\s*\[.*\])?$/.exec(st)
    if (edge !== null) edges.push([edge[1], edge[2]])
    else if (!/^\w+\s*=\s*\w+$/.test(st)) {
      const node = /^(\w+)\s*(\[.*\])?$/.exec(st)
      if (node === null) throw new Error(`not a statement: ${st}`)
      if (!["node", "edge", "graph"].includes(node[1])) nodes.add(node[1])
    }
  }
  return { nodes, edges }
}

const hasDot = spawnSync("dot", ["-V"]).status === 0

describe("Graph.toDot", () => {
  const p: PolicyIR = {
    name: "main \"quoted\"",
    guards: [rule("no-cn", m({ kind: "country", field: "src.country", values: ["CN"] }), "guard", { k: "block", message: "geo \\ \"blocked\"" })],
    rules: [
      rule("ads", m({ kind: "domain", field: "dst.domain", patterns: [{ t: "suffix", d: "ads.example" }, { t: "glob", g: "ads.*" }] }), "rule", { k: "block" }),
      rule("lan-ssh", { k: "and", items: [m({ kind: "ip", field: "dst.ip", cidrs: [cidr("10.0.0.0/8"), cidr("fd00::/8")] }), m({ kind: "port", field: "dst.port", ranges: [[22, 22]] })] }),
      rule("not-alice", { k: "not", c: m({ kind: "string", field: "user", patterns: [{ t: "exact", s: "alice" }] }) }, "rule", { k: "via", target: "up", targetKind: "upstream", else: { k: "block" } }),
    ],
    default: rule("default", { k: "true" }, "default", { k: "tor", target: "tor" }),
  }

  it("emits a well-formed digraph: index → key → rule → residual → action", () => {
    const text = toDot(compile(p))
    expect(text.startsWith("digraph ")).toBe(true)
    const { nodes, edges } = structure(text)
    for (const [a, b] of edges) {
      expect(nodes.has(a), `edge source ${a} declared`).toBe(true)
      expect(nodes.has(b), `edge target ${b} declared`).toBe(true)
    }
    for (const r of ["r0", "r1", "r2", "r3", "always", "default"]) expect(nodes.has(r), r).toBe(true)
    // lan-ssh is triggered by the port (cheaper than dst.ip), its residual is the dst.ip test.
    expect(text).toContain('label="#2 rule lan-ssh"')
    expect(text).toContain('label="dst.ip in [10.0.0.0/8, fd00::/8]", shape=diamond')
    expect(text).toContain('label=".ads.example", shape=ellipse')
    expect(text).toContain('always -> r3;')
    // Quotes and backslashes in labels are escaped: unescaping gives the action text back.
    const labels = [...text.matchAll(/label="((?:[^"\\]|\\.)*)"/g)].map((x) => x[1].replace(/\\(.)/g, "$1"))
    expect(labels).toContain(`block ${JSON.stringify('geo \\ "blocked"')}`)
  })

  it("stays well-formed on random policies", () => {
    const r = Random.rng(99)
    for (let i = 0; i < 200; i++) {
      const text = toDot(compile(Random.randomPolicy(r, { maxGuards: 3, maxRules: 20 })))
      const { nodes, edges } = structure(text)
      for (const [a, b] of edges) expect(nodes.has(a) && nodes.has(b), `${a} -> ${b}`).toBe(true)
    }
  })

  it("is accepted by Graphviz when `dot` is installed", () => {
    const texts = [toDot(compile(p)), toDot(compile(Random.randomPolicy(Random.rng(1), { maxRules: 30 })))]
    for (const text of texts) {
      if (!hasDot) {
        // Graphviz is optional; the structural check above always runs.
        expect(structure(text).nodes.size).toBeGreaterThan(0)
        continue
      }
      const res = spawnSync("dot", ["-Tsvg"], { input: text })
      expect(res.stderr.toString()).toBe("")
      expect(res.status).toBe(0)
    }
  })
})
