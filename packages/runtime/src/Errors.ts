/**
 * Outbound failures, protocol-neutral. Protocol handlers map them to their
 * replies (SOCKS REP codes, HTTP statuses).
 */
import { Data } from "effect"

export type OutboundReason =
  | { readonly _tag: "Blocked"; readonly message?: string }
  | { readonly _tag: "Refused" }
  | { readonly _tag: "HostUnreachable" }
  | { readonly _tag: "NetworkUnreachable" }
  /** `hop` names the upstream that did not answer in time, when it was one. */
  | { readonly _tag: "Timeout"; readonly hop?: string }
  | { readonly _tag: "DnsFailed"; readonly host: string }
  | { readonly _tag: "CommandNotSupported" }
  | { readonly _tag: "AddressNotSupported" }
  /** An upstream proxy answered with a failure; `socksCode` is passed through (incl. Tor's 0xF0–0xF7). */
  | { readonly _tag: "UpstreamFailed"; readonly socksCode?: number; readonly httpStatus?: number; readonly hop?: string }
  | { readonly _tag: "General"; readonly message: string }

export class OutboundError extends Data.TaggedError("OutboundError")<{ readonly reason: OutboundReason }> {}

/** SOCKS5 REP code for a failure (RFC 1928 §6). */
export const socks5Rep = (r: OutboundReason): number => {
  switch (r._tag) {
    case "Blocked": return 0x02
    case "NetworkUnreachable": return 0x03
    case "HostUnreachable": case "DnsFailed": return 0x04
    case "Refused": return 0x05
    case "Timeout": return 0x06
    case "CommandNotSupported": return 0x07
    case "AddressNotSupported": return 0x08
    case "UpstreamFailed": return r.socksCode ?? 0x01
    case "General": return 0x01
  }
}

/** HTTP status for a failure. */
export const httpStatus = (r: OutboundReason): number => {
  switch (r._tag) {
    case "Blocked": return 403
    case "Timeout": return 504
    case "UpstreamFailed": return r.httpStatus === 504 || r.socksCode === 0x06 ? 504 : 502
    case "CommandNotSupported": case "AddressNotSupported": return 400
    default: return 502
  }
}
