/**
 * Helpers for end-to-end tests that drive the real `proxyd` binary: start it
 * on a free port, read its JSON log lines, require external tools.
 *
 * Details: `start` runs `packages/cli/bin/proxyd.js --rules FILE --listen
 * mixed://127.0.0.1:0 --log-format json` and resolves on the `listening` line
 * with the bound port. Every line (stdout and stderr) is kept in `lines`, and
 * `closes()` parses the per-connection `connection` lines. The caller stops
 * the process by its PID (`child.kill`).
 * Gotchas: `needTool` throws under `CI=true` (a missing tool fails the run,
 * `.ci/run` installs it) and skips the test with a message elsewhere.
 */
import { type ChildProcess, execFileSync, spawn } from "node:child_process"
import { BIN, ROOT } from "./proxyd.ts"

export interface Running {
  readonly child: ChildProcess
  readonly port: number
  readonly lines: Array<string>
  readonly exited: Promise<number | null>
  /** The parsed `connection` close lines logged so far. */
  readonly closes: () => Array<Record<string, unknown>>
}

const has = new Map<string, boolean>()
const installed = (tool: string, versionArg: string): boolean => {
  let ok = has.get(tool)
  if (ok === undefined) {
    try { execFileSync(tool, [versionArg], { stdio: "ignore", timeout: 20_000 }); ok = true } catch (e) {
      ok = (e as { code?: unknown }).code !== "ENOENT" && (e as { status?: unknown }).status !== undefined && (e as { status?: unknown }).status !== 127
    }
    has.set(tool, ok)
  }
  return ok
}

/** Fails under CI=true when `tool` is missing (`.ci/run` must install it); skips with a message elsewhere. */
export const needTool = (ctx: { skip: (note?: string) => void }, tool: string, versionArg = "--version"): void => {
  if (installed(tool, versionArg)) return
  if (process.env["CI"] === "true") throw new Error(`${tool} is not installed: .ci/run must install it`)
  ctx.skip(`${tool} is not installed`)
}

/** An environment without proxy variables, so clients only use the proxy they are told to. */
export const cleanEnv = (): NodeJS.ProcessEnv => {
  const env = { ...process.env }
  for (const k of ["http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"]) delete env[k]
  return env
}

/** Starts the binary (after Node flags `nodeArgs`) with `--listen mixed://127.0.0.1:0` (or `listen`) and waits for its `listening` line (or the line whose msg is `ready`; the port is the first `listening` line's). */
export const start = (rules: string, opts: { readonly listen?: string; readonly prefix?: ReadonlyArray<string>; readonly nodeArgs?: ReadonlyArray<string>; readonly env?: NodeJS.ProcessEnv; readonly ready?: string } = {}): Promise<Running> =>
  new Promise((resolve, reject) => {
    const argv = [...(opts.nodeArgs ?? []), BIN, "--rules", rules, "--listen", opts.listen ?? "mixed://127.0.0.1:0", "--log-format", "json"]
    const [cmd, ...args] = opts.prefix === undefined ? [process.execPath, ...argv] : [...opts.prefix, process.execPath, ...argv]
    const child = spawn(cmd!, args, { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"], env: { ...cleanEnv(), ...opts.env } })
    const lines: Array<string> = []
    const exited = new Promise<number | null>((res) => child.once("exit", (code) => res(code)))
    const closes = () => lines.filter((l) => l.includes('"msg":"connection"')).map((l) => JSON.parse(l) as Record<string, unknown>)
    let started = false
    let port = 0
    const timer = setTimeout(() => { child.kill("SIGKILL"); reject(new Error(`proxyd did not start: ${lines.join("\n")}`)) }, 30_000)
    // One line buffer per stream: stdout (V8's GC trace lines, for one) and stderr (the log) interleave.
    const lineReader = () => {
      let buf = ""
      return (chunk: Buffer) => {
        buf += chunk.toString("utf8")
        let nl: number
        while ((nl = buf.indexOf("\n")) !== -1) {
          const line = buf.slice(0, nl)
          buf = buf.slice(nl + 1)
          lines.push(line)
          if (line.includes('"listening"') && port === 0) port = Number((JSON.parse(line) as { port?: number }).port)
          if (!started && line.includes(`"${opts.ready ?? "listening"}"`)) {
            const o = JSON.parse(line) as { port?: number; annotations?: { port?: number } }
            started = true
            clearTimeout(timer)
            resolve({ child, port: Number(o.port ?? o.annotations?.port ?? port), lines, exited, closes })
          }
        }
      }
    }
    child.stdout.on("data", lineReader())
    child.stderr.on("data", lineReader())
    child.once("exit", (code) => { clearTimeout(timer); if (!started) reject(new Error(`proxyd exited ${code}: ${lines.join("\n")}`)) })
  })

/** Sends SIGTERM and waits for the exit status (SIGKILL after `ms`, then the status is null). */
export const stop = async (p: Running, ms = 40_000): Promise<number | null> => {
  if (p.child.exitCode !== null) return p.child.exitCode
  p.child.kill("SIGTERM")
  const t = setTimeout(() => p.child.kill("SIGKILL"), ms)
  try { return await p.exited } finally { clearTimeout(t) }
}

/** Waits until `pred` holds (polling every 50 ms), at most `ms`. */
export const waitFor = async (pred: () => boolean, ms = 5_000): Promise<boolean> => {
  for (let waited = 0; waited < ms; waited += 50) {
    if (pred()) return true
    await new Promise((r) => setTimeout(r, 50))
  }
  return pred()
}
