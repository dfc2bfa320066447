/**
 * Benchmark targets: proxyd (allow-all, and with a 100k-rule policy) and the peers (microsocks,
 * Dante, tinyproxy, proxy-chain), started on 127.0.0.1.
 *
 * Details: each target is a child process started by the harness and stopped by its PID
 * (SIGTERM, then SIGKILL after 3 s). A peer whose binary is not installed is reported as
 * skipped, never installed here. A target's CPU time is read by `Proc.treeCpu`
 * (utime+stime+cutime+cstime over its process tree from /proc/PID/stat: Dante forks workers,
 * and a worker reaped between two readings keeps its CPU in its parent's cutime/cstime).
 */
import { type ChildProcess, spawn } from "node:child_process"
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { connect, createServer } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { fileURLToPath } from "node:url"

export type Kind = "direct" | "socks5" | "http"

export interface Target {
  readonly name: string
  readonly kind: Kind
  readonly port: number
  readonly pid: number | undefined
  stop(): Promise<void>
}

export type Start = () => Promise<Target>

const ROOT = join(import.meta.dirname, "..")
const PROXYD = join(ROOT, "packages/cli/bin/proxyd.js")

const which = (names: ReadonlyArray<string>): string | undefined => {
  for (const dir of ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"])
    for (const n of names) if (existsSync(join(dir, n))) return join(dir, n)
  return undefined
}

export const freePort = (): Promise<number> =>
  new Promise((resolve, reject) => {
    const s = createServer()
    s.once("error", reject)
    s.listen({ host: "127.0.0.1", port: 0 }, () => {
      const a = s.address()
      const port = typeof a === "object" && a !== null ? a.port : 0
      s.close(() => resolve(port))
    })
  })

const portOpen = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const c = connect({ host: "127.0.0.1", port })
    c.once("connect", () => { c.destroy(); resolve(true) })
    c.once("error", () => resolve(false))
  })

const stopChild = (child: ChildProcess, dir?: string) => async (): Promise<void> => {
  if (child.exitCode === null && child.signalCode === null) {
    const exited = new Promise<void>((r) => child.once("exit", () => r()))
    if (child.pid !== undefined) process.kill(child.pid, "SIGTERM")
    const t = setTimeout(() => { if (child.pid !== undefined) try { process.kill(child.pid, "SIGKILL") } catch { /* gone */ } }, 3_000)
    await exited
    clearTimeout(t)
  }
  if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
}

const runPeer = async (name: string, kind: Kind, bin: string, args: ReadonlyArray<string>, port: number, dir: string): Promise<Target> => {
  const child = spawn(bin, args, { stdio: ["ignore", "ignore", "pipe"] })
  let err = ""
  child.stderr?.on("data", (c: Buffer) => { if (err.length < 4096) err += c.toString() })
  const stop = stopChild(child, dir)
  for (let i = 0; i < 100; i++) {
    if (child.exitCode !== null) break
    if (await portOpen(port)) return { name, kind, port, pid: child.pid, stop }
    await new Promise((r) => setTimeout(r, 50))
  }
  await stop()
  throw new Error(`${name} did not start: ${err}`)
}

export const direct: Start = async () => ({ name: "direct", kind: "direct", port: 0, pid: undefined, stop: async () => {} })

/**
 * What proxyd targets run: `bundle` (default), the one-file bundle the installed package runs
 * (`packages/cli/build.ts`, built once per benchmark run into a temporary directory and run
 * through `bin/proxyd.js` with `PROXYD_BUNDLE`, so the start-up flags are the same), or
 * `sources`, the workspace's TypeScript as `npm start` runs it. The sources load all of Effect's
 * modules and keep their text (heap after start ~31 MB against ~11 MB) and cost ~8 % more CPU
 * per connection (docs/benchmarks.md, "Sources or the bundle").
 */
export type ProxydFrom = "bundle" | "sources"
let from: ProxydFrom = "bundle"
export const proxydFrom = (f?: ProxydFrom): ProxydFrom => { if (f !== undefined) from = f; return from }
let built: Promise<string> | undefined
/** Builds the bundle once (later calls share it); the directory goes when the process exits. */
const bundle = (): Promise<string> => built ??= new Promise<string>((resolve, reject) => {
  const dir = mkdtempSync(join(tmpdir(), "proxyd-bench-bundle-"))
  process.once("exit", () => rmSync(dir, { recursive: true, force: true }))
  const child = spawn(process.execPath, [join(ROOT, "packages/cli/build.ts"), "--outdir", dir], { cwd: ROOT, stdio: ["ignore", "ignore", "pipe"] })
  let err = ""
  child.stderr.on("data", (c: Buffer) => { if (err.length < KEEP) err += c.toString() })
  child.once("error", reject)
  child.once("exit", (code) => code === 0 ? resolve(join(dir, "proxyd.mjs")) : reject(new Error(`building the proxyd bundle failed (exit ${code}): ${err}`)))
})

