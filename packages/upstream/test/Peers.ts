/**
 * Real upstream proxies for the tests, started on loopback and stopped by PID:
 * microsocks (SOCKS5), Dante `danted` (SOCKS4/5, optional username auth),
 * tinyproxy (HTTP CONNECT, optional Basic auth). Plus small TCP servers
 * (the byte and port helpers are `@proxyd/testkit`'s).
 *
 * Details: each peer gets a temp config file and a free port; `start*`
 * resolves once the port accepts connections. A missing binary fails the test
 * under `CI=true` (`.ci/run` installs `microsocks dante-server tinyproxy`) and
 * skips it otherwise. Dante's username method uses system accounts: the test
 * user is created with `useradd` only when running as root.
 */
import { execFileSync, spawn } from "node:child_process"
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { connect, createServer, type Server, type Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { closedPort, hashBytes, sendRandom, waitPort } from "@proxyd/testkit"

const find = (names: ReadonlyArray<string>): string | undefined => {
  for (const n of names) {
    for (const dir of ["/usr/bin", "/usr/sbin", "/usr/local/bin", "/usr/local/sbin", "/bin", "/sbin"]) {
      if (existsSync(join(dir, n))) return join(dir, n)
    }
  }
  return undefined
}

export const BIN = {
  microsocks: find(["microsocks"]),
  danted: find(["danted", "sockd"]),
  tinyproxy: find(["tinyproxy"]),
}

/** True when the binary exists; throws under CI=true; otherwise skips the test with a message. */
export const need = (ctx: { skip: (note?: string) => void }, what: keyof typeof BIN, pkg: string): boolean => {
  if (BIN[what] !== undefined) return true
  if (process.env["CI"] === "true") throw new Error(`${what} is required for these tests in CI (.ci/run must \`apt-get install -y ${pkg}\`)`)
  ctx.skip(`${what} is not installed (apt-get install -y ${pkg}): skipping`)
  return false
}

export interface Peer { readonly port: number; readonly output: () => string; stop(): Promise<void> }

const run = async (bin: string, args: ReadonlyArray<string>, port: number, dir?: string): Promise<Peer> => {
  const child = spawn(bin, args, { stdio: ["ignore", "pipe", "pipe"] })
  let out = ""
  child.stdout?.on("data", (d: Buffer) => { if (out.length < 100_000) out += d.toString() })
  child.stderr?.on("data", (d: Buffer) => { if (out.length < 100_000) out += d.toString() })
  try {
    await waitPort(port, child)
  } catch (e) {
    child.kill("SIGKILL")
    throw new Error(`${bin} did not start: ${(e as Error).message}\n${out}`)
  }
  return {
    port,
    output: () => out,
    stop: () => new Promise<void>((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) { if (dir !== undefined) rmSync(dir, { recursive: true, force: true }); return resolve() }
      child.once("exit", () => { if (dir !== undefined) rmSync(dir, { recursive: true, force: true }); resolve() })
      if (child.pid !== undefined) process.kill(child.pid, "SIGKILL")
    }),
  }
}

export const startMicrosocks = async (auth?: { user: string; pass: string }): Promise<Peer> => {
  const port = await closedPort()
  return run(BIN.microsocks!, ["-i", "127.0.0.1", "-p", String(port), ...(auth === undefined ? [] : ["-u", auth.user, "-P", auth.pass])], port)
}

export const startTinyproxy = async (auth?: { user: string; pass: string }): Promise<Peer> => {
  const port = await closedPort()
  const dir = mkdtempSync(join(tmpdir(), "proxyd-tinyproxy-"))
  const conf = join(dir, "tinyproxy.conf")
  const root = process.getuid?.() === 0
  writeFileSync(conf, [
    `Port ${port}`, "Listen 127.0.0.1", "Timeout 600", "MaxClients 200", "LogLevel Critical", "Allow 127.0.0.1",
    ...(root ? ["User nobody", "Group nogroup"] : []),
    ...(auth === undefined ? [] : [`BasicAuth ${auth.user} ${auth.pass}`]),
    "",
  ].join("\n"))
  return run(BIN.tinyproxy!, ["-d", "-c", conf], port, dir)
}

export const DANTE_USER = "proxydtest"
export const DANTE_PASS = "Upstr3am-test"

