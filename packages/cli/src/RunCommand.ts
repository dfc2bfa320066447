/**
 * `proxyd run --rules FILE` (also `proxyd --rules FILE`): serve the rules.
 *
 * Details: a file that does not check (errors or failing tests) refuses to
 * start, printing the same diagnostics as `proxyd check`. A file that starts
 * prints its warnings (the first `MAX_START_WARNINGS`, then a count); the
 * analysis lints run only for policies up to `ANALYZE_AT_START_MAX_RULES`
 * rules (they never refuse a file; `proxyd check` runs them). Otherwise the
 * runtime (`@proxyd/runtime`) opens the file's listeners (or the `--listen`
 * overrides) with the SOCKS and HTTP handlers, reloads on SIGHUP and on file
 * changes, and drains on SIGTERM/SIGINT (exit 0; a second signal exits at
 * once). A feature the language accepts but the runtime cannot enforce yet
 * refuses to start with a message naming it (exit 1).
 */
import * as Effect from "effect/Effect"
import { Check } from "@proxyd/rules"
import { type Listener, Log, type Observe, Registry, Server, Workers } from "@proxyd/runtime"
import { makeSocks4Handler, makeSocks5Handler } from "@proxyd/socks"
import { httpHandler } from "@proxyd/http"
import { makeUpstreams } from "@proxyd/upstream"
import { makeTor } from "@proxyd/tor"
import { bool, type FlagSpec, helpText, type Parsed, str, strs, UsageError } from "./Args.ts"
import { checkEntry, exitCode, type FileReport, pluginOptions, renderDiagnostics, ruleCount, summaryLine } from "./CheckCommand.ts"
import { Io, type IoShape } from "./Io.ts"
import { builtins } from "./Plugins.ts"

export const runFlags = {
  rules: { kind: "string", value: "FILE", description: "the rules file to serve" },
  listen: { kind: "string", value: "[PROTO://]HOST:PORT", multiple: true, description: "listen here instead of the file's listeners (repeatable; PROTO: socks5, socks4, http, mixed; default mixed)" },
  "log-level": { kind: "string", value: "LEVEL", choices: ["debug", "info", "warn", "error"], description: "least severe level logged (default info)" },
  "log-format": { kind: "string", value: "FORMAT", choices: ["json", "pretty"], description: "log line format (default json)" },
  "no-color": { kind: "boolean", description: "no ANSI colours in diagnostics" },
} as const satisfies Record<string, FlagSpec>

export const runHelp = helpText(
  "proxyd run --rules FILE [--listen [PROTO://]HOST:PORT]... [--log-level L] [--log-format json|pretty]\n       proxyd --rules FILE ...",
  "Serves a rules file: SOCKS5, SOCKS4/4a, HTTP and mixed listeners as the file declares.\nReloads on SIGHUP and when the file (or an included or set file) changes; a file that\nfails to check keeps the old policy running. SIGTERM/SIGINT drain open connections\n(drain-timeout, default 30 s) and exit 0; a second signal exits at once.",
  runFlags,
  "Exit status: 0 after a graceful shutdown, 1 the file has errors, failing tests or uses\nsomething the runtime cannot enforce yet, 2 usage or I/O errors.",
)

/**
 * Start-up (and `check`) refuse a file for errors and failing tests only; the
 * analysis lints are advisory and grow with the square of the rules, so a
 * policy larger than this starts without them (the log says to run `check`).
 */
export const ANALYZE_AT_START_MAX_RULES = 2_000
/** Warnings printed with code frames at start-up; the rest are counted. */
export const MAX_START_WARNINGS = 20

const plural = (n: number, word: string): string => `${n.toLocaleString("en-US")} ${word}${n === 1 ? "" : "s"}`

/** The warnings of a file that starts: all of them up to `MAX_START_WARNINGS`, then a count and where to see them. */
export const startWarnings = (report: FileReport, color: boolean): string => {
  const ds = report.diagnostics
  const shown = ds.length <= MAX_START_WARNINGS ? report : { ...report, diagnostics: ds.slice(0, MAX_START_WARNINGS) }
  let out = renderDiagnostics(shown, color)
  if (ds.length > MAX_START_WARNINGS) out += `... and ${plural(ds.length - MAX_START_WARNINGS, "more warning")}: run \`proxyd check ${report.file}\` to see them all\n`
  if (report.analyzed === false) {
    out += `${report.file}: ${plural(report.program === undefined ? 0 : ruleCount(report.program), "rule")}: the analysis lints (unreachable, shadowed and overlapping rules) are not run at start-up for more than ${ANALYZE_AT_START_MAX_RULES.toLocaleString("en-US")} rules; run \`proxyd check ${report.file}\` for them\n`
  }
  return out
}

type Limits = () => { readonly max: number; readonly perIp: number }

/**
 * The protocol handlers and outbounds a server runs with (one loop, or each worker). The UDP
 * association limit is read from the policy serving now (`current`), so it follows reloads.
 */
