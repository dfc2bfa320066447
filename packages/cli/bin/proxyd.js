#!/usr/bin/env node
// The `proxyd` command. In the workspace (sources present) it runs the
// TypeScript sources with Node's type stripping, so edits take effect at once
// and a stale bundle is never run. The published package has no sources: it
// runs the self-contained bundle dist/proxyd.mjs, built by build.ts at pack time.
import { existsSync } from "node:fs"

const sources = new URL("../src/main.ts", import.meta.url)
await import(existsSync(sources) ? sources.href : new URL("../dist/proxyd.mjs", import.meta.url).href)
