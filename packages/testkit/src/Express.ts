/**
 * Helpers for the express-path equivalence tests (`packages/*\/test/Express.test.ts`): a spy
 * that counts a handler's express calls and the fallbacks it takes, a connection's close line
 * without the fields that differ run to run, and two client conversation steps.
 */
import type { Socket } from "node:net"
import type { Effect } from "effect"
import type { Inbound } from "@proxyd/runtime"
import type { RawClient } from "./Net.ts"
import { type Proxyd, until } from "./Proxyd.ts"

/** Counts kept by `expressSpy`. */
export interface ExpressCounts { calls: number; fallbacks: number }

/**
 * The handler with its `express` wrapped: each call counts in `counts.calls`, each
 * `ctx.fallback` in `counts.fallbacks` (the context's other members pass through, bound to it).
 */
export const expressSpy = (h: Inbound.InboundHandler, counts: ExpressCounts): Inbound.InboundHandler => {
  const express = h.express
  if (express === undefined) return h
  return {
    ...h,
    express: (c, ctx) => {
      counts.calls++
      const spy = new Proxy(ctx, {
        get: (t, k) => {
          if (k === "fallback") return (e: Effect.Effect<void>) => { counts.fallbacks++; t.fallback(e) }
          const v = Reflect.get(t, k, t) as unknown
          return typeof v === "function" ? (v as (...a: Array<unknown>) => unknown).bind(t) : v
        },
      })
      express(c, spy)
    },
  }
}

/**
 * The close line of the connection from this local port without id, time, src and duration
 * (`{ missing: true }` when none came), among the lines written after the first `since` (take
 * `p.connections().length` before connecting: an earlier connection may have had the same
 * ephemeral port, and its line would match too).
 */
export const closeLineOf = async (p: Proxyd, localPort: number | undefined, since: number): Promise<Record<string, unknown>> => {
  const src = `127.0.0.1:${localPort}`
  const find = () => p.connections().slice(since).find((l) => l["src"] === src)
  await until(() => find() !== undefined)
  const { id: _id, time: _t, src: _s, duration_ms: _d, ...rest } = find() ?? { missing: true }
  return rest
}

/** Reads the `n` bytes of the proxy's answer, ends our side, then takes anything else until the proxy closes. */
export const answerThenEnd = async (c: RawClient, n: number): Promise<Buffer> => {
  const head = await c.read(n)
  c.socket.end()
  return Buffer.concat([head, await c.readToEnd()])
}

/** Writes each piece in its own write, 5 ms apart (so they arrive as separate reads). */
export const trickle = async (s: Socket, pieces: ReadonlyArray<Uint8Array | string>): Promise<void> => {
  for (const p of pieces) {
    s.write(p)
    await new Promise((r) => setTimeout(r, 5))
  }
}
