/**
 * Per-connection observer cost: accepted + decided + connected + closed, 200k
 * times with realistic labels, against `makeProm` (processMetrics off).
 * `node bench/observer.bench.ts [beforeModule.ts]`: with a second module (e.g.
 * `git show HEAD~1:packages/metrics/src/Metrics.ts` saved next to Metrics.ts),
 * both are measured alternately in the same run. Prints ns per connection.
 */
import { pathToFileURL } from "node:url"

// Loaded by path (bench/tsconfig.json does not reference packages/metrics).
type Ev = Record<string, unknown>
type Make = (o: { processMetrics?: boolean }) => { observer: Record<"accepted" | "decided" | "connected" | "closed", ((e: Ev) => void) | undefined> }
const load = async (path: string): Promise<Make> => ((await import(pathToFileURL(path).href)) as { makeProm: Make }).makeProm
const Current = { makeProm: await load(new URL("../packages/metrics/src/Metrics.ts", import.meta.url).pathname) }
const N = 200_000
const listeners = ["socks", "http", "https"]
const run = (make: Make): number => {
  const o = make({ processMetrics: false }).observer
  const t0 = process.hrtime.bigint()
  for (let i = 0; i < N; i++) {
    const listener = listeners[i % 3]!
    const action = i % 7 === 0 ? "block" : "direct"
    o.accepted!({ listener })
    o.decided!({ listener, protocol: "socks5", policy: "main", rule: i % 5 === 0 ? "ads" : "default", action, durationMs: 0.05 })
    o.connected!({ listener, action, ok: i % 11 !== 0, durationMs: 1.2 })
    o.closed!({ listener, protocol: "socks5", action, rule: "default", outcome: i % 13 === 0 ? "error" : "ok", bytesUp: 512, bytesDown: 4096, durationMs: 30, handshakeMs: 0.4 })
  }
  return Number(process.hrtime.bigint() - t0) / N
}
const median = (xs: Array<number>): number => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]! }
const variants: Array<[string, Make]> = [["after", Current.makeProm]]
if (process.argv[2] !== undefined) {
  variants.unshift(["before", await load(process.argv[2])])
}
const results = new Map<string, Array<number>>(variants.map(([n]) => [n, []]))
for (let round = 0; round < 7; round++) for (const [n, make] of variants) results.get(n)!.push(run(make))
for (const [n, xs] of results) console.log(`${n}: median ${median(xs).toFixed(0)} ns/connection (rounds: ${xs.map((x) => x.toFixed(0)).join(" ")})`)
