/**
 * Real clients through TLS and PROXY protocol listeners: curl to an HTTPS proxy (insecure, verified
 * with a CA, mTLS), a Node TLS SOCKS5 client, and HAProxy in front with send-proxy-v2 / send-proxy.
 * curl, openssl and haproxy are required under CI=true; otherwise missing ones skip the test.
 */
import { createHash, randomBytes } from "node:crypto"
import { copyFileSync, readFileSync } from "node:fs"
import { join } from "node:path"
import * as net from "node:net"
import * as tls from "node:tls"
import { describe, expect, it } from "vitest"
import { issue, makeCa, requireTool } from "../pki.ts"
import { cleanupsAfterEach, curl, until } from "@proxyd/testkit"
import { httpOrigin, startHaproxy, startProxyd } from "./Harness.ts"
import { mkdtempSync } from "node:fs"
import { tmpdir } from "node:os"

const sha256 = (b: Buffer): string => createHash("sha256").update(b).digest("hex")

const { defer, later } = cleanupsAfterEach()

/** A temp dir with a CA, a server certificate for 127.0.0.1 and a client certificate, copied under fixed names. */
const setup = () => {
  const dir = mkdtempSync(join(tmpdir(), "proxyd-tls-e2e-"))
  const ca = makeCa(dir, "ca")
  const server = issue(dir, ca, "server", "server")
  const client = issue(dir, ca, "client", "client")
  const other = makeCa(dir, "other-ca")
  copyFileSync(ca.cert, join(dir, "clients-ca.pem"))
  return { dir, ca, server, client, other }
}

const POLICY = `
policy default {
  rule deny3 when src.ip == 127.0.0.3 -> block "carried address blocked"
  default allow
}
`