/** Creates the system user Dante authenticates (root only); false when that is not possible. */
export const ensureDanteUser = (): boolean => {
  if (process.getuid?.() !== 0) return false
  try {
    execFileSync("id", [DANTE_USER], { stdio: "ignore" })
  } catch {
    execFileSync("useradd", ["-M", "-s", "/usr/sbin/nologin", DANTE_USER], { stdio: "ignore" })
  }
  execFileSync("chpasswd", [], { input: `${DANTE_USER}:${DANTE_PASS}\n`, stdio: ["pipe", "ignore", "ignore"] })
  return true
}

export const startDante = async (withAuth: boolean): Promise<Peer> => {
  const port = await closedPort()
  const dir = mkdtempSync(join(tmpdir(), "proxyd-dante-"))
  const conf = join(dir, "sockd.conf")
  const root = process.getuid?.() === 0
  writeFileSync(conf, [
    "logoutput: stderr",
    `internal: 127.0.0.1 port = ${port}`,
    "external: 127.0.0.1",
    "clientmethod: none",
    `socksmethod: ${withAuth ? "username" : "none"}`,
    ...(root ? ["user.privileged: root", "user.unprivileged: nobody"] : []),
    "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }",
    "socks pass { from: 127.0.0.0/8 to: 127.0.0.0/8 }",
    "",
  ].join("\n"))
  return run(BIN.danted!, ["-f", conf, "-p", join(dir, "sockd.pid")], port, dir)
}

/** A TCP relay to 127.0.0.1:`to` that delays the first bytes of each direction by `delayMs` (adds latency). */
export const delayingRelay = async (to: number, delayMs: number): Promise<{ port: number; close(): Promise<void> }> => {
  const sockets = new Set<Socket>()
  const server: Server = createServer({ pauseOnConnect: true }, (c) => {
    sockets.add(c)
    const u = connect({ host: "127.0.0.1", port: to })
    sockets.add(u)
    const kill = () => { c.destroy(); u.destroy() }
    c.on("error", kill); u.on("error", kill); c.on("close", kill); u.on("close", kill)
    const delayed = (from: Socket, dst: Socket) => from.on("data", (d: Buffer) => { from.pause(); setTimeout(() => { dst.write(d); from.resume() }, delayMs) })
    u.once("connect", () => { delayed(c, u); delayed(u, c); c.resume() })
  })
  await new Promise<void>((r) => server.listen({ host: "127.0.0.1", port: 0 }, () => r()))
  const a = server.address()
  return {
    port: typeof a === "object" && a !== null ? a.port : 0,
    close: () => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(() => r()) }),
  }
}

/**
 * A server that hashes the first `total` bytes each client sends and sends `total` random bytes back
 * (sha256 both ways). Nobody half-closes: tinyproxy and Dante tear a connection down on the first FIN.
 */
export const hashServer = async (total: number): Promise<{ port: number; results: Array<Promise<{ got: string; gotBytes: number; sent: string }>>; close(): Promise<void> }> => {
  const results: Array<Promise<{ got: string; gotBytes: number; sent: string }>> = []
  const sockets = new Set<Socket>()
  const server = createServer({ allowHalfOpen: true }, (s) => {
    sockets.add(s)
    s.on("error", () => {})
    results.push(Promise.all([hashBytes(s, total), sendRandom(s, total, false)]).then(([g, sent]) => ({ got: g.hash, gotBytes: g.bytes, sent })))
  })
  await new Promise<void>((r) => server.listen({ host: "127.0.0.1", port: 0 }, () => r()))
  const a = server.address()
  return {
    port: typeof a === "object" && a !== null ? a.port : 0,
    results,
    close: () => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(() => r()) }),
  }
}

/** An echo server that first greets each client with `hello:` (server-speaks-first: early data). */
export const greetServer = async (greeting = "hello:"): Promise<{ port: number; close(): Promise<void> }> => {
  const sockets = new Set<Socket>()
  const server = createServer((s) => { sockets.add(s); s.on("error", () => {}); s.write(greeting); s.pipe(s) })
  await new Promise<void>((r) => server.listen({ host: "127.0.0.1", port: 0 }, () => r()))
  const a = server.address()
  return {
    port: typeof a === "object" && a !== null ? a.port : 0,
    close: () => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(() => r()) }),
  }
}
