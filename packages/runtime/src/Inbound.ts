/**
 * The interface between the runtime and inbound protocol handlers (SOCKS, HTTP).
 *
 * Details: a handler owns the conversation with one client connection
 * (handshake, replies, framing, keep-alive) and asks the runtime for
 * everything else through `SessionContext`. The runtime knows no protocol; a
 * protocol package knows only this module (and the rules `Request`/`Decision`
 * types).
 *
 * Gotchas: the client socket arrives paused (`pauseOnConnect`). Read it with
 * `socket.read()` in paused mode or through a per-connection buffer; never
 * attach a `data` listener before handing the socket to `relay` (it would
 * switch the stream to flowing mode and bytes could be lost).
 */
import type { Socket } from "node:net"
import type { Effect } from "effect"
import type { Ir } from "@proxyd/rules"
import type { OutboundError } from "./Errors.ts"
import type { ByteReader } from "./Wire.ts"

export type ProtocolName = "socks5" | "socks4" | "http"

/** What a handler knows about the request; the runtime adds time, listener, source and facts. */
export interface RequestInput {
  readonly command: Ir.Command
  readonly dstHost: string
  readonly dstPort: number
  readonly protocol: ProtocolName
}

export interface AuthResult {
  readonly ok: boolean
  readonly user?: string
  readonly groups?: ReadonlyArray<string>
}

export interface Decided {
  readonly decision: Ir.Decision
  /** The full request as evaluated (with user, source, listener, time, facts). */
  readonly request: Ir.Request
  /** The address the policy resolved the name to, if it did; the outbound connects to exactly it. */
  readonly resolved?: string
}

export interface Connected {
  readonly socket: Socket
  /** Local address/port of the outbound socket (SOCKS replies carry it as BND.ADDR/BND.PORT). */
  readonly localAddress: string
  readonly localPort: number
  readonly remoteAddress: string
  readonly remotePort: number
}

export interface RelayStats { readonly bytesUp: number; readonly bytesDown: number }

/** A UDP path through an outbound (SOCKS5 UDP ASSOCIATE through an upstream proxy). */
/**
 * BIND through an upstream (`via` a single SOCKS upstream): the upstream's
 * bound address (our first reply), then the peer it accepted (our second).
 */
export interface UpstreamBind {
  readonly host: string
  readonly port: number
  /** Waits for the upstream's second reply; then `socket` carries the peer's bytes (early bytes intact). */
  accepted(timeoutMs: number): Effect.Effect<{ readonly host: string; readonly port: number; readonly socket: Socket }, OutboundError>
  /** Ends the control connection (when the handler gives up before `accepted`); idempotent. */
  close(): void
}

export interface UdpChannel {
  /** Sends one datagram to host:port (a name travels as a name). */
  send(host: string, port: number, data: Buffer): void
  /** Datagrams from the far side, with the address the upstream says they came from. */
  onMessage(cb: (host: string, port: number, data: Buffer) => void): void
  /** Called once when the path ends (the upstream closed its control connection). */
  onClose(cb: () => void): void
  /** Ends the path; idempotent. */
  close(): void
}

/**
 * Gotcha: the runtime's context is a class instance (one object per connection, no closures):
 * call its methods on it (`ctx.decide(x)`), never detached (`const f = ctx.decide`).
 */
