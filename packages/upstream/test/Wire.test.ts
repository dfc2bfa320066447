/**
 * The hop clients against scripted peers (exact bytes: REP codes, ATYP,
 * early data coalesced with the reply), pure parsers, secrets, hashing, and
 * proxyd itself as a TLS-wrapped HTTPS upstream.
 */
import { mkdtempSync, writeFileSync } from "node:fs"
import { createServer, type Server, type Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { afterAll, describe, expect, it } from "vitest"
import { Log, Server as ProxydServer } from "@proxyd/runtime"
import { makeHttpHandler } from "@proxyd/http"
import { Check } from "@proxyd/rules"
import { makeGroup } from "../src/Group.ts"
import { prepareProgram } from "../src/Upstreams.ts"
import { connectRequest, parseHead } from "../src/HttpConnect.ts"
import { readSecret } from "../src/Secrets.ts"
import { handshakeLength, socks5Rep } from "../src/SocksClient.ts"
import { readN, repOf, startProxyd, through } from "./Harness.ts"
import { greetServer } from "./Peers.ts"
import { hasOpenssl, makeCa, serverCert } from "./Pki.ts"

const stops: Array<() => Promise<void>> = []
afterAll(async () => { for (const s of stops.reverse()) await s() })

const listen = async (server: Server): Promise<number> => {
  await new Promise<void>((r) => server.listen({ host: "127.0.0.1", port: 0 }, () => r()))
  const sockets = new Set<Socket>()
  server.on("connection", (s) => { sockets.add(s); s.on("error", () => {}) })
  stops.push(() => new Promise((r) => { for (const s of sockets) s.destroy(); server.close(() => r()) }))
  const a = server.address()
  return typeof a === "object" && a !== null ? a.port : 0
}

/** A scripted SOCKS5 upstream: records each request's ATYP and address, answers `rep`; on success sends the reply and `early` in ONE write. */
const fakeSocks5 = async (rep: number, early: string) => {
  const requests: Array<{ atyp: number; addr: string; port: number }> = []
  const port = await listen(createServer((s) => {
    let buf = Buffer.alloc(0)
    let stage = 0
    s.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      if (stage === 0 && buf.length >= 3) { s.write(Buffer.from([5, 0])); buf = buf.subarray(2 + buf[1]!); stage = 1 }
      if (stage === 1 && buf.length >= 5) {
        const atyp = buf[3]!
        const len = atyp === 1 ? 4 : atyp === 4 ? 16 : 1 + buf[4]!
        if (buf.length < 4 + len + 2) return
        const raw = buf.subarray(4, 4 + len)
        const addr = atyp === 1 ? [...raw].join(".") : atyp === 3 ? raw.subarray(1).toString() : raw.toString("hex")
        requests.push({ atyp, addr, port: buf.readUInt16BE(4 + len) })
        stage = 2
        const reply = Buffer.from([5, rep, 0, 1, 127, 0, 0, 1, 0, 80])
        if (rep !== 0) { s.end(reply); return }
        s.write(Buffer.concat([reply, Buffer.from(early)]))
        s.on("data", (x: Buffer) => s.write(x))
      }
    })
  }))
  return { port, requests }
}

/** A scripted HTTP CONNECT upstream: answers `head` and `early` in ONE write, then echoes. */
const fakeHttp = async (head: string, early: string) => {
  const seen: Array<string> = []
  const port = await listen(createServer((s) => {
    let buf = ""
    const on = (d: Buffer) => {
      buf += d.toString("latin1")
      if (!buf.includes("\r\n\r\n")) return
      s.off("data", on)
      seen.push(buf)
      s.write(head + early)
      s.on("data", (x: Buffer) => s.write(x))
    }
    s.on("data", on)
  }))
  return { port, seen }
}

const rules = (decls: string, rule = "command connect"): string => `
listen s = socks5 127.0.0.1:0
${decls}
policy default {
  rule r when ${rule} -> via f
  default block
}
`

