/**
 * `proxyd check FILE...`: parse, check, analyse and run the tests of each file.
 *
 * Details: per file, in order: read (an unreadable file is `E001` with the OS
 * message, exit 2), parse and check (`Check.checkFiles`), analyse every policy
 * (`Analysis.analyzePolicy`: shadowed, unreachable, overlapping rules), run the
 * `test` blocks (`TestRunner.runTests`: failing tests X001, rules no test
 * reaches X010). `--require-tests` makes a file without tests an error (X002).
 * Output: every diagnostic with its code frame, then one summary line per
 * file; or with `--format json` one JSON document. Exit: 0 clean (warnings
 * allowed), 1 errors or failing tests, 2 usage or I/O errors.
 */
import * as Effect from "effect/Effect"
import { Analysis, Check, Diagnostic, type Extension, type Ir, Render, TestRunner } from "@proxyd/rules"
import { Registry } from "@proxyd/runtime"
import { builtins } from "./Plugins.ts"
import { bool, type FlagSpec, helpText, type Parsed, str } from "./Args.ts"
import { Io, type IoShape } from "./Io.ts"

export const checkFlags = {
  format: { kind: "string", value: "human|json", choices: ["human", "json"], description: "output format (default human)" },
  "require-tests": { kind: "boolean", description: "a file without `test` blocks is an error (X002)" },
  "no-color": { kind: "boolean", description: "no ANSI colours (also when NO_COLOR is set or output is not a terminal)" },
} as const satisfies Record<string, FlagSpec>

export const checkHelp = helpText(
  "proxyd check FILE... [--format human|json] [--require-tests] [--no-color]",
  "Checks rules files: syntax, names, types, shadowed rules, and runs their `test` blocks.",
  checkFlags,
  "Exit status: 0 clean (warnings allowed), 1 errors or failing tests, 2 usage or I/O errors.",
)

export interface FileReport {
  readonly file: string
  readonly program: Ir.Program | undefined
  readonly diagnostics: ReadonlyArray<Diagnostic.Diagnostic>
  readonly sources: ReadonlyMap<string, string>
  /** The entry could not be read. */
  readonly ioError: boolean
  readonly tests: TestRunner.TestRun | undefined
  /** The analysis lints ran (see `EntryOptions.analyze`). */
  readonly analyzed?: boolean
}

const plural = (n: number, word: string): string => `${n} ${word}${n === 1 ? "" : "s"}`

/** Checks one entry file completely (also used by `run` and `explain`). */
/** The built-in plugins' vocabularies (used when a command has not loaded the file's plugins). */
const BUILTIN_PLUGINS: Extension.CheckOptions = Registry.checkOptions(builtins)

/** The vocabularies of the built-in plugins and of the plugins `file` names (imported, never started). */
export const pluginOptions = (file: string): Effect.Effect<Extension.CheckOptions> => Effect.promise(() => Registry.forCheck(file, builtins))

export interface EntryOptions {
  readonly requireTests?: boolean
  readonly runTests?: boolean
  /**
   * Run the analysis lints (L050–L052): always (default), never, or only when
   * the file's policies have at most `maxRules` guards and rules together
   * (`run`: they never refuse a file, so a large policy starts without them).
   */
  readonly analyze?: boolean | { readonly maxRules: number }
  readonly plugins?: Extension.CheckOptions
}

export const checkEntry = (io: IoShape, file: string, opts: EntryOptions = {}): FileReport => {
  const read = io.readFile(file)
  if (!read.ok) {
    const d = Diagnostic.error("E001", `cannot read \`${file}\`: ${read.message}`, Diagnostic.fileSpan(file))
    return { file, program: undefined, diagnostics: [d], sources: new Map(), ioError: true, tests: undefined, analyzed: false }
  }
  // The reader serves the entry's text as read above, so the file is read once.
  const reader: Check.SourceReader = { read: (p) => (p === file ? read.text : io.reader.read(p)), resolve: io.reader.resolve }
  const checked = Check.checkFiles([file], reader, opts.plugins ?? BUILTIN_PLUGINS)
  const diagnostics = [...checked.diagnostics]
  let tests: TestRunner.TestRun | undefined
  let analyzed = false
  const program = checked.program
  if (program !== undefined) {
    const a = opts.analyze ?? true
    analyzed = typeof a === "boolean" ? a : ruleCount(program) <= a.maxRules
    if (analyzed) for (const policy of program.policies.values()) diagnostics.push(...Analysis.analyzePolicy(policy))
    if (opts.runTests !== false) {
      tests = TestRunner.runTests(program)
      diagnostics.push(...tests.diagnostics)
    }
    if (opts.requireTests === true && program.tests.length === 0) {
      diagnostics.push(Diagnostic.error("X002", "the file declares no `test` blocks (--require-tests)", Diagnostic.fileSpan(file), {
        hint: 'add `test "name" { connect example.com:443 } expect allow` blocks',
      }))
    }
  }
  diagnostics.sort(Check.compareDiagnostics)
  return { file, program, diagnostics, sources: checked.sources, ioError: false, tests, analyzed }
}

