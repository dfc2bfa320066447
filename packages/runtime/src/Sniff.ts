/**
 * Mixed listeners: pick the protocol from the first byte, leaving it in the socket.
 *
 * Details: waits for exactly one byte on the paused socket (`'readable'` +
 * `read(1)`), puts it back with `unshift`, and removes its listeners, so the
 * handler reads the same bytes from the start and a later `pipe` works (the
 * socket stays in paused mode). 0x05 → socks5, 0x04 → socks4, anything else →
 * http. `undefined` when the client closes before sending anything.
 * Interruption removes the listeners (the caller destroys the socket).
 *
 * Gotchas: Node emits 'readable' for already-buffered bytes only when a
 * listener is attached while `readableListening` is false, which Node resets
 * on the tick after a listener is removed; so the result is delivered via
 * `setImmediate`. Handlers should still try `socket.read()` before waiting.
 */
import type { Socket } from "node:net"
import { Effect } from "effect"
import type { ProtocolName } from "./Inbound.ts"

export const protocolOf = (first: number): ProtocolName => (first === 0x05 ? "socks5" : first === 0x04 ? "socks4" : "http")

/** Reads one byte and unshifts it back. */
export const peekByte = (socket: Socket): Effect.Effect<number | undefined> =>
  Effect.callback<number | undefined>((resume) => {
    const cleanup = () => {
      socket.off("readable", onReadable)
      socket.off("end", onEnd)
      socket.off("close", onEnd)
      socket.off("error", onEnd)
    }
    const onReadable = () => {
      const b = socket.read(1) as Buffer | null
      if (b === null) return
      cleanup()
      socket.unshift(b)
      // Resume after Node's nextTick that clears `readableListening`: a handler
      // attaching its own 'readable' listener then gets an event for the
      // buffered bytes (same tick, it would wait for new data forever).
      setImmediate(() => resume(Effect.succeed(b[0]!)))
    }
    const onEnd = () => { cleanup(); resume(Effect.succeed(undefined)) }
    socket.on("readable", onReadable)
    socket.once("end", onEnd)
    socket.once("close", onEnd)
    socket.once("error", onEnd)
    return Effect.sync(cleanup)
  })

export const sniff = (socket: Socket): Effect.Effect<ProtocolName | undefined> =>
  Effect.map(peekByte(socket), (b) => (b === undefined ? undefined : protocolOf(b)))
