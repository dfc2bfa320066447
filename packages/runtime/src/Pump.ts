/**
 * One direction of a relay: reads a plain socket into reusable buffers and
 * writes each read to the other socket, with backpressure.
 *
 * Why: a default Node read allocates a fresh 64 KiB buffer for every read
 * (then shrinks it, then the GC frees it) and `pipe` pushes each one through
 * the Readable machinery. Reading into a buffer we own, up to 512 KiB at a
 * time, makes fewer read and write syscalls per GiB, no allocation per read,
 * and almost no JS per byte (a `socket.write` per read).
 *
 * Details: the reading side uses Node's own `onread` mode (the mode
 * `net.connect({ onread })` sets up), switched on for an already-open socket
 * through the socket's `kBuffer`/`kBufferCb`/`kBufferGen` fields and
 * `_handle.useUserBuffer` (Node internals; `canPump` checks they look as
 * expected, and the caller falls back to `pipe` when they do not — TLS
 * sockets, sockets with a `data` listener, handles without `useUserBuffer`).
 * Buffers: a connection starts on one module-wide 64 KiB buffer shared by
 * every pumping socket; a read from it is copied before it is written (the
 * shared buffer is free again as soon as the callback returns, so idle and
 * chatty connections hold no buffer of their own). A read that fills the
 * shared buffer (bulk traffic) moves the direction to private 512 KiB
 * buffers; a small read moves it back and drops them. A private buffer is
 * read into again only once the destination holds no unwritten bytes
 * (`writableLength === 0`: every earlier write has reached the kernel), else
 * the next read goes into a spare one. Byte counts stay exact: the handle
 * counts reads, and every byte is written with `dst.write`. Half-close:
 * `end` on the source ends the destination. Idle timers: Node refreshes the
 * source's timer on each read and the destination's on each write, as with
 * `pipe`. Memory: a direction moving bulk data holds its read buffer, the
 * ones queued writes still use, and up to two spares (typically 2-3 buffers,
 * 1-1.5 MiB) until a small read sends it back to the shared buffer or the
 * socket closes.
 *
 * Per connection: one `Pump` object per direction, reachable from the
 * source (`kOut`) and the destination (`kIn`) sockets; the read callback and
 * the `end`/`drain` listeners are module functions (Node calls them with
 * `this` = the socket), so a pump allocates no closures. `kBufferGen` is
 * called unbound right after `kBufferCb`: the callback leaves its pump in the
 * module variable `genFor` for it.
 *
 * Gotchas: bytes the source stream already buffered (a handler's `unshift`,
 * or data read before the relay) are written first, synchronously, before
 * the switch, so order is kept. Never reuse a buffer a pending write may
 * still reference: the only test is `dst.writableLength === 0`.
 */
import type { Socket } from "node:net"
import { TLSSocket } from "node:tls"

/** The shared buffer's size: a read that fills it counts as bulk. */
export const SHARED_SIZE = 64 * 1024
/** A private buffer's size (one read, one write, at most). */
export const PRIVATE_SIZE = 512 * 1024
/** A read shorter than this moves a direction back to the shared buffer. */
const SMALL = 16 * 1024

interface Keys { readonly buffer: symbol; readonly cb: symbol; readonly gen: symbol }

let keys: Keys | undefined
let shared: Buffer | undefined

const keysOf = (s: Socket): Keys | undefined => {
  if (keys !== undefined) return keys
  let buffer: symbol | undefined, cb: symbol | undefined, gen: symbol | undefined
  for (const k of Object.getOwnPropertySymbols(s)) {
    if (k.description === "kBuffer") buffer = k
    else if (k.description === "kBufferCb") cb = k
    else if (k.description === "kBufferGen") gen = k
  }
  if (buffer === undefined || cb === undefined || gen === undefined) return undefined
  keys = { buffer, cb, gen }
  return keys
}

type Fields = Record<symbol, unknown> & { _handle?: { useUserBuffer?: unknown } | null }

/** Whether `src` can be read with `pump` (a plain, open socket in Node's default read mode). */
export const canPump = (src: Socket): boolean => {
  if (src instanceof TLSSocket || src.destroyed || src.connecting || src.readableEnded) return false
  if (src.listenerCount("data") > 0) return false
  const f = src as unknown as Fields
  if (typeof f._handle?.useUserBuffer !== "function") return false
  const k = keysOf(src)
  if (k === undefined || !Object.hasOwn(src, k.buffer)) return false
  return f[k.buffer] === null && f[k.cb] === null && f[k.gen] === null
}