/** Where a proxyd target keeps the tail of its output for error messages (bytes). */
const KEEP = 4096

/**
 * Starts proxyd on `mixed://127.0.0.1:0` serving `rules` (text, or a function making it) and
 * resolves once its `listening` log line gives the port; `timeoutMs` bounds the start-up
 * (a 100k-rule file takes tens of seconds to check).
 */
export const proxydWith = (name: string, rules: string | (() => string | Promise<string>), timeoutMs = 30_000, kind: "socks5" | "http" = "socks5", ready = "listening"): Start => async () => {
  const text = typeof rules === "string" ? rules : await rules()
  const env = from === "bundle" ? { ...process.env, PROXYD_BUNDLE: await bundle() } : { ...process.env, PROXYD_BUNDLE: "" }
  const dir = mkdtempSync(join(tmpdir(), "proxyd-bench-"))
  const file = join(dir, "bench.rules")
  writeFileSync(file, text)
  return new Promise<Target>((resolve, reject) => {
    const child = spawn(process.execPath, [PROXYD, "--rules", file, "--listen", "mixed://127.0.0.1:0", "--log-format", "json"], { cwd: ROOT, env, stdio: ["ignore", "pipe", "pipe"] })
    const stop = stopChild(child, dir)
    let tail = "" // output kept for the error message
    let partial = { stdout: "", stderr: "" } // an unfinished line per stream
    let started = false
    let port = 0 // the first `listening` line's (with workers, each worker logs one for the same port)
    const timer = setTimeout(() => { void stop(); reject(new Error(`${name} did not start within ${timeoutMs / 1000} s: ${tail}`)) }, timeoutMs)
    const onData = (stream: "stdout" | "stderr") => (chunk: Buffer) => {
      if (started) return // keep draining so the pipe never blocks proxyd
      const s = chunk.toString("utf8")
      tail = (tail + s).slice(-KEEP)
      const lines = (partial[stream] + s).split("\n")
      partial = { ...partial, [stream]: lines.pop() ?? "" }
      for (const line of lines) {
        if (line.includes('"listening"') && port === 0) port = Number((JSON.parse(line) as { port?: number }).port)
        if (!line.includes(`"${ready}"`)) continue
        started = true
        partial = { stdout: "", stderr: "" }
        clearTimeout(timer)
        resolve({ name, kind, port, pid: child.pid, stop })
        return
      }
    }
    child.stdout.on("data", onData("stdout"))
    child.stderr.on("data", onData("stderr"))
    child.once("exit", (code) => { clearTimeout(timer); rmSync(dir, { recursive: true, force: true }); if (!started) reject(new Error(`${name} exited ${code}: ${tail}`)) })
  })
}

/** proxyd with an allow-all policy. */
export const proxyd: Start = proxydWith("proxyd", "policy main {\n  default allow\n}\n")

/**
 * proxyd with `workers 2` (two worker threads, one port; the kernel spreads connections): what a
 * second core buys. Its CPU is the whole process's (every thread), from /proc like the others.
 */
export const proxydWorkers: Start = proxydWith("proxyd-workers", "options {\n  workers 2\n}\npolicy main {\n  default allow\n}\n", 30_000, "socks5", "workers started")

/** The same proxyd driven with HTTP CONNECT on its mixed port (the protocol tinyproxy and proxy-chain are measured with). */
export const proxydHttp: Start = proxydWith("proxyd-http", "policy main {\n  default allow\n}\n", 30_000, "http")

/**
 * proxyd with 100,000 generated rules (domains, suffixes, CIDRs, ports, users, groups; see
 * Policy.ts) that never match the benchmark's connections, then `default allow`: the cost of a
 * large policy per connection. Start-up checks the whole file (about a minute on the 2-core
 * machine), hence the long timeout.
 */
export const proxyd100k: Start = proxydWith("proxyd-100k", async () => (await import("./Policy.ts")).largePolicy(100_000), 300_000)

const root = process.getuid?.() === 0

/** The proxy-chain package's entry file, when `npm ci` installed it (a root devDependency). */
const proxyChainModule = (): string | undefined => {
  try {
    const f = fileURLToPath(import.meta.resolve("proxy-chain"))
    return existsSync(f) ? f : undefined
  } catch { return undefined }
}

/**
 * The peers: `bin` is undefined when the peer is not installed (the harness then skips it and
 * says why, with `install`, the command that installs it; `pkg` is its Debian or npm package).
 */
export interface Peer {
  readonly name: string
  readonly bin: string | undefined
  readonly pkg: string
  readonly install: string
  readonly start: (bin: string) => Start
}