describe("SOCKS5 hop", () => {
  it("early data in the same segment as the reply reaches the client", async () => {
    const f = await fakeSocks5(0, "early!")
    const p = await startProxyd(rules(`upstream f = socks5://127.0.0.1:${f.port}`))
    stops.push(p.stop)
    const s = await through(p.port, "example.test", 443)
    expect(await readN(s, 6)).toBe("early!")
    s.write("x")
    expect(await readN(s, 1)).toBe("x")
    s.destroy()
  })

  it("names go as names (ATYP 3); an address the policy resolved goes as that address", async () => {
    const f = await fakeSocks5(0, "")
    const byName = await startProxyd(rules(`upstream f = socks5://127.0.0.1:${f.port}`))
    stops.push(byName.stop)
    ;(await through(byName.port, "localhost", 7)).destroy()
    const resolved = await startProxyd(rules(`upstream f = socks5://127.0.0.1:${f.port}`, "dst.ip in [127.0.0.0/8]"))
    stops.push(resolved.stop)
    ;(await through(resolved.port, "localhost", 7)).destroy()
    expect(f.requests[0]).toEqual({ atyp: 3, addr: "localhost", port: 7 })
    expect(f.requests[1]).toEqual({ atyp: 1, addr: "127.0.0.1", port: 7 })
  })

  it("REP codes pass through to the client, Tor's extended 0xF0–0xF7 unchanged", async () => {
    for (const rep of [0x04, 0x05, 0xf2, 0xf6]) {
      const f = await fakeSocks5(rep, "")
      const p = await startProxyd(rules(`upstream f = socks5://127.0.0.1:${f.port}`))
      stops.push(p.stop)
      expect(await repOf(p.port, "abcdefghijklmnop.onion", 80)).toBe(rep)
    }
  })
})

describe("commands other than CONNECT", () => {
  it("BIND via a chain or a group is refused with REP 0x07 and a logged reason (never bound locally)", async () => {
    const f = await fakeSocks5(0, "")
    const p = await startProxyd(rules(`upstream a = socks5://127.0.0.1:${f.port}\nupstream b = socks5://127.0.0.1:${f.port}\nchain f = a -> b`, "command bind"))
    stops.push(p.stop)
    const h = await startProxyd(rules(`upstream a = socks5://127.0.0.1:${f.port}\ngroup f = failover(a)`, "command bind"))
    stops.push(h.stop)
    expect(await bindRep(p.port)).toBe(0x07)
    expect(await bindRep(h.port)).toBe(0x07)
    expect(f.requests).toEqual([])
    const closed = () => [...p.lines(), ...h.lines()].filter((l) => l["msg"] === "connection").length
    for (let i = 0; i < 100 && closed() < 2; i++) await new Promise((r) => setTimeout(r, 20))
    const reasons = [...p.lines(), ...h.lines()].filter((l) => l["msg"] === "connection").map((l) => l["upstream_bind_error"])
    expect(reasons).toEqual(["BIND needs a single SOCKS upstream; `f` is a chain", "BIND needs a single SOCKS upstream; `f` is a group"])
  })
})

const bindRep = async (port: number): Promise<number> => {
    const { connect } = await import("node:net")
    return new Promise<number>((resolve, reject) => {
      const s = connect({ host: "127.0.0.1", port })
      let buf = Buffer.alloc(0)
      let sent = false
      s.on("error", reject)
      s.write(Buffer.from([5, 1, 0]))
      s.on("data", (d: Buffer) => {
        buf = Buffer.concat([buf, d])
        if (!sent && buf.length >= 2) { sent = true; buf = buf.subarray(2); s.write(Buffer.from([5, 2, 0, 1, 127, 0, 0, 1, 0, 80])) }
        if (sent && buf.length >= 2) { s.destroy(); resolve(buf[1]!) }
      })
    })
}

describe("HTTP CONNECT hop", () => {
  it("sends CONNECT with Host and Basic credentials; early data after the head reaches the client", async () => {
    const f = await fakeHttp("HTTP/1.1 200 Connection established\r\nVia: test\r\n\r\n", "early!")
    process.env["PROXYD_TEST_H_USER"] = "carol"
    process.env["PROXYD_TEST_H_PASS"] = "pw:with:colons"
    const p = await startProxyd(rules(`upstream f = http://127.0.0.1:${f.port} auth env(PROXYD_TEST_H_USER) env(PROXYD_TEST_H_PASS)`))
    stops.push(p.stop)
    const s = await through(p.port, "2001:db8::1", 443)
    expect(await readN(s, 6)).toBe("early!")
    s.write("y")
    expect(await readN(s, 1)).toBe("y")
    s.destroy()
    expect(f.seen[0]).toBe(`CONNECT [2001:db8::1]:443 HTTP/1.1\r\nHost: [2001:db8::1]:443\r\nProxy-Authorization: Basic ${Buffer.from("carol:pw:with:colons").toString("base64")}\r\n\r\n`)
  })

  it("a non-2xx answer is a clean failure: 504 → SOCKS 0x06, 403 → 0x02, garbage → 0x01", async () => {
    const cases: Array<[string, number]> = [["HTTP/1.1 504 Gateway Timeout\r\n\r\n", 0x06], ["HTTP/1.0 403 Forbidden\r\n\r\n", 0x02], ["SSH-2.0-nope\r\n\r\n", 0x01]]
    for (const [head, rep] of cases) {
      const f = await fakeHttp(head, "")
      const p = await startProxyd(rules(`upstream f = http://127.0.0.1:${f.port}`))
      stops.push(p.stop)
      expect(await repOf(p.port, "example.test", 443)).toBe(rep)
    }
  })

  it("parses heads with bounds", () => {
    expect(parseHead(Buffer.from("HTTP/1.1 200 OK\r\nA: b\r\n\r\nrest"))).toEqual({ k: "ok", status: 200, headers: [["a", "b"]], used: 25 })
    expect(parseHead(Buffer.from("HTTP/1.1 200 OK\r\n")).k).toBe("more")
    expect(parseHead(Buffer.from("HTTP/2 200\r\n\r\n")).k).toBe("bad")
    expect(parseHead(Buffer.from("HTTP/1.1 200 OK\r\nno colon\r\n\r\n")).k).toBe("bad")
    expect(parseHead(Buffer.alloc(20_000, 0x41)).k).toBe("bad")
    expect(parseHead(Buffer.from(`HTTP/1.1 200 OK\r\n${"a: b\r\n".repeat(150)}\r\n`)).k).toBe("bad")
    expect(connectRequest({ host: "a.example", port: 80 })).toBe("CONNECT a.example:80 HTTP/1.1\r\nHost: a.example:80\r\n\r\n")
  })
})

