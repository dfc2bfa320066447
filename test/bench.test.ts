/**
 * CI smoke test of the network benchmark: runs the real harness, `npm run bench:net -- --quick
 * --json`, in a child process and checks what it reports, never how fast.
 *
 * Details: every expected target (direct, proxyd, microsocks, dante, tinyproxy, proxy-chain)
 * is measured or listed as skipped with a reason — under CI=true a skipped one fails (.ci/run
 * installs the Debian peers, `npm ci` installs proxy-chain); the harness reports no failures
 * and exits 0; every bulk result's byte count is verified (any `verified`/`…BytesVerified`
 * flag anywhere in the report is true, and each measured target has at least one).
 * Gotchas: the assertions read only a few fields (`skipped`, `failures`, the target names, the
 * verified flags) so new measurements in the report do not break it; speed lives in the
 * benchmark, not here. The quick run takes about a minute on the 2-core machine, longer while
 * other test files run beside it, hence the generous timeouts.
 */
import { execFile } from "node:child_process"
import { describe, expect, it } from "vitest"
import { ROOT } from "./proxyd.ts"
import { cleanEnv } from "./spawn.ts"

const EXPECTED = ["direct", "proxyd", "proxyd-workers", "microsocks", "dante", "tinyproxy", "proxy-chain"]
const TIMEOUT_MS = 240_000

interface Outcome { readonly code: number | null; readonly stdout: string; readonly stderr: string }

const runHarness = (): Promise<Outcome> =>
  new Promise((resolve) => {
    const child = execFile("npm", ["run", "-s", "bench:net", "--", "--quick", "--json"], { cwd: ROOT, env: cleanEnv(), timeout: TIMEOUT_MS, killSignal: "SIGKILL", maxBuffer: 64 << 20 }, (err, stdout, stderr) => {
      resolve({ code: err === null ? 0 : typeof err.code === "number" ? err.code : null, stdout, stderr })
    })
    child.stdin?.end()
  })

/** Every object in `v` (depth-first), with the path to it, for flags whose place in the report may move. */
const objects = (v: unknown, path = "$"): Array<{ path: string; o: Record<string, unknown> }> => {
  if (Array.isArray(v)) return v.flatMap((x, i) => objects(x, `${path}[${i}]`))
  if (v === null || typeof v !== "object") return []
  const o = v as Record<string, unknown>
  return [{ path, o }, ...Object.entries(o).flatMap(([k, x]) => objects(x, `${path}.${k}`))]
}

/** What is wrong with a `--json` report (empty when all is well); `ci` makes a skipped peer a problem. */
const problems = (report: Record<string, unknown>, ci: boolean): Array<string> => {
  const out: Array<string> = []
  const failures = report["failures"]
  if (!Array.isArray(failures)) out.push("report.failures is not a list")
  else for (const f of failures) out.push(`failure: ${typeof f === "string" ? f : JSON.stringify(f)}`)
  const skipped = report["skipped"]
  if (!Array.isArray(skipped)) out.push("report.skipped is not a list")
  const skippedText = (Array.isArray(skipped) ? skipped : []).map((s: unknown) => (typeof s === "string" ? s : JSON.stringify(s)))

  // The measured targets: the report's `targets` list where it has one, else the rows' names.
  const rowNames = objects(report).flatMap(({ o }) => (typeof o["target"] === "string" ? [o["target"]] : []))
  const measured = new Set<string>(Array.isArray(report["targets"]) ? (report["targets"] as Array<unknown>).filter((x): x is string => typeof x === "string") : rowNames)
  for (const name of EXPECTED) {
    if (measured.has(name)) continue
    const why = skippedText.find((s) => s === name || s.startsWith(`${name} `) || s.startsWith(`${name}:`))
    if (why === undefined) out.push(`${name} is neither measured nor listed as skipped`)
    else if (why.slice(name.length).replace(/[\s():]/g, "").length === 0) out.push(`${name} is skipped without a reason`)
    else if (name === "direct" || name === "proxyd" || name === "proxyd-workers") out.push(`${name} must always be measured: ${why}`)
    else if (ci) out.push(`${name} was skipped under CI=true (.ci/run and npm ci must install it): ${why}`)
  }

  // Byte counts: every verified flag of a target's row is true (not false, not null for "no
  // run"), and every measured target but the rate-only proxyd-100k and proxyd-http has one.
  const flags = objects(report).flatMap(({ path, o }) =>
    Object.entries(o).filter(([k, v]) => /verified$/i.test(k) && (typeof v === "boolean" || (v === null && typeof o["target"] === "string"))).map(([k, v]) => ({ where: `${path}.${k}`, target: o["target"], ok: v === true })))
  for (const f of flags) if (!f.ok) out.push(`bulk byte count not verified: ${f.where} (${String(f.target)})`)
  for (const name of measured) {
    if (name === "proxyd-100k" || name === "proxyd-http") continue // connection-rate rows only
    if (!flags.some((f) => f.target === name && f.ok)) out.push(`${name}: no bulk result with a verified byte count`)
  }
  return out
}

