/**
 * The tor outbound through the real server, against scripted Tor stand-ins
 * (no tor binary needed): what goes on the wire to the SocksPort, REP
 * pass-through, Tor not running, Tor not bootstrapped, password auth and
 * NEWNYM on the ControlPort, a missing control password refusing the program.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import type * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { Auth, Log, Server } from "@proxyd/runtime"
import { makeSocks5Handler } from "@proxyd/socks"
import { credentialsFor } from "../src/Isolation.ts"
import { makeTor, type TorOutbound } from "../src/TorOutbound.ts"
import { connectThroughTor, TorFailure } from "../src/TorSocks.ts"
import { closedPort, fakeControl, fakeSocksPort } from "./Fakes.ts"

const salt = Buffer.from("unit-salt")
const cleanup: Array<() => Promise<void>> = []
afterEach(async () => {
  for (const f of cleanup.splice(0).reverse()) await f()
})

interface Proxyd { readonly port: number; readonly log: ReturnType<typeof Log.memory>; readonly tor: TorOutbound; readonly resolved: Array<string> }

const start = async (torDecl: string, extra = ""): Promise<Proxyd> => {
  const dir = mkdtempSync(join(tmpdir(), "proxyd-tor-unit-"))
  const file = join(dir, "t.rules")
  const hash = await Auth.hashPassword("pw")
  writeFileSync(file, `
auth users = static {
  alice "${hash}"
}
listen s5 = socks5 127.0.0.1:0 auth users optional
${torDecl}
policy default {
  rule lan when dst.ip in [10.0.0.0/8] -> block
  default tor
}
${extra}`)
  const log = Log.memory("debug")
  const tor = makeTor({ salt, pollMs: 100 })
  const resolved: Array<string> = []
  const resolver = { resolve: (h: string) => { resolved.push(h); return Effect.succeed(["192.0.2.7"] as ReadonlyArray<string>) } }
  const handle = await Effect.runPromise(Server.startServer({ rulesFile: file, handlers: { socks5: makeSocks5Handler() }, outbounds: [tor], log, resolver, watch: false }))
  cleanup.push(async () => { await Effect.runPromise(handle.shutdown(0)); rmSync(dir, { recursive: true, force: true }) })
  return { port: handle.addresses()[0]!.port, log, tor, resolved }
}

const through = (p: Proxyd, host: string, port: number, user?: string): Promise<net.Socket> =>
  connectThroughTor({ socksHost: "127.0.0.1", socksPort: p.port, dstHost: host, dstPort: port, user, pass: "pw", timeoutMs: 5000 })

const repOf = async (p: Proxyd, host: string, port: number, user?: string): Promise<number> => {
  try {
    (await through(p, host, port, user)).destroy()
    return 0
  } catch (e) {
    if (e instanceof TorFailure && e.socksCode !== undefined) return e.socksCode
    throw e
  }
}

const lines = (p: Proxyd) => p.log.lines.map((l) => JSON.parse(l) as Record<string, unknown>)
/** Polls (bounded) until `f` holds; on timeout the assertion shows the log lines seen. */
const waitFor = async (f: () => boolean, ms = 10_000, p?: Proxyd): Promise<void> => {
  for (let i = 0; i < ms / 50 && !f(); i++) await new Promise((r) => setTimeout(r, 50))
  if (!f() && p !== undefined) expect(p.log.lines).toEqual(["(a line matching the condition)"])
  expect(f()).toBe(true)
}

describe("tor outbound on the wire", () => {
  it("sends every destination as a name (ATYP 3) with derived isolation credentials, never the client's, and keeps early data", async () => {
    const socks = await fakeSocksPort("early bytes")
    cleanup.push(socks.close)
    const p = await start(`tor t = socks 127.0.0.1:${socks.port}`)
    const s = await through(p, "example.tornet.test", 80, "alice")
    const first = await new Promise<string>((r) => { s.once("data", (b: Buffer) => r(b.toString())); s.resume() })
    s.destroy()
    expect(first).toBe("early bytes")
    ;(await through(p, "203.0.113.9", 443)).destroy()
    ;(await through(p, "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion", 80, "alice")).destroy()
    expect(socks.handshakes).toEqual([
      { methods: [2], user: credentialsFor(salt, "t", "user:alice").user, pass: "proxyd", atyp: 3, host: "example.tornet.test", port: 80 },
      { methods: [2], user: credentialsFor(salt, "t", "anonymous").user, pass: "proxyd", atyp: 3, host: "203.0.113.9", port: 443 },
      { methods: [2], user: credentialsFor(salt, "t", "user:alice").user, pass: "proxyd", atyp: 3, host: "abcdefghijklmnopqrstuvwxyz234567abcdefghijklmnopqrstuvwx.onion", port: 80 },
    ])
    expect(socks.handshakes.some((h) => h.pass === "pw" || h.user === "alice")).toBe(false)
    // The policy tested dst.ip: the name was resolved for the policy, not for Tor, and the onion never.
    expect(p.resolved).toEqual(["example.tornet.test"])
  })

  it("isolate none offers no auth at all", async () => {
    const socks = await fakeSocksPort()
    cleanup.push(socks.close)
    const p = await start(`tor t = socks 127.0.0.1:${socks.port} isolate none`)
    ;(await through(p, "a.tornet.test", 80, "alice")).destroy()
    expect(socks.handshakes).toEqual([{ methods: [0], atyp: 3, host: "a.tornet.test", port: 80 }])
  })

  it("passes Tor's REP codes (0x04, 0xF0–0xF7) through to the SOCKS client and logs them", async () => {
    const socks = await fakeSocksPort()
    cleanup.push(socks.close)
    const p = await start(`tor t = socks 127.0.0.1:${socks.port}`)
    for (const code of [0x04, 0xf0, 0xf1, 0xf6, 0xf7]) {
      socks.rep = code
      expect(await repOf(p, "x.onion", 80)).toBe(code)
    }
    await waitFor(() => lines(p).some((l) => l["tor_error"] === "Tor answered 0xf6: invalid onion address"), 10_000, p)
  })
})