export interface SessionContext {
  readonly id: string
  readonly listener: string
  readonly srcIp: string
  readonly srcPort: number
  /** The local address the client connected to (UDP ASSOCIATE binds its relay there). */
  readonly localAddress: string
  /** Whether the listener requires authentication, and whether it offers it at all. */
  readonly auth: "required" | "optional" | "none"
  /** Constant-time credential check against the listener's auth source. Unknown users cost the same as known ones. */
  authenticate(user: string, pass: string): Effect.Effect<AuthResult>
  /** Records the authenticated identity for policy decisions and logs. */
  setUser(user: string | undefined, groups?: ReadonlyArray<string>): void
  /** Evaluates the policy (fetching facts such as DNS as the policy needs them). */
  decide(input: RequestInput): Effect.Effect<Decided>
  /** Opens the outbound connection the decision asks for (allow, redirect, via, tor). Fails for block. */
  connect(decided: Decided): Effect.Effect<Connected, OutboundError>
  /**
   * For `command udp` decisions an outbound provider carries (`via` a SOCKS5
   * upstream): a UDP path. Fails with `CommandNotSupported` when none does.
   * The handler closes the channel when the association ends. Optional for
   * test doubles; the runtime always provides it.
   */
  connectUdp?(decided: Decided): Effect.Effect<UdpChannel, OutboundError>
  /**
   * For `command bind` decisions an outbound provider carries (`via` a SOCKS
   * upstream): BIND at the upstream. Fails with `CommandNotSupported` when
   * none does. Optional for test doubles; the runtime always provides it.
   */
  connectBind?(decided: Decided): Effect.Effect<UpstreamBind, OutboundError>
  /**
   * Hands both sockets to the relay (pipe both ways until both directions end, with the idle
   * timeout). The runtime starts it when the handler returns, so call it last, at most once, and
   * return; the connection lasts until the relay ends. (A test double may relay before answering.)
   */
  relay(client: Socket, upstream: Socket): Effect.Effect<void>
  /** Adds fields to the connection's close log line (never secrets). */
  note(fields: Readonly<Record<string, unknown>>): void
  readonly handshakeTimeoutMs: number
  /**
   * True when the runtime itself ends the connection once `handshakeTimeoutMs` has passed since
   * accept (it interrupts the handler and writes outcome `handshake-timeout`): a handler need not
   * time its handshake again. Absent (test doubles): the handler bounds its handshake itself.
   */
  readonly enforcesHandshakeDeadline?: boolean
  /**
   * The bytes the runtime already read from the client to pick the protocol (a mixed listener),
   * for a handler that `takesFirstBytes`: it starts its parsing with them (they are no longer in
   * the socket). Empty when there are none; the second call returns nothing. Absent in test doubles.
   */
  firstBytes?(): Buffer
}

/**
 * The express path's context (the same connection object as the `SessionContext`): the common
 * request served on callbacks, without a fiber. The handler reads with `readNow`, decides with
 * `decideNow`, connects with `connectNow` and ends in exactly ONE of `relayNow` (the relay
 * starts at once), `fallback` (the rest of the conversation as an effect, run like `handle`:
 * the handshake deadline, shutdown and the close line apply as there) or `endNow` (the
 * connection is over; the handler closed the client itself). Whenever the express path meets
 * anything it does not do (authentication, a fact to fetch, an outbound that must wait, an
 * error reply), the handler hands the rest to `fallback`, so behaviour is the effect path's.
 */
export interface ExpressContext extends SessionContext {
  /** The sniffed bytes (a mixed listener), else empty: an express handler always starts with them. */
  firstBytes(): Buffer
  /** Reads the client into `reader` until `step` answers or the stream ends (`Wire.readNow`); cancelled when the connection ends first. */
  readNow<T>(reader: ByteReader, step: (reader: ByteReader) => T | undefined, done: (r: T | { readonly k: "eof" }) => void): void
  /** Like `decide` when the policy needs no fact it lacks; else `undefined` and nothing is recorded (use `decide` in `fallback`). */
  decideNow(input: RequestInput): Decided | undefined
  /**
   * Like `connect` when the outbound can start without waiting for anything else (a literal
   * address or the resolved one, direct): calls `done` once with the connection or the error.
   * False when it cannot (nothing started: use `connect` in `fallback`).
   */
  connectNow(decided: Decided, done: (r: Connected | OutboundError) => void): boolean
  /** Starts the relay now (the connection lasts until it ends). */
  relayNow(client: Socket, upstream: Socket): void
  /** Continues in a fiber with the effect (which answers the client and ends like a handler's `handle`). */
  fallback(effect: Effect.Effect<void>): void
  /** The connection is over without a relay (the handler has closed or is closing the client). */
  endNow(): void
}

export interface InboundHandler {
  readonly protocol: ProtocolName
  /** Serves one client connection to its end. Errors are the handler's to answer on the wire; the returned effect never fails. */
  handle(client: Socket, ctx: SessionContext): Effect.Effect<void>
  /**
   * Optional: writes the protocol's failure reply to a connection the runtime
   * refuses before serving it (connection limits), e.g. SOCKS5 `05 FF`, HTTP
   * 503, and ends the socket. Synchronous; the runtime destroys the socket
   * shortly after. Without it the runtime just closes the connection.
   */
  reject?(client: Socket): void
  /**
   * True: the handler reads `ctx.firstBytes()` before anything from the socket, so a mixed
   * listener hands it the sniffed bytes directly. Otherwise the runtime puts them back into the
   * socket (`unshift`) and the handler reads them from there.
   */
  readonly takesFirstBytes?: boolean
  /**
   * Optional: serves the connection on the express path (`ExpressContext`) instead of `handle`,
   * on listeners without TLS. Must behave exactly as `handle` would (it falls back to effects
   * for everything but the common case). Returns at once; the connection goes on in callbacks.
   */
  express?(client: Socket, ctx: ExpressContext): void
}
