/**
 * The `webhook` auth source: asks an HTTP(S) endpoint whether a user may log in.
 *
 * Details: `POST url` with `Content-Type: application/json` and the body
 * `{"user","password","src","listener"}`. A 2xx answer allows; its JSON body
 * may carry `{"groups": ["a", "b"]}` (strings only; anything else is ignored).
 * Any other status, a timeout (`timeout`, default 2 s), a network error or a
 * body that is not JSON denies (fail closed). Answers are cached for `cache`
 * (default 60 s; `0s` disables) keyed by user, a SHA-256 of the password and
 * the source address, so a changed password is asked again; denials are not
 * cached (the brute-force guard handles repeated failures). At most 10,000
 * entries; the oldest go first.
 *
 * Gotchas: the password is sent to the endpoint: use https or loopback. It is
 * never logged, and the cache keeps only its hash.
 */
import { createHash } from "node:crypto"
import type { AuthSource, Verified } from "./Auth.ts"

export interface WebhookOptions {
  readonly url: string
  readonly timeoutMs?: number
  readonly cacheMs?: number
  /** Injected for tests. */
  readonly fetch?: typeof fetch
  readonly now?: () => number
}

const MAX_CACHE = 10_000
const DENY: Verified = { ok: false, groups: [] }

export const make = (opts: WebhookOptions): AuthSource => {
  const timeoutMs = opts.timeoutMs ?? 2_000
  const cacheMs = opts.cacheMs ?? 60_000
  const doFetch = opts.fetch ?? fetch
  const now = opts.now ?? Date.now
  const cache = new Map<string, { readonly until: number; readonly groups: ReadonlyArray<string> }>()
  return {
    verify: async (user, password, client) => {
      const src = client?.src ?? ""
      const key = `${user}\u0000${createHash("sha256").update(password).digest("base64")}\u0000${src}`
      const hit = cache.get(key)
      if (hit !== undefined && hit.until > now()) return { ok: true, groups: hit.groups }
      if (hit !== undefined) cache.delete(key)
      let res: Response
      try {
        res = await doFetch(opts.url, {
          method: "POST",
          headers: { "content-type": "application/json", accept: "application/json" },
          body: JSON.stringify({ user, password, src, listener: client?.listener ?? "" }),
          signal: AbortSignal.timeout(timeoutMs),
          redirect: "error",
        })
      } catch {
        return DENY
      }
      if (res.status < 200 || res.status > 299) {
        await res.body?.cancel().catch(() => {})
        return DENY
      }
      let groups: Array<string> = []
      try {
        const text = await res.text()
        if (text.trim() !== "") {
          const body: unknown = JSON.parse(text)
          const g = typeof body === "object" && body !== null ? (body as Record<string, unknown>)["groups"] : undefined
          if (Array.isArray(g)) groups = g.filter((x): x is string => typeof x === "string")
        }
      } catch {
        return DENY
      }
      if (cacheMs > 0) {
        if (cache.size >= MAX_CACHE) cache.delete(cache.keys().next().value!)
        cache.set(key, { until: now() + cacheMs, groups })
      }
      return { ok: true, groups }
    },
  }
}
