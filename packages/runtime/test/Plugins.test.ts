/**
 * The plugin registry and the auth plugins: duplicate ids, third-party
 * loading (vocabulary without building), building the host, htpasswd files
 * made by `proxyd passwd` and Apache's `htpasswd`, the webhook against a real
 * local HTTP server, and the brute-force guard.
 */
import { execFileSync } from "node:child_process"
import { createServer, type IncomingMessage, type Server } from "node:http"
import { existsSync, mkdirSync, mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Exit, Layer } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { Check, type Ir } from "@proxyd/rules"
import * as Auth from "../src/Auth.ts"
import * as BruteForce from "../src/BruteForce.ts"
import * as Log from "../src/Log.ts"
import * as Plugin from "../src/Plugin.ts"
import * as Registry from "../src/Registry.ts"
import * as SharedState from "../src/SharedState.ts"
import * as Webhook from "../src/Webhook.ts"

const ROOT = join(import.meta.dirname, "..", "..", "..")
const BIN = join(ROOT, "packages", "cli", "bin", "proxyd.js")
const EXAMPLE = join(ROOT, "examples", "time-weekday-plugin", "plugin.ts")
const dir = () => mkdtempSync(join(tmpdir(), "proxyd-plugins-"))
const quiet = Log.make({ level: "error", write: () => {} })

const closers: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const c of closers.splice(0)) await c()
})

const programOf = (file: string): Ir.Program => {
  const r = Check.checkFiles([file], Check.nodeReader, Registry.checkOptions(Registry.builtins))
  if (r.program === undefined) throw new Error(JSON.stringify(r.diagnostics))
  return r.program
}

const buildHost = (plugins: ReadonlyArray<Plugin.Plugin>, file: string) =>
  Effect.runPromise(Effect.scoped(Registry.build(plugins, { program: programOf(file), rulesFile: file, log: quiet })))

