/**
 * The HTTP proxy server side over a `SessionContext`: CONNECT tunnels and absolute-URI forwarding with keep-alive.
 *
 * Details:
 * - Each request head is parsed strictly (`HttpHead.ts`); 400 on malformed
 *   requests, 431 on a head over 64 KiB. The first head is bounded by
 *   `ctx.handshakeTimeoutMs`, later ones on a kept-alive connection by
 *   `keepAliveTimeoutMs` (then the connection just closes).
 * - Auth: when the listener has auth, `Proxy-Authorization: Basic` is checked
 *   on every request that carries it (one check per distinct value per
 *   connection); missing credentials on a `required` listener, or wrong ones,
 *   get 407 with `Proxy-Authenticate: Basic realm="proxyd"`.
 * - CONNECT: decide → connect → `HTTP/1.1 200 Connection established` →
 *   relay; bytes the client sent after the head go to the upstream first.
 * - Forwarding: every request is decided and routed by its own authority; the
 *   upstream connection is reused while the authority and the decision stay
 *   the same, otherwise a new one is opened. The request goes out in
 *   origin-form with the client's HTTP version, without hop-by-hop headers
 *   and headers named in Connection (also Proxy-Authorization and
 *   Proxy-Connection). `Host` is the request URI's authority (RFC 9112
 *   §3.2.2: a proxy replaces a received Host with it, so a client cannot ask
 *   for one site in the URI, which the policy decides on, and another in
 *   Host), and it stays that authority when a `redirect` decision sends the
 *   request elsewhere (the redirect target serves the site that was asked
 *   for; rewriting Host to the target would change what is asked).
 *   Bodies (Content-Length or chunked) and responses (Content-Length,
 *   chunked, or close-delimited; none for HEAD, 1xx, 204, 304) are streamed.
 *   The client connection stays open when both sides allow it.
 * - Errors: 403 with the block message, 502/504 (`Errors.httpStatus`) with a
 *   short reason on outbound failure, then close.
 * - Express path (`Inbound.ExpressContext`): a first request that is a plain
 *   CONNECT on a listener without auth, whose decision needs no fact to fetch
 *   and whose outbound needs no wait, is served on callbacks; everything else
 *   continues in the effect code (a `Conversation` and its steps) from the point reached, so
 *   both paths answer the same (`test/Express.test.ts`).
 */
import type { Socket } from "node:net"
import { Effect, Fiber, Result } from "effect"
import { Errors, type Inbound, Wire } from "@proxyd/runtime"
import * as H from "./HttpHead.ts"
import { copyBody } from "./Forward.ts"

export interface HttpOptions {
  /** How long a kept-alive client connection may sit idle between requests (default 60 s). */
  readonly keepAliveTimeoutMs?: number
}

const REASONS: Record<number, string> = {
  400: "Bad Request", 403: "Forbidden", 407: "Proxy Authentication Required", 431: "Request Header Fields Too Large",
  502: "Bad Gateway", 503: "Service Unavailable", 504: "Gateway Timeout",
}

export const errorResponse = (status: number, message: string, extra = ""): string => {
  const body = `${message}\n`
  return `HTTP/1.1 ${status} ${REASONS[status] ?? "Error"}\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n${extra}\r\n${body}`
}

const reasonText = (r: Errors.OutboundReason): string => {
  switch (r._tag) {
    case "Blocked": return r.message ?? "blocked by policy"
    case "Refused": return "connection refused by the destination"
    case "HostUnreachable": return "destination host unreachable"
    case "NetworkUnreachable": return "destination network unreachable"
    case "Timeout": return "timed out connecting to the destination"
    case "DnsFailed": return "destination name could not be resolved"
    case "UpstreamFailed": return r.socksCode === undefined ? "upstream proxy failed" : `${r.socksCode >= 0xf0 ? "Tor" : "upstream proxy"}: ${Errors.socks5ReplyText(r.socksCode)} (SOCKS 0x${r.socksCode.toString(16).padStart(2, "0")})`
    default: return "outbound connection failed"
  }
}

interface Upstream { readonly key: string; readonly socket: Socket; readonly reader: Wire.ByteReader }

const actionKey = (d: Inbound.Decided, t: H.Authority): string => `${t.host}|${t.port}|${JSON.stringify(d.decision.action)}`

