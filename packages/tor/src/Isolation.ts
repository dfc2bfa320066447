/**
 * Stream isolation: the SOCKS username/password proxyd sends to Tor for one connection.
 *
 * Details: Tor's SocksPort isolates streams by their SOCKS credentials
 * (`IsolateSOCKSAuth`, on by default): streams with different
 * username/password pairs never share a circuit. proxyd derives the pair
 * from an isolation key chosen by the `tor` declaration's `isolate` mode:
 * `per-user` (the proxyd user, or `anonymous`), `per-rule` (the rule that
 * decided), `per-src` (the client's IP), `per-connection` (a random token),
 * `none` (no credentials: every stream may share circuits). The username is
 * `proxyd:` + 16 hex digits of HMAC-SHA256(salt, tor name + key); the
 * password is constant. The salt is random per process, so Tor (and anyone
 * reading its control port) sees neither user names nor client addresses.
 *
 * Gotchas: the client's own credentials are never part of the result; only
 * the decision's facts are. Keys are prefixed by kind so a user literally
 * named `anonymous` does not share circuits with unauthenticated clients.
 */
import { createHmac, randomBytes } from "node:crypto"
import type { Ir } from "@proxyd/rules"

export interface Credentials { readonly user: string; readonly pass: string }

/** What the key is derived from: the decision's request and rule. */
export interface IsolationInput {
  readonly user?: string | undefined
  readonly srcIp?: string | undefined
  readonly rule: string
}

export const PASSWORD = "proxyd"

/** The isolation key for a mode, or undefined for `none`. `per-connection` draws a fresh random token. */
export const isolationKey = (mode: Ir.TorIsolation, input: IsolationInput): string | undefined => {
  switch (mode) {
    case "per-user": return input.user === undefined ? "anonymous" : `user:${input.user}`
    case "per-rule": return `rule:${input.rule}`
    case "per-src": return `src:${input.srcIp ?? "unknown"}`
    case "per-connection": return `conn:${randomBytes(16).toString("hex")}`
    case "none": return undefined
  }
}

/** The SOCKS credentials for `key` on the tor endpoint `tor`. */
export const credentialsFor = (salt: Buffer, tor: string, key: string): Credentials => ({
  user: `proxyd:${createHmac("sha256", salt).update(`${tor}\0${key}`).digest("hex").slice(0, 16)}`,
  pass: PASSWORD,
})

/** Credentials for a connection, or undefined (`isolate none`: no SOCKS auth). */
export const credentials = (salt: Buffer, tor: Ir.TorIR, input: IsolationInput): Credentials | undefined => {
  const key = isolationKey(tor.isolate, input)
  return key === undefined ? undefined : credentialsFor(salt, tor.name, key)
}

/** A fresh per-process salt. */
export const newSalt = (): Buffer => randomBytes(32)
