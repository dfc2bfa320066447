/**
 * The GeoIP plugin (`proxyd.geoip`): the GeoIp service for the server, built from the rules file.
 *
 * Details: adds no vocabulary (`geoip` is a built-in declaration and the
 * country/ASN fields are built-in fields); its layer builds `GeoIp.make`,
 * prepares the start program's databases (a database that does not open
 * fails the plugin: the server does not start) and provides
 * `Plugin.GeoIp` with the per-load hooks, so reloads that change `geoip`
 * lines switch databases (or are refused when the new file does not open).
 * The watchers are closed when the server's scope ends.
 */
import { join } from "node:path"
import { Effect, Layer } from "effect"
import { Plugin } from "@proxyd/runtime"
import * as GeoIp from "./GeoIp.ts"

export const geoIpPlugin: Plugin.Plugin = Plugin.make({
  id: "proxyd.geoip",
  vocabulary: {},
  doc: "country and ASN facts from MaxMind-format databases; a CC0 country database is built in",
  layer: Layer.effect(Plugin.GeoIp, Effect.gen(function*() {
    const ctx = yield* Plugin.PluginContext
    const geo = yield* Effect.acquireRelease(Effect.sync(() => GeoIp.make({ log: ctx.log })), (g) => Effect.sync(() => g.close()))
    // The rules file itself is not in the context; its directory is, and relative paths only need that.
    const rulesFile = join(ctx.baseDir, "(rules)")
    const problems = geo.prepare(ctx.program, rulesFile)
    if (problems.length > 0) return yield* new Plugin.PluginError({ plugin: "proxyd.geoip", message: problems.join("; ") })
    return geo
  })),
})
