/**
 * The express path (callbacks from accept to relay for the common SOCKS requests) against the
 * effect path: two servers with the same rules, one with `express: false`, get the same client
 * conversations and must answer with the same bytes and write the same close lines — for the
 * requests the express path serves itself (a literal CONNECT, early data, split messages,
 * redirect) and for the ones it hands to a fallback fiber (a name to resolve, a block, a refused
 * connect, another command, authentication, a bad greeting, a client that leaves). Then what
 * only the express path has to get right on its own: shutdown and `kill` while a connection
 * waits for its request, and the handshake deadline while it waits for its first byte.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { answerThenEnd, closeLineOf, closedPort, echoServer, expressSpy, rawClient, startProxyd, trickle, until, type Proxyd, type TestServer } from "@proxyd/testkit"
import { Effect } from "effect"
import { Auth, type Inbound, Wire } from "@proxyd/runtime"
import { makeSocks4Handler, makeSocks5Handler } from "../src/index.ts"
import * as C from "../src/Socks5Codec.ts"
import * as C4 from "../src/Socks4Codec.ts"

let echo: TestServer
let express: Proxyd
let effect: Proxyd
let refused: number

/** A mixed port needs an HTTP handler; this one (no express path) answers every request with 501 and closes. */
const httpStandIn: Inbound.InboundHandler = {
  protocol: "http",
  handle: (client, ctx) => Effect.suspend(() => {
    ctx.note({ outcome: "rejected", error: "stand-in" })
    return Wire.closeWith(client, "HTTP/1.1 501 Not Implemented\r\nContent-Length: 0\r\n\r\n")
  }),
}

/** Per server: the runtime's calls of the SOCKS handlers' express paths, and their fallbacks. */
const counts = { express: { calls: 0, fallbacks: 0 }, effect: { calls: 0, fallbacks: 0 } }
const counted = (h: Inbound.InboundHandler, count: keyof typeof counts | undefined): Inbound.InboundHandler =>
  count === undefined ? h : expressSpy(h, counts[count])

const handlers = (count?: keyof typeof counts) =>
  ({ socks5: counted(makeSocks5Handler(), count), socks4: counted(makeSocks4Handler(), count), http: httpStandIn })

beforeAll(async () => {
  echo = await echoServer()
  refused = await closedPort()
  const rules = (hash: string) => `
options { handshake-timeout 400ms }
auth users = static {
  alice "${hash}"
}
listen mx = mixed 127.0.0.1:0
listen s5 = socks5 127.0.0.1:0
listen au = socks5 127.0.0.1:0 auth users
listen s4 = socks4 127.0.0.1:0
listen a4 = socks4 127.0.0.1:0 auth users
policy default {
  rule nine when dst.port == 9 -> block "port nine"
  rule seven when dst.port == 7 -> redirect "127.0.0.1:${echo.port}"
  rule eight when dst.port == 8 and dst.ip in 127.0.0.0/8 -> redirect "127.0.0.1:${echo.port}" tag "local"
  default allow tag "plain"
}
`
  const hash = await Auth.hashPassword("secret")
  express = await startProxyd(rules(hash), handlers("express"))
  effect = await startProxyd(rules(hash), handlers("effect"), { express: false })
})

afterAll(async () => {
  await express?.stop()
  await effect?.stop()
  await echo?.close()
})

const req = (host: string, port: number, cmd: number = C.CMD_CONNECT): Buffer => C.encodeRequest(cmd, host, port)
const GREET = Buffer.from([5, 1, 0])

/** A conversation: what the client sends, how many bytes to wait for, then everything until the proxy closes (or we do). */
interface Conversation {
  readonly name: string
  /** Served on callbacks to the end (no fallback fiber) on the express server. */
  readonly express?: true
  readonly listener: string
  run(c: Awaited<ReturnType<typeof rawClient>>): Promise<Buffer>
}

/** The reply's BND.PORT (the outbound socket's local port: differs run to run) zeroed; `at` = where the reply starts. */
const masked = (b: Buffer, at: number): Buffer => {
  const c = Buffer.from(b)
  c.fill(0, at + 8, at + 10)
  return c
}

