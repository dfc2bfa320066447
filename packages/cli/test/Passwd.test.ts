/**
 * `proxyd passwd`: the printed line verifies with the runtime's own checker;
 * piped and terminal input (through `script`, a real pty: no echo, asked
 * twice); empty, mismatched and usage errors.
 */
import { spawn, spawnSync } from "node:child_process"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { Auth } from "@proxyd/runtime"

const BIN = join(import.meta.dirname, "..", "bin", "proxyd.js")
const run = (args: ReadonlyArray<string>, input: string) => {
  const r = spawnSync(process.execPath, [BIN, "passwd", ...args], { input, encoding: "utf8", timeout: 30_000 })
  return { code: r.status, out: r.stdout, err: r.stderr }
}

const verifies = async (line: string, user: string, pass: string): Promise<boolean> => {
  const [u, hash] = [line.slice(0, line.indexOf(":")), line.slice(line.indexOf(":") + 1).trim()]
  expect(u).toBe(user)
  const h = Auth.parseHash(hash)
  if (typeof h === "string") throw new Error(h)
  return Auth.verifyParsed(h, pass)
}

describe("proxyd passwd", () => {
  it("prints USER:HASH for each algorithm from a piped password (first line only)", async () => {
    for (const [algo, prefix] of [["argon2id", "$argon2id$v=19$"], ["bcrypt", "$2y$10$"], ["scrypt", "$scrypt$ln=15,r=8,p=1$"]] as const) {
      const r = run(["--algo", algo, "alice"], "s3cret pass\nignored\n")
      expect(r.code, r.err).toBe(0)
      expect(r.out.startsWith(`alice:${prefix}`)).toBe(true)
      expect(await verifies(r.out, "alice", "s3cret pass")).toBe(true)
      expect(await verifies(r.out, "alice", "ignored")).toBe(false)
    }
    expect(run(["bob"], "pw\n").out.startsWith("bob:$argon2id$")).toBe(true)
  })

  it("refuses an empty password (exit 1), a password argument, a bad user name and an unknown algorithm (exit 2)", () => {
    expect(run(["alice"], "\n")).toMatchObject({ code: 1, out: "", err: "proxyd passwd: empty password\n" })
    expect(run(["alice", "hunter2"], "")).toMatchObject({ code: 2 })
    expect(run(["alice", "hunter2"], "").err).toContain("unexpected argument `hunter2` (the password is read from stdin)")
    expect(run(["a:b"], "x\n").code).toBe(2)
    expect(run(["--algo", "md5", "alice"], "x\n").code).toBe(2)
    expect(run([], "x\n").code).toBe(2)
  })

  it("on a terminal asks twice without echo; a mismatch is exit 1", async (ctx) => {
    const probe = spawnSync("script", ["--version"], { encoding: "utf8" })
    if (probe.error !== undefined) return ctx.skip("`script` (util-linux) is not installed")
    // Types each answer when its prompt appears (no sleeps): the pty echoes nothing once raw mode is on.
    const tty = (first: string, second: string) => new Promise<{ stdout: string }>((resolve) => {
      const child = spawn("script", ["-qec", `${process.execPath} ${BIN} passwd --algo scrypt carol`, "/dev/null"], { stdio: ["pipe", "pipe", "inherit"] })
      let stdout = ""
      let step = 0
      const timer = setTimeout(() => child.kill("SIGKILL"), 30_000)
      child.stdout.on("data", (c: Buffer) => {
        stdout += c.toString("utf8")
        if (step === 0 && stdout.includes("Password: ")) { step = 1; child.stdin.write(`${first}\r`) }
        if (step === 1 && stdout.includes("Again: ")) { step = 2; child.stdin.write(`${second}\r`) }
      })
      child.on("exit", () => { clearTimeout(timer); resolve({ stdout }) })
    })
    const ok = await tty("tty pw", "tty pw")
    expect(ok.stdout).toContain("Password: ")
    expect(ok.stdout).toContain("Again: ")
    expect(ok.stdout).not.toContain("tty pw")
    const line = ok.stdout.split(/\r?\n/).find((l) => l.startsWith("carol:"))!
    expect(await verifies(line.replace(/\r$/, ""), "carol", "tty pw")).toBe(true)
    const bad = await tty("one", "two")
    expect(bad.stdout).toContain("the two passwords differ")
    expect(bad.stdout).not.toContain("carol:")
  })
})
