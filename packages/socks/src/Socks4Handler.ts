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
import type { Socket } from "node:net"
import { Effect } from "effect"
import { type Inbound, Wire } from "@proxyd/runtime"
import * as C from "./Socks4Codec.ts"
import { connectExpress, serveBind, serveConnect, type Replies } from "./Commands.ts"
import { normalizeIp } from "./Addr.ts"

export interface Socks4Options {
  /** How long BIND waits for the expected peer (default 60 s). */
  readonly bindTimeoutMs?: number
}

const replies: Replies = {
  ok: (host, port) => C.encodeReply(C.CD_GRANTED, host, port),
  fail: () => C.encodeReply(C.CD_REJECTED),
}

const cd91 = C.encodeReply(C.CD_REJECTED)
const NOTHING = Buffer.alloc(0)

// Generator bodies are written once (Effect.fnUntraced), never per call: docs/design/runtime.md.
const reject = Effect.fnUntraced(function*(client: Socket, ctx: Inbound.SessionContext, error: string, reply: Buffer = cd91) {
  ctx.note({ outcome: "rejected", error })
  yield* Wire.closeWith(client, reply)
  return undefined
})

const requestStep = (r: Wire.ByteReader): Wire.ReadResult<C.Request> | undefined => {
  const m = r.take(C.parseRequest)
  return m.k === "more" ? undefined : m
}

const input = (req: C.Request, command: "connect" | "bind"): Inbound.RequestInput => ({ command, dstHost: req.host, dstPort: req.port, protocol: "socks4" })

export const makeSocks4Handler = (options: Socks4Options = {}): Inbound.InboundHandler => {
  /** Everything after the request has been read (both paths). */
  const afterRead = Effect.fnUntraced(function*(client: Socket, ctx: Inbound.SessionContext, reader: Wire.ByteReader, r: Wire.ReadResult<C.Request>) {
    if (r.k === "eof") return yield* reject(client, ctx, "client closed before its request", NOTHING)
    if (r.k === "error") return yield* reject(client, ctx, r.message, r.code === "version" ? NOTHING : cd91)
    const req = r.value
    if (req.userId !== "") ctx.note({ userid: req.userId })
    if (ctx.auth === "required") return yield* reject(client, ctx, "SOCKS4 cannot authenticate on a listener that requires auth")
    if (req.cmd === C.CMD_CONNECT) return yield* serveConnect(client, ctx, reader, input(req, "connect"), replies)
    if (req.cmd === C.CMD_BIND) {
      if ((normalizeIp(ctx.localAddress) ?? ":").includes(":")) return yield* reject(client, ctx, "SOCKS4 BIND needs an IPv4 listener")
      return yield* serveBind(client, ctx, reader, input(req, "bind"), replies, options.bindTimeoutMs ?? 60_000)
    }
    return yield* reject(client, ctx, `command ${req.cmd} not supported`)
  })
  const handle = Effect.fnUntraced(function*(client: Socket, ctx: Inbound.SessionContext) {
    const reader = new Wire.ByteReader()
    if (ctx.firstBytes !== undefined) reader.push(ctx.firstBytes())
    const { value: r, timedOut } = yield* Wire.withDeadline(client, ctx.enforcesHandshakeDeadline === true ? undefined : ctx.handshakeTimeoutMs,
      Wire.readWith(client, reader, requestStep), () => ctx.note({ outcome: "rejected", error: "handshake timeout" }))
    if (timedOut) return
    return yield* afterRead(client, ctx, reader, r)
  })
  return {
    protocol: "socks4",
    takesFirstBytes: true,
    reject: (client) => {
      client.end(C.encodeReply(C.CD_REJECTED))
    },
    handle,
    // A CONNECT on a listener that does not require auth goes on callbacks; the rest as `handle` does.
    express: (client, ctx) => {
      const reader = new Wire.ByteReader()
      reader.push(ctx.firstBytes())
      ctx.readNow(reader, requestStep, (r) => {
        if (r.k === "ok" && r.value.cmd === C.CMD_CONNECT && ctx.auth !== "required") {
          if (r.value.userId !== "") ctx.note({ userid: r.value.userId })
          return connectExpress(client, ctx, reader, input(r.value, "connect"), replies)
        }
        ctx.fallback(afterRead(client, ctx, reader, r))
      })
    },
  }
}

export const socks4Handler: Inbound.InboundHandler = makeSocks4Handler()