const conversations = (): ReadonlyArray<Conversation> => [
  {
    name: "CONNECT to a literal with early data in the request's write",
    express: true,
    listener: "s5",
    run: async (c) => {
      c.send(Buffer.concat([GREET, req("127.0.0.1", echo.port), Buffer.from("hello")]))
      const got = await c.read(2 + 10 + 5 + 5)
      c.socket.destroy()
      return masked(got, 2)
    },
  },
  {
    name: "CONNECT through the mixed port, greeting and request split byte by byte",
    express: true,
    listener: "mx",
    run: async (c) => {
      const all = Buffer.concat([GREET, req("127.0.0.1", echo.port)])
      await trickle(c.socket, [...all].map((b) => Buffer.from([b])))
      const head = await c.read(12)
      c.send("ping")
      const tail = await c.read(9)
      c.socket.destroy()
      return Buffer.concat([masked(head, 2), tail])
    },
  },
  {
    name: "redirect",
    express: true,
    listener: "mx",
    run: async (c) => {
      c.send(Buffer.concat([GREET, req("127.0.0.1", 7)]))
      const head = await c.read(12)
      c.send("abc")
      const tail = await c.read(8)
      c.socket.destroy()
      return Buffer.concat([head.subarray(0, 3), tail])
    },
  },
  {
    name: "a name (DNS: fallback)",
    listener: "s5",
    run: async (c) => {
      c.send(Buffer.concat([GREET, req("localhost", echo.port)]))
      const head = await c.read(12)
      c.send("x")
      const tail = await c.read(6)
      c.socket.destroy()
      return Buffer.concat([head.subarray(0, 3), tail])
    },
  },
  {
    name: "the same name again (cached: express), under a rule that needs its address",
    listener: "s5",
    express: true,
    run: async (c) => {
      c.send(Buffer.concat([GREET, req("localhost", 8)]))
      const head = await c.read(12)
      c.send("y")
      const tail = await c.read(6)
      c.socket.destroy()
      return Buffer.concat([head.subarray(0, 3), tail])
    },
  },
  { name: "blocked", listener: "mx", run: async (c) => { c.send(Buffer.concat([GREET, req("127.0.0.1", 9)])); return answerThenEnd(c, 12) } },
  { name: "refused", listener: "s5", run: async (c) => { c.send(Buffer.concat([GREET, req("127.0.0.1", refused)])); return answerThenEnd(c, 12) } },
  { name: "command 0x09", listener: "s5", run: async (c) => { c.send(Buffer.concat([GREET, req("127.0.0.1", echo.port, 9)])); return answerThenEnd(c, 12) } },
  { name: "unknown ATYP", listener: "mx", run: async (c) => { c.send(Buffer.concat([GREET, Buffer.from([5, 1, 0, 7, 1, 2])])); return answerThenEnd(c, 12) } },
  { name: "no acceptable method", listener: "s5", run: async (c) => { c.send(Buffer.from([5, 1, 2])); return answerThenEnd(c, 2) } },
  { name: "not SOCKS5 after the greeting (closed, no reply)", listener: "s5", run: async (c) => { c.send(Buffer.concat([GREET, Buffer.from([4, 1, 0, 1, 1, 2, 3, 4, 0, 0])])); return c.readToEnd() } },
  { name: "client leaves after the greeting", listener: "s5", run: async (c) => { c.send(GREET); const r = await c.read(2); c.socket.end(); return Buffer.concat([r, await c.readToEnd()]) } },
  {
    name: "RFC 1929 (fallback), then CONNECT",
    listener: "au",
    run: async (c) => {
      c.send(Buffer.from([5, 1, 2]))
      const m = await c.read(2)
      c.send(Buffer.concat([Buffer.from([1, 5]), Buffer.from("alice"), Buffer.from([6]), Buffer.from("secret"), req("127.0.0.1", echo.port)]))
      const rest = await c.read(2 + 10)
      c.send("q")
      const tail = await c.read(6)
      c.socket.destroy()
      return Buffer.concat([m, rest.subarray(0, 5), tail])
    },
  },
  { name: "wrong password (fallback)", listener: "au", run: async (c) => { c.send(Buffer.from([5, 1, 2, 1, 5, ...Buffer.from("alice"), 1, 0x78])); return answerThenEnd(c, 4) } },
  {
    name: "SOCKS4 CONNECT with a USERID and early data",
    express: true,
    listener: "s4",
    run: async (c) => {
      c.send(Buffer.concat([C4.encodeRequest(C4.CMD_CONNECT, "127.0.0.1", echo.port, "bob"), Buffer.from("hi")]))
      const got = await c.read(8 + 7)
      c.socket.destroy()
      return Buffer.concat([got.subarray(0, 2), got.subarray(4)])
    },
  },
  {
    name: "SOCKS4 through the mixed port, split",
    express: true,
    listener: "mx",
    run: async (c) => {
      const r = C4.encodeRequest(C4.CMD_CONNECT, "127.0.0.1", echo.port)
      await trickle(c.socket, [r.subarray(0, 1), r.subarray(1, 5), r.subarray(5)])
      const head = await c.read(8)
      c.send("k")
      const tail = await c.read(6)
      c.socket.destroy()
      return Buffer.concat([head.subarray(0, 2), head.subarray(4), tail])
    },
  },
  {
    name: "SOCKS4a name (cached by the SOCKS5 conversations above: express)",
    express: true,
    listener: "s4",
    run: async (c) => {
      c.send(C4.encodeRequest(C4.CMD_CONNECT, "localhost", echo.port))
      const head = await c.read(8)
      c.send("n")
      const tail = await c.read(6)
      c.socket.destroy()
      return Buffer.concat([head.subarray(0, 2), head.subarray(4), tail])
    },
  },
  { name: "SOCKS4 blocked", listener: "s4", run: async (c) => { c.send(C4.encodeRequest(C4.CMD_CONNECT, "127.0.0.1", 9)); return answerThenEnd(c, 8) } },
  { name: "SOCKS4 on a listener that requires auth", listener: "a4", run: async (c) => { c.send(C4.encodeRequest(C4.CMD_CONNECT, "127.0.0.1", echo.port, "alice")); return answerThenEnd(c, 8) } },
  { name: "SOCKS4 unknown command", listener: "s4", run: async (c) => { c.send(C4.encodeRequest(7, "127.0.0.1", echo.port)); return answerThenEnd(c, 8) } },
  {
    name: "HTTP through the mixed port (a handler without express: fallback)",
    listener: "mx",
    run: async (c) => { c.send(`CONNECT 127.0.0.1:${echo.port} HTTP/1.1\r\nHost: x\r\n\r\n`); return c.readToEnd() },
  },
]

