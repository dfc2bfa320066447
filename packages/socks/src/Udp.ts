/**
 * SOCKS5 UDP ASSOCIATE: one UDP relay per association, alive while its TCP control connection is.
 *
 * Details: the client-facing socket binds to the local address of the control
 * connection (`ctx.localAddress`), port 0. Datagrams are accepted only from
 * the client's IP, and from the port the client announced when it was not 0.
 * FRAG ≠ 0 and malformed datagrams are dropped. Each destination is decided by
 * the policy (`command udp`) once per association (cached); `allow` sends to
 * the address the policy resolved (else the literal, else one `dns.lookup`),
 * `redirect` to its target; `via` goes through the outbound's UDP path
 * (`ctx.connectUdp`: SOCKS5 UDP ASSOCIATE through a socks5 upstream, one per
 * route, opened on first use, replies wrapped with the address the upstream
 * reports); `block`, and `via`/`tor` without a UDP path, drop. Outbound datagrams leave from separate unbound sockets (one per
 * family); only replies from a destination we sent to come back, wrapped in
 * the header naming the destination as the client asked for it.
 *
 * Gotchas: associations per client IP are counted in a module-level map (or
 * the counter the handler was given: `workers` share one) and capped; the
 * count drops when the association ends (also on interruption).
 */
import type { Socket } from "node:net"
import { createSocket, type RemoteInfo, type Socket as UdpSocket } from "node:dgram"
import { lookup } from "node:dns/promises"
import { Effect } from "effect"
import { type Inbound, Wire } from "@proxyd/runtime"
import { normalizeIp } from "./Addr.ts"
import { encodeReply, encodeUdp, parseUdp, REP } from "./Socks5Codec.ts"

const perIp = new Map<string, number>()

/** Open associations for a client IP (for tests and metrics). */
export const associations = (ip: string): number => perIp.get(normalizeIp(ip) ?? ip) ?? 0

const MAX_CACHED_DESTINATIONS = 4096

type Target =
  | { readonly ip: string; readonly port: number }
  /** Through an outbound's UDP path (`via` a SOCKS5 upstream): sent to host:port as asked. */
  | { readonly channel: Inbound.UdpChannel; readonly host: string; readonly port: number }

const bindUdp = (host: string): Effect.Effect<UdpSocket | Error> =>
  Effect.callback<UdpSocket | Error>((resume) => {
    const s = createSocket(host.includes(":") ? "udp6" : "udp4")
    s.once("error", (e) => {
      s.close()
      resume(Effect.succeed(e))
    })
    s.bind({ address: host, port: 0, exclusive: true }, () => resume(Effect.succeed(s)))
  })

/** Counts associations per client IP against a limit (`Listener.Gate` fits: `workers` share one). */
export interface UdpCounter {
  tryEnter(ip: string): boolean
  leave(ip: string): void
}

/** This process's own count (the module-level map), capped at `maxPerIp()`. */
export const localCounter = (maxPerIp: () => number): UdpCounter => ({
  tryEnter: (ip) => {
    const n = perIp.get(ip) ?? 0
    if (n >= maxPerIp()) return false
    perIp.set(ip, n + 1)
    return true
  },
  leave: (ip) => {
    const n = (perIp.get(ip) ?? 1) - 1
    if (n <= 0) perIp.delete(ip)
    else perIp.set(ip, n)
  },
})

export const serveUdpAssociate = Effect.fnUntraced(function*(client: Socket, ctx: Inbound.SessionContext, clientPort: number, counter: UdpCounter) {
  const srcIp = normalizeIp(ctx.srcIp) ?? ctx.srcIp
  if (!counter.tryEnter(srcIp)) {
    ctx.note({ outcome: "rejected", error: "too many UDP associations" })
    return yield* Wire.closeWith(client, encodeReply(REP.general))
  }
  const release = Effect.sync(() => counter.leave(srcIp))
  yield* associate(client, ctx, srcIp, clientPort).pipe(Effect.ensuring(release))
})

