/**
 * Connection events for metrics and the admin API, and the registry of live sessions.
 *
 * Details: an `Observer` is called synchronously at fixed points of a
 * connection (`Session.ts`) and of the server (`Server.ts`): accepted,
 * authenticated, decided, outbound connected, closed, reloaded. Every hook is
 * optional; a throwing hook is ignored (logged once by the caller's log), so
 * an observer can never break a connection. `Sessions` lists the connections
 * open now (their id, listener, client, user, destination, rule, bytes so far)
 * and can close one (`kill`: its sockets are destroyed, the close line says
 * `outcome: "killed"`).
 *
 * Gotchas: label values handed to observers are bounded by the configuration
 * (listener names, protocol and action kinds, rule names of the policy,
 * fixed outcome words) except `Closed.outcome`, which handlers may note; a
 * metrics observer must map unknown outcomes to a fixed word.
 */

import { LiveList } from "./LiveList.ts"

export interface Closed {
  readonly listener: string
  readonly protocol: string | undefined
  readonly action: string | undefined
  readonly rule: string | undefined
  readonly outcome: string
  readonly bytesUp: number
  readonly bytesDown: number
  readonly durationMs: number
  /** From accept to the first `decide` (absent: the handshake never finished). */
  readonly handshakeMs: number | undefined
}

export interface Observer {
  accepted?(e: { readonly listener: string }): void
  authenticated?(e: { readonly listener: string; readonly ok: boolean }): void
  decided?(e: { readonly listener: string; readonly protocol: string; readonly policy: string; readonly rule: string; readonly action: string; readonly durationMs: number }): void
  connected?(e: { readonly listener: string; readonly action: string; readonly ok: boolean; readonly durationMs: number }): void
  closed?(e: Closed): void
  reloaded?(e: { readonly ok: boolean; readonly version: number }): void
  /** The server is up (listeners bound); `server` is its handle, `outbounds` and `geoip` the providers it runs with. */
  started?(e: { readonly server: StartedServer; readonly outbounds: ReadonlyArray<unknown>; readonly geoip: unknown }): void
  /** Shutdown began (stop side services). */
  stopping?(e: Record<string, never>): void
}

/** What `started` hands out: the server handle (typed structurally to keep this module free of Server imports). */
export interface StartedServer {
  readonly store: { current(): { readonly version: number; readonly program: import("@proxyd/rules").Ir.Program; readonly files: ReadonlyArray<string>; readonly listeners: ReadonlyArray<{ readonly name: string; readonly kind: string; readonly host: string; readonly port: number; readonly policy: string }> } }
  readonly sessions: Sessions
  addresses(): ReadonlyArray<{ readonly listener: string; readonly kind: string; readonly host: string; readonly port: number }>
  reload(): import("effect").Effect.Effect<{ readonly ok: boolean; readonly version: number; readonly message?: string }>
}

/** Calls one hook of every observer, ignoring their failures. */
export const notify = <K extends keyof Observer>(observers: ReadonlyArray<Observer>, k: K, e: Parameters<NonNullable<Observer[K]>>[0]): void => {
  for (const o of observers) {
    const f = o[k] as ((e: unknown) => void) | undefined
    if (f === undefined) continue
    try { f.call(o, e) } catch { /* an observer never breaks a connection */ }
  }
}

export interface SessionInfo {
  readonly id: string
  readonly listener: string
  readonly src: string
  readonly startedAt: string
  readonly protocol?: string
  readonly user?: string
  readonly dst?: string
  readonly rule?: string
  readonly action?: string
  readonly bytesUp: number
  readonly bytesDown: number
}

export interface SessionEntry {
  readonly id: string
  info(): SessionInfo
  kill(): void
}

export interface Sessions {
  /** Lists `e` until the returned handle's `remove()` (idempotent). */
  add(e: SessionEntry): { remove(): void }
  list(): Array<SessionInfo>
  /** Closes one session; false when no such session is open. */
  kill(id: string): boolean
  size(): number
}

/**
 * The listing is a `LiveList`, not a Map by id: a long-lived Map with an entry per connection
 * made every connection's objects survive scavenges (LiveList.ts). `kill` walks the list (an
 * admin request, not a per-connection cost).
 */
export const makeSessions = (): Sessions => {
  const all = new LiveList<SessionEntry>()
  return {
    add: (e) => all.add(e),
    list: () => all.values().map((e) => e.info()),
    kill: (id) => {
      const e = all.find((x) => x.id === id)
      if (e === undefined) return false
      e.kill()
      return true
    },
    size: () => all.size,
  }
}
