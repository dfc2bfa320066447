/**
 * The `tor` outbound: Tor endpoints from the program, as an `OutboundProvider`.
 *
 * Details: the connector opens a SOCKS5 stream to the endpoint's SocksPort
 * for the destination exactly as the client named it (`request.dstHost`, never
 * the address the policy may have resolved), with isolation credentials from
 * `Isolation.ts`. Tor's rejections become `UpstreamFailed { socksCode, hop }`
 * (the SOCKS handler replies with the same code, 0xF0–0xF7 included); an
 * unreachable SocksPort is `General` with the reason named. With a ControlPort
 * declared, `activate` starts a health poll (`status/bootstrap-phase`, every
 * 10 s, 2 s while not bootstrapped); changes are logged (`tor bootstrapped`,
 * `tor not bootstrapped`, `tor control port unreachable`), and while Tor
 * reports less than 100 % a connection fails at once with a clear reason.
 * `newnym(name)` sends `SIGNAL NEWNYM`; `status()` reports each endpoint.
 * Deadlines: the server's connect timeout for the TCP connection to the
 * SocksPort, then at least 60 s for Tor's answer (an onion's descriptor
 * fetch and rendezvous regularly take longer than a direct connect).
 * Log line fields (`ctx.note`): `tor` (the endpoint), `tor_isolation`,
 * `tor_error` on failure.
 *
 * Gotchas: `prepare` reads the control password (a missing secret refuses the
 * program); the cookie file is read at each control connection (Tor rewrites
 * it at every start). A relative cookie path is resolved against the rules
 * file that declares the endpoint. Only CONNECT goes through Tor (BIND and UDP
 * are refused by the protocol handlers for tor decisions).
 */
import { readFileSync } from "node:fs"
import * as path from "node:path"
import type * as net from "node:net"
import { Effect } from "effect"
import type { Ir } from "@proxyd/rules"
import { Errors, type Log, type Outbound } from "@proxyd/runtime"
import { type Bootstrap, bootstrapStatus, type ControlAuth, type ControlTarget, newnym as sendNewnym } from "./Control.ts"
import { credentials, newSalt } from "./Isolation.ts"
import { connectThroughTor, TorFailure } from "./TorSocks.ts"

export interface TorStatus {
  readonly name: string
  readonly socks: string
  readonly control?: string
  /** Last bootstrap phase read from the ControlPort; undefined before the first answer or without a ControlPort. */
  readonly bootstrap?: Bootstrap
  /** Why the last health check failed (ControlPort unreachable, auth refused). */
  readonly problem?: string
}

export interface TorOutbound extends Outbound.OutboundProvider {
  /** Sends `SIGNAL NEWNYM` to the endpoint's ControlPort (the only one when `name` is omitted). */
  newnym(name?: string): Promise<void>
  status(): ReadonlyArray<TorStatus>
}

export interface TorOptions {
  /** Isolation salt (tests); default random per process. */
  readonly salt?: Buffer
  /** Health poll interval while bootstrapped (default 10 s). */
  readonly pollMs?: number
}

interface Endpoint {
  readonly ir: Ir.TorIR
  readonly control?: ControlTarget
  health: { bootstrap?: Bootstrap; problem?: string }
  timer?: ReturnType<typeof setTimeout>
}

const hostPort = (h: string, p: number): string => (h.includes(":") ? `[${h}]:${p}` : `${h}:${p}`)

const readSecret = (ref: Ir.SecretRef, declaredIn: string): { ok: true; value: string } | { ok: false; problem: string } => {
  if (ref.from === "literal") return { ok: true, value: ref.value }
  if (ref.from === "env") {
    const v = process.env[ref.name]
    return v === undefined ? { ok: false, problem: `environment variable \`${ref.name}\` is not set` } : { ok: true, value: v }
  }
  const p = path.resolve(path.dirname(declaredIn), ref.path)
  try {
    return { ok: true, value: readFileSync(p, "utf8").replace(/\r?\n$/, "") }
  } catch (e) {
    return { ok: false, problem: `cannot read \`${p}\` (${(e as { code?: string }).code ?? "error"})` }
  }
}

/** The ControlPort target of an endpoint, or a problem (an unreadable password). */
export const controlTarget = (t: Ir.TorIR): ControlTarget | string | undefined => {
  if (t.control === undefined) return undefined
  let auth: ControlAuth
  const a = t.control.auth
  if (a !== undefined && "cookie" in a) auth = { cookie: path.resolve(path.dirname(t.span.file), a.cookie) }
  else if (a !== undefined) {
    const r = readSecret(a.password, t.span.file)
    if (!r.ok) return `tor \`${t.name}\` (${t.span.file}:${t.span.start.line}): the control password cannot be read: ${r.problem}`
    auth = { password: r.value }
  }
  return { host: t.control.host, port: t.control.port, auth }
}

/** Tor's answer may take longer than a direct connect (descriptor fetch, rendezvous); Tor itself gives up after 120 s. */
export const TOR_ANSWER_MS = 60_000

const fail = (reason: Errors.OutboundReason) => new Errors.OutboundError({ reason })

