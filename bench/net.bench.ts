/**
 * Network benchmark: proxyd against direct and the peers on loopback (`npm run bench:net`).
 *
 * Details: targets are direct (no proxy), proxyd (the real binary with an allow-all policy),
 * microsocks, Dante and tinyproxy (skipped, and said so, when not installed). Measurements
 * are interleaved across targets (A B C A B C …) for `rounds` rounds and reported as median
 * and min–max: (1) bulk upload through a CONNECT, time-bounded, bytes counted exactly at a
 * paused-mode sink and checked against bytes written; (2) connection rate at concurrency 1
 * (connect, handshake, 64-byte echo, close) with p50/p99; (3) the target's CPU (utime+stime
 * of its process tree) per GiB and per connection.
 * Flags: `--quick` (seconds-long smoke run), `--json` (one JSON object on stdout).
 * Gotchas: the client, the endpoints and the proxy share the CPUs; not done yet: download,
 * concurrency 50, TTFB, memory per idle connection, 100k-rule policy, proxy-chain peer, chart.
 */
import { cpus } from "node:os"
import { cpuSeconds, direct, PEERS, proxyd, type Start, type Target } from "./Targets.ts"
import { now, open, startEcho, startSink } from "./Wire.ts"

const quick = process.argv.includes("--quick")
const json = process.argv.includes("--json")
const BULK_S = quick ? 1 : 5
const CONN_S = quick ? 1 : 10
const ROUNDS = quick ? 1 : 3
const CHUNK = Buffer.alloc(1 << 20, 0x61)
const PING = Buffer.alloc(64, 0x62)

interface Bulk { mibps: number; cpuPerGiB: number | null; verified: boolean }
interface Rate { cps: number; p50: number; p99: number; cpuPerConn: number | null }

const bulk = async (t: Target, sink: Awaited<ReturnType<typeof startSink>>): Promise<Bulk> => {
  const s = await open(t, sink.port)
  const cpu0 = cpuSeconds(t.pid)
  const t0 = now()
  const deadline = t0 + BULK_S * 1000
  let sent = 0
  for (let i = 0; i < 1_000_000 && now() < deadline; i++) {
    sent += CHUNK.length
    if (!s.write(CHUNK)) await new Promise((r) => s.once("drain", r))
  }
  s.end()
  const r = await sink.next()
  const cpu = cpuSeconds(t.pid) - cpu0
  const gib = r.bytes / 2 ** 30
  return { mibps: r.bytes / 2 ** 20 / ((r.closedAt - t0) / 1000), cpuPerGiB: t.pid === undefined ? null : cpu / gib, verified: r.bytes === sent }
}

const rate = async (t: Target, echoPort: number): Promise<Rate> => {
  const lat: Array<number> = []
  const cpu0 = cpuSeconds(t.pid)
  const t0 = performance.now()
  const deadline = t0 + CONN_S * 1000
  for (let i = 0; i < 10_000_000 && performance.now() < deadline; i++) {
    const a = performance.now()
    const s = await open(t, echoPort)
    await new Promise<void>((resolve, reject) => {
      let got = 0
      s.on("data", (c: Buffer) => { got += c.length; if (got >= PING.length) resolve() })
      s.once("close", () => reject(new Error(`${t.name}: echo closed after ${got} bytes`)))
      s.write(PING)
    })
    lat.push(performance.now() - a)
    s.destroy()
  }
  const elapsed = (performance.now() - t0) / 1000
  const cpu = cpuSeconds(t.pid) - cpu0
  lat.sort((x, y) => x - y)
  const q = (p: number) => lat[Math.min(lat.length - 1, Math.floor(p * lat.length))]!
  return { cps: lat.length / elapsed, p50: q(0.5), p99: q(0.99), cpuPerConn: t.pid === undefined ? null : cpu / lat.length }
}

const summary = (xs: ReadonlyArray<number>) => {
  const s = [...xs].sort((a, b) => a - b)
  return { median: s[Math.floor(s.length / 2)]!, min: s[0]!, max: s[s.length - 1]! }
}

