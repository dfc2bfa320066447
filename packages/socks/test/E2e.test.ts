/**
 * End to end through the real runtime (`startServer`) with real clients:
 * curl (`--socks5`, `--socks5-hostname`, `--socks4`, `--socks4a`, with and
 * without credentials) and the `socks` npm client (BIND, UDP ASSOCIATE).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { createSocket } from "node:dgram"
import { connect } from "node:net"
import { SocksClient } from "socks"
import { Auth } from "@proxyd/runtime"
import { makeSocks4Handler, makeSocks5Handler } from "../src/index.ts"
import { curl, httpOrigin, needCurl, type Origin, type Proxyd, startProxyd, udpEcho } from "@proxyd/testkit"

let proxyd: Proxyd
let origin: Origin
let blockedOrigin: Origin

beforeAll(async () => {
  origin = await httpOrigin()
  blockedOrigin = await httpOrigin()
  const hash = await Auth.hashPassword("pa:ss word")
  proxyd = await startProxyd(`
options { handshake-timeout 3s }
auth users = static {
  alice "${hash}"
}
listen s5 = socks5 127.0.0.1:0
listen s5a = socks5 127.0.0.1:0 auth users
listen s4 = socks4 127.0.0.1:0
listen s4a = socks4 127.0.0.1:0 auth users
policy default {
  rule no when dst.port == ${blockedOrigin.port} -> block "not that one"
  default allow
}
`, { socks5: makeSocks5Handler({ bindTimeoutMs: 3000 }), socks4: makeSocks4Handler({ bindTimeoutMs: 3000 }) })
})

afterAll(async () => {
  await proxyd?.stop()
  await origin?.close()
  await blockedOrigin?.close()
})

const url = (host = "127.0.0.1", port = origin.port) => `http://${host}:${port}/page`

describe("curl through the SOCKS listeners", () => {
  it("--socks5 and --socks5-hostname", async (ctx) => {
    if (!needCurl(ctx)) return
    const a = await curl(["--socks5", `127.0.0.1:${proxyd.port("s5")}`, url()])
    expect(a).toMatchObject({ code: 0, stdout: "origin says hi to GET /page" })
    const b = await curl(["--socks5-hostname", `127.0.0.1:${proxyd.port("s5")}`, url("localhost")])
    expect(b).toMatchObject({ code: 0, stdout: "origin says hi to GET /page" })
    const c = await curl(["-x", `socks5h://127.0.0.1:${proxyd.port("s5")}`, "--data", "payload", url("localhost")])
    expect(c).toMatchObject({ code: 0, stdout: "origin says hi to POST /page with payload" })
  })

  it("--socks4 and --socks4a", async (ctx) => {
    if (!needCurl(ctx)) return
    const a = await curl(["--socks4", `127.0.0.1:${proxyd.port("s4")}`, url()])
    expect(a).toMatchObject({ code: 0, stdout: "origin says hi to GET /page" })
    const b = await curl(["--socks4a", `127.0.0.1:${proxyd.port("s4")}`, url("localhost")])
    expect(b).toMatchObject({ code: 0, stdout: "origin says hi to GET /page" })
  })

  it("credentials: required listener accepts the right ones and refuses wrong or missing ones; SOCKS4 is refused there", async (ctx) => {
    if (!needCurl(ctx)) return
    const before = origin.seen.length
    const ok = await curl(["--socks5", `127.0.0.1:${proxyd.port("s5a")}`, "--proxy-user", "alice:pa:ss word", url()])
    expect(ok).toMatchObject({ code: 0, stdout: "origin says hi to GET /page" })
    const wrong = await curl(["--socks5", `127.0.0.1:${proxyd.port("s5a")}`, "--proxy-user", "alice:nope", url()])
    expect(wrong.code).not.toBe(0)
    const missing = await curl(["--socks5", `127.0.0.1:${proxyd.port("s5a")}`, url()])
    expect(missing.code).not.toBe(0)
    const s4 = await curl(["--socks4", `127.0.0.1:${proxyd.port("s4a")}`, url()])
    expect(s4.code).not.toBe(0)
    expect(origin.seen.length).toBe(before + 1)
    const logs = proxyd.log.lines.join("\n")
    expect(logs).not.toContain("pa:ss word")
    expect(logs).not.toContain("nope")
    for (let i = 0; i < 100 && !proxyd.connections().some((l) => l["user"] === "alice"); i++) await new Promise((res) => setTimeout(res, 20))
    expect(proxyd.connections().some((l) => l["user"] === "alice")).toBe(true)
  })

  it("blocked destinations are refused (REP 02 / CD 91) and never contacted", async (ctx) => {
    if (!needCurl(ctx)) return
    const a = await curl(["--socks5", `127.0.0.1:${proxyd.port("s5")}`, url("127.0.0.1", blockedOrigin.port)])
    expect(a.code).not.toBe(0)
    expect(a.stderr).toMatch(/SOCKS5 connect.*\(2\)/i)
    const b = await curl(["--socks4a", `127.0.0.1:${proxyd.port("s4")}`, url("localhost", blockedOrigin.port)])
    expect(b.code).not.toBe(0)
    expect(blockedOrigin.seen.length).toBe(0)
  })
})

describe("the socks npm client", () => {
  it("CONNECT with IPv4, then BIND: two replies, the peer's address in the second, data both ways", async () => {
    const proxy = { host: "127.0.0.1", port: proxyd.port("s5"), type: 5 as const }
    const client = new SocksClient({ proxy, command: "bind", destination: { host: "127.0.0.1", port: 0 }, timeout: 5000 })
    const bound = new Promise<{ host: string; port: number }>((r) => client.on("bound", (info) => r(info.remoteHost!)))
    const established = new Promise<{ socket: import("node:net").Socket; host: string; port: number }>((resolve, reject) => {
      client.on("established", (info) => resolve({ socket: info.socket, host: info.remoteHost!.host, port: info.remoteHost!.port }))
      client.on("error", reject)
    })
    client.connect()
    const b = await bound
    expect(b.host).toBe("127.0.0.1")
    const peer = connect({ host: "127.0.0.1", port: b.port })
    try {
      await new Promise((r) => peer.once("connect", r))
      const e = await established
      expect(e).toMatchObject({ host: "127.0.0.1", port: peer.localPort })
      const got = new Promise<string>((r) => e.socket.once("data", (d: Buffer) => r(d.toString())))
      peer.write("from peer")
      expect(await got).toBe("from peer")
      const back = new Promise<string>((r) => peer.once("data", (d: Buffer) => r(d.toString())))
      e.socket.write("from client")
      expect(await back).toBe("from client")
      e.socket.destroy()
    } finally {
      peer.destroy()
    }
  })

  it("UDP ASSOCIATE: a datagram reaches a local UDP echo and the reply comes back framed", async () => {
    const echo = await udpEcho()
    const udp = createSocket("udp4")
    try {
      await new Promise<void>((r) => udp.bind({ address: "127.0.0.1", port: 0 }, () => r()))
      const client = new SocksClient({
        proxy: { host: "127.0.0.1", port: proxyd.port("s5"), type: 5 },
        command: "associate",
        destination: { host: "127.0.0.1", port: udp.address().port },
        timeout: 5000,
      })
      const info = await new Promise<{ socket: import("node:net").Socket; remoteHost?: { host: string; port: number } }>((resolve, reject) => {
        client.on("established", resolve)
        client.on("error", reject)
        client.connect()
      })
      const relay = info.remoteHost!
      const reply = new Promise<Buffer>((r) => udp.once("message", (m) => r(m)))
      udp.send(SocksClient.createUDPFrame({ remoteHost: { host: "127.0.0.1", port: echo.port }, data: Buffer.from("ping") }), relay.port, relay.host)
      const frame = SocksClient.parseUDPFrame(await reply)
      expect(frame.remoteHost).toMatchObject({ host: "127.0.0.1", port: echo.port })
      expect(frame.data.toString()).toBe("udp:ping")
      info.socket.destroy()
    } finally {
      udp.close()
      echo.close()
    }
  })
})
