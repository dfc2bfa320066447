import * as net from "node:net"
import { Effect } from "effect"
import fc from "fast-check"
import { describe, expect, it } from "vitest"
import { Ip } from "@proxyd/rules"
import { MAX_V1, MAX_V2, parseHeader, readHeader, trusted, V2_SIGNATURE } from "../src/ProxyProtocol.ts"

/** A v2 header: PROXY (or LOCAL) over TCP4/TCP6 with optional TLV bytes after the addresses. */
const v2 = (o: { cmd?: number; fam?: number; src: string; dst: string; sport: number; dport: number; tlvs?: Buffer; ver?: number }): Buffer => {
  const six = o.src.includes(":")
  const addr = (ip: string) => (six ? v6Bytes(ip) : Buffer.from(ip.split(".").map(Number)))
  const ports = Buffer.alloc(4)
  ports.writeUInt16BE(o.sport, 0)
  ports.writeUInt16BE(o.dport, 2)
  const body = Buffer.concat([addr(o.src), addr(o.dst), ports, o.tlvs ?? Buffer.alloc(0)])
  const head = Buffer.alloc(4)
  head[0] = ((o.ver ?? 2) << 4) | (o.cmd ?? 1)
  head[1] = o.fam ?? (six ? 0x21 : 0x11)
  head.writeUInt16BE(body.length, 2)
  return Buffer.concat([V2_SIGNATURE, head, body])
}

const v6Bytes = (ip: string): Buffer => {
  const v = Ip.parseIp(ip)!.value
  const b = Buffer.alloc(16)
  for (let i = 0; i < 16; i++) b[i] = Number((v >> BigInt(8 * (15 - i))) & 0xffn)
  return b
}

const tlv = (type: number, value: Buffer): Buffer => {
  const h = Buffer.alloc(3)
  h[0] = type
  h.writeUInt16BE(value.length, 1)
  return Buffer.concat([h, value])
}

describe("PROXY protocol v1", () => {
  it("parses TCP4, TCP6 and UNKNOWN, with the header length", () => {
    const l = "PROXY TCP4 203.0.113.7 192.0.2.1 4242 1080\r\n"
    expect(parseHeader(Buffer.from(l + "GET /"))).toEqual({ k: "ok", length: l.length, version: 1, src: { ip: "203.0.113.7", port: 4242 } })
    expect(parseHeader(Buffer.from("PROXY TCP6 2001:db8::7 2001:db8::1 65535 443\r\n"))).toMatchObject({ k: "ok", src: { ip: "2001:db8::7", port: 65535 } })
    expect(parseHeader(Buffer.from("PROXY UNKNOWN\r\n"))).toEqual({ k: "ok", length: 15, version: 1, src: undefined })
    expect(parseHeader(Buffer.from("PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n"))).toMatchObject({ k: "ok", src: undefined })
  })

  it("asks for more at every split point of a valid header, then parses it", () => {
    const l = Buffer.from("PROXY TCP4 10.1.2.3 10.9.9.9 51000 8080\r\n")
    for (let i = 0; i < l.length; i++) expect(parseHeader(l.subarray(0, i))).toEqual({ k: "need" })
    expect(parseHeader(l)).toMatchObject({ k: "ok", src: { ip: "10.1.2.3", port: 51000 } })
  })

  it("refuses malformed headers", () => {
    const bad = [
      "PROXY TCP4 203.0.113.7 192.0.2.1 4242\r\n", // missing field
      "PROXY TCP4 203.0.113.7 192.0.2.1 4242 1080 x\r\n",
      "PROXY TCP5 203.0.113.7 192.0.2.1 4242 1080\r\n",
      "PROXY TCP4 2001:db8::1 192.0.2.1 4242 1080\r\n", // family mismatch
      "PROXY TCP6 203.0.113.7 2001:db8::1 4242 1080\r\n",
      "PROXY TCP4 203.0.113.256 192.0.2.1 4242 1080\r\n",
      "PROXY TCP4 203.0.113.7 192.0.2.1 65536 1080\r\n",
      "PROXY TCP4 203.0.113.7 192.0.2.1 0042 1080\r\n",
      "PROXY TCP4 203.0.113.7 192.0.2.1 -1 1080\r\n",
      "PROXY  TCP4 203.0.113.7 192.0.2.1 1 1080\r\n",
      "PROXY TCP4 203.0.113.7 192.0.2.1 1 1080\n\r\n",
      "GET / HTTP/1.1\r\n",
      "\x05\x01\x00",
      "PROXz",
      "\r\n\r\n\x00\r\nQUIX\n",
    ]
    for (const b of bad) expect(parseHeader(Buffer.from(b, "latin1")), JSON.stringify(b)).toMatchObject({ k: "error" })
  })

  it("bounds the line at 107 bytes", () => {
    const pad = "PROXY UNKNOWN " + "x".repeat(MAX_V1 - 16) // exactly 107 with CRLF
    expect(parseHeader(Buffer.from(pad + "\r\n"))).toMatchObject({ k: "ok", length: MAX_V1 })
    expect(parseHeader(Buffer.from(pad + "x\r\n"))).toMatchObject({ k: "error" })
    // No CRLF within the bound: refused without waiting for more.
    expect(parseHeader(Buffer.from("PROXY TCP4 " + "1".repeat(200)))).toMatchObject({ k: "error" })
    expect(parseHeader(Buffer.from("PROXY TCP4 " + "1".repeat(MAX_V1 - 11)))).toMatchObject({ k: "error" })
    expect(parseHeader(Buffer.from("PROXY TCP4 " + "1".repeat(MAX_V1 - 12)))).toEqual({ k: "need" })
  })
})

