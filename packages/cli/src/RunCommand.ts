/**
 * `proxyd run --rules FILE` (also `proxyd --rules FILE`): serve the rules.
 *
 * Details: the serving runtime does not exist yet. For now this checks the
 * file exactly like `proxyd check` (tests included); when it does not check,
 * prints the diagnostics and exits 1; when it does, prints the listeners it
 * would open and exits 3 ("not yet implemented"). It never pretends to serve.
 */
import * as Effect from "effect/Effect"
import { bool, type FlagSpec, helpText, type Parsed, str, UsageError } from "./Args.ts"
import { checkEntry, exitCode, renderDiagnostics, summaryLine } from "./CheckCommand.ts"
import { Io } from "./Io.ts"

export const runFlags = {
  rules: { kind: "string", value: "FILE", description: "the rules file to serve" },
  "no-color": { kind: "boolean", description: "no ANSI colours in diagnostics" },
} as const satisfies Record<string, FlagSpec>

export const runHelp = helpText(
  "proxyd run --rules FILE   (or: proxyd --rules FILE)",
  "Serves a rules file. NOT YET IMPLEMENTED: the serving runtime is a separate piece of work.\nFor now: checks the file, lists the listeners it would open, and exits 3.",
  runFlags,
  "Exit status: 1 the file has errors or failing tests, 2 usage or I/O errors, 3 serving not yet implemented.",
)

/** Exit status of `run` when the file checks: serving is not implemented yet. */
export const NOT_IMPLEMENTED = 3

export const runRun = (args: Parsed) => Effect.gen(function*() {
  const io = yield* Io
  const file = str(args, "rules")
  if (file === undefined) return yield* new UsageError({ message: "run needs --rules FILE", command: "run" })
  if (args.positionals.length > 0) return yield* new UsageError({ message: `unexpected argument \`${args.positionals[0]}\``, command: "run" })
  const report = checkEntry(io, file)
  const code = exitCode([report])
  const color = io.color && !bool(args, "no-color")
  if (code !== 0 || report.program === undefined) {
    io.err(renderDiagnostics(report, color))
    io.err(`${summaryLine(report)}\n`)
    return code === 0 ? 1 : code
  }
  io.err(renderDiagnostics(report, color))
  io.out(`${summaryLine(report)}\n`)
  for (const l of report.program.listeners) {
    const addr = l.host.includes(":") ? `[${l.host}]:${l.port}` : `${l.host}:${l.port}`
    const auth = l.auth === undefined ? "no auth" : `auth ${l.auth.source}${l.auth.required ? "" : " (optional)"}`
    io.out(`would listen: ${l.kind} ${addr} (listener ${l.name}, policy ${l.policy}, ${auth}${l.tls === undefined ? "" : ", tls"})\n`)
  }
  io.err("proxyd: serving is not implemented yet: it arrives with the runtime. The rules file checks; nothing is listening.\n")
  return NOT_IMPLEMENTED
})
