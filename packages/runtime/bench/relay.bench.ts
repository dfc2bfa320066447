/**
 * Relay throughput and concurrency through the runtime (test line protocol, local echo server).
 * Usage: npx node packages/runtime/bench/relay.bench.ts [MiB per connection] [connections]
 * Every connection sends its payload and checks the echo byte-exact by hash.
 */
import { createHash, randomBytes } from "node:crypto"
import { dial, localServer, start, tempDir, until, writeRules } from "../test/support.ts"

const mib = Number(process.argv[2] ?? 100)
const conns = Number(process.argv[3] ?? 1)
const echo = await localServer()
const s = await start(writeRules(tempDir(), "options { max-connections 20000 }\nlisten t = http 127.0.0.1:0\npolicy default { default allow }\n"))
const payload = randomBytes(Math.max(1, Math.floor(mib * 1024 * 1024)))
const want = createHash("sha256").update(payload).digest("hex")
const t0 = performance.now()
const results = await Promise.all(Array.from({ length: conns }, async () => {
  const c = await dial(s.port, `CONNECT 127.0.0.1 ${echo.port}\n`)
  await c.waitText("OK ", 60_000)
  const header = c.data().indexOf(10) + 1
  c.socket.end(payload)
  await until(() => c.closed(), 600_000)
  const back = c.data().subarray(header)
  return back.length === payload.length && createHash("sha256").update(back).digest("hex") === want
}))
const secs = (performance.now() - t0) / 1000
const ok = results.filter(Boolean).length
console.log(`${conns} connection(s) × ${mib} MiB each way: ${ok}/${conns} byte-exact, ${secs.toFixed(2)} s, ${((2 * mib * conns) / secs).toFixed(0)} MiB/s through the proxy (both directions)`)
await s.stop(0)
await echo.close()
process.exit(ok === conns ? 0 : 1)
