/**
 * Mixed listeners: pick the protocol from the first byte.
 *
 * Details: `readFirst` takes the first bytes out of the paused socket (the session hands them
 * to a handler that `takesFirstBytes`, or puts them back for one that does not). `peekByte`
 * (and `sniff`, used for over-limit rejections) waits on the paused socket (`'readable'` +
 * `read()`) for the first bytes, puts them back with `unshift`, removes its listeners and
 * answers at once (no extra event-loop turn), so a reader sees the same bytes from the start
 * and a later `pipe` works (the socket stays in paused mode). 0x05 → socks5, 0x04 → socks4,
 * anything else → http. `undefined` when the client closes before sending anything.
 * Interruption removes the listeners (the caller destroys the socket).
 *
 * Gotchas: Node emits 'readable' for already-buffered bytes only when a
 * listener is attached while `readableListening` is false, which Node resets
 * on the tick after a listener is removed. A handler that attaches its own
 * 'readable' listener in the same tick therefore gets no event for the bytes
 * put back: it must call `socket.read()` before waiting, as
 * `Wire.readMessage` does.
 */
import type { Socket } from "node:net"
import { Effect } from "effect"
import type { ProtocolName } from "./Inbound.ts"
import { ByteReader, readWith } from "./Wire.ts"

export const protocolOf = (first: number): ProtocolName => (first === 0x05 ? "socks5" : first === 0x04 ? "socks4" : "http")

/** The first byte the client sends (every buffered byte is put back). */
export const peekByte = (socket: Socket): Effect.Effect<number | undefined> =>
  Effect.callback<number | undefined>((resume) => {
    const cleanup = () => {
      socket.off("readable", onReadable)
      socket.off("end", onEnd)
      socket.off("close", onEnd)
      socket.off("error", onEnd)
    }
    const onReadable = () => {
      const b = socket.read() as Buffer | null
      if (b === null || b.length === 0) return
      cleanup()
      socket.unshift(b)
      resume(Effect.succeed(b[0]!))
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

/**
 * The first bytes the client sends, taken out of the socket (not put back): the session hands
 * them to a handler that `takesFirstBytes`, or puts them back itself for one that does not.
 * `undefined` when the client closes before sending anything.
 */
export const readFirst = (socket: Socket): Effect.Effect<Buffer | undefined> =>
  Effect.map(readWith(socket, new ByteReader(), (r) => (r.size > 0 ? r.rest() : undefined)), (b) => (b instanceof Buffer ? b : undefined))
