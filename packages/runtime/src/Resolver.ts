/**
 * The Resolver service: names to addresses, with a cache that honours TTLs.
 *
 * Details: DNS A and AAAA (node:dns `Resolver.resolve4/resolve6` with
 * `{ ttl: true }`), IPv4 first. When DNS has no answer for either family the
 * system resolver (`dns.lookup`, i.e. /etc/hosts and nsswitch) is asked and its
 * answer cached for `lookupTtlMs` (it carries no TTL). `localhost` and
 * `*.localhost` (RFC 6761) go straight to the system resolver: they are local
 * names, and the answer (loopback) is still subject to policy like any other.
 * Failures are cached for `negativeTtlMs` (default 5 s). Concurrent lookups of
 * one name share one query.
 *
 * Gotchas: never resolves `.onion` (fails with `DnsFailed` without a query);
 * rejects empty names, over-long names and names with NUL/control bytes or
 * spaces (`AddressNotSupported`) without any query. IP literals are returned
 * as they are (brackets stripped). The cache is bounded (`maxEntries`, oldest
 * evicted first).
 */
import dns from "node:dns"
import { isIP } from "node:net"
import { Context, Effect, Layer } from "effect"
import { OutboundError } from "./Errors.ts"

export interface ResolverShape {
  /** Addresses for a name (IPv4 first), or the literal itself. Never empty on success. */
  resolve(host: string): Effect.Effect<ReadonlyArray<string>, OutboundError>
  /** A fresh cached answer for a name (no query; `undefined` when there is none, or for a literal, `.onion` or invalid name). */
  readonly cached?: (host: string) => ReadonlyArray<string> | undefined
}

export class Resolver extends Context.Service<Resolver, ResolverShape>()("proxyd/Resolver") {
  static readonly layer = (opts: ResolverOptions = {}): Layer.Layer<Resolver> => Layer.succeed(Resolver, make(opts))
}

export interface ResolverOptions {
  /** DNS servers (`ip` or `ip:port`); default: the system's. */
  readonly servers?: ReadonlyArray<string>
  readonly timeoutMs?: number
  readonly negativeTtlMs?: number
  readonly lookupTtlMs?: number
  /** Upper bound for a DNS TTL (default 1 h) and lower bound (default 1 s). */
  readonly maxTtlMs?: number
  readonly minTtlMs?: number
  readonly maxEntries?: number
  /** Clock for expiry; default `Date.now`. */
  readonly now?: () => number
}

interface Entry { readonly addrs: ReadonlyArray<string> | undefined; readonly expires: number }

/** Why a name is refused before any query, or undefined when it may be resolved. */
export const invalidName = (host: string): string | undefined => {
  if (host.length === 0) return "empty name"
  if (host.length > 253 + 1) return "name too long"
  // eslint-disable-next-line no-control-regex
  if (/[\x00-\x20\x7f]/.test(host)) return "name contains control bytes or spaces"
  return undefined
}

const normalize = (host: string): string => {
  let h = host
  if (h.startsWith("[") && h.endsWith("]")) h = h.slice(1, -1)
  h = h.toLowerCase()
  if (h.endsWith(".") && h.length > 1) h = h.slice(0, -1)
  return h
}

export const isOnion = (host: string): boolean => {
  const h = normalize(host)
  return h === "onion" || h.endsWith(".onion")
}

const isLocalhost = (h: string): boolean => h === "localhost" || h.endsWith(".localhost")

export const make = (opts: ResolverOptions = {}): ResolverShape => {
  const now = opts.now ?? Date.now
  const negativeTtl = opts.negativeTtlMs ?? 5_000
  const lookupTtl = opts.lookupTtlMs ?? 30_000
  const maxTtl = opts.maxTtlMs ?? 3_600_000
  const minTtl = opts.minTtlMs ?? 1_000
  const maxEntries = opts.maxEntries ?? 10_000
  const resolver = new dns.promises.Resolver({ timeout: opts.timeoutMs ?? 3_000, tries: 2 })
  if (opts.servers !== undefined) resolver.setServers([...opts.servers])
  const cache = new Map<string, Entry>()
  const inflight = new Map<string, Promise<Entry>>()

  const put = (name: string, e: Entry): Entry => {
    if (cache.size >= maxEntries) {
      const oldest = cache.keys().next()
      if (!oldest.done) cache.delete(oldest.value)
    }
    cache.set(name, e)
    return e
  }

  const system = async (name: string): Promise<Entry> => {
    try {
      const r = await dns.promises.lookup(name, { all: true, order: "ipv4first" })
      const addrs = r.map((a) => a.address)
      return { addrs: addrs.length > 0 ? addrs : undefined, expires: now() + (addrs.length > 0 ? lookupTtl : negativeTtl) }
    } catch {
      return { addrs: undefined, expires: now() + negativeTtl }
    }
  }

  const query = async (name: string): Promise<Entry> => {
    if (isLocalhost(name)) return system(name)
    const [v4, v6] = await Promise.all([
      resolver.resolve4(name, { ttl: true }).catch(() => [] as Array<dns.RecordWithTtl>),
      resolver.resolve6(name, { ttl: true }).catch(() => [] as Array<dns.RecordWithTtl>),
    ])
    const all = [...v4, ...v6]
    if (all.length === 0) return system(name)
    const ttl = Math.min(maxTtl, Math.max(minTtl, Math.min(...all.map((r) => r.ttl * 1000))))
    return { addrs: all.map((r) => r.address), expires: now() + ttl }
  }

  const lookup = (name: string): Promise<Entry> => {
    const hit = cache.get(name)
    if (hit !== undefined && hit.expires > now()) return Promise.resolve(hit)
    const running = inflight.get(name)
    if (running !== undefined) return running
    const p = query(name).then((e) => put(name, e)).finally(() => inflight.delete(name))
    inflight.set(name, p)
    return p
  }

  const resolve = (host: string): Effect.Effect<ReadonlyArray<string>, OutboundError> => {
    const bad = invalidName(host)
    if (bad !== undefined) return Effect.fail(new OutboundError({ reason: { _tag: "AddressNotSupported" } }))
    const name = normalize(host)
    if (isIP(name) !== 0) return Effect.succeed([name])
    if (isOnion(name)) return Effect.fail(new OutboundError({ reason: { _tag: "DnsFailed", host: name } }))
    return Effect.promise(() => lookup(name)).pipe(
      Effect.flatMap((e) => e.addrs === undefined
        ? Effect.fail(new OutboundError({ reason: { _tag: "DnsFailed", host: name } }))
        : Effect.succeed(e.addrs)),
    )
  }

  const cached = (host: string): ReadonlyArray<string> | undefined => {
    const hit = cache.get(normalize(host))
    return hit !== undefined && hit.expires > now() ? hit.addrs : undefined
  }

  return { resolve, cached }
}
