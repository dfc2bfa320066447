/**
 * The installable package: `npm pack` packages/cli (which bundles the CLI into
 * one file), install the tarball into an empty folder with no registry access,
 * and run `npx proxyd check` there. Proves the package is self-contained: no
 * runtime dependencies, no workspace, no TypeScript sources; and that the
 * installed command starts a server whose policy uses `dst.country` (the CC0
 * country database ships in `dist/`: without it the start is refused).
 */
import { execFileSync, spawn, spawnSync } from "node:child_process"
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { delimiter, join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { ROOT } from "./proxyd.ts"

const work = mkdtempSync(join(tmpdir(), "proxyd-pack-"))
const app = join(work, "app")
// Node 24 (the workspace's `node` package) first on PATH, as for `npm run`.
const env = { ...process.env, PATH: `${join(ROOT, "node_modules", ".bin")}${delimiter}${process.env["PATH"] ?? ""}`, NO_COLOR: "1" }

const npm = (args: ReadonlyArray<string>, cwd: string): string =>
  execFileSync("npm", [...args], { cwd, env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"], timeout: 120_000 })

const npx = (args: ReadonlyArray<string>) => {
  const r = spawnSync("npx", ["--no-install", ...args], { cwd: app, env, encoding: "utf8", timeout: 60_000 })
  return { code: r.status, out: r.stdout, err: r.stderr }
}

/**
 * Starts the installed bin itself (what `npx proxyd` runs, so SIGTERM reaches proxyd and not npm)
 * on `rules` in the app directory; `until` polls its output every 50 ms, at most `tries` times or
 * until it exits.
 */
const serveInstalled = (rules: string) => {
  const child = spawn(join(app, "node_modules", ".bin", "proxyd"), ["--rules", rules, "--listen", "127.0.0.1:0"], { cwd: app, env, stdio: ["ignore", "pipe", "pipe"] })
  let out = ""
  child.stdout.on("data", (d: Buffer) => { out += d.toString() })
  child.stderr.on("data", (d: Buffer) => { out += d.toString() })
  const exited = new Promise<number | null>((ok) => child.on("exit", (code) => ok(code)))
  const until = async (done: (out: string) => boolean, tries: number): Promise<void> => {
    for (let i = 0; i < tries && !done(out) && child.exitCode === null; i++) await new Promise((r) => setTimeout(r, 50))
  }
  return { child, exited, until, out: () => out }
}

let tarball = ""

beforeAll(() => {
  npm(["pack", "--pack-destination", work], join(ROOT, "packages", "cli"))
  const name = readdirSync(work).find((f) => f.endsWith(".tgz"))
  if (name === undefined) throw new Error("npm pack produced no tarball")
  tarball = join(work, name)
  execFileSync("mkdir", ["-p", app])
  writeFileSync(join(app, "package.json"), JSON.stringify({ name: "app", private: true }))
  npm(["install", tarball, "--offline", "--no-audit", "--no-fund"], app)
  copyFileSync(join(ROOT, "rulesets", "default.rules"), join(app, "default.rules"))
  writeFileSync(join(app, "geo.rules"), "listen socks5 127.0.0.1:1080\npolicy p {\n  guard no-us when dst.country == US -> block\n  default allow\n}\n")
  writeFileSync(join(app, "workers.rules"), "options { workers 2 }\nlisten socks5 127.0.0.1:1080\npolicy p {\n  default allow\n}\n")
  writeFileSync(join(app, "bad.rules"), "listen socks5 127.0.0.1:1080\npolicy p {\n  rule r when dst.port == 443 -> via nowhere\n  default allow\n}\n")
}, 180_000)

afterAll(() => rmSync(work, { recursive: true, force: true }))

describe("the packed proxyd package", () => {
  it("contains the bin and the bundle only, and installs without dependencies", () => {
    const installed = join(app, "node_modules", "@proxyd", "cli")
    expect(existsSync(join(installed, "dist", "proxyd.mjs"))).toBe(true)
    expect(existsSync(join(installed, "src"))).toBe(false)
    expect(readdirSync(join(app, "node_modules")).filter((f) => !f.startsWith("."))).toEqual(["@proxyd"])
    const manifest = JSON.parse(readFileSync(join(installed, "package.json"), "utf8"))
    expect(manifest.dependencies).toBeUndefined()
    expect(existsSync(join(installed, "dist", "geo-whois-asn-country.mmdb"))).toBe(true)
    // The bundle (~1.3 MB) plus the country database (7.5 MB, ~3.9 MB gzipped).
    expect(statSync(tarball).size).toBeLessThan(8_000_000)
  })

  it("starts a server whose policy uses dst.country from the installed package (the built-in database is found), and stops on SIGTERM with exit 0", async () => {
    const p = serveInstalled("geo.rules")
    await p.until((out) => out.includes('"msg":"listening"'), 200)
    expect(p.out()).toContain('"msg":"listening"')
    p.child.kill("SIGTERM")
    expect(await p.exited).toBe(0)
  }, 30_000)

  it("serves `workers 2` from the bundle (each worker thread runs the installed bundle), and stops on SIGTERM with exit 0", async () => {
    const p = serveInstalled("workers.rules")
    await p.until((out) => out.includes('"msg":"workers started"') && out.match(/"msg":"listening"/g)?.length === 2, 400)
    expect(p.out()).toContain('"msg":"workers started"')
    expect(p.out()).toContain('"msg":"listening","worker":2')
    p.child.kill("SIGTERM")
    expect(await p.exited).toBe(0)
  }, 40_000)

  it("runs `npx proxyd check` on a good file: exit 0 and the summary", () => {
    const r = npx(["proxyd", "check", "default.rules"])
    expect(r.code).toBe(0)
    expect(r.out).toMatch(/^default\.rules: ok, \d+ tests passed, 0 warnings\n$/)
  })

  it("reports a broken file with exit 1 and a file:line:col diagnostic", () => {
    const r = npx(["proxyd", "check", "bad.rules"])
    expect(r.code).toBe(1)
    expect(r.out).toMatch(/^bad\.rules:3:\d+: error\[T\d+\]: .*`nowhere`/m)
  })
})
