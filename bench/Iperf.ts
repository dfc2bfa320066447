/**
 * iperf3 cross-check of the network benchmark's bulk figures (`npm run bench:iperf`).
 *
 * Details: starts `iperf3 -s` on 127.0.0.1 and the benchmark's targets (bench/Targets.ts), then
 * runs `iperf3 -c 127.0.0.1 -t N --json` directly and through each proxy with proxychains4
 * (a generated config: `strict_chain`, `quiet_mode`, one `socks5` or `http` proxy), upload and
 * then download (`-R`), interleaved across targets for `rounds` rounds. iperf3's control and
 * data connections both go through the proxy. Each run checks that it really went through
 * the proxy: proxychains does not hook getpeername, so iperf3's `start.connected[].remote_port`
 * is the proxy's port when proxied and iperf3's own port when direct. Prints MiB/s (median and
 * min–max of the receiver's bytes over its seconds), the ratio to direct, and the proxy's CPU
 * (utime+stime of its process tree) per GiB.
 * Flags: `--quick` (1 s, 1 round), `--seconds N`, `--rounds N`, `--100k` (also proxyd-100k:
 * about a minute to start), `--targets a,b` (only these, and direct), `--json` (one JSON
 * object on stdout).
 * Gotchas: needs iperf3 and proxychains4 (Debian; .ci/run installs them) and exits 1 without
 * them; iperf3 serves one test at a time, so runs are sequential. The LD_PRELOAD hook of
 * proxychains adds nothing per byte, but the proxy, iperf3's two ends and this process share
 * the machine's CPUs.
 */
import { spawn } from "node:child_process"
import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { treeCpu } from "./Proc.ts"
import { direct, freePort, PEERS, proxyd, proxyd100k, type Start, type Target } from "./Targets.ts"

const args = process.argv.slice(2)
const opt = (name: string): number | undefined => {
  const i = args.indexOf(name)
  return i >= 0 && args[i + 1] !== undefined ? Number(args[i + 1]) : undefined
}
const quick = args.includes("--quick")
const json = args.includes("--json")
const SECONDS = opt("--seconds") ?? (quick ? 1 : 5)
const ROUNDS = opt("--rounds") ?? (quick ? 1 : 3)

const which = (name: string): string | undefined =>
  ["/usr/local/bin", "/usr/bin", "/bin"].map((d) => join(d, name)).find((f) => existsSync(f))

interface Run { readonly mibps: number; readonly bytes: number; readonly routed: boolean; readonly cpuPerGiB: number | null }

/** Runs `cmd args`, resolves with its stdout; killed by PID after `timeoutMs`. */
const run = (cmd: string, argv: ReadonlyArray<string>, timeoutMs: number): Promise<string> =>
  new Promise((resolve, reject) => {
    const child = spawn(cmd, argv, { stdio: ["ignore", "pipe", "pipe"] })
    let out = ""
    let err = ""
    child.stdout.on("data", (c: Buffer) => { out += c.toString() })
    child.stderr.on("data", (c: Buffer) => { if (err.length < 4096) err += c.toString() })
    const timer = setTimeout(() => { if (child.pid !== undefined) try { process.kill(child.pid, "SIGKILL") } catch { /* gone */ } }, timeoutMs)
    child.once("error", (e) => { clearTimeout(timer); reject(e) })
    child.once("exit", (code, signal) => {
      clearTimeout(timer)
      if (code === 0) resolve(out)
      else reject(new Error(`${cmd} exited ${code ?? signal}: ${(out + err).trim().slice(-400)}`))
    })
  })

interface IperfJson {
  readonly error?: string
  readonly start?: { readonly connected?: ReadonlyArray<{ readonly remote_port: number }> }
  readonly end?: { readonly sum_received?: { readonly bytes: number; readonly seconds: number } }
}