describe("registry", () => {
  it("refuses duplicate plugin ids with a message naming the id", async () => {
    const a = Plugin.make({ id: "test.dup", vocabulary: {} })
    expect(Registry.validate([...Registry.builtins, a, a])).toEqual([`duplicate plugin id \`test.dup\` (plugins #${Registry.builtins.length + 1} and #${Registry.builtins.length + 2}); each plugin id must be unique`])
    expect(Registry.validate(Registry.builtins)).toEqual([])
    const d = dir()
    writeFileSync(join(d, "a.rules"), "policy p {\n  default allow\n}\n")
    const exit = await Effect.runPromiseExit(Effect.scoped(Registry.build([a, a], { program: programOf(join(d, "a.rules")), rulesFile: join(d, "a.rules"), log: quiet })))
    expect(Exit.isFailure(exit)).toBe(true)
    expect(JSON.stringify(exit)).toContain("duplicate plugin id `test.dup`")
  })

  it("refuses malformed ids at make time", () => {
    expect(() => Plugin.make({ id: "NoDots", vocabulary: {} })).toThrow(/dotted lower-case/)
  })

  it("imports a third-party plugin named by the rules file without building its layer, and refuses one whose id is taken", async () => {
    const d = dir()
    const marker = join(d, "built")
    writeFileSync(join(d, "dup.ts"), `import { Plugin } from "@proxyd/runtime"\nexport default Plugin.make({ id: "proxyd.auth.static", vocabulary: {} })\n`)
    // A plugin whose layer leaves a mark when built: \`check\` must never build it.
    writeFileSync(join(d, "marks.ts"), [
      'import { writeFileSync } from "node:fs"', 'import { Effect, Layer } from "effect"', 'import { Plugin } from "@proxyd/runtime"',
      `export default Plugin.make({ id: "test.marks", vocabulary: { fields: [{ name: "test.mark", type: "string" }] }, layer: Layer.effect(Plugin.FactSource, Effect.sync(() => { writeFileSync(${JSON.stringify(marker)}, "x"); return { fields: [], get: () => null } })) })`,
    ].join("\n"))
    const rules = join(d, "x.rules")
    writeFileSync(rules, `plugin "${EXAMPLE}"\nplugin "./dup.ts"\nplugin "./missing.ts"\nplugin "./marks.ts"\npolicy p {\n  rule r when test.mark == a -> allow\n  default allow\n}\n`)
    const third = await Registry.loadThirdParty(rules)
    expect(third.plugins.map((p) => p.id)).toEqual(["example.time.weekday", "test.marks"])
    expect(third.errors).toEqual([
      { spec: "./dup.ts", message: "duplicate plugin id `proxyd.auth.static`: another plugin already has it" },
      { spec: "./missing.ts", message: "module not found" },
    ])
    const opts = await Registry.forCheck(rules)
    const checked = Check.checkFiles([rules], Check.nodeReader, opts)
    expect(checked.diagnostics.map((x) => `${x.code} ${x.span.start.line}:${x.span.start.column} ${x.message}`)).toEqual([
      "T080 2:8 cannot load plugin `./dup.ts`: duplicate plugin id `proxyd.auth.static`: another plugin already has it",
      "T080 3:8 cannot load plugin `./missing.ts`: module not found",
    ])
    expect(existsSync(marker)).toBe(false)
  })

  it("loads a plugin by package name, resolved from the rules file's directory", async () => {
    const d = dir()
    const pkg = join(d, "node_modules", "proxyd-plugin-demo")
    mkdirSync(pkg, { recursive: true })
    writeFileSync(join(pkg, "package.json"), JSON.stringify({ name: "proxyd-plugin-demo", type: "module", exports: { ".": { import: "./index.js" } } }))
    writeFileSync(join(pkg, "index.js"), 'export const plugin = { id: "demo.tenant", vocabulary: { fields: [{ name: "demo.tenant", type: "string" }] } }\n')
    const rules = join(d, "x.rules")
    writeFileSync(rules, `plugin "proxyd-plugin-demo"\npolicy p {\n  rule t when demo.tenant == acme -> block\n  default allow\n}\n`)
    const third = await Registry.loadThirdParty(rules)
    expect(third).toEqual({ plugins: [expect.objectContaining({ id: "demo.tenant" })], errors: [] })
    expect(Check.checkFiles([rules], Check.nodeReader, await Registry.forCheck(rules)).diagnostics).toEqual([])
  })

  it("builds the host: every built-in auth kind, the guard, the example's fact source", async () => {
    const d = dir()
    const rules = join(d, "x.rules")
    writeFileSync(rules, `weekday-clock tz "Asia/Tokyo"\npolicy p {\n  default allow\n}\n`)
    const weekday = (await import(EXAMPLE)).default as Plugin.Plugin
    const r = Check.checkFiles([rules], Check.nodeReader, Registry.checkOptions([...Registry.builtins, weekday]))
    expect(r.diagnostics).toEqual([])
    const host = await Effect.runPromise(Effect.scoped(Registry.build([...Registry.builtins, weekday], { program: r.program!, rulesFile: rules, log: quiet })))
    expect([...host.auth.kinds.keys()].sort()).toEqual(["htpasswd", "static", "webhook"])
    expect(host.guard).toBeDefined()
    expect(host.facts).toHaveLength(1)
    // 2026-11-22T20:00Z is Sunday in UTC and Monday in Tokyo.
    expect(host.facts[0]!.get("time.weekday", { command: "connect", dstHost: "x", dstPort: 1, time: Date.parse("2026-11-22T20:00:00Z") })).toBe("Mon")
    expect(host.auth.load({ name: "a", kind: "ldap", settings: {}, span: r.program!.policies.get("p")!.span! }, d)).toEqual(["auth `a`: no plugin provides the auth kind `ldap`"])
  })

  it("refuses two plugins that provide the same auth kind", async () => {
    const d = dir()
    writeFileSync(join(d, "a.rules"), "policy p {\n  default allow\n}\n")
    const other = Plugin.make({ id: "test.static2", vocabulary: {}, layer: Layer.succeed(Plugin.AuthKinds, { kinds: new Map([["static", { load: () => [] }]]) }) })
    const exit = await Effect.runPromiseExit(Effect.scoped(Registry.build([...Registry.builtins, other], { program: programOf(join(d, "a.rules")), rulesFile: join(d, "a.rules"), log: quiet })))
    expect(JSON.stringify(exit)).toContain("auth kind `static` is provided by `proxyd.auth.static` and `test.static2`")
  })
})

