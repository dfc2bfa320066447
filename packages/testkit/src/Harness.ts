/**
 * Test harness: a real TCP listener that serves an `InboundHandler` with a
 * `SessionContext` built from real parts (not a mock of the runtime).
 *
 * Details: `decide` evaluates a checked policy with the reference interpreter
 * (`missing: "need"`; `dst.ip` is looked up with `dns.lookup`); `connect`
 * opens a real `net.connect` (allow → resolved address or the name, redirect →
 * its target; block/via/tor fail); `relay` is native pipe both ways. Every
 * listener and socket is closed by `stop()`. Notes (the close log fields) are
 * collected per connection.
 */
import { connect as netConnect, createServer, type Socket } from "node:net"
import { lookup } from "node:dns/promises"
import { Effect, Exit, Fiber } from "effect"
import { Check, Ir, Reference } from "@proxyd/rules"
import { Errors, type Inbound } from "@proxyd/runtime"

export interface HarnessOptions {
  readonly rules?: string
  readonly auth?: Inbound.SessionContext["auth"]
  readonly users?: Readonly<Record<string, string>>
  readonly host?: string
  readonly handshakeTimeoutMs?: number
  readonly connectTimeoutMs?: number
}

export interface Harness {
  readonly host: string
  readonly port: number
  readonly sessions: Array<{ notes: Record<string, unknown>; user?: string; decided: Array<Inbound.Decided> }>
  stop(): Promise<void>
}

export const ALLOW_ALL = "policy p {\n  default allow\n}\n"

export const policyOf = (rules: string): Ir.PolicyIR => {
  const r = Check.checkSource(rules)
  if (r.program === undefined) throw new Error(`rules do not check: ${r.diagnostics.map((d) => `${d.code} ${d.message}`).join("; ")}`)
  const name = r.program.defaultPolicy ?? [...r.program.policies.keys()][0]!
  return r.program.policies.get(name)!
}

const reasonOf = (e: NodeJS.ErrnoException | undefined): Errors.OutboundReason => {
  switch (e?.code) {
    case "ECONNREFUSED": return { _tag: "Refused" }
    case "EHOSTUNREACH": return { _tag: "HostUnreachable" }
    case "ENETUNREACH": return { _tag: "NetworkUnreachable" }
    case "ENOTFOUND": case "EAI_AGAIN": return { _tag: "DnsFailed", host: "" }
    case "ETIMEDOUT": return { _tag: "Timeout" }
    default: return { _tag: "General", message: e?.message ?? "connect failed" }
  }
}

const connectTo = (host: string, port: number, timeoutMs: number) =>
  Effect.callback<Inbound.Connected, Errors.OutboundError>((resume) => {
    const s = netConnect({ host, port, allowHalfOpen: true })
    const timer = setTimeout(() => {
      s.destroy()
      resume(Effect.fail(new Errors.OutboundError({ reason: { _tag: "Timeout" } })))
    }, timeoutMs)
    s.once("error", (e) => {
      clearTimeout(timer)
      resume(Effect.fail(new Errors.OutboundError({ reason: reasonOf(e) })))
    })
    s.once("connect", () => {
      clearTimeout(timer)
      s.removeAllListeners("error")
      s.on("error", () => s.destroy())
      resume(Effect.succeed({ socket: s, localAddress: s.localAddress!, localPort: s.localPort!, remoteAddress: s.remoteAddress!, remotePort: s.remotePort! }))
    })
    return Effect.sync(() => s.destroy())
  })

const pipeBoth = (a: Socket, b: Socket) =>
  Effect.callback<Inbound.RelayStats>((resume) => {
    let closed = 0
    const onClose = () => {
      closed++
      if (closed === 2) resume(Effect.succeed({ bytesUp: b.bytesWritten, bytesDown: b.bytesRead }))
    }
    a.on("error", () => b.destroy())
    b.on("error", () => a.destroy())
    if (a.destroyed) closed++
    else a.once("close", onClose)
    if (b.destroyed) closed++
    else b.once("close", onClose)
    a.pipe(b)
    b.pipe(a)
    if (closed === 2) resume(Effect.succeed({ bytesUp: b.bytesWritten, bytesDown: b.bytesRead }))
    return Effect.sync(() => {
      a.destroy()
      b.destroy()
    })
  })

