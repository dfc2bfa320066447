/**
 * The HTTP handler's express path (a first request that is a plain CONNECT on a listener
 * without auth, served on callbacks) against its effect path: two servers with the same rules,
 * one with `express: false`, get the same conversations and must answer with the same bytes
 * and write the same close lines; a spy counts, per conversation, the express calls and the
 * fallbacks to the effect code (0 for the conversations the express path serves to the end).
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { Effect } from "effect"
import { Auth, type Inbound } from "@proxyd/runtime"
import { answerThenEnd, closeLineOf, closedPort, echoServer, expressSpy, httpOrigin, rawClient, startProxyd, trickle, type Origin, type Proxyd, type TestServer } from "@proxyd/testkit"
import { makeHttpHandler } from "../src/index.ts"

let echo: TestServer
let origin: Origin
let express: Proxyd
let effect: Proxyd
let refused: number

/** Per server: the runtime's calls of the HTTP handler's express path, and its fallbacks. */
const counts = { express: { calls: 0, fallbacks: 0 }, effect: { calls: 0, fallbacks: 0 } }

beforeAll(async () => {
  echo = await echoServer()
  origin = await httpOrigin()
  refused = await closedPort()
  const hash = await Auth.hashPassword("secret")
  const rules = `
options { handshake-timeout 400ms }
auth users = static {
  alice "${hash}"
}
listen h = http 127.0.0.1:0
listen ha = http 127.0.0.1:0 auth users
listen mx = mixed 127.0.0.1:0
policy default {
  rule nine when dst.port == 9 -> block "port nine"
  default allow tag "plain"
}
`
  express = await startProxyd(rules, { http: expressSpy(makeHttpHandler(), counts.express), socks5: stub("socks5"), socks4: stub("socks4") })
  effect = await startProxyd(rules, { http: expressSpy(makeHttpHandler(), counts.effect), socks5: stub("socks5"), socks4: stub("socks4") }, { express: false })
})

/** A mixed port needs SOCKS handlers; these are never reached by these conversations. */
function stub(protocol: "socks5" | "socks4"): Inbound.InboundHandler {
  return { protocol, handle: (client) => Effect.sync(() => { client.destroy() }) }
}

afterAll(async () => {
  await express?.stop()
  await effect?.stop()
  await echo?.close()
  await origin?.close()
})

type Client = Awaited<ReturnType<typeof rawClient>>

interface Conversation {
  readonly name: string
  readonly listener: string
  /** Served on callbacks to the end (no fallback) on the express server. */
  readonly express?: true
  run(c: Client): Promise<Buffer>
}

const CONNECTED = "HTTP/1.1 200 Connection established\r\n\r\n"

const conversations = (): ReadonlyArray<Conversation> => [
  {
    name: "CONNECT to a literal with early data",
    listener: "h",
    express: true,
    run: async (c) => {
      c.send(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: 127.0.0.1:${echo.port}\r\n\r\nhello`)
      const got = await c.read(CONNECTED.length + 10)
      c.socket.destroy()
      return got
    },
  },
  {
    name: "CONNECT split across writes, through the mixed port",
    listener: "mx",
    express: true,
    run: async (c) => {
      await trickle(c.socket, ["CONN", `ECT 127.0.0.1:${echo.port} HTTP/1.1\r\n`, "Host: x\r", "\n\r\n"])
      const head = await c.read(CONNECTED.length)
      c.send("ping")
      const tail = await c.read(9)
      c.socket.destroy()
      return Buffer.concat([head, tail])
    },
  },
  {
    name: "CONNECT to a name the first time (DNS: fallback)",
    listener: "h",
    run: async (c) => {
      c.send(`CONNECT localhost:${echo.port} HTTP/1.1\r\n\r\n`)
      const head = await c.read(CONNECTED.length)
      c.send("n")
      const tail = await c.read(6)
      c.socket.destroy()
      return Buffer.concat([head, tail])
    },
  },
  {
    name: "CONNECT to the same name again (cached: express)",
    listener: "h",
    express: true,
    run: async (c) => {
      c.send(`CONNECT localhost:${echo.port} HTTP/1.1\r\n\r\n`)
      const head = await c.read(CONNECTED.length)
      c.send("m")
      const tail = await c.read(6)
      c.socket.destroy()
      return Buffer.concat([head, tail])
    },
  },
  { name: "blocked", listener: "h", run: async (c) => { c.send("CONNECT 127.0.0.1:9 HTTP/1.1\r\n\r\n"); return c.readToEnd() } },
  { name: "refused", listener: "mx", run: async (c) => { c.send(`CONNECT 127.0.0.1:${refused} HTTP/1.1\r\n\r\n`); return c.readToEnd() } },
  {
    name: "CONNECT with Proxy-Authorization on an auth listener (fallback)",
    listener: "ha",
    run: async (c) => {
      c.send(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nProxy-Authorization: Basic ${Buffer.from("alice:secret").toString("base64")}\r\n\r\n`)
      const head = await c.read(CONNECTED.length)
      c.send("a")
      const tail = await c.read(6)
      c.socket.destroy()
      return Buffer.concat([head, tail])
    },
  },
  { name: "CONNECT without credentials on an auth listener (407)", listener: "ha", run: async (c) => { c.send(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\n\r\n`); return c.readToEnd() } },
  {
    name: "GET absolute-URI (forwarding: fallback)",
    listener: "h",
    run: async (c) => {
      c.send(`GET http://127.0.0.1:${origin.port}/page HTTP/1.1\r\nHost: 127.0.0.1:${origin.port}\r\nConnection: close\r\n\r\n`)
      const r = (await c.readToEnd()).toString("latin1")
      // the origin's Date header differs from run to run
      return Buffer.from(r.replace(/\r\nDate: [^\r]*/i, ""), "latin1")
    },
  },
  { name: "malformed head (400)", listener: "h", run: async (c) => { c.send("CONNECT nowhere\r\n\r\n"); return c.readToEnd() } },
  { name: "client leaves mid-head", listener: "h", run: async (c) => { c.send("CONNECT 127.0.0.1:1 HT"); c.socket.end(); return c.readToEnd() } },
]

describe("HTTP express path = effect path", () => {
  for (const conv of conversations()) {
    it(conv.name, async () => {
      const out: Array<{ bytes: string; line: Record<string, unknown> }> = []
      const before = { ...counts.express }
      for (const p of [express, effect]) {
        const since = p.connections().length
        const c = await rawClient(p.port(conv.listener))
        const port = c.socket.localPort
        const bytes = (await conv.run(c)).toString("latin1")
        out.push({ bytes, line: await closeLineOf(p, port, since) })
      }
      const [a, b] = out
      expect(counts.express.calls - before.calls).toBe(1)
      expect(counts.express.fallbacks - before.fallbacks).toBe(conv.express === true ? 0 : 1)
      expect(a!.line["missing"]).toBeUndefined()
      expect(a!.bytes).toBe(b!.bytes)
      expect(a!.line).toEqual(b!.line)
    })
  }

  it("the conversations reach the outcomes they are meant to, and the effect server never took the express path", () => {
    expect(counts.effect.calls).toBe(0)
    expect(counts.effect.fallbacks).toBe(0)
    const outcomes = express.connections().map((l) => `${String(l["outcome"])}:${String(l["action"])}:${String(l["status"])}`)
    expect(outcomes).toEqual(expect.arrayContaining(["ok:allow:undefined", "blocked:block:403", "error:allow:502", "rejected:undefined:407", "ok:allow:200", "rejected:undefined:400"]))
  })
})
