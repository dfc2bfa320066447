/**
 * The SOCKS5 server side (RFC 1928, RFC 1929) over a `SessionContext`.
 *
 * Details: methods offered by the listener's auth: `required` → only 0x02
 * (user/pass), `optional` → 0x02 when the client offers it, else 0x00,
 * `none` → 0x00; nothing acceptable → `05 FF` and close. RFC 1929 replies
 * with version 0x01 and closes after a failure. The handshake (greeting, auth,
 * request) is bounded by `ctx.handshakeTimeoutMs`; on timeout the socket
 * is destroyed (`Wire.withDeadline`, no forked fiber). Commands: CONNECT and BIND (`Commands.ts`), UDP ASSOCIATE
 * (`Udp.ts`); any other → REP 0x07. Unknown ATYP → REP 0x08; an empty name or
 * one with control bytes → REP 0x04 (no DNS query). A request that is not
 * SOCKS5 closes without a reply. Every reply is complete and every failure
 * closes the socket.
 */
import type { Socket } from "node:net"
import { Effect } from "effect"
import { Errors, type Inbound, Wire } from "@proxyd/runtime"
import * as C from "./Socks5Codec.ts"
import { serveBind, serveConnect, type Replies } from "./Commands.ts"
import { serveUdpAssociate } from "./Udp.ts"

export interface Socks5Options {
  /** How long BIND waits for the expected peer (default 60 s). */
  readonly bindTimeoutMs?: number
  /** UDP associations open at once per client IP (default 16); a function is read at each association (follows reloads). */
  readonly maxUdpAssociationsPerIp?: number | (() => number)
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

const reject = (client: Socket, ctx: Inbound.SessionContext, error: string, reply?: Buffer) =>
  Effect.gen(function*() {
    // After the deadline the socket is gone and the note already says "handshake timeout".
    if (timedOut.has(client)) return undefined
    ctx.note({ outcome: "rejected", error })
    yield* Wire.closeWith(client, reply)
    return undefined
  })

/** Greeting, optional RFC 1929 sub-negotiation, request. `undefined`: already answered and closed. */
const handshake = (client: Socket, ctx: Inbound.SessionContext, reader: Wire.ByteReader) =>
  Effect.gen(function*() {
    const g = yield* Wire.readMessage(client, reader, C.parseGreeting)
    if (g.k === "eof") return yield* reject(client, ctx, "client closed during handshake")
    if (g.k === "error") return yield* reject(client, ctx, g.message, g.code === "methods" ? C.encodeMethod(C.METHOD_UNACCEPTABLE) : undefined)
    const method = chooseMethod(ctx.auth, g.value.methods)
    if (method === C.METHOD_UNACCEPTABLE) return yield* reject(client, ctx, "no acceptable authentication method", C.encodeMethod(method))
    if (!(yield* Wire.write(client, C.encodeMethod(method)))) return undefined
    if (method === C.METHOD_USERPASS) {
      const a = yield* Wire.readMessage(client, reader, C.parseUserPass)
      if (a.k === "eof") return yield* reject(client, ctx, "client closed during authentication")
      if (a.k === "error") return yield* reject(client, ctx, a.message, C.encodeAuthStatus(false))
      const r = yield* ctx.authenticate(a.value.user, a.value.pass)
      if (!r.ok) return yield* reject(client, ctx, "authentication failed", C.encodeAuthStatus(false))
      ctx.setUser(r.user ?? a.value.user, r.groups)
      if (!(yield* Wire.write(client, C.encodeAuthStatus(true)))) return undefined
    }
    const req = yield* Wire.readMessage(client, reader, C.parseRequest)
    if (req.k === "eof") return yield* reject(client, ctx, "client closed before its request")
    if (req.k === "error") {
      const rep = req.code === "atyp" ? C.REP.addressNotSupported : req.code === "name" ? C.REP.hostUnreachable : undefined
      return yield* reject(client, ctx, req.message, rep === undefined ? undefined : C.encodeReply(rep))
    }
    return req.value
  })

export const makeSocks5Handler = (options: Socks5Options = {}): Inbound.InboundHandler => {
  const max = options.maxUdpAssociationsPerIp
  const maxUdp = typeof max === "function" ? max : () => max ?? 16
  return {
    protocol: "socks5",
    reject: (client) => {
      client.end(C.encodeMethod(C.METHOD_UNACCEPTABLE))
    },
    handle: (client, ctx) =>
      Effect.gen(function*() {
        const reader = new Wire.ByteReader()
        const h = yield* Wire.withDeadline(client, ctx.handshakeTimeoutMs, handshake(client, ctx, reader), () => {
          timedOut.add(client)
          ctx.note({ outcome: "rejected", error: "handshake timeout" })
        })
        if (h.timedOut) return
        const req = h.value
        if (req === undefined) return
        const input = (command: "connect" | "bind" | "udp"): Inbound.RequestInput => ({ command, dstHost: req.host, dstPort: req.port, protocol: "socks5" })
        switch (req.cmd) {
          case C.CMD_CONNECT:
            return yield* serveConnect(client, ctx, reader, input("connect"), replies)
          case C.CMD_BIND:
            return yield* serveBind(client, ctx, reader, input("bind"), replies, options.bindTimeoutMs ?? 60_000)
          case C.CMD_UDP:
            return yield* serveUdpAssociate(client, ctx, req.port, maxUdp())
          default:
            return yield* reject(client, ctx, `command 0x${req.cmd.toString(16)} not supported`, C.encodeReply(C.REP.commandNotSupported))
        }
      }),
  }
}

export const socks5Handler: Inbound.InboundHandler = makeSocks5Handler()
