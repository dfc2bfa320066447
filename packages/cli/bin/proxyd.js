#!/usr/bin/env node
// The `proxyd` command. The published package runs the self-contained bundle
// (dist/proxyd.mjs, built by build.ts at pack time); in the workspace, where
// there is no bundle, it runs the TypeScript sources with Node's type stripping.
import { existsSync } from "node:fs"

const bundle = new URL("../dist/proxyd.mjs", import.meta.url)
await import(existsSync(bundle) ? bundle.href : new URL("../src/main.ts", import.meta.url).href)
