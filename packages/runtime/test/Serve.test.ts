import { spawn } from "node:child_process"
import { createHash, randomBytes } from "node:crypto"
import * as net from "node:net"
import { describe, expect, it } from "vitest"
import { dial, localServer, start, tempDir, until, tracker, writeRules } from "./support.ts"

const { defer, track } = tracker()

const rules = (echoPort: number, extra = "") => `
options { handshake-timeout 2s }
listen t = http 127.0.0.1:0 ${extra}
policy default {
  rule closed when dst.port == 1 -> block "port one is closed"
  rule moved when dst.port == 9 -> redirect "127.0.0.1:${echoPort}"
  default allow
}
`

describe("decisions against a real echo server", () => {
  it("allow connects and relays; block never reaches the destination; redirect goes to the rewritten target", async () => {
    const echo = track(await localServer())
    const s = track(await start(writeRules(tempDir(), rules(echo.port))))

    const a = await dial(s.port, `CONNECT 127.0.0.1 ${echo.port}\nping\n`)
    expect(await a.waitText("ping\n")).toBe(true)
    expect(a.text()).toMatch(new RegExp(`^OK 127\\.0\\.0\\.1:${echo.port}\\n`))
    a.socket.end()
    expect(await until(() => a.closed())).toBe(true)

    const b = await dial(s.port, "CONNECT 127.0.0.1 1\n")
    expect(await until(() => b.closed())).toBe(true)
    expect(b.text()).toBe("ERR blocked port one is closed\n")

    const before = echo.accepted()
    const c = await dial(s.port, "CONNECT example.invalid 9\nhello\n")
    expect(await c.waitText("hello\n")).toBe(true)
    expect(c.text()).toContain(`OK 127.0.0.1:${echo.port}`)
    expect(echo.accepted()).toBe(before + 1)
    c.socket.end()
    expect(await until(() => s.connections().length === 3)).toBe(true)

    const [la, lb, lc] = s.connections()
    expect(la).toMatchObject({ listener: "t", protocol: "http", rule: "default", action: "allow", dst: `127.0.0.1:${echo.port}`, dst_connected: `127.0.0.1:${echo.port}`, outcome: "ok", bytes_up: 5, bytes_down: 5 })
    expect(typeof la!["duration_ms"]).toBe("number")
    expect(String(la!["src"])).toMatch(/^127\.0\.0\.1:\d+$/)
    expect(typeof la!["id"]).toBe("string")
    expect(lb).toMatchObject({ rule: "closed", action: "block", outcome: "blocked", dst: "127.0.0.1:1" })
    expect(lc).toMatchObject({ rule: "moved", action: "redirect", dst: "example.invalid:9", dst_connected: `127.0.0.1:${echo.port}` })
  })

  it("maps a refused connection to Refused", async () => {
    const gone = await localServer()
    const port = gone.port
    await gone.close()
    const s = track(await start(writeRules(tempDir(), rules(1))))
    const c = await dial(s.port, `CONNECT 127.0.0.1 ${port}\n`)
    expect(await until(() => c.closed())).toBe(true)
    expect(c.text()).toBe("ERR Refused\n")
    expect(await until(() => s.connections().length === 1)).toBe(true)
    expect(s.connections()[0]).toMatchObject({ outcome: "error", error: "Refused" })
  })
})

describe("connect timeout", () => {
  it("a destination that never answers the SYN fails with Timeout after connect-timeout", async () => {
    // A stopped process whose accept queue is full: the kernel drops further SYNs.
    const child = spawn(process.execPath, ["-e", "const s=require('net').createServer();s.listen({port:0,host:'127.0.0.1',backlog:1},()=>console.log(s.address().port))"], { stdio: ["ignore", "pipe", "ignore"] })
    defer(async () => { child.kill("SIGKILL") })
    const port = await new Promise<number>((r) => child.stdout.once("data", (d: Buffer) => r(Number(String(d)))))
    child.kill("SIGSTOP")
    const fillers = [net.connect({ host: "127.0.0.1", port }), net.connect({ host: "127.0.0.1", port })]
    defer(async () => { for (const f of fillers) f.destroy() })
    for (const f of fillers) f.on("error", () => {})
    await Promise.all(fillers.map((f) => new Promise((r) => { f.once("connect", r); setTimeout(r, 1_000) })))
    const s = track(await start(writeRules(tempDir(), "options { connect-timeout 300ms }\n" + rules(1))))
    const t0 = Date.now()
    const c = await dial(s.port, `CONNECT 127.0.0.1 ${port}\n`)
    expect(await until(() => c.closed(), 5_000)).toBe(true)
    expect(c.text()).toBe("ERR Timeout\n")
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250)
    expect(Date.now() - t0).toBeLessThan(3_000)
    expect(await until(() => s.connections().length === 1)).toBe(true)
    expect(s.connections()[0]).toMatchObject({ outcome: "error", error: "Timeout" })
  })
})

