/**
 * UDP ASSOCIATE through a SOCKS5 upstream: client → proxyd (SOCKS5 UDP
 * ASSOCIATE) → Dante (UDP ASSOCIATE) → a local UDP echo server, and back.
 */
import { createSocket, type Socket as UdpSocket } from "node:dgram"
import { afterAll, describe, expect, it } from "vitest"
import { SocksClient } from "socks"
import { need, startDante, startMicrosocks } from "./Peers.ts"
import { startProxyd } from "./Harness.ts"

const stops: Array<() => Promise<void>> = []
afterAll(async () => { for (const s of stops.reverse()) await s() })

const udpEcho = async (): Promise<{ port: number; seen: Array<string> }> => {
  const s = createSocket("udp4")
  const seen: Array<string> = []
  s.on("message", (m, r) => { seen.push(`${r.address}:${m.toString()}`); s.send(Buffer.concat([Buffer.from("echo:"), m]), r.port, r.address) })
  await new Promise<void>((r) => s.bind(0, "127.0.0.1", () => r()))
  stops.push(async () => { s.close() })
  return { port: s.address().port, seen }
}

/** Opens a UDP association through proxyd; `ask` sends one datagram and resolves with the unwrapped reply (or undefined after `ms`). */
const associate = async (proxyPort: number) => {
  const client = new SocksClient({ command: "associate", proxy: { host: "127.0.0.1", port: proxyPort, type: 5 }, destination: { host: "0.0.0.0", port: 0 }, timeout: 5_000 })
  const { socket, remoteHost } = await new Promise<{ socket: import("node:net").Socket; remoteHost?: { host: string; port: number } }>((resolve, reject) => {
    client.once("established", resolve)
    client.once("error", reject)
    client.connect()
  })
  const u: UdpSocket = createSocket("udp4")
  await new Promise<void>((r) => u.bind(0, "127.0.0.1", () => r()))
  stops.push(async () => { u.close(); socket.destroy() })
  const relay = remoteHost!
  return (host: string, port: number, text: string, ms = 2_000) => new Promise<{ from: string; text: string } | undefined>((resolve) => {
    const t = setTimeout(() => { u.off("message", on); resolve(undefined) }, ms)
    const on = (m: Buffer) => {
      const f = SocksClient.parseUDPFrame(m)
      clearTimeout(t)
      u.off("message", on)
      resolve({ from: `${f.remoteHost.host}:${f.remoteHost.port}`, text: f.data.toString() })
    }
    u.on("message", on)
    u.send(SocksClient.createUDPFrame({ remoteHost: { host, port }, data: Buffer.from(text) }), relay.port, relay.host === "0.0.0.0" ? "127.0.0.1" : relay.host)
  })
}

describe("UDP through a SOCKS5 upstream", () => {
  it("Dante relays the datagrams both ways", async (ctx) => {
    if (!need(ctx, "danted", "dante-server")) return
    const echo = await udpEcho()
    const d = await startDante(false)
    stops.push(d.stop)
    const p = await startProxyd(`
listen s = socks5 127.0.0.1:0
upstream d = socks5://127.0.0.1:${d.port}
policy default {
  rule r when command udp -> via d
  default block
}
`)
    stops.push(p.stop)
    const ask = await associate(p.port)
    for (let i = 0; i < 3; i++) {
      const r = await ask("127.0.0.1", echo.port, `ping${i}`)
      expect(r).toEqual({ from: `127.0.0.1:${echo.port}`, text: `echo:ping${i}` })
    }
    expect(echo.seen.length).toBe(3)
    await p.stop()
    expect(p.lines().find((l) => l["msg"] === "connection")).toMatchObject({ upstream_udp: "d" })
  }, 30_000)

  it("an upstream without UDP (microsocks) or a chain: datagrams are dropped and the log says why", async (ctx) => {
    if (!need(ctx, "microsocks", "microsocks")) return
    const echo = await udpEcho()
    const m = await startMicrosocks()
    stops.push(m.stop)
    const p = await startProxyd(`
listen s = socks5 127.0.0.1:0
upstream m = socks5://127.0.0.1:${m.port}
upstream h = http://127.0.0.1:${m.port}
chain c = m -> m
policy default {
  rule r when command udp and dst.port == ${echo.port} -> via m
  rule c when command udp -> via c
  default block
}
`)
    stops.push(p.stop)
    const ask = await associate(p.port)
    expect(await ask("127.0.0.1", echo.port, "x", 800)).toBeUndefined()
    expect(await ask("127.0.0.1", echo.port + 1, "y", 800)).toBeUndefined()
    expect(echo.seen).toEqual([])
    await p.stop()
    const line = p.lines().find((l) => l["msg"] === "connection")
    expect(String(line?.["upstream_udp_error"])).toMatch(/refused UDP ASSOCIATE|single socks5 upstream/)
  }, 30_000)
})
