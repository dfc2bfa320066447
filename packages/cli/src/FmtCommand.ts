/**
 * `proxyd fmt FILE... [--check] [--write]`: one canonical layout.
 *
 * Details: with one file and no flag, prints the formatted text to stdout.
 * `--check` lists the files that would change and exits 1 when there is one;
 * `--write` rewrites the files that change. A file that does not parse is
 * reported with its diagnostics (exit 1) and never rewritten.
 */
import * as Effect from "effect/Effect"
import { Diagnostic, Format } from "@proxyd/rules"
import { bool, type FlagSpec, helpText, type Parsed, UsageError } from "./Args.ts"
import { Io } from "./Io.ts"
import { renderDiagnostics } from "./CheckCommand.ts"

export const fmtFlags = {
  check: { kind: "boolean", description: "list files whose layout would change; exit 1 if any" },
  write: { kind: "boolean", description: "rewrite files in place" },
  "no-color": { kind: "boolean", description: "no ANSI colours in diagnostics" },
} as const satisfies Record<string, FlagSpec>

export const fmtHelp = helpText(
  "proxyd fmt FILE... [--check] [--write]",
  "Formats rules files in the canonical layout (comments kept, idempotent).\nWith one file and no option, prints the result to stdout.",
  fmtFlags,
  "Exit status: 0 ok, 1 a file would change (--check) or does not parse, 2 usage or I/O errors.",
)

export const runFmt = (args: Parsed) => Effect.gen(function*() {
  const io = yield* Io
  const files = args.positionals
  const check = bool(args, "check")
  const write = bool(args, "write")
  if (files.length === 0) return yield* new UsageError({ message: "fmt needs at least one FILE", command: "fmt" })
  if (check && write) return yield* new UsageError({ message: "--check and --write exclude each other", command: "fmt" })
  if (!check && !write && files.length > 1) return yield* new UsageError({ message: "with several files, give --check or --write", command: "fmt" })
  const color = io.color && !bool(args, "no-color")
  let code = 0
  for (const file of files) {
    const read = io.readFile(file)
    if (!read.ok) {
      io.err(`${file}:1:1: error[E001]: cannot read \`${file}\`: ${read.message}\n`)
      code = 2
      continue
    }
    const r = Format.format(read.text, file)
    if (!r.ok) {
      const ds: ReadonlyArray<Diagnostic.Diagnostic> = r.diagnostics
      io.err(renderDiagnostics({ file, program: undefined, diagnostics: ds, sources: new Map([[file, read.text]]), ioError: false, tests: undefined }, color))
      code = Math.max(code, 1)
      continue
    }
    if (check) {
      if (r.text !== read.text) {
        io.out(`${file}\n`)
        code = Math.max(code, 1)
      }
    } else if (write) {
      if (r.text !== read.text) {
        const w = io.writeFile(file, r.text)
        if (!w.ok) {
          io.err(`${file}:1:1: error[E002]: cannot write \`${file}\`: ${w.message}\n`)
          code = 2
          continue
        }
        io.out(`formatted ${file}\n`)
      }
    } else {
      io.out(r.text)
    }
  }
  return code
})
