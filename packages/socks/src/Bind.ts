/**
 * BIND (SOCKS5 and SOCKS4): a one-shot listener that accepts only the expected peer.
 *
 * Details: the listener binds to the outbound-facing local address (for now
 * the address the client connected to, `ctx.localAddress`), port 0. The
 * expected peer is the request's DST address: an IP literal is compared as
 * canonical text (IPv4-mapped IPv6 equals IPv4); a name is compared with the
 * address the policy resolved it to, else with every address `dns.lookup`
 * returns (the policy allowed the name, so looking it up is fine). An
 * unspecified address (0.0.0.0 or ::) accepts any peer: clients use it when
 * they do not know the peer yet. Other peers are destroyed and waiting goes
 * on, until `timeoutMs`.
 *
 * Gotchas: accepted sockets are paused (`pauseOnConnect`), so nothing the peer
 * sends before the relay starts is lost.
 */
import { createServer, type Server, type Socket } from "node:net"
import { lookup } from "node:dns/promises"
import { Effect } from "effect"
import { isUnspecified, normalizeIp } from "./Addr.ts"

export interface BindListener {
  readonly server: Server
  readonly host: string
  readonly port: number
}

export const listen = (localAddress: string): Effect.Effect<BindListener | Error> =>
  Effect.callback<BindListener | Error>((resume) => {
    const host = normalizeIp(localAddress) ?? localAddress
    const server = createServer({ pauseOnConnect: true, allowHalfOpen: true })
    server.once("error", (e) => resume(Effect.succeed(e)))
    server.listen({ host, port: 0, exclusive: true }, () => {
      server.on("error", () => {})
      const a = server.address()
      const port = typeof a === "object" && a !== null ? a.port : 0
      resume(Effect.succeed({ server, host, port }))
    })
  })

/** The set of acceptable peer IPs, or `"any"`. */
export const expectedPeers = (host: string, resolved: string | undefined): Effect.Effect<ReadonlySet<string> | "any"> => {
  const ip = normalizeIp(host)
  if (ip !== undefined) return Effect.succeed(isUnspecified(ip) ? "any" : new Set([ip]))
  const r = resolved === undefined ? undefined : normalizeIp(resolved)
  if (r !== undefined) return Effect.succeed(new Set([r]))
  return Effect.promise(() =>
    lookup(host, { all: true }).then(
      (xs) => new Set(xs.map((x) => normalizeIp(x.address) ?? x.address)),
      () => new Set<string>(),
    ))
}

/** Waits for the expected peer; `undefined` on timeout or when the client goes away. Closes the listener. */
export const acceptPeer = (
  l: BindListener,
  expected: ReadonlySet<string> | "any",
  client: Socket,
  timeoutMs: number,
): Effect.Effect<Socket | undefined> =>
  Effect.callback<Socket | undefined>((resume) => {
    let done = false
    const finish = (s: Socket | undefined) => {
      if (done) return
      done = true
      cleanup()
      resume(Effect.succeed(s))
    }
    const onConnection = (s: Socket) => {
      s.on("error", () => s.destroy())
      const ip = normalizeIp(s.remoteAddress ?? "")
      if (done || ip === undefined || (expected !== "any" && !expected.has(ip))) {
        s.destroy()
        return
      }
      finish(s)
    }
    const onClientGone = () => finish(undefined)
    const timer = setTimeout(() => finish(undefined), timeoutMs)
    const cleanup = () => {
      clearTimeout(timer)
      l.server.off("connection", onConnection)
      client.off("close", onClientGone)
      l.server.close()
    }
    l.server.on("connection", onConnection)
    client.on("close", onClientGone)
    return Effect.sync(cleanup)
  })
