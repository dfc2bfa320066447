/**
 * `proxyd run --rules FILE` (also `proxyd --rules FILE`): serve the rules.
 *
 * Details: a file that does not check (errors or failing tests) refuses to
 * start, printing the same diagnostics as `proxyd check`. Otherwise the
 * runtime (`@proxyd/runtime`) opens the file's listeners (or the `--listen`
 * overrides) with the SOCKS and HTTP handlers, reloads on SIGHUP and on file
 * changes, and drains on SIGTERM/SIGINT (exit 0; a second signal exits at
 * once). A feature the language accepts but the runtime cannot enforce yet
 * refuses to start with a message naming it (exit 1).
 */
import * as Effect from "effect/Effect"
import { Log, Registry, Server } from "@proxyd/runtime"
import { makeSocks4Handler, makeSocks5Handler } from "@proxyd/socks"
import { httpHandler } from "@proxyd/http"
import { makeUpstreams } from "@proxyd/upstream"
import { makeTor } from "@proxyd/tor"
import { bool, type FlagSpec, helpText, type Parsed, str, strs, UsageError } from "./Args.ts"
import { checkEntry, exitCode, pluginOptions, renderDiagnostics, summaryLine } from "./CheckCommand.ts"
import { Io } from "./Io.ts"
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

export const runRun = (args: Parsed) => Effect.gen(function*() {
  const io = yield* Io
  const file = str(args, "rules")
  if (file === undefined) return yield* new UsageError({ message: "run needs --rules FILE", command: "run" })
  if (args.positionals.length > 0) return yield* new UsageError({ message: `unexpected argument \`${args.positionals[0]}\``, command: "run" })
  const report = checkEntry(io, file, { plugins: yield* pluginOptions(file) })
  const code = exitCode([report])
  const color = io.color && !bool(args, "no-color")
  if (code !== 0 || report.program === undefined) {
    io.err(renderDiagnostics(report, color))
    io.err(`${summaryLine(report)}\n`)
    return code === 0 ? 1 : code
  }
  io.err(renderDiagnostics(report, color))
  const maxUdp = report.program.options["max-udp-associations-per-ip"]
  const logFormat = str(args, "log-format")
  const logLevel = str(args, "log-level")
  const pluginLog = Log.make({ level: logLevel !== undefined && Log.isLevel(logLevel) ? logLevel : "info", format: logFormat === "pretty" ? "pretty" : "json" })
  const started = yield* Effect.gen(function*() {
    const plugins = yield* Registry.start(file, { log: pluginLog, builtins })
    return yield* Server.runServer({
      plugins,
      rulesFile: file,
      listen: strs(args, "listen"),
      ...(logLevel === undefined ? {} : { logLevel }),
      ...(logFormat === "pretty" || logFormat === "json" ? { logFormat } : {}),
      handlers: {
        socks5: makeSocks5Handler(typeof maxUdp === "number" ? { maxUdpAssociationsPerIp: () => maxUdp } : {}),
        socks4: makeSocks4Handler({}),
        http: httpHandler,
      },
      outbounds: [makeUpstreams(), makeTor()],
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
