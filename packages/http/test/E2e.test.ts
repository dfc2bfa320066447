/**
 * End to end through the real runtime (`startServer`) with curl as the
 * client: `-x http://` forwarding and `--proxytunnel` (CONNECT), with and
 * without credentials, blocks, and keep-alive across authorities.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Auth } from "@proxyd/runtime"
import { httpHandler } from "../src/index.ts"
import { curl, httpOrigin, needCurl, type Origin, type Proxyd, startProxyd } from "@proxyd/testkit"

let proxyd: Proxyd
let origin: Origin
let other: Origin
let blocked: Origin

beforeAll(async () => {
  origin = await httpOrigin()
  other = await httpOrigin()
  blocked = await httpOrigin()
  const hash = await Auth.hashPassword("pa:ss word")
  proxyd = await startProxyd(`
options { handshake-timeout 3s }
auth users = static {
  alice "${hash}"
}
listen h = http 127.0.0.1:0
listen ha = http 127.0.0.1:0 auth users
policy default {
  rule no when dst.port == ${blocked.port} -> block "that origin is off limits"
  default allow
}
`, { http: httpHandler })
})

afterAll(async () => {
  await proxyd?.stop()
  await origin?.close()
  await other?.close()
  await blocked?.close()
})

const url = (port: number, host = "127.0.0.1", path = "/page") => `http://${host}:${port}${path}`

describe("curl through the HTTP listener", () => {
  it("-x http:// forwarding and --proxytunnel", async (ctx) => {
    if (!needCurl(ctx)) return
    const proxy = `http://127.0.0.1:${proxyd.port("h")}`
    expect(await curl(["-x", proxy, url(origin.port)])).toMatchObject({ code: 0, stdout: "origin says hi to GET /page" })
    expect(await curl(["-x", proxy, "--proxytunnel", url(origin.port, "localhost")])).toMatchObject({ code: 0, stdout: "origin says hi to GET /page" })
    expect(await curl(["-x", proxy, "--data-binary", "abc", url(origin.port)])).toMatchObject({ code: 0, stdout: "origin says hi to POST /page with abc" })
    const last = origin.seen.at(-1)!
    expect(last.url).toBe("/page")
    expect(last.headers["proxy-connection"]).toBeUndefined()
  })

  it("large bodies: Expect: 100-continue is answered without curl's 1 s wait; chunked uploads pass through", async (ctx) => {
    if (!needCurl(ctx)) return
    const proxy = `http://127.0.0.1:${proxyd.port("h")}`
    const dir = mkdtempSync(join(tmpdir(), "proxyd-http-body-"))
    try {
      const body = "0123456789abcdef".repeat(16_384)
      writeFileSync(join(dir, "body"), body)
      const t0 = Date.now()
      const r = await curl(["-x", proxy, "-H", "Expect: 100-continue", "--data-binary", `@${join(dir, "body")}`, url(origin.port, "127.0.0.1", "/big")])
      expect(r.code).toBe(0)
      expect(r.stdout).toBe(`origin says hi to POST /big with ${body}`)
      expect(origin.seen.at(-1)!.headers["expect"]).toBe("100-continue")
      expect(Date.now() - t0).toBeLessThan(900)
      const c = await curl(["-x", proxy, "-H", "Transfer-Encoding: chunked", "--data-binary", `@${join(dir, "body")}`, url(origin.port, "127.0.0.1", "/chunked")])
      expect(c.stdout).toBe(`origin says hi to POST /chunked with ${body}`)
      expect(origin.seen.at(-1)!.headers["transfer-encoding"]).toBe("chunked")
    } finally {
      rmSync(dir, { recursive: true, force: true })
    }
  })

  it("one curl run, several URLs on one kept-alive connection, each routed by its own authority", async (ctx) => {
    if (!needCurl(ctx)) return
    const proxy = `http://127.0.0.1:${proxyd.port("h")}`
    const before = proxyd.connections().length
    const r = await curl(["-x", proxy, url(origin.port, "127.0.0.1", "/a"), url(other.port, "127.0.0.1", "/b"), url(origin.port, "127.0.0.1", "/c")])
    expect(r).toMatchObject({ code: 0, stdout: "origin says hi to GET /aorigin says hi to GET /borigin says hi to GET /c" })
    expect(other.seen.map((x) => x.url)).toContain("/b")
    for (let i = 0; i < 100 && proxyd.connections().length === before; i++) await new Promise((res) => setTimeout(res, 20))
    expect(proxyd.connections().length).toBe(before + 1)
  })

  it("blocked destinations get 403 with the block message, forwarding and tunnel alike", async (ctx) => {
    if (!needCurl(ctx)) return
    const proxy = `http://127.0.0.1:${proxyd.port("h")}`
    const a = await curl(["-x", proxy, "-w", "%{http_code}", url(blocked.port)])
    expect(a.stdout).toBe("that origin is off limits\n403")
    const b = await curl(["-x", proxy, "--proxytunnel", "-w", "%{http_code}", url(blocked.port)])
    expect(b.code).not.toBe(0)
    expect(b.stderr).toMatch(/403/)
    expect(blocked.seen.length).toBe(0)
  })

  it("credentials: 407 without or with wrong ones, success with the right ones (forwarding and tunnel); no secret in the log", async (ctx) => {
    if (!needCurl(ctx)) return
    const proxy = `http://127.0.0.1:${proxyd.port("ha")}`
    const none = await curl(["-x", proxy, "-w", "%{http_code}", "-o", "/dev/null", url(origin.port)])
    expect(none.stdout).toBe("407")
    const wrong = await curl(["-x", proxy, "--proxy-user", "alice:nope", "-w", "%{http_code}", "-o", "/dev/null", url(origin.port)])
    expect(wrong.stdout).toBe("407")
    const ok = await curl(["-x", proxy, "--proxy-user", "alice:pa:ss word", url(origin.port)])
    expect(ok).toMatchObject({ code: 0, stdout: "origin says hi to GET /page" })
    const tunnel = await curl(["-x", proxy, "--proxy-user", "alice:pa:ss word", "--proxytunnel", url(origin.port)])
    expect(tunnel).toMatchObject({ code: 0, stdout: "origin says hi to GET /page" })
    expect(origin.seen.at(-2)!.headers["proxy-authorization"]).toBeUndefined()
    const logs = proxyd.log.lines.join("\n")
    expect(logs).not.toContain("pa:ss word")
    expect(logs).not.toContain(Buffer.from("alice:pa:ss word").toString("base64"))
    const alice = () => proxyd.connections().filter((l) => l["user"] === "alice").length
    for (let i = 0; i < 100 && alice() < 2; i++) await new Promise((res) => setTimeout(res, 20))
    expect(alice()).toBe(2)
  })
})
