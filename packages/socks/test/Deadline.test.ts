/**
 * The SOCKS handlers inside the real runtime (`startServer`): the runtime's handshake deadline
 * ends a stalled handshake (the handlers set no timer of their own there), and the SOCKS5
 * greeting, method reply and request read in one loop still take every way a client splits or
 * joins its messages.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { echoServer, rawClient, startProxyd, until, type Proxyd, type TestServer } from "@proxyd/testkit"
import { makeSocks4Handler, makeSocks5Handler } from "../src/index.ts"
import * as C from "../src/Socks5Codec.ts"
import * as C4 from "../src/Socks4Codec.ts"

let proxyd: Proxyd
let echo: TestServer

beforeAll(async () => {
  echo = await echoServer()
  proxyd = await startProxyd(`
options { handshake-timeout 300ms }
listen s5 = socks5 127.0.0.1:0
listen s4 = socks4 127.0.0.1:0
policy default {
  default allow
}
`, { socks5: makeSocks5Handler(), socks4: makeSocks4Handler() })
})

afterAll(async () => {
  await proxyd?.stop()
  await echo?.close()
})

/** The close line of the connection from this client socket (matched by its source address). */
const lineOf = async (localPort: number | undefined): Promise<Record<string, unknown> | undefined> => {
  const src = `127.0.0.1:${localPort}`
  const find = () => proxyd.connections().find((l) => l["src"] === src)
  await until(() => find() !== undefined)
  return find()
}

describe("handshake deadline in the runtime", () => {
  it("SOCKS5: greeting answered, request never sent → closed at the deadline with outcome handshake-timeout", async () => {
    const c = await rawClient(proxyd.port("s5"))
    const port = c.socket.localPort
    const t0 = Date.now()
    c.send(Buffer.from([5, 1, 0]))
    expect([...(await c.read(2))]).toEqual([5, 0])
    expect((await c.readToEnd(2500)).length).toBe(0)
    const waited = Date.now() - t0
    expect(waited).toBeGreaterThanOrEqual(250)
    expect(waited).toBeLessThan(2500)
    expect(await lineOf(port)).toMatchObject({ listener: "s5", protocol: "socks5", outcome: "handshake-timeout" })
  })

  it("SOCKS4: half a request → closed at the deadline with outcome handshake-timeout", async () => {
    const c = await rawClient(proxyd.port("s4"))
    const port = c.socket.localPort
    c.send(C4.encodeRequest(C4.CMD_CONNECT, "127.0.0.1", echo.port).subarray(0, 5))
    expect((await c.readToEnd(2500)).length).toBe(0)
    expect(await lineOf(port)).toMatchObject({ listener: "s4", protocol: "socks4", outcome: "handshake-timeout" })
  })

  it("SOCKS5: greeting and request in one write, and split byte by byte, both connect", async () => {
    const req = C.encodeRequest(C.CMD_CONNECT, "127.0.0.1", echo.port)
    const joined = await rawClient(proxyd.port("s5"))
    joined.send(Buffer.concat([Buffer.from([5, 1, 0]), req, Buffer.from("early")]))
    expect([...(await joined.read(2))]).toEqual([5, 0])
    expect((await joined.read(10))[1]).toBe(C.REP.succeeded)
    expect((await joined.read(10)).toString()).toBe("echo:early")
    joined.socket.destroy()

    const split = await rawClient(proxyd.port("s5"))
    const bytes = Buffer.concat([Buffer.from([5, 2, 0, 2]), req])
    for (let i = 0; i < bytes.length; i++) {
      split.send(bytes.subarray(i, i + 1))
      await new Promise((r) => setTimeout(r, 5))
    }
    expect([...(await split.read(2))]).toEqual([5, 0])
    expect((await split.read(10))[1]).toBe(C.REP.succeeded)
    split.send("x")
    expect((await split.read(6)).toString()).toBe("echo:x")
    split.socket.destroy()
  })

  it("SOCKS5: closing after the method reply is logged as closed before its request", async () => {
    const c = await rawClient(proxyd.port("s5"))
    const port = c.socket.localPort
    c.send(Buffer.from([5, 1, 0]))
    expect([...(await c.read(2))]).toEqual([5, 0])
    c.socket.end()
    expect((await c.readToEnd(2500)).length).toBe(0)
    expect(await lineOf(port)).toMatchObject({ listener: "s5", outcome: "rejected", error: "client closed before its request" })
  })
})
