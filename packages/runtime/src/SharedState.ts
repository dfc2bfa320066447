/**
 * The in-memory `SharedState` layer: counters and values with a TTL, for one process.
 *
 * Details: the `SharedState` service (`Plugin.ts`) is Promise-shaped so a
 * Redis-backed layer (with scale-out) drops in; this one answers at once.
 * Expired entries are dropped when read and by a sweep every 60 s (unref'd
 * timer, cleared by the layer's finalizer). `incr` keeps the TTL set when the
 * key was created (a fixed window, like Redis `INCR` + `PEXPIRE NX`).
 */
import { Effect, Layer } from "effect"
import { SharedState, type SharedStateShape } from "./Plugin.ts"

export interface Memory extends SharedStateShape {
  /** Drops expired entries. */
  sweep(): void
  readonly size: () => number
}

export const memory = (now: () => number = Date.now): Memory => {
  const m = new Map<string, { value: string; until: number }>()
  const live = (key: string) => {
    const e = m.get(key)
    if (e === undefined) return undefined
    if (e.until <= now()) {
      m.delete(key)
      return undefined
    }
    return e
  }
  return {
    incr: async (key, windowMs) => {
      const e = live(key)
      if (e === undefined) {
        m.set(key, { value: "1", until: now() + windowMs })
        return 1
      }
      e.value = String(Number(e.value) + 1)
      return Number(e.value)
    },
    get: async (key) => live(key)?.value,
    set: async (key, value, ttlMs) => void m.set(key, { value, until: now() + ttlMs }),
    del: async (key) => void m.delete(key),
    sweep: () => {
      const t = now()
      for (const [k, e] of m) if (e.until <= t) m.delete(k)
    },
    size: () => m.size,
  }
}

/** The in-memory layer, swept every minute while the scope is open. */
export const layerMemory: Layer.Layer<SharedState> = Layer.effect(SharedState, Effect.acquireRelease(
  Effect.sync(() => {
    const s = memory()
    const timer = setInterval(() => s.sweep(), 60_000)
    timer.unref()
    return { s, timer }
  }),
  ({ timer }) => Effect.sync(() => clearInterval(timer)),
).pipe(Effect.map(({ s }) => s)))