type HeadRead = Wire.ReadResult<H.RequestHead>

const headStep = (r: Wire.ByteReader): HeadRead | undefined => {
  const m = r.take((b) => H.parseRequestHead(b))
  return m.k === "more" ? undefined : m
}

const CONNECTED = "HTTP/1.1 200 Connection established\r\n\r\n"
const ignore = (): void => {}

/**
 * One client connection's conversation (both paths): its state; the steps below take it as their
 * first argument. The steps are generator functions written once (`Effect.fnUntraced`), not
 * closures made per connection: a generator function made per call costs a new prototype and
 * map and pins the connection until a full GC (docs/design/runtime.md).
 */
class Conversation {
  upstream: Upstream | undefined = undefined
  readonly authCache = new Map<string, Inbound.AuthResult>()
  readonly options: HttpOptions
  readonly client: Socket
  readonly ctx: Inbound.SessionContext
  constructor(options: HttpOptions, client: Socket, ctx: Inbound.SessionContext) {
    this.options = options
    this.client = client
    this.ctx = ctx
  }
  dropUpstream(): void {
    this.upstream?.socket.destroy()
    this.upstream = undefined
  }
}

type Connection = { readonly error: Errors.OutboundReason; readonly up?: undefined } | { readonly up: Upstream; readonly reused: boolean; readonly error?: undefined }

const fail = Effect.fnUntraced(function*(cv: Conversation, status: number, message: string, extra: string = "", logged: boolean = true) {
  cv.ctx.note(logged ? { status, error: message } : { status })
  cv.dropUpstream()
  yield* Wire.closeWith(cv.client, errorResponse(status, message, extra))
  return false
})

/** An outbound failure: the reply explains it; the log keeps the runtime's reason (`Timeout`, `Refused`, ...), the block message for a block. */
const outboundFail = (cv: Conversation, r: Errors.OutboundReason) => fail(cv, Errors.httpStatus(r), reasonText(r), "", r._tag === "Blocked")

const authorize = Effect.fnUntraced(function*(cv: Conversation, req: H.ProxyRequest) {
  const ctx = cv.ctx
  if (ctx.auth === "none") return true
  const header = H.values(req.head.headers, "proxy-authorization")[0]
  if (header === undefined) return ctx.auth === "optional"
  let result = cv.authCache.get(header)
  if (result === undefined) {
    const creds = H.parseBasic(header)
    result = creds === undefined ? { ok: false } : yield* ctx.authenticate(creds.user, creds.pass)
    if (creds !== undefined && result.ok) ctx.setUser(result.user ?? creds.user, result.groups)
    if (cv.authCache.size < 8) cv.authCache.set(header, result)
  }
  return result.ok
})

const connectDecided = Effect.fnUntraced(function*(cv: Conversation, req: H.ProxyRequest, decided: Inbound.Decided) {
  const a = decided.decision.action
  if (a.k === "block") return { error: { _tag: "Blocked", ...(a.message === undefined ? {} : { message: a.message }) } as Errors.OutboundReason } as Connection
  const key = actionKey(decided, req.target)
  const upstream = cv.upstream
  if (upstream !== undefined && upstream.key === key && !upstream.socket.destroyed && !upstream.socket.readableEnded) return { up: upstream, reused: true } as Connection
  cv.dropUpstream()
  const r = yield* Effect.result(cv.ctx.connect(decided))
  if (Result.isFailure(r)) return { error: r.failure.reason } as Connection
  const up = { key, socket: r.success.socket, reader: new Wire.ByteReader() }
  cv.upstream = up
  r.success.socket.on("error", ignore)
  return { up, reused: false } as Connection
})

const decideAndConnect = (cv: Conversation, req: H.ProxyRequest) =>
  Effect.flatMap(cv.ctx.decide({ command: "connect", dstHost: req.target.host, dstPort: req.target.port, protocol: "http" }), (decided) => connectDecided(cv, req, decided))

const tunnelTo = Effect.fnUntraced(function*(cv: Conversation, reader: Wire.ByteReader, c: Connection) {
  if (c.error !== undefined) return yield* outboundFail(cv, c.error)
  cv.upstream = undefined
  if (!(yield* Wire.write(cv.client, CONNECTED))) {
    c.up.socket.destroy()
    return false
  }
  const early = reader.rest()
  if (early.length > 0) c.up.socket.write(early)
  yield* cv.ctx.relay(cv.client, c.up.socket)
  return false
})

