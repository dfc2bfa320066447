/**
 * Brute-force defence around any auth source: progressive delays, then a temporary ban.
 *
 * Details: failures are counted per source address and per user name in
 * `SharedState`, each in a fixed window (`windowMs`, default 10 min).
 *  - Delay: before checking a password, a source (or a user) with `n` recent
 *    failures beyond `delayAfter` (default 3) waits
 *    `min(baseDelayMs · 2^(n − delayAfter − 1), maxDelayMs)` (250 ms doubling
 *    to 5 s). The larger of the source's and the user's delay applies.
 *  - Ban: the `banAfter`-th failure (default 10) from one source bans it for
 *    `banMs` (1 min), doubled for each earlier ban of that source within a day,
 *    capped at `maxBanMs` (1 h). A banned source is refused at once, without
 *    checking the password. User names are never banned (that would let
 *    anyone lock a user out); their failures only slow down further attempts.
 *  - Success does not reset the counters (one valid account must not let an
 *    attacker wipe its failures).
 * Every refusal is logged as one warn line `auth failure` whose first field is
 * `src` (docs/auth.md has the fail2ban regex); a new ban also logs `auth ban`.
 * Metrics (bounded labels: the auth declaration and the outcome):
 * `proxyd_auth_guard_total{auth,outcome=success|failure|banned}` (the server's
 * own `proxyd_auth_attempts_total{listener,result}` has other labels),
 * `proxyd_bans_total{scope="ip"}` (the metric `docs/metrics.md` lists; only
 * sources are banned, so the scope is always `ip`). The guard reaches the
 * metrics plugin through `PluginContext.metrics`, never by importing it.
 * The wrapped source keeps its own constant-time behaviour (unknown users are
 * checked against a fake hash), so timing does not reveal which users exist.
 *
 * Gotchas: the delay holds the client's handshake, not a thread; the
 * listener's handshake timeout still applies and closes slow attempts.
 */
import type { AuthSource, Verified } from "./Auth.ts"
import type { Log } from "./Log.ts"
import type { MetricsShape, SharedStateShape } from "./Plugin.ts"

export interface GuardOptions {
  readonly windowMs: number
  readonly delayAfter: number
  readonly baseDelayMs: number
  readonly maxDelayMs: number
  readonly banAfter: number
  readonly banMs: number
  readonly maxBanMs: number
}

export const DEFAULTS: GuardOptions = {
  windowMs: 600_000, delayAfter: 3, baseDelayMs: 250, maxDelayMs: 5_000, banAfter: 10, banMs: 60_000, maxBanMs: 3_600_000,
}

const DAY = 86_400_000
const DENY: Verified = { ok: false, groups: [] }

export const delayFor = (failures: number, o: GuardOptions): number =>
  failures <= o.delayAfter ? 0 : Math.min(o.baseDelayMs * 2 ** Math.min(failures - o.delayAfter - 1, 30), o.maxDelayMs)

export interface GuardDeps {
  readonly state: SharedStateShape
  readonly log: Log
  /** Counts `proxyd_auth_guard_total{auth, outcome}` (success, failure, banned) and `proxyd_bans_total{scope}`. */
  readonly metrics?: MetricsShape
  readonly options?: Partial<GuardOptions>
  readonly sleep?: (ms: number) => Promise<void>
}

const sleeper = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

/** `source` behind the guard; `auth` names the auth declaration in log lines. */
export const guard = (source: AuthSource, auth: string, deps: GuardDeps): AuthSource => {
  const o: GuardOptions = { ...DEFAULTS, ...deps.options }
  const { state, log } = deps
  const sleep = deps.sleep ?? sleeper
  const count = (outcome: "success" | "failure" | "banned") => deps.metrics?.inc("proxyd_auth_guard_total", { auth, outcome })
  return {
    verify: async (user, pass, client) => {
      const src = client?.src ?? "unknown"
      const listener = client?.listener ?? ""
      if ((await state.get(`ban:${src}`)) !== undefined) {
        log.warn("auth failure", { src, user, listener, auth, reason: "banned" })
        count("banned")
        return DENY
      }
      const ipFails = Number((await state.get(`fail:ip:${src}`)) ?? 0)
      const userFails = Number((await state.get(`fail:user:${user}`)) ?? 0)
      const wait = Math.max(delayFor(ipFails, o), delayFor(userFails, o))
      if (wait > 0) await sleep(wait)
      const r = await source.verify(user, pass, client)
      if (r.ok) {
        count("success")
        return r
      }
      count("failure")
      const n = await state.incr(`fail:ip:${src}`, o.windowMs)
      await state.incr(`fail:user:${user}`, o.windowMs)
      log.warn("auth failure", { src, user, listener, auth, reason: "bad-credentials", failures: n })
      if (n >= o.banAfter) {
        const bans = await state.incr(`bans:${src}`, DAY)
        const ms = Math.min(o.banMs * 2 ** Math.min(bans - 1, 30), o.maxBanMs)
        await state.set(`ban:${src}`, "1", ms)
        await state.del(`fail:ip:${src}`)
        log.warn("auth ban", { src, seconds: Math.round(ms / 1000), bans })
        deps.metrics?.inc("proxyd_bans_total", { scope: "ip" })
      }
      return r
    },
  }
}
