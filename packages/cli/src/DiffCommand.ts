/**
 * `proxyd diff OLD NEW [--policy P] [--format json]`: concrete requests whose
 * outcome changes between two versions of a rules file.
 *
 * Details: one line per witness request, e.g.
 * `connect ads.example:443: allow by default → block "ad" by ads`; or
 * `no differences`. The search is bounded (`--limit`, default 50), so "no
 * differences" means none was found, with the coverage `Diff.diffPolicies`
 * documents. Exit: 0 whenever the comparison ran (with or without
 * differences), 1 a file has errors, 2 usage or I/O errors.
 */
import * as Effect from "effect/Effect"
import { Analysis, Diff, Explain, type Ir, TestRunner } from "@proxyd/rules"
import { bool, type FlagSpec, helpText, type Parsed, str, UsageError } from "./Args.ts"
import { checkEntry, renderDiagnostics, summaryLine } from "./CheckCommand.ts"
import { Io } from "./Io.ts"
import { choosePolicy } from "./Policy.ts"

export const diffFlags = {
  policy: { kind: "string", value: "NAME", description: "compare this policy (default: each file's default policy)" },
  limit: { kind: "string", value: "N", description: "report at most N requests (default 50)" },
  format: { kind: "string", value: "human|json", choices: ["human", "json"], description: "output format (default human)" },
  "no-color": { kind: "boolean", description: "no ANSI colours in diagnostics" },
} as const satisfies Record<string, FlagSpec>

export const diffHelp = helpText(
  "proxyd diff OLD NEW [--policy NAME] [--limit N] [--format human|json]",
  "Lists requests whose decision differs between two versions of a rules file,\none line each: the request, the old decision, the new decision.",
  diffFlags,
  "Exit status: 0 compared (also when there are differences), 1 a file has errors, 2 usage or I/O errors.",
)

export const runDiff = (args: Parsed) => Effect.gen(function*() {
  const io = yield* Io
  const [oldFile, newFile, ...rest] = args.positionals
  if (oldFile === undefined || newFile === undefined) return yield* new UsageError({ message: "diff needs OLD and NEW files", command: "diff" })
  if (rest.length > 0) return yield* new UsageError({ message: `unexpected argument \`${rest[0]}\``, command: "diff" })
  const limitText = str(args, "limit") ?? "50"
  if (!/^[1-9]\d{0,5}$/.test(limitText)) return yield* new UsageError({ message: `--limit must be a positive integer, not \`${limitText}\``, command: "diff" })
  const color = io.color && !bool(args, "no-color")
  const reports = [checkEntry(io, oldFile, { runTests: false }), checkEntry(io, newFile, { runTests: false })]
  let failed = 0
  for (const r of reports) {
    if (r.program !== undefined) continue
    io.err(renderDiagnostics(r, color))
    io.err(`${summaryLine(r)}\n`)
    failed = Math.max(failed, r.ioError ? 2 : 1)
  }
  if (failed !== 0) return failed
  const policies: Ir.PolicyIR[] = []
  for (const r of reports) {
    const chosen = choosePolicy(r.program!, str(args, "policy"), undefined)
    if (!chosen.ok) return yield* new UsageError({ message: `${r.file}: ${chosen.message}`, command: "diff" })
    policies.push(r.program!.policies.get(chosen.name)!)
  }
  const [before, after] = policies as [Ir.PolicyIR, Ir.PolicyIR]
  const entries = Diff.diffPolicies(before, after, Number(limitText))
  if (str(args, "format") === "json") {
    io.out(`${JSON.stringify({
      old: { file: oldFile, policy: before.name },
      new: { file: newFile, policy: after.name },
      differences: entries.map((e) => ({
        request: Explain.requestText(e.request),
        test: Analysis.formatRequest(e.request),
        before: { outcome: TestRunner.formatAction(e.before.action), rule: e.before.rule },
        after: { outcome: TestRunner.formatAction(e.after.action), rule: e.after.rule },
      })),
    }, null, 2)}\n`)
    return 0
  }
  if (entries.length === 0) {
    io.out("no differences\n")
    return 0
  }
  for (const e of entries) io.out(`${Explain.requestText(e.request)}: ${TestRunner.formatDecision(e.before)} → ${TestRunner.formatDecision(e.after)}\n`)
  io.out(`${entries.length} ${entries.length === 1 ? "difference" : "differences"}\n`)
  return 0
})
