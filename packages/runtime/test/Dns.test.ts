/**
 * Direct outbound against a DNS server started by the test: the cache honours
 * TTLs (clamped), and dual-stack names connect with Happy Eyeballs.
 *
 * Details: a minimal authoritative DNS server on 127.0.0.1 (UDP) answers A and
 * AAAA from a table and counts the queries it gets; `Resolver.make({ servers,
 * now })` uses it with a clock the test moves, so expiry needs no waiting.
 * Happy Eyeballs: the name has A 127.0.0.1 (tried first) where a stopped
 * process with a full accept queue drops SYNs, and AAAA ::1 where a server
 * listens on the same port; the connection must land on ::1 well before the
 * connect timeout.
 * Names a guard blocks by name are never sent to DNS, even when another guard
 * tests `dst.ip`; a name that needs its address is asked exactly once.
 * Gotchas: the IPv6 case needs ::1; without it the test is skipped (it fails
 * under CI=true).
 */
import { spawn } from "node:child_process"
import dgram from "node:dgram"
import * as net from "node:net"
import { Effect } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { direct } from "../src/Outbound.ts"
import * as Resolver from "../src/Resolver.ts"
import { dial, localServer, start, tempDir, until, writeRules } from "./support.ts"

interface Zone { readonly a?: ReadonlyArray<string>; readonly aaaa?: ReadonlyArray<string>; readonly ttl: number }

const cleanups: Array<() => void> = []
afterEach(() => { for (const c of cleanups.splice(0)) c() })

const v6bytes = (a: string): Buffer => {
  const [head = "", tail = ""] = a.split("::")
  const h = head === "" ? [] : head.split(":")
  const t = tail === "" ? [] : tail.split(":")
  const words = [...h, ...Array<string>(8 - h.length - t.length).fill("0"), ...t]
  const b = Buffer.alloc(16)
  words.forEach((w, i) => b.writeUInt16BE(parseInt(w, 16), i * 2))
  return b
}

/** A DNS server answering A (1) and AAAA (28) from `zones`; NXDOMAIN for other names. */
const dnsServer = async (zones: ReadonlyMap<string, Zone>) => {
  const sock = dgram.createSocket("udp4")
  const queries: Array<string> = []
  sock.on("message", (msg, rinfo) => {
    let off = 12
    const labels: Array<string> = []
    for (let i = 0; i < 64 && msg[off] !== 0 && off < msg.length; i++) {
      const len = msg[off]!
      labels.push(msg.subarray(off + 1, off + 1 + len).toString("latin1"))
      off += 1 + len
    }
    off += 1
    const qtype = msg.readUInt16BE(off)
    const name = labels.join(".").toLowerCase()
    queries.push(`${name}/${qtype === 1 ? "A" : qtype === 28 ? "AAAA" : qtype}`)
    const z = zones.get(name)
    const addrs = z === undefined ? [] : qtype === 1 ? z.a ?? [] : qtype === 28 ? z.aaaa ?? [] : []
    const header = Buffer.alloc(12)
    header.writeUInt16BE(msg.readUInt16BE(0), 0)
    header.writeUInt16BE(z === undefined ? 0x8183 : 0x8580, 2)
    header.writeUInt16BE(1, 4)
    header.writeUInt16BE(addrs.length, 6)
    const answers = addrs.map((a) => {
      const rd = qtype === 1 ? Buffer.from(a.split(".").map(Number)) : v6bytes(a)
      const rr = Buffer.alloc(12)
      rr.writeUInt16BE(0xc00c, 0)
      rr.writeUInt16BE(qtype, 2)
      rr.writeUInt16BE(1, 4)
      rr.writeUInt32BE(z!.ttl, 6)
      rr.writeUInt16BE(rd.length, 10)
      return Buffer.concat([rr, rd])
    })
    sock.send(Buffer.concat([header, msg.subarray(12, off + 4), ...answers]), rinfo.port, rinfo.address)
  })
  await new Promise<void>((r) => sock.bind(0, "127.0.0.1", r))
  cleanups.push(() => sock.close())
  return { server: `127.0.0.1:${sock.address().port}`, queries }
}

describe("DNS cache", () => {
  it("honours the record's TTL: cached until it expires, then asked again; TTLs are clamped to 1 s .. 1 h", async () => {
    const dns = await dnsServer(new Map<string, Zone>([
      ["thirty.test", { a: ["192.0.2.30"], ttl: 30 }],
      ["zero.test", { a: ["192.0.2.0"], ttl: 0 }],
      ["day.test", { a: ["192.0.2.1"], aaaa: ["2001:db8::1"], ttl: 86_400 }],
    ]))
    let clock = 1_000_000
    const r = Resolver.make({ servers: [dns.server], now: () => clock })
    const resolve = (n: string) => Effect.runPromise(r.resolve(n))
    const asked = (n: string) => dns.queries.filter((q) => q === `${n}/A`).length

    expect(await resolve("thirty.test")).toEqual(["192.0.2.30"])
    clock += 29_000
    expect(await resolve("thirty.test")).toEqual(["192.0.2.30"])
    expect(asked("thirty.test")).toBe(1)
    clock += 2_000
    await resolve("thirty.test")
    expect(asked("thirty.test")).toBe(2)

    await resolve("zero.test")
    clock += 500
    await resolve("zero.test")
    expect(asked("zero.test")).toBe(1) // TTL 0 is held for the 1 s minimum
    clock += 600
    await resolve("zero.test")
    expect(asked("zero.test")).toBe(2)

    expect(await resolve("day.test")).toEqual(["192.0.2.1", "2001:db8::1"]) // IPv4 first
    clock += 3_599_000
    await resolve("day.test")
    expect(asked("day.test")).toBe(1)
    clock += 2_000
    await resolve("day.test")
    expect(asked("day.test")).toBe(2) // a day's TTL is held for at most 1 h
  })
})

