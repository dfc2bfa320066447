import * as net from "node:net"
import { describe, expect, it } from "vitest"
import { authRequest, connectRequest, connectThroughTor, replyLength, replyText, TorFailure } from "../src/TorSocks.ts"

describe("SOCKS5 bytes for Tor", () => {
  it("CONNECT always uses ATYP 3, IP literals and onions included", () => {
    expect([...connectRequest("a.onion", 80)]).toEqual([5, 1, 0, 3, 7, ...Buffer.from("a.onion"), 0, 80])
    expect([...connectRequest("10.0.0.1", 443)]).toEqual([5, 1, 0, 3, 8, ...Buffer.from("10.0.0.1"), 1, 187])
    expect([...connectRequest("[::1]", 1)]).toEqual([5, 1, 0, 3, 3, ...Buffer.from("::1"), 0, 1])
    expect(() => connectRequest("a".repeat(256), 80)).toThrow(TorFailure)
  })
  it("RFC 1929 auth and reply lengths", () => {
    expect([...authRequest("u", "pw")]).toEqual([1, 1, 117, 2, 112, 119])
    expect(replyLength(Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0]))).toBeUndefined()
    expect(replyLength(Buffer.from([5, 0, 0, 1, 0, 0, 0, 0, 0, 0, 99]))).toBe(10)
    expect(replyLength(Buffer.from([5, 0, 0, 3, 2, 97, 98, 0, 1]))).toBe(9)
  })
  it("names Tor's extended codes", () => {
    expect(replyText(0xf0)).toBe("onion service descriptor not found")
    expect(replyText(0xf6)).toBe("invalid onion address")
    expect(replyText(0x99)).toBe("reply 0x99")
  })
})

describe("deadlines", () => {
  it("a SocksPort that accepts but never answers fails after the answer deadline, named", async () => {
    const server = net.createServer((s) => { s.on("error", () => {}) })
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
    const port = (server.address() as net.AddressInfo).port
    try {
      const started = Date.now()
      const err = await connectThroughTor({ socksHost: "127.0.0.1", socksPort: port, dstHost: "x.onion", dstPort: 80, timeoutMs: 300, connectTimeoutMs: 5000 }).catch((e: unknown) => e)
      expect(err).toBeInstanceOf(TorFailure)
      expect((err as TorFailure).kind).toBe("timeout")
      expect((err as TorFailure).message).toBe("Tor did not answer within 300 ms (is it bootstrapped?)")
      expect(Date.now() - started).toBeLessThan(3000)
    } finally {
      server.close()
    }
  })
  it("an abort signal interrupts the handshake", async () => {
    const server = net.createServer((s) => { s.on("error", () => {}) })
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
    const port = (server.address() as net.AddressInfo).port
    try {
      const ac = new AbortController()
      const p = connectThroughTor({ socksHost: "127.0.0.1", socksPort: port, dstHost: "x.onion", dstPort: 80, timeoutMs: 10_000 }, ac.signal)
      setTimeout(() => ac.abort(), 50)
      await expect(p).rejects.toThrow("interrupted")
    } finally {
      server.close()
    }
  })
})