export const start = (handler: Inbound.InboundHandler, opts: HarnessOptions = {}): Promise<Harness> => {
  const policy = policyOf(opts.rules ?? ALLOW_ALL)
  const sessions: Harness["sessions"] = []
  const fibers = new Set<Fiber.Fiber<void>>()
  const sockets = new Set<Socket>()
  const host = opts.host ?? "127.0.0.1"
  let n = 0
  const server = createServer({ pauseOnConnect: true, allowHalfOpen: true }, (client) => {
    sockets.add(client)
    client.once("close", () => sockets.delete(client))
    client.on("error", () => client.destroy())
    const session: Harness["sessions"][number] = { notes: {}, decided: [] }
    sessions.push(session)
    let user: string | undefined
    let groups: ReadonlyArray<string> | undefined
    const ctx: Inbound.SessionContext = {
      id: String(++n),
      listener: "test",
      srcIp: client.remoteAddress!,
      srcPort: client.remotePort!,
      localAddress: client.localAddress!,
      auth: opts.auth ?? "none",
      handshakeTimeoutMs: opts.handshakeTimeoutMs ?? 2000,
      authenticate: (u, p) => Effect.sync(() => {
        const expected = opts.users?.[u]
        return expected !== undefined && expected === p ? { ok: true, user: u, groups: [] } : { ok: false }
      }),
      setUser: (u, g) => {
        user = u
        groups = g
        if (u !== undefined) session.user = u
      },
      decide: (input) => Effect.promise(async () => {
        let req: Ir.Request = {
          command: input.command, dstHost: input.dstHost, dstPort: input.dstPort, protocol: input.protocol,
          listener: "test", srcIp: client.remoteAddress!, srcPort: client.remotePort!,
          auth: user === undefined ? "none" : "password",
          ...(user === undefined ? {} : { user }), ...(groups === undefined ? {} : { groups }),
        }
        let resolved: string | undefined
        for (let round = 0; round < 8; round++) {
          const out = Reference.evaluateReference(policy, req, { missing: "need" })
          if (out.type === "decision") {
            const d: Inbound.Decided = { decision: out.decision, request: req, ...(resolved === undefined ? {} : { resolved }) }
            session.decided.push(d)
            return d
          }
          let value: string | null = null
          if (out.fact === "dst.ip") {
            value = await lookup(input.dstHost).then((a) => a.address, () => null)
            if (value !== null) resolved = value
          }
          req = { ...req, facts: { ...req.facts, [out.fact]: value } }
        }
        throw new Error("policy did not decide")
      }),
      connect: (decided) => {
        const a = decided.decision.action
        const timeout = opts.connectTimeoutMs ?? 2000
        if (a.k === "allow") return connectTo(decided.resolved ?? decided.request.dstHost, decided.request.dstPort, timeout)
        if (a.k === "redirect") return connectTo(a.host, a.port, timeout)
        if (a.k === "block") return Effect.fail(new Errors.OutboundError({ reason: a.message === undefined ? { _tag: "Blocked" } : { _tag: "Blocked", message: a.message } }))
        return Effect.fail(new Errors.OutboundError({ reason: { _tag: "General", message: `${a.k} not available in the harness` } }))
      },
      relay: (c, up) => {
        sockets.add(up)
        up.once("close", () => sockets.delete(up))
        return pipeBoth(c, up)
      },
      note: (fields) => Object.assign(session.notes, fields),
    }
    const fiber = Effect.runFork(handler.handle(client, ctx).pipe(Effect.ensuring(Effect.sync(() => client.destroy()))))
    fibers.add(fiber)
    fiber.addObserver((exit) => {
      fibers.delete(fiber)
      if (Exit.isFailure(exit) && !Exit.hasInterrupts(exit)) session.notes.defect = String(exit.cause)
    })
  })
  return new Promise((resolve, reject) => {
    server.once("error", reject)
    server.listen({ host, port: 0 }, () => {
      const a = server.address()
      resolve({
        host,
        port: typeof a === "object" && a !== null ? a.port : 0,
        sessions,
        stop: async () => {
          server.close()
          await Promise.all([...fibers].map((f) => Effect.runPromise(Fiber.interrupt(f))))
          for (const s of sockets) s.destroy()
        },
      })
    })
  })
}