describe("tor outbound failures", () => {
  it("Tor not running: general failure, the log names the SocksPort", async () => {
    const port = await closedPort()
    const p = await start(`tor t = socks 127.0.0.1:${port}`)
    expect(await repOf(p, "a.tornet.test", 80)).toBe(0x01)
    await waitFor(() => lines(p).some((l) => l["tor_error"] === `cannot reach Tor's SocksPort 127.0.0.1:${port}: connection refused`), 10_000, p)
  })

  it("Tor not bootstrapped: connections fail at once with the phase; health is logged; password auth; NEWNYM", async () => {
    const socks = await fakeSocksPort()
    const control = await fakeControl("s3cret", 45)
    cleanup.push(socks.close, control.close)
    process.env["PROXYD_TEST_TOR_PW"] = "s3cret"
    const p = await start(`tor t = socks 127.0.0.1:${socks.port} control 127.0.0.1:${control.port} password env(PROXYD_TEST_TOR_PW)`)
    await waitFor(() => lines(p).some((l) => l["msg"] === "tor not bootstrapped" && l["progress"] === 45))
    expect(await repOf(p, "a.tornet.test", 80)).toBe(0x01)
    expect(socks.handshakes).toEqual([])
    await waitFor(() => lines(p).some((l) => l["tor_error"] === "Tor `t` is not bootstrapped yet (45%: Loading relay descriptors)"))
    expect(control.commands).toContain('AUTHENTICATE "s3cret"')
    control.progress = 100
    await waitFor(() => lines(p).some((l) => l["msg"] === "tor bootstrapped"))
    expect(await repOf(p, "a.tornet.test", 80)).toBe(0)
    await p.tor.newnym()
    expect(control.commands).toContain("SIGNAL NEWNYM")
    expect(p.tor.status()).toEqual([{ name: "t", socks: `127.0.0.1:${socks.port}`, control: `127.0.0.1:${control.port}`, bootstrap: { progress: 100, tag: "done", summary: "Done" } }])
    expect(p.log.lines.join("\n")).not.toContain("s3cret")
  })

  it("an unreachable control port is logged as health and does not block connections", async () => {
    const socks = await fakeSocksPort()
    cleanup.push(socks.close)
    const cport = await closedPort()
    const p = await start(`tor t = socks 127.0.0.1:${socks.port} control 127.0.0.1:${cport} cookie "missing.cookie"`)
    await waitFor(() => lines(p).some((l) => l["msg"] === "tor control port unreachable" && String(l["error"]).includes("control cookie")))
    expect(await repOf(p, "a.tornet.test", 80)).toBe(0)
    await expect(p.tor.newnym("t")).rejects.toThrow(/cannot read Tor's control cookie/)
  })

  it("a control password that cannot be read refuses the program", async () => {
    const dir = mkdtempSync(join(tmpdir(), "proxyd-tor-unit-"))
    const file = join(dir, "t.rules")
    writeFileSync(file, `listen s5 = socks5 127.0.0.1:0\ntor t = socks 127.0.0.1:9050 control 127.0.0.1:9051 password env(PROXYD_TEST_TOR_UNSET)\npolicy default {\n  default tor\n}\n`)
    delete process.env["PROXYD_TEST_TOR_UNSET"]
    const exit = await Effect.runPromiseExit(Server.startServer({ rulesFile: file, handlers: { socks5: makeSocks5Handler() }, outbounds: [makeTor()], log: Log.memory(), watch: false }))
    rmSync(dir, { recursive: true, force: true })
    expect(exit._tag).toBe("Failure")
    expect(String(exit._tag === "Failure" ? exit.cause : "")).toContain("the control password cannot be read: environment variable `PROXYD_TEST_TOR_UNSET` is not set")
  })
})
