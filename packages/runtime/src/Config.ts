/**
 * Serving settings from a checked program: listeners (or `--listen` overrides), timeouts, limits.
 *
 * Details: each value comes from the listener's setting, else `options { ... }`,
 * else the default: handshake 10 s, connect 10 s, idle 5 min, drain 30 s,
 * max connections 10 000 overall (per listener: the overall value), per source
 * IP unlimited unless set. Durations in the IR are milliseconds.
 * `--listen [proto://]host:port` replaces the file's listeners; proto is
 * socks5, socks4, http or mixed (default mixed). An override takes policy,
 * auth and limits from the file's listener of the same kind when there is
 * exactly one such listener (so `--listen` never drops a declared `auth`),
 * else from the file's only listener, else the default policy, no auth. The
 * first override of a kind keeps that listener's name (policies may test `listener`).
 * An override also keeps that listener's `tls` and `proxy-protocol` (dropping
 * TLS silently would expose the traffic). TLS paths are resolved from the
 * directory of the file that declares the listener; `tls` is an error message
 * when a reference is not a file.
 */
import { dirname, isAbsolute, resolve } from "node:path"
import type { Ir } from "@proxyd/rules"
import { pathsOf, type TlsPaths } from "./Tls.ts"

export interface ListenerSpec {
  readonly name: string
  readonly kind: Ir.ListenerKind
  readonly host: string
  readonly port: number
  readonly policy: string
  readonly auth: { readonly source: string; readonly required: boolean } | undefined
  readonly handshakeMs: number
  readonly idleMs: number
  readonly connectMs: number
  readonly maxConnections: number
  readonly maxPerIp: number
  readonly tls: TlsPaths | string | undefined
  /** Peers trusted to send a PROXY protocol header; `undefined`: no PROXY protocol. */
  readonly proxyProtocol: ReadonlyArray<Ir.Cidr> | undefined
}

export interface GlobalSpec {
  readonly drainMs: number
  readonly maxConnections: number
  readonly maxPerIp: number
}

export const DEFAULTS = {
  handshakeMs: 10_000,
  connectMs: 10_000,
  idleMs: 300_000,
  drainMs: 30_000,
  maxConnections: 10_000,
  maxPerIp: Number.POSITIVE_INFINITY,
} as const

const num = (v: unknown): number | undefined => (typeof v === "number" && Number.isFinite(v) ? v : undefined)

export const globalSpec = (program: Ir.Program): GlobalSpec => ({
  drainMs: num(program.options["drain-timeout"]) ?? DEFAULTS.drainMs,
  maxConnections: num(program.options["max-connections"]) ?? DEFAULTS.maxConnections,
  maxPerIp: num(program.options["max-connections-per-ip"]) ?? DEFAULTS.maxPerIp,
})

const KINDS: ReadonlyArray<Ir.ListenerKind> = ["socks5", "socks4", "http", "mixed"]

export interface ListenOverride { readonly kind: Ir.ListenerKind; readonly host: string; readonly port: number }

/** Parses `[proto://]host:port` (`[v6]:port` for IPv6), or returns why not. */
export const parseListen = (s: string): ListenOverride | string => {
  let rest = s
  let kind: Ir.ListenerKind = "mixed"
  const m = /^([a-z0-9]+):\/\//.exec(s)
  if (m !== null) {
    if (!(KINDS as ReadonlyArray<string>).includes(m[1]!)) return `unknown listener protocol \`${m[1]}\` in \`${s}\` (socks5, socks4, http or mixed)`
    kind = m[1] as Ir.ListenerKind
    rest = s.slice(m[0].length)
  }
  const hp = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]]+)):(\d{1,5})$/.exec(rest)
  if (hp === null) return `expected [proto://]host:port, found \`${s}\``
  const port = Number(hp[3])
  if (port > 65535) return `port out of range in \`${s}\``
  return { kind, host: hp[1] ?? hp[2]!, port }
}

interface ListenerLike {
  readonly name: string
  readonly kind: Ir.ListenerKind
  readonly host: string
  readonly port: number
  readonly policy: string
  readonly auth?: { readonly source: string; readonly required: boolean } | undefined
  readonly settings: Readonly<Record<string, unknown>>
  readonly tls?: Ir.ListenerIR["tls"]
  readonly proxyProtocol?: ReadonlyArray<Ir.Cidr> | undefined
  readonly span?: Ir.ListenerIR["span"]
}

const fromDir = (l: ListenerLike) => (p: string): string =>
  isAbsolute(p) || l.span === undefined ? resolve(p) : resolve(dirname(l.span.file), p)

const specOf = (program: Ir.Program, l: ListenerLike): ListenerSpec => {
  const o = program.options
  const g = globalSpec(program)
  return {
    name: l.name,
    kind: l.kind,
    host: l.host,
    port: l.port,
    policy: l.policy,
    auth: l.auth,
    handshakeMs: num(l.settings["handshake-timeout"]) ?? num(o["handshake-timeout"]) ?? DEFAULTS.handshakeMs,
    idleMs: num(l.settings["idle-timeout"]) ?? num(o["idle-timeout"]) ?? DEFAULTS.idleMs,
    connectMs: num(o["connect-timeout"]) ?? DEFAULTS.connectMs,
    maxConnections: num(l.settings["max-connections"]) ?? g.maxConnections,
    maxPerIp: num(l.settings["max-connections-per-ip"]) ?? g.maxPerIp,
    tls: l.tls === undefined ? undefined : pathsOf(l.tls, fromDir(l)),
    proxyProtocol: l.proxyProtocol,
  }
}

/** The listeners to serve: the file's, or the overrides (see the module doc). */
export const listenerSpecs = (program: Ir.Program, overrides: ReadonlyArray<ListenOverride> | undefined): Array<ListenerSpec> => {
  if (overrides === undefined || overrides.length === 0) return program.listeners.map((l) => specOf(program, l))
  const seen = new Map<string, number>()
  const used = new Set<string>()
  return overrides.map((o) => {
    const n = (seen.get(o.kind) ?? 0) + 1
    seen.set(o.kind, n)
    const sameKind = program.listeners.filter((l) => l.kind === o.kind)
    const base = sameKind.length === 1 ? sameKind[0] : program.listeners.length === 1 ? program.listeners[0] : undefined
    let name = n === 1 && base !== undefined && !used.has(base.name) ? base.name : n === 1 ? o.kind : `${o.kind}-${n}`
    for (let i = 2; used.has(name) && i < 1000; i++) name = `${o.kind}-${i}`
    used.add(name)
    return specOf(program, {
      name,
      kind: o.kind,
      host: o.host,
      port: o.port,
      policy: base?.policy ?? program.defaultPolicy ?? "default",
      auth: base?.auth,
      settings: base?.settings ?? {},
      ...(base === undefined ? {} : { tls: base.tls, proxyProtocol: base.proxyProtocol, span: base.span }),
    })
  })
}