describe("reload", () => {
  it("re-reads secrets; a missing one rejects the reload and the running policy keeps its credentials", async () => {
    const f = await fakeHttp("HTTP/1.1 200 OK\r\n\r\n", "")
    process.env["PROXYD_TEST_R_USER"] = "u1"
    process.env["PROXYD_TEST_R_PASS"] = "p1"
    const p = await startProxyd(rules(`upstream f = http://127.0.0.1:${f.port} auth env(PROXYD_TEST_R_USER) env(PROXYD_TEST_R_PASS)`))
    stops.push(p.stop)
    const basic = (u: string, pw: string) => `Proxy-Authorization: Basic ${Buffer.from(`${u}:${pw}`).toString("base64")}`
    ;(await through(p.port, "a.example", 443)).destroy()
    expect(f.seen[0]).toContain(basic("u1", "p1"))
    process.env["PROXYD_TEST_R_PASS"] = "p2"
    expect((await Effect.runPromise(p.handle.reload())).ok).toBe(true)
    ;(await through(p.port, "a.example", 443)).destroy()
    expect(f.seen[1]).toContain(basic("u1", "p2"))
    delete process.env["PROXYD_TEST_R_PASS"]
    const r = await Effect.runPromise(p.handle.reload())
    expect(r.ok).toBe(false)
    expect(r.message).toMatch(/upstream `f`.*PROXYD_TEST_R_PASS/)
    ;(await through(p.port, "a.example", 443)).destroy()
    expect(f.seen[2]).toContain(basic("u1", "p2"))
  })
})