describe("PROXY protocol v2", () => {
  it("parses TCP over IPv4 and IPv6, skipping TLVs", () => {
    const h4 = v2({ src: "198.51.100.9", dst: "192.0.2.1", sport: 40000, dport: 1080, tlvs: Buffer.concat([tlv(0x04, Buffer.alloc(0)), tlv(0xea, Buffer.from("vpce-123"))]) })
    expect(parseHeader(Buffer.concat([h4, Buffer.from("\x05\x01\x00")]))).toEqual({ k: "ok", length: h4.length, version: 2, src: { ip: "198.51.100.9", port: 40000 } })
    const h6 = v2({ src: "2001:db8::7", dst: "2001:db8::1", sport: 1, dport: 2 })
    expect(parseHeader(h6)).toEqual({ k: "ok", length: 16 + 36, version: 2, src: { ip: "2001:db8::7", port: 1 } })
  })

  it("LOCAL and UNSPEC use the real peer (no carried address)", () => {
    const local = v2({ cmd: 0, src: "198.51.100.9", dst: "192.0.2.1", sport: 1, dport: 2 })
    expect(parseHeader(local)).toMatchObject({ k: "ok", src: undefined, length: local.length })
    const localEmpty = Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])])
    expect(parseHeader(localEmpty)).toEqual({ k: "ok", length: 16, version: 2, src: undefined })
    expect(parseHeader(Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x00, 0x00, 0x00])]))).toMatchObject({ k: "ok", src: undefined })
  })

  it("asks for more at every split point, then parses", () => {
    const h = v2({ src: "203.0.113.1", dst: "192.0.2.1", sport: 5, dport: 6, tlvs: tlv(0x01, Buffer.from("h2")) })
    for (let i = 0; i < h.length; i++) expect(parseHeader(h.subarray(0, i))).toEqual({ k: "need" })
    expect(parseHeader(h)).toMatchObject({ k: "ok", src: { ip: "203.0.113.1", port: 5 } })
  })

  it("refuses bad versions, commands, families, short address blocks and oversized headers", () => {
    const ok = v2({ src: "203.0.113.1", dst: "192.0.2.1", sport: 5, dport: 6 })
    const patched = (i: number, v: number) => { const b = Buffer.from(ok); b[i] = v; return b }
    expect(parseHeader(patched(12, 0x11))).toMatchObject({ k: "error" }) // version 1 in a v2 header
    expect(parseHeader(patched(12, 0x22))).toMatchObject({ k: "error" }) // command 2
    expect(parseHeader(patched(13, 0x12))).toMatchObject({ k: "error" }) // UDP over IPv4
    expect(parseHeader(patched(13, 0x21))).toMatchObject({ k: "error" }) // IPv6 with a 12-byte block
    const short = Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11, 0x00, 0x04, 1, 2, 3, 4])])
    expect(parseHeader(short)).toMatchObject({ k: "error" })
    // The length alone decides: refused as soon as the fixed part is in, without waiting for the body.
    const huge = Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11]), Buffer.from([(MAX_V2 - 15) >> 8, (MAX_V2 - 15) & 0xff])])
    expect(parseHeader(huge)).toMatchObject({ k: "error" })
    const max = Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11]), Buffer.from([(MAX_V2 - 16) >> 8, (MAX_V2 - 16) & 0xff])])
    expect(parseHeader(max)).toEqual({ k: "need" })
  })

  it("random bytes never throw, and a 'need' is always a prefix of a signature", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 300 }), (bytes) => {
      const b = Buffer.from(bytes)
      const r = parseHeader(b)
      if (r.k === "ok") expect(r.length).toBeLessThanOrEqual(b.length)
      if (r.k === "need") expect(b.length === 0 || b[0] === 0x0d || b[0] === 0x50).toBe(true)
    }), { numRuns: 2000 })
  })
})

