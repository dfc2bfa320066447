/**
 * Relays bytes both ways until both directions are done.
 *
 * Details: no Effect per chunk. Each direction whose source is a plain socket
 * is a `pump` (Pump.ts: reads into reusable buffers of up to 512 KiB, one
 * `write` per read — about half the CPU per GiB of `pipe`); any other source
 * (TLS, a socket with a `data` listener of its own) uses native `pipe`, as
 * does every direction under `PROXYD_RELAY=pipe`.
 * Half-close: both sockets are `allowHalfOpen`, and both `pump` and `pipe`
 * end the destination's write side when its source ends, so the other
 * direction keeps flowing until it ends too. Finishes when both sockets have
 * closed. Byte counts come from the upstream socket (`bytesWritten` = up,
 * `bytesRead` = down). Idle timeout: `setTimeout` on both sockets (any read or
 * write on a socket resets its timer); when either fires, both are destroyed.
 * An error on either destroys both. Interruption destroys both.
 *
 * Bytes a source already buffered (a handler's `unshift`) are relayed first.
 *
 * Gotchas: the client must not be in flowing mode with a `data` listener of
 * its own (bytes would be lost; such a source falls back to `pipe`); both
 * `pump` and `pipe` resume a paused socket themselves.
 */
import type { Socket } from "node:net"
import { Effect } from "effect"
import type { RelayStats } from "./Inbound.ts"
import { canPump, pump } from "./Pump.ts"

export interface RelayResult extends RelayStats {
  /** Why the relay ended: both sides finished, idle timeout, or an error on one side. */
  readonly end: "done" | "idle" | "error"
}

const isClosed = (s: Socket): boolean => s.destroyed && s.closed

/** `PROXYD_RELAY=pipe` turns the pump off (a way out should a Node release change the internals it uses; also for A/B runs). */
const pumpOn = process.env["PROXYD_RELAY"] !== "pipe"

/** Starts one direction; returns what detaches it. */
const flow = (src: Socket, dst: Socket): () => void => {
  if (pumpOn && canPump(src)) return pump(src, dst)
  src.pipe(dst)
  return () => {}
}

/**
 * Starts relaying and returns at once (no Effect, no fiber: an idle relayed connection holds
 * only its sockets and these listeners). `onEnd` is called once, when both sockets have closed;
 * the returned `abort` destroys both sockets without calling `onEnd` (the caller ends the
 * connection itself).
 */
export const startRelay = (client: Socket, upstream: Socket, idleMs: number, onEnd: (r: RelayResult) => void): () => void => {
  let end: RelayResult["end"] = "done"
  let finished = false
  const destroyBoth = () => { client.destroy(); upstream.destroy() }
  const onError = () => { if (end === "done") end = "error"; destroyBoth() }
  const onIdle = () => { if (end === "done") end = "idle"; destroyBoth() }
  let stopUp: () => void = noop, stopDown: () => void = noop
  const cleanup = () => {
    stopUp(); stopDown()
    stopUp = noop; stopDown = noop
    client.off("error", onError); upstream.off("error", onError)
    client.off("timeout", onIdle); upstream.off("timeout", onIdle)
    client.off("close", onClose); upstream.off("close", onClose)
    if (idleMs > 0) { client.setTimeout(0); upstream.setTimeout(0) }
  }
  function onClose(): void {
    if (finished || !isClosed(client) || !isClosed(upstream)) return
    finished = true
    cleanup()
    onEnd({ bytesUp: upstream.bytesWritten, bytesDown: upstream.bytesRead, end })
  }
  client.on("error", onError); upstream.on("error", onError)
  client.on("close", onClose); upstream.on("close", onClose)
  if (idleMs > 0) {
    client.setTimeout(idleMs); upstream.setTimeout(idleMs)
    client.on("timeout", onIdle); upstream.on("timeout", onIdle)
  }
  // A side that already closed (e.g. the upstream hung up before the relay) closes the other.
  if (client.destroyed || upstream.destroyed) destroyBoth()
  stopUp = flow(client, upstream)
  stopDown = flow(upstream, client)
  // A side that had already ended before the relay started still ends the other side.
  if (client.readableEnded) upstream.end()
  if (upstream.readableEnded) client.end()
  onClose()
  return () => {
    if (!finished) { finished = true; cleanup(); destroyBoth() }
  }
}

const noop = (): void => {}

/** `startRelay` as an effect: completes when the relay ends; interruption destroys both sockets. */
export const relay = (client: Socket, upstream: Socket, idleMs: number): Effect.Effect<RelayResult> =>
  Effect.callback<RelayResult>((resume) => {
    const abort = startRelay(client, upstream, idleMs, (r) => resume(Effect.succeed(r)))
    return Effect.sync(abort)
  })
