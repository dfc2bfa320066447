/**
 * SOCKS5 to Tor's SocksPort: the destination always as a name (ATYP 3).
 *
 * Details: one TCP connection per stream; greeting offers only what is used
 * (username/password when isolation credentials are given, else no auth),
 * then CONNECT with ATYP 3 carrying the host exactly as requested: a
 * `.onion`, a name, or an IP literal as text. proxyd never resolves anything
 * for Tor. A rejection keeps Tor's REP code (`TorFailure.socksCode`),
 * including the extended 0xF0–0xF7 onion codes (`ExtendedErrors`). An
 * unreachable SocksPort is named: "cannot reach Tor's SocksPort
 * 127.0.0.1:9050: connection refused".
 *
 * Gotchas: bytes that arrive with the final reply belong to the stream; they
 * are unshifted and the socket is returned paused (the relay resumes it).
 * Interruption (`abort`) destroys the socket.
 */
import * as net from "node:net"
import { Errors } from "@proxyd/runtime"

export interface TorTarget {
  readonly socksHost: string
  readonly socksPort: number
  readonly dstHost: string
  readonly dstPort: number
  readonly user?: string | undefined
  readonly pass?: string | undefined
  /** Deadline for Tor's answer (onion rendezvous can take tens of seconds). */
  readonly timeoutMs: number
  /** Deadline for the TCP connection to the SocksPort (default: `timeoutMs`). */
  readonly connectTimeoutMs?: number
}

export type FailureKind = "unreachable" | "timeout" | "rejected" | "protocol"

export class TorFailure extends Error {
  readonly kind: FailureKind
  readonly socksCode: number | undefined
  constructor(kind: FailureKind, message: string, socksCode?: number) {
    super(message)
    this.kind = kind
    this.socksCode = socksCode
  }
}

/** A short text for a SOCKS5 REP code as Tor uses it. */
export const replyText = (code: number): string => Errors.socks5ReplyText(code)

const ERRNO: Readonly<Record<string, string>> = {
  ECONNREFUSED: "connection refused", ECONNRESET: "connection reset", EHOSTUNREACH: "host unreachable",
  ENETUNREACH: "network unreachable", ENOTFOUND: "host not found", EADDRNOTAVAIL: "address not available",
}

const hostPort = (h: string, p: number): string => (h.includes(":") ? `[${h}]:${p}` : `${h}:${p}`)

/** The CONNECT request: VER CMD RSV ATYP=3 LEN NAME PORT. Throws for a name longer than 255 bytes. */
export const connectRequest = (host: string, port: number): Buffer => {
  const name = Buffer.from(host.startsWith("[") && host.endsWith("]") ? host.slice(1, -1) : host, "utf8")
  if (name.length === 0 || name.length > 255) throw new TorFailure("protocol", `destination name of ${name.length} bytes cannot be sent to Tor`, 0x08)
  const b = Buffer.alloc(7 + name.length)
  b.set([0x05, 0x01, 0x00, 0x03, name.length], 0)
  name.copy(b, 5)
  b.writeUInt16BE(port, 5 + name.length)
  return b
}

/** RFC 1929 username/password sub-negotiation. */
export const authRequest = (user: string, pass: string): Buffer => {
  const u = Buffer.from(user, "utf8")
  const p = Buffer.from(pass, "utf8")
  return Buffer.concat([Buffer.from([0x01, u.length]), u, Buffer.from([p.length]), p])
}

/** Length of a complete SOCKS5 reply at the start of `b`, or undefined if more bytes are needed. */
export const replyLength = (b: Buffer): number | undefined => {
  if (b.length < 5) return undefined
  const atyp = b[3]
  const len = atyp === 0x01 ? 10 : atyp === 0x04 ? 22 : atyp === 0x03 ? 7 + b[4]! : 10
  return b.length >= len ? len : undefined
}

