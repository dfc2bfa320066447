/**
 * End-to-end auth through the real `proxyd` binary and curl: htpasswd files
 * made by `proxyd passwd` (bcrypt, argon2id, scrypt) and by Apache's
 * `htpasswd -B`, used over SOCKS5 (RFC 1929) and HTTP (Basic); a webhook
 * served by a local HTTP server whose groups reach the policy; and a
 * brute-force run of 50 wrong passwords that gets its source banned while
 * another source (127.0.0.2) keeps working.
 */
import { execFileSync } from "node:child_process"
import { createServer } from "node:http"
import { appendFileSync, mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { curl, httpOrigin, needCurl, type Origin } from "@proxyd/testkit"
import { BIN, ROOT } from "./proxyd.ts"
import { needTool, start, stop, waitFor } from "./spawn.ts"

let origin: Origin
beforeAll(async () => {
  origin = await httpOrigin((method, url) => `hello ${method} ${url}`)
})
afterAll(() => origin.close())

const passwd = (algo: string, user: string, pass: string): string =>
  execFileSync(process.execPath, [BIN, "passwd", "--algo", algo, user], { input: `${pass}\n`, encoding: "utf8", cwd: ROOT }).trim()

const dir = () => mkdtempSync(join(tmpdir(), "proxyd-auth-e2e-"))

const socks = (port: number, cred: string, extra: ReadonlyArray<string> = []) =>
  curl([...extra, "--socks5-hostname", `127.0.0.1:${port}`, "--proxy-user", cred, `http://localhost:${origin.port}/x`])

describe("htpasswd auth through the real server", () => {
  it("accepts users from proxyd passwd (bcrypt, argon2id, scrypt) and Apache htpasswd -B over SOCKS5 and HTTP; refuses wrong passwords", async (ctx) => {
    needCurl(ctx)
    needTool(ctx, "htpasswd", "-nbB")
    const d = dir()
    const apache = execFileSync("htpasswd", ["-nbB", "-C", "6", "apache", "from apache"], { encoding: "utf8" }).trim()
    const lines = [passwd("bcrypt", "bee", "pw bee"), passwd("argon2id", "argo", "pw argo"), passwd("scrypt", "scry", "pw scry"), apache]
    writeFileSync(join(d, "users.htpasswd"), `${lines.join("\n")}\n`)
    writeFileSync(join(d, "a.rules"), [
      'auth users = htpasswd "users.htpasswd"',
      "listen mixed 127.0.0.1:1080 auth users",
      "policy p {",
      "  rule only-users when user in [bee, argo, scry, apache] -> allow",
      "  default block",
      "}",
      "",
    ].join("\n"))
    const p = await start(join(d, "a.rules"))
    try {
      for (const cred of ["bee:pw bee", "argo:pw argo", "scry:pw scry", "apache:from apache"]) {
        const viaSocks = await socks(p.port, cred)
        expect(viaSocks.stdout, `${cred.split(":")[0]} over socks5: ${viaSocks.stderr}`).toBe("hello GET /x")
        const viaHttp = await curl(["-x", `http://127.0.0.1:${p.port}`, "--proxy-user", cred, `http://localhost:${origin.port}/y`])
        expect(viaHttp.stdout, `${cred.split(":")[0]} over http: ${viaHttp.stderr}`).toBe("hello GET /y")
      }
      expect((await socks(p.port, "bee:wrong")).code).not.toBe(0)
      expect((await socks(p.port, "nobody:pw bee")).code).not.toBe(0)
      const http = await curl(["-x", `http://127.0.0.1:${p.port}`, "--proxy-user", "apache:nope", "-o", "/dev/null", "-w", "%{http_code}", `http://localhost:${origin.port}/z`])
      expect(http.stdout).toBe("407")
      expect(p.lines.join("\n")).not.toContain("pw bee")
    } finally {
      await stop(p)
    }
  })
})

describe("htpasswd reload", () => {
  it("a user added to the htpasswd file (proxyd passwd >> file) is accepted without a restart", async (ctx) => {
    needCurl(ctx)
    const d = dir()
    const file = join(d, "users.htpasswd")
    writeFileSync(file, `${passwd("bcrypt", "old", "pw old")}\n`)
    writeFileSync(join(d, "a.rules"), 'auth users = htpasswd "users.htpasswd"\nlisten mixed 127.0.0.1:1080 auth users\npolicy p {\n  default allow\n}\n')
    const p = await start(join(d, "a.rules"))
    try {
      expect((await socks(p.port, "old:pw old")).stdout).toBe("hello GET /x")
      expect((await socks(p.port, "new:pw new")).code).not.toBe(0)
      appendFileSync(file, `${passwd("argon2id", "new", "pw new")}\n`)
      expect(await waitFor(() => p.lines.some((l) => l.includes('"msg":"policy reloaded"')), 10_000)).toBe(true)
      expect((await socks(p.port, "new:pw new")).stdout).toBe("hello GET /x")
      expect((await socks(p.port, "old:pw old")).stdout).toBe("hello GET /x")
    } finally {
      await stop(p)
    }
  })
})

describe("webhook auth through the real server", () => {
  it("a local webhook decides; its groups feed the `group` field; a down webhook fails closed", async (ctx) => {
    needCurl(ctx)
    const seen: Array<Record<string, unknown>> = []
    const hook = createServer((req, res) => {
      const parts: Array<Buffer> = []
      req.on("data", (c: Buffer) => parts.push(c))
      req.on("end", () => {
        const body = JSON.parse(Buffer.concat(parts).toString("utf8")) as Record<string, unknown>
        seen.push(body)
        if (body["password"] !== "ok") { res.writeHead(403); res.end(); return }
        res.writeHead(200, { "content-type": "application/json" })
        res.end(JSON.stringify({ groups: body["user"] === "ann" ? ["staff"] : [] }))
      })
    })
    await new Promise<void>((r) => hook.listen(0, "127.0.0.1", () => r()))
    const hookPort = (hook.address() as { port: number }).port
    const d = dir()
    writeFileSync(join(d, "a.rules"), [
      `auth hook = webhook "http://127.0.0.1:${hookPort}/auth" timeout 1s cache 1m`,
      "listen mixed 127.0.0.1:1080 auth hook",
      "policy p {",
      "  rule staff when group == staff -> allow",
      '  default block "staff only"',
      "}",
      "",
    ].join("\n"))
    const p = await start(join(d, "a.rules"))
    try {
      expect((await socks(p.port, "ann:ok")).stdout).toBe("hello GET /x")
      expect(seen[0]).toMatchObject({ user: "ann", password: "ok", src: "127.0.0.1", listener: "mixed" })
      // Authenticated but not in the group: the policy blocks.
      expect((await socks(p.port, "bob:ok")).code).not.toBe(0)
      expect((await socks(p.port, "ann:bad")).code).not.toBe(0)
      await new Promise<void>((r) => hook.close(() => r()))
      // Down: new credentials are refused (cached ones are still valid for the TTL).
      expect((await socks(p.port, "carl:ok")).code).not.toBe(0)
    } finally {
      hook.close()
      await stop(p)
    }
  })
})

describe("brute-force defence through the real server", () => {
  it("50 wrong passwords from 127.0.0.1 get it banned (fail2ban lines logged) while 127.0.0.2 keeps working", async (ctx) => {
    needCurl(ctx)
    const d = dir()
    writeFileSync(join(d, "users.htpasswd"), `${passwd("bcrypt", "alice", "right")}\n`)
    writeFileSync(join(d, "a.rules"), [
      'auth users = htpasswd "users.htpasswd"',
      "auth-guard delay 10ms max-delay 50ms ban-after 10 ban 10m",
      "admin listen 127.0.0.1:0",
      "listen mixed 127.0.0.1:1080 auth users",
      "policy p {",
      "  default allow",
      "}",
      "",
    ].join("\n"))
    const p = await start(join(d, "a.rules"))
    try {
      expect((await socks(p.port, "alice:right")).stdout).toBe("hello GET /x")
      for (let i = 0; i < 50; i++) expect((await socks(p.port, `alice:wrong${i}`)).code).not.toBe(0)
      // Banned: even the right password is refused from this source...
      expect((await socks(p.port, "alice:right")).code).not.toBe(0)
      // ...while another source is served.
      const other = await socks(p.port, "alice:right", ["--interface", "127.0.0.2"])
      expect(other.stdout, other.stderr).toBe("hello GET /x")
      const re = /^\{"time":"[^"]+","level":"warn","msg":"auth failure","src":"([^"]+)"/
      const failures = p.lines.map((l) => re.exec(l)).filter((m) => m !== null)
      expect(failures.length).toBe(51)
      expect(failures.every((m) => m[1] === "127.0.0.1")).toBe(true)
      expect(p.lines.filter((l) => l.includes('"msg":"auth ban"') && l.includes('"src":"127.0.0.1"'))).toHaveLength(1)
      expect(p.lines.join("\n")).not.toContain("wrong1")
      // The ban is counted in proxyd_bans_total, scraped from the admin API's /metrics.
      const adminLine = p.lines.find((l) => l.includes('"msg":"admin API listening"'))
      const adminPort = Number(/"port":(\d+)/.exec(adminLine ?? "")?.[1])
      expect(adminPort).toBeGreaterThan(0)
      const scraped = await fetch(`http://127.0.0.1:${adminPort}/metrics`).then((r) => r.text())
      expect(scraped.split("\n").filter((l) => l.startsWith("proxyd_bans_total"))).toEqual(['proxyd_bans_total{scope="ip"} 1'])
      // 1 + 1 good, 10 failures before the ban, 40 + 1 refused while banned.
      expect(scraped.split("\n").filter((l) => l.startsWith("proxyd_auth_guard_total")).sort()).toEqual([
        'proxyd_auth_guard_total{auth="users",outcome="banned"} 41',
        'proxyd_auth_guard_total{auth="users",outcome="failure"} 10',
        'proxyd_auth_guard_total{auth="users",outcome="success"} 2',
      ])
    } finally {
      await stop(p)
    }
  })
})