describe("pure parts", () => {
  it("prepares routes from the checked program: timeouts in ms, chains of chains flattened, https settings", () => {
    const dir = mkdtempSync(join(tmpdir(), "proxyd-prep-"))
    writeFileSync(join(dir, "ca.pem"), "not really a CA")
    writeFileSync(join(dir, "t.rules"), `
listen s = socks5 127.0.0.1:0
upstream a = socks5://127.0.0.1:1 connect-timeout 3s
upstream b = http://127.0.0.1:2
upstream c = https://proxy.example tls-ca "ca.pem" sni "other.example" insecure
chain ab = a -> b connect-timeout 2s timeout 9s
chain abc = ab -> c
policy default {
  rule r when dst.port == 1 -> via abc
  default via ab
}
`)
    const checked = Check.checkFiles([join(dir, "t.rules")], Check.nodeReader)
    expect(checked.program).toBeDefined()
    const { prepared, problems } = prepareProgram(checked.program!)
    expect(problems).toEqual([])
    const ab = prepared.routes.get("ab")!
    expect(ab).toMatchObject({ perHopMs: 2_000, overallMs: 9_000 })
    expect(ab.hops.map((h) => [h.name, h.connectTimeoutMs])).toEqual([["a", 3_000], ["b", undefined]])
    const abc = prepared.routes.get("abc")!
    expect(abc.hops.map((h) => h.name)).toEqual(["a", "b", "c"])
    expect(abc.hops[2]).toMatchObject({ port: 443, tls: { sni: "other.example", insecure: true } })
    expect(abc.hops[2]!.tls!.ca!.toString()).toBe("not really a CA")
  })

  it("SOCKS handshake lengths and REP", () => {
    expect(handshakeLength(Buffer.from([5, 0, 5, 0, 0, 1, 1, 2, 3, 4, 0, 80, 9, 9]), 5)).toBe(12)
    expect(handshakeLength(Buffer.from([5, 2, 1, 0, 5, 0, 0, 3, 3, 97, 98, 99, 0, 80]), 5)).toBe(14)
    expect(handshakeLength(Buffer.from([5, 0, 5, 0, 0, 4]), 5)).toBeUndefined()
    expect(handshakeLength(Buffer.from([0, 0x5a, 0, 0, 0, 0, 0, 0, 7]), 4)).toBe(8)
    expect(socks5Rep(Buffer.from([5, 0, 5, 0xf3, 0, 1]))).toBe(0xf3)
    expect(socks5Rep(Buffer.from([5, 2, 1, 0, 5, 0x05]))).toBe(0x05)
  })

  it("secrets: env, file without one trailing newline, missing ones name the source only", () => {
    const dir = mkdtempSync(join(tmpdir(), "proxyd-secret-"))
    writeFileSync(join(dir, "pw"), "secret\n\n")
    expect(readSecret({ from: "file", path: "pw" }, join(dir, "x.rules"))).toEqual({ ok: true, value: "secret\n" })
    process.env["PROXYD_TEST_S"] = "v"
    expect(readSecret({ from: "env", name: "PROXYD_TEST_S" }, "x.rules")).toEqual({ ok: true, value: "v" })
    delete process.env["PROXYD_TEST_NOPE"]
    expect(readSecret({ from: "env", name: "PROXYD_TEST_NOPE" }, "x.rules")).toEqual({ ok: false, problem: "environment variable `PROXYD_TEST_NOPE` is not set" })
  })

  it("hash groups: keys spread over members; a member going down moves only its own keys", () => {
    const span = { file: "x", start: { line: 1, col: 1, offset: 0 }, end: { line: 1, col: 1, offset: 0 } }
    const g = makeGroup({ name: "g", strategy: "hash", members: ["a", "b", "c"], hashBy: "dst", tries: 2, span } as never)
    const keys = Array.from({ length: 300 }, (_, i) => `host${i}.example`)
    const before = keys.map((k) => g.candidates({ dst: k, src: "" })[0]!)
    for (const m of ["a", "b", "c"]) expect(before.filter((x) => x === m).length).toBeGreaterThan(60)
    g.members.find((m) => m.name === "b")!.up = false
    const after = keys.map((k) => g.candidates({ dst: k, src: "" })[0]!)
    for (let i = 0; i < keys.length; i++) if (before[i] !== "b") expect(after[i]).toBe(before[i])
    expect(after.includes("b")).toBe(false)
  })
})

describe("proxyd as a TLS-wrapped HTTPS upstream", () => {
  it("CA-verified and insecure work; a wrong CA is a clean failure naming the hop", async (ctx) => {
    if (!hasOpenssl()) {
      if (process.env["CI"] === "true") throw new Error("openssl is required in CI")
      ctx.skip("openssl is not installed")
      return
    }
    const dir = mkdtempSync(join(tmpdir(), "proxyd-https-up-"))
    const ca = makeCa(dir, "ca")
    const other = makeCa(dir, "other")
    const leaf = serverCert(dir, ca, "upstream")
    writeFileSync(join(dir, "up.rules"), `
listen t = http 127.0.0.1:0 { tls cert "${leaf.cert}" key "${leaf.key}" }
policy default {
  default allow
}
`)
    const up = await Effect.runPromise(ProxydServer.startServer({ rulesFile: join(dir, "up.rules"), handlers: { http: makeHttpHandler() }, log: Log.memory(), watch: false }))
    stops.push(() => Effect.runPromise(up.shutdown(0)))
    const upPort = up.addresses()[0]!.port
    const g = await greetServer()
    stops.push(g.close)
    for (const [settings, ok] of [[`tls-ca "${ca.cert}"`, true], [`tls-ca "${ca.cert}" sni "proxy.test"`, true], ["insecure", true], [`tls-ca "${other.cert}"`, false]] as const) {
      const p = await startProxyd(rules(`upstream f = https://127.0.0.1:${upPort} ${settings}`))
      stops.push(p.stop)
      if (ok) {
        const s = await through(p.port, "127.0.0.1", g.port)
        expect(await readN(s, 6)).toBe("hello:")
        s.destroy()
      } else {
        expect(await repOf(p.port, "127.0.0.1", g.port)).toBe(0x01)
        await new Promise((r) => setTimeout(r, 100))
        const line = p.lines().find((l) => l["msg"] === "connection")
        expect(line?.["upstream_hop"]).toBe("f")
        expect(String(line?.["upstream_error"])).toMatch(/TLS to the upstream failed/)
      }
    }
  }, 60_000)
})
