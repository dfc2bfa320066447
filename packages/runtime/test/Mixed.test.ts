import { describe, expect, it } from "vitest"
import { dial, localServer, sleep, start, tempDir, until, tracker, writeRules } from "./support.ts"

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
})
