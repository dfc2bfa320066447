/**
 * One upstream proxy ready to use (credentials and CA read), and the failure of a hop.
 *
 * Details: `Hop` is built from `UpstreamIR` at load time (`Upstreams.ts`).
 * `HopFailure.destination` is true when the LAST hop reported that it could
 * not reach the destination (SOCKS REP, HTTP status): a group does not try
 * another member for that, the next member would only fail the same way.
 *
 * Gotchas: `user`/`pass` are secrets: never put a `Hop` into a log line or an
 * error; use `hop.name`.
 */
import type { Ir } from "@proxyd/rules"
import type { Errors } from "@proxyd/runtime"

export interface Hop {
  readonly name: string
  readonly kind: Ir.UpstreamKind
  readonly host: string
  readonly port: number
  readonly user?: string
  readonly pass?: string
  /** The upstream's own `connect-timeout`, if written. */
  readonly connectTimeoutMs?: number
  readonly tls?: { readonly ca?: Buffer; readonly sni?: string; readonly insecure: boolean }
}

/** Where a hop is asked to connect. */
export interface Target { readonly host: string; readonly port: number }

export class HopFailure extends Error {
  readonly reason: Errors.OutboundReason
  readonly destination: boolean
  constructor(reason: Errors.OutboundReason, destination: boolean, detail: string) {
    super(detail)
    this.reason = reason
    this.destination = destination
  }
}

export const failed = (hop: string, detail: string, codes: { socksCode?: number; httpStatus?: number } = {}, destination = false): HopFailure =>
  new HopFailure({ _tag: "UpstreamFailed", hop, ...codes }, destination, detail)

export const timedOut = (hop: string, detail: string): HopFailure => new HopFailure({ _tag: "Timeout", hop }, false, detail)

export const hostPort = (t: Target): string => (t.host.includes(":") ? `[${t.host}]:${t.port}` : `${t.host}:${t.port}`)
