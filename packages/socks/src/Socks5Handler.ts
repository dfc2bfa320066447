/**
 * The SOCKS5 server side (RFC 1928, RFC 1929) over a `SessionContext`.
 *
 * Details: methods offered by the listener's auth: `required` → only 0x02
 * (user/pass), `optional` → 0x02 when the client offers it, else 0x00,
 * `none` → 0x00; nothing acceptable → `05 FF` and close. RFC 1929 replies
 * with version 0x01 and closes after a failure. The handshake (greeting, auth,
 * request) is bounded by `ctx.handshakeTimeoutMs`: by the runtime when it says so
 * (`ctx.enforcesHandshakeDeadline`), else here (the socket is destroyed: `Wire.withDeadline`).
 * Greeting, method reply and request are read in one loop (`FrontStep`). Commands: CONNECT and BIND (`Commands.ts`), UDP ASSOCIATE
 * (`Udp.ts`); any other → REP 0x07. Unknown ATYP → REP 0x08; an empty name or
 * one with control bytes → REP 0x04 (no DNS query). A request that is not
 * SOCKS5 closes without a reply. Every reply is complete and every failure
 * closes the socket.
 */
import type { Socket } from "node:net"
import { Effect } from "effect"
import { Errors, type Inbound, Wire } from "@proxyd/runtime"
import * as C from "./Socks5Codec.ts"
import { connectExpress, serveBind, serveConnect, type Replies } from "./Commands.ts"
import { localCounter, serveUdpAssociate, type UdpCounter } from "./Udp.ts"

export interface Socks5Options {
  /** How long BIND waits for the expected peer (default 60 s). */
  readonly bindTimeoutMs?: number
  /** UDP associations open at once per client IP (default 16); a function is read at each association (follows reloads). */
  readonly maxUdpAssociationsPerIp?: number | (() => number)
  /**
   * Counts UDP associations per client IP (given `maxUdpAssociationsPerIp` as the per-IP limit);
   * default: this process's own map. `workers` pass a gate over their shared table.
   */
  readonly udpCounter?: (limits: () => { readonly max: number; readonly perIp: number }) => UdpCounter
}

const replies: Replies = {
  ok: (host, port) => C.encodeReply(C.REP.succeeded, host, port),
  fail: (reason) => C.encodeReply(Errors.socks5Rep(reason)),
}

/** Connections whose handshake deadline passed (their close note is already written). */
const timedOut = new WeakSet<Socket>()

const chooseMethod = (auth: Inbound.SessionContext["auth"], offered: ReadonlyArray<number>): number => {
  const has = (m: number) => offered.includes(m)
  if (auth === "required") return has(C.METHOD_USERPASS) ? C.METHOD_USERPASS : C.METHOD_UNACCEPTABLE
  if (auth === "optional") return has(C.METHOD_USERPASS) ? C.METHOD_USERPASS : has(C.METHOD_NONE) ? C.METHOD_NONE : C.METHOD_UNACCEPTABLE
  return has(C.METHOD_NONE) ? C.METHOD_NONE : C.METHOD_UNACCEPTABLE
}

// Generator bodies are written once (Effect.fnUntraced), never per call: docs/design/runtime.md.
const reject = Effect.fnUntraced(function*(client: Socket, ctx: Inbound.SessionContext, error: string, reply?: Buffer) {
  // After the deadline the socket is gone and the note already says "handshake timeout".
  if (timedOut.has(client)) return undefined
  ctx.note({ outcome: "rejected", error })
  yield* Wire.closeWith(client, reply)
  return undefined
})

type Rejection = { readonly k: "reject"; readonly error: string; readonly reply?: Buffer | undefined }
type Front =
  | Rejection
  | { readonly k: "request"; readonly req: C.Request }
  | { readonly k: "userpass" }
  | { readonly k: "gone" }

const METHOD_REPLY: Record<number, Buffer> = { [C.METHOD_NONE]: C.encodeMethod(C.METHOD_NONE), [C.METHOD_USERPASS]: C.encodeMethod(C.METHOD_USERPASS) }

const requestOf = (r: Wire.ByteReader): Front | undefined => {
  const req = r.take(C.parseRequest)
  if (req.k === "more") return undefined
  if (req.k === "ok") return { k: "request", req: req.value }
  const rep = req.code === "atyp" ? C.REP.addressNotSupported : req.code === "name" ? C.REP.hostUnreachable : undefined
  return { k: "reject", error: req.message, reply: rep === undefined ? undefined : C.encodeReply(rep) }
}

/**
 * The greeting, the method reply and (without RFC 1929) the request in ONE read loop: a
 * no-auth CONNECT costs one effect here instead of three. `greeted` tells an end of stream
 * before the greeting from one before the request.
 */
class FrontStep {
  greeted = false
  readonly client: Socket
  readonly auth: Inbound.SessionContext["auth"]
  constructor(client: Socket, auth: Inbound.SessionContext["auth"]) {
    this.client = client
    this.auth = auth
  }
  step(r: Wire.ByteReader): Front | undefined {
    if (!this.greeted) {
      const g = r.take(C.parseGreeting)
      if (g.k === "more") return undefined
      if (g.k === "error") return { k: "reject", error: g.message, reply: g.code === "methods" ? C.encodeMethod(C.METHOD_UNACCEPTABLE) : undefined }
      const method = chooseMethod(this.auth, g.value.methods)
      if (method === C.METHOD_UNACCEPTABLE) return { k: "reject", error: "no acceptable authentication method", reply: C.encodeMethod(method) }
      this.greeted = true
      const client = this.client
      if (client.destroyed || client.writableEnded) return { k: "gone" }
      client.write(METHOD_REPLY[method]!) // two bytes: far below any high-water mark
      if (method === C.METHOD_USERPASS) return { k: "userpass" }
    }
    return requestOf(r)
  }
}

