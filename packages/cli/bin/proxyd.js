#!/usr/bin/env node
// The `proxyd` command. In the workspace (sources present, Node >= 24 with
// type stripping) it runs the TypeScript sources, so edits take effect at once
// and a stale bundle is never run. The published package has no sources: it
// runs the self-contained bundle dist/proxyd.mjs, built by build.ts at pack time.
import { existsSync } from "node:fs"

const sources = new URL("../src/main.ts", import.meta.url)
const bundle = new URL("../dist/proxyd.mjs", import.meta.url)
const canStrip = Boolean(process.features && process.features.typescript)

if (existsSync(sources) && canStrip) await import(sources.href)
else if (existsSync(bundle)) await import(bundle.href)
else {
  process.stderr.write(`proxyd: the workspace sources need Node >= 24 (this is ${process.version}); run \`npx proxyd\` or \`npm run proxyd --\` (they use the workspace's Node 24), or build the bundle with \`npm run build\`\n`)
  process.exitCode = 2
}
