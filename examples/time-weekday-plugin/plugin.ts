/**
 * An example proxyd plugin: the field `time.weekday` (Mon … Sun) in a chosen time zone.
 *
 * Details: the vocabulary adds the enum field `time.weekday` and the
 * declaration `weekday-clock tz "Europe/Berlin"` (default UTC), so
 * `proxyd check` type-checks `time.weekday in [Sat, Sun]` offline (a typo like
 * `Sunday` is an error with a did-you-mean). The layer provides a
 * `FactSource` that computes the weekday of the request time in that zone.
 * Load it from a rules file with `plugin "./plugin.ts"`.
 */
import { Effect, Layer } from "effect"
import { Plugin } from "@proxyd/runtime"

export const DAYS = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"] as const

/** The weekday of `epochMs` in `tz` (an IANA zone). */
export const weekdayAt = (epochMs: number, tz: string): string => {
  const short = new Intl.DateTimeFormat("en-US", { weekday: "short", timeZone: tz }).format(epochMs)
  return DAYS.find((d) => d === short) ?? short
}

const isZone = (tz: string): boolean => {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz })
    return true
  } catch {
    return false
  }
}

export default Plugin.make({
  id: "example.time.weekday",
  doc: "The weekday of the request time: `time.weekday in [Sat, Sun]`.",
  vocabulary: {
    fields: [{ name: "time.weekday", type: "enum", values: ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], doc: "weekday of the request time" }],
    declarations: {
      "weekday-clock": { name: "none", form: 'weekday-clock tz "Europe/Berlin"', settings: { tz: { pattern: "STR", required: true } } },
    },
  },
  layer: Layer.effect(Plugin.FactSource, Effect.gen(function*() {
    const ctx = yield* Plugin.PluginContext
    const tz = ctx.decls.map((d) => d.settings["tz"]).filter((v): v is string => typeof v === "string").at(-1) ?? "UTC"
    if (!isZone(tz)) return yield* new Plugin.PluginError({ plugin: "example.time.weekday", message: `unknown time zone \`${tz}\`` })
    return {
      fields: ["time.weekday"],
      get: (_field, request) => (request.time === undefined ? null : weekdayAt(request.time, tz)),
    }
  })),
})
