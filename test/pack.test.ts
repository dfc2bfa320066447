/**
 * The installable package: `npm pack` packages/cli (which bundles the CLI into
 * one file), install the tarball into an empty folder with no registry access,
 * and run `npx proxyd check` there. Proves the package is self-contained: no
 * runtime dependencies, no workspace, no TypeScript sources.
 */
import { execFileSync, spawnSync } from "node:child_process"
import { copyFileSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from "node:fs"
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
  })

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
