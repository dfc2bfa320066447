/**
 * The "node-floor" reference target of the network benchmark: the least a SOCKS5 relay in Node
 * can do, so a reader can tell what proxyd costs on top of Node itself.
 *
 * Details: no-auth SOCKS5 CONNECT to an IPv4 literal only (what the benchmark sends), the reply,
 * then native `pipe` both ways; no policy, no limits, no timeouts, no log line, no metrics, no
 * error replies. Not a product and not a peer: it is reported as a reference row.
 * Usage: node bench/node-floor-server.ts PORT (listens on 127.0.0.1).
 */
import * as net from "node:net"

const port = Number(process.argv[2])

const server = net.createServer({ noDelay: true }, (client) => {
  client.on("error", () => client.destroy())
  client.once("data", () => {
    client.write(Buffer.from([5, 0]))
    client.once("data", (req: Buffer) => {
      if (req.length < 10 || req[3] !== 1) { client.destroy(); return }
      const upstream = net.connect({ host: `${req[4]}.${req[5]}.${req[6]}.${req[7]}`, port: req.readUInt16BE(8), noDelay: true }, () => {
        const reply = Buffer.from([5, 0, 0, 1, 127, 0, 0, 1, 0, 0])
        reply.writeUInt16BE(upstream.localPort ?? 0, 8)
        client.write(reply)
        client.pipe(upstream)
        upstream.pipe(client)
      })
      upstream.on("error", () => client.destroy())
      upstream.on("close", () => client.destroy())
      client.on("close", () => upstream.destroy())
    })
  })
})
server.listen({ host: "127.0.0.1", port })
for (const sig of ["SIGTERM", "SIGINT"] as const) process.on(sig, () => process.exit(0))
