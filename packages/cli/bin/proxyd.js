#!/usr/bin/env node
// The `proxyd` command. In the workspace (sources present, Node >= 24 with
// type stripping) it runs the TypeScript sources, so edits take effect at once
// and a stale bundle is never run. The published package has no sources: it
// runs the self-contained bundle dist/proxyd.mjs, built by build.ts at pack time.
import { existsSync } from "node:fs"
import { resolve } from "node:path"
import { pathToFileURL } from "node:url"
import { isMainThread } from "node:worker_threads"

// The server (`proxyd --rules …`, `proxyd run …`) runs with a bounded V8 young generation
// (`--max-semi-space-size`, default 8 MiB): by default V8 lets it grow to 128 MiB of new space (measured, Node 24)
// under a burst of connections and keeps those pages, which is most of what an idle proxyd held
// per connection (docs/benchmarks.md, "Memory"). A proxy's young objects are short-lived
// handshake state: at 8 MiB the CPU per connection equals the default in same-run A/B (4 MiB cost ~10% more).
// The flag has to be given at start-up, so the process re-executes itself once with it
// (`process.execve`: same PID, same stdio). `PROXYD_YOUNG_MB=0` keeps V8's default; a
// `--max-semi-space-size` already given (node flag or NODE_OPTIONS) is left alone.
// The same re-execution turns V8's memory reducer off (`--no-memory-reducer`;
// `PROXYD_MEMORY_REDUCER=on` keeps it): it shrinks the heap of a process it thinks idle with
// compacting full collections, and under steady traffic it still fired, in pairs, after ordinary
// full collections; with a 100k-rule policy (~190 MB live) each pair cost 0.4-0.9 s of CPU and
// 100-390 ms pauses (docs/benchmarks.md, "Full collections and the 100k policy"). V8's ordinary
// collections still return memory; start-up returns its own garbage before serving.
// And it turns V8's allocation-site pretenuring off (`--no-allocation-site-pretenuring`;
// `PROXYD_PRETENURING=on` keeps it): under connection load V8 decided to allocate sockets'
// objects directly in the old generation, and everything a connection hung on them afterwards
// (relay state, session, closures, the other socket) was then kept by those dead old objects
// through every young-generation collection until the next full one: ~3.5 KB promoted per
// connection, the cause of proxyd's full collections under load (with the flag: 0.2-1.8 KB, the
// rest from Maglev; docs/benchmarks.md, "What every connection promoted").
const first = process.argv[2]
const serving = first === "run" || first === "--rules" || (first !== undefined && first.startsWith("--rules="))
const young = process.env.PROXYD_YOUNG_MB ?? "8"
const nodeFlags = [...process.execArgv, ...(process.env.NODE_OPTIONS ?? "").split(/\s+/)]
const flags = []
if (/^[1-9][0-9]*$/.test(young) && !nodeFlags.some((f) => f.startsWith("--max-semi-space-size"))) flags.push(`--max-semi-space-size=${young}`)
if (process.env.PROXYD_MEMORY_REDUCER !== "on" && !nodeFlags.some((f) => /^--(no-)?memory[-_]reducer/.test(f))) flags.push("--no-memory-reducer")
if (process.env.PROXYD_PRETENURING !== "on" && !nodeFlags.some((f) => /^--(no-)?allocation[-_]site[-_]pretenuring/.test(f))) flags.push("--no-allocation-site-pretenuring")
if (serving && isMainThread && flags.length > 0 && typeof process.execve === "function") {
  try {
    process.execve(process.execPath, [process.execPath, ...flags, ...process.execArgv, ...process.argv.slice(1)], process.env)
  } catch {
    // Not re-executed (e.g. an unusual platform): run with V8's default young generation.
  }
}

const sources = new URL("../src/main.ts", import.meta.url)
const bundle = new URL("../dist/proxyd.mjs", import.meta.url)
const canStrip = Boolean(process.features && process.features.typescript)
// PROXYD_BUNDLE=FILE runs that bundle (built by `node build.ts --outdir DIR`) even in the
// workspace: what the benchmark measures, since the installed package runs the bundle
// (in a same-run A/B it cost ~8 % less CPU per connection than the sources; docs/benchmarks.md).
const chosen = process.env.PROXYD_BUNDLE

if (chosen !== undefined && chosen !== "") {
  if (existsSync(chosen)) await import(pathToFileURL(resolve(chosen)).href)
  else {
    process.stderr.write(`proxyd: PROXYD_BUNDLE=${chosen}: no such file (build one with \`node packages/cli/build.ts --outdir DIR\`)\n`)
    process.exitCode = 2
  }
} else if (existsSync(sources) && canStrip) await import(sources.href)
else if (existsSync(bundle)) await import(bundle.href)
else {
  process.stderr.write(`proxyd: the workspace sources need Node >= 24 (this is ${process.version}); run \`npx proxyd\` or \`npm run proxyd --\` (they use the workspace's Node 24), or build the bundle with \`npm run build\`\n`)
  process.exitCode = 2
}