describe("express path = effect path", () => {
  for (const conv of conversations()) {
    it(conv.name, async () => {
      const out: Array<{ bytes: string; line: Record<string, unknown> }> = []
      const before = counts.express.fallbacks
      for (const p of [express, effect]) {
        const since = p.connections().length
        const c = await rawClient(p.port(conv.listener))
        const port = c.socket.localPort
        const bytes = (await conv.run(c)).toString("hex")
        out.push({ bytes, line: await closeLineOf(p, port, since) })
      }
      const [a, b] = out
      expect(counts.express.fallbacks - before).toBe(conv.express === true || conv.listener === "mx" && conv.name.startsWith("HTTP") ? 0 : 1)
      expect(a!.line["missing"]).toBeUndefined()
      expect(a!.bytes).toBe(b!.bytes)
      expect(a!.line).toEqual(b!.line)
    })
  }

  it("the conversations above reach the outcomes they are meant to (so the comparison compares something)", () => {
    // Every SOCKS5 conversation went through the express path on one server and never on the other.
    expect(counts.express.calls).toBe(conversations().filter((c) => !c.name.startsWith("HTTP")).length)
    expect(counts.effect.calls).toBe(0)
    expect(counts.effect.fallbacks).toBe(0)
    const outcomes = express.connections().map((l) => `${String(l["protocol"])}:${String(l["outcome"])}:${String(l["action"])}`)
    expect(outcomes).toEqual(expect.arrayContaining(["socks4:ok:allow", "socks4:blocked:block", "socks4:rejected:undefined", "socks5:ok:allow", "socks5:ok:redirect", "socks5:blocked:block", "socks5:error:allow", "socks5:rejected:undefined", "http:rejected:undefined"]))
    // A handler that answered and then waited for the client to leave keeps its outcome when the deadline ends the wait.
    expect(express.connections().filter((l) => l["outcome"] === "handshake-timeout" && l["error"] !== undefined)).toEqual([])
  })
})

describe("express path on its own", () => {
  it("kill while the connection waits for its request: outcome killed, socket closed", async () => {
    const since = express.connections().length
    const c = await rawClient(express.port("s5"))
    const port = c.socket.localPort
    c.send(GREET)
    expect([...(await c.read(2))]).toEqual([5, 0])
    const open = () => express.handle.sessions.list().find((s) => s.src === `127.0.0.1:${port}`)
    expect(await until(() => open() !== undefined)).toBe(true)
    expect(express.handle.sessions.kill(open()!.id)).toBe(true)
    expect((await c.readToEnd()).length).toBe(0)
    expect(await closeLineOf(express, port, since)).toMatchObject({ outcome: "killed", listener: "s5" })
  })

  it("the handshake deadline while waiting for the first byte on the mixed port", async () => {
    const since = express.connections().length
    const c = await rawClient(express.port("mx"))
    const port = c.socket.localPort
    const t0 = Date.now()
    expect((await c.readToEnd()).length).toBe(0)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(300)
    expect(await closeLineOf(express, port, since)).toMatchObject({ outcome: "handshake-timeout", listener: "mx" })
  })

  it("shutdown ends connections waiting in the handshake and relayed ones (outcome shutdown), and the server stops", async () => {
    const own = await startProxyd("listen s5 = socks5 127.0.0.1:0\npolicy default {\n  default allow\n}\n", handlers())
    const waiting = await rawClient(own.port("s5"))
    waiting.send(GREET)
    await waiting.read(2)
    const relayed = await rawClient(own.port("s5"))
    relayed.send(Buffer.concat([GREET, req("127.0.0.1", echo.port), Buffer.from("z")]))
    await relayed.read(2 + 10 + 6)
    const ports = [waiting.socket.localPort, relayed.socket.localPort]
    await own.stop()
    expect((await waiting.readToEnd()).length).toBe(0)
    expect((await relayed.readToEnd()).length).toBe(0)
    for (const p of ports) expect(await closeLineOf(own, p, 0)).toMatchObject({ outcome: "shutdown" })
    expect(own.handle.sessions.size()).toBe(0)
  })
})
