/**
 * TLS-wrapped listeners: secure contexts loaded from files, and the server-side handshake.
 *
 * Details: `loadContext` reads the certificate chain, key and optional client
 * CA (PEM) and builds a `SecureContext`; any problem (missing file, bad PEM,
 * key not matching the certificate) is returned as a message, so a start or a
 * reload with a broken certificate is refused and the old policy keeps
 * serving. With a `ca`, clients must present a certificate that chains to it
 * (mTLS). `handshake` wraps an accepted, still paused `net.Socket` in a
 * server `TLSSocket` (bytes already buffered on the raw socket — e.g. after a
 * PROXY header — are fed to TLS first by Node) and completes when the
 * handshake does. The TLS socket stays in paused mode, so sniffing, handlers'
 * `read()` loops and the relay's `pipe` work as on plain TCP.
 *
 * Gotchas: a standalone server `TLSSocket` neither sets `authorized` nor
 * enforces `rejectUnauthorized` after the handshake the way `tls.Server`
 * does (OpenSSL only refuses a missing certificate; Node's verify callback
 * accepts any chain and records the error). So `handshake` asks the TLS
 * handle for the recorded verification error exactly as `tls.Server` does
 * (`_handle.verifyError()`), and fails closed if that internal is missing.
 * Failure messages carry OpenSSL's reason only (never key material).
 */
import { readFileSync } from "node:fs"
import type { Socket } from "node:net"
import * as tls from "node:tls"
import { Effect } from "effect"
import type { Ir } from "@proxyd/rules"

export interface TlsPaths {
  readonly cert: string
  readonly key: string
  readonly ca?: string
}

export interface TlsContext {
  readonly context: tls.SecureContext
  readonly requireClientCert: boolean
}

const readPem = (what: string, path: string): Buffer | string => {
  try {
    return readFileSync(path)
  } catch (e) {
    return `cannot read TLS ${what} ${path}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`
  }
}

/** Builds the secure context from the files, or returns why not. */
export const loadContext = (paths: TlsPaths): TlsContext | string => {
  const cert = readPem("certificate", paths.cert)
  if (typeof cert === "string") return cert
  const key = readPem("key", paths.key)
  if (typeof key === "string") return key
  const ca = paths.ca === undefined ? undefined : readPem("client CA", paths.ca)
  if (typeof ca === "string") return ca
  try {
    const context = tls.createSecureContext({ cert, key, ...(ca === undefined ? {} : { ca }) })
    return { context, requireClientCert: ca !== undefined }
  } catch (e) {
    const m = e instanceof Error ? e.message : String(e)
    return `TLS certificate ${paths.cert} / key ${paths.key}${paths.ca === undefined ? "" : ` / client CA ${paths.ca}`}: ${m}`
  }
}

/** Resolves the checker's secret references to paths (relative ones from the declaring file's directory). */
export const pathsOf = (t: NonNullable<Ir.ListenerIR["tls"]>, resolve: (p: string) => string): TlsPaths | string => {
  const one = (what: string, r: Ir.SecretRef): string | { error: string } =>
    r.from === "file" ? resolve(r.path) : { error: `TLS ${what} must be a file path` }
  const cert = one("cert", t.cert), key = one("key", t.key), ca = t.ca === undefined ? undefined : one("ca", t.ca)
  for (const x of [cert, key, ca]) if (typeof x === "object") return x.error
  return { cert: cert as string, key: key as string, ...(ca === undefined ? {} : { ca: ca as string }) }
}

/** Why the client's certificate does not verify against the listener's CA, or `undefined` when it does. */
const clientCertError = (s: tls.TLSSocket): string | undefined => {
  const handle = (s as unknown as { _handle?: { verifyError?: () => (Error & { code?: string }) | null } })._handle
  if (typeof handle?.verifyError !== "function") return "cannot verify (this Node version hides the verification result)"
  if (Object.keys(s.getPeerCertificate()).length === 0) return "none presented"
  const e = handle.verifyError()
  return e === null || e === undefined ? undefined : (e.code ?? e.message)
}

export type HandshakeResult =
  | { readonly ok: true; readonly socket: tls.TLSSocket }
  | { readonly ok: false; readonly message: string }

/** Server-side TLS handshake on an accepted (paused) socket. Interruption destroys the TLS socket. */
export const handshake = (raw: Socket, ctx: TlsContext): Effect.Effect<HandshakeResult> =>
  Effect.callback<HandshakeResult>((resume) => {
    const s = new tls.TLSSocket(raw, {
      isServer: true,
      secureContext: ctx.context,
      requestCert: ctx.requireClientCert,
      rejectUnauthorized: ctx.requireClientCert,
    })
    let settled = false
    const finish = (r: HandshakeResult) => {
      if (settled) return
      settled = true
      s.off("secure", onSecure)
      s.off("error", onError)
      s.off("close", onClose)
      s.on("error", () => {})
      if (!r.ok) s.destroy()
      resume(Effect.succeed(r))
    }
    const onSecure = () => {
      if (ctx.requireClientCert) {
        const why = clientCertError(s)
        if (why !== undefined) return finish({ ok: false, message: `client certificate rejected: ${why}` })
      }
      finish({ ok: true, socket: s })
    }
    const onError = (e: NodeJS.ErrnoException) => finish({ ok: false, message: `TLS handshake failed: ${e.code ?? e.message}` })
    const onClose = () => finish({ ok: false, message: "connection closed during the TLS handshake" })
    s.once("secure", onSecure)
    s.on("error", onError)
    s.once("close", onClose)
    return Effect.sync(() => { if (!settled) { settled = true; s.on("error", () => {}); s.destroy() } })
  })
