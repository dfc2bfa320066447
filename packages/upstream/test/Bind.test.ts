/**
 * BIND through a real Dante upstream (SOCKS5 and SOCKS4): the `socks` npm
 * client asks proxyd for BIND under a `via` rule; proxyd binds at Dante and
 * relays its two replies; a peer connecting to Dante's bound address reaches
 * the client byte-exact, both ways.
 */
import { randomBytes } from "node:crypto"
import { connect, type Socket } from "node:net"
import { afterAll, describe, expect, it } from "vitest"
import { SocksClient } from "socks"
import { need, type Peer, startDante } from "./Peers.ts"
import { startProxyd, type Proxyd } from "./Harness.ts"

const stops: Array<() => Promise<void>> = []
afterAll(async () => { for (const s of stops.reverse()) await s() })

const rules = (kind: string, port: number): string => `
listen s = socks5 127.0.0.1:0
upstream d = ${kind}://127.0.0.1:${port}
policy default {
  rule r when command bind -> via d
  default block
}
`

const readExactly = (s: Socket, n: number): Promise<Buffer> => new Promise((resolve, reject) => {
  const parts: Array<Buffer> = []
  let got = 0
  const on = (d: Buffer): void => {
    parts.push(d)
    got += d.length
    if (got >= n) { s.off("data", on); resolve(Buffer.concat(parts)) }
  }
  s.on("data", on)
  s.once("error", reject)
  s.once("close", () => { if (got < n) reject(new Error(`closed after ${got} of ${n} bytes`)) })
})

const bindThrough = async (p: Proxyd, dante: Peer): Promise<void> => {
  const client = new SocksClient({ proxy: { host: "127.0.0.1", port: p.port, type: 5 }, command: "bind", destination: { host: "127.0.0.1", port: 0 }, timeout: 5000 })
  const bound = new Promise<{ host: string; port: number }>((resolve, reject) => {
    client.once("bound", (info) => resolve(info.remoteHost!))
    client.once("error", reject)
  })
  const established = new Promise<{ socket: Socket; host: string; port: number }>((resolve, reject) => {
    client.once("established", (info) => resolve({ socket: info.socket, host: info.remoteHost!.host, port: info.remoteHost!.port }))
    client.once("error", reject)
  })
  client.connect()
  const b = await bound
  // The first reply is Dante's bound address, not one of proxyd's.
  expect(b.host).toBe("127.0.0.1")
  expect(b.port).not.toBe(dante.port)
  expect(b.port).not.toBe(p.port)
  const peer = connect({ host: "127.0.0.1", port: b.port })
  try {
    await new Promise((r) => peer.once("connect", r))
    const e = await established
    // The second reply names the peer as Dante saw it.
    expect(e).toMatchObject({ host: "127.0.0.1", port: peer.localPort })
    const fromPeer = randomBytes(256 * 1024)
    const got = readExactly(e.socket, fromPeer.length)
    peer.write(fromPeer)
    expect((await got).equals(fromPeer)).toBe(true)
    const fromClient = randomBytes(64 * 1024)
    const back = readExactly(peer, fromClient.length)
    e.socket.write(fromClient)
    expect((await back).equals(fromClient)).toBe(true)
    e.socket.destroy()
  } finally {
    peer.destroy()
  }
}

describe("BIND via a Dante upstream", () => {
  for (const kind of ["socks5", "socks4"]) {
    it(`${kind}: both replies relayed, the peer reaches the client byte-exact`, async (ctx) => {
      if (!need(ctx, "danted", "dante-server")) return
      const d = await startDante(false)
      stops.push(() => d.stop())
      const p = await startProxyd(rules(kind, d.port))
      stops.push(p.stop)
      await bindThrough(p, d)
      let line: Record<string, unknown> | undefined
      for (let i = 0; i < 100 && line === undefined; i++) {
        line = p.lines().find((l) => l["msg"] === "connection")
        if (line === undefined) await new Promise((r) => setTimeout(r, 20))
      }
      expect(line).toMatchObject({ upstream: "d", action: "via" })
      expect(String(line!["upstream_bound"])).toMatch(/^127\.0\.0\.1:\d+$/)
    }, 30_000)
  }
})
