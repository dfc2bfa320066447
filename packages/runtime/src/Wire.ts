/**
 * A per-connection byte buffer and the few socket operations a handshake needs.
 *
 * Details: `ByteReader` accumulates chunks; a codec's pure `parse(buffer)`
 * answers "need more", "message (size n)" or "error"; `take` consumes exactly
 * the message. `readMessage` feeds a paused socket into a reader (paused mode,
 * `socket.read()`), so messages split across reads, several messages in one
 * read and data the client sends before our reply all end up in the right
 * place; `reader.rest()` hands leftover bytes to the next stage (the relay
 * writes them to the upstream first).
 *
 * Gotchas: `readMessage` removes its `readable` listener before it resumes,
 * so a later native `pipe` sees a stream that is not flowing and starts it.
 * `closeWith` ends the socket, drains what the peer still sends (so the kernel
 * does not answer unread data with RST and eat our reply) and destroys it once
 * the peer closes or after `lingerMs`.
 *
 * Note: shared by the protocol packages (`@proxyd/socks`, `@proxyd/http`,
 * which do not import each other); `readSome`, `takeUpTo` and `unshift` are
 * for streaming HTTP bodies, `awaitClose` for a SOCKS UDP control connection.
 */
import type { Socket } from "node:net"
import { Effect } from "effect"

export type Parse<T> =
  | { readonly k: "more" }
  | { readonly k: "ok"; readonly value: T; readonly size: number }
  | { readonly k: "error"; readonly code: string; readonly message: string }

export const more = { k: "more" } as const
export const ok = <T>(value: T, size: number): Parse<T> => ({ k: "ok", value, size })
export const fail = (code: string, message: string): Parse<never> => ({ k: "error", code, message })

const EMPTY = Buffer.alloc(0)

export class ByteReader {
  private buf: Buffer = EMPTY
  get size(): number { return this.buf.length }
  push(chunk: Buffer): void {
    this.buf = this.buf.length === 0 ? chunk : Buffer.concat([this.buf, chunk])
  }
  /** Parses from the front; consumes the message when it is complete. */
  take<T>(parse: (b: Buffer) => Parse<T>): Parse<T> {
    const r = parse(this.buf)
    if (r.k === "ok") this.buf = this.buf.subarray(r.size)
    return r
  }
  /** Removes and returns up to `n` buffered bytes. */
  takeUpTo(n: number): Buffer {
    const out = this.buf.subarray(0, n)
    this.buf = this.buf.subarray(out.length)
    return out
  }
  /** Puts bytes back at the front. */
  unshift(b: Buffer): void {
    if (b.length > 0) this.buf = this.buf.length === 0 ? b : Buffer.concat([b, this.buf])
  }
  /** Removes and returns everything buffered. */
  rest(): Buffer {
    const b = this.buf
    this.buf = EMPTY
    return b
  }
}

export type ReadResult<T> = Exclude<Parse<T>, { readonly k: "more" }> | { readonly k: "eof" }

export const EOF = { k: "eof" } as const

/**
 * Reads from a paused socket into `reader` until `step` answers (anything but `undefined`), or
 * the socket ends (`EOF`), then calls `done` once (at once when buffered bytes already answer).
 * `step` looks at the reader (`take`s what it consumes) each time bytes arrive, so one read
 * loop can take several messages in turn (a SOCKS5 greeting, the method reply written from
 * inside `step`, then the request). Returns a cancel function (removes the listeners; `done`
 * is not called). The callback form of `readWith` (the express path, `Inbound.ExpressContext`).
 */
export const readNow = <T>(socket: Socket, reader: ByteReader, step: (reader: ByteReader) => T | undefined, done: (r: T | typeof EOF) => void): () => void => {
  const first = step(reader)
  if (first !== undefined) { done(first); return noop }
  if (socket.destroyed || socket.readableEnded) { done(EOF); return noop }
  // Bytes already buffered (put back by sniffing, or sent early) answer without listeners.
  if (socket.readableLength > 0) {
    for (let i = 0; i < 1024; i++) {
      const chunk = socket.read() as Buffer | null
      if (chunk === null) break
      reader.push(chunk)
      const r = step(reader)
      if (r !== undefined) { done(r); return noop }
    }
  }
  let over = false
  const finish = (r: T | typeof EOF) => {
    if (over) return
    over = true
    cleanup()
    done(r)
  }
  const onReadable = () => {
    for (let i = 0; i < 1024 && !over; i++) {
      const chunk = socket.read() as Buffer | null
      if (chunk === null) return
      reader.push(chunk)
      const r = step(reader)
      if (r !== undefined) return finish(r)
    }
  }
  const onEnd = () => finish(EOF)
  const cleanup = () => {
    over = true
    socket.off("readable", onReadable)
    socket.off("end", onEnd)
    socket.off("close", onEnd)
    socket.off("error", onEnd)
  }
  socket.on("readable", onReadable)
  socket.on("end", onEnd)
  socket.on("close", onEnd)
  socket.on("error", onEnd)
  onReadable()
  return cleanup
}

