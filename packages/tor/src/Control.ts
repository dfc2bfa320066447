/**
 * A minimal Tor ControlPort client: authenticate, GETINFO, SIGNAL.
 *
 * Details: replies follow the control-spec: lines `CODE-text` (more lines
 * follow), `CODE+text` (a data block follows, ended by a line `.`, with
 * leading dots doubled) and `CODE text` (the last line). `ReplyParser` is
 * incremental and pure. Authentication: cookie (the file is read at each
 * connect and sent hex-encoded), password (`AUTHENTICATE "…"` with quotes
 * and backslashes escaped), or none. Commands are answered in order; async
 * events (6xx) are ignored (this client never subscribes). Helpers parse
 * `status/bootstrap-phase`, `stream-status` and `circuit-status`.
 *
 * Gotchas: the password and cookie never appear in errors. A connection that
 * cannot be made names the ControlPort ("cannot reach Tor's ControlPort …").
 */
import { readFileSync } from "node:fs"
import * as net from "node:net"

export interface Reply {
  readonly code: number
  /** Text of each line (without the code), data blocks appended as their own lines. */
  readonly lines: ReadonlyArray<string>
}

export type ControlAuth = { readonly cookie: string } | { readonly password: string } | undefined

export interface ControlTarget {
  readonly host: string
  readonly port: number
  readonly auth: ControlAuth
  readonly timeoutMs?: number
}

export class ControlError extends Error {}

/** Incremental reply parser: feed bytes, take complete replies. */
export class ReplyParser {
  private pending = ""
  private lines: Array<string> = []
  private inData = false

  /** Adds text; returns the replies completed by it. */
  push(text: string): Array<Reply> {
    this.pending += text
    const out: Array<Reply> = []
    for (let nl = this.pending.indexOf("\n"); nl >= 0; nl = this.pending.indexOf("\n")) {
      const line = this.pending.slice(0, nl).replace(/\r$/, "")
      this.pending = this.pending.slice(nl + 1)
      if (this.inData) {
        if (line === ".") this.inData = false
        else this.lines.push(line.startsWith("..") ? line.slice(1) : line)
        continue
      }
      if (line.length < 4 || !/^\d{3}[ +-]/.test(line)) throw new ControlError(`malformed control reply line: ${JSON.stringify(line.slice(0, 60))}`)
      const code = Number(line.slice(0, 3))
      const sep = line[3]
      this.lines.push(line.slice(4))
      if (sep === "+") this.inData = true
      else if (sep === " ") {
        const lines = this.lines
        this.lines = []
        if (code >= 600 && code < 700) continue // async event
        out.push({ code, lines })
      }
    }
    return out
  }
}

/** `"…"` with backslashes and quotes escaped (control-spec QuotedString). */
export const quoted = (s: string): string => `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"')}"`

/** The AUTHENTICATE command for an auth method (cookie bytes given, not the path). */
export const authenticateCommand = (auth: { readonly cookie: Buffer } | { readonly password: string } | undefined): string =>
  auth === undefined ? "AUTHENTICATE" : "cookie" in auth ? `AUTHENTICATE ${auth.cookie.toString("hex")}` : `AUTHENTICATE ${quoted(auth.password)}`

/** The value of `key` in a GETINFO reply (single line `key=value` or a data block `key=` + lines). */
export const infoValue = (r: Reply, key: string): string | undefined => {
  const i = r.lines.findIndex((l) => l.startsWith(`${key}=`))
  if (i < 0) return undefined
  const first = r.lines[i]!.slice(key.length + 1)
  if (first !== "") return first
  const rest: Array<string> = []
  for (let j = i + 1; j < r.lines.length && r.lines[j] !== "OK"; j++) rest.push(r.lines[j]!)
  return rest.join("\n")
}

export interface Bootstrap { readonly progress: number; readonly tag: string; readonly summary: string; readonly warning?: string }

/** Parses `status/bootstrap-phase`: `NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"`. */
export const parseBootstrap = (v: string): Bootstrap | undefined => {
  const progress = /\bPROGRESS=(\d+)/.exec(v)
  if (progress === null) return undefined
  const tag = /\bTAG=(\S+)/.exec(v)?.[1] ?? "?"
  const summary = /\bSUMMARY="((?:[^"\\]|\\.)*)"/.exec(v)?.[1] ?? ""
  const warning = /\bWARNING="((?:[^"\\]|\\.)*)"/.exec(v)?.[1]
  return { progress: Number(progress[1]), tag, summary, ...(warning === undefined ? {} : { warning }) }
}

export interface StreamStatus { readonly id: string; readonly status: string; readonly circuit: string; readonly target: string }

/** Parses `stream-status`: one `ID STATUS CIRCID TARGET` per line. */
export const parseStreams = (v: string): Array<StreamStatus> =>
  v.split("\n").map((l) => l.trim().split(" ")).filter((p) => p.length >= 4)
    .map(([id, status, circuit, target]) => ({ id: id!, status: status!, circuit: circuit!, target: target! }))

export interface CircuitStatus { readonly id: string; readonly status: string; readonly purpose?: string; readonly socksUsername?: string }

