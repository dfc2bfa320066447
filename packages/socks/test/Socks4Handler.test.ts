import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { connect } from "node:net"
import * as C from "../src/Socks4Codec.ts"
import { socks4Handler } from "../src/Socks4Handler.ts"
import { cleanupsAfterEach, closedPort, echoServer, type Harness, rawClient, start, type TestServer } from "@proxyd/testkit"

const { defer, later } = cleanupsAfterEach()
const harness = async (...args: Parameters<typeof start>): Promise<Harness> => later(await start(...args))
const echo = async (): Promise<TestServer> => later(await echoServer())
const client = async (port: number) => {
  const c = await rawClient(port)
  defer(() => void c.socket.destroy())
  return c
}

describe("Socks4Handler", () => {
  it("SOCKS4 CONNECT: CD 90 with the outbound local address; early data forwarded; USERID not used as the user", async () => {
    const target = await echo()
    const h = await harness(socks4Handler)
    const c = await client(h.port)
    c.send(Buffer.concat([C.encodeRequest(1, "127.0.0.1", target.port, "mallory"), Buffer.from("early")]))
    const r = await c.read(8)
    expect([...r.subarray(0, 2)]).toEqual([0, 90])
    expect(r.readUInt16BE(2)).toBe(target.peers[0]!.port)
    expect([...r.subarray(4)]).toEqual([127, 0, 0, 1])
    expect((await c.read(10)).toString()).toBe("echo:early")
    expect(h.sessions[0]!.user).toBeUndefined()
    expect(h.sessions[0]!.decided[0]!.request).toMatchObject({ protocol: "socks4", auth: "none" })
    expect(h.sessions[0]!.decided[0]!.request.user).toBeUndefined()
    expect(h.sessions[0]!.notes).toMatchObject({ userid: "mallory" })
  })

  it("SOCKS4a CONNECT by hostname", async () => {
    const target = await echo()
    const h = await harness(socks4Handler)
    const c = await client(h.port)
    c.send(C.encodeRequest(1, "localhost", target.port, ""))
    expect((await c.read(8))[1]).toBe(90)
    c.send("a")
    expect((await c.read(6)).toString()).toBe("echo:a")
    expect(h.sessions[0]!.decided[0]!.request.dstHost).toBe("localhost")
  })

  const rejected = async (h: Harness, bytes: Buffer) => {
    const c = await client(h.port)
    c.send(bytes)
    expect([...await c.readToEnd()]).toEqual([0, 91, 0, 0, 0, 0, 0, 0])
  }

  it("CD 91 for block, refused, unknown command, oversized USERID, bad hostname, and auth-required listeners", async () => {
    const target = await echo()
    const h = await harness(socks4Handler, { rules: `policy p {\n  rule deny when dst.port == ${target.port} -> block\n  default allow\n}\n` })
    await rejected(h, C.encodeRequest(1, "127.0.0.1", target.port))
    expect(target.peers.length).toBe(0)
    await rejected(h, C.encodeRequest(1, "127.0.0.1", await closedPort()))
    await rejected(h, C.encodeRequest(3, "127.0.0.1", 80))
    await rejected(h, Buffer.concat([Buffer.from([4, 1, 0, 80, 127, 0, 0, 1]), Buffer.alloc(300, 0x61)]))
    await rejected(h, Buffer.from([4, 1, 0, 80, 0, 0, 0, 1, 0, 0x61, 0x01, 0]))
    const auth = await harness(socks4Handler, { auth: "required", users: { a: "b" } })
    await rejected(auth, C.encodeRequest(1, "127.0.0.1", target.port))
    expect(target.peers.length).toBe(0)
  })

  it("not SOCKS4 → closed without a reply", async () => {
    const h = await harness(socks4Handler)
    const c = await client(h.port)
    c.send(Buffer.from([5, 1, 0]))
    expect((await c.readToEnd()).length).toBe(0)
  })

  it("BIND: two replies, the second with the peer's address", async () => {
    const h = await harness(socks4Handler)
    const c = await client(h.port)
    c.send(C.encodeRequest(2, "127.0.0.1", 0))
    const first = await c.read(8)
    expect(first[1]).toBe(90)
    const peer = connect({ host: "127.0.0.1", port: first.readUInt16BE(2) })
    defer(() => void peer.destroy())
    await new Promise((r) => peer.once("connect", r))
    const second = await c.read(8)
    expect(second[1]).toBe(90)
    expect(second.readUInt16BE(2)).toBe(peer.localPort)
    expect([...second.subarray(4)]).toEqual([127, 0, 0, 1])
    peer.write("hello")
    expect((await c.read(5)).toString()).toBe("hello")
  })

  it("random bytes: the socket always closes, the handler never dies", async () => {
    const h = await harness(socks4Handler, { handshakeTimeoutMs: 300 })
    const inputs = fc.sample(fc.oneof(
      fc.uint8Array({ maxLength: 300 }),
      fc.uint8Array({ maxLength: 300 }).map((b) => Uint8Array.from([4, 1, 0, 80, 0, 0, 0, 1, ...b])),
    ), { numRuns: 40, seed: 42 })
    await Promise.all(inputs.map(async (bytes) => {
      const c = await client(h.port)
      c.send(bytes)
      await c.readToEnd(3000)
    }))
    expect(h.sessions.length).toBe(inputs.length)
    expect(h.sessions.filter((x) => x.notes["defect"] !== undefined)).toEqual([])
  })
})
