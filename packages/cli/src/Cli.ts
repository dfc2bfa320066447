/**
 * The `proxyd` command line: dispatches argv to a command and returns its exit
 * status.
 *
 * Details: `cli(argv)` is an `Effect<number, never, Io>`; usage errors print
 * `proxyd: <message>` plus a pointer to `--help` on stderr and give 2. Exit
 * statuses: 0 ok, 1 errors in the rules (or failing tests, or changes under
 * `fmt --check`, or a rules file `run` cannot serve), 2 usage or I/O errors.
 */
import * as Effect from "effect/Effect"
import { bool, type FlagSpec, parseArgs, type Parsed, suggest, UsageError } from "./Args.ts"
import { checkFlags, checkHelp, runCheck } from "./CheckCommand.ts"
import { diffFlags, diffHelp, runDiff } from "./DiffCommand.ts"
import { explainFlags, explainHelp, runExplain } from "./ExplainCommand.ts"
import { fmtFlags, fmtHelp, runFmt } from "./FmtCommand.ts"
import { graphFlags, graphHelp, runGraph } from "./GraphCommand.ts"
import { Io } from "./Io.ts"
import { passwdFlags, passwdHelp, runPasswd } from "./PasswdCommand.ts"
import { runFlags, runHelp, runRun } from "./RunCommand.ts"
import { runTor, torFlags, torHelp } from "./TorCommand.ts"
import { VERSION } from "./Version.ts"

interface CommandDef {
  readonly flags: Readonly<Record<string, FlagSpec>>
  readonly help: string
  readonly summary: string
  readonly run: (args: Parsed) => Effect.Effect<number, UsageError, Io>
}

const COMMANDS: Readonly<Record<string, CommandDef>> = {
  check: { flags: checkFlags, help: checkHelp, run: runCheck, summary: "check rules files and run their tests" },
  explain: { flags: explainFlags, help: explainHelp, run: runExplain, summary: "show how a policy decides one request" },
  fmt: { flags: fmtFlags, help: fmtHelp, run: runFmt, summary: "format rules files in the canonical layout" },
  graph: { flags: graphFlags, help: graphHelp, run: runGraph, summary: "print a policy's decision graph as Graphviz DOT" },
  diff: { flags: diffFlags, help: diffHelp, run: runDiff, summary: "requests whose outcome differs between two rules files" },
  run: { flags: runFlags, help: runHelp, run: runRun, summary: "serve a rules file (SOCKS5, SOCKS4/4a, HTTP, mixed listeners)" },
  tor: { flags: torFlags, help: torHelp, run: runTor, summary: "ask a tor endpoint for new circuits (newnym) or its bootstrap status" },
  passwd: { flags: passwdFlags, help: passwdHelp, run: runPasswd, summary: "print an htpasswd line (password read from stdin)" },
}

export const mainHelp = `proxyd ${VERSION}: a policy-driven SOCKS/HTTP proxy and its .rules toolchain.

Usage: proxyd COMMAND [options]
       proxyd --rules FILE          (same as: proxyd run --rules FILE)

Commands:
${Object.entries(COMMANDS).map(([name, c]) => `  ${name.padEnd(8)} ${c.summary}`).join("\n")}

Options:
  -h, --help     show help (also: proxyd COMMAND --help)
  -V, --version  print the version

Exit status: 0 ok, 1 errors in the rules or failing tests, 2 usage or I/O errors.
Docs: docs/cli.md, docs/language.md
`

const dispatch = (argv: ReadonlyArray<string>): Effect.Effect<number, UsageError, Io> => Effect.gen(function*() {
  const io = yield* Io
  const [first, ...rest] = argv
  if (first === undefined || first === "-h" || first === "--help" || first === "help") {
    const topic = first === "help" ? rest[0] : undefined
    if (first === undefined) {
      io.err(mainHelp)
      return 2
    }
    io.out(topic !== undefined && COMMANDS[topic] !== undefined ? COMMANDS[topic].help : mainHelp)
    return 0
  }
  if (first === "-V" || first === "--version") {
    io.out(`proxyd ${VERSION}\n`)
    return 0
  }
  const isRulesFlag = first === "--rules" || first.startsWith("--rules=")
  const name = isRulesFlag ? "run" : first
  const command = COMMANDS[name]
  if (command === undefined) {
    const near = suggest(first.replace(/^-+/, ""), Object.keys(COMMANDS))
    return yield* new UsageError({ message: `unknown command \`${first}\`${near === undefined ? "" : `, did you mean \`${near}\`?`}` })
  }
  const parsed = parseArgs(isRulesFlag ? argv : rest, command.flags, name)
  if (parsed instanceof UsageError) return yield* parsed
  if (bool(parsed, "help")) {
    io.out(command.help)
    return 0
  }
  if (name === "check" && parsed.positionals.length === 0) return yield* new UsageError({ message: "check needs at least one FILE", command: name })
  return yield* command.run(parsed)
})

/** Runs `proxyd` with `argv` (without the node and script paths); the exit status. */
export const cli = (argv: ReadonlyArray<string>): Effect.Effect<number, never, Io> =>
  dispatch(argv).pipe(Effect.catchTag("UsageError", (e) => Effect.gen(function*() {
    const io = yield* Io
    io.err(`proxyd: ${e.message}\n`)
    io.err(`Run \`proxyd ${e.command === undefined ? "" : `${e.command} `}--help\` for usage.\n`)
    return 2
  })))
