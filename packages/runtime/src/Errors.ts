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

const SOCKS5_REPLIES: Readonly<Record<number, string>> = {
  0x01: "general failure", 0x02: "not allowed by ruleset", 0x03: "network unreachable", 0x04: "host unreachable",
  0x05: "connection refused", 0x06: "TTL expired", 0x07: "command not supported", 0x08: "address type not supported",
  // Tor's extended codes (SocksPort `ExtendedErrors`).
  0xf0: "onion service descriptor not found", 0xf1: "onion service descriptor is invalid",
  0xf2: "onion service introduction failed", 0xf3: "onion service rendezvous failed",
  0xf4: "onion service missing client authorization", 0xf5: "onion service wrong client authorization",
  0xf6: "invalid onion address", 0xf7: "onion service introduction timed out",
}

/** A short text for a SOCKS5 REP code, Tor's 0xF0–0xF7 included. */
export const socks5ReplyText = (code: number): string => SOCKS5_REPLIES[code] ?? `reply 0x${code.toString(16).padStart(2, "0")}`