const noop = (): void => {}

/** `readNow` as an effect (interruption removes the listeners). */
export const readWith = <T>(socket: Socket, reader: ByteReader, step: (reader: ByteReader) => T | undefined): Effect.Effect<T | typeof EOF> =>
  Effect.callback<T | typeof EOF>((resume) => {
    const cancel = readNow(socket, reader, step, (r) => resume(Effect.succeed(r)))
    return cancel === noop ? undefined : Effect.sync(cancel)
  })

/** Reads from a paused socket into `reader` until `parse` answers a message or an error, or the socket ends. */
export const readMessage = <T>(socket: Socket, reader: ByteReader, parse: (b: Buffer) => Parse<T>): Effect.Effect<ReadResult<T>> =>
  readWith(socket, reader, (r): ReadResult<T> | undefined => {
    const m = r.take(parse)
    return m.k === "more" ? undefined : m
  })

/** The next bytes from a paused socket (buffered ones first); `undefined` at the end of the stream. */
export const readSome = (socket: Socket, reader: ByteReader): Effect.Effect<Buffer | undefined> =>
  Effect.map(readMessage(socket, reader, (b) => (b.length > 0 ? ok(b, b.length) : more)), (r) => (r.k === "ok" ? r.value : undefined))

/**
 * Writes with backpressure: answers at once while the socket's buffer is below
 * its high-water mark (no callback, no extra tick: handshake replies), else
 * when it drains. False when the socket is already closed or fails before
 * draining; a write that fails later shows as a destroyed socket.
 */
export const write = (socket: Socket, data: Uint8Array | string): Effect.Effect<boolean> => {
  if (socket.destroyed || socket.writableEnded) return Effect.succeed(false)
  if (socket.write(data)) return Effect.succeed(true)
  return Effect.callback<boolean>((resume) => {
    const done = (ok: boolean) => () => {
      socket.off("drain", onDrain)
      socket.off("close", onClose)
      resume(Effect.succeed(ok))
    }
    const onDrain = done(true)
    const onClose = done(false)
    if (socket.destroyed) return onClose()
    socket.once("drain", onDrain)
    socket.once("close", onClose)
    return Effect.sync(() => {
      socket.off("drain", onDrain)
      socket.off("close", onClose)
    })
  })
}

/**
 * Runs `effect` (a handshake reading from `socket`) under a deadline that destroys the socket when it
 * passes (after calling `onTimeout`), so pending reads end; `timedOut` says whether it did. No fiber is forked (unlike
 * `Effect.timeout`), which matters once per connection. `ms` undefined: no deadline here (the
 * runtime enforces one: `SessionContext.enforcesHandshakeDeadline`).
 */
export const withDeadline = <A>(socket: Socket, ms: number | undefined, effect: Effect.Effect<A>, onTimeout?: () => void): Effect.Effect<{ readonly value: A; readonly timedOut: boolean }> =>
  ms === undefined ? Effect.map(effect, (value) => ({ value, timedOut: false })) : Effect.suspend(() => {
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      onTimeout?.()
      socket.destroy()
    }, ms)
    return effect.pipe(
      Effect.map((value) => ({ value, timedOut })),
      Effect.ensuring(Effect.sync(() => clearTimeout(timer))),
    )
  })

/** Sends a final reply (if any), then closes: see the module's Gotchas. */
export const closeWith = (socket: Socket, data?: Uint8Array | string, lingerMs = 2000): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    if (socket.destroyed) return resume(Effect.void)
    const timer = setTimeout(() => socket.destroy(), lingerMs)
    timer.unref()
    socket.once("close", () => {
      clearTimeout(timer)
      resume(Effect.void)
    })
    socket.on("error", () => socket.destroy())
    const flushed = () => {
      if (socket.readableEnded) socket.destroy()
    }
    if (data === undefined) socket.end(flushed)
    else socket.end(data, flushed)
    socket.on("end", () => {
      if (socket.writableFinished) socket.destroy()
    })
    socket.resume()
  })

/** Waits until the socket ends or closes, discarding anything it sends (a SOCKS control connection). */
export const awaitClose = (socket: Socket): Effect.Effect<void> =>
  Effect.callback<void>((resume) => {
    if (socket.destroyed || socket.readableEnded) return resume(Effect.void)
    const done = () => {
      socket.off("end", done)
      socket.off("close", done)
      socket.off("error", done)
      resume(Effect.void)
    }
    socket.on("end", done)
    socket.on("close", done)
    socket.on("error", done)
    socket.resume()
    return Effect.sync(() => {
      socket.off("end", done)
      socket.off("close", done)
      socket.off("error", done)
    })
  })