describe("Happy Eyeballs", () => {
  it("a dual-stack name whose IPv4 address drops SYNs connects over IPv6 long before the connect timeout", async (ctx) => {
    const v6 = net.createServer((s) => s.end("v6"))
    const ok = await new Promise<boolean>((r) => { v6.once("error", () => r(false)); v6.listen(0, "::1", () => r(true)) })
    if (!ok) {
      if (process.env["CI"] === "true") throw new Error("no IPv6 loopback (::1)")
      return ctx.skip("no IPv6 loopback (::1)")
    }
    cleanups.push(() => v6.close())
    const port = (v6.address() as net.AddressInfo).port
    // 127.0.0.1 on the same port: a stopped listener with a full backlog (SYNs dropped).
    const child = spawn(process.execPath, ["-e", `const s=require('net').createServer();s.listen({port:${port},host:'127.0.0.1',backlog:1},()=>console.log('up'))`], { stdio: ["ignore", "pipe", "ignore"] })
    cleanups.push(() => child.kill("SIGKILL"))
    await new Promise((r) => child.stdout.once("data", r))
    child.kill("SIGSTOP")
    const fillers = [net.connect(port, "127.0.0.1"), net.connect(port, "127.0.0.1")]
    for (const f of fillers) { f.on("error", () => {}); cleanups.push(() => f.destroy()) }
    await Promise.all(fillers.map((f) => new Promise((r) => { f.once("connect", r); setTimeout(r, 1_000) })))

    const dns = await dnsServer(new Map<string, Zone>([["dual.test", { a: ["127.0.0.1"], aaaa: ["::1"], ttl: 60 }]]))
    const resolver = Resolver.make({ servers: [dns.server] })
    const t0 = Date.now()
    const s = await Effect.runPromise(direct("dual.test", port, { resolver, connectTimeoutMs: 8_000 }))
    const took = Date.now() - t0
    cleanups.push(() => s.destroy())
    expect(s.remoteAddress).toBe("::1")
    expect(took).toBeLessThan(3_000)
    const text = await new Promise<string>((r) => { let b = ""; s.on("data", (d: Buffer) => { b += d.toString() }); s.on("end", () => r(b)) })
    expect(text).toBe("v6")
    expect(dns.queries).toEqual(expect.arrayContaining(["dual.test/A", "dual.test/AAAA"]))
  }, 20_000)
})

describe("names and DNS through the server", () => {
  it("a name blocked by a guard on dst.domain is never resolved, even beside a guard on dst.ip; an allowed name is asked once and connected to as resolved", async () => {
    const echo = await localServer()
    cleanups.push(() => { void echo.close() })
    const dns = await dnsServer(new Map<string, Zone>([
      ["x.blocked.test", { a: ["127.0.0.1"], ttl: 60 }],
      ["ok.test", { a: ["127.0.0.1"], ttl: 60 }],
      ["private.test", { a: ["10.1.2.3"], ttl: 60 }],
    ]))
    const s = await start(writeRules(tempDir(), `
listen t = http 127.0.0.1:0
policy default {
  guard names   when dst.domain in [.blocked.test] -> block "blocked name"
  guard private when dst.ip in [10.0.0.0/8]        -> block "private"
  default allow
}
`), { resolver: Resolver.make({ servers: [dns.server] }) })
    cleanups.push(() => { void s.stop() })
    const blocked = await dial(s.port, `CONNECT x.blocked.test ${echo.port}\n`)
    expect(await until(() => blocked.closed())).toBe(true)
    expect(blocked.text()).toMatch(/^ERR blocked/)
    const priv = await dial(s.port, `CONNECT private.test ${echo.port}\n`)
    expect(await until(() => priv.closed())).toBe(true)
    expect(priv.text()).toMatch(/^ERR blocked/)
    const ok = await dial(s.port, `CONNECT ok.test ${echo.port}\nping\n`)
    expect(await ok.waitText("ping\n")).toBe(true)
    ok.socket.destroy()
    expect(await until(() => s.connections().length === 3)).toBe(true)
    expect(dns.queries.filter((q) => q.startsWith("x.blocked.test"))).toEqual([])
    expect(dns.queries.filter((q) => q === "ok.test/A")).toEqual(["ok.test/A"])
    expect(echo.accepted()).toBe(1)
    const byDst = (d: string) => s.connections().find((c) => String(c["dst"]).startsWith(d))
    expect(byDst("x.blocked.test")).toMatchObject({ rule: "names", action: "block" })
    expect(byDst("x.blocked.test")?.["dst_ip"]).toBeUndefined()
    expect(byDst("private.test")).toMatchObject({ rule: "private", action: "block", dst_ip: "10.1.2.3" })
    expect(byDst("private.test")?.["dst_connected"]).toBeUndefined()
    expect(byDst("ok.test")).toMatchObject({ rule: "default", dst_ip: "127.0.0.1", dst_connected: `127.0.0.1:${echo.port}` })
  })
})
