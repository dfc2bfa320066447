/**
 * TLS listeners through the real runtime (test line protocol, see support.ts): relay over TLS,
 * sniffing after TLS, mTLS, handshake timeout, certificate rotation by reload, PROXY header before TLS.
 */
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from "node:fs"
import * as net from "node:net"
import { Duplex } from "node:stream"
import * as tls from "node:tls"
import { join } from "node:path"
import { Effect } from "effect"
import { afterEach, describe, expect, it } from "vitest"
import { issue, makeCa, requireTool, type KeyPair } from "./pki.ts"
import { dial, localServer, start, tempDir, until, writeRules, type Started, type TestServer } from "./support.ts"

const cleanups: Array<() => Promise<void> | void> = []
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c()
})
const track = <A extends Started | TestServer>(x: A): A => {
  cleanups.push(() => ("handle" in x ? x.stop(0) : x.close()))
  return x
}

interface TlsClient {
  readonly socket: tls.TLSSocket
  text(): string
  closed(): boolean
  waitText(s: string, ms?: number): Promise<boolean>
}

/** A TLS client; resolves once the handshake completed or failed (then `error` is set). */
const dialTls = async (port: number, opts: tls.ConnectionOptions = {}): Promise<TlsClient & { error: Error | undefined }> => {
  const socket = tls.connect({ host: "127.0.0.1", port, rejectUnauthorized: false, ...opts })
  cleanups.push(() => { socket.destroy() })
  let buf = ""
  let closed = false
  let error: Error | undefined
  socket.on("data", (c: Buffer) => { buf += c.toString("utf8") })
  socket.on("close", () => { closed = true })
  socket.on("error", (e) => { error = e })
  await new Promise<void>((resolve) => { socket.once("secureConnect", () => resolve()); socket.once("close", () => resolve()) })
  return {
    socket,
    get error() { return error },
    text: () => buf,
    closed: () => closed,
    waitText: (s, ms = 5_000) => until(() => buf.includes(s), ms),
  }
}

const readText = (path: string): string => readFileSync(path, "utf8")
const run = <A>(e: Effect.Effect<A>): Promise<A> => Effect.runPromise(e)

interface Pki { readonly dir: string; readonly ca: KeyPair; readonly server: KeyPair; readonly server2: KeyPair; readonly client: KeyPair; readonly stranger: KeyPair }

const pki = (): Pki => {
  const dir = tempDir()
  const ca = makeCa(dir, "test-ca")
  const other = makeCa(dir, "other-ca")
  return {
    dir, ca,
    server: issue(dir, ca, "server-one", "server"),
    server2: issue(dir, ca, "server-two", "server"),
    client: issue(dir, ca, "client-good", "client"),
    stranger: issue(dir, other, "client-stranger", "client"),
  }
}

/** Rules with a TLS listener whose cert/key are `tls/cert.pem`/`tls/key.pem` next to the rules file (relative paths). */
const tlsRules = (p: Pki, settings: string, kind = "http"): string => {
  const tdir = join(p.dir, "tls")
  mkdirSync(tdir, { recursive: true })
  copyFileSync(p.server.cert, join(tdir, "cert.pem"))
  copyFileSync(p.server.key, join(tdir, "key.pem"))
  return writeRules(p.dir, `
listen t = ${kind} 127.0.0.1:0 { tls cert file("tls/cert.pem") key "tls/key.pem" ${settings} }
policy default {
  rule p9 when dst.port == 9 -> block "nine"
  rule carried when src.ip in [203.0.113.0/24] -> block "carried"
  default allow
}
`)
}

