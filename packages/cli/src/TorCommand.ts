/**
 * `proxyd tor newnym|status --rules FILE [--tor NAME]`: talks to the ControlPort
 * of a `tor` endpoint declared in the rules file.
 *
 * Details: `newnym` sends `SIGNAL NEWNYM` (new circuits for new streams; Tor
 * applies it at most once every 10 s); `status` prints the bootstrap phase.
 * The endpoint is `--tor NAME`, or the only one declared. Authentication is
 * the declaration's (`cookie PATH` read now, or `password SECRET`).
 * Exit status: 0 ok, 1 the file has errors or Tor refused / cannot be
 * reached, 2 usage or I/O errors.
 */
import * as Effect from "effect/Effect"
import type { Ir } from "@proxyd/rules"
import { Control, TorOutbound } from "@proxyd/tor"
import { bool, type FlagSpec, helpText, type Parsed, str, UsageError } from "./Args.ts"
import { checkEntry, renderDiagnostics, summaryLine } from "./CheckCommand.ts"
import { Io } from "./Io.ts"

export const torFlags = {
  rules: { kind: "string", value: "FILE", description: "the rules file that declares the tor endpoint" },
  tor: { kind: "string", value: "NAME", description: "the tor endpoint (default: the only one declared)" },
  "no-color": { kind: "boolean", description: "no ANSI colours in diagnostics" },
} as const satisfies Record<string, FlagSpec>

export const torHelp = helpText(
  "proxyd tor newnym|status --rules FILE [--tor NAME]",
  "Talks to the ControlPort of a tor endpoint: `newnym` asks Tor for new circuits (SIGNAL NEWNYM), `status` prints its bootstrap phase.",
  torFlags,
  "Example: proxyd tor newnym --rules /etc/proxyd/proxyd.rules\nExit status: 0 ok, 1 rules errors or Tor failed, 2 usage or I/O errors.",
)

const pick = (program: Ir.Program, name: string | undefined): Ir.TorIR | string => {
  const all = [...program.tors.values()]
  if (name !== undefined) return program.tors.get(name) ?? `no tor endpoint \`${name}\` in the rules (declared: ${all.map((t) => t.name).join(", ") || "none"})`
  if (all.length === 1) return all[0]!
  return all.length === 0 ? "the rules declare no tor endpoint" : `several tor endpoints are declared (${all.map((t) => t.name).join(", ")}): choose one with --tor NAME`
}

export const runTor = (args: Parsed) => Effect.gen(function*() {
  const io = yield* Io
  const [sub, ...rest] = args.positionals
  if (sub !== "newnym" && sub !== "status") return yield* new UsageError({ message: sub === undefined ? "tor needs a subcommand: newnym or status" : `unknown tor subcommand \`${sub}\` (newnym, status)`, command: "tor" })
  if (rest.length > 0) return yield* new UsageError({ message: `unexpected argument \`${rest[0]}\``, command: "tor" })
  const file = str(args, "rules")
  if (file === undefined) return yield* new UsageError({ message: "tor needs --rules FILE", command: "tor" })
  const report = checkEntry(io, file, { runTests: false })
  if (report.program === undefined) {
    io.err(renderDiagnostics(report, io.color && !bool(args, "no-color")))
    io.err(`${summaryLine(report)}\n`)
    return report.ioError ? 2 : 1
  }
  const t = pick(report.program, str(args, "tor"))
  if (typeof t === "string") { io.err(`proxyd: tor ${sub}: ${t}\n`); return 1 }
  const target = TorOutbound.controlTarget(t)
  if (target === undefined) { io.err(`proxyd: tor ${sub}: tor \`${t.name}\` declares no control port (add \`control HOST:PORT\`)\n`); return 1 }
  if (typeof target === "string") { io.err(`proxyd: tor ${sub}: ${target}\n`); return 1 }
  const where = `${target.host}:${target.port}`
  const r = yield* Effect.result(Effect.tryPromise({
    try: () => (sub === "newnym" ? Control.newnym(target).then(() => undefined) : Control.bootstrapStatus(target)),
    catch: (e) => (e instanceof Error ? e.message : String(e)),
  }))
  if (r._tag === "Failure") { io.err(`proxyd: tor ${sub}: ${r.failure}\n`); return 1 }
  if (sub === "newnym") io.out(`NEWNYM sent to tor \`${t.name}\` (ControlPort ${where}); Tor applies it at most once every 10 s\n`)
  else {
    const b = r.success!
    io.out(`tor \`${t.name}\` (ControlPort ${where}): bootstrapped ${b.progress}% (${b.tag}: ${b.summary})${b.warning === undefined ? "" : `, warning: ${b.warning}`}\n`)
  }
  return 0
})