/** Dante `sockd` on a free port, no authentication, loopback only; `extra`: more sockd.conf lines. */
const dante = (name: string, bin: string, extra: ReadonlyArray<string>): Start => async () => {
  const port = await freePort()
  const dir = mkdtempSync(join(tmpdir(), "proxyd-bench-"))
  const conf = join(dir, "sockd.conf")
  writeFileSync(conf, [
    "logoutput: stderr", `internal: 127.0.0.1 port = ${port}`, "external: 127.0.0.1",
    "clientmethod: none", "socksmethod: none",
    ...(root ? ["user.privileged: root", "user.unprivileged: nobody"] : []),
    "client pass { from: 127.0.0.0/8 to: 0.0.0.0/0 }", "socks pass { from: 127.0.0.0/8 to: 127.0.0.0/8 }", ...extra, "",
  ].join("\n"))
  return runPeer(name, "socks5", bin, ["-f", conf, "-p", join(dir, "sockd.pid")], port, dir)
}

const startMicrosocks = (bin: string, name = "microsocks"): Start => async () => {
  const port = await freePort()
  return runPeer(name, "socks5", bin, ["-i", "127.0.0.1", "-p", String(port)], port, mkdtempSync(join(tmpdir(), "proxyd-bench-")))
}

export const PEERS: ReadonlyArray<Peer> = [
  {
    name: "microsocks", bin: which(["microsocks"]), pkg: "microsocks", install: "apt-get install microsocks",
    start: (bin) => startMicrosocks(bin),
  },
  {
    name: "dante", bin: which(["danted", "sockd"]), pkg: "dante-server", install: "apt-get install dante-server",
    start: (bin) => dante("dante", bin, []),
  },
  {
    name: "tinyproxy", bin: which(["tinyproxy"]), pkg: "tinyproxy", install: "apt-get install tinyproxy",
    start: (bin) => async () => {
      const port = await freePort()
      const dir = mkdtempSync(join(tmpdir(), "proxyd-bench-"))
      const conf = join(dir, "tinyproxy.conf")
      writeFileSync(conf, [
        `Port ${port}`, "Listen 127.0.0.1", "Timeout 600", "MaxClients 10000", "LogLevel Critical", "Allow 127.0.0.1",
        ...(root ? ["User nobody", "Group nogroup"] : []), "",
      ].join("\n"))
      return runPeer("tinyproxy", "http", bin, ["-d", "-c", conf], port, dir)
    },
  },
  {
    // Apify's proxy-chain (HTTP proxy in Node) run by bench/proxy-chain-server.ts under this
    // Node (`process.execPath`); `bin` is the package's entry file, only to tell it is installed.
    name: "proxy-chain", bin: proxyChainModule(), pkg: "proxy-chain (npm)", install: "npm ci (root devDependency proxy-chain)",
    start: () => async () => {
      const port = await freePort()
      return runPeer("proxy-chain", "http", process.execPath, [join(import.meta.dirname, "proxy-chain-server.ts"), String(port)], port, mkdtempSync(join(tmpdir(), "proxyd-bench-")))
    },
  },
]

/**
 * Reference rows, not peers (never counted as "best peer"): `node-floor` is the least a SOCKS5
 * relay in Node does (bench/node-floor-server.ts: CONNECT and native pipe, no policy, log, limits
 * or timeouts), run under this Node, so a reader sees what proxyd costs on top of Node itself.
 */
export const REFERENCES: ReadonlyArray<Peer> = [
  {
    name: "node-floor", bin: process.execPath, pkg: "(bench/node-floor-server.ts)", install: "nothing: it runs under the repo's Node",
    start: () => async () => {
      const port = await freePort()
      return runPeer("node-floor", "socks5", process.execPath, [join(import.meta.dirname, "node-floor-server.ts"), String(port)], port, mkdtempSync(join(tmpdir(), "proxyd-bench-")))
    },
  },
]

/**
 * The chain rows ("chain"): a proxy relaying every connection through an upstream SOCKS5 proxy
 * (`via` in proxyd, a `route` in Dante's sockd.conf), each with a microsocks upstream of its own
 * started and stopped with it. The target's pid is the proxy's, so its CPU per connection is
 * what the hop costs that proxy (the upstream's own CPU is not counted, the same microsocks on
 * both sides). Returns undefined when microsocks or Dante is not installed.
 */
export const chainTargets = (): { readonly proxyd: Start; readonly dante: Start } | undefined => {
  const ms = which(["microsocks"])
  const sockd = which(["danted", "sockd"])
  if (ms === undefined || sockd === undefined) return undefined
  const chained = (name: string, make: (upstreamPort: number) => Start): Start => async () => {
    const up = await startMicrosocks(ms, `${name} upstream`)()
    try {
      const t = await make(up.port)()
      return { ...t, stop: async () => { await t.stop(); await up.stop() } }
    } catch (e) {
      await up.stop()
      throw e
    }
  }
  return {
    proxyd: chained("proxyd-via", (up) => proxydWith("proxyd-via", `upstream up = socks5://127.0.0.1:${up}\n\npolicy main {\n  default via up\n}\n`)),
    dante: chained("dante-via", (up) => dante("dante-via", sockd, [
      `route { from: 0.0.0.0/0 to: 0.0.0.0/0 via: 127.0.0.1 port = ${up}`, "  proxyprotocol: socks_v5", "  command: connect", "  method: none", "}",
    ])),
  }
}
