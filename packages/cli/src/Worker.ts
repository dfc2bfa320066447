/**
 * One worker thread of `workers N`: the same server as a one-loop `proxyd run`, driven by the supervisor.
 *
 * Details: `main.ts` runs this instead of the CLI when `Workers.workerInit()` says the thread is a
 * proxyd worker. The rules file was checked by the supervisor; the worker loads it again (its own
 * policy, compiled in its own heap), builds the plugins with the supervisor's `SharedState`, and
 * serves with `Workers.workerOptions` (shared limits, pinned ports, `SO_REUSEPORT`). Its log lines
 * carry `worker: i`. A failure to start is reported to the supervisor, which prints it.
 */
import * as Effect from "effect/Effect"
import { Log, Registry, Server, Workers } from "@proxyd/runtime"
import { builtins } from "./Plugins.ts"
import { serving } from "./RunCommand.ts"

export const runWorker = (init: Workers.Init): Effect.Effect<void> => {
  const level = init.logLevel !== undefined && Log.isLevel(init.logLevel) ? init.logLevel : "info"
  const log = Log.make({ level, format: init.logFormat ?? "json", base: { worker: init.index } })
  const side = Workers.workerOptions(init)
  return Effect.gen(function*() {
    const plugins = yield* Registry.start(init.rulesFile, { log, builtins, sharedState: Workers.layerRemoteState })
    const handle = yield* Server.startServer({
      plugins,
      rulesFile: init.rulesFile,
      listen: init.listen,
      log,
      watch: false,
      worker: side,
      ...(init.express === undefined ? {} : { express: init.express }),
      ...serving(side.gate.bind(undefined, "udp")),
    })
    yield* Workers.serveWorker(handle, side)
  }).pipe(
    Effect.scoped,
    Effect.catchTag("PluginError", (e) => Effect.sync(() => Workers.failed(`plugin \`${e.plugin}\`: ${e.message}`))),
    Effect.catchTag("StartError", (e) => Effect.sync(() => Workers.failed(e.message))),
    Effect.ensuring(Effect.sync(() => {
      Log.flushNow()
      Workers.stopped()
    })),
  )
}
