/**
 * `proxyd tor newnym|status` against a scripted ControlPort (no tor binary needed).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import * as net from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect, Layer } from "effect"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { cli } from "../src/Cli.ts"
import { Io, memoryIo } from "../src/Io.ts"

let server: net.Server
let port: number
const commands: Array<string> = []
let dir: string
let cookie: string
const COOKIE = Buffer.alloc(32, 0xab)

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "proxyd-cli-tor-"))
  cookie = join(dir, "control_auth_cookie")
  writeFileSync(cookie, COOKIE)
  server = net.createServer((s) => {
    let buf = ""
    s.on("error", () => {})
    s.on("data", (b: Buffer) => {
      buf += b.toString("latin1")
      for (let nl = buf.indexOf("\r\n"); nl >= 0; nl = buf.indexOf("\r\n")) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 2)
        commands.push(line)
        if (line.startsWith("AUTHENTICATE")) s.write(line === `AUTHENTICATE ${COOKIE.toString("hex")}` ? "250 OK\r\n" : "515 Authentication failed\r\n")
        else if (line === "SIGNAL NEWNYM") s.write("250 OK\r\n")
        else if (line === "GETINFO status/bootstrap-phase") s.write('250-status/bootstrap-phase=NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"\r\n250 OK\r\n')
        else if (line === "QUIT") s.end("250 closing connection\r\n")
      }
    })
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  port = (server.address() as net.AddressInfo).port
})

afterAll(async () => {
  await new Promise<void>((r) => server.close(() => r()))
  rmSync(dir, { recursive: true, force: true })
})

const rules = (control: string) => `listen socks5 127.0.0.1:1080
tor a = socks 127.0.0.1:9050 ${control}
tor b = socks 127.0.0.1:9150
policy default {
  rule onion when dst.domain suffix "onion" -> tor a
  default allow
}
`

const run = (argv: Array<string>, text: string) => {
  const io = memoryIo({ "t.rules": text })
  return Effect.runPromise(cli(argv).pipe(Effect.provide(Layer.succeed(Io, io)))).then((code) => ({ code, out: io.stdout(), err: io.stderr() }))
}

describe("proxyd tor", () => {
  it("newnym authenticates with the cookie file and sends SIGNAL NEWNYM", async () => {
    commands.length = 0
    const r = await run(["tor", "newnym", "--rules", "t.rules", "--tor", "a"], rules(`control 127.0.0.1:${port} cookie "${cookie}"`))
    expect(r).toEqual({ code: 0, out: `NEWNYM sent to tor \`a\` (ControlPort 127.0.0.1:${port}); Tor applies it at most once every 10 s\n`, err: "" })
    expect(commands.slice(0, 2)).toEqual([`AUTHENTICATE ${COOKIE.toString("hex")}`, "SIGNAL NEWNYM"])
  })

  it("status prints the bootstrap phase", async () => {
    const r = await run(["tor", "status", "--rules", "t.rules", "--tor", "a"], rules(`control 127.0.0.1:${port} cookie "${cookie}"`))
    expect(r.out).toBe(`tor \`a\` (ControlPort 127.0.0.1:${port}): bootstrapped 100% (done: Done)\n`)
    expect(r.code).toBe(0)
  })

  it("clear errors: several endpoints, no control port, Tor not running, bad subcommand", async () => {
    const several = await run(["tor", "newnym", "--rules", "t.rules"], rules(`control 127.0.0.1:${port}`))
    expect(several).toMatchObject({ code: 1, err: "proxyd: tor newnym: several tor endpoints are declared (a, b): choose one with --tor NAME\n" })
    const noControl = await run(["tor", "newnym", "--rules", "t.rules", "--tor", "b"], rules(""))
    expect(noControl).toMatchObject({ code: 1, err: "proxyd: tor newnym: tor `b` declares no control port (add `control HOST:PORT`)\n" })
    const closed = await new Promise<number>((resolve) => {
      const s = net.createServer()
      s.listen(0, "127.0.0.1", () => { const p = (s.address() as net.AddressInfo).port; s.close(() => resolve(p)) })
    })
    const down = await run(["tor", "newnym", "--rules", "t.rules", "--tor", "a"], rules(`control 127.0.0.1:${closed}`))
    expect(down).toMatchObject({ code: 1, err: `proxyd: tor newnym: cannot reach Tor's ControlPort 127.0.0.1:${closed}: connection refused\n` })
    const bad = await run(["tor", "renew", "--rules", "t.rules"], rules(""))
    expect(bad.code).toBe(2)
    expect(bad.err).toContain("unknown tor subcommand `renew` (newnym, status)")
  })
})
