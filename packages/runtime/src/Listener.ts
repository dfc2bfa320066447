/**
 * A TCP listener over `node:net`: one fiber per connection, limits, drain-then-interrupt.
 *
 * Details: the server is `pauseOnConnect`, `allowHalfOpen` and `noDelay` (a
 * relay forwards what it reads at once; Nagle would hold a small reply behind
 * an unacknowledged one); each accepted
 * socket gets a no-op `error` listener (an unhandled socket error would crash
 * the process) and is admitted by the `Gate`s (overall and per source IP, one
 * gate per listener plus one shared by all). Beyond a limit the connection is
 * handed to `onReject` (the protocol's failure reply) and never counted;
 * existing connections are untouched. Admitted connections run `onConnection`
 * in a fiber of their own, tracked in a `LiveList` (not Effect's `FiberSet`, whose `Set`
 * made every connection's objects survive scavenges: LiveList.ts). `close(drainMs)` stops accepting, waits for the open
 * connections up to `drainMs`, then interrupts the rest.
 * A `preamble` (PROXY protocol) runs first, in the connection's fiber: it
 * yields the client's address, and only then are the gates entered, so
 * per-IP limits count the carried address. Connections in their preamble are
 * open (drained, interrupted) but not yet counted by the gates.
 * A connection can outlive its fiber (`ConnectionHandle.detach`: a relay runs on plain
 * callbacks once the handshake is over): it stays counted (gates, `active`) until it ends,
 * `close` drains it like a fiber and then calls its `abort`.
 */
import * as net from "node:net"
import { Effect, Fiber } from "effect"
import { LiveList, type LiveNode } from "./LiveList.ts"

/** Counts connections overall and per source IP against limits read at admission time. */
export interface Gate {
  tryEnter(ip: string): boolean
  leave(ip: string): void
  readonly active: () => number
}

export const makeGate = (limits: () => { readonly max: number; readonly perIp: number }): Gate => {
  let total = 0
  const perIp = new Map<string, number>()
  return {
    tryEnter: (ip) => {
      const l = limits()
      const n = perIp.get(ip) ?? 0
      if (total >= l.max || n >= l.perIp) return false
      total++
      perIp.set(ip, n + 1)
      return true
    },
    leave: (ip) => {
      total--
      const n = (perIp.get(ip) ?? 1) - 1
      if (n <= 0) perIp.delete(ip)
      else perIp.set(ip, n)
    },
    active: () => total,
  }
}

/** A client's address: the TCP peer, or the one a PROXY protocol header carries. */
export interface Peer { readonly ip: string; readonly port: number }

export interface ServeOptions {
  readonly host: string
  readonly port: number
  readonly gates: ReadonlyArray<Gate>
  /**
   * Called at accept: `undefined` when the connection has no preamble now,
   * else an effect reading it that yields the client's address, or
   * `undefined` to drop the connection (the preamble logged why).
   */
  readonly preamble?: (socket: net.Socket) => Effect.Effect<Peer | undefined> | undefined
  readonly onConnection: (socket: net.Socket, peer: Peer, acceptedAt: number, handle: ConnectionHandle) => Effect.Effect<void>
  /**
   * Optional, tried first for a connection without a preamble: serves it on callbacks (it
   * `detach`es at once) and returns true, or returns false having done nothing (then
   * `onConnection` runs in a fiber). Saves the fiber of the express path.
   */
  readonly onConnectionNow?: (socket: net.Socket, peer: Peer, acceptedAt: number, handle: ConnectionHandle) => boolean
  readonly onReject: (socket: net.Socket, peer: Peer) => void
  /** Bind with `SO_REUSEPORT` (worker threads each bind the same port; the kernel spreads connections). */
  readonly reusePort?: boolean
}

/** Lets a connection go on after its fiber has ended (see the module's Details). */
export interface ConnectionHandle {
  /**
   * Keeps the connection open (counted, drained at close) after its fiber returns: `abort`
   * ends it at shutdown (called once, after the drain deadline). Returns `done`, which the
   * connection calls when it ends by itself (idempotent).
   */
  detach(abort: () => void): () => void
}

export interface RunningListener {
  readonly host: string
  readonly port: number
  readonly active: () => number
  /** Stops accepting at once (the port is free again); open connections continue. */
  stop(): void
  /** Stops accepting, drains up to `drainMs`, then interrupts the rest. */
  close(drainMs: number): Effect.Effect<void>
}

export class ListenError extends Error {
  readonly code: string | undefined
  constructor(message: string, code: string | undefined) {
    super(message)
    this.code = code
  }
}

/** A socket's `error` listener until a session takes over (one function for all, not a closure per connection). */
const ignore = (): void => {}

