/**
 * The `proxyd` process entry: runs the CLI on `process.argv` with the node
 * `Io` and sets the exit status (without `process.exit`, so output is flushed).
 * In a worker thread of `workers N` it runs that worker instead (`Worker.ts`);
 * this module is also the workers' entry (`setWorkerEntry`), so the sources and
 * the bundle each start their own kind.
 *
 * Gotchas: a closed pipe on stdout (EPIPE) ends the process quietly. An unexpected defect (a bug in proxyd) prints its stack and exits 70
 * (EX_SOFTWARE), distinct from the documented statuses 0-3.
 */
import * as Effect from "effect/Effect"
import { Workers } from "@proxyd/runtime"
import { cli } from "./Cli.ts"
import { Io } from "./Io.ts"
import { setWorkerEntry } from "./RunCommand.ts"
import { runWorker } from "./Worker.ts"

const worker = Workers.workerInit()
if (worker !== undefined) {
  Effect.runPromise(runWorker(worker)).catch((defect: unknown) => {
    Workers.failed(`proxyd: internal error in worker ${worker.index} (please report): ${defect instanceof Error ? (defect.stack ?? defect.message) : String(defect)}`)
  })
} else {
  setWorkerEntry(new URL(import.meta.url))
  // `proxyd graph x.rules | head`: the reader went away; stop quietly, like other CLI tools.
  for (const stream of [process.stdout, process.stderr]) {
    stream.on("error", (e: NodeJS.ErrnoException) => {
      if (e.code === "EPIPE") process.exit(process.exitCode ?? 0)
      throw e
    })
  }

  const program = cli(process.argv.slice(2)).pipe(Effect.provide(Io.node()))

  Effect.runPromise(program).then(
    (code) => {
      process.exitCode = code
    },
    (defect: unknown) => {
      process.stderr.write(`proxyd: internal error (please report): ${defect instanceof Error ? (defect.stack ?? defect.message) : String(defect)}\n`)
      process.exitCode = 70
    },
  )
}