describe("HTTPS proxy and SOCKS over TLS", () => {
  it("curl --proxy https:// with --proxy-insecure, with --proxy-cacert (forwarding and CONNECT); a wrong CA fails", async (ctx) => {
    if (!requireTool("openssl", ctx, ["version"]) || !requireTool("curl", ctx)) return
    const pki = setup()
    const origin = later(await httpOrigin())
    const p = later(await startProxyd(pki.dir, `listen web = http 127.0.0.1:0 { tls cert "server.pem" key "server.key" }\n${POLICY}`))
    const proxy = `https://127.0.0.1:${p.port("web")}`
    const url = `http://127.0.0.1:${origin.port}/page`
    const insecure = await curl(["--proxy", proxy, "--proxy-insecure", url])
    expect(insecure).toMatchObject({ code: 0, stdout: "origin: GET /page" })
    const verified = await curl(["--proxy", proxy, "--proxy-cacert", pki.ca.cert, url])
    expect(verified).toMatchObject({ code: 0, stdout: "origin: GET /page" })
    const tunnel = await curl(["--proxy", proxy, "--proxy-cacert", pki.ca.cert, "--proxytunnel", url])
    expect(tunnel).toMatchObject({ code: 0, stdout: "origin: GET /page" })
    const wrongCa = await curl(["--proxy", proxy, "--proxy-cacert", pki.other.cert, url])
    expect(wrongCa.code).toBe(60) // peer certificate cannot be authenticated
    expect(await until(() => p.connections().filter((l) => l["outcome"] === "ok").length >= 3)).toBe(true)
    const ok = p.connections().filter((l) => l["outcome"] === "ok")
    for (const l of ok) expect(l).toMatchObject({ protocol: "http", tls: "TLSv1.3" })
  })

  it("mTLS: curl without a client certificate fails, with one it fetches the page", async (ctx) => {
    if (!requireTool("openssl", ctx, ["version"]) || !requireTool("curl", ctx)) return
    const pki = setup()
    const origin = later(await httpOrigin())
    const p = later(await startProxyd(pki.dir, `listen web = http 127.0.0.1:0 { tls cert "server.pem" key "server.key" ca "clients-ca.pem" }\n${POLICY}`))
    const proxy = `https://127.0.0.1:${p.port("web")}`
    const url = `http://127.0.0.1:${origin.port}/m`
    const without = await curl(["--proxy", proxy, "--proxy-cacert", pki.ca.cert, url])
    expect(without.code).not.toBe(0)
    expect(without.stdout).toBe("")
    const withCert = await curl(["--proxy", proxy, "--proxy-cacert", pki.ca.cert, "--proxy-cert", pki.client.cert, "--proxy-key", pki.client.key, url])
    expect(withCert).toMatchObject({ code: 0, stdout: "origin: GET /m" })
    expect(await until(() => p.connections().some((l) => l["outcome"] === "tls-error"))).toBe(true)
  })

  it("a Node TLS client speaks SOCKS5 to a mixed TLS listener: CONNECT and relay", async (ctx) => {
    if (!requireTool("openssl", ctx, ["version"])) return
    const pki = setup()
    const echo = net.createServer((s) => { s.on("error", () => {}); s.pipe(s) })
    await new Promise<void>((r) => echo.listen(0, "127.0.0.1", r))
    defer(() => new Promise<void>((r) => echo.close(() => r())))
    const echoPort = (echo.address() as net.AddressInfo).port
    const p = later(await startProxyd(pki.dir, `listen m = mixed 127.0.0.1:0 { tls cert "server.pem" key "server.key" }\n${POLICY}`))
    const s = tls.connect({ host: "127.0.0.1", port: p.port("m"), ca: readFileSync(pki.ca.cert), servername: "localhost" })
    defer(() => { s.destroy() })
    s.on("error", () => {})
    const chunks: Array<Buffer> = []
    let size = 0
    s.on("data", (d: Buffer) => { chunks.push(d); size += d.length })
    const got = { get length() { return size }, at: (i: number) => Buffer.concat(chunks)[i], subarray: (a: number, b?: number) => Buffer.concat(chunks).subarray(a, b) }
    await new Promise<void>((r) => s.once("secureConnect", () => r()))
    s.write(Buffer.from([0x05, 0x01, 0x00]))
    expect(await until(() => got.length >= 2)).toBe(true)
    expect([...got.subarray(0, 2)]).toEqual([0x05, 0x00])
    const req = Buffer.from([0x05, 0x01, 0x00, 0x01, 127, 0, 0, 1, echoPort >> 8, echoPort & 0xff])
    s.write(req)
    expect(await until(() => got.length >= 12)).toBe(true)
    expect(got.at(3)).toBe(0x00) // REP succeeded
    // 16 MiB of random bytes through TLS → relay (native pipe) → echo → back, compared by hash.
    const payload = randomBytes(16 * 1024 * 1024)
    const t0 = Date.now()
    s.write(payload)
    expect(await until(() => got.length >= 12 + payload.length, 30_000)).toBe(true)
    const ms = Date.now() - t0
    expect(sha256(got.subarray(12))).toBe(sha256(payload))
    console.log(`SOCKS5 over TLS: 16 MiB echoed (32 MiB through the relay) in ${ms} ms`)
    s.end()
    expect(await until(() => p.connections().some((l) => l["protocol"] === "socks5" && l["outcome"] === "ok"))).toBe(true)
  })
})