/** Parses `circuit-status`: `ID STATUS [PATH] KEY=VALUE…` per line. */
export const parseCircuits = (v: string): Array<CircuitStatus> =>
  v.split("\n").filter((l) => l.trim() !== "").map((l) => {
    const [id, status] = l.trim().split(" ")
    const purpose = /\bPURPOSE=(\S+)/.exec(l)?.[1]
    const user = /\bSOCKS_USERNAME="((?:[^"\\]|\\.)*)"/.exec(l)?.[1]
    return { id: id!, status: status ?? "", ...(purpose === undefined ? {} : { purpose }), ...(user === undefined ? {} : { socksUsername: user }) }
  })

/** An open, authenticated control connection. */
export interface Controller {
  command(line: string): Promise<Reply>
  getInfo(key: string): Promise<string>
  signal(name: string): Promise<void>
  close(): void
}

const hostPort = (h: string, p: number): string => (h.includes(":") ? `[${h}]:${p}` : `${h}:${p}`)

/** Connects and authenticates. */
export const connectControl = (t: ControlTarget): Promise<Controller> => {
  const where = hostPort(t.host, t.port)
  const timeoutMs = t.timeoutMs ?? 5000
  return new Promise<Controller>((resolve, reject) => {
    let cookie: Buffer | undefined
    if (t.auth !== undefined && "cookie" in t.auth) {
      try {
        cookie = readFileSync(t.auth.cookie)
      } catch (e) {
        reject(new ControlError(`cannot read Tor's control cookie \`${t.auth.cookie}\` (${(e as { code?: string }).code ?? "error"})`))
        return
      }
    }
    const s = net.connect({ host: t.host, port: t.port })
    const parser = new ReplyParser()
    const waiting: Array<{ ok: (r: Reply) => void; ko: (e: Error) => void }> = []
    let broken: Error | undefined
    const fail = (e: Error): void => {
      broken ??= e
      for (const w of waiting.splice(0)) w.ko(broken)
      s.destroy()
      reject(broken) // no-op once authenticated
    }
    s.setTimeout(timeoutMs, () => waiting.length > 0 && fail(new ControlError(`Tor's ControlPort ${where} did not answer within ${timeoutMs} ms`)))
    s.on("data", (b: Buffer) => {
      try {
        for (const r of parser.push(b.toString("latin1"))) waiting.shift()?.ok(r)
      } catch (e) {
        fail(e as Error)
      }
    })
    s.on("error", (e: NodeJS.ErrnoException) => fail(new ControlError(`cannot reach Tor's ControlPort ${where}: ${e.code === "ECONNREFUSED" ? "connection refused" : e.code ?? e.message}`)))
    s.on("close", () => fail(new ControlError(`Tor's ControlPort ${where} closed the connection`)))
    const command = (line: string): Promise<Reply> => new Promise<Reply>((ok, ko) => {
      if (broken !== undefined) return ko(broken)
      waiting.push({ ok, ko })
      s.write(`${line}\r\n`)
    })
    const expectOk = async (line: string, what: string): Promise<Reply> => {
      const r = await command(line)
      if (r.code !== 250) throw new ControlError(`${what}: Tor answered ${r.code} ${r.lines.join(" ").slice(0, 120)}`)
      return r
    }
    const controller: Controller = {
      command,
      getInfo: async (key) => {
        const v = infoValue(await expectOk(`GETINFO ${key}`, `GETINFO ${key}`), key)
        if (v === undefined) throw new ControlError(`GETINFO ${key}: no value in Tor's answer`)
        return v
      },
      signal: async (name) => { await expectOk(`SIGNAL ${name}`, `SIGNAL ${name}`) },
      close: () => { s.end("QUIT\r\n"); s.destroy() },
    }
    s.once("connect", () => {
      const auth = cookie !== undefined ? { cookie } : t.auth !== undefined && "password" in t.auth ? { password: t.auth.password } : undefined
      command(authenticateCommand(auth)).then((r) => {
        if (r.code === 250) return resolve(controller)
        fail(new ControlError(`Tor's ControlPort ${where} refused the ${auth === undefined ? "unauthenticated connection" : "cookie" in auth ? "cookie" : "password"} (${r.code} ${r.lines.join(" ").slice(0, 80)})`))
      }, reject)
    })
  })
}

/** Connects, runs `f`, closes. */
export const withControl = async <A>(t: ControlTarget, f: (c: Controller) => Promise<A>): Promise<A> => {
  const c = await connectControl(t)
  try {
    return await f(c)
  } finally {
    c.close()
  }
}

/** Tor's bootstrap phase (the health proxyd logs). */
export const bootstrapStatus = (t: ControlTarget): Promise<Bootstrap> =>
  withControl(t, async (c) => {
    const v = await c.getInfo("status/bootstrap-phase")
    const b = parseBootstrap(v)
    if (b === undefined) throw new ControlError(`cannot parse Tor's bootstrap phase: ${v.slice(0, 80)}`)
    return b
  })

/** `SIGNAL NEWNYM`: new circuits for new streams (Tor rate-limits it to one per 10 s, delaying later ones). */
export const newnym = (t: ControlTarget): Promise<void> => withControl(t, (c) => c.signal("NEWNYM"))