export const serve = (opts: ServeOptions): Effect.Effect<RunningListener, ListenError> =>
  Effect.gen(function*() {
    const runFork = Effect.runForkWith(yield* Effect.context<never>())
    let open = 0
    /** The connections' fibers, and the connections that outlived their fiber (LiveLists, not a FiberSet and a Set: LiveList.ts). */
    const fibers = new LiveList<Fiber.Fiber<void>>()
    const detached = new LiveList<Admitted>()
    /** Set while `drained` waits: called when either list becomes empty. */
    let onEmptied: (() => void) | undefined
    let fibersClosed = false
    /** Runs one connection's effect in a fiber of its own (after `close` interrupted them all: destroys the socket instead). */
    const run = (socket: net.Socket, effect: Effect.Effect<void>): void => {
      if (fibersClosed) { socket.destroy(); return }
      const fiber = runFork(effect)
      const node = fibers.add(fiber)
      fiber.addObserver(() => {
        node.remove()
        if (fibers.size === 0) onEmptied?.()
      })
    }
    const server = net.createServer({ pauseOnConnect: true, allowHalfOpen: true, noDelay: true })
    /** Enters every gate (answers the gates, shared), or none (then the connection is rejected). */
    const enter = (socket: net.Socket, peer: Peer): ReadonlyArray<Gate> | undefined => {
      const gates = opts.gates
      for (let i = 0; i < gates.length; i++) {
        if (!gates[i]!.tryEnter(peer.ip)) {
          for (let j = 0; j < i; j++) gates[j]!.leave(peer.ip)
          opts.onReject(socket, peer)
          return undefined
        }
      }
      return gates
    }
    /** One accepted connection's bookkeeping: released once, when its fiber ends or (detached) when it ends. */
    class Admitted implements ConnectionHandle {
      entered: ReadonlyArray<Gate> = []
      ip = ""
      released = false
      /** Set once the connection detached. */
      abort: (() => void) | undefined
      /** Its place in `detached`. */
      node: LiveNode<Admitted> | undefined
      release(): void {
        if (this.released) return
        this.released = true
        for (const e of this.entered) e.leave(this.ip)
        open--
        if (this.node !== undefined) {
          this.node.remove()
          this.node = undefined
          if (detached.size === 0) onEmptied?.()
        }
      }
      detach(abort: () => void): () => void {
        this.abort = abort
        this.node ??= detached.add(this)
        return () => this.release()
      }
      /** The fiber's end: releases unless the connection was detached. */
      fiberDone(): void { if (this.abort === undefined) this.release() }
    }
    server.on("connection", (socket) => {
      socket.on("error", ignore)
      const acceptedAt = Date.now()
      const real: Peer = { ip: socket.remoteAddress ?? "", port: socket.remotePort ?? 0 }
      const pre = opts.preamble?.(socket)
      const a = new Admitted()
      if (pre === undefined) {
        const entered = enter(socket, real)
        if (entered === undefined) return
        a.entered = entered
        a.ip = real.ip
        open++
        if (opts.onConnectionNow?.(socket, real, acceptedAt, a) === true) {
          // It must have detached; if it did not, it holds nothing and is released now.
          if (a.abort === undefined) a.release()
          return
        }
        run(socket, Effect.ensuring(opts.onConnection(socket, real, acceptedAt, a), Effect.sync(() => a.fiberDone())))
        return
      }
      open++
      run(socket, pre.pipe(
        Effect.flatMap((peer) => {
          if (peer === undefined) return Effect.sync(() => { socket.destroy() })
          const entered = enter(socket, peer)
          if (entered === undefined) return Effect.void
          a.entered = entered
          a.ip = peer.ip
          return opts.onConnection(socket, peer, acceptedAt, a)
        }),
        Effect.onInterrupt(() => Effect.sync(() => { socket.destroy() })),
        Effect.ensuring(Effect.sync(() => a.fiberDone())),
      ))
    })
    /** Resolves when `list` is empty. */
    const emptied = (list: LiveList<unknown>): Effect.Effect<void> => Effect.callback<void>((resume) => {
      if (list.size === 0) return resume(Effect.void)
      onEmptied = () => { if (list.size === 0) { onEmptied = undefined; resume(Effect.void) } }
      return Effect.sync(() => { onEmptied = undefined })
    })
    const drained: Effect.Effect<void> = Effect.gen(function*() {
      // Fibers can still detach while being awaited; loop until neither kind is left.
      for (;;) {
        yield* emptied(fibers)
        if (detached.size === 0) return
        yield* emptied(detached)
      }
    })
    const bound = yield* Effect.callback<net.AddressInfo, ListenError>((resume) => {
      const onError = (e: NodeJS.ErrnoException) => resume(Effect.fail(new ListenError(`cannot listen on ${opts.host}:${opts.port}: ${e.code ?? e.message}`, e.code)))
      server.once("error", onError)
      server.listen({ host: opts.host, port: opts.port, ...(opts.reusePort === true ? { reusePort: true } : {}) }, () => {
        server.off("error", onError)
        server.on("error", () => {})
        resume(Effect.succeed(server.address() as net.AddressInfo))
      })
    })
    let closing = false
    let stopped = false
    const stop = () => {
      if (!stopped) { stopped = true; server.close() }
    }
    return {
      stop,
      host: bound.address,
      port: bound.port,
      active: () => open,
      close: (drainMs: number) => Effect.gen(function*() {
        if (closing) return
        closing = true
        yield* Effect.sync(stop)
        yield* drained.pipe(Effect.timeoutOrElse({ duration: drainMs, orElse: () => Effect.void }))
        fibersClosed = true
        yield* Fiber.interruptAll(fibers.values())
        for (const a of detached.values()) { a.abort?.(); a.release() }
      }),
    }
  })