export const makeTor = (opts: TorOptions = {}): TorOutbound => {
  const salt = opts.salt ?? newSalt()
  const pollMs = opts.pollMs ?? 10_000
  const prepared = new WeakMap<Ir.Program, Map<string, ControlTarget | undefined>>()
  let endpoints = new Map<string, Endpoint>()
  let log: Log.Log | undefined
  let closed = false

  const poll = (e: Endpoint): void => {
    if (e.control === undefined || closed) return
    bootstrapStatus(e.control).then(
      (b) => {
        const before = e.health
        e.health = { bootstrap: b }
        const was = before.bootstrap?.progress
        if (b.progress >= 100 && (was === undefined || was < 100)) log?.info("tor bootstrapped", { tor: e.ir.name, progress: b.progress })
        else if (b.progress < 100 && (was !== b.progress || before.problem !== undefined)) {
          log?.warn("tor not bootstrapped", { tor: e.ir.name, progress: b.progress, phase: b.tag, summary: b.summary, ...(b.warning === undefined ? {} : { warning: b.warning }) })
        }
      },
      (err: Error) => {
        if (e.health.problem !== err.message) log?.warn("tor control port unreachable", { tor: e.ir.name, error: err.message })
        e.health = { problem: err.message }
      },
    ).finally(() => {
      if (closed || endpoints.get(e.ir.name) !== e) return
      const done = (e.health.bootstrap?.progress ?? 0) >= 100
      e.timer = setTimeout(() => poll(e), done ? pollMs : Math.min(2000, pollMs))
      e.timer.unref()
    })
  }

  const stopAll = (): void => {
    for (const e of endpoints.values()) if (e.timer !== undefined) clearTimeout(e.timer)
  }

  const connector: Outbound.Connector = (decided, ctx) => {
    const a = decided.decision.action
    if (a.k !== "tor") return Effect.fail(fail({ _tag: "General", message: "not a tor decision" }))
    const req = decided.request
    if (req.command !== "connect") return Effect.fail(fail({ _tag: "CommandNotSupported" }))
    const e = endpoints.get(a.target)
    if (e === undefined) return Effect.fail(fail({ _tag: "General", message: `tor \`${a.target}\` is not declared in the current rules` }))
    const t = e.ir
    const note = (fields: Record<string, unknown>): void => ctx.note?.({ tor: t.name, tor_isolation: t.isolate, ...fields })
    const b = e.health.bootstrap
    if (b !== undefined && b.progress < 100) {
      const message = `Tor \`${t.name}\` is not bootstrapped yet (${b.progress}%: ${b.summary || b.tag})`
      note({ tor_error: message })
      return Effect.fail(fail({ _tag: "General", message }))
    }
    const creds = credentials(salt, t, { user: req.user, srcIp: req.srcIp, rule: decided.decision.rule })
    return Effect.callback<net.Socket, Errors.OutboundError>((resume) => {
      const abort = new AbortController()
      connectThroughTor({
        socksHost: t.socksHost, socksPort: t.socksPort, dstHost: req.dstHost, dstPort: req.dstPort,
        user: creds?.user, pass: creds?.pass,
        connectTimeoutMs: ctx.connectTimeoutMs, timeoutMs: Math.max(ctx.connectTimeoutMs, TOR_ANSWER_MS),
      }, abort.signal).then(
        (s) => { note({}); resume(Effect.succeed(s)) },
        (err: unknown) => {
          const f = err instanceof TorFailure ? err : new TorFailure("protocol", String(err))
          note({ tor_error: f.message })
          const reason: Errors.OutboundReason = f.kind === "rejected"
            ? { _tag: "UpstreamFailed", hop: t.name, ...(f.socksCode === undefined ? {} : { socksCode: f.socksCode }) }
            : f.kind === "timeout" ? { _tag: "Timeout", hop: t.name }
            : f.socksCode !== undefined ? { _tag: "UpstreamFailed", hop: t.name, socksCode: f.socksCode }
            : { _tag: "General", message: f.message }
          resume(Effect.fail(fail(reason)))
        },
      )
      return Effect.sync(() => abort.abort())
    })
  }

  return {
    kinds: ["tor"],
    prepare: (program) => {
      const problems: Array<string> = []
      const controls = new Map<string, ControlTarget | undefined>()
      for (const t of program.tors.values()) {
        const c = controlTarget(t)
        if (typeof c === "string") problems.push(c)
        else controls.set(t.name, c)
      }
      prepared.set(program, controls)
      return problems
    },
    activate: (program, env) => {
      log = env.log
      const controls = prepared.get(program) ?? new Map()
      stopAll()
      const next = new Map<string, Endpoint>()
      for (const t of program.tors.values()) {
        const control = controls.get(t.name) ?? (() => { const c = controlTarget(t); return typeof c === "string" ? undefined : c })()
        const old = endpoints.get(t.name)
        const same = old !== undefined && JSON.stringify([old.ir.socksHost, old.ir.socksPort, old.ir.control]) === JSON.stringify([t.socksHost, t.socksPort, t.control])
        next.set(t.name, { ir: t, ...(control === undefined ? {} : { control }), health: same ? old.health : {} })
      }
      endpoints = next
      for (const e of next.values()) poll(e)
    },
    connectors: () => new Map([["tor", connector]]),
    newnym: (name) => {
      const list = [...endpoints.values()]
      const e = name === undefined ? (list.length === 1 ? list[0] : undefined) : endpoints.get(name)
      if (e === undefined) return Promise.reject(new Error(name === undefined ? `name the tor endpoint (${list.map((x) => x.ir.name).join(", ") || "none declared"})` : `tor \`${name}\` is not declared`))
      if (e.control === undefined) return Promise.reject(new Error(`tor \`${e.ir.name}\` has no control port declared`))
      return sendNewnym(e.control)
    },
    status: () => [...endpoints.values()].map((e) => ({
      name: e.ir.name,
      socks: hostPort(e.ir.socksHost, e.ir.socksPort),
      ...(e.ir.control === undefined ? {} : { control: hostPort(e.ir.control.host, e.ir.control.port) }),
      ...(e.health.bootstrap === undefined ? {} : { bootstrap: e.health.bootstrap }),
      ...(e.health.problem === undefined ? {} : { problem: e.health.problem }),
    })),
    close: () => { closed = true; stopAll() },
  }
}
