import { createHash, randomBytes } from "node:crypto"
import { renameSync, writeFileSync } from "node:fs"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { dial, localServer, sleep, start, tempDir, until, tracker, writeRules } from "./support.ts"

const { track } = tracker()

const open = (port: number, extra: string, options = "") => `
${options}
listen t = http 127.0.0.1:0 ${extra}
policy default {
  rule p9 when dst.port == 9 -> block "nine"
  default allow
}
`

describe("limits", () => {
  it("beyond max-connections new clients get the protocol's failure reply; existing ones are untouched", async () => {
    const echo = track(await localServer())
    const s = track(await start(writeRules(tempDir(), open(echo.port, "max-connections 2"))))
    const a = await dial(s.port, `CONNECT 127.0.0.1 ${echo.port}\n`)
    const b = await dial(s.port, `CONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await a.waitText("OK ")).toBe(true)
    expect(await b.waitText("OK ")).toBe(true)
    const c = await dial(s.port)
    expect(await until(() => c.closed())).toBe(true)
    expect(c.text()).toBe("ERR limit http\n")
    a.socket.write("still-a\n")
    b.socket.write("still-b\n")
    expect(await a.waitText("still-a\n")).toBe(true)
    expect(await b.waitText("still-b\n")).toBe(true)
    expect(s.connections().find((l) => l["outcome"] === "rejected")).toMatchObject({ listener: "t", error: "connection limit reached" })
    // A slot frees when a connection ends.
    a.socket.end()
    expect(await until(() => a.closed())).toBe(true)
    expect(await until(() => s.handle.addresses().length === 1 && s.connections().some((l) => l["outcome"] === "ok"))).toBe(true)
    const d = await dial(s.port, `CONNECT 127.0.0.1 ${echo.port}\nd\n`)
    expect(await d.waitText("d\n")).toBe(true)
    b.socket.end(); d.socket.end()
  })

  it("max-connections-per-ip (options) limits one source address", async () => {
    const echo = track(await localServer())
    const s = track(await start(writeRules(tempDir(), open(echo.port, "", "options { max-connections-per-ip 1 }"))))
    const a = await dial(s.port, `CONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await a.waitText("OK ")).toBe(true)
    const b = await dial(s.port, `CONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await until(() => b.closed())).toBe(true)
    expect(b.text()).toBe("ERR limit http\n")
    a.socket.write("alive\n")
    expect(await a.waitText("alive\n")).toBe(true)
    a.socket.end()
  })
})

describe("reload", () => {
  it("a valid change swaps the policy for new connections; an open relay keeps working", async () => {
    const echo = track(await localServer())
    const dir = tempDir()
    const file = writeRules(dir, open(echo.port, ""))
    const s = track(await start(file))
    const a = await dial(s.port, `CONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await a.waitText("OK ")).toBe(true)
    writeFileSync(file, `
listen t = http 127.0.0.1:0
policy default {
  rule no-echo when dst.port == ${echo.port} -> block "echo closed"
  default allow
}
`)
    const r = await Effect.runPromise(s.handle.reload())
    expect(r).toMatchObject({ ok: true, version: 2 })
    const b = await dial(s.port, `CONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await until(() => b.closed())).toBe(true)
    expect(b.text()).toBe("ERR blocked echo closed\n")
    a.socket.write("after-reload\n")
    expect(await a.waitText("after-reload\n")).toBe(true)
    a.socket.end()
  })

  it("a reload during 200 concurrent transfers drops none of them", async () => {
    const echo = track(await localServer())
    const file = writeRules(tempDir(), open(echo.port, ""))
    const s = track(await start(file))
    const payload = randomBytes(256 * 1024)
    const want = createHash("sha256").update(payload).digest("hex")
    const clients = await Promise.all(Array.from({ length: 200 }, () => dial(s.port, `CONNECT 127.0.0.1 ${echo.port}\n`)))
    for (const c of clients) expect(await c.waitText("OK ")).toBe(true)
    for (const c of clients) c.socket.write(payload.subarray(0, 128 * 1024))
    writeFileSync(file, open(echo.port, "").replace('"nine"', '"reloaded"'))
    expect((await Effect.runPromise(s.handle.reload())).ok).toBe(true)
    for (const c of clients) c.socket.end(payload.subarray(128 * 1024))
    for (const c of clients) expect(await until(() => c.closed(), 20_000)).toBe(true)
    const good = clients.filter((c) => {
      const back = c.data().subarray(c.data().indexOf(10) + 1)
      return createHash("sha256").update(back).digest("hex") === want
    })
    expect(good.length).toBe(200)
  })

  it("an invalid change keeps the old policy and logs the diagnostics", async () => {
    const echo = track(await localServer())
    const file = writeRules(tempDir(), open(echo.port, ""))
    const s = track(await start(file))
    writeFileSync(file, "listen t = http 127.0.0.1:0\npolicy default {\n  rule x when dst.prot == 1 -> block\n  default allow\n}\n")
    const r = await Effect.runPromise(s.handle.reload())
    expect(r.ok).toBe(false)
    expect(r.version).toBe(1)
    const logged = s.log.lines.map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l["msg"] === "reload failed; the current policy keeps serving")
    expect(String(logged?.["diagnostics"])).toMatch(/error\[T\d+\]/)
    expect(String(logged?.["diagnostics"])).toContain("dst.prot")
    const c = await dial(s.port, "CONNECT 127.0.0.1 9\n")
    expect(await until(() => c.closed())).toBe(true)
    expect(c.text()).toBe("ERR blocked nine\n")
  })

  it("a change on disk reloads by itself (file watch)", async () => {
    const echo = track(await localServer())
    const file = writeRules(tempDir(), open(echo.port, ""))
    const s = track(await start(file, { watch: true }))
    await sleep(100)
    writeFileSync(file, open(echo.port, "").replace('"nine"', '"nine again"'))
    expect(await until(() => s.handle.store.current().version === 2, 5_000)).toBe(true)
    const c = await dial(s.port, "CONNECT 127.0.0.1 9\n")
    expect(await until(() => c.closed())).toBe(true)
    expect(c.text()).toBe("ERR blocked nine again\n")
  })

  it("an editor-style save (write a temp file, rename it over) reloads too", async () => {
    const echo = track(await localServer())
    const file = writeRules(tempDir(), open(echo.port, ""))
    const s = track(await start(file, { watch: true }))
    await sleep(100)
    writeFileSync(`${file}.tmp`, open(echo.port, "").replace('"nine"', '"renamed"'))
    renameSync(`${file}.tmp`, file)
    expect(await until(() => s.handle.store.current().version === 2, 5_000)).toBe(true)
    await sleep(300)
    writeFileSync(`${file}.tmp`, open(echo.port, "").replace('"nine"', '"renamed twice"'))
    renameSync(`${file}.tmp`, file)
    expect(await until(() => s.handle.store.current().version === 3, 5_000)).toBe(true)
    const c = await dial(s.port, "CONNECT 127.0.0.1 9\n")
    expect(await until(() => c.closed())).toBe(true)
    expect(c.text()).toBe("ERR blocked renamed twice\n")
  })

  it("listeners added by the new file open, removed ones close, a changed port rebinds", async () => {
    const file = writeRules(tempDir(), "listen a = http 127.0.0.1:0\nlisten b = http 127.0.0.1:0\npolicy default { default allow }\n")
    const s = track(await start(file))
    expect(s.handle.addresses().map((a) => a.listener).sort()).toEqual(["a", "b"])
    const bPort = s.port_of("b")
    const echo = track(await localServer())
    const pending = await dial(bPort)
    await sleep(50)
    writeFileSync(file, "listen a = http 127.0.0.1:0\nlisten c = socks5 127.0.0.1:0\npolicy renamed { default allow }\n")
    expect((await Effect.runPromise(s.handle.reload())).ok).toBe(true)
    expect(s.handle.addresses().map((a) => `${a.listener}/${a.kind}`).sort()).toEqual(["a/http", "c/socks5"])
    await expect(dial(bPort)).rejects.toThrow()
    // A connection accepted by the removed listener still finishes under the policy it was accepted with.
    expect(pending.closed()).toBe(false)
    pending.socket.write(`CONNECT 127.0.0.1 ${echo.port}\nlate\n`)
    expect(await pending.waitText("late\n")).toBe(true)
    pending.socket.end()
    const c = await dial(s.handle.addresses().find((a) => a.listener === "c")!.port, "HELLO\n")
    expect(await c.waitText("HELLO socks5")).toBe(true)
  })
})

describe("shutdown", () => {
  it("drains: an open transfer finishes within the deadline, then stragglers are closed", async () => {
    const slow = track(await localServer((sock) => {
      // Answers 300 ms after the request ends.
      sock.on("data", () => {})
      sock.on("end", () => setTimeout(() => sock.end("done"), 300))
    }))
    const echo = track(await localServer())
    const s = await start(writeRules(tempDir(), open(echo.port, "")))
    const finishing = await dial(s.port, `CONNECT 127.0.0.1 ${slow.port}\n`, true)
    const straggler = await dial(s.port, `CONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await finishing.waitText("OK ")).toBe(true)
    expect(await straggler.waitText("OK ")).toBe(true)
    finishing.socket.end("req")
    const t0 = Date.now()
    const stopping = s.stop(1_000)
    await sleep(50)
    // No new connections while draining.
    await expect(dial(s.port)).rejects.toThrow()
    await stopping
    const took = Date.now() - t0
    expect(finishing.text()).toContain("done")
    expect(await until(() => straggler.closed(), 2_000)).toBe(true)
    expect(took).toBeGreaterThanOrEqual(900)
    expect(took).toBeLessThan(3_000)
    const outcomes = s.connections().map((l) => l["outcome"]).sort()
    expect(outcomes).toEqual(["ok", "shutdown"])
  })

  it("shuts down at once when nothing is open", async () => {
    const s = await start(writeRules(tempDir(), open(1, "")))
    const t0 = Date.now()
    await s.stop(10_000)
    expect(Date.now() - t0).toBeLessThan(1_000)
    await expect(dial(s.port)).rejects.toThrow()
  })
})