const tunnel = (cv: Conversation, reader: Wire.ByteReader, req: H.ProxyRequest) => Effect.flatMap(decideAndConnect(cv, req), (c) => tunnelTo(cv, reader, c))

/** Reads the response (interim ones too) and streams it to the client; true when the client connection can go on, a failure to answer otherwise. */
const respond = Effect.fnUntraced(function*(cv: Conversation, req: H.ProxyRequest, up: Upstream) {
  for (let interim = 0; interim < 16; interim++) {
    const r = yield* Wire.readMessage(up.socket, up.reader, H.parseResponseHead)
    if (r.k === "eof") return { status: 502, message: "upstream closed without a response", stale: interim === 0 && up.reader.size === 0 }
    if (r.k !== "ok") return { status: 502, message: `bad upstream response: ${r.message}`, stale: false }
    const res = r.value
    if (res.status === 101) return { status: 502, message: "protocol upgrades are not supported", stale: false }
    const framing = H.responseFraming(req.head.method, res)
    const upstreamCloses = framing.k === "close" || H.connectionTokens(res.headers).has("close") || res.version === "1.0"
    const final = res.status >= 200
    const keep = final ? req.keepAlive && framing.k !== "close" : true
    const out = `${res.statusLine}\r\n${H.serializeHeaders(H.endToEnd(res.headers))}${keep ? "" : "Connection: close\r\n"}\r\n`
    if (!(yield* Wire.write(cv.client, out))) return false
    if (!final) continue
    cv.ctx.note({ status: res.status })
    const got = yield* copyBody(up.socket, up.reader, cv.client, framing)
    if (got !== "done" || upstreamCloses) cv.dropUpstream()
    return got === "done" && keep
  }
  return { status: 502, message: "too many interim responses", stale: false }
})

/**
 * One forwarded exchange; true when the client connection can carry another request.
 * The request body is copied in its own fiber while the response is read, so
 * `Expect: 100-continue` and early responses work. A reused upstream that
 * closes before answering a body-less request (the origin's keep-alive
 * timer won the race) is replaced by a fresh connection once.
 */
const forward: (cv: Conversation, reader: Wire.ByteReader, req: H.ProxyRequest, retry?: boolean) => Effect.Effect<boolean> = Effect.fnUntraced(
  function*(cv: Conversation, reader: Wire.ByteReader, req: H.ProxyRequest, retry: boolean = true) {
    const c = yield* decideAndConnect(cv, req)
    if (c.error !== undefined) return yield* outboundFail(cv, c.error)
    const up = c.up
    const headers = H.endToEnd(req.head.headers).filter(([n]) => n.toLowerCase() !== "host")
    const head = `${req.head.method} ${req.path} HTTP/${req.head.version}\r\nHost: ${req.authority}\r\n${H.serializeHeaders(headers)}\r\n`
    if (!(yield* Wire.write(up.socket, head))) return yield* fail(cv, 502, "upstream connection failed")
    const body = yield* Effect.forkChild(copyBody(cv.client, reader, up.socket, req.framing).pipe(
      Effect.tap((r) => Effect.sync(() => {
        if (r !== "done") up.socket.destroy()
      })),
    ))
    const answered = yield* respond(cv, req, up)
    if (typeof answered === "object") {
      yield* Fiber.interrupt(body)
      if (answered.stale && c.reused && retry && req.framing.k === "none") {
        cv.dropUpstream()
        return yield* forward(cv, reader, req, false)
      }
      return yield* fail(cv, answered.status, answered.message)
    }
    const sent = yield* Fiber.join(body).pipe(
      Effect.timeoutOrElse({ duration: 5000, orElse: () => Effect.as(Fiber.interrupt(body), "timeout" as const) }),
    )
    if (!answered || sent !== "done") {
      cv.dropUpstream()
      cv.client.destroy()
      return false
    }
    return true
  },
)

