/**
 * The SOCKS4/4a server side over a `SessionContext`: CONNECT and BIND.
 *
 * Details: SOCKS4 carries no password, so a listener whose auth is `required`
 * answers every SOCKS4 request with CD 91 and closes. The USERID is never
 * used as the user for policy decisions, whatever the listener's auth: it is
 * an unverified claim, and `user`/`group` rules grant privileges; it only
 * goes to the close log line (`userid`). Policy sees `auth none` and no user.
 * Every failure (block, outbound error, malformed or oversized request,
 * unknown command) is answered with CD 91 and the socket closes; a request
 * that is not SOCKS4 closes without a reply. BIND replies carry IPv4 only: a
 * listener on an IPv6 address cannot serve SOCKS4 BIND (CD 91).
 */
import { Effect } from "effect"
import { type Inbound, Wire } from "@proxyd/runtime"
import * as C from "./Socks4Codec.ts"
import { serveBind, serveConnect, type Replies } from "./Commands.ts"
import { normalizeIp } from "./Addr.ts"

export interface Socks4Options {
  /** How long BIND waits for the expected peer (default 60 s). */
  readonly bindTimeoutMs?: number
}

const replies: Replies = {
  ok: (host, port) => C.encodeReply(C.CD_GRANTED, host, port),
  fail: () => C.encodeReply(C.CD_REJECTED),
}

export const makeSocks4Handler = (options: Socks4Options = {}): Inbound.InboundHandler => ({
  protocol: "socks4",
  takesFirstBytes: true,
  reject: (client) => {
    client.end(C.encodeReply(C.CD_REJECTED))
  },
  handle: (client, ctx) =>
    Effect.gen(function*() {
      const reader = new Wire.ByteReader()
      if (ctx.firstBytes !== undefined) reader.push(ctx.firstBytes())
      const cd91 = C.encodeReply(C.CD_REJECTED)
      const reject = (error: string, reply: Buffer | undefined = cd91) =>
        Effect.gen(function*() {
          ctx.note({ outcome: "rejected", error })
          yield* Wire.closeWith(client, reply)
          return undefined
        })
      const { value: r, timedOut } = yield* Wire.withDeadline(client, ctx.enforcesHandshakeDeadline === true ? undefined : ctx.handshakeTimeoutMs,
        Wire.readMessage(client, reader, C.parseRequest), () => ctx.note({ outcome: "rejected", error: "handshake timeout" }))
      if (timedOut) return undefined
      if (r.k === "eof") return yield* reject("client closed before its request", Buffer.alloc(0))
      if (r.k === "error") return yield* reject(r.message, r.code === "version" ? Buffer.alloc(0) : cd91)
      const req = r.value
      if (req.userId !== "") ctx.note({ userid: req.userId })
      if (ctx.auth === "required") return yield* reject("SOCKS4 cannot authenticate on a listener that requires auth")
      const input = (command: "connect" | "bind"): Inbound.RequestInput => ({ command, dstHost: req.host, dstPort: req.port, protocol: "socks4" })
      if (req.cmd === C.CMD_CONNECT) return yield* serveConnect(client, ctx, reader, input("connect"), replies)
      if (req.cmd === C.CMD_BIND) {
        if ((normalizeIp(ctx.localAddress) ?? ":").includes(":")) return yield* reject("SOCKS4 BIND needs an IPv4 listener")
        return yield* serveBind(client, ctx, reader, input("bind"), replies, options.bindTimeoutMs ?? 60_000)
      }
      return yield* reject(`command ${req.cmd} not supported`)
    }),
})

export const socks4Handler: Inbound.InboundHandler = makeSocks4Handler()
