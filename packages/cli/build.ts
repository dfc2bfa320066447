/**
 * Bundles the CLI into one self-contained file, `dist/proxyd.mjs`, so the
 * packed package has no runtime dependencies (`npm pack` runs this as
 * `prepack`).
 *
 * Details: the CC0 country database of
 * `@ip-location-db/geo-whois-asn-country-mmdb` (7.5 MB, IPv4 + IPv6) and its
 * licence are copied beside the bundle, where the geoip plugin looks first,
 * so `dst.country`/`src.country` policies work from the installed package.
 *
 * `node build.ts --outdir DIR` writes the bundle (and the database) to DIR instead of `dist/`:
 * the network benchmark builds its own copy there and runs it with `PROXYD_BUNDLE`, so a
 * concurrent `npm pack` (the pack test) never rewrites the file a benchmark is running.
 *
 * Gotchas: the bundle needs Node >= 22 (ESM, top-level await); `require` is
 * provided for bundled CommonJS modules (ipaddr.js) through `createRequire`.
 * Not minified: a minified bundle (names kept) measured no cheaper per connection
 * (docs/benchmarks.md, "Sources or the bundle").
 */
import { build } from "esbuild"
import { copyFileSync } from "node:fs"
import { createRequire } from "node:module"
import { dirname, join, resolve } from "node:path"
import { fileURLToPath } from "node:url"

const here = fileURLToPath(new URL(".", import.meta.url))
const at = process.argv.indexOf("--outdir")
const outdir = at > 0 && process.argv[at + 1] !== undefined ? resolve(process.argv[at + 1]!) : join(here, "dist")

await build({
  absWorkingDir: here,
  entryPoints: ["src/main.ts"],
  bundle: true,
  platform: "node",
  format: "esm",
  target: "node22",
  outfile: join(outdir, "proxyd.mjs"),
  legalComments: "none",
  banner: { js: "import { createRequire as __bannerCreateRequire } from 'node:module'; const require = __bannerCreateRequire(import.meta.url);" },
  logLevel: "warning",
})

// Resolved from @proxyd/geoip, which depends on the database package.
const geoip = createRequire(import.meta.url).resolve("@proxyd/geoip")
const db = createRequire(geoip).resolve("@ip-location-db/geo-whois-asn-country-mmdb/geo-whois-asn-country.mmdb")
copyFileSync(db, join(outdir, "geo-whois-asn-country.mmdb"))
copyFileSync(join(dirname(db), "NRO_LICENSE"), join(outdir, "geo-whois-asn-country.NRO_LICENSE"))
