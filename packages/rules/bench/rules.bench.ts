/**
 * Rules engine benchmark: compile time, heap of the compiled policy, decision
 * time of the compiled evaluator (p50/p99) and of the reference interpreter,
 * for generated policies of 1k, 10k and 100k rules.
 *
 * Usage: `npm run bench:rules [-- --json] [-- --sizes 1000,10000]`.
 * Re-runs itself with `--expose-gc` when needed (heap measurement).
 *
 * Details: see `generate.ts` for the policies and requests. Heap is measured
 * after `compile`, after the warm-up (rule closures are compiled on first use)
 * and with every rule's closure compiled (the worst case). Each request is timed over a batch of repetitions with
 * `process.hrtime.bigint()`; p50/p99 are over distinct requests.
 */
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"
import { compile, testAt } from "../src/Compiler.ts"
import { evaluate } from "../src/Evaluator.ts"
import { evaluateReference } from "../src/Reference.ts"
import { generate, requests } from "./generate.ts"

const gc = (globalThis as { gc?: () => void }).gc
if (gc === undefined) {
  const res = spawnSync(process.execPath, ["--expose-gc", ...process.execArgv, fileURLToPath(import.meta.url), ...process.argv.slice(2)], { stdio: "inherit" })
  process.exit(res.status ?? 1)
}

const args = process.argv.slice(2)
const json = args.includes("--json")
const sizesAt = args.indexOf("--sizes")
const sizes = sizesAt >= 0 ? args[sizesAt + 1].split(",").map(Number) : [1000, 10_000, 100_000]

// ---------------------------------------------------------------------------
// Measurement
// ---------------------------------------------------------------------------

const now = () => process.hrtime.bigint()
const quantile = (xs: number[], q: number): number => {
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.floor(q * s.length))]
}
const round = (x: number, digits = 2) => Number(x.toFixed(digits))

interface Row {
  rules: number
  compileMs: number
  compileCpuMs: number
  heapMB: number
  heapUsedMB: number
  heapAllMB: number
  p50us: number
  p99us: number
  p99rawUs: number
  meanUs: number
  refP50us: number
  refSamples: number
  speedup: number
  defaultShare: number
}

const REPS = 10
const PASSES = 3

const measure = (size: number): Row => {
  const { policy, pools } = generate(size, 1234 + size)
  const reqs = requests(pools, 20_000, 99 + size)
  compile(generate(200, 1).policy) // warm the compiler's code
  gc!()
  gc!()
  const before = process.memoryUsage().heapUsed
  const cpu0 = process.cpuUsage()
  const t0 = now()
  const compiled = compile(policy)
  const compileMs = Number(now() - t0) / 1e6
  const cpu = process.cpuUsage(cpu0)
  gc!()
  gc!()
  const heapMB = (process.memoryUsage().heapUsed - before) / 2 ** 20

  const NEED = { missing: "need" } as const
  let sink = 0
  let defaults = 0
  for (const q of reqs) {
    const out = evaluate(compiled, q, NEED)
    if (out.type === "decision" && out.decision.ruleKind === "default") defaults++
  }
  for (let round = 0; round < 3; round++) for (const q of reqs) sink += evaluate(compiled, q, NEED).type.length // warm-up
  gc!()
  gc!()
  // Closures are compiled when a rule is first a candidate: the heap after the warm-up includes those.
  const heapUsedMB = (process.memoryUsage().heapUsed - before) / 2 ** 20
  // Per request: the mean of REPS back-to-back calls; PASSES passes over all requests.
  const best = new Array<number>(reqs.length).fill(Infinity)
  const raw: number[] = []
  let total = 0n
  for (let pass = 0; pass < PASSES; pass++) {
    for (let i = 0; i < reqs.length; i++) {
      const q = reqs[i]
      const a = now()
      for (let k = 0; k < REPS; k++) sink += evaluate(compiled, q, NEED).type.length
      const d = now() - a
      const us = Number(d) / REPS / 1000
      if (pass === 0) {
        raw.push(us)
        total += d
      }
      if (us < best[i]) best[i] = us
    }
  }
  const refSamples = size >= 100_000 ? 200 : size >= 10_000 ? 1000 : 3000
  const refTimes: number[] = []
  for (let i = 0; i < refSamples; i++) {
    const q = reqs[i]
    const a = now()
    sink += evaluateReference(policy, q, NEED).type.length
    refTimes.push(Number(now() - a) / 1000)
  }
  if (sink === 0) throw new Error("unreachable")
  // Worst case: every rule has been a candidate once.
  for (let pos = 0; pos < compiled.ordered.length; pos++) testAt(compiled, pos)
  gc!()
  gc!()
  const heapAllMB = (process.memoryUsage().heapUsed - before) / 2 ** 20
  // Keep the IR and the requests (in the baseline) and the compiled policy alive up to here.
  if (policy.rules.length + reqs.length + pools.domains.length + compiled.ordered.length < 0) throw new Error("unreachable")
  const p50 = quantile(best, 0.5)
  const refP50 = quantile(refTimes, 0.5)
  return {
    rules: size,
    compileMs: round(compileMs, 0),
    compileCpuMs: round((cpu.user + cpu.system) / 1000, 0),
    heapMB: round(heapMB, 1),
    heapUsedMB: round(heapUsedMB, 1),
    heapAllMB: round(heapAllMB, 1),
    p50us: round(p50, 2),
    p99us: round(quantile(best, 0.99), 2),
    p99rawUs: round(quantile(raw, 0.99), 2),
    meanUs: round(Number(total) / reqs.length / REPS / 1000, 2),
    refP50us: round(refP50, 0),
    refSamples,
    speedup: Math.round(refP50 / p50),
    defaultShare: round(defaults / reqs.length, 3),
  }
}

const rows = sizes.map(measure)
const machine = { node: process.version, cpus: (await import("node:os")).cpus().length, cpu: (await import("node:os")).cpus()[0]?.model ?? "unknown" }
if (json) console.log(JSON.stringify({ machine, rows }))
else {
  console.log(`node ${machine.node}, ${machine.cpus} cores (${machine.cpu})`)
  const head = ["rules", "compile ms (cpu)", "heap MB: compiled/used/all", "p50 µs", "p99 µs", "p99 raw µs", "mean µs", "ref p50 µs", "speed-up", "default"]
  const cells = rows.map((r) => [r.rules, `${r.compileMs} (${r.compileCpuMs})`, `${r.heapMB}/${r.heapUsedMB}/${r.heapAllMB}`, r.p50us, r.p99us, r.p99rawUs, r.meanUs, `${r.refP50us} (n=${r.refSamples})`, `${r.speedup}×`, `${Math.round(r.defaultShare * 100)}%`].map(String))
  const widths = head.map((h, i) => Math.max(h.length, ...cells.map((c) => c[i].length)))
  const line = (xs: string[]) => xs.map((x, i) => x.padStart(widths[i])).join("  ")
  console.log(line(head))
  for (const c of cells) console.log(line(c))
}
