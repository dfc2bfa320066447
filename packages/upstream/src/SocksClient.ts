/**
 * One SOCKS4/4a/5 hop over an existing socket, with the `socks` package.
 *
 * Details: the socket is already connected to the hop (TCP, or through the
 * previous hops). The destination goes as given: a name travels as a name
 * (SOCKS5 ATYP 3, SOCKS4a), an IP literal as an address; SOCKS4 (not 4a)
 * needs an IPv4 literal, which the chain resolves before calling. A SOCKS5
 * rejection keeps its REP code (`socksCode`), Tor's extended 0xF0–0xF7
 * included; a SOCKS4 rejection has no SOCKS5 equivalent (general failure).
 *
 * Gotchas: the `socks` package drops bytes that arrive in the same read as the
 * final reply (it re-emits them as a `data` event and then resumes the
 * socket, before anyone listens). So this module taps every byte of the
 * handshake itself, swallows the library's `resume()` (the socket stays
 * paused), and unshifts whatever followed the reply. Early data from the far
 * side is never lost. The next hop resumes the socket itself: a `data`
 * listener alone does not resume an explicitly paused stream.
 * The package's handshake timer is never cleared (socks 2.8: it is started in
 * `connect()` and not kept), so it holds the client for the whole `timeout`
 * after the handshake, and through it the socket and everything the relay
 * hangs on it: every connection through an upstream was kept ~10 s (7.5 KB
 * promoted per connection at 1,200 connections/s, 41 us of scavenge each).
 * So the hop catches that timer as the library starts it (`HandshakeTimer`: the
 * global `setTimeout` is wrapped for the synchronous `connect()` call only) and
 * clears it when the handshake is over; and `forget` empties the client, so a
 * timer not caught (another version of the package) keeps a bare shell (the
 * timer then finds an established or failed client and does nothing).
 */
import type * as net from "node:net"
import { SocksClient } from "socks"
import { failed, type Hop, HopFailure, type Target, timedOut } from "./Hop.ts"

/** Length of the server's handshake bytes (method choice, auth reply, final reply), or undefined if incomplete. */
export const handshakeLength = (b: Buffer, version: 4 | 5): number | undefined => {
  if (version === 4) return b.length >= 8 ? 8 : undefined
  if (b.length < 2) return undefined
  const i = b[1] === 0x02 ? 4 : 2
  if (b.length < i + 5) return undefined
  const atyp = b[i + 3]
  const len = atyp === 0x01 ? 10 : atyp === 0x04 ? 22 : 7 + b[i + 4]!
  return b.length >= i + len ? i + len : undefined
}

/** The SOCKS5 REP code of the final reply, if it arrived. */
export const socks5Rep = (b: Buffer): number | undefined => {
  if (b.length < 2) return undefined
  const i = b[1] === 0x02 ? 4 : 2
  return b.length >= i + 2 && b[i] === 0x05 ? b[i + 1] : undefined
}

/** Codes that mean "the proxy could not reach the target", not "the proxy is broken". */
const TARGET_CODES = new Set([0x02, 0x03, 0x04, 0x05, 0x06, 0x08])

export const mapError = (hop: Hop, message: string, seen: Buffer, last: boolean): HopFailure => {
  const version = hop.kind === "socks5" ? 5 : 4
  if (message.includes("timed out")) return timedOut(hop.name, "the SOCKS handshake timed out")
  if (message.includes("Authentication failed")) return failed(hop.name, "the upstream refused the credentials")
  if (message.includes("no accepted authentication type")) return failed(hop.name, "the upstream accepts none of the offered auth methods")
  if (version === 5 && message.includes("rejected")) {
    const rep = socks5Rep(seen)
    const code = rep === undefined ? {} : { socksCode: rep }
    return failed(hop.name, `the upstream answered REP 0x${(rep ?? 1).toString(16).padStart(2, "0")}`, code, last && rep !== undefined && (TARGET_CODES.has(rep) || rep >= 0xf0))
  }
  if (version === 4 && message.includes("rejected")) {
    return failed(hop.name, `the upstream answered SOCKS4 code 0x${(seen[1] ?? 0x5b).toString(16)}`, {}, last)
  }
  if (message.includes("closed")) return failed(hop.name, "the upstream closed the connection during the handshake")
  return failed(hop.name, `SOCKS handshake failed: ${message.slice(0, 120)}`)
}