const htpasswdLoad = async (text: string) => {
  const d = dir()
  writeFileSync(join(d, "users.htpasswd"), text)
  writeFileSync(join(d, "a.rules"), 'auth users = htpasswd "users.htpasswd"\nlisten socks5 127.0.0.1:0 auth users\npolicy p {\n  default allow\n}\n')
  const file = join(d, "a.rules")
  const host = await buildHost(Registry.builtins, file)
  const a = programOf(file).auths.get("users")!
  const src = host.auth.load(a, d)
  if (Array.isArray(src)) throw new Error(src.join("; "))
  return src as Auth.AuthSource
}

const passwd = (algo: string, user: string, pass: string): string =>
  execFileSync(process.execPath, [BIN, "passwd", "--algo", algo, user], { input: `${pass}\n`, encoding: "utf8", cwd: ROOT }).trim()

describe("htpasswd files", () => {
  it("accepts lines made by `proxyd passwd` for bcrypt, argon2id and scrypt", async () => {
    const lines = ["bcrypt", "argon2id", "scrypt"].map((a, i) => passwd(a, `u${i}`, `pw ${a}`))
    expect(lines[0]).toMatch(/^u0:\$2y\$10\$[./A-Za-z0-9]{53}$/)
    expect(lines[1]).toMatch(/^u1:\$argon2id\$v=19\$/)
    expect(lines[2]).toMatch(/^u2:\$scrypt\$ln=15,r=8,p=1\$/)
    const src = await htpasswdLoad(lines.join("\n") + "\n")
    for (const [i, a] of ["bcrypt", "argon2id", "scrypt"].entries()) {
      expect((await src.verify(`u${i}`, `pw ${a}`)).ok).toBe(true)
      expect((await src.verify(`u${i}`, `pw ${a}!`)).ok).toBe(false)
    }
    expect((await src.verify("nobody", "pw bcrypt")).ok).toBe(false)
  })

  it("an unknown user costs about as much as a known one with bcrypt (fake hash of the same cost)", async () => {
    const src = await htpasswdLoad(`${await Auth.hashPassword("pw", "bcrypt")}\n`.replace(/^/, "known:"))
    const time = async (user: string): Promise<number> => {
      const ts: Array<number> = []
      for (let i = 0; i < 5; i++) {
        const t0 = performance.now()
        expect((await src.verify(user, "wrong")).ok).toBe(false)
        ts.push(performance.now() - t0)
      }
      return ts.sort((a, b) => a - b)[2]!
    }
    const known = await time("known")
    const unknown = await time("unknown")
    expect(known).toBeGreaterThan(5)
    expect(unknown / known).toBeGreaterThan(0.5)
    expect(unknown / known).toBeLessThan(2)
  })

  it("accepts a bcrypt file made by Apache's htpasswd (-B, $2y$)", async (ctx) => {
    let line: string
    try {
      line = execFileSync("htpasswd", ["-nbB", "-C", "6", "bob", "hunter2 x"], { encoding: "utf8" }).trim()
    } catch (e) {
      if (process.env["CI"] === "true") throw e
      return ctx.skip("htpasswd (apache2-utils) is not installed")
    }
    expect(line).toMatch(/^bob:\$2y\$06\$/)
    const src = await htpasswdLoad(`${line}\n`)
    expect((await src.verify("bob", "hunter2 x")).ok).toBe(true)
    expect((await src.verify("bob", "hunter2")).ok).toBe(false)
  })

  it("refuses plaintext at check (T043) and again at load (naming the user, never the secret), and MD5 ($apr1$) at load", async () => {
    const d = dir()
    const file = join(d, "a.rules")
    writeFileSync(file, 'auth users = static {\n  alice "letmein"\n}\nlisten socks5 127.0.0.1:0 auth users\npolicy p {\n  default allow\n}\n')
    expect(Check.checkFiles([file], Check.nodeReader).diagnostics.map((x) => `${x.code} ${x.message}`)).toEqual(["T043 the password of `alice` is written in clear; a static user needs a password hash"])
    writeFileSync(file, "policy p {\n  default allow\n}\n")
    const host = await buildHost(Registry.builtins, file)
    const span = programOf(file).policies.get("p")!.span!
    const r = host.auth.load({ name: "users", kind: "static", settings: { users: [{ user: "alice", hash: "letmein", groups: [] }, { user: "bob", hash: "$apr1$abcdefgh$abcdefghijklmnopqrstuv", groups: [] }] }, span }, d)
    expect(r).toEqual([
      "auth `users`, user `alice`: unknown hash format (use $2y$ bcrypt, $scrypt$ or $argon2id$)",
      "auth `users`, user `bob`: weak hash formats ($apr1$, {SHA}, $1$) are not accepted (use $2y$ bcrypt, $scrypt$ or $argon2id$)",
    ])
    expect(JSON.stringify(r)).not.toContain("letmein")
  })
})