describe("TLS listeners", () => {
  it("serves over TLS: handshake, decision, relay both ways through the TLS socket; a plain-TCP client is a logged tls-error", async (ctx) => {
    if (!requireTool("openssl", ctx, ["version"])) return
    const p = pki()
    const echo = track(await localServer())
    const s = track(await start(tlsRules(p, "")))
    const c = await dialTls(s.port, { ca: [readText(p.ca.cert)], checkServerIdentity: () => undefined })
    expect(c.error).toBeUndefined()
    expect(c.socket.authorized).toBe(true)
    c.socket.write(`CONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await c.waitText("OK 127.0.0.1:")).toBe(true)
    const big = "z".repeat(200_000) + "\n"
    c.socket.write(big)
    expect(await c.waitText(big)).toBe(true)
    c.socket.end()
    expect(await until(() => s.connections().some((l) => l["outcome"] === "ok"))).toBe(true)
    const line = s.connections().find((l) => l["outcome"] === "ok")!
    expect(line).toMatchObject({ listener: "t", protocol: "http", tls: "TLSv1.3", bytes_up: big.length })
    expect(String(line["src"])).toMatch(/^127\.0\.0\.1:\d+$/)

    const plain = await dial(s.port, `CONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await until(() => plain.closed())).toBe(true)
    expect(plain.text()).not.toContain("OK")
    expect(await until(() => s.connections().some((l) => l["outcome"] === "tls-error"))).toBe(true)
    const bad = s.connections().find((l) => l["outcome"] === "tls-error")!
    expect(String(bad["error"])).toMatch(/^TLS handshake failed: /)
    expect(bad["protocol"]).toBeUndefined()
  })

  it("a mixed TLS listener sniffs the protocol inside TLS", async (ctx) => {
    if (!requireTool("openssl", ctx, ["version"])) return
    const p = pki()
    const s = track(await start(tlsRules(p, "", "mixed")))
    const c = await dialTls(s.port)
    c.socket.write("\x05 HELLO\n")
    expect(await c.waitText("HELLO socks5")).toBe(true)
    const d = await dialTls(s.port)
    d.socket.write("HELLO\n")
    expect(await d.waitText("HELLO http")).toBe(true)
  })

  it("mTLS: no client certificate or one from another CA is rejected; a good one is served", async (ctx) => {
    if (!requireTool("openssl", ctx, ["version"])) return
    const p = pki()
    const echo = track(await localServer())
    copyFileSync(p.ca.cert, join(p.dir, "clients.pem"))
    const s = track(await start(tlsRules(p, `ca "clients.pem"`)))
    const none = await dialTls(s.port)
    none.socket.write(`CONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await until(() => none.closed())).toBe(true)
    expect(none.text()).toBe("")
    const stranger = await dialTls(s.port, { cert: readText(p.stranger.cert), key: readText(p.stranger.key) })
    stranger.socket.write(`CONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await until(() => stranger.closed())).toBe(true)
    expect(stranger.text()).toBe("")
    expect(echo.accepted()).toBe(0)
    const good = await dialTls(s.port, { cert: readText(p.client.cert), key: readText(p.client.key) })
    good.socket.write(`CONNECT 127.0.0.1 ${echo.port}\nping\n`)
    expect(await good.waitText("ping\n")).toBe(true)
    expect(await until(() => s.connections().filter((l) => l["outcome"] === "tls-error").length === 2)).toBe(true)
    for (const l of s.connections().filter((x) => x["outcome"] === "tls-error")) {
      expect(String(l["error"])).toMatch(/certificate/i)
      expect(String(l["error"])).not.toMatch(/BEGIN/)
    }
  })

  it("the handshake timeout covers the TLS handshake", async (ctx) => {
    if (!requireTool("openssl", ctx, ["version"])) return
    const p = pki()
    const s = track(await start(tlsRules(p, "handshake-timeout 300ms")))
    const silent = await dial(s.port)
    const t0 = Date.now()
    expect(await until(() => silent.closed(), 3_000)).toBe(true)
    expect(Date.now() - t0).toBeLessThan(2_000)
    expect(await until(() => s.connections().some((l) => l["outcome"] === "handshake-timeout"))).toBe(true)
  })

  it("reload swaps the certificate; a broken one fails the reload and the old certificate keeps serving", async (ctx) => {
    if (!requireTool("openssl", ctx, ["version"])) return
    const p = pki()
    const echo = track(await localServer())
    const s = track(await start(tlsRules(p, "")))
    const cn = async () => {
      const c = await dialTls(s.port)
      const name = c.socket.getPeerCertificate().subject?.CN
      c.socket.destroy()
      return name
    }
    expect(await cn()).toBe("server-one")
    const held = await dialTls(s.port)
    held.socket.write(`CONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await held.waitText("OK ")).toBe(true)

    copyFileSync(p.server2.cert, join(p.dir, "tls", "cert.pem"))
    copyFileSync(p.server2.key, join(p.dir, "tls", "key.pem"))
    const r = await run(s.handle.reload())
    expect(r.ok).toBe(true)
    expect(await cn()).toBe("server-two")
    held.socket.write("still\n")
    expect(await held.waitText("still\n")).toBe(true)

    // A key that does not match the certificate: refused, the running one stays.
    copyFileSync(p.server.key, join(p.dir, "tls", "key.pem"))
    const bad = await run(s.handle.reload())
    expect(bad.ok).toBe(false)
    expect(bad.message).toMatch(/listener `t`: TLS certificate .*cert\.pem/)
    expect(bad.message).not.toMatch(/BEGIN/)
    writeFileSync(join(p.dir, "tls", "cert.pem"), "not a pem\n")
    expect((await run(s.handle.reload())).ok).toBe(false)
    expect(await cn()).toBe("server-two")
  })

  it("a reload that adds tls to a running listener serves new connections over TLS only", async (ctx) => {
    if (!requireTool("openssl", ctx, ["version"])) return
    const p = pki()
    const echo = track(await localServer())
    const file = tlsRules(p, "")
    const plainRules = readText(file).replace(/\{ tls cert file\("tls\/cert.pem"\) key "tls\/key.pem"  \}/, "")
    expect(plainRules).not.toContain("tls")
    writeFileSync(file, plainRules)
    const s = track(await start(file))
    const before = await dial(s.port, `CONNECT 127.0.0.1 ${echo.port}\nplain\n`)
    expect(await before.waitText("plain\n")).toBe(true)
    tlsRules(p, "")
    expect((await run(s.handle.reload())).ok).toBe(true)
    const after = await dial(s.port, `CONNECT 127.0.0.1 ${echo.port}\nplain\n`)
    expect(await until(() => after.closed())).toBe(true)
    expect(after.text()).not.toContain("OK")
    const c = await dialTls(s.port)
    c.socket.write(`CONNECT 127.0.0.1 ${echo.port}\nsecure\n`)
    expect(await c.waitText("secure\n")).toBe(true)
    // The connection accepted before the reload is untouched.
    before.socket.write("again\n")
    expect(await before.waitText("again\n")).toBe(true)
  })

  it("a broken certificate refuses to start, naming the listener and the file", async (ctx) => {
    if (!requireTool("openssl", ctx, ["version"])) return
    const p = pki()
    const rules = writeRules(p.dir, `listen t = http 127.0.0.1:0 { tls cert "missing.pem" key "missing.key" }\npolicy default { default allow }\n`)
    await expect(start(rules)).rejects.toThrow(/listener `t`: cannot read TLS certificate .*missing\.pem: ENOENT/)
  })

  it("TLS + PROXY protocol: the header comes first, outside TLS; its address is the connection's source", async (ctx) => {
    if (!requireTool("openssl", ctx, ["version"])) return
    const p = pki()
    const echo = track(await localServer())
    const s = track(await start(tlsRules(p, "proxy-protocol from [127.0.0.1]")))
    const raw = net.connect(s.port, "127.0.0.1")
    await new Promise<void>((r) => raw.once("connect", () => r()))
    raw.write("PROXY TCP4 198.51.100.20 127.0.0.1 5555 443\r\n")
    const c = await dialTls(0, { socket: raw })
    c.socket.write(`CONNECT 127.0.0.1 ${echo.port}\nthrough\n`)
    expect(await c.waitText("through\n")).toBe(true)
    c.socket.end()
    // A carried address in 203.0.113.0/24 meets the policy's `src.ip` rule.
    const raw2 = net.connect(s.port, "127.0.0.1")
    await new Promise<void>((r) => raw2.once("connect", () => r()))
    raw2.write("PROXY TCP4 203.0.113.5 127.0.0.1 6666 443\r\n")
    const d = await dialTls(0, { socket: raw2 })
    d.socket.write(`CONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await d.waitText("ERR blocked carried")).toBe(true)
    expect(await until(() => s.connections().length === 2)).toBe(true)
    const [a, b] = [s.connections().find((l) => l["src"] === "198.51.100.20:5555"), s.connections().find((l) => l["src"] === "203.0.113.5:6666")]
    expect(a).toMatchObject({ outcome: "ok", tls: "TLSv1.3" })
    expect(String(a!["proxy"])).toMatch(/^127\.0\.0\.1:\d+$/)
    expect(b).toMatchObject({ rule: "carried", action: "block" })
  })

  it("TLS + PROXY protocol: a header and the ClientHello in one segment", async (ctx) => {
    if (!requireTool("openssl", ctx, ["version"])) return
    const p = pki()
    const echo = track(await localServer())
    const s = track(await start(tlsRules(p, "proxy-protocol from [127.0.0.1]")))
    const raw = net.connect(s.port, "127.0.0.1")
    await new Promise<void>((r) => raw.once("connect", () => r()))
    // A JS duplex in front of the raw socket: its first write (the ClientHello) goes out glued to the header.
    let first = true
    const glue = new Duplex({
      write(chunk: Buffer, _enc, cb) {
        raw.write(first ? Buffer.concat([Buffer.from("PROXY TCP4 198.51.100.30 127.0.0.1 7777 443\r\n"), chunk]) : chunk, cb)
        first = false
      },
      read() { raw.resume() },
      final(cb) { raw.end(cb) },
    })
    raw.on("data", (d: Buffer) => { if (!glue.push(d)) raw.pause() })
    raw.on("end", () => glue.push(null))
    raw.on("error", () => {})
    cleanups.push(() => { raw.destroy() })
    const c = await dialTls(0, { socket: glue })
    expect(c.error).toBeUndefined()
    c.socket.write(`CONNECT 127.0.0.1 ${echo.port}\nglued\n`)
    expect(await c.waitText("glued\n")).toBe(true)
    c.socket.end()
    expect(await until(() => s.connections().some((l) => l["src"] === "198.51.100.30:7777" && l["outcome"] === "ok"))).toBe(true)
  })
})