/** Guards and rules over every policy of the program. */
export const ruleCount = (program: Ir.Program): number => {
  let n = 0
  for (const p of program.policies.values()) n += p.guards.length + p.rules.length
  return n
}

const countTests = (r: FileReport): { passed: number; failed: number } => {
  const results = r.tests?.results ?? []
  const passed = results.filter((t) => t.passed).length
  return { passed, failed: results.length - passed }
}

/** `rulesets/default.rules: ok, 12 tests passed, 0 warnings` */
export const summaryLine = (r: FileReport): string => {
  const errors = r.diagnostics.filter((d) => d.severity === "error").length
  const warnings = r.diagnostics.length - errors
  if (r.ioError) return `${r.file}: not read`
  const { passed, failed } = countTests(r)
  const tests = `${plural(passed, "test")} passed${failed > 0 ? `, ${failed} failed` : ""}`
  const head = errors === 0 ? "ok" : plural(errors, "error")
  return `${r.file}: ${head}, ${r.program === undefined ? "tests not run" : tests}, ${plural(warnings, "warning")}`
}

/** 0 clean, 1 errors or failing tests, 2 I/O errors. */
export const exitCode = (reports: ReadonlyArray<FileReport>): number =>
  reports.some((r) => r.ioError) ? 2 : reports.some((r) => Diagnostic.hasErrors(r.diagnostics) || countTests(r).failed > 0) ? 1 : 0

export const renderDiagnostics = (r: FileReport, color: boolean): string =>
  r.diagnostics.map((d) => `${Render.renderOne(d, r.sources, { color })}\n\n`).join("")

export const jsonReport = (reports: ReadonlyArray<FileReport>): unknown => {
  const totals = reports.map(countTests).reduce((a, b) => ({ passed: a.passed + b.passed, failed: a.failed + b.failed }), { passed: 0, failed: 0 })
  return {
    files: reports.map((r) => ({
      file: r.file,
      ok: !r.ioError && !Diagnostic.hasErrors(r.diagnostics) && countTests(r).failed === 0,
      errors: r.diagnostics.filter((d) => d.severity === "error").length,
      warnings: r.diagnostics.filter((d) => d.severity === "warning").length,
      tests: countTests(r),
    })),
    diagnostics: reports.flatMap((r) => Render.renderJson(r.diagnostics)),
    tests: {
      ...totals,
      results: reports.flatMap((r) => (r.tests?.results ?? []).map((t) => ({
        file: r.file,
        name: t.test.name,
        line: t.test.span.start.line,
        passed: t.passed,
        got: t.decision === undefined ? null : TestRunner.formatDecision(t.decision),
        ...(t.message === undefined ? {} : { message: t.message }),
      }))),
    },
    uncovered: reports.flatMap((r) => (r.tests?.uncovered ?? []).map((u) => ({ file: r.file, policy: u.policy, rules: u.rules }))),
  }
}

export const runCheck = (args: Parsed) => Effect.gen(function*() {
  const io = yield* Io
  const requireTests = bool(args, "require-tests")
  const reports: Array<FileReport> = []
  for (const file of args.positionals) reports.push(checkEntry(io, file, { requireTests, plugins: yield* pluginOptions(file) }))
  if (str(args, "format") === "json") {
    io.out(`${JSON.stringify(jsonReport(reports), null, 2)}\n`)
  } else {
    const color = io.color && !bool(args, "no-color")
    for (const r of reports) io.out(renderDiagnostics(r, color))
    for (const r of reports) io.out(`${summaryLine(r)}\n`)
  }
  return exitCode(reports)
})
