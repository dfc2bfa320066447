/**
 * Byte-exact bulk transfers through the real runtime: 100 MiB each way through
 * SOCKS5 and SOCKS4, verified by sha256 on both ends.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { connect, type Socket } from "node:net"
import * as S5 from "../src/Socks5Codec.ts"
import * as S4 from "../src/Socks4Codec.ts"
import { makeSocks4Handler, makeSocks5Handler } from "../src/index.ts"
import { echoServer, hashServer, hashUntilEnd, type Proxyd, sendRandom, startProxyd, type TestServer } from "@proxyd/testkit"
import { randomBytes } from "node:crypto"

const TOTAL = 100 * 1024 * 1024
let proxyd: Proxyd
let target: Awaited<ReturnType<typeof hashServer>>
let echo: TestServer

beforeAll(async () => {
  target = await hashServer(TOTAL)
  echo = await echoServer("127.0.0.1", "")
  proxyd = await startProxyd(`
listen s5 = socks5 127.0.0.1:0
listen s4 = socks4 127.0.0.1:0
policy default {
  default allow
}
`, { socks5: makeSocks5Handler(), socks4: makeSocks4Handler() })
})
afterAll(async () => {
  await proxyd?.stop()
  await target?.close()
  await echo?.close()
})

/** Opens a connection, sends `hello`, reads exactly `replyLength` bytes (paused mode), and returns the socket. */
const handshake = (port: number, hello: Buffer, replyLength: number) =>
  new Promise<{ socket: Socket; reply: Buffer }>((resolve, reject) => {
    const socket = connect({ host: "127.0.0.1", port, allowHalfOpen: true })
    socket.once("error", reject)
    socket.once("connect", () => socket.write(hello))
    let buf = Buffer.alloc(0)
    const onReadable = () => {
      for (let i = 0; i < 64; i++) {
        const need = replyLength - buf.length
        if (need <= 0) break
        const chunk = socket.read(Math.min(need, socket.readableLength || need)) as Buffer | null
        if (chunk === null) return
        buf = Buffer.concat([buf, chunk])
      }
      if (buf.length >= replyLength) {
        socket.off("readable", onReadable)
        resolve({ socket, reply: buf })
      }
    }
    socket.on("readable", onReadable)
  })

const transfer = async (socket: Socket) => {
  const serverSide = target.results.at(-1)!
  const t0 = Date.now()
  const [down, sent] = await Promise.all([hashUntilEnd(socket), sendRandom(socket, TOTAL)])
  const server = await serverSide
  console.log(`bulk: ${TOTAL >> 20} MiB each way in ${Date.now() - t0} ms`)
  expect(server.received).toEqual({ hash: sent, bytes: TOTAL })
  expect(down).toEqual({ hash: server.sent, bytes: TOTAL })
  socket.destroy()
}

describe("bulk transfers", () => {
  it("SOCKS5: 100 MiB each way, byte-exact", async () => {
    const { socket, reply } = await handshake(proxyd.port("s5"), Buffer.concat([Buffer.from([5, 1, 0]), S5.encodeRequest(1, "127.0.0.1", target.port)]), 12)
    expect([...reply.subarray(0, 4)]).toEqual([5, 0, 5, 0])
    await transfer(socket)
  })

  it("SOCKS4: 100 MiB each way, byte-exact", async () => {
    const { socket, reply } = await handshake(proxyd.port("s4"), S4.encodeRequest(1, "127.0.0.1", target.port), 8)
    expect(reply[1]).toBe(90)
    await transfer(socket)
  })

  it("1,000 concurrent SOCKS5 connections, each greeting + request + 16 KiB in one write, echoed byte-exact", async () => {
    const N = 1000
    const t0 = Date.now()
    const one = (i: number) => new Promise<boolean>((resolve) => {
      const payload = randomBytes(16 * 1024)
      const s = connect({ host: "127.0.0.1", port: proxyd.port("s5") })
      const parts: Buffer[] = []
      let got = 0
      const timer = setTimeout(() => s.destroy(), 30_000)
      s.on("data", (d: Buffer) => {
        parts.push(d)
        got += d.length
        if (got >= 12 + payload.length) s.end()
      })
      s.on("error", () => {})
      s.on("close", () => {
        clearTimeout(timer)
        const all = Buffer.concat(parts)
        resolve(all.length === 12 + payload.length && all[1] === 0 && all[3] === 0 && all.subarray(12).equals(payload))
      })
      s.once("connect", () => s.write(Buffer.concat([Buffer.from([5, 1, 0]), S5.encodeRequest(1, "127.0.0.1", echo.port), payload])))
      void i
    })
    const results = await Promise.all(Array.from({ length: N }, (_, i) => one(i)))
    console.log(`concurrency: ${N} SOCKS5 connections in ${Date.now() - t0} ms`)
    expect(results.filter((x) => !x).length).toBe(0)
  })
})
