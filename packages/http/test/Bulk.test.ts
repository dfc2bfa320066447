/**
 * Byte-exact bulk transfers through the real runtime's HTTP listener: 100 MiB
 * each way through a CONNECT tunnel, and a 100 MiB chunked upload answered by
 * a 100 MiB chunked response through absolute-URI forwarding, all verified by sha256.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createServer, request, type Server } from "node:http"
import { connect, type Socket } from "node:net"
import { httpHandler } from "../src/index.ts"
import { hashServer, hashUntilEnd, type Proxyd, sendRandom, startProxyd } from "@proxyd/testkit"

const TOTAL = 100 * 1024 * 1024
let proxyd: Proxyd
let target: Awaited<ReturnType<typeof hashServer>>
let origin: Server
const originResults: Array<Promise<{ received: string; sent: string }>> = []

beforeAll(async () => {
  target = await hashServer(TOTAL)
  origin = createServer((req, res) => {
    originResults.push(hashUntilEnd(req).then(async ({ hash: received }) => ({ received, sent: await sendRandom(res, TOTAL) })))
  })
  await new Promise<void>((r) => origin.listen({ host: "127.0.0.1", port: 0 }, () => r()))
  proxyd = await startProxyd(`
listen h = http 127.0.0.1:0
policy default {
  default allow
}
`, { http: httpHandler })
})
afterAll(async () => {
  await proxyd?.stop()
  await target?.close()
  origin?.closeAllConnections()
  await new Promise<void>((r) => (origin === undefined ? r() : origin.close(() => r())))
})

describe("bulk transfers over HTTP", () => {
  it("CONNECT: 100 MiB each way, byte-exact", async () => {
    const socket = await new Promise<Socket>((resolve, reject) => {
      const s = connect({ host: "127.0.0.1", port: proxyd.port("h"), allowHalfOpen: true })
      s.once("error", reject)
      s.once("connect", () => s.write(`CONNECT 127.0.0.1:${target.port} HTTP/1.1\r\nHost: 127.0.0.1:${target.port}\r\n\r\n`))
      const want = "HTTP/1.1 200 Connection established\r\n\r\n"
      s.once("readable", function onReadable() {
        const head = s.read(want.length) as Buffer | null
        if (head === null) return void s.once("readable", onReadable)
        expect(head.toString()).toBe(want)
        resolve(s)
      })
    })
    const serverSide = target.results.at(-1)!
    const t0 = Date.now()
    const [down, sent] = await Promise.all([hashUntilEnd(socket), sendRandom(socket, TOTAL)])
    const server = await serverSide
    console.log(`bulk CONNECT: ${TOTAL >> 20} MiB each way in ${Date.now() - t0} ms`)
    expect(server.received).toEqual({ hash: sent, bytes: TOTAL })
    expect(down).toEqual({ hash: server.sent, bytes: TOTAL })
    socket.destroy()
  })

  it("forwarding: 100 MiB chunked upload, 100 MiB chunked response, byte-exact", async () => {
    const port = (origin.address() as { port: number }).port
    const t0 = Date.now()
    const result = await new Promise<{ sent: string; down: { hash: string; bytes: number } }>((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port: proxyd.port("h"), method: "POST", path: `http://127.0.0.1:${port}/upload`, headers: { Host: `127.0.0.1:${port}` }, agent: false })
      let sent: Promise<string> | undefined
      req.on("response", (res) => void hashUntilEnd(res).then((down) => sent!.then((s) => resolve({ sent: s, down }))))
      req.on("error", reject)
      sent = sendRandom(req, TOTAL)
    })
    const server = await originResults.at(-1)!
    console.log(`bulk forward: ${TOTAL >> 20} MiB each way in ${Date.now() - t0} ms`)
    expect(server.received).toBe(result.sent)
    expect(result.down).toEqual({ hash: server.sent, bytes: TOTAL })
  })
})