const associate = Effect.fnUntraced(function*(client: Socket, ctx: Inbound.SessionContext, srcIp: string, clientPort: number) {
  const local = normalizeIp(ctx.localAddress) ?? ctx.localAddress
  const relay = yield* bindUdp(local)
  if (relay instanceof Error) {
    ctx.note({ outcome: "error", error: "udp bind failed" })
    return yield* Wire.closeWith(client, encodeReply(REP.general))
  }
  const services = yield* Effect.context<never>()
  const run = Effect.runPromiseWith(services)
  const outs = new Map<4 | 6, UdpSocket>()
  const decisions = new Map<string, Promise<Target | undefined>>()
  const sentTo = new Map<string, { readonly host: string; readonly port: number }>()
  let replyPort = clientPort
  let up = 0
  let down = 0
  let closed = false
  // UDP paths through outbound providers, one per route (action target), opened on first use.
  const channels = new Map<string, Promise<Inbound.UdpChannel | undefined>>()
  const closeAll = () => {
    closed = true
    relay.close()
    for (const s of outs.values()) s.close()
    for (const c of channels.values()) void c.then((ch) => ch?.close())
  }
  const channelFor = (d: Inbound.Decided): Promise<Inbound.UdpChannel | undefined> => {
    const a = d.decision.action
    const key = a.k === "via" || a.k === "tor" ? `${a.k}:${a.target}` : a.k
    let c = channels.get(key)
    if (c === undefined) {
      c = ctx.connectUdp === undefined ? Promise.resolve(undefined) : run(ctx.connectUdp(d)).then((ch) => {
        if (closed) { ch.close(); return undefined }
        ch.onMessage((h, p, data) => {
          if (closed || replyPort === 0) return
          down += data.length
          relay.send(encodeUdp(h, p, data), replyPort, srcIp)
        })
        // When the upstream ends the path, forget it (and the decisions that use it): the next datagram reopens.
        ch.onClose(() => { channels.delete(key); decisions.clear() })
        return ch
      }, () => { channels.delete(key); return undefined })
      channels.set(key, c)
    }
    return c
  }

  const out = (family: 4 | 6): UdpSocket => {
    const existing = outs.get(family)
    if (existing !== undefined) return existing
    const s = createSocket(family === 6 ? "udp6" : "udp4")
    s.on("error", () => {})
    s.on("message", (msg: Buffer, rinfo: RemoteInfo) => {
      const from = sentTo.get(`${normalizeIp(rinfo.address)}|${rinfo.port}`)
      if (from === undefined || replyPort === 0) return
      down += msg.length
      relay.send(encodeUdp(from.host, from.port, msg), replyPort, srcIp)
    })
    outs.set(family, s)
    return s
  }

  const target = (host: string, port: number): Promise<Target | undefined> =>
    run(ctx.decide({ command: "udp", dstHost: host, dstPort: port, protocol: "socks5" })).then(async (d) => {
      const a = d.decision.action
      if (a.k === "via" || a.k === "tor") {
        const channel = await channelFor(d)
        return channel === undefined ? undefined : { channel, host: d.resolved ?? host, port }
      }
      const [h, p] = a.k === "allow" ? [d.resolved ?? host, port] : a.k === "redirect" ? [a.host, a.port] : [undefined, 0]
      if (h === undefined) return undefined
      const ip = normalizeIp(h) ?? (await lookup(h).then((x) => x.address, () => undefined))
      return ip === undefined ? undefined : { ip: normalizeIp(ip) ?? ip, port: p }
    }, () => undefined)

  relay.on("error", () => {})
  relay.on("message", (msg: Buffer, rinfo: RemoteInfo) => {
    if (normalizeIp(rinfo.address) !== srcIp) return
    if (clientPort !== 0 && rinfo.port !== clientPort) return
    const d = parseUdp(msg)
    if (d.k !== "ok" || d.value.frag !== 0) return
    replyPort = rinfo.port
    const { host, port, data } = d.value
    const key = `${host}|${port}`
    let t = decisions.get(key)
    if (t === undefined) {
      if (decisions.size >= MAX_CACHED_DESTINATIONS) decisions.clear()
      t = target(host, port)
      decisions.set(key, t)
    }
    void t.then((to) => {
      if (to === undefined || closed) return
      up += data.length
      if ("channel" in to) return to.channel.send(to.host, to.port, data)
      if (sentTo.size >= MAX_CACHED_DESTINATIONS) sentTo.clear()
      sentTo.set(`${to.ip}|${to.port}`, { host, port })
      try {
        out(to.ip.includes(":") ? 6 : 4).send(data, to.port, to.ip)
      } catch {
        // the association closed meanwhile
      }
    })
  })

  const a = relay.address()
  yield* Effect.flatMap(Wire.write(client, encodeReply(REP.succeeded, a.address, a.port)), (ok) => (ok ? Wire.awaitClose(client) : Effect.void)).pipe(Effect.ensuring(Effect.sync(() => {
    closeAll()
    ctx.note({ outcome: "ok", udpBytesUp: up, udpBytesDown: down, udpDestinations: decisions.size })
    client.destroy()
  })))
})
