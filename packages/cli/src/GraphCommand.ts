/**
 * `proxyd graph FILE [--policy P]`: the compiled decision graph as Graphviz DOT
 * on stdout (`proxyd graph x.rules | dot -Tsvg > x.svg`).
 *
 * Details: shows names of upstreams, sets and secrets (`env(CORP_PASS)`), never
 * secret values.
 */
import * as Effect from "effect/Effect"
import { Compiler, Graph } from "@proxyd/rules"
import { bool, type FlagSpec, helpText, type Parsed, str, UsageError } from "./Args.ts"
import { checkEntry, renderDiagnostics, summaryLine } from "./CheckCommand.ts"
import { Io } from "./Io.ts"
import { choosePolicy } from "./Policy.ts"

export const graphFlags = {
  policy: { kind: "string", value: "NAME", description: "the policy to draw (default: the file's default policy)" },
  "no-color": { kind: "boolean", description: "no ANSI colours in diagnostics" },
} as const satisfies Record<string, FlagSpec>

export const graphHelp = helpText(
  "proxyd graph FILE [--policy NAME]",
  "Prints a policy's compiled decision graph as Graphviz DOT.",
  graphFlags,
  "Example: proxyd graph rulesets/default.rules | dot -Tsvg > default.svg\nExit status: 0 ok, 1 the file has errors, 2 usage or I/O errors.",
)

export const runGraph = (args: Parsed) => Effect.gen(function*() {
  const io = yield* Io
  const [file, ...rest] = args.positionals
  if (file === undefined) return yield* new UsageError({ message: "graph needs a FILE", command: "graph" })
  if (rest.length > 0) return yield* new UsageError({ message: `unexpected argument \`${rest[0]}\``, command: "graph" })
  const report = checkEntry(io, file, { runTests: false })
  if (report.program === undefined) {
    io.err(renderDiagnostics(report, io.color && !bool(args, "no-color")))
    io.err(`${summaryLine(report)}\n`)
    return report.ioError ? 2 : 1
  }
  const chosen = choosePolicy(report.program, str(args, "policy"), undefined)
  if (!chosen.ok) return yield* new UsageError({ message: chosen.message, command: "graph" })
  io.out(Graph.toDot(Compiler.compile(report.program.policies.get(chosen.name)!)))
  return 0
})
