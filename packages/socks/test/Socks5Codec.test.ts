import { describe, expect, it } from "vitest"
import fc from "fast-check"
import * as C from "../src/Socks5Codec.ts"
import { feed } from "./Feed.ts"
import { normalizeIp } from "../src/Addr.ts"

const ipv4 = fc.tuple(fc.nat(255), fc.nat(255), fc.nat(255), fc.nat(255)).map((xs) => xs.join("."))
const ipv6 = fc.ipV6().map((s) => normalizeIp(s)!).filter((s) => s.includes(":"))
const name = fc.domain().filter((d) => d.length <= 255)
const host = fc.oneof(ipv4, ipv6, name)
const port = fc.integer({ min: 0, max: 65535 })

describe("Socks5Codec", () => {
  it("parses a greeting, user/pass and a request", () => {
    expect(C.parseGreeting(Buffer.from([5, 2, 0, 2]))).toEqual({ k: "ok", value: { methods: [0, 2] }, size: 4 })
    expect(C.parseGreeting(Buffer.from([5, 2, 0]))).toEqual({ k: "more" })
    expect(C.parseGreeting(Buffer.from([4, 1, 0])).k).toBe("error")
    expect(C.parseGreeting(Buffer.from([5, 0]))).toMatchObject({ k: "error", code: "methods" })
    const up = Buffer.concat([Buffer.from([1, 5]), Buffer.from("alice"), Buffer.from([3]), Buffer.from("a:b")])
    expect(C.parseUserPass(up)).toEqual({ k: "ok", value: { user: "alice", pass: "a:b" }, size: up.length })
    expect(C.parseUserPass(Buffer.from([2, 1, 0x61, 0]))).toMatchObject({ k: "error", code: "auth-version" })
    expect(C.parseUserPass(Buffer.from([1, 0, 0]))).toMatchObject({ k: "error", code: "auth-length" })
    expect(C.parseRequest(C.encodeRequest(1, "example.com", 443))).toMatchObject({ k: "ok", value: { cmd: 1, atyp: 3, host: "example.com", port: 443 } })
    expect(C.parseRequest(C.encodeRequest(1, "10.1.2.3", 80))).toMatchObject({ k: "ok", value: { atyp: 1, host: "10.1.2.3", port: 80 }, size: 10 })
    expect(C.parseRequest(C.encodeRequest(3, "2001:db8::1", 53))).toMatchObject({ k: "ok", value: { cmd: 3, atyp: 4, host: "2001:db8::1", port: 53 }, size: 22 })
  })

  it("rejects bad ATYP, empty names and names with control bytes", () => {
    expect(C.parseRequest(Buffer.from([5, 1, 0, 9, 1, 2, 3, 4, 0, 80]))).toMatchObject({ k: "error", code: "atyp" })
    expect(C.parseRequest(Buffer.from([5, 1, 0, 3, 0, 0, 80]))).toMatchObject({ k: "error", code: "name" })
    for (const bad of ["a\0b", "a\nb", "a b", "a\x7fb", "é.com"]) {
      const n = Buffer.from(bad, "utf8")
      const msg = Buffer.concat([Buffer.from([5, 1, 0, 3, n.length]), n, Buffer.from([0, 80])])
      expect(C.parseRequest(msg)).toMatchObject({ k: "error", code: "name" })
    }
    expect(C.parseRequest(Buffer.from([4, 1, 0, 1]))).toMatchObject({ k: "error", code: "version" })
  })

  it("encodes replies with IPv4, IPv6 and mapped addresses", () => {
    expect([...C.encodeReply(0, "127.0.0.1", 1080)]).toEqual([5, 0, 0, 1, 127, 0, 0, 1, 4, 56])
    expect([...C.encodeReply(0, "::ffff:127.0.0.1", 1080)]).toEqual([5, 0, 0, 1, 127, 0, 0, 1, 4, 56])
    expect([...C.encodeReply(0, "::1", 2)]).toEqual([5, 0, 0, 4, ...new Array(15).fill(0), 1, 0, 2])
    expect([...C.encodeReply(2)]).toEqual([5, 2, 0, 1, 0, 0, 0, 0, 0, 0])
  })

  it("the IPv4 fast path of encodeReply encodes exactly what the general address encoder does", () => {
    const general = (rep: number, host: string, port: number) => [5, rep, 0, ...C.encodeAddress(host, port)]
    const hosts = ["0.0.0.0", "255.255.255.255", "10.1.2.3", "192.168.100.200", "1.2.3", "1.2.3.4.5", "256.1.1.1", "01.2.3.4", "1..2.3", ".1.2.3", "1.2.3.", "1.2.3.4 ", "example.com", "", "::1", "::ffff:10.0.0.1"]
    let seed = 7
    for (let i = 0; i < 200; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0
      hosts.push([seed >>> 24, (seed >>> 16) & 255, (seed >>> 8) & 255, seed & 255].join("."))
    }
    for (const h of hosts) for (const port of [0, 1, 1080, 65535]) expect([...C.encodeReply(3, h, port)], `${h}:${port}`).toEqual(general(3, h, port))
  })

  it("UDP header round-trips and rejects short datagrams", () => {
    const d = C.encodeUdp("example.org", 53, Buffer.from("hello"))
    expect(C.parseUdp(d)).toMatchObject({ k: "ok", value: { frag: 0, host: "example.org", port: 53 } })
    expect((C.parseUdp(d) as { value: { data: Buffer } }).value.data.toString()).toBe("hello")
    expect(C.parseUdp(C.encodeUdp("1.2.3.4", 9, Buffer.alloc(0), 3))).toMatchObject({ k: "ok", value: { frag: 3, host: "1.2.3.4" } })
    expect(C.parseUdp(Buffer.from([0, 0, 0, 1, 1, 2]))).toMatchObject({ k: "error", code: "short" })
  })

  it("property: any split of greeting + auth + request (+ early data) parses identically", () => {
    fc.assert(fc.property(
      fc.uniqueArray(fc.nat(255), { minLength: 1, maxLength: 255 }),
      fc.string({ minLength: 1, maxLength: 255, unit: "binary-ascii" }).filter((s) => Buffer.byteLength(s) <= 255),
      fc.string({ maxLength: 255, unit: "binary-ascii" }).filter((s) => Buffer.byteLength(s) <= 255),
      fc.nat(255), host, port, fc.uint8Array({ maxLength: 64 }),
      fc.array(fc.nat(2000), { maxLength: 12 }),
      (methods, user, pass, cmd, h, p, early, cuts) => {
        const u = Buffer.from(user)
        const pw = Buffer.from(pass)
        const bytes = Buffer.concat([
          Buffer.from([5, methods.length, ...methods]),
          Buffer.from([1, u.length]), u, Buffer.from([pw.length]), pw,
          C.encodeRequest(cmd, h, p), early,
        ])
        const parsers = [C.parseGreeting, C.parseUserPass, C.parseRequest]
        const whole = feed(parsers, bytes, [])
        const split = feed(parsers, bytes, cuts)
        expect(whole.out.map((r) => r.k)).toEqual(["ok", "ok", "ok"])
        expect(split.out).toEqual(whole.out)
        expect([...split.rest]).toEqual([...early])
        expect(split.out[1]).toMatchObject({ value: { user, pass } })
      },
    ), { numRuns: 200 })
  })

  it("property: request split at random points parses to the same message and leaves the early data", () => {
    fc.assert(fc.property(fc.nat(255), host, port, fc.uint8Array({ maxLength: 64 }), fc.array(fc.nat(400), { maxLength: 10 }), (cmd, h, p, early, cuts) => {
      const msg = C.encodeRequest(cmd, h, p)
      const whole = C.parseRequest(msg)
      expect(whole.k).toBe("ok")
      const { out, rest } = feed([C.parseRequest, C.parseRequest], Buffer.concat([msg, msg, Buffer.from(early)]), cuts)
      expect(out).toEqual([whole, whole])
      expect([...rest]).toEqual([...early])
      const v = (whole as { value: C.Request }).value
      expect(normalizeIp(v.host) ?? v.host).toBe(normalizeIp(h) ?? h)
      expect([v.cmd, v.port]).toEqual([cmd, p])
    }), { numRuns: 300 })
  })

  it("property: random bytes never throw", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (bytes) => {
      const b = Buffer.from(bytes)
      for (const parse of [C.parseGreeting, C.parseUserPass, C.parseRequest, C.parseUdp]) {
        const r = parse(b)
        expect(["more", "ok", "error"]).toContain(r.k)
        if (r.k === "ok") expect(r.size).toBeLessThanOrEqual(b.length)
      }
    }), { numRuns: 2000 })
  })
})
