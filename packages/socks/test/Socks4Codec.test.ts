import { describe, expect, it } from "vitest"
import fc from "fast-check"
import * as C from "../src/Socks4Codec.ts"
import { bytesToIpv6, ipv6ToBytes, normalizeIp } from "../src/Addr.ts"
import { feed } from "./Feed.ts"

describe("Socks4Codec", () => {
  it("parses SOCKS4 and SOCKS4a requests", () => {
    expect(C.parseRequest(C.encodeRequest(1, "10.0.0.1", 80, "bob"))).toEqual({
      k: "ok", value: { cmd: 1, port: 80, host: "10.0.0.1", socks4a: false, userId: "bob" }, size: 12,
    })
    expect(C.parseRequest(C.encodeRequest(2, "example.com", 21))).toMatchObject({
      k: "ok", value: { cmd: 2, port: 21, host: "example.com", socks4a: true, userId: "" },
    })
    expect(C.parseRequest(Buffer.from([4, 1, 0, 80, 1, 2, 3, 4]))).toEqual({ k: "more" })
    expect(C.parseRequest(Buffer.from([5, 1, 0]))).toMatchObject({ k: "error", code: "version" })
  })

  it("bounds USERID and hostname to 255 bytes and rejects bad names", () => {
    const head = Buffer.from([4, 1, 0, 80, 0, 0, 0, 1])
    expect(C.parseRequest(Buffer.concat([head, Buffer.alloc(255, 0x61), Buffer.from([0, 0x61, 0])])).k).toBe("ok")
    expect(C.parseRequest(Buffer.concat([head, Buffer.alloc(256, 0x61)]))).toMatchObject({ k: "error", code: "userid" })
    expect(C.parseRequest(Buffer.concat([head, Buffer.from([0]), Buffer.alloc(256, 0x61)]))).toMatchObject({ k: "error", code: "name" })
    expect(C.parseRequest(Buffer.concat([head, Buffer.from([0]), Buffer.alloc(255, 0x61)]))).toEqual({ k: "more" })
    expect(C.parseRequest(Buffer.concat([head, Buffer.from([0, 0])]))).toMatchObject({ k: "error", code: "name" })
    expect(C.parseRequest(Buffer.concat([head, Buffer.from([0, 0x61, 0x0a, 0x62, 0])]))).toMatchObject({ k: "error", code: "name" })
  })

  it("encodes replies with VN 0", () => {
    expect([...C.encodeReply(90, "127.0.0.1", 1080)]).toEqual([0, 90, 4, 56, 127, 0, 0, 1])
    expect([...C.encodeReply(91)]).toEqual([0, 91, 0, 0, 0, 0, 0, 0])
    expect([...C.encodeReply(90, "::1", 1)]).toEqual([0, 90, 0, 1, 0, 0, 0, 0])
  })

  it("property: random splits parse identically and keep the early data", () => {
    const host = fc.oneof(fc.ipV4(), fc.domain().filter((d) => d.length <= 255))
    fc.assert(fc.property(fc.nat(255), host, fc.integer({ min: 0, max: 65535 }),
      fc.string({ maxLength: 255, unit: fc.integer({ min: 1, max: 255 }).map((c) => String.fromCharCode(c)) }),
      fc.uint8Array({ maxLength: 32 }), fc.array(fc.nat(700), { maxLength: 10 }),
      (cmd, h, p, user, early, cuts) => {
        const msg = C.encodeRequest(cmd, h, p, user)
        const bytes = Buffer.concat([msg, msg, early])
        const whole = feed([C.parseRequest, C.parseRequest], bytes, [])
        expect(whole.out[0]).toMatchObject({ k: "ok", value: { cmd, port: p, host: h, userId: user } })
        const split = feed([C.parseRequest, C.parseRequest], bytes, cuts)
        expect(split.out).toEqual(whole.out)
        expect([...split.rest]).toEqual([...early])
      }), { numRuns: 300 })
  })

  it("property: random bytes never throw", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 700 }), (bytes) => {
      const r = C.parseRequest(Buffer.from(bytes))
      expect(["more", "ok", "error"]).toContain(r.k)
    }), { numRuns: 2000 })
  })
})

describe("Addr", () => {
  it("normalises IPv6 and mapped addresses", () => {
    expect(normalizeIp("::ffff:127.0.0.1")).toBe("127.0.0.1")
    expect(bytesToIpv6(ipv6ToBytes("::ffff:127.0.0.1"))).toBe("::ffff:127.0.0.1")
    expect(bytesToIpv6(ipv6ToBytes("::ffff:7f00:1"))).toBe("::ffff:127.0.0.1")
    expect(bytesToIpv6(ipv6ToBytes("::7f00:1"))).toBe("::7f00:1")
    expect(bytesToIpv6(ipv6ToBytes("1::ffff:7f00:1"))).toBe("1::ffff:7f00:1")
    expect(normalizeIp("[2001:DB8:0:0:0:0:0:1]")).toBe("2001:db8::1")
    expect(normalizeIp("fe80::1%eth0")).toBe("fe80::1")
    expect(normalizeIp("1:0:0:1:0:0:0:1")).toBe("1:0:0:1::1")
    expect(normalizeIp("::")).toBe("::")
    expect(normalizeIp("example.com")).toBeUndefined()
  })

  it("property: IPv6 bytes round-trip", () => {
    fc.assert(fc.property(fc.uint8Array({ minLength: 16, maxLength: 16 }), (b) => {
      expect([...ipv6ToBytes(bytesToIpv6(b))]).toEqual([...b])
    }), { numRuns: 1000 })
    fc.assert(fc.property(fc.ipV6(), (s) => {
      expect(bytesToIpv6(ipv6ToBytes(s))).toBe(normalizeIp(bytesToIpv6(ipv6ToBytes(s))))
    }), { numRuns: 500 })
  })
})