describe("the default policy refuses the local host", () => {
  it("127.0.0.1, ::ffff:127.0.0.1 and localhost are blocked and the destination never sees a connection", async () => {
    const echo = track(await localServer())
    const s = track(await start(new URL("../../../rulesets/default.rules", import.meta.url).pathname, { listen: ["http://127.0.0.1:0"] }))
    for (const host of ["127.0.0.1", "::ffff:127.0.0.1", "localhost"]) {
      const c = await dial(s.port, `CONNECT ${host} ${echo.port}\n`)
      expect(await until(() => c.closed())).toBe(true)
      expect(c.text()).toMatch(/^ERR blocked /)
    }
    expect(echo.accepted()).toBe(0)
    expect(s.connections().map((l) => l["rule"])).toEqual(["loopback", "loopback", "local-names"])
  })

  it("a name that resolves to 127.0.0.1 is resolved, checked by address and blocked", async () => {
    const echo = track(await localServer())
    const s = track(await start(writeRules(tempDir(), `
listen t = http 127.0.0.1:0
policy default {
  guard loopback when dst.ip in [127.0.0.0/8, ::1] -> block "loopback destination"
  default allow
}
`)))
    const c = await dial(s.port, `CONNECT localhost ${echo.port}\n`)
    expect(await until(() => c.closed())).toBe(true)
    expect(c.text()).toBe("ERR blocked loopback destination\n")
    expect(echo.accepted()).toBe(0)
    expect(s.connections()[0]).toMatchObject({ rule: "loopback", dst: `localhost:${echo.port}` })
    expect(["127.0.0.1", "::1"]).toContain(s.connections()[0]!["dst_ip"])
  })

  it("a name resolved for the policy is the address connected to", async () => {
    const echo = track(await localServer())
    const s = track(await start(writeRules(tempDir(), `
listen t = http 127.0.0.1:0
policy default {
  rule local when dst.ip in [127.0.0.1] -> allow
  default block "not local"
}
`)))
    const c = await dial(s.port, `CONNECT localhost ${echo.port}\nx\n`)
    expect(await c.waitText("x\n")).toBe(true)
    c.socket.end()
    expect(await until(() => s.connections().length === 1)).toBe(true)
    expect(s.connections()[0]).toMatchObject({ rule: "local", dst_ip: "127.0.0.1", dst_connected: `127.0.0.1:${echo.port}` })
  })
})

describe("direct connections by name", () => {
  it("a name the policy did not need is resolved when connecting (Happy Eyeballs over the cached addresses)", async () => {
    const echo = track(await localServer())
    const s = track(await start(writeRules(tempDir(), rules(echo.port))))
    const c = await dial(s.port, `CONNECT localhost ${echo.port}\nname\n`)
    expect(await c.waitText("name\n")).toBe(true)
    c.socket.end()
    expect(await until(() => s.connections().length === 1)).toBe(true)
    expect(s.connections()[0]).toMatchObject({ rule: "default", dst: `localhost:${echo.port}`, dst_connected: `127.0.0.1:${echo.port}` })
    expect(s.connections()[0]!["dst_ip"]).toBeUndefined()
  })

  it("when the policy needed the address and the lookup failed, the connection fails without a second lookup", async () => {
    const s = track(await start(writeRules(tempDir(), `
listen t = http 127.0.0.1:0
policy default {
  guard private when dst.ip in [10.0.0.0/8] -> block "private"
  default allow
}
`)))
    const c = await dial(s.port, "CONNECT no-such-name.invalid 80\n")
    expect(await until(() => c.closed())).toBe(true)
    expect(c.text()).toBe("ERR DnsFailed\n")
    expect(await until(() => s.connections().length === 1)).toBe(true)
    expect(s.connections()[0]).toMatchObject({ rule: "default", outcome: "error", error: "DnsFailed: no-such-name.invalid" })
    expect(s.connections()[0]!["dst_ip"]).toBeUndefined()
  })

  it("a redirect to a .onion name is never resolved", async () => {
    const s = track(await start(writeRules(tempDir(), `
listen t = http 127.0.0.1:0
policy default {
  rule hidden when dst.port == 9 -> redirect "abcdefgh.onion:80"
  default allow
}
`)))
    const c = await dial(s.port, "CONNECT example.invalid 9\n")
    expect(await until(() => c.closed())).toBe(true)
    expect(c.text()).toBe("ERR DnsFailed\n")
  })
})