describe("npm run bench:net -- --quick --json", () => {
  it("flags what is wrong in a report (the checker itself, on made-up reports)", () => {
    const row = (target: string, verified: boolean | null) => ({ target, mibps: { median: 1 }, verified })
    const good = { targets: [...EXPECTED], results: { bulkUp: EXPECTED.map((t) => row(t, true)), bulkDown: EXPECTED.map((t) => row(t, true)), extra: { any: 1 } }, skipped: ["proxyd-100k (--quick)"], failures: [] }
    expect(problems(good, true)).toEqual([])
    const noDante = { ...good, targets: EXPECTED.filter((t) => t !== "dante"), results: { bulkUp: EXPECTED.filter((t) => t !== "dante").map((t) => row(t, true)) } }
    expect(problems(noDante, false)).toEqual(["dante is neither measured nor listed as skipped"])
    expect(problems({ ...noDante, skipped: ["dante (not installed: apt-get install dante-server)"] }, false)).toEqual([])
    expect(problems({ ...noDante, skipped: ["dante (not installed: apt-get install dante-server)"] }, true)).toEqual(["dante was skipped under CI=true (.ci/run and npm ci must install it): dante (not installed: apt-get install dante-server)"])
    expect(problems({ ...good, results: { bulkDown: [row("tinyproxy", false), row("proxyd", null)] } }, false)).toEqual([
      "bulk byte count not verified: $.results.bulkDown[0].verified (tinyproxy)",
      "bulk byte count not verified: $.results.bulkDown[1].verified (proxyd)",
      ...EXPECTED.map((t) => `${t}: no bulk result with a verified byte count`),
    ])
    expect(problems({ ...good, failures: ["dante bulk: reset"] }, false)).toEqual(["failure: dante bulk: reset"])
    expect(problems({ targets: EXPECTED }, false).slice(0, 2)).toEqual(["report.failures is not a list", "report.skipped is not a list"])
  })

  it("measures every target (or says why not), verifies every bulk byte count, reports no failure", async () => {
    const r = await runHarness()
    const line = r.stdout.trim().split("\n").reverse().find((l) => l.startsWith("{"))
    expect(line, `no JSON line on stdout (exit ${r.code}); stderr tail:\n${r.stderr.slice(-2000)}`).toBeDefined()
    const report = JSON.parse(line!) as Record<string, unknown>
    expect(problems(report, process.env["CI"] === "true")).toEqual([])
    // proxyd targets ran the bundle the installed package runs (built by the harness)
    expect((report["config"] as { proxydFrom?: unknown } | undefined)?.proxydFrom).toBe("bundle")
    expect(r.code, `exit status; stderr tail:\n${r.stderr.slice(-2000)}`).toBe(0)
  }, TIMEOUT_MS + 30_000)
})
