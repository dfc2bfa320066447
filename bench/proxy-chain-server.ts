/**
 * Apify proxy-chain as a benchmark peer: an HTTP proxy (CONNECT tunnels) in Node, on 127.0.0.1.
 *
 * Usage: `node bench/proxy-chain-server.ts PORT` (started by bench/Targets.ts as a child process so
 * it is stopped by PID and its CPU read from /proc like the other peers).
 * Details: no authentication and no upstream proxy (no `prepareRequestFunction`); prints
 * `listening PORT` on stdout once the server accepts; exits on SIGTERM/SIGINT after closing.
 */
import { Server } from "proxy-chain"

const port = Number(process.argv[2] ?? "0")
const server = new Server({ port, host: "127.0.0.1", verbose: false })
await server.listen()
process.stdout.write(`listening ${server.port}\n`)
const stop = () => { void server.close(true).finally(() => process.exit(0)) }
process.once("SIGTERM", stop)
process.once("SIGINT", stop)
