import { describe, expect, it } from "vitest"
import { Effect } from "effect"
import type { InboundHandler, ProtocolName } from "../src/Inbound.ts"
import * as Wire from "../src/Wire.ts"
import { allHandlers, dial, localServer, sleep, start, tempDir, until, tracker, writeRules } from "./support.ts"

const { track } = tracker()

const mixed = "listen m = mixed 127.0.0.1:0\npolicy default { default allow }\n"

describe("mixed listener", () => {
  it("dispatches by the first byte and the handler still reads that byte", async () => {
    const s = track(await start(writeRules(tempDir(), mixed)))
    const cases: Array<[string, string]> = [["\x05HELLO\n", "socks5"], ["\x04HELLO\n", "socks4"], ["HELLO\n", "http"], ["GET HELLO\n", "http"]]
    for (const [send, protocol] of cases) {
      const c = await dial(s.port, send)
      expect(await until(() => c.closed())).toBe(true)
      expect(c.text()).toBe(`HELLO ${protocol} ${JSON.stringify(send.slice(0, -1))}\n`)
    }
    expect(s.connections().map((l) => l["protocol"])).toEqual(["socks5", "socks4", "http", "http"])
  })

  it("decides on one byte: the rest may arrive later, and pipe works after the peek", async () => {
    const echo = track(await localServer())
    const s = track(await start(writeRules(tempDir(), mixed)))
    const c = await dial(s.port, "\x05")
    await sleep(100)
    c.socket.write(`CONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await c.waitText("OK ")).toBe(true)
    c.socket.write("through the relay\n")
    expect(await c.waitText("through the relay\n")).toBe(true)
    c.socket.end()
    expect(await until(() => s.connections().length === 1)).toBe(true)
    expect(s.connections()[0]).toMatchObject({ protocol: "socks5", outcome: "ok", bytes_up: 18, bytes_down: 18 })
  })

  it("over the limit, a mixed listener sniffs the first byte to send that protocol's failure reply", async () => {
    const echo = track(await localServer())
    const s = track(await start(writeRules(tempDir(), "listen m = mixed 127.0.0.1:0 max-connections 1\npolicy default { default allow }\n")))
    const held = await dial(s.port, `CONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await held.waitText("OK ")).toBe(true)
    for (const [first, protocol] of [["\x05", "socks5"], ["\x04", "socks4"], ["G", "http"]] as const) {
      const c = await dial(s.port, first)
      expect(await until(() => c.closed())).toBe(true)
      expect(c.text()).toBe(`ERR limit ${protocol}\n`)
    }
    held.socket.write("held\n")
    expect(await held.waitText("held\n")).toBe(true)
    held.socket.end()
  })

  it("a client that connects and sends nothing is closed by the handshake timeout", async () => {
    const s = track(await start(writeRules(tempDir(), "options { handshake-timeout 200ms }\n" + mixed)))
    const c = await dial(s.port)
    expect(await until(() => c.closed(), 3_000)).toBe(true)
    expect(await until(() => s.connections().length === 1)).toBe(true)
    expect(s.connections()[0]).toMatchObject({ outcome: "handshake-timeout" })
  })

  // A handler that `takesFirstBytes`: the sniffed bytes reach it through `ctx.firstBytes()`,
  // not through the socket (where they no longer are), and none is lost or doubled.
  const line = (b: Buffer): Wire.Parse<string> => {
    const i = b.indexOf(10)
    return i < 0 ? Wire.more : Wire.ok(b.toString("latin1", 0, i), i + 1)
  }
  const handed: Array<number> = []
  const firstBytesHandler = (protocol: ProtocolName): InboundHandler => ({
    protocol,
    takesFirstBytes: true,
    handle: (client, ctx) => Effect.gen(function*() {
      const reader = new Wire.ByteReader()
      const first = ctx.firstBytes!()
      handed.push(first.length)
      reader.push(first)
      const r = yield* Wire.readMessage(client, reader, line)
      if (r.k !== "ok") return
      const m = /^\x05CONNECT (\S+) (\d+)$/.exec(r.value)
      if (m === null) { client.end(`HELLO ${protocol} ${JSON.stringify(r.value)}\n`); return }
      const d = yield* ctx.decide({ command: "connect", dstHost: m[1]!, dstPort: Number(m[2]), protocol })
      const up = yield* Effect.orDie(ctx.connect(d))
      client.write("OK\n")
      const early = reader.rest()
      if (early.length > 0) up.socket.write(early)
      yield* ctx.relay(client, up.socket)
    }),
  })

  it("a handler that takes the first bytes gets them from the context: whole, split, and with early data", async () => {
    const echo = track(await localServer())
    const s = track(await start(writeRules(tempDir(), mixed), { handlers: { ...allHandlers, socks5: firstBytesHandler("socks5") } }))
    const whole = await dial(s.port, "\x05HELLO there\n")
    expect(await until(() => whole.closed())).toBe(true)
    expect(whole.text()).toBe(`HELLO socks5 ${JSON.stringify("\x05HELLO there")}\n`)

    const split = await dial(s.port, "\x05")
    await sleep(50)
    split.socket.write("HEL")
    await sleep(50)
    split.socket.write("LO\n")
    expect(await until(() => split.closed())).toBe(true)
    expect(split.text()).toBe(`HELLO socks5 ${JSON.stringify("\x05HELLO")}\n`)

    const early = await dial(s.port, `\x05CONNECT 127.0.0.1 ${echo.port}\nearly bytes\n`)
    expect(await early.waitText("OK\nearly bytes\n")).toBe(true)
    early.socket.end()
    // The other protocols on the same port still get their bytes back through the socket.
    const http = await dial(s.port, "HELLO\n")
    expect(await until(() => http.closed())).toBe(true)
    expect(http.text()).toBe(`HELLO http ${JSON.stringify("HELLO")}\n`)
    // Every socks5 connection got its sniffed bytes handed over (at least the first byte), not put back.
    expect(handed.length).toBe(3)
    for (const n of handed) expect(n).toBeGreaterThan(0)
  })
})
