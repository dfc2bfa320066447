import { describe, expect, it } from "vitest"
import fc from "fast-check"
import { Agent, createServer as createHttpServer, type IncomingHttpHeaders, request, type Server } from "node:http"
import { createServer as createTcpServer } from "node:net"
import { httpHandler } from "../src/HttpHandler.ts"
import { cleanupsAfterEach, closedPort, echoServer, type Harness, ipv6Available, rawClient, start } from "@proxyd/testkit"

const { defer, later } = cleanupsAfterEach()
const harness = async (...args: Parameters<typeof start>): Promise<Harness> => later(await start(...args))

interface Origin { readonly port: number; closeIdle(): void; readonly seen: Array<{ method: string; url: string; headers: IncomingHttpHeaders; body: string; remotePort: number }> }

/** A local origin: `/chunked` answers in chunks, everything else answers `name method url body`. */
const origin = async (name: string): Promise<Origin> => {
  const seen: Origin["seen"] = []
  const server: Server = createHttpServer((req, res) => {
    const parts: Buffer[] = []
    req.on("data", (d: Buffer) => parts.push(d))
    req.on("end", () => {
      const body = Buffer.concat(parts).toString()
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body, remotePort: req.socket.remotePort! })
      if (req.url === "/chunked") {
        res.write("part1-")
        setTimeout(() => res.end("part2"), 5)
        return
      }
      if (req.url === "/204") {
        res.writeHead(204)
        res.end()
        return
      }
      res.setHeader("Connection", "X-Hop")
      res.setHeader("X-Hop", "secret")
      res.end(`${name} ${req.method} ${req.url} ${body}`)
    })
  })
  server.keepAliveTimeout = 5000
  await new Promise<void>((r) => server.listen({ host: "127.0.0.1", port: 0 }, () => r()))
  defer(() => new Promise<void>((r) => {
    server.closeAllConnections()
    server.close(() => r())
  }))
  const a = server.address()
  return { port: typeof a === "object" && a !== null ? a.port : 0, seen, closeIdle: () => server.closeIdleConnections() }
}

interface Res { status: number; headers: IncomingHttpHeaders; body: string; socketPort: number }

const viaProxy = (proxyPort: number, url: string, opts: { method?: string; headers?: Record<string, string>; body?: string | string[]; agent?: Agent } = {}) =>
  new Promise<Res>((resolve, reject) => {
    const u = new URL(url)
    const req = request({
      host: "127.0.0.1", port: proxyPort, method: opts.method ?? "GET", path: url,
      headers: { Host: u.host, ...opts.headers }, agent: opts.agent ?? false,
    }, (res) => {
      const socketPort = res.socket.localPort!
      const parts: Buffer[] = []
      res.on("data", (d: Buffer) => parts.push(d))
      res.on("end", () => resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(parts).toString(), socketPort }))
      res.on("error", reject)
    })
    req.on("error", reject)
    if (Array.isArray(opts.body)) for (const b of opts.body) req.write(b)
    else if (opts.body !== undefined) req.write(opts.body)
    req.end()
  })

const raw = async (port: number, text: string | Buffer) => {
  const c = await rawClient(port)
  defer(() => void c.socket.destroy())
  c.send(text)
  return c
}

