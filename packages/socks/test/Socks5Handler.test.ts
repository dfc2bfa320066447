import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { createSocket } from "node:dgram"
import { connect } from "node:net"
import * as C from "../src/Socks5Codec.ts"
import { associations } from "../src/Udp.ts"
import { makeSocks5Handler, socks5Handler } from "../src/Socks5Handler.ts"
import { cleanupsAfterEach, closedPort, echoServer, type Harness, ipv6Available, rawClient, start, type TestServer, udpEcho } from "@proxyd/testkit"

const { defer, later } = cleanupsAfterEach()
const harness = async (...args: Parameters<typeof start>): Promise<Harness> => later(await start(...args))
const echo = async (host?: string): Promise<TestServer> => later(await echoServer(host))
const client = async (port: number, host?: string) => {
  const c = await rawClient(port, host)
  defer(() => void c.socket.destroy())
  return c
}

const reply = (b: Buffer) => C.parseRequest(Buffer.concat([Buffer.from([5, 0]), b.subarray(2)]))

describe("Socks5Handler", () => {
  it("CONNECT by IPv4 with everything in one write: reply carries the outbound local address; early data reaches the destination", async () => {
    const target = await echo()
    const h = await harness(socks5Handler)
    const c = await client(h.port)
    c.send(Buffer.concat([Buffer.from([5, 1, 0]), C.encodeRequest(1, "127.0.0.1", target.port), Buffer.from("early")]))
    expect([...await c.read(2)]).toEqual([5, 0])
    const r = await c.read(10)
    expect([...r.subarray(0, 4)]).toEqual([5, 0, 0, 1])
    const bnd = reply(r)
    expect(bnd).toMatchObject({ k: "ok", value: { host: "127.0.0.1" } })
    expect((bnd as { value: C.Address }).value.port).toBe(target.peers[0]!.port)
    expect((await c.read(10)).toString()).toBe("echo:early")
    c.send("more")
    expect((await c.read(9)).toString()).toBe("echo:more")
    c.socket.end()
    await c.closed
  })

  it("CONNECT by name, byte by byte", async () => {
    const target = await echo()
    const h = await harness(socks5Handler)
    const c = await client(h.port)
    const bytes = Buffer.concat([Buffer.from([5, 2, 0, 1]), C.encodeRequest(1, "localhost", target.port)])
    c.send(bytes.subarray(0, 1))
    for (let i = 1; i < bytes.length; i++) {
      await new Promise((r) => setTimeout(r, 2))
      c.send(bytes.subarray(i, i + 1))
    }
    expect([...await c.read(2)]).toEqual([5, 0])
    const head = await c.read(4)
    expect([...head.subarray(0, 2)]).toEqual([5, 0])
    await c.read(head[3] === 1 ? 6 : 18)
    c.send("x")
    expect((await c.read(6)).toString()).toBe("echo:x")
    expect(h.sessions[0]!.decided[0]!.request).toMatchObject({ command: "connect", dstHost: "localhost", protocol: "socks5" })
  })

  it("CONNECT by IPv6 on an IPv6 listener", async (ctx) => {
    if (!(await ipv6Available())) return ctx.skip("no ::1 on this machine")
    const target = await echo("::1")
    const h = await harness(socks5Handler, { host: "::1" })
    const c = await client(h.port, "::1")
    c.send(Buffer.concat([Buffer.from([5, 1, 0]), C.encodeRequest(1, "::1", target.port)]))
    await c.read(2)
    const r = await c.read(22)
    expect([...r.subarray(0, 4)]).toEqual([5, 0, 0, 4])
    expect((reply(r) as { value: C.Address }).value).toMatchObject({ host: "::1", port: target.peers[0]!.port })
    c.send("v6")
    expect((await c.read(7)).toString()).toBe("echo:v6")
  })

  it("auth required: only user/pass; no acceptable method → 05 FF and close", async () => {
    const h = await harness(socks5Handler, { auth: "required", users: { alice: "s3cret" } })
    const c = await client(h.port)
    c.send(Buffer.from([5, 1, 0]))
    expect([...await c.readToEnd()]).toEqual([5, 0xff])
  })

  it("auth required: wrong password → 01 01 and close; right password → 01 00, user set", async () => {
    const target = await echo()
    const h = await harness(socks5Handler, { auth: "required", users: { alice: "s3cret" } })
    const bad = await client(h.port)
    bad.send(Buffer.from([5, 2, 0, 2, 1, 5, ...Buffer.from("alice"), 5, ...Buffer.from("wrong")]))
    expect([...await bad.readToEnd()]).toEqual([5, 2, 1, 1])
    const good = await client(h.port)
    good.send(Buffer.concat([Buffer.from([5, 1, 2, 1, 5, ...Buffer.from("alice"), 6, ...Buffer.from("s3cret")]), C.encodeRequest(1, "127.0.0.1", target.port)]))
    expect([...await good.read(4)]).toEqual([5, 2, 1, 0])
    expect([...(await good.read(10)).subarray(0, 2)]).toEqual([5, 0])
    expect(h.sessions[1]!.user).toBe("alice")
    expect(h.sessions[1]!.decided[0]!.request).toMatchObject({ user: "alice", auth: "password" })
  })

  it("auth optional: a client without credentials gets 00; none: user/pass only → 05 FF", async () => {
    const opt = await harness(socks5Handler, { auth: "optional" })
    const a = await client(opt.port)
    a.send(Buffer.from([5, 1, 0]))
    expect([...await a.read(2)]).toEqual([5, 0])
    const none = await harness(socks5Handler, { auth: "none" })
    const b = await client(none.port)
    b.send(Buffer.from([5, 1, 2]))
    expect([...await b.readToEnd()]).toEqual([5, 0xff])
  })

  const refusal = async (rules: string | undefined, request: Buffer, rep: number) => {
    const h = await harness(socks5Handler, rules === undefined ? {} : { rules })
    const c = await client(h.port)
    c.send(Buffer.concat([Buffer.from([5, 1, 0]), request]))
    const all = await c.readToEnd()
    expect([...all.subarray(0, 2)]).toEqual([5, 0])
    expect([...all.subarray(2, 6)]).toEqual([5, rep, 0, 1])
    expect(all.length).toBe(12)
    return h
  }

  it("block → REP 02 (not allowed by ruleset), destination never contacted", async () => {
    const target = await echo()
    const h = await refusal(`policy p {\n  rule deny when dst.port == ${target.port} -> block "no"\n  default allow\n}\n`, C.encodeRequest(1, "127.0.0.1", target.port), 0x02)
    expect(target.peers.length).toBe(0)
    expect(h.sessions[0]!.notes).toMatchObject({ outcome: "blocked" })
  })

  it("refused → REP 05; bad ATYP → REP 08; unknown command → REP 07; empty name → REP 04", async () => {
    await refusal(undefined, C.encodeRequest(1, "127.0.0.1", await closedPort()), 0x05)
    await refusal(undefined, Buffer.from([5, 1, 0, 7, 1, 2, 3, 4, 0, 80]), 0x08)
    await refusal(undefined, C.encodeRequest(9, "127.0.0.1", 80), 0x07)
    await refusal(undefined, Buffer.from([5, 1, 0, 3, 0, 0, 80]), 0x04)
    await refusal(undefined, Buffer.from([5, 1, 0, 3, 3, 0x61, 0, 0x62, 0, 80]), 0x04)
  })

  it("a client that half-closes right after its request still gets the complete reply", async () => {
    const h = await harness(socks5Handler)
    const c = await client(h.port)
    c.send(Buffer.concat([Buffer.from([5, 1, 0]), C.encodeRequest(1, "127.0.0.1", await closedPort())]))
    c.socket.end()
    expect([...await c.readToEnd()]).toEqual([5, 0, 5, 5, 0, 1, 0, 0, 0, 0, 0, 0])
  })

  it("not SOCKS5 → closed without a reply; handshake timeout → closed", async () => {
    const h = await harness(socks5Handler, { handshakeTimeoutMs: 200 })
    const c = await client(h.port)
    c.send(Buffer.from([4, 1, 0, 80]))
    expect((await c.readToEnd()).length).toBe(0)
    const slow = await client(h.port)
    slow.send(Buffer.from([5, 1]))
    const t0 = Date.now()
    expect((await slow.readToEnd(2000)).length).toBe(0)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150)
    expect(h.sessions[1]!.notes).toMatchObject({ error: "handshake timeout" })
  })

  it("BIND: first reply with the bound address, second with the expected peer; relays both ways", async () => {
    const h = await harness(socks5Handler)
    const c = await client(h.port)
    c.send(Buffer.concat([Buffer.from([5, 1, 0]), C.encodeRequest(2, "127.0.0.1", 0)]))
    await c.read(2)
    const first = reply(await c.read(10)) as { k: "ok"; value: C.Address }
    expect(first.value.host).toBe("127.0.0.1")
    const peer = connect({ host: "127.0.0.1", port: first.value.port })
    defer(() => void peer.destroy())
    await new Promise((r) => peer.once("connect", r))
    const second = reply(await c.read(10)) as { k: "ok"; value: C.Address }
    expect(second.value).toMatchObject({ host: "127.0.0.1", port: peer.localPort })
    const got = new Promise<string>((r) => peer.once("data", (d) => r(d.toString())))
    c.send("to-peer")
    expect(await got).toBe("to-peer")
    peer.write("to-client")
    expect((await c.read(9)).toString()).toBe("to-client")
  })

  it("BIND: an unexpected peer is refused; the timeout answers REP 06 and closes", async () => {
    const h = await harness(makeSocks5Handler({ bindTimeoutMs: 300 }))
    const c = await client(h.port)
    c.send(Buffer.concat([Buffer.from([5, 1, 0]), C.encodeRequest(2, "127.0.0.2", 0)]))
    await c.read(2)
    const first = reply(await c.read(10)) as { k: "ok"; value: C.Address }
    const intruder = connect({ host: "127.0.0.1", port: first.value.port })
    intruder.on("error", () => {})
    defer(() => void intruder.destroy())
    await new Promise((r) => intruder.once("close", r))
    const rest = await c.readToEnd()
    expect([...rest.subarray(0, 2)]).toEqual([5, 0x06])
  })

  it("UDP ASSOCIATE: relays to an allowed destination and back with the header; blocked destinations and FRAG≠0 dropped", async () => {
    const target = await udpEcho()
    defer(() => target.close())
    const blockedTarget = await udpEcho()
    defer(() => blockedTarget.close())
    let blockedHits = 0
    blockedTarget.socket.on("message", () => blockedHits++)
    const h = await harness(socks5Handler, { rules: `policy p {\n  rule deny when dst.port == ${blockedTarget.port} -> block\n  default allow\n}\n` })
    const c = await client(h.port)
    const udp = createSocket("udp4")
    defer(() => void udp.close())
    await new Promise<void>((r) => udp.bind({ address: "127.0.0.1", port: 0 }, () => r()))
    c.send(Buffer.concat([Buffer.from([5, 1, 0]), C.encodeRequest(3, "0.0.0.0", udp.address().port)]))
    await c.read(2)
    const relay = reply(await c.read(10)) as { k: "ok"; value: C.Address }
    expect(relay.value.host).toBe("127.0.0.1")
    const got: Buffer[] = []
    udp.on("message", (m) => got.push(m))
    udp.send(C.encodeUdp("127.0.0.1", blockedTarget.port, Buffer.from("no")), relay.value.port, "127.0.0.1")
    udp.send(C.encodeUdp("127.0.0.1", target.port, Buffer.from("frag"), 1), relay.value.port, "127.0.0.1")
    udp.send(C.encodeUdp("127.0.0.1", target.port, Buffer.from("hi")), relay.value.port, "127.0.0.1")
    for (let i = 0; i < 100 && got.length === 0; i++) await new Promise((r) => setTimeout(r, 20))
    expect(got.length).toBe(1)
    udp.send(C.encodeUdp("127.0.0.1", target.port, Buffer.from("again")), relay.value.port, "127.0.0.1")
    for (let i = 0; i < 100 && got.length === 1; i++) await new Promise((r) => setTimeout(r, 20))
    expect(got.length).toBe(2)
    const d = C.parseUdp(got[0]!)
    expect(d).toMatchObject({ k: "ok", value: { host: "127.0.0.1", port: target.port, frag: 0 } })
    expect((d as { value: C.UdpDatagram }).value.data.toString()).toBe("udp:hi")
    await new Promise((r) => setTimeout(r, 50))
    expect(blockedHits).toBe(0)
    // one decision per destination for the association's life
    expect(h.sessions[0]!.decided.map((x) => [x.request.command, x.request.dstPort])).toEqual([["udp", blockedTarget.port], ["udp", target.port]])
    expect(associations("127.0.0.1")).toBe(1)
    c.socket.end()
    await c.closed
    for (let i = 0; i < 50 && associations("127.0.0.1") > 0; i++) await new Promise((r) => setTimeout(r, 10))
    expect(associations("127.0.0.1")).toBe(0)
  })

  it("UDP ASSOCIATE on an IPv6 listener: relay bound to ::1, IPv6 headers both ways", async (ctx) => {
    if (!(await ipv6Available())) return ctx.skip("no ::1 on this machine")
    const target = await udpEcho("::1")
    defer(() => target.close())
    const h = await harness(socks5Handler, { host: "::1" })
    const c = await client(h.port, "::1")
    c.send(Buffer.concat([Buffer.from([5, 1, 0]), C.encodeRequest(3, "::", 0)]))
    await c.read(2)
    const r = await c.read(22)
    expect([...r.subarray(0, 4)]).toEqual([5, 0, 0, 4])
    const relay = (reply(r) as { k: "ok"; value: C.Address }).value
    expect(relay.host).toBe("::1")
    const udp = createSocket("udp6")
    defer(() => void udp.close())
    await new Promise<void>((res) => udp.bind({ address: "::1", port: 0 }, () => res()))
    const got = new Promise<Buffer>((res) => udp.once("message", (m) => res(m)))
    udp.send(C.encodeUdp("::1", target.port, Buffer.from("six")), relay.port, "::1")
    const d = C.parseUdp(await got) as { k: "ok"; value: C.UdpDatagram }
    expect(d.value).toMatchObject({ atyp: 4, host: "::1", port: target.port })
    expect(d.value.data.toString()).toBe("udp:six")
  })

  it("UDP ASSOCIATE: datagrams from another port than the announced one are ignored; the per-IP cap answers REP 01", async () => {
    const target = await udpEcho()
    defer(() => target.close())
    const h = await harness(makeSocks5Handler({ maxUdpAssociationsPerIp: 1 }))
    const announced = createSocket("udp4")
    const stranger = createSocket("udp4")
    defer(() => void announced.close(), () => void stranger.close())
    await new Promise<void>((r) => announced.bind({ address: "127.0.0.1", port: 0 }, () => r()))
    await new Promise<void>((r) => stranger.bind({ address: "127.0.0.1", port: 0 }, () => r()))
    const c = await client(h.port)
    c.send(Buffer.concat([Buffer.from([5, 1, 0]), C.encodeRequest(3, "127.0.0.1", announced.address().port)]))
    await c.read(2)
    const relay = reply(await c.read(10)) as { k: "ok"; value: C.Address }
    const seen: string[] = []
    target.socket.on("message", (m) => seen.push(m.toString()))
    stranger.send(C.encodeUdp("127.0.0.1", target.port, Buffer.from("from-stranger")), relay.value.port, "127.0.0.1")
    await new Promise((r) => setTimeout(r, 50))
    announced.send(C.encodeUdp("127.0.0.1", target.port, Buffer.from("from-client")), relay.value.port, "127.0.0.1")
    for (let i = 0; i < 100 && seen.length === 0; i++) await new Promise((r) => setTimeout(r, 10))
    await new Promise((r) => setTimeout(r, 50))
    expect(seen).toEqual(["from-client"])
    const second = await client(h.port)
    second.send(Buffer.concat([Buffer.from([5, 1, 0]), C.encodeRequest(3, "0.0.0.0", 0)]))
    const all = await second.readToEnd()
    expect([...all]).toEqual([5, 0, 5, 1, 0, 1, 0, 0, 0, 0, 0, 0])
  })

  it("random bytes after a valid greeting or instead of it: the socket always closes, the handler never dies", async () => {
    const h = await harness(socks5Handler, { handshakeTimeoutMs: 300 })
    const inputs = fc.sample(fc.oneof(
      fc.uint8Array({ maxLength: 64 }),
      fc.uint8Array({ maxLength: 64 }).map((b) => Uint8Array.from([5, 1, 0, 5, ...b])),
      fc.uint8Array({ maxLength: 64 }).map((b) => Uint8Array.from([5, 1, 0, 5, 1, 0, 3, ...b])),
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
