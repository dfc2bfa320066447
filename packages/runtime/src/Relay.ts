/**
 * Relays bytes both ways with native `pipe` until both directions are done.
 *
 * Details: no Effect per chunk: `client.pipe(upstream)` and
 * `upstream.pipe(client)`. Half-close: both sockets are `allowHalfOpen`, and
 * `pipe` ends the destination's write side when its source ends, so the other
 * direction keeps flowing until it ends too. Finishes when both sockets have
 * closed. Byte counts come from the upstream socket (`bytesWritten` = up,
 * `bytesRead` = down). Idle timeout: `setTimeout` on both sockets (any read or
 * write on a socket resets its timer); when either fires, both are destroyed.
 * An error on either destroys both. Interruption destroys both.
 *
 * Gotchas: the client must not be in flowing mode with a `data` listener of
 * its own (bytes would be lost); `pipe` resumes a paused socket itself.
 */
import type { Socket } from "node:net"
import { Effect } from "effect"
import type { RelayStats } from "./Inbound.ts"

export interface RelayResult extends RelayStats {
  /** Why the relay ended: both sides finished, idle timeout, or an error on one side. */
  readonly end: "done" | "idle" | "error"
}

const isClosed = (s: Socket): boolean => s.destroyed && s.closed

export const relay = (client: Socket, upstream: Socket, idleMs: number): Effect.Effect<RelayResult> =>
  Effect.callback<RelayResult>((resume) => {
    let end: RelayResult["end"] = "done"
    let finished = false
    const destroyBoth = () => { client.destroy(); upstream.destroy() }
    const onError = () => { if (end === "done") end = "error"; destroyBoth() }
    const onIdle = () => { if (end === "done") end = "idle"; destroyBoth() }
    const onClose = () => {
      if (finished || !isClosed(client) || !isClosed(upstream)) return
      finished = true
      cleanup()
      resume(Effect.succeed({ bytesUp: upstream.bytesWritten, bytesDown: upstream.bytesRead, end }))
    }
    const cleanup = () => {
      client.off("error", onError); upstream.off("error", onError)
      client.off("timeout", onIdle); upstream.off("timeout", onIdle)
      client.off("close", onClose); upstream.off("close", onClose)
      client.setTimeout(0); upstream.setTimeout(0)
    }
    client.on("error", onError); upstream.on("error", onError)
    client.on("close", onClose); upstream.on("close", onClose)
    if (idleMs > 0) {
      client.setTimeout(idleMs); upstream.setTimeout(idleMs)
      client.on("timeout", onIdle); upstream.on("timeout", onIdle)
    }
    // A side that already closed (e.g. the upstream hung up before the relay) closes the other.
    if (client.destroyed || upstream.destroyed) destroyBoth()
    client.pipe(upstream)
    upstream.pipe(client)
    // A side that had already ended before `pipe` was attached still ends the other side.
    if (client.readableEnded) upstream.end()
    if (upstream.readableEnded) client.end()
    onClose()
    return Effect.sync(() => {
      if (!finished) { finished = true; cleanup(); destroyBoth() }
    })
  })
