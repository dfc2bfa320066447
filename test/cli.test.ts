/**
 * End-to-end: the `proxyd` binary as a user runs it (exit statuses, stdout vs
 * stderr, real files).
 */
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { proxyd } from "./proxyd.ts"

const dir = mkdtempSync(join(tmpdir(), "proxyd-cli-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const write = (name: string, text: string): string => {
  const path = join(dir, name)
  writeFileSync(path, text)
  return path
}

describe("proxyd (end to end)", () => {
  it("check: a broken file gives exit 1 and file:line:col diagnostics", () => {
    const file = write("bad.rules", "listen socks5 127.0.0.1:1080\npolicy p {\n  rule r when dst.port == 99999 -> allow\n  default allow\n}\n")
    const r = proxyd(["check", file])
    expect(r.code).toBe(1)
    expect(r.out).toContain(`${file}:3:`)
    expect(r.out).toMatch(/error\[T\d+\]/)
  })

  it("check: an unreadable file gives exit 2 with the OS message", () => {
    const r = proxyd(["check", join(dir, "nope.rules")])
    expect(r.code).toBe(2)
    expect(r.out).toContain("error[E001]: cannot read")
    expect(r.out).toContain("ENOENT")
  })

  it("check: an include and a set file are read relative to the including file", () => {
    write("names.txt", "# list\n.ads.example\n0.0.0.0 tracker.example\n")
    write("common.rules", "set ads = domains file \"names.txt\"\n")
    const main = write("main.rules", `include "common.rules"
listen socks5 127.0.0.1:1080
policy p {
  rule ads when dst.domain in ads -> block
  default allow
}
test "sub" { connect x.ads.example:443 } expect block by ads
test "hosts" { connect tracker.example:443 } expect block by ads
test "other" { connect example.com:443 } expect allow by default
`)
    const r = proxyd(["check", main])
    expect(r.out).toBe(`${main}: ok, 3 tests passed, 0 warnings\n`)
    expect(r.code).toBe(0)
  })

  it("explain: shows the deciding guard with file:line", () => {
    const r = proxyd(["explain", "rulesets/default.rules", "connect", "[::ffff:127.0.0.1]:80"])
    expect(r.code).toBe(0)
    expect(r.out).toContain('→ block "loopback destination" by loopback (rulesets/default.rules:')
    expect(r.out).toContain("facts used: dst.ip = ::ffff:127.0.0.1")
  })

  it("fmt --write rewrites a file; fmt --check then passes", () => {
    const file = write("fmt.rules", "listen   socks5   127.0.0.1:1080\npolicy p {\n    default allow\n}\n")
    expect(proxyd(["fmt", "--check", file]).code).toBe(1)
    expect(proxyd(["fmt", "--write", file]).code).toBe(0)
    expect(readFileSync(file, "utf8")).toContain("listen socks5 127.0.0.1:1080")
    const again = proxyd(["fmt", "--check", file])
    expect(again.out).toBe("")
    expect(again.code).toBe(0)
  })

  it("graph and diff run on the shipped rulesets", () => {
    const g = proxyd(["graph", "rulesets/adblock.rules"])
    expect(g.code).toBe(0)
    expect(g.out).toMatch(/^digraph /)
    const d = proxyd(["diff", "rulesets/default.rules", "rulesets/local-dev.rules"])
    expect(d.code).toBe(0)
    expect(d.out).toMatch(/^connect \S+: block .* by \S+ → allow by this-machine$/m)
  })

  it("--version and usage errors", () => {
    expect(proxyd(["--version"]).out).toMatch(/^proxyd \d+\.\d+\.\d+\n$/)
    const u = proxyd(["explain"])
    expect(u.code).toBe(2)
    expect(u.err).toContain("proxyd: explain needs FILE")
  })
})