/** Opens a stream through Tor; resolves with the socket (paused) once Tor answered 0x00. */
export const connectThroughTor = (t: TorTarget, signal?: AbortSignal): Promise<net.Socket> =>
  new Promise<net.Socket>((resolve, reject) => {
    const where = hostPort(t.socksHost, t.socksPort)
    let request: Buffer
    try {
      request = connectRequest(t.dstHost, t.dstPort)
    } catch (e) {
      reject(e)
      return
    }
    const withAuth = t.user !== undefined
    const s = net.connect({ host: t.socksHost, port: t.socksPort, allowHalfOpen: true })
    let phase: "tcp" | "method" | "auth" | "reply" | "done" = "tcp"
    let buf: Buffer = Buffer.alloc(0)
    const finish = (err: TorFailure | undefined): void => {
      if (phase === "done") return
      phase = "done"
      clearTimeout(timer)
      signal?.removeEventListener("abort", onAbort)
      s.off("data", onData)
      s.off("error", onError)
      s.off("close", onClose)
      if (err !== undefined) {
        s.on("error", () => {})
        s.destroy()
        reject(err)
        return
      }
      s.on("error", () => {})
      resolve(s)
    }
    const onAbort = (): void => finish(new TorFailure("timeout", "interrupted"))
    const expire = (): void => finish(new TorFailure("timeout", phase === "tcp"
      ? `cannot reach Tor's SocksPort ${where}: timed out`
      : `Tor did not answer within ${t.timeoutMs} ms (is it bootstrapped?)`))
    let timer = setTimeout(expire, Math.min(t.connectTimeoutMs ?? t.timeoutMs, t.timeoutMs))
    const onError = (e: NodeJS.ErrnoException): void => {
      const why = ERRNO[e.code ?? ""] ?? e.code ?? e.message
      finish(new TorFailure("unreachable", phase === "tcp" ? `cannot reach Tor's SocksPort ${where}: ${why}` : `Tor's SocksPort ${where} failed: ${why}`))
    }
    const onClose = (): void => finish(new TorFailure("protocol", `Tor's SocksPort ${where} closed the connection during the handshake`))
    const onData = (chunk: Buffer): void => {
      buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk])
      for (let i = 0; i < 3 && phase !== "done"; i++) {
        if (phase === "method") {
          if (buf.length < 2) return
          if (buf[0] !== 0x05 || buf[1] !== (withAuth ? 0x02 : 0x00)) return finish(new TorFailure("protocol", `${where} is not a Tor SocksPort accepting ${withAuth ? "username/password" : "no"} auth (method 0x${(buf[1] ?? 0).toString(16)})`))
          buf = buf.subarray(2)
          if (withAuth) { phase = "auth"; s.write(authRequest(t.user!, t.pass ?? "")) } else { phase = "reply"; s.write(request) }
        } else if (phase === "auth") {
          if (buf.length < 2) return
          if (buf[1] !== 0x00) return finish(new TorFailure("protocol", `Tor's SocksPort ${where} refused the isolation credentials`))
          buf = buf.subarray(2)
          phase = "reply"
          s.write(request)
        } else if (phase === "reply") {
          if (buf.length >= 2 && buf[0] !== 0x05) return finish(new TorFailure("protocol", `${where} answered with something that is not SOCKS5`))
          if (buf.length >= 2 && buf[1] !== 0x00) return finish(new TorFailure("rejected", `Tor answered 0x${buf[1]!.toString(16).padStart(2, "0")}: ${replyText(buf[1]!)}`, buf[1]))
          const n = replyLength(buf)
          if (n === undefined) return
          const rest = buf.subarray(n)
          s.pause()
          finish(undefined)
          if (rest.length > 0) s.unshift(rest)
          return
        }
      }
    }
    s.on("error", onError)
    s.once("close", onClose)
    if (signal?.aborted === true) { finish(new TorFailure("timeout", "interrupted")); return }
    signal?.addEventListener("abort", onAbort)
    s.once("connect", () => {
      if (phase !== "tcp") return
      phase = "method"
      clearTimeout(timer)
      timer = setTimeout(expire, t.timeoutMs)
      s.on("data", onData)
      s.write(Buffer.from([0x05, 0x01, withAuth ? 0x02 : 0x00]))
    })
  })