export const serving = (udpCounter?: (limits: Limits) => Listener.Gate): Pick<Server.ServerOptions, "handlers" | "outbounds" | "observers"> => {
  let current: Observe.StartedServer | undefined
  const maxUdp = () => {
    const v = current?.store.current().program.options["max-udp-associations-per-ip"]
    return typeof v === "number" ? v : 16
  }
  return {
    observers: [{ started: (e: { readonly server: Observe.StartedServer }) => { current = e.server } }],
    handlers: {
      socks5: makeSocks5Handler({ maxUdpAssociationsPerIp: maxUdp, ...(udpCounter === undefined ? {} : { udpCounter }) }),
      socks4: makeSocks4Handler({}),
      http: httpHandler,
    },
    outbounds: [makeUpstreams(), makeTor()],
  }
}

/** Why `workers` > 1 cannot serve this program here, or undefined. */
export const workersRefusal = (): string | undefined => {
  if (process.platform !== "linux") return `option \`workers\`: more than one worker needs SO_REUSEPORT load balancing, which proxyd uses on Linux only (this is ${process.platform})`
  return undefined
}

/** The module a worker thread runs: the process's own entry (sources or bundle), set by `main.ts`. */
let entry: URL | undefined
export const setWorkerEntry = (u: URL): void => { entry = u }
const workerEntry = (): URL => {
  if (entry === undefined) throw new Error("worker entry not set (main.ts sets it)")
  return entry
}

/**
 * Checks the file as `proxyd check` does and prints its diagnostics (refusal) or warnings
 * (start): the exit status of a refusal, or what serving needs of the program (nothing of the
 * checked program itself: the one-loop server gets it again from `Check`'s memo of the last
 * result, which the `workers` supervisor drops).
 */
const checkForRun = (io: IoShape, file: string, plugins: Exclude<NonNullable<Parameters<typeof checkEntry>[2]>["plugins"], undefined>, color: boolean): { readonly code: number } | { readonly workers: number; readonly maxConnections: number } => {
  const report = checkEntry(io, file, { plugins, analyze: { maxRules: ANALYZE_AT_START_MAX_RULES } })
  const code = exitCode([report])
  if (code !== 0 || report.program === undefined) {
    io.err(renderDiagnostics(report, color))
    io.err(`${summaryLine(report)}\n`)
    return { code: code === 0 ? 1 : code }
  }
  io.err(startWarnings(report, color))
  const workers = report.program.options["workers"]
  const max = report.program.options["max-connections"]
  return { workers: typeof workers === "number" ? workers : 1, maxConnections: typeof max === "number" ? max : 10_000 }
}

export const runRun = (args: Parsed) => Effect.gen(function*() {
  const io = yield* Io
  const file = str(args, "rules")
  if (file === undefined) return yield* new UsageError({ message: "run needs --rules FILE", command: "run" })
  if (args.positionals.length > 0) return yield* new UsageError({ message: `unexpected argument \`${args.positionals[0]}\``, command: "run" })
  const checked = checkForRun(io, file, yield* pluginOptions(file), io.color && !bool(args, "no-color"))
  if ("code" in checked) return checked.code
  const logFormat = str(args, "log-format")
  const logLevel = str(args, "log-level")
  const pluginLog = Log.make({ level: logLevel !== undefined && Log.isLevel(logLevel) ? logLevel : "info", format: logFormat === "pretty" ? "pretty" : "json" })
  const workers = checked.workers
  if (workers > 1) {
    const refusal = workersRefusal()
    if (refusal !== undefined) {
      io.err(`${file}: ${refusal}\nproxyd: not started\n`)
      return 1
    }
    // The workers load the file themselves; the supervisor keeps none of the check.
    Check.forgetLastCheck()
    return yield* Effect.promise(() => Workers.supervise({
      workers,
      entry: workerEntry(),
      rulesFile: file,
      listen: strs(args, "listen"),
      ...(logLevel === undefined ? {} : { logLevel }),
      ...(logFormat === "pretty" || logFormat === "json" ? { logFormat } : {}),
      maxConnections: checked.maxConnections,
      log: pluginLog,
    }))
  }
  const started = yield* Effect.gen(function*() {
    const plugins = yield* Registry.start(file, { log: pluginLog, builtins })
    return yield* Server.runServer({
      plugins,
      rulesFile: file,
      listen: strs(args, "listen"),
      ...(logLevel === undefined ? {} : { logLevel }),
      ...(logFormat === "pretty" || logFormat === "json" ? { logFormat } : {}),
      ...serving(),
    })
  }).pipe(
    Effect.scoped,
    Effect.as(0),
    Effect.catchTag("PluginError", (e) => Effect.sync(() => {
      io.err(`plugin \`${e.plugin}\`: ${e.message}\nproxyd: not started\n`)
      return 1
    })),
    Effect.catchTag("StartError", (e) => Effect.sync(() => {
      io.err(`${e.message.endsWith("\n") ? e.message : `${e.message}\n`}proxyd: not started\n`)
      return 1
    })),
  )
  return started
})
