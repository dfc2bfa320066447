/**
 * Bundles the CLI into one self-contained file, `dist/proxyd.mjs`, so the
 * packed package has no runtime dependencies (`npm pack` runs this as
 * `prepack`).
 *
 * Gotchas: the bundle needs Node >= 22 (ESM, top-level await); `require` is
 * provided for bundled CommonJS modules (ipaddr.js) through `createRequire`.
 */
import { build } from "esbuild"
import { fileURLToPath } from "node:url"

const here = fileURLToPath(new URL(".", import.meta.url))

await build({
  absWorkingDir: here,
  entryPoints: ["src/main.ts"],
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node22",
  outfile: "dist/proxyd.mjs",
  legalComments: "none",
  banner: { js: "import { createRequire as __bannerCreateRequire } from 'node:module'; const require = __bannerCreateRequire(import.meta.url);" },
  logLevel: "warning",
})
