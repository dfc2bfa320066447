/**
 * UDP through a SOCKS5 upstream: UDP ASSOCIATE on a control connection, datagrams wrapped in SOCKS5 UDP headers.
 *
 * Details: only a route of exactly one `socks5` hop carries UDP (a datagram
 * cannot be tunnelled through further hops, and SOCKS4/HTTP have no UDP).
 * The control connection asks for `0.0.0.0:0` (any client port); the relay
 * address the upstream answers (BND), or the upstream's own host when it
 * answers `0.0.0.0`, receives the wrapped datagrams from one local UDP socket.
 * Only datagrams from that relay address are accepted; fragments (FRAG ≠ 0)
 * and malformed frames are dropped. When the upstream closes the control
 * connection the channel ends (the handler then opens a new one when needed).
 *
 * Gotchas: destination names travel as names (ATYP 3) like TCP.
 */
import { createSocket, type RemoteInfo } from "node:dgram"
import * as net from "node:net"
import { Effect } from "effect"
import { SocksClient } from "socks"
import { type Inbound, Outbound } from "@proxyd/runtime"
import type { Route } from "./Chain.ts"
import { HandshakeTimer } from "./SocksClient.ts"
import { failed, type Hop, type HopFailure, HopFailure as Failure, timedOut } from "./Hop.ts"

const notSupported = (detail: string): HopFailure => new Failure({ _tag: "CommandNotSupported" }, false, detail)

const norm = (ip: string): string => (ip.startsWith("::ffff:") && net.isIPv4(ip.slice(7)) ? ip.slice(7) : ip)

export const openUdp = (route: Route, ctx: Outbound.OutboundContext): Effect.Effect<Inbound.UdpChannel, HopFailure> => {
  const hop = route.hops[0]
  if (route.hops.length !== 1 || hop === undefined || hop.kind !== "socks5") {
    return Effect.fail(notSupported(`UDP goes only through a single socks5 upstream; \`${route.name}\` is not one`))
  }
  const ms = hop.connectTimeoutMs ?? route.perHopMs ?? ctx.connectTimeoutMs
  return associateVia(hop, ms, ctx)
}

/** UDP ASSOCIATE at one socks5 upstream (a generator function written once: docs/design/runtime.md). */
const associateVia = Effect.fnUntraced(function*(hop: Hop, ms: number, ctx: Outbound.OutboundContext) {
  const tcp = yield* Effect.result(Outbound.direct(hop.host, hop.port, { ...ctx, connectTimeoutMs: ms }))
  if (tcp._tag === "Failure") {
    return yield* Effect.fail(tcp.failure.reason._tag === "Timeout" ? timedOut(hop.name, "TCP connect to the upstream timed out") : failed(hop.name, `cannot connect to the upstream (${tcp.failure.reason._tag})`))
  }
  const control = tcp.success
  const est = yield* Effect.callback<{ remoteHost?: { host: string; port: number } }, HopFailure>((resume) => {
    // `SocksClient.createConnection` only does CONNECT; ASSOCIATE needs an instance.
    const client = new SocksClient({
      command: "associate",
      destination: { host: "0.0.0.0", port: 0 },
      proxy: { host: hop.host, port: hop.port, type: 5, ...(hop.user === undefined ? {} : { userId: hop.user }), ...(hop.pass === undefined ? {} : { password: hop.pass }) },
      timeout: ms,
      existing_socket: control,
    })
    const timer = new HandshakeTimer()
    client.once("established", (info: { remoteHost?: { host: string; port: number } }) => {
      timer.end()
      resume(Effect.succeed(info))
    })
    client.once("error", (e: Error) => {
      timer.end()
      control.destroy()
      resume(Effect.fail(e.message.includes("timed out") ? timedOut(hop.name, "UDP ASSOCIATE timed out")
        : failed(hop.name, e.message.includes("Authentication") ? "the upstream refused the credentials" : "the upstream refused UDP ASSOCIATE")))
    })
    timer.start(() => client.connect(control))
    return Effect.sync(() => { control.destroy() })
  })
  const bnd = est.remoteHost
  const relayHost = norm(bnd === undefined || bnd.host === "0.0.0.0" || bnd.host === "::" || bnd.host === undefined ? hop.host : bnd.host)
  const relayPort = bnd?.port ?? 0
  if (relayPort === 0 || net.isIP(relayHost) === 0) {
    control.destroy()
    return yield* Effect.fail(failed(hop.name, "the upstream's UDP relay address is unusable"))
  }
  const udp = createSocket(net.isIPv6(relayHost) ? "udp6" : "udp4")
  udp.on("error", () => {})
  let closed = false
  const onMsg: Array<(h: string, p: number, d: Buffer) => void> = []
  const onEnd: Array<() => void> = []
  const close = (): void => {
    if (closed) return
    closed = true
    try { udp.close() } catch { /* already closed */ }
    control.destroy()
    for (const f of onEnd) f()
  }
  control.on("error", () => {})
  control.once("close", close)
  udp.on("message", (msg: Buffer, r: RemoteInfo) => {
    if (norm(r.address) !== relayHost || r.port !== relayPort) return
    let f: ReturnType<typeof SocksClient.parseUDPFrame>
    try { f = SocksClient.parseUDPFrame(msg) } catch { return }
    if ((f.frameNumber ?? 0) !== 0) return
    for (const cb of onMsg) cb(f.remoteHost.host, f.remoteHost.port, f.data)
  })
  yield* Effect.callback<void>((resume) => { udp.bind(0, () => resume(Effect.void)) })
  const channel: Inbound.UdpChannel = {
    send: (host, port, data) => {
      if (closed) return
      try { udp.send(SocksClient.createUDPFrame({ remoteHost: { host, port }, data }), relayPort, relayHost) } catch { /* closed meanwhile */ }
    },
    onMessage: (cb) => { onMsg.push(cb) },
    onClose: (cb) => { if (closed) cb(); else onEnd.push(cb) },
    close,
  }
  return channel
})