/** Whether `s` is being read by a `pump` (Node's `onread` mode is on). */
export const pumping = (s: Socket): boolean => {
  const k = keysOf(s)
  return k !== undefined && (s as unknown as Fields)[k.cb] !== null && (s as unknown as Fields)[k.cb] !== undefined
}

/** Where a socket's pump state hangs: on its source (`kOut`) and its destination (`kIn`). */
const kOut = Symbol("proxyd.pumpOut")
const kIn = Symbol("proxyd.pumpIn")

/**
 * One direction's state: a class instance, so a pump allocates one object and
 * no closures (Node calls `kBufferCb` as a method of the source socket, the
 * listeners with `this` = the emitter; `kBufferGen` is called unbound, right
 * after `kBufferCb`, so it finds its state in `genFor`).
 */
export class Pump {
  readonly src: Socket
  readonly dst: Socket
  cur: Buffer
  lastN = 0
  spares: Array<Buffer> | undefined = undefined
  pending: Array<Buffer> | undefined = undefined
  constructor(src: Socket, dst: Socket, cur: Buffer) { this.src = src; this.dst = dst; this.cur = cur }
  /** Detaches the pump's listeners. */
  stop(): void {
    this.dst.off("drain", onDrain)
    this.src.off("end", onEnd)
  }
}

let genFor: Pump | undefined

const reclaim = (p: Pump): void => {
  const pending = p.pending
  if (pending !== undefined && pending.length > 0 && p.dst.writableLength === 0) {
    const spares = p.spares ??= []
    for (const b of pending) if (spares.length < 2) spares.push(b)
    p.pending = undefined
  }
}

function onRead(this: Socket, n: number, buf: Buffer): boolean {
  const p = (this as unknown as Record<symbol, Pump>)[kOut]!
  genFor = p
  p.lastN = n
  reclaim(p)
  // The shared buffer is read into by every pumping socket: write a copy.
  return p.dst.write(buf === shared ? Buffer.from(buf.subarray(0, n)) : buf.subarray(0, n))
}

// Called by Node right after `onRead` (unbound): the buffer for the next read.
const next = (): Buffer => {
  const p = genFor!
  genFor = undefined
  const sh = shared!
  if (p.cur === sh) {
    if (p.lastN < SHARED_SIZE) return sh
  } else if (p.lastN < SMALL) {
    p.spares = undefined
    p.pending = undefined
    return p.cur = sh
  } else {
    reclaim(p)
    if (p.dst.writableLength === 0) return p.cur
    ;(p.pending ??= []).push(p.cur)
  }
  return p.cur = p.spares?.pop() ?? Buffer.allocUnsafeSlow(PRIVATE_SIZE)
}

function onDrain(this: Socket): void {
  const p = (this as unknown as Record<symbol, Pump | undefined>)[kIn]
  if (p === undefined) return
  reclaim(p)
  if (!p.src.destroyed) p.src.resume()
}

function onEnd(this: Socket): void {
  const p = (this as unknown as Record<symbol, Pump | undefined>)[kOut]
  if (p !== undefined) p.dst.end()
}

/**
 * Pumps `src` into `dst` until `src` ends (then ends `dst`). Call only when
 * `canPump(src)`. Returns the pump; its `stop()` detaches the listeners.
 */
export const pump = (src: Socket, dst: Socket): Pump => {
  const k = keysOf(src)!
  const f = src as unknown as Fields
  const sh = shared ??= Buffer.allocUnsafeSlow(SHARED_SIZE)
  const p = new Pump(src, dst, sh)
  // Bytes the stream already holds go first.
  for (let i = 0; i < 1_000_000; i++) {
    const c = src.read() as Buffer | null
    if (c === null) break
    dst.write(c)
  }
  f[kOut] = p
  ;(dst as unknown as Fields)[kIn] = p
  f[k.buffer] = sh
  f[k.cb] = onRead
  f[k.gen] = next
  ;(f._handle as unknown as { useUserBuffer(b: Buffer): void }).useUserBuffer(sh)
  dst.on("drain", onDrain)
  src.on("end", onEnd)
  src.resume()
  return p
}