/** The iperf3 server on 127.0.0.1, stopped by PID. */
const startServer = async (iperf3: string): Promise<{ port: number; stop(): Promise<void> }> => {
  const port = await freePort()
  // --forceflush: its stdout is a pipe, and "Server listening" would sit in a buffer.
  const child = spawn(iperf3, ["-s", "-B", "127.0.0.1", "-p", String(port), "--forceflush"], { stdio: ["ignore", "pipe", "pipe"] })
  child.stderr.resume()
  try {
    await new Promise<void>((resolve, reject) => {
      let out = ""
      const timer = setTimeout(() => reject(new Error(`iperf3 -s did not start: ${out}`)), 10_000)
      let ready = false
      child.stdout.on("data", (c: Buffer) => {
        if (ready) return // keep draining: the server prints every test's intervals
        out += c.toString()
        if (out.includes("Server listening")) { ready = true; clearTimeout(timer); resolve() }
      })
      child.once("exit", (code) => { clearTimeout(timer); reject(new Error(`iperf3 -s exited ${code}: ${out}`)) })
    })
  } catch (e) {
    if (child.exitCode === null && child.pid !== undefined) process.kill(child.pid, "SIGKILL")
    throw e
  }
  return {
    port,
    stop: async () => {
      if (child.exitCode !== null || child.signalCode !== null || child.pid === undefined) return
      const exited = new Promise<void>((r) => child.once("exit", () => r()))
      process.kill(child.pid, "SIGTERM")
      const t = setTimeout(() => { if (child.pid !== undefined) try { process.kill(child.pid, "SIGKILL") } catch { /* gone */ } }, 3_000)
      await exited
      clearTimeout(t)
    },
  }
}

/** One iperf3 client run against `serverPort`, through `t` unless it is direct. */
const iperf = async (tools: { iperf3: string; proxychains4: string }, t: Target, conf: string | undefined, serverPort: number, reverse: boolean): Promise<Run> => {
  const client = [tools.iperf3, "-c", "127.0.0.1", "-p", String(serverPort), "-t", String(SECONDS), "--json", ...(reverse ? ["-R"] : [])]
  const [cmd, ...argv] = conf === undefined ? client : [tools.proxychains4, "-f", conf, ...client]
  const cpu0 = treeCpu(t.pid)
  const out = await run(cmd!, argv, SECONDS * 1000 + 30_000)
  const cpu = treeCpu(t.pid) - cpu0
  const j = JSON.parse(out) as IperfJson
  if (j.error !== undefined) throw new Error(`iperf3: ${j.error}`)
  const sum = j.end?.sum_received
  if (sum === undefined || !(sum.seconds > 0)) throw new Error("iperf3: no end.sum_received in its JSON")
  const remote = j.start?.connected?.[0]?.remote_port
  const routed = conf === undefined ? remote === serverPort : remote === t.port
  const gib = sum.bytes / 2 ** 30
  return { mibps: sum.bytes / 2 ** 20 / sum.seconds, bytes: sum.bytes, routed, cpuPerGiB: t.pid === undefined || gib === 0 ? null : cpu / gib }
}

const summary = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return { median: s[Math.floor(s.length / 2)]!, min: s[0]!, max: s[s.length - 1]! }
}