/** The request loop; `first`: the first head, already read (the express path). */
const requests = Effect.fnUntraced(function*(cv: Conversation, reader: Wire.ByteReader, first: HeadRead | undefined) {
  const { client, ctx } = cv
  for (let n = 0; ; n++) {
    const timeout = n === 0 ? ctx.handshakeTimeoutMs : cv.options.keepAliveTimeoutMs ?? 60_000
    const r: HeadRead = n === 0 && first !== undefined ? first : yield* Wire.readWith(client, reader, headStep).pipe(
      Effect.timeoutOrElse({ duration: timeout, orElse: () => Effect.succeed({ k: "eof" } as const) }),
    )
    if (r.k === "eof") {
      if (n === 0) ctx.note({ error: "no request (timeout or closed)" })
      cv.dropUpstream()
      return yield* Wire.closeWith(client)
    }
    // Refused before any decision: logged `rejected` (as the SOCKS handlers do) when it is the
    // connection's first request, so a 400/407/431 never reads as `ok`.
    if (n === 0) ctx.note({ outcome: "rejected" })
    if (r.k === "error") {
      yield* fail(cv, r.code === "431" ? 431 : 400, r.message)
      return
    }
    const req = H.toProxyRequest(r.value)
    if (typeof req === "string") {
      yield* fail(cv, 400, req)
      return
    }
    if (!(yield* authorize(cv, req))) {
      yield* fail(cv, 407, "proxy authentication required", 'Proxy-Authenticate: Basic realm="proxyd"\r\n')
      return
    }
    if (n === 0) ctx.note({ outcome: "ok" })
    if (req.kind === "connect") {
      yield* tunnel(cv, reader, req)
      return
    }
    if (!(yield* forward(cv, reader, req))) {
      cv.dropUpstream()
      if (!client.destroyed) yield* Wire.closeWith(client)
      return
    }
  }
})

const serve = (cv: Conversation, reader: Wire.ByteReader, first?: HeadRead): Effect.Effect<void> =>
  requests(cv, reader, first).pipe(Effect.ensuring(Effect.sync(() => cv.dropUpstream())))

export const makeHttpHandler = (options: HttpOptions = {}): Inbound.InboundHandler => ({
  protocol: "http",
  takesFirstBytes: true,
  reject: (client) => {
    client.end(errorResponse(503, "too many connections"))
  },
  handle: (client, ctx) => {
    const reader = new Wire.ByteReader()
    if (ctx.firstBytes !== undefined) reader.push(ctx.firstBytes())
    return serve(new Conversation(options, client, ctx), reader)
  },
  /**
   * A first request that is a plain CONNECT on a listener without auth goes on callbacks
   * (decided, connected, answered, relayed); anything else continues as `handle` does from the
   * point reached.
   */
  express: (client, ctx) => {
    const reader = new Wire.ByteReader()
    reader.push(ctx.firstBytes())
    ctx.readNow(reader, headStep, (r) => {
      const req = r.k === "ok" && ctx.auth === "none" ? H.toProxyRequest(r.value) : undefined
      if (req === undefined || typeof req === "string" || req.kind !== "connect") return ctx.fallback(serve(new Conversation(options, client, ctx), reader, r))
      const decided = ctx.decideNow({ command: "connect", dstHost: req.target.host, dstPort: req.target.port, protocol: "http" })
      if (decided === undefined) return ctx.fallback(serve(new Conversation(options, client, ctx), reader, r))
      const a = decided.decision.action
      if (a.k === "block") return ctx.fallback(outboundFail(new Conversation(options, client, ctx), { _tag: "Blocked", ...(a.message === undefined ? {} : { message: a.message }) }).pipe(Effect.asVoid))
      const started = ctx.connectNow(decided, (c) => {
        if (c instanceof Errors.OutboundError) return ctx.fallback(outboundFail(new Conversation(options, client, ctx), c.reason).pipe(Effect.asVoid))
        c.socket.on("error", ignore)
        if (client.destroyed || client.writableEnded) {
          c.socket.destroy()
          return ctx.endNow()
        }
        client.write(CONNECTED)
        const early = reader.rest()
        if (early.length > 0) c.socket.write(early)
        ctx.relayNow(client, c.socket)
      })
      if (!started) {
        const cv = new Conversation(options, client, ctx)
        ctx.fallback(Effect.flatMap(connectDecided(cv, req, decided), (c) => tunnelTo(cv, reader, c)).pipe(Effect.asVoid))
      }
    })
  },
})

export const httpHandler: Inbound.InboundHandler = makeHttpHandler()