describe("HAProxy in front (PROXY protocol)", () => {
  for (const variant of ["send-proxy-v2", "send-proxy"]) {
    it(`${variant}: the address HAProxy saw is src for the log and the policy`, async (ctx) => {
      if (!requireTool("haproxy", ctx, ["-v"]) || !requireTool("curl", ctx)) return
      const dir = mkdtempSync(join(tmpdir(), "proxyd-pp-e2e-"))
      const origin = later(await httpOrigin())
      const p = later(await startProxyd(dir, `listen lb = http 127.0.0.1:0 { proxy-protocol from [127.0.0.1] }\n${POLICY}`))
      const ha = later(await startHaproxy(dir, p.port("lb"), variant))
      const url = `http://127.0.0.1:${origin.port}/via-haproxy`
      const two = await curl(["--interface", "127.0.0.2", "-x", `http://127.0.0.1:${ha.port}`, url])
      expect(two).toMatchObject({ code: 0, stdout: "origin: GET /via-haproxy" })
      const three = await curl(["--interface", "127.0.0.3", "-x", `http://127.0.0.1:${ha.port}`, "-w", "%{http_code}", "-o", "/dev/null", url])
      expect(three.stdout).toBe("403")
      // Wait for both client lines: the harness's readiness probe (from 127.0.0.1) logs a line of its own,
      // so a count alone can be reached before the 127.0.0.3 line is written.
      const has = (prefix: string) => p.connections().some((l) => String(l["src"]).startsWith(prefix))
      expect(await until(() => has("127.0.0.2:") && has("127.0.0.3:"))).toBe(true)
      const lines = p.connections()
      const fromTwo = lines.find((l) => String(l["src"]).startsWith("127.0.0.2:"))
      const fromThree = lines.find((l) => String(l["src"]).startsWith("127.0.0.3:"))
      expect(fromTwo, JSON.stringify(lines)).toMatchObject({ outcome: "ok", protocol: "http", action: "allow" })
      expect(String(fromTwo!["proxy"])).toMatch(/^127\.0\.0\.1:\d+$/)
      expect(fromThree, JSON.stringify(lines)).toMatchObject({ rule: "deny3", action: "block" })
      // No request was attributed to HAProxy's own address (the harness's readiness probe, from 127.0.0.1, made none).
      const requests = lines.filter((l) => l["dst"] !== undefined)
      expect(requests).toHaveLength(2)
      expect(requests.filter((l) => String(l["src"]).startsWith("127.0.0.1:"))).toEqual([])
    })
  }

  it("send-proxy-v2 in front of a TLS listener: PROXY header first, then TLS (curl --proxy https://)", async (ctx) => {
    if (!requireTool("haproxy", ctx, ["-v"]) || !requireTool("curl", ctx) || !requireTool("openssl", ctx, ["version"])) return
    const pki = setup()
    const origin = later(await httpOrigin())
    const p = later(await startProxyd(pki.dir, `listen lb = http 127.0.0.1:0 { tls cert "server.pem" key "server.key" proxy-protocol from [127.0.0.1] }\n${POLICY}`))
    const ha = later(await startHaproxy(pki.dir, p.port("lb"), "send-proxy-v2"))
    const r = await curl(["--interface", "127.0.0.2", "--proxy", `https://127.0.0.1:${ha.port}`, "--proxy-cacert", pki.ca.cert, `http://127.0.0.1:${origin.port}/tls`])
    expect(r).toMatchObject({ code: 0, stdout: "origin: GET /tls" })
    // The harness's readiness probe (src 127.0.0.1) may log a line of its own first: pick the client's by src.
    const client = () => p.connections().find((l) => String(l["src"]).startsWith("127.0.0.2:"))
    expect(await until(() => client() !== undefined)).toBe(true)
    expect(client()).toMatchObject({ outcome: "ok", tls: "TLSv1.3" })
  })

  it("HAProxy is refused when the listener does not trust its address", async (ctx) => {
    if (!requireTool("haproxy", ctx, ["-v"]) || !requireTool("curl", ctx)) return
    const dir = mkdtempSync(join(tmpdir(), "proxyd-pp-e2e-"))
    const origin = later(await httpOrigin())
    const p = later(await startProxyd(dir, `listen lb = http 127.0.0.1:0 { proxy-protocol from [192.0.2.0/24] }\n${POLICY}`))
    const ha = later(await startHaproxy(dir, p.port("lb"), "send-proxy-v2"))
    const r = await curl(["--interface", "127.0.0.2", "-x", `http://127.0.0.1:${ha.port}`, `http://127.0.0.1:${origin.port}/no`])
    expect(r.code).not.toBe(0)
    expect(r.stdout).not.toContain("origin")
    expect(await until(() => p.connections().length >= 1)).toBe(true)
    expect(p.connections()[0]).toMatchObject({ outcome: "proxy-untrusted" })
  })
})