const main = async () => {
  const starts: Array<{ name: string; start: Start }> = [{ name: "direct", start: direct }, { name: "proxyd", start: proxyd }]
  const skipped: Array<string> = []
  for (const p of PEERS) {
    if (p.bin === undefined) skipped.push(`${p.name} (not installed: apt-get install ${p.pkg})`)
    else starts.push({ name: p.name, start: p.start(p.bin) })
  }
  const sink = await startSink()
  const echo = await startEcho()
  const targets: Array<Target> = []
  for (const s of starts) {
    try { targets.push(await s.start()) } catch (e) { skipped.push(`${s.name} (failed to start: ${(e as Error).message.split("\n")[0]})`) }
  }
  const bulks = new Map<string, Array<Bulk>>()
  const rates = new Map<string, Array<Rate>>()
  const failures: Array<string> = []
  try {
    for (let round = 0; round < ROUNDS; round++) {
      for (const t of targets) {
        try { bulks.set(t.name, [...(bulks.get(t.name) ?? []), await bulk(t, sink)]) } catch (e) { failures.push(`${t.name} bulk: ${(e as Error).message}`) }
      }
      for (const t of targets) {
        try { rates.set(t.name, [...(rates.get(t.name) ?? []), await rate(t, echo.port)]) } catch (e) { failures.push(`${t.name} rate: ${(e as Error).message}`) }
      }
    }
  } finally {
    for (const t of targets) await t.stop()
    await sink.close()
    echo.close()
  }
  const directMiB = summary((bulks.get("direct") ?? []).map((b) => b.mibps)).median
  const rows = targets.map((t) => {
    const b = bulks.get(t.name) ?? []
    const r = rates.get(t.name) ?? []
    const cpuG = b.flatMap((x) => x.cpuPerGiB === null ? [] : [x.cpuPerGiB])
    const cpuC = r.flatMap((x) => x.cpuPerConn === null ? [] : [x.cpuPerConn])
    return {
      target: t.name,
      bulkUpMiBps: b.length === 0 ? null : summary(b.map((x) => x.mibps)),
      bulkVsDirect: b.length === 0 || directMiB === undefined ? null : summary(b.map((x) => x.mibps)).median / directMiB,
      bulkBytesVerified: b.every((x) => x.verified),
      cpuSecPerGiB: cpuG.length === 0 ? null : summary(cpuG).median,
      connPerSec: r.length === 0 ? null : summary(r.map((x) => x.cps)),
      p50ms: r.length === 0 ? null : summary(r.map((x) => x.p50)).median,
      p99ms: r.length === 0 ? null : summary(r.map((x) => x.p99)).median,
      cpuUsPerConn: cpuC.length === 0 ? null : summary(cpuC).median * 1e6,
    }
  })
  const machine = { cpus: cpus().length, cpu: cpus()[0]?.model ?? "?", node: process.version, platform: process.platform }
  const config = { quick, rounds: ROUNDS, bulkSeconds: BULK_S, connSeconds: CONN_S, chunkBytes: CHUNK.length }
  if (json) {
    process.stdout.write(JSON.stringify({ machine, config, rows, skipped, failures }) + "\n")
  } else {
    const f = (x: number | null | undefined, d = 0) => x === null || x === undefined || !Number.isFinite(x) ? "–" : x.toFixed(d)
    const mm = (s: { median: number; min: number; max: number } | null) => s === null ? "–" : `${f(s.median)} (${f(s.min)}–${f(s.max)})`
    const lines = [
      `machine: ${machine.cpus} × ${machine.cpu}, node ${machine.node}; ${quick ? "QUICK" : "full"} run, ${ROUNDS} round(s), bulk ${BULK_S} s, conn ${CONN_S} s`,
      "| target | bulk up MiB/s (min–max) | ×direct | bytes verified | proxy CPU s/GiB | conn/s @1 (min–max) | p50 ms | p99 ms | proxy CPU µs/conn |",
      "|---|---|---|---|---|---|---|---|---|",
      ...rows.map((r) => `| ${r.target} | ${mm(r.bulkUpMiBps)} | ${f(r.bulkVsDirect, 2)} | ${r.bulkBytesVerified ? "yes" : "NO"} | ${f(r.cpuSecPerGiB, 2)} | ${mm(r.connPerSec)} | ${f(r.p50ms, 2)} | ${f(r.p99ms, 2)} | ${f(r.cpuUsPerConn)} |`),
      ...skipped.map((s) => `skipped: ${s}`),
      ...failures.map((s) => `failed: ${s}`),
    ]
    process.stdout.write(lines.join("\n") + "\n")
  }
  if (failures.length > 0) process.exitCode = 1
}

await main()
