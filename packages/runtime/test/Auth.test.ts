import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import * as Auth from "../src/Auth.ts"
import { dial, localServer, start, tempDir, until, tracker, writeRules } from "./support.ts"

const { track } = tracker()

describe("password hashes", () => {
  it("scrypt and argon2id hashes verify the right password only", async () => {
    for (const kind of ["scrypt", "argon2id"] as const) {
      const h = await Auth.hashPassword("s3cret pass", kind)
      expect(h.startsWith(`$${kind}$`)).toBe(true)
      const p = Auth.parseHash(h)
      expect(typeof p).not.toBe("string")
      if (typeof p === "string") continue
      expect(await Auth.verifyParsed(p, "s3cret pass")).toBe(true)
      expect(await Auth.verifyParsed(p, "s3cret pasS")).toBe(false)
      expect(await Auth.verifyParsed(p, "")).toBe(false)
    }
  })

  it("parses passlib-style scrypt strings (ab64 alphabet with `.`, no padding)", () => {
    const p = Auth.parseHash("$scrypt$ln=4,r=8,p=1$dGVzdH.hbHR0ZXN0c2FsdA$0l0eBclNr0K5ee7s2GbXQmTgt2RmRl9Q8PZpWtjwdI8")
    expect(p).toMatchObject({ kind: "scrypt", ln: 4, r: 8, p: 1 })
    expect(Auth.parseHash("$scrypt$ln=4,r=8$c2FsdA$aGFzaA")).toMatch(/malformed/)
  })

  it("refuses malformed bcrypt and weak formats with a message that never contains the hash", () => {
    for (const h of ["$2y$10$tooshort", "$2y$99$abcdefghijklmnopqrstuuJ5u0cz4b9cJ0JcHk2kZ8i9Q7l4n0K2a", "$apr1$salt$hash", "{SHA}qUqP5cyxm6YcTAhz05Hph5gvu9M=", "plain"]) {
      const r = Auth.parseHash(h)
      expect(typeof r).toBe("string")
      expect(r as string).not.toContain(h)
    }
  })

  it("an unknown user costs about as much as a known one", async () => {
    const hash = await Auth.hashPassword("pw")
    const src = Auth.fromEntries("u", [{ user: "alice", hash, groups: [] }])
    if (Array.isArray(src)) throw new Error(src.join())
    const once = async (user: string) => {
      const t = process.hrtime.bigint()
      await src.verify(user, "wrong")
      return Number(process.hrtime.bigint() - t) / 1e6
    }
    await once("alice")
    // Interleaved, so load on the machine affects both alike.
    let known = 0, unknown = 0
    for (let i = 0; i < 4; i++) { known += await once("alice"); unknown += await once("mallory") }
    expect(unknown).toBeGreaterThan(known * 0.4)
    expect(unknown).toBeLessThan(known * 2.5)
    expect(await src.verify("mallory", "pw")).toEqual({ ok: false, groups: [] })
    expect(await src.verify("alice", "pw")).toEqual({ ok: true, groups: [] })
  })

  it("parses htpasswd files and names the bad line", () => {
    const r = Auth.parseHtpasswd("# users\nalice:$scrypt$x\n\nbroken-line\n", "users.htpasswd")
    expect(r.entries).toEqual([{ user: "alice", hash: "$scrypt$x", groups: [] }])
    expect(r.problems).toEqual(["users.htpasswd:4: expected user:hash"])
  })
})

describe("listener authentication", () => {
  it("static users: the right password authenticates (user and groups reach the policy), secrets never reach the log", async () => {
    const echo = track(await localServer())
    const hash = await Auth.hashPassword("correct horse")
    const s = track(await start(writeRules(tempDir(), `
listen t = http 127.0.0.1:0 auth users
auth users = static {
  alice "${hash}" groups [staff]
  bob "${hash}"
}
policy default {
  rule staff when group == staff -> allow
  default block "staff only"
}
`)))
    const ok = await dial(s.port, `AUTH alice correct horse\nCONNECT 127.0.0.1 ${echo.port}\nhi\n`)
    expect(await ok.waitText("hi\n")).toBe(true)
    ok.socket.end()
    const bob = await dial(s.port, `AUTH bob correct horse\nCONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await until(() => bob.closed())).toBe(true)
    expect(bob.text()).toBe("ERR blocked staff only\n")
    const bad = await dial(s.port, `AUTH alice wrong-password-xyz\nCONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await until(() => bad.closed())).toBe(true)
    expect(bad.text()).toBe("ERR auth\n")
    const none = await dial(s.port, `CONNECT 127.0.0.1 ${echo.port}\n`)
    expect(await until(() => none.closed())).toBe(true)
    expect(none.text()).toBe("ERR auth-required\n")
    expect(await until(() => s.connections().length === 4)).toBe(true)
    expect(s.connections()[0]).toMatchObject({ user: "alice", rule: "staff" })
    expect(s.connections()[1]).toMatchObject({ user: "bob", rule: "default" })
    const all = s.log.lines.join("\n")
    expect(all).not.toContain("correct horse")
    expect(all).not.toContain("wrong-password-xyz")
    expect(all).not.toContain(hash)
    expect(all).not.toContain(hash.split("$")[4]!)
  })

  it("htpasswd files (relative to the rules file) authenticate the same way", async () => {
    const echo = track(await localServer())
    const dir = tempDir()
    writeFileSync(join(dir, "users.htpasswd"), `carol:${await Auth.hashPassword("pw1", "argon2id")}\n`)
    const s = track(await start(writeRules(dir, `
listen t = http 127.0.0.1:0 auth users
auth users = htpasswd "users.htpasswd"
policy default { default allow }
`)))
    const c = await dial(s.port, `AUTH carol pw1\nCONNECT 127.0.0.1 ${echo.port}\nyo\n`)
    expect(await c.waitText("yo\n")).toBe(true)
    c.socket.end()
    const d = await dial(s.port, `AUTH carol pw2\n`)
    expect(await until(() => d.closed())).toBe(true)
    expect(d.text()).toBe("ERR auth\n")
  })
})
