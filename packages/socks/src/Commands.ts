/**
 * CONNECT and BIND, shared by the SOCKS5 and SOCKS4 handlers; only the reply encoding differs.
 *
 * Details: CONNECT asks the policy (`ctx.decide`), refuses a block with the
 * protocol's "not allowed" reply, opens the outbound (`ctx.connect`, which
 * applies redirect/via/tor), answers with the outbound socket's real local
 * address, writes any bytes the client sent after its request (still in the
 * reader) to the upstream first, then relays. BIND asks the policy with
 * command `bind` for the expected peer, listens (see `Bind.ts`), answers
 * twice (bound address, then the peer's address) and relays. BIND under
 * `via` binds at the upstream (`ctx.connectBind`) and relays its two
 * replies; under `tor` it answers "command not supported".
 */
import type { Socket } from "node:net"
import { Effect, Result } from "effect"
import { Errors, type Inbound, Wire } from "@proxyd/runtime"
import * as Bind from "./Bind.ts"

export interface Replies {
  readonly ok: (host: string, port: number) => Buffer
  readonly fail: (reason: Errors.OutboundReason) => Buffer
}

const blocked = (decided: Inbound.Decided): Errors.OutboundReason | undefined => {
  const a = decided.decision.action
  if (a.k !== "block") return undefined
  return a.message === undefined ? { _tag: "Blocked" } : { _tag: "Blocked", message: a.message }
}

// Generator bodies are written once (Effect.fnUntraced), never per call: docs/design/runtime.md.
const refuse = Effect.fnUntraced(function*(client: Socket, ctx: Inbound.SessionContext, replies: Replies, reason: Errors.OutboundReason) {
  ctx.note({ outcome: reason._tag === "Blocked" ? "blocked" : "error", error: reason._tag })
  yield* Wire.closeWith(client, replies.fail(reason))
})

export const serveConnect = (
  client: Socket,
  ctx: Inbound.SessionContext,
  reader: Wire.ByteReader,
  input: Inbound.RequestInput,
  replies: Replies,
): Effect.Effect<void> => Effect.flatMap(ctx.decide(input), (decided) => connectDecided(client, ctx, reader, decided, replies))

/** CONNECT once decided: refuse a block, connect, answer, relay. */
const connectDecided = Effect.fnUntraced(function*(client: Socket, ctx: Inbound.SessionContext, reader: Wire.ByteReader, decided: Inbound.Decided, replies: Replies) {
  const block = blocked(decided)
  if (block !== undefined) return yield* refuse(client, ctx, replies, block)
  const r = yield* Effect.result(ctx.connect(decided))
  if (Result.isFailure(r)) return yield* refuse(client, ctx, replies, r.failure.reason)
  if (answer(client, reader, r.success, replies)) yield* ctx.relay(client, r.success.socket)
})

/** The success reply and the client's early bytes to the upstream (both paths); false when the client is gone (both sockets destroyed). */
const answer = (client: Socket, reader: Wire.ByteReader, up: Inbound.Connected, replies: Replies): boolean => {
  // The reply is ~10 bytes on a socket with nothing queued: it never waits for `drain`.
  if (client.destroyed || client.writableEnded) {
    up.socket.destroy()
    client.destroy()
    return false
  }
  client.write(replies.ok(up.localAddress, up.localPort))
  const early = reader.rest()
  if (early.length > 0) up.socket.write(early)
  return true
}

/**
 * CONNECT on the express path (`Inbound.ExpressContext`): decided and connected on callbacks
 * when the policy needs no fact and the outbound needs no wait; anything else (a fact to fetch,
 * a block, an outbound that must wait, a failed connect) continues as `serveConnect` does.
 */
export const connectExpress = (client: Socket, ctx: Inbound.ExpressContext, reader: Wire.ByteReader, input: Inbound.RequestInput, replies: Replies): void => {
  const decided = ctx.decideNow(input)
  if (decided === undefined) return ctx.fallback(serveConnect(client, ctx, reader, input, replies))
  const block = blocked(decided)
  if (block !== undefined) return ctx.fallback(refuse(client, ctx, replies, block))
  const started = ctx.connectNow(decided, (r) => {
    if (r instanceof Errors.OutboundError) return ctx.fallback(refuse(client, ctx, replies, r.reason))
    if (answer(client, reader, r, replies)) ctx.relayNow(client, r.socket)
    else ctx.endNow()
  })
  if (!started) ctx.fallback(connectDecided(client, ctx, reader, decided, replies))
}

