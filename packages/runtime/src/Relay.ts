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
 * Per connection: one `RelayState` (reachable from both sockets through
 * `kRelay`) and one `Pump` per pumping direction; the listeners are module
 * functions, so starting a relay allocates no closures but `abort`.
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
import { canPump, pump, type Pump } from "./Pump.ts"

export interface RelayResult extends RelayStats {
  /** Why the relay ended: both sides finished, idle timeout, or an error on one side. */
  readonly end: "done" | "idle" | "error"
}

const isClosed = (s: Socket): boolean => s.destroyed && s.closed

/** `PROXYD_RELAY=pipe` turns the pump off (a way out should a Node release change the internals it uses; also for A/B runs). */
const pumpOn = process.env["PROXYD_RELAY"] !== "pipe"

/** Starts one direction; returns the pump to stop, or undefined for `pipe`. */
const flow = (src: Socket, dst: Socket): Pump | undefined => {
  if (pumpOn && canPump(src)) return pump(src, dst)
  src.pipe(dst)
  return undefined
}

/** Where a socket's relay state hangs (the listeners are module functions, `this` = the socket). */
const kRelay = Symbol("proxyd.relay")

/** One relay's state: one object per relay, no closures. */
class RelayState {
  readonly client: Socket
  readonly upstream: Socket
  readonly idle: boolean
  readonly onEnd: (r: RelayResult) => void
  end: RelayResult["end"] = "done"
  finished = false
  up: Pump | undefined = undefined
  down: Pump | undefined = undefined
  constructor(client: Socket, upstream: Socket, idle: boolean, onEnd: (r: RelayResult) => void) {
    this.client = client; this.upstream = upstream; this.idle = idle; this.onEnd = onEnd
  }
  destroyBoth(): void { this.client.destroy(); this.upstream.destroy() }
  cleanup(): void {
    this.up?.stop(); this.down?.stop()
    this.up = undefined; this.down = undefined
    const { client, upstream } = this
    client.off("error", onError); upstream.off("error", onError)
    client.off("close", onClose); upstream.off("close", onClose)
    if (this.idle) {
      client.off("timeout", onIdle); upstream.off("timeout", onIdle)
      client.setTimeout(0); upstream.setTimeout(0)
    }
  }
  closed(): void {
    if (this.finished || !isClosed(this.client) || !isClosed(this.upstream)) return
    this.finished = true
    this.cleanup()
    this.onEnd({ bytesUp: this.upstream.bytesWritten, bytesDown: this.upstream.bytesRead, end: this.end })
  }
  /** `abort`: destroys both sockets without calling `onEnd`. */
  abort(): void {
    if (!this.finished) { this.finished = true; this.cleanup(); this.destroyBoth() }
  }
}

const stateOf = (s: Socket): RelayState | undefined => (s as unknown as Record<symbol, RelayState | undefined>)[kRelay]

function onError(this: Socket): void {
  const r = stateOf(this)
  if (r === undefined) return
  if (r.end === "done") r.end = "error"
  r.destroyBoth()
}
function onIdle(this: Socket): void {
  const r = stateOf(this)
  if (r === undefined) return
  if (r.end === "done") r.end = "idle"
  r.destroyBoth()
}
function onClose(this: Socket): void { stateOf(this)?.closed() }

/**
 * Starts relaying and returns at once (no Effect, no fiber: an idle relayed connection holds
 * only its sockets, one state object per relay and one per pumping direction). `onEnd` is called
 * once, when both sockets have closed; the returned `abort` destroys both sockets without calling
 * `onEnd` (the caller ends the connection itself).
 */
export const startRelay = (client: Socket, upstream: Socket, idleMs: number, onEnd: (r: RelayResult) => void): () => void => {
  const r = new RelayState(client, upstream, idleMs > 0, onEnd)
  ;(client as unknown as Record<symbol, RelayState>)[kRelay] = r
  ;(upstream as unknown as Record<symbol, RelayState>)[kRelay] = r
  client.on("error", onError); upstream.on("error", onError)
  client.on("close", onClose); upstream.on("close", onClose)
  if (idleMs > 0) {
    client.setTimeout(idleMs); upstream.setTimeout(idleMs)
    client.on("timeout", onIdle); upstream.on("timeout", onIdle)
  }
  // A side that already closed (e.g. the upstream hung up before the relay) closes the other.
  if (client.destroyed || upstream.destroyed) r.destroyBoth()
  r.up = flow(client, upstream)
  r.down = flow(upstream, client)
  // A side that had already ended before the relay started still ends the other side.
  if (client.readableEnded) upstream.end()
  if (upstream.readableEnded) client.end()
  r.closed()
  return r.abort.bind(r)
}

/** `startRelay` as an effect: completes when the relay ends; interruption destroys both sockets. */
export const relay = (client: Socket, upstream: Socket, idleMs: number): Effect.Effect<RelayResult> =>
  Effect.callback<RelayResult>((resume) => {
    const abort = startRelay(client, upstream, idleMs, (r) => resume(Effect.succeed(r)))
    return Effect.sync(abort)
  })