interface Hook { readonly url: string; readonly bodies: Array<Record<string, unknown>>; calls: number }

const readBody = (req: IncomingMessage): Promise<string> =>
  new Promise((resolve) => {
    const parts: Array<Buffer> = []
    req.on("data", (c: Buffer) => parts.push(c))
    req.on("end", () => resolve(Buffer.concat(parts).toString("utf8")))
  })

/** A local webhook: alice/right → 200 {groups}, slow → never answers in time, anything else → 401. */
const webhook = (): Promise<Hook> =>
  new Promise((resolve) => {
    const hook: { url: string; bodies: Array<Record<string, unknown>>; calls: number } = { url: "", bodies: [], calls: 0 }
    const server: Server = createServer(async (req, res) => {
      hook.calls++
      const body = JSON.parse(await readBody(req)) as Record<string, unknown>
      hook.bodies.push(body)
      if (body["user"] === "slow") return void setTimeout(() => res.end("{}"), 1_000)
      if (body["user"] === "alice" && body["password"] === "right") {
        res.writeHead(200, { "content-type": "application/json" })
        res.end(JSON.stringify({ groups: ["staff", 7, "admins"] }))
      } else if (body["user"] === "garbage") {
        res.writeHead(200)
        res.end("not json")
      } else {
        res.writeHead(401)
        res.end()
      }
    })
    server.listen(0, "127.0.0.1", () => {
      const a = server.address()
      hook.url = `http://127.0.0.1:${typeof a === "object" && a !== null ? a.port : 0}/auth`
      closers.push(() => new Promise((r) => server.close(() => r())))
      server.closeAllConnections?.()
      resolve(hook)
    })
  })

describe("webhook auth", () => {
  it("POSTs user, password, src and listener; 2xx with groups allows; other answers, timeouts and garbage deny", async () => {
    const hook = await webhook()
    let now = 1_000
    const src = Webhook.make({ url: hook.url, timeoutMs: 200, cacheMs: 5_000, now: () => now })
    const client = { src: "10.1.2.3", listener: "main" }
    expect(await src.verify("alice", "right", client)).toEqual({ ok: true, groups: ["staff", "admins"] })
    expect(hook.bodies[0]).toEqual({ user: "alice", password: "right", src: "10.1.2.3", listener: "main" })
    expect(await src.verify("alice", "wrong", client)).toEqual({ ok: false, groups: [] })
    expect(await src.verify("slow", "x", client)).toEqual({ ok: false, groups: [] })
    expect(await src.verify("garbage", "x", client)).toEqual({ ok: false, groups: [] })
    // Cached for the TTL: no new call; after it, asked again.
    const before = hook.calls
    expect((await src.verify("alice", "right", client)).ok).toBe(true)
    expect(hook.calls).toBe(before)
    now += 6_000
    expect((await src.verify("alice", "right", client)).ok).toBe(true)
    expect(hook.calls).toBe(before + 1)
  })

  it("fails closed when the endpoint is down", async () => {
    const src = Webhook.make({ url: "http://127.0.0.1:9/auth", timeoutMs: 500 })
    expect(await src.verify("alice", "right")).toEqual({ ok: false, groups: [] })
  })
})