const main = async () => {
  const iperf3 = which("iperf3")
  const proxychains4 = which("proxychains4")
  if (iperf3 === undefined || proxychains4 === undefined) {
    process.stderr.write(`bench:iperf needs iperf3 and proxychains4 (apt-get install iperf3 proxychains4); missing: ${[iperf3 === undefined ? "iperf3" : "", proxychains4 === undefined ? "proxychains4" : ""].filter((x) => x !== "").join(", ")}\n`)
    process.exitCode = 1
    return
  }
  const tools = { iperf3, proxychains4 }
  const starts: Array<{ name: string; start: Start }> = [{ name: "direct", start: direct }, { name: "proxyd", start: proxyd }]
  if (args.includes("--100k")) starts.push({ name: "proxyd-100k", start: proxyd100k })
  const skipped: Array<string> = []
  for (const p of PEERS) {
    if (p.bin === undefined) skipped.push(`${p.name} (not installed: ${p.install})`)
    else starts.push({ name: p.name, start: p.start(p.bin) })
  }
  const want = args.includes("--targets") ? args[args.indexOf("--targets") + 1]?.split(",") ?? [] : undefined
  if (want !== undefined) starts.splice(0, starts.length, ...starts.filter((s) => s.name === "direct" || want.includes(s.name)))
  const dir = mkdtempSync(join(tmpdir(), "proxyd-iperf-"))
  const server = await startServer(iperf3)
  const targets: Array<{ t: Target; conf: string | undefined }> = []
  const runs = new Map<string, { up: Array<Run>; down: Array<Run> }>()
  const failures: Array<string> = []
  try {
    for (const s of starts) {
      try {
        const t = await s.start()
        let conf: string | undefined
        if (t.kind !== "direct") {
          conf = join(dir, `${t.name}.conf`)
          writeFileSync(conf, ["strict_chain", "quiet_mode", "tcp_read_time_out 15000", "tcp_connect_time_out 8000", "[ProxyList]", `${t.kind === "http" ? "http" : "socks5"} 127.0.0.1 ${t.port}`, ""].join("\n"))
        }
        targets.push({ t, conf })
        runs.set(t.name, { up: [], down: [] })
      } catch (e) { skipped.push(`${s.name} (failed to start: ${(e as Error).message.split("\n")[0]})`) }
    }
    for (let round = 0; round < ROUNDS; round++) {
      for (const reverse of [false, true]) {
        for (const { t, conf } of targets) {
          try {
            const r = await iperf(tools, t, conf, server.port, reverse)
            if (!r.routed) failures.push(`${t.name} ${reverse ? "down" : "up"}: iperf3 did not connect through the target`)
            runs.get(t.name)![reverse ? "down" : "up"].push(r)
          } catch (e) { failures.push(`${t.name} ${reverse ? "down" : "up"}: ${(e as Error).message}`) }
        }
      }
    }
  } finally {
    for (const { t } of targets) await t.stop()
    await server.stop()
    rmSync(dir, { recursive: true, force: true })
  }
  const med = (rs: ReadonlyArray<Run>) => rs.length === 0 ? null : summary(rs.map((r) => r.mibps))
  const directUp = med(runs.get("direct")?.up ?? [])?.median
  const directDown = med(runs.get("direct")?.down ?? [])?.median
  const cpu = (rs: ReadonlyArray<Run>) => { const c = rs.flatMap((r) => r.cpuPerGiB === null ? [] : [r.cpuPerGiB]); return c.length === 0 ? null : summary(c).median }
  const rows = targets.map(({ t }) => {
    const { up, down } = runs.get(t.name)!
    const u = med(up)
    const d = med(down)
    return {
      target: t.name,
      kind: t.kind,
      upMiBps: u,
      upVsDirect: u === null || directUp === undefined ? null : u.median / directUp,
      downMiBps: d,
      downVsDirect: d === null || directDown === undefined ? null : d.median / directDown,
      cpuSecPerGiBUp: cpu(up),
      cpuSecPerGiBDown: cpu(down),
      routed: [...up, ...down].every((r) => r.routed),
    }
  })
  const config = { quick, seconds: SECONDS, rounds: ROUNDS, iperf3, proxychains4 }
  if (json) process.stdout.write(JSON.stringify({ config, rows, skipped, failures }) + "\n")
  else {
    const f = (x: number | null | undefined, d = 0) => x === null || x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(d)
    const mm = (s: { median: number; min: number; max: number } | null) => s === null ? "–" : `${f(s.median)} (${f(s.min)}–${f(s.max)})`
    process.stdout.write([
      `iperf3 through proxychains4: ${SECONDS} s per run, ${ROUNDS} round(s), upload then download (-R), interleaved`,
      "| target | up MiB/s (min–max) | ×direct | down MiB/s (min–max) | ×direct | proxy CPU s/GiB up | down | routed |",
      "|---|---|---|---|---|---|---|---|",
      ...rows.map((r) => `| ${r.target} | ${mm(r.upMiBps)} | ${f(r.upVsDirect, 2)} | ${mm(r.downMiBps)} | ${f(r.downVsDirect, 2)} | ${f(r.cpuSecPerGiBUp, 2)} | ${f(r.cpuSecPerGiBDown, 2)} | ${r.routed ? "yes" : "NO"} |`),
      ...skipped.map((s) => `skipped: ${s}`),
      ...failures.map((s) => `failed: ${s}`),
      "",
    ].join("\n"))
  }
  if (failures.length > 0) process.exitCode = 1
}

await main()