/** After the first read loop: the optional RFC 1929 sub-negotiation, then the request. `undefined`: already answered and closed. */
const afterFront = Effect.fnUntraced(function*(client: Socket, ctx: Inbound.SessionContext, reader: Wire.ByteReader, front: FrontStep, first: Front | typeof Wire.EOF) {
  let f = first
  if (f.k === "eof") return yield* reject(client, ctx, front.greeted ? "client closed before its request" : "client closed during handshake")
  if (f.k === "userpass") {
    const a = yield* Wire.readMessage(client, reader, C.parseUserPass)
    if (a.k === "eof") return yield* reject(client, ctx, "client closed during authentication")
    if (a.k === "error") return yield* reject(client, ctx, a.message, C.encodeAuthStatus(false))
    const r = yield* ctx.authenticate(a.value.user, a.value.pass)
    if (!r.ok) return yield* reject(client, ctx, "authentication failed", C.encodeAuthStatus(false))
    ctx.setUser(r.user ?? a.value.user, r.groups)
    if (!(yield* Wire.write(client, C.encodeAuthStatus(true)))) return undefined
    f = yield* Wire.readWith(client, reader, requestOf)
    if (f.k === "eof") return yield* reject(client, ctx, "client closed before its request")
  }
  if (f.k === "reject") return yield* reject(client, ctx, f.error, f.reply)
  return f.k === "request" ? f.req : undefined
})

/** Greeting, optional RFC 1929 sub-negotiation, request. `undefined`: already answered and closed. */
const handshake = Effect.fnUntraced(function*(client: Socket, ctx: Inbound.SessionContext, reader: Wire.ByteReader) {
  const front = new FrontStep(client, ctx.auth)
  const f = yield* Wire.readWith(client, reader, (r) => front.step(r))
  return yield* afterFront(client, ctx, reader, front, f)
})

export const makeSocks5Handler = (options: Socks5Options = {}): Inbound.InboundHandler => {
  const max = options.maxUdpAssociationsPerIp
  const maxUdp = typeof max === "function" ? max : () => max ?? 16
  const udp = options.udpCounter === undefined ? localCounter(maxUdp) : options.udpCounter(() => ({ max: Number.POSITIVE_INFINITY, perIp: maxUdp() }))
  const serveRequest = (client: Socket, ctx: Inbound.SessionContext, reader: Wire.ByteReader, req: C.Request): Effect.Effect<void> => {
    const input = (command: "connect" | "bind" | "udp"): Inbound.RequestInput => ({ command, dstHost: req.host, dstPort: req.port, protocol: "socks5" })
    switch (req.cmd) {
      case C.CMD_CONNECT:
        return serveConnect(client, ctx, reader, input("connect"), replies)
      case C.CMD_BIND:
        return serveBind(client, ctx, reader, input("bind"), replies, options.bindTimeoutMs ?? 60_000)
      case C.CMD_UDP:
        return serveUdpAssociate(client, ctx, req.port, udp)
      default:
        return Effect.asVoid(reject(client, ctx, `command 0x${req.cmd.toString(16)} not supported`, C.encodeReply(C.REP.commandNotSupported)))
    }
  }
  const handle = Effect.fnUntraced(function*(client: Socket, ctx: Inbound.SessionContext) {
    const reader = new Wire.ByteReader()
    if (ctx.firstBytes !== undefined) reader.push(ctx.firstBytes())
    const h = yield* Wire.withDeadline(client, ctx.enforcesHandshakeDeadline === true ? undefined : ctx.handshakeTimeoutMs, handshake(client, ctx, reader), () => {
      timedOut.add(client)
      ctx.note({ outcome: "rejected", error: "handshake timeout" })
    })
    if (h.timedOut || h.value === undefined) return
    return yield* serveRequest(client, ctx, reader, h.value)
  })
  return {
    protocol: "socks5",
    takesFirstBytes: true,
    reject: (client) => {
      client.end(C.encodeMethod(C.METHOD_UNACCEPTABLE))
    },
    handle,
    // The runtime enforces the handshake deadline on this path (no `withDeadline` here).
    express: (client, ctx) => {
      const reader = new Wire.ByteReader()
      reader.push(ctx.firstBytes())
      const front = new FrontStep(client, ctx.auth)
      ctx.readNow(reader, (r) => front.step(r), (f) => {
        if (f.k === "request" && f.req.cmd === C.CMD_CONNECT) {
          return connectExpress(client, ctx, reader, { command: "connect", dstHost: f.req.host, dstPort: f.req.port, protocol: "socks5" }, replies)
        }
        ctx.fallback(Effect.flatMap(afterFront(client, ctx, reader, front, f), (req) => (req === undefined ? Effect.void : serveRequest(client, ctx, reader, req))))
      })
    },
  }
}

export const socks5Handler: Inbound.InboundHandler = makeSocks5Handler()
