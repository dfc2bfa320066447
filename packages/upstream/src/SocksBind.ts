/**
 * SOCKS BIND at one SOCKS4/4a/5 upstream, with the `socks` package: the bound address, then the accepted peer.
 *
 * Details: connects to the upstream, sends BIND for the expected peer
 * (`target`), and resolves once the upstream's first reply (its bound
 * address) arrives; `accepted` waits for the second reply (the peer that
 * connected) and hands over the control socket, which then carries the
 * peer's bytes. A bound address of 0.0.0.0 (or none) is replaced by the
 * upstream's own host. SOCKS4 (not 4a) needs an IPv4 peer address.
 *
 * Gotchas: like `SocksClient.ts`, every handshake byte is tapped and the
 * library's `resume()` after `established` is swallowed, so bytes the peer
 * sent in the same read as the second reply are unshifted, not lost.
 */
import * as net from "node:net"
import { Effect } from "effect"
import { Errors, type Inbound, Outbound } from "@proxyd/runtime"
import { SocksClient } from "socks"
import { failed, type Hop, type HopFailure, type Target, timedOut } from "./Hop.ts"
import { HandshakeTimer, handshakeLength, mapError, proxyOf } from "./SocksClient.ts"

/** Length of a SOCKS5 reply at the start of `b`, or undefined if incomplete. */
const replyLength = (b: Buffer): number | undefined => {
  if (b.length < 5) return undefined
  const len = b[3] === 0x01 ? 10 : b[3] === 0x04 ? 22 : 7 + b[4]!
  return b.length >= len ? len : undefined
}

type Peer = { readonly host: string; readonly port: number; readonly socket: net.Socket }

export const socksBind = Effect.fnUntraced(function*(hop: Hop, target: Target, ctx: Outbound.OutboundContext) {
  if (hop.kind === "socks4" && !net.isIPv4(target.host)) return yield* Effect.fail(failed(hop.name, `SOCKS4 BIND needs an IPv4 peer address, not ${target.host}: use socks4a or socks5`))
  const ms = hop.connectTimeoutMs ?? ctx.connectTimeoutMs
  const socket = yield* Outbound.direct(hop.host, hop.port, { ...ctx, connectTimeoutMs: ms }).pipe(Effect.mapError((e) =>
    e.reason._tag === "Timeout" ? timedOut(hop.name, "TCP connect to the upstream timed out") : failed(hop.name, `cannot connect to the upstream (${e.reason._tag})`)))
  return yield* Effect.callback<Inbound.UpstreamBind, HopFailure>((resume) => {
    const version = hop.kind === "socks5" ? 5 : 4
    const seen: Array<Buffer> = []
    const tap = (b: Buffer): void => { seen.push(b) }
    socket.on("data", tap)
    let bound = false
    let settle: { ok: (p: Peer) => void; no: (e: HopFailure) => void } | undefined
    let outcome: { peer: Peer } | { error: HopFailure } | undefined
    const finish = (o: { peer: Peer } | { error: HopFailure }): void => {
      if (outcome !== undefined) return
      outcome = o
      if (settle !== undefined) ("peer" in o ? settle.ok(o.peer) : settle.no(o.error))
    }
    const close = (): void => {
      socket.destroy()
      finish({ error: failed(hop.name, "BIND ended") })
    }
    const proxy = proxyOf(hop, version)
    let client: SocksClient
    const handshake = new HandshakeTimer()
    try {
      client = new SocksClient({ command: "bind", destination: { host: target.host, port: target.port }, proxy, timeout: ms, existing_socket: socket })
    } catch (e) {
      socket.destroy()
      resume(Effect.fail(failed(hop.name, `cannot ask to bind for ${target.host}: ${e instanceof Error ? e.message.slice(0, 80) : "invalid"}`)))
      return
    }
    client.once("bound", (info: { remoteHost?: { host?: string; port: number } }) => {
      bound = true
      const h = info.remoteHost?.host
      const host = h === undefined || h === "0.0.0.0" || h === "" ? hop.host : h
      const accepted = (timeoutMs: number): Effect.Effect<Peer, Errors.OutboundError> =>
        Effect.callback<Peer, Errors.OutboundError>((done) => {
          const timer = setTimeout(() => { close(); done(Effect.fail(new Errors.OutboundError({ reason: { _tag: "Timeout", hop: hop.name } }))) }, timeoutMs)
          settle = {
            ok: (p) => { clearTimeout(timer); done(Effect.succeed(p)) },
            no: (e) => { clearTimeout(timer); done(Effect.fail(new Errors.OutboundError({ reason: e.reason }))) },
          }
          if (outcome !== undefined) ("peer" in outcome ? settle.ok(outcome.peer) : settle.no(outcome.error))
          return Effect.sync(() => { clearTimeout(timer); close() })
        })
      resume(Effect.succeed({ host, port: info.remoteHost?.port ?? 0, accepted, close }))
    })
    client.once("established", (info: { remoteHost?: { host?: string; port: number } }) => {
      const own = socket as unknown as { resume: () => net.Socket }
      own.resume = () => {
        delete (own as { resume?: unknown }).resume
        socket.off("data", tap)
        const all = Buffer.concat(seen)
        const first = version === 5 ? handshakeLength(all, 5) ?? all.length : 8
        const used = version === 5 ? first + (replyLength(all.subarray(first)) ?? all.length - first) : 16
        if (all.length > used) socket.unshift(all.subarray(used))
        handshake.end()
        finish({ peer: { host: info.remoteHost?.host ?? "0.0.0.0", port: info.remoteHost?.port ?? 0, socket } })
        return socket
      }
    })
    client.once("error", (e: Error) => {
      socket.off("data", tap)
      socket.destroy()
      handshake.end()
      const err = mapError(hop, e.message, Buffer.concat(seen), true)
      if (!bound) resume(Effect.fail(err))
      else finish({ error: err })
    })
    handshake.start(() => client.connect(socket))
    return Effect.sync(() => { if (!bound) socket.destroy() })
  })
})