describe("relay", () => {
  it("moves 8 MiB through and back byte-exact (hash)", async () => {
    const echo = track(await localServer())
    const s = track(await start(writeRules(tempDir(), rules(echo.port))))
    const payload = randomBytes(8 * 1024 * 1024)
    const c = await dial(s.port, `CONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await c.waitText("OK ")).toBe(true)
    const headerLen = c.data().indexOf(10) + 1
    c.socket.end(payload)
    expect(await until(() => c.closed(), 30_000)).toBe(true)
    const back = c.data().subarray(headerLen)
    expect(back.length).toBe(payload.length)
    expect(createHash("sha256").update(back).digest("hex")).toBe(createHash("sha256").update(payload).digest("hex"))
    expect(await until(() => s.connections().length === 1)).toBe(true)
    expect(s.connections()[0]).toMatchObject({ bytes_up: payload.length, bytes_down: payload.length, outcome: "ok" })
  })

  it("half-close: the client ends its side and still receives the server's late reply", async () => {
    const server = track(await localServer((sock) => {
      const got: Array<Buffer> = []
      sock.on("data", (d: Buffer) => got.push(d))
      sock.on("end", () => setTimeout(() => sock.end(`got ${Buffer.concat(got).toString()}`), 100))
    }))
    const s = track(await start(writeRules(tempDir(), rules(1))))
    const c = await dial(s.port, `CONNECT 127.0.0.1 ${server.port}\n`, true)
    expect(await c.waitText("OK ")).toBe(true)
    c.socket.end("request-body")
    expect(await c.waitText("got request-body")).toBe(true)
    expect(await until(() => c.closed())).toBe(true)
    expect(c.ended()).toBe(true)
  })

  it("an idle relay is closed after the idle timeout", async () => {
    const echo = track(await localServer())
    const s = track(await start(writeRules(tempDir(), rules(echo.port, "idle-timeout 300ms"))))
    const c = await dial(s.port, `CONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await c.waitText("OK ")).toBe(true)
    const t0 = Date.now()
    expect(await until(() => c.closed(), 3_000)).toBe(true)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(250)
    expect(await until(() => s.connections().length === 1)).toBe(true)
    expect(s.connections()[0]).toMatchObject({ outcome: "idle-timeout" })
  })

  it("a rule's idle modifier overrides the listener's idle timeout; its tags reach the log line", async () => {
    const echo = track(await localServer())
    const s = track(await start(writeRules(tempDir(), `
listen t = http 127.0.0.1:0 idle-timeout 1h
policy default {
  rule quick when dst.port == ${echo.port} -> allow idle 300ms tag "short"
  default allow
}
`)))
    const c = await dial(s.port, `CONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await c.waitText("OK ")).toBe(true)
    expect(await until(() => c.closed(), 3_000)).toBe(true)
    expect(await until(() => s.connections().length === 1)).toBe(true)
    expect(s.connections()[0]).toMatchObject({ rule: "quick", outcome: "idle-timeout", tags: ["short"] })
  })

  it("a client that never finishes its handshake is closed after the handshake timeout", async () => {
    const s = track(await start(writeRules(tempDir(), rules(1, "handshake-timeout 200ms"))))
    const c = await dial(s.port, "CONNECT 127.0.0.1")
    expect(await until(() => c.closed(), 3_000)).toBe(true)
    expect(await until(() => s.connections().length === 1)).toBe(true)
    expect(s.connections()[0]).toMatchObject({ outcome: "handshake-timeout" })
  })
})