describe("trusted peers", () => {
  it("matches CIDRs, IPv4-mapped IPv6 as IPv4", () => {
    const cidrs = ["127.0.0.1/32", "10.0.0.0/8", "2001:db8::/32"].map((c) => {
      const r = Ip.parseCidr(c)
      if (!r.ok) throw new Error(c)
      return r.cidr
    })
    expect(trusted(cidrs, "127.0.0.1")).toBe(true)
    expect(trusted(cidrs, "::ffff:10.20.30.40")).toBe(true)
    expect(trusted(cidrs, "2001:db8::5")).toBe(true)
    expect(trusted(cidrs, "127.0.0.2")).toBe(false)
    expect(trusted(cidrs, "2001:db9::5")).toBe(false)
    expect(trusted(cidrs, "")).toBe(false)
  })
})

describe("readHeader on a socket", () => {
  const pair = async (): Promise<{ client: net.Socket; server: net.Socket; close: () => void }> => {
    const srv = net.createServer({ pauseOnConnect: true })
    await new Promise<void>((r) => srv.listen(0, "127.0.0.1", r))
    const accepted = new Promise<net.Socket>((r) => srv.once("connection", r))
    const client = net.connect((srv.address() as net.AddressInfo).port, "127.0.0.1")
    const server = await accepted
    return { client, server, close: () => { client.destroy(); server.destroy(); srv.close() } }
  }

  it("reads a header sent byte by byte and leaves what follows in the socket", async () => {
    const { client, server, close } = await pair()
    const h = Buffer.concat([v2({ src: "203.0.113.9", dst: "192.0.2.1", sport: 7, dport: 8, tlvs: tlv(0x02, Buffer.from("x")) }), Buffer.from("after")])
    const feeding = (async () => {
      for (const b of h) { client.write(Buffer.from([b])); await new Promise((r) => setTimeout(r, 1)) }
    })()
    const r = await Effect.runPromise(readHeader(server))
    await feeding
    expect(r).toEqual({ k: "ok", version: 2, src: { ip: "203.0.113.9", port: 7 } })
    const rest = await new Promise<string>((resolve) => {
      let s = ""
      server.on("data", (c: Buffer) => { s += c.toString(); if (s.length >= 5) resolve(s) })
    })
    expect(rest).toBe("after")
    close()
  })

  it("a header and payload in one segment: the payload stays", async () => {
    const { client, server, close } = await pair()
    client.write("PROXY TCP4 198.51.100.1 192.0.2.1 1 2\r\nHELLO\n")
    const r = await Effect.runPromise(readHeader(server))
    expect(r).toMatchObject({ k: "ok", version: 1, src: { ip: "198.51.100.1" } })
    const rest = await new Promise<string>((resolve) => server.on("data", (c: Buffer) => resolve(c.toString())))
    expect(rest).toBe("HELLO\n")
    close()
  })

  it("garbage, and a close mid-header, are errors", async () => {
    const a = await pair()
    a.client.write("GET / HTTP/1.1\r\n\r\n")
    expect(await Effect.runPromise(readHeader(a.server))).toMatchObject({ k: "error", message: "not a PROXY protocol header" })
    a.close()
    const b = await pair()
    b.client.end("PROXY TCP4 1.2.3.4")
    expect(await Effect.runPromise(readHeader(b.server))).toMatchObject({ k: "error", message: "connection closed before a complete PROXY header" })
    b.close()
  })
})