/** BIND at the upstream: its bound address is our first reply, the peer it accepted our second; then relay. */
const bindUpstream = Effect.fnUntraced(function*(client: Socket, ctx: Inbound.SessionContext, reader: Wire.ByteReader, decided: Inbound.Decided, replies: Replies, timeoutMs: number) {
  if (ctx.connectBind === undefined) return yield* refuse(client, ctx, replies, { _tag: "CommandNotSupported" })
  const r = yield* Effect.result(ctx.connectBind(decided))
  if (Result.isFailure(r)) return yield* refuse(client, ctx, replies, r.failure.reason)
  const b = r.success
  // The client giving up ends the upstream's BIND too.
  const onClose = (): void => b.close()
  client.once("close", onClose)
  if (!(yield* Wire.write(client, replies.ok(b.host, b.port)))) {
    b.close()
    client.destroy()
    return
  }
  const a = yield* Effect.result(b.accepted(timeoutMs))
  client.off("close", onClose)
  if (Result.isFailure(a)) return yield* refuse(client, ctx, replies, a.failure.reason)
  const peer = a.success
  ctx.note({ bindPeer: `${peer.host}:${peer.port}` })
  if (!(yield* Wire.write(client, replies.ok(peer.host, peer.port)))) {
    peer.socket.destroy()
    return
  }
  const early = reader.rest()
  if (early.length > 0) peer.socket.write(early)
  yield* ctx.relay(client, peer.socket)
})

/** BIND's first reply (our listening address), then the expected peer's connection; undefined when the client left or none came. */
const announceAndAccept = Effect.fnUntraced(function*(client: Socket, replies: Replies, l: Bind.BindListener, expected: ReadonlySet<string> | "any", timeoutMs: number) {
  if (!(yield* Wire.write(client, replies.ok(l.host, l.port)))) return undefined
  return yield* Bind.acceptPeer(l, expected, client, timeoutMs)
})

export const serveBind = Effect.fnUntraced(function*(
  client: Socket,
  ctx: Inbound.SessionContext,
  reader: Wire.ByteReader,
  input: Inbound.RequestInput,
  replies: Replies,
  timeoutMs: number,
) {
  const decided = yield* ctx.decide(input)
  const block = blocked(decided)
  if (block !== undefined) return yield* refuse(client, ctx, replies, block)
  // Binding here instead would bypass the rule's route: `via` binds at the upstream, Tor cannot bind.
  const k = decided.decision.action.k
  if (k === "tor") {
    ctx.note({ bind_error: "Tor does not support BIND" })
    return yield* refuse(client, ctx, replies, { _tag: "CommandNotSupported" })
  }
  if (k === "via") return yield* bindUpstream(client, ctx, reader, decided, replies, timeoutMs)
  const expected = yield* Bind.expectedPeers(input.dstHost, decided.resolved)
  if (expected !== "any" && expected.size === 0) return yield* refuse(client, ctx, replies, { _tag: "DnsFailed", host: input.dstHost })
  const l = yield* Bind.listen(ctx.localAddress)
  if (l instanceof Error) return yield* refuse(client, ctx, replies, { _tag: "General", message: "bind failed" })
  const peer = yield* announceAndAccept(client, replies, l, expected, timeoutMs).pipe(Effect.ensuring(Effect.sync(() => l.server.close())))
  if (peer === undefined) return yield* refuse(client, ctx, replies, { _tag: "Timeout" })
  ctx.note({ bindPeer: `${peer.remoteAddress}:${peer.remotePort}` })
  if (!(yield* Wire.write(client, replies.ok(peer.remoteAddress ?? "0.0.0.0", peer.remotePort ?? 0)))) {
    peer.destroy()
    return
  }
  const early = reader.rest()
  if (early.length > 0) peer.write(early)
  yield* ctx.relay(client, peer)
})