describe("brute-force guard", () => {
  it("delays progressively, bans the source after ban-after failures (with backoff), logs fail2ban lines; other sources keep working", async () => {
    const lines: Array<string> = []
    const log = Log.make({ level: "info", write: (l) => lines.push(l) })
    let now = 0
    const state = SharedState.memory(() => now)
    const slept: Array<number> = []
    const inner: Auth.AuthSource = { verify: async (u, p) => ({ ok: u === "alice" && p === "right", groups: [] }) }
    const counted = new Map<string, number>()
    const metrics: Plugin.MetricsShape = { inc: (n, l) => void counted.set(`${n}{${Object.values(l ?? {}).join(",")}}`, (counted.get(`${n}{${Object.values(l ?? {}).join(",")}}`) ?? 0) + 1), observe: () => {}, set: () => {} }
    const g = BruteForce.guard(inner, "users", { state, log, metrics, options: { banAfter: 5, delayAfter: 2, baseDelayMs: 100, maxDelayMs: 1_000, banMs: 60_000 }, sleep: async (ms) => void slept.push(ms) })
    const bad = { src: "192.0.2.7", listener: "main" }
    for (let i = 0; i < 50; i++) expect((await g.verify("alice", `wrong${i}`, bad)).ok).toBe(false)
    // Failures 3 and 4 wait 100, 200 ms; the 5th failure bans; the rest are refused without a check.
    expect(slept).toEqual([100, 200])
    expect((await g.verify("alice", "right", bad)).ok).toBe(false)
    expect((await g.verify("alice", "right", { src: "192.0.2.8", listener: "main" })).ok).toBe(true)
    expect(Object.fromEntries(counted)).toEqual({
      "proxyd_auth_guard_total{users,failure}": 5,
      "proxyd_auth_guard_total{users,banned}": 46,
      "proxyd_auth_guard_total{users,success}": 1,
      "proxyd_bans_total{ip}": 1,
    })
    const failures = lines.filter((l) => l.includes('"msg":"auth failure"'))
    expect(failures).toHaveLength(51)
    const re = /^\{"time":"[^"]+","level":"warn","msg":"auth failure","src":"([^"]+)"/
    expect(failures.every((l) => re.exec(l)?.[1] === "192.0.2.7")).toBe(true)
    expect(failures.filter((l) => l.includes('"reason":"banned"'))).toHaveLength(46)
    expect(lines.filter((l) => l.includes('"msg":"auth ban"'))).toHaveLength(1)
    expect(lines.join("\n")).not.toContain("wrong1")
    // The ban expires; the next ban from the same source lasts twice as long.
    now += 60_001
    for (let i = 0; i < 5; i++) await g.verify("alice", "x", bad)
    now += 60_001
    expect((await g.verify("alice", "right", bad)).ok).toBe(false)
    now += 60_000
    expect((await g.verify("alice", "right", bad)).ok).toBe(true)
  })

  it("delay grows as 2^n up to the cap", () => {
    const o = { ...BruteForce.DEFAULTS }
    expect([0, 3, 4, 5, 6, 7, 8, 9, 20].map((n) => BruteForce.delayFor(n, o))).toEqual([0, 0, 250, 500, 1000, 2000, 4000, 5000, 5000])
  })
})
