/**
 * PROXY protocol listeners through the real runtime (test line protocol): trusted and untrusted
 * peers, malformed and slow headers, policy and per-IP limits on the carried address.
 */
import { describe, expect, it } from "vitest"
import { V2_SIGNATURE } from "../src/ProxyProtocol.ts"
import { dial, localServer, sleep, start, tempDir, until, tracker, writeRules } from "./support.ts"

const { track } = tracker()

const rules = (from: string, extra = "") => `
listen t = http 127.0.0.1:0 { proxy-protocol from [${from}] ${extra} }
policy default {
  rule carried when src.ip in [203.0.113.0/24] -> block "carried"
  default allow
}
`

/** A v2 PROXY header for TCP over IPv4 with one TLV. */
const v2 = (src: string, sport: number): Buffer => {
  const body = Buffer.alloc(12 + 5)
  Buffer.from(src.split(".").map(Number)).copy(body, 0)
  Buffer.from([127, 0, 0, 1]).copy(body, 4)
  body.writeUInt16BE(sport, 8)
  body.writeUInt16BE(1080, 10)
  Buffer.from([0x01, 0x00, 0x02, 0x68, 0x32]).copy(body, 12) // ALPN "h2"
  const head = Buffer.from([0x21, 0x11, 0, 0])
  head.writeUInt16BE(body.length, 2)
  return Buffer.concat([V2_SIGNATURE, head, body])
}

describe("PROXY protocol listeners", () => {
  it("a trusted peer's v1 header sets src for the log and the policy; `proxy` names the real peer", async () => {
    const echo = track(await localServer())
    const s = track(await start(writeRules(tempDir(), rules("127.0.0.0/8"))))
    const a = await dial(s.port, `PROXY TCP4 198.51.100.7 127.0.0.1 4242 1080\r\nCONNECT 127.0.0.1 ${echo.port}\nhi\n`)
    expect(await a.waitText("hi\n")).toBe(true)
    a.socket.end()
    const b = await dial(s.port, `PROXY TCP4 203.0.113.9 127.0.0.1 4343 1080\r\nCONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await b.waitText("ERR blocked carried")).toBe(true)
    expect(await until(() => s.connections().length === 2)).toBe(true)
    const la = s.connections().find((l) => l["src"] === "198.51.100.7:4242")
    const lb = s.connections().find((l) => l["src"] === "203.0.113.9:4343")
    expect(la).toMatchObject({ outcome: "ok", protocol: "http" })
    expect(String(la!["proxy"])).toMatch(/^127\.0\.0\.1:\d+$/)
    expect(lb).toMatchObject({ rule: "carried", action: "block" })
  })

  it("a v2 header sent in pieces, with TLVs, followed at once by the request", async () => {
    const echo = track(await localServer())
    const s = track(await start(writeRules(tempDir(), rules("127.0.0.1"))))
    const h = v2("198.51.100.8", 5000)
    const c = await dial(s.port)
    c.socket.write(h.subarray(0, 5))
    await sleep(20)
    c.socket.write(h.subarray(5, 14))
    await sleep(20)
    c.socket.write(Buffer.concat([h.subarray(14), Buffer.from(`CONNECT 127.0.0.1 ${echo.port}\nv2\n`)]))
    expect(await c.waitText("v2\n")).toBe(true)
    c.socket.end()
    expect(await until(() => s.connections().some((l) => l["src"] === "198.51.100.8:5000" && l["outcome"] === "ok"))).toBe(true)
  })

  it("an untrusted peer is closed without reading its header; the handler never runs", async () => {
    const echo = track(await localServer())
    const s = track(await start(writeRules(tempDir(), rules("10.0.0.0/8"))))
    const c = await dial(s.port, `PROXY TCP4 198.51.100.7 127.0.0.1 4242 1080\r\nCONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await until(() => c.closed())).toBe(true)
    expect(c.text()).toBe("")
    expect(echo.accepted()).toBe(0)
    const lines = s.connections()
    expect(lines).toHaveLength(1)
    expect(lines[0]).toMatchObject({ listener: "t", outcome: "proxy-untrusted" })
    expect(String(lines[0]!["src"])).toMatch(/^127\.0\.0\.1:\d+$/)
    expect(lines[0]!["protocol"]).toBeUndefined()
  })

  it("a malformed header, a missing header and a slow header close the connection (logged)", async () => {
    const echo = track(await localServer())
    const s = track(await start(writeRules(tempDir(), rules("127.0.0.1", "handshake-timeout 300ms"))))
    const plain = await dial(s.port, `CONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await until(() => plain.closed())).toBe(true)
    const bad = await dial(s.port, "PROXY TCP4 198.51.100.7 127.0.0.1 99999 1080\r\nCONNECT x 1\n")
    expect(await until(() => bad.closed())).toBe(true)
    const slow = await dial(s.port, "PROXY TCP4 198.51")
    const t0 = Date.now()
    expect(await until(() => slow.closed(), 3_000)).toBe(true)
    expect(Date.now() - t0).toBeLessThan(2_000)
    for (const c of [plain, bad, slow]) expect(c.text()).toBe("")
    expect(echo.accepted()).toBe(0)
    expect(await until(() => s.connections().length === 3)).toBe(true)
    const errors = s.connections().map((l) => [l["outcome"], l["error"]])
    expect(errors).toEqual(expect.arrayContaining([
      ["proxy-protocol-error", "not a PROXY protocol header"],
      ["proxy-protocol-error", "malformed PROXY v1 header (bad port)"],
      ["proxy-protocol-error", "PROXY header not received in time"],
    ]))
  })

  it("per-IP limits count the carried address, not the proxy's", async () => {
    const echo = track(await localServer())
    const s = track(await start(writeRules(tempDir(), rules("127.0.0.1", "max-connections-per-ip 1"))))
    const a = await dial(s.port, `PROXY TCP4 198.51.100.1 127.0.0.1 1001 1080\r\nCONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await a.waitText("OK ")).toBe(true)
    const b = await dial(s.port, `PROXY TCP4 198.51.100.1 127.0.0.1 1002 1080\r\nCONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await until(() => b.closed())).toBe(true)
    expect(b.text()).toBe("ERR limit http\n")
    const c = await dial(s.port, `PROXY TCP4 198.51.100.2 127.0.0.1 1003 1080\r\nCONNECT 127.0.0.1 ${echo.port}\nthird\n`)
    expect(await c.waitText("third\n")).toBe(true)
    expect(s.connections().find((l) => l["outcome"] === "rejected")).toMatchObject({ src: "198.51.100.1:1002", error: "connection limit reached" })
    a.socket.end(); c.socket.end()
  })

  it("a v2 LOCAL header (health check) keeps the real peer address", async () => {
    const echo = track(await localServer())
    const s = track(await start(writeRules(tempDir(), rules("127.0.0.1"))))
    const local = Buffer.concat([V2_SIGNATURE, Buffer.from([0x20, 0x00, 0x00, 0x00])])
    const c = await dial(s.port)
    c.socket.write(Buffer.concat([local, Buffer.from(`CONNECT 127.0.0.1 ${echo.port}\nlocal\n`)]))
    expect(await c.waitText("local\n")).toBe(true)
    c.socket.end()
    expect(await until(() => s.connections().length === 1)).toBe(true)
    const l = s.connections()[0]!
    expect(String(l["src"])).toMatch(/^127\.0\.0\.1:\d+$/)
    expect(l["proxy"]).toBeUndefined()
  })
})