describe("HttpHandler", () => {
  it("forwards absolute-URI requests in origin-form, strips hop-by-hop headers, keeps Host", async () => {
    const o = await origin("A")
    const h = await harness(httpHandler)
    const r = await viaProxy(h.port, `http://127.0.0.1:${o.port}/x?y=1`, {
      headers: { Connection: "X-Secret", "X-Secret": "1", "Proxy-Authorization": "Basic Zm9vOmJhcg==", "Proxy-Connection": "keep-alive", "X-Keep": "2" },
    })
    expect(r.status).toBe(200)
    expect(r.body).toBe("A GET /x?y=1 ")
    expect(r.headers["x-hop"]).toBeUndefined()
    const seen = o.seen[0]!
    expect(seen.url).toBe("/x?y=1")
    expect(seen.headers.host).toBe(`127.0.0.1:${o.port}`)
    expect(seen.headers["x-keep"]).toBe("2")
    for (const name of ["x-secret", "proxy-authorization", "proxy-connection"]) expect(seen.headers[name]).toBeUndefined()
  })

  it("keep-alive: each request is decided by its own authority; the upstream is reused for the same one", async () => {
    const a = await origin("A")
    const b = await origin("B")
    const blocked = await origin("C")
    const h = await harness(httpHandler, { rules: `policy p {\n  rule no when dst.port == ${blocked.port} -> block "C is blocked"\n  default allow\n}\n` })
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    defer(() => agent.destroy())
    const r1 = await viaProxy(h.port, `http://127.0.0.1:${a.port}/1`, { agent })
    const r2 = await viaProxy(h.port, `http://127.0.0.1:${a.port}/2`, { agent, method: "POST", body: "body-2" })
    const r3 = await viaProxy(h.port, `http://127.0.0.1:${b.port}/3`, { agent, method: "POST", body: ["chunk-a", "chunk-b"] })
    const r4 = await viaProxy(h.port, `http://127.0.0.1:${a.port}/chunked`, { agent })
    expect([r1.body, r2.body, r3.body, r4.body]).toEqual(["A GET /1 ", "A POST /2 body-2", "B POST /3 chunk-achunk-b", "part1-part2"])
    expect(new Set([r1, r2, r3, r4].map((r) => r.socketPort)).size).toBe(1)
    expect(h.sessions.length).toBe(1)
    expect(h.sessions[0]!.decided.map((d) => d.request.dstPort)).toEqual([a.port, a.port, b.port, a.port])
    expect(a.seen[0]!.remotePort).toBe(a.seen[1]!.remotePort)
    expect(b.seen[0]!.headers["transfer-encoding"]).toBe("chunked")
    const r5 = await viaProxy(h.port, `http://127.0.0.1:${blocked.port}/`, { agent })
    expect(r5.status).toBe(403)
    expect(r5.body).toBe("C is blocked\n")
    expect(r5.socketPort).toBe(r1.socketPort)
    expect(blocked.seen.length).toBe(0)
  })

  it("a kept-alive upstream that the origin closed meanwhile is replaced transparently", async () => {
    const o = await origin("A")
    const h = await harness(httpHandler)
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    defer(() => agent.destroy())
    const r1 = await viaProxy(h.port, `http://127.0.0.1:${o.port}/1`, { agent })
    // the origin closes its idle side (node's keepAliveTimeout); the client connection to the proxy stays open
    for (let i = 0; i < 50 && o.seen.length < 1; i++) await new Promise((r) => setTimeout(r, 10))
    o.closeIdle()
    await new Promise((r) => setTimeout(r, 100))
    const r2 = await viaProxy(h.port, `http://127.0.0.1:${o.port}/2`, { agent })
    expect([r1.status, r2.status, r2.body]).toEqual([200, 200, "A GET /2 "])
    expect(r2.socketPort).toBe(r1.socketPort)
    expect(o.seen[1]!.remotePort).not.toBe(o.seen[0]!.remotePort)
  })

  it("a reused upstream that closes instead of answering (keep-alive race) is retried once on a fresh connection", async () => {
    let connections = 0
    const server = createTcpServer((s) => {
      const n = ++connections
      let requests = 0
      s.on("data", () => {
        if (++requests === 1) s.write(`HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok${n}`)
        else s.destroy()
      })
      s.on("error", () => {})
    })
    await new Promise<void>((r) => server.listen({ host: "127.0.0.1", port: 0 }, () => r()))
    defer(() => new Promise<void>((r) => server.close(() => r())))
    const port = (server.address() as { port: number }).port
    const h = await harness(httpHandler)
    const agent = new Agent({ keepAlive: true, maxSockets: 1 })
    defer(() => agent.destroy())
    const r1 = await viaProxy(h.port, `http://127.0.0.1:${port}/1`, { agent })
    const r2 = await viaProxy(h.port, `http://127.0.0.1:${port}/2`, { agent })
    expect([r1.body, r2.status, r2.body]).toEqual(["ok1", 200, "ok2"])
    expect(r2.socketPort).toBe(r1.socketPort)
  })

  it("HEAD and 204 responses have no body and keep the connection usable (pipelined requests)", async () => {
    const o = await origin("A")
    const h = await harness(httpHandler)
    const host = `127.0.0.1:${o.port}`
    const c = await raw(h.port, `HEAD http://${host}/head HTTP/1.1\r\nHost: ${host}\r\n\r\n` +
      `GET http://${host}/204 HTTP/1.1\r\nHost: ${host}\r\n\r\n` +
      `GET http://${host}/after HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`)
    const all = (await c.readToEnd()).toString()
    const statuses = [...all.matchAll(/HTTP\/1\.1 (\d{3})/g)].map((m) => m[1])
    expect(statuses).toEqual(["200", "204", "200"])
    expect(all.endsWith("\r\n\r\nA GET /after ")).toBe(true)
    expect(all).not.toContain("A HEAD")
    expect(h.sessions.length).toBe(1)
    expect(o.seen.map((x) => x.method)).toEqual(["HEAD", "GET", "GET"])
  })

  it("close-delimited responses are streamed and the client connection closes after them", async () => {
    const server = createTcpServer((s) => {
      s.once("data", () => s.end("HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil-close"))
    })
    await new Promise<void>((r) => server.listen({ host: "127.0.0.1", port: 0 }, () => r()))
    defer(() => new Promise<void>((r) => server.close(() => r())))
    const port = (server.address() as { port: number }).port
    const h = await harness(httpHandler)
    const c = await raw(h.port, `GET http://127.0.0.1:${port}/ HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`)
    const all = (await c.readToEnd()).toString()
    expect(all).toMatch(/^HTTP\/1\.1 200 OK\r\n/)
    expect(all).toContain("Connection: close\r\n")
    expect(all.endsWith("\r\n\r\nuntil-close")).toBe(true)
  })

  it("Host is replaced by the request URI's authority (a client cannot ask the origin for another site than the policy saw)", async () => {
    const o = await origin("A")
    const h = await harness(httpHandler)
    const c = await raw(h.port, `GET http://127.0.0.1:${o.port}/v HTTP/1.1\r\nHost: blocked.example\r\nConnection: close\r\n\r\n`)
    expect((await c.readToEnd()).toString()).toMatch(/A GET \/v $/)
    expect(o.seen[0]!.headers.host).toBe(`127.0.0.1:${o.port}`)
    expect(o.seen[0]!.headers["connection"]).toBeUndefined()
  })

  it("redirect decisions send the request to the target and keep the asked-for authority as Host", async () => {
    const o = await origin("R")
    const h = await harness(httpHandler, { rules: `policy p {\n  rule r when dst.domain == site.test -> redirect "127.0.0.1:${o.port}"\n  default block\n}\n` })
    const r = await viaProxy(h.port, "http://site.test:8080/page")
    expect(r.body).toBe("R GET /page ")
    expect(o.seen[0]!.headers.host).toBe("site.test:8080")
  })

  it("CONNECT: 200 Connection established, bytes after the head forwarded first, [v6]-free IPv4 and names", async () => {
    const e = await echoServer()
    defer(() => e.close())
    const h = await harness(httpHandler)
    const c = await raw(h.port, `CONNECT localhost:${e.port} HTTP/1.1\r\nHost: localhost:${e.port}\r\n\r\nearly`)
    const est = "HTTP/1.1 200 Connection established\r\n\r\n"
    expect((await c.read(est.length)).toString()).toBe(est)
    expect((await c.read(10)).toString()).toBe("echo:early")
    expect(h.sessions[0]!.decided[0]!.request).toMatchObject({ dstHost: "localhost", dstPort: e.port, protocol: "http", command: "connect" })
  })

  it("CONNECT to [v6]:port on an IPv6 listener", async (ctx) => {
    if (!(await ipv6Available())) return ctx.skip("no ::1 on this machine")
    const e = await echoServer("::1")
    defer(() => e.close())
    const h = await harness(httpHandler, { host: "::1" })
    const c = await rawClient(h.port, "::1")
    defer(() => void c.socket.destroy())
    c.send(`CONNECT [::1]:${e.port} HTTP/1.1\r\nHost: [::1]:${e.port}\r\n\r\n`)
    const est = "HTTP/1.1 200 Connection established\r\n\r\n"
    expect((await c.read(est.length)).toString()).toBe(est)
    c.send("v6")
    expect((await c.read(7)).toString()).toBe("echo:v6")
    expect(h.sessions[0]!.decided[0]!.request.dstHost).toBe("::1")
  })

  it("HTTP/1.0 requests without Host are forwarded and the connection closes after the response", async () => {
    const o = await origin("A")
    const h = await harness(httpHandler)
    const c = await raw(h.port, `GET http://127.0.0.1:${o.port}/old HTTP/1.0\r\n\r\n`)
    const all = (await c.readToEnd()).toString()
    expect(all).toMatch(/^HTTP\/1\.1 200 OK\r\n/)
    expect(all).toContain("Connection: close\r\n")
    expect(all.endsWith("A GET /old ")).toBe(true)
  })

  it("a client that half-closes right after its request still gets the complete error response", async () => {
    const h = await harness(httpHandler)
    const c = await raw(h.port, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    c.socket.end()
    const all = (await c.readToEnd()).toString()
    expect(all).toMatch(/^HTTP\/1\.1 400 Bad Request\r\n[^]*\r\n\r\norigin-form request to a proxy\n$/)
  })

  it("a client that sends nothing is closed after the handshake timeout", async () => {
    const h = await harness(httpHandler, { handshakeTimeoutMs: 200 })
    const c = await raw(h.port, "")
    const t0 = Date.now()
    expect((await c.readToEnd(2000)).length).toBe(0)
    expect(Date.now() - t0).toBeGreaterThanOrEqual(150)
  })

  const status = async (h: Harness, text: string | Buffer) => {
    const c = await raw(h.port, text)
    const all = (await c.readToEnd()).toString("latin1")
    const m = /^HTTP\/1\.1 (\d{3}) /.exec(all)
    return { status: m === null ? 0 : Number(m[1]), text: all }
  }

  it("400 for malformed requests, 431 for oversized heads, 502 refused, 403 block on CONNECT", async () => {
    const h = await harness(httpHandler, { rules: "policy p {\n  rule no when dst.port == 9 -> block \"port 9 is closed to you\"\n  default allow\n}\n" })
    expect((await status(h, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")).status).toBe(400)
    expect((await status(h, "GET http://x/ HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n")).status).toBe(400)
    expect((await status(h, "POST http://x/ HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n")).status).toBe(400)
    expect((await status(h, "GET http://x/ HTTP/1.1\r\nHost : x\r\n\r\n")).status).toBe(400)
    expect((await status(h, "CONNECT nohost HTTP/1.1\r\n\r\n")).status).toBe(400)
    expect((await status(h, `GET http://x/ HTTP/1.1\r\nHost: x\r\nX: ${"a".repeat(70_000)}\r\n\r\n`)).status).toBe(431)
    expect((await status(h, `GET http://127.0.0.1:${await closedPort()}/ HTTP/1.1\r\nHost: x\r\n\r\n`)).status).toBe(502)
    const blocked = await status(h, "CONNECT 127.0.0.1:9 HTTP/1.1\r\n\r\n")
    expect(blocked.status).toBe(403)
    expect(blocked.text.endsWith("\r\n\r\nport 9 is closed to you\n")).toBe(true)
  })

  it("407 with Proxy-Authenticate without or with wrong credentials; right credentials pass and set the user", async () => {
    const o = await origin("A")
    const h = await harness(httpHandler, { auth: "required", users: { alice: "pa:ss" } })
    const url = `http://127.0.0.1:${o.port}/`
    const none = await viaProxy(h.port, url)
    expect(none.status).toBe(407)
    expect(none.headers["proxy-authenticate"]).toBe('Basic realm="proxyd"')
    const wrong = await viaProxy(h.port, url, { headers: { "Proxy-Authorization": `Basic ${Buffer.from("alice:nope").toString("base64")}` } })
    expect(wrong.status).toBe(407)
    const right = await viaProxy(h.port, url, { headers: { "Proxy-Authorization": `basic ${Buffer.from("alice:pa:ss").toString("base64")}` } })
    expect(right.status).toBe(200)
    expect(h.sessions[2]!.user).toBe("alice")
    expect(h.sessions[2]!.decided[0]!.request).toMatchObject({ user: "alice", auth: "password" })
    expect(o.seen.length).toBe(1)
    expect(o.seen[0]!.headers["proxy-authorization"]).toBeUndefined()
  })

  it("random heads: every connection gets a complete error response or closes, the handler never dies", async () => {
    const h = await harness(httpHandler, { handshakeTimeoutMs: 300 })
    const line = fc.string({ maxLength: 40, unit: fc.constantFrom("a", " ", ":", "\r", "\n", "\t", "/", "H", "\x00", "[", "]", "1") })
    const inputs = fc.sample(fc.oneof(
      fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b).toString("latin1")),
      fc.tuple(line, line).map(([a, b]) => `GET http://127.0.0.1:9/${a} HTTP/1.1\r\nHost: h\r\n${b}\r\n\r\n`),
      fc.tuple(line, line).map(([a, b]) => `CONNECT ${a} HTTP/1.1\r\n${b}\r\n\r\n`),
    ), { numRuns: 40, seed: 42 })
    await Promise.all(inputs.map(async (text) => {
      const c = await raw(h.port, Buffer.from(text, "latin1"))
      const all = (await c.readToEnd(3000)).toString("latin1")
      if (all.length > 0) expect(all).toMatch(/^HTTP\/1\.1 (400|403|431|502) [^\r]*\r\n[^]*\r\n\r\n[^]+\n$/)
    }))
    expect(h.sessions.length).toBe(inputs.length)
    expect(h.sessions.filter((x) => x.notes["defect"] !== undefined)).toEqual([])
  })
})
