/**
 * Opens a route: one or more hops of mixed kinds, each through the previous hop's socket.
 *
 * Details: hop 1 is a TCP connection (the runtime's `direct`: Resolver cache,
 * Happy Eyeballs); every further hop is asked for by the previous hop (SOCKS
 * CONNECT or HTTP CONNECT to the next hop's host:port, as a name), and the
 * last hop is asked for the destination. `https` hops get TLS first. Each
 * hop has its own deadline (the upstream's `connect-timeout`, else the
 * chain's, else the listener's connect timeout) covering TCP/TLS and its
 * handshake; the whole route has an overall deadline (the chain's `timeout`,
 * else the sum of the hop deadlines). Every failure names its hop.
 * A SOCKS4 (not 4a) hop needs an IPv4 address: the name it must ask for is
 * resolved here (never a `.onion`).
 *
 * Gotchas: the returned socket is paused with any early data unshifted; on
 * failure or interruption every socket of the route is destroyed (destroying
 * the outermost one tears down the TLS layers above it too).
 */
import * as net from "node:net"
import { Effect } from "effect"
import { Outbound, Resolver } from "@proxyd/runtime"
import { failed, type Hop, HopFailure, type Target, timedOut } from "./Hop.ts"
import { httpHop, tlsToProxy } from "./HttpConnect.ts"
import { socksHop } from "./SocksClient.ts"

export interface Route {
  /** The upstream or chain name (for logs). */
  readonly name: string
  readonly hops: ReadonlyArray<Hop>
  readonly perHopMs?: number
  readonly overallMs?: number
}

interface Progress { hop: string; cancelled: boolean; readonly sockets: Array<net.Socket> }

const toFailure = (e: unknown, hop: string): HopFailure =>
  e instanceof HopFailure ? e : failed(hop, `internal error: ${e instanceof Error ? e.message.slice(0, 120) : String(e).slice(0, 120)}`)

const ipv4For = async (hop: Hop, t: Target, ctx: Outbound.OutboundContext): Promise<Target> => {
  if (net.isIPv4(t.host)) return t
  if (net.isIPv6(t.host) || Resolver.isOnion(t.host)) throw failed(hop.name, `SOCKS4 cannot carry ${t.host}: use socks4a or socks5`)
  const r = await Effect.runPromise(Effect.result(ctx.resolver.resolve(t.host)))
  const v4 = r._tag === "Success" ? r.success.find((a) => net.isIPv4(a)) : undefined
  if (v4 === undefined) throw failed(hop.name, `SOCKS4 needs an IPv4 address for ${t.host}, none found`)
  return { host: v4, port: t.port }
}

const step = async (sock: net.Socket, hop: Hop, target: Target, ms: number, last: boolean, ctx: Outbound.OutboundContext, p: Progress): Promise<net.Socket> => {
  switch (hop.kind) {
    case "socks5": case "socks4a": return socksHop(sock, hop, target, ms, last)
    case "socks4": return socksHop(sock, hop, await ipv4For(hop, target, ctx), ms, last)
    case "http": return httpHop(sock, hop, target, ms, last)
    case "https": {
      const t = await tlsToProxy(sock, hop, ms)
      p.sockets.push(t)
      return httpHop(t as net.Socket, hop, target, ms, last)
    }
  }
}

const perHop = (route: Route, hop: Hop, ctx: Outbound.OutboundContext): number => hop.connectTimeoutMs ?? route.perHopMs ?? ctx.connectTimeoutMs

const run = async (route: Route, dest: Target, ctx: Outbound.OutboundContext, p: Progress): Promise<net.Socket> => {
  const first = route.hops[0]!
  p.hop = first.name
  const tcp = await Effect.runPromise(Effect.result(Outbound.direct(first.host, first.port, { ...ctx, connectTimeoutMs: perHop(route, first, ctx) })))
  if (tcp._tag === "Failure") {
    const r = tcp.failure.reason
    throw r._tag === "Timeout" ? timedOut(first.name, "TCP connect to the upstream timed out") : failed(first.name, `cannot connect to the upstream (${r._tag})`)
  }
  let sock = tcp.success
  p.sockets.push(sock)
  if (p.cancelled) throw failed(first.name, "cancelled")
  for (let i = 0; i < route.hops.length; i++) {
    const hop = route.hops[i]!
    p.hop = hop.name
    const next = route.hops[i + 1]
    const target = next === undefined ? dest : { host: next.host, port: next.port }
    sock = await step(sock, hop, target, perHop(route, hop, ctx), next === undefined, ctx, p)
    if (p.cancelled) throw failed(hop.name, "cancelled")
  }
  return sock
}

/** Opens `route` to `dest`. The failure names the hop. */
export const openRoute = (route: Route, dest: Target, ctx: Outbound.OutboundContext): Effect.Effect<net.Socket, HopFailure> =>
  Effect.callback<net.Socket, HopFailure>((resume) => {
    const p: Progress = { hop: route.hops[0]?.name ?? route.name, cancelled: false, sockets: [] }
    let done = false
    const destroyAll = (): void => { for (const s of p.sockets) s.destroy() }
    const overallMs = route.overallMs ?? route.hops.reduce((n, h) => n + perHop(route, h, ctx), 0)
    const timer = setTimeout(() => {
      if (done) return
      done = true
      p.cancelled = true
      destroyAll()
      resume(Effect.fail(timedOut(p.hop, `the route ${route.name} did not open in time`)))
    }, overallMs)
    run(route, dest, ctx, p).then((s) => {
      if (done) { destroyAll(); return }
      done = true
      clearTimeout(timer)
      resume(Effect.succeed(s))
    }, (e: unknown) => {
      if (done) return
      done = true
      clearTimeout(timer)
      destroyAll()
      resume(Effect.fail(toFailure(e, p.hop)))
    })
    return Effect.sync(() => {
      if (done) return
      done = true
      p.cancelled = true
      clearTimeout(timer)
      destroyAll()
    })
  })