/** The `socks` package's proxy settings for a hop (SOCKS4 sends no password). */
export const proxyOf = (hop: Hop, version: 4 | 5) => ({
  host: hop.host, port: hop.port, type: version,
  ...(hop.user === undefined ? {} : { userId: hop.user }),
  ...(hop.pass === undefined || version === 4 ? {} : { password: hop.pass }),
}) as const

/**
 * Drops what a finished `SocksClient` refers to (see the Gotchas): its socket, options
 * (credentials included), buffer, handlers and listeners. Only once the handshake is over: after
 * the library's own `established` work (it reads its buffer in a `setImmediate`, then calls the
 * socket's `resume`) or after its `error` event.
 */
export const forget = (client: SocksClient): void => {
  client.removeAllListeners()
  const c = client as unknown as Record<string, unknown>
  for (const k of ["socket", "options", "receiveBuffer", "onDataReceived", "onClose", "onError", "onConnect"]) c[k] = undefined
}

/** Runs `f` and returns the first timer it started with the global `setTimeout` (see the Gotchas), if any. */
const firstTimer = (f: () => void): ReturnType<typeof setTimeout> | undefined => {
  const real = globalThis.setTimeout
  let first: ReturnType<typeof setTimeout> | undefined
  const wrapped = (...args: Parameters<typeof setTimeout>): ReturnType<typeof setTimeout> => {
    const t = real(...args)
    first ??= t
    return t
  }
  globalThis.setTimeout = Object.assign(wrapped, real)
  try { f() } finally { globalThis.setTimeout = real }
  return first
}

/**
 * One client's handshake timer (see the Gotchas): `start` runs the client's `connect()` and
 * catches the timer the package starts there; `end`, once the handshake is over (established or
 * failed), clears it, also when the end came during `connect()`, before the timer was caught.
 */
export class HandshakeTimer {
  private timer: ReturnType<typeof setTimeout> | undefined
  private over = false
  start(connect: () => void): void {
    this.timer = firstTimer(connect)
    if (this.over) clearTimeout(this.timer)
  }
  end(): void {
    this.over = true
    clearTimeout(this.timer)
  }
}

/** Runs one SOCKS handshake on `socket` asking for `target`; resolves with the same socket, paused, early data intact. */
export const socksHop = (socket: net.Socket, hop: Hop, target: Target, timeoutMs: number, last: boolean): Promise<net.Socket> =>
  new Promise<net.Socket>((resolve, reject) => {
    const seen: Array<Buffer> = []
    let phase: "handshake" | "excess" = "handshake"
    const tap = (b: Buffer): void => { if (phase === "handshake") seen.push(b) }
    socket.on("data", tap)
    const version = hop.kind === "socks5" ? 5 : 4
    const proxy = proxyOf(hop, version)
    let client: SocksClient
    const timer = new HandshakeTimer()
    try {
      client = new SocksClient({ command: "connect", destination: { host: target.host, port: target.port }, proxy, timeout: timeoutMs, existing_socket: socket })
    } catch (e) {
      socket.off("data", tap)
      reject(failed(hop.name, `cannot ask for ${target.host}: ${e instanceof Error ? e.message.slice(0, 80) : "invalid"}`))
      return
    }
    client.once("established", () => {
      phase = "excess"
      // The library calls resume() from a setImmediate after re-emitting the excess; swallow that call.
      const own = socket as unknown as { resume: () => net.Socket }
      own.resume = () => {
        delete (own as { resume?: unknown }).resume
        socket.off("data", tap)
        const all = Buffer.concat(seen)
        const used = handshakeLength(all, version) ?? all.length
        if (all.length > used) socket.unshift(all.subarray(used))
        timer.end()
        forget(client)
        resolve(socket)
        return socket
      }
    })
    client.once("error", (e: Error) => {
      socket.off("data", tap)
      socket.destroy()
      timer.end()
      forget(client)
      reject(mapError(hop, e.message, Buffer.concat(seen), last))
    })
    timer.start(() => client.connect(socket))
    // A socket handed over by a previous SOCKS hop is explicitly paused; adding a `data` listener does not resume it.
    socket.resume()
  })
