/**
 * "A declared safety feature is never silently ignored", through the real
 * binary: a rules file that checks but uses something the runtime does not
 * enforce yet refuses to start (exit 1) with a message naming the feature and
 * where it is used, and never opens a listener.
 *
 * Details: each case is a valid file (`proxyd check` passes) that differs from
 * a control file only by the feature; the control starts and serves, so each
 * refusal is caused by that feature alone. Features other helpers are lifting
 * right now (via/tor, GeoIP, plugins, webhook auth) are tested where they land
 * (packages/runtime/test/Start.test.ts and their packages).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { proxyd } from "./proxyd.ts"
import { start, stop } from "./spawn.ts"

const dir = mkdtempSync(join(tmpdir(), "proxyd-support-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
writeFileSync(join(dir, "allowed.txt"), "example.com\n")

const file = (name: string, opts: { options?: string; set?: string; modifiers?: string }): string => {
  const path = join(dir, `${name}.rules`)
  writeFileSync(path, [
    "listen mixed 127.0.0.1:0",
    ...(opts.options === undefined ? [] : [`options { ${opts.options} }`]),
    `set allowed = domains file "allowed.txt"${opts.set ?? ""}`,
    "policy default {",
    `  rule ok when dst.domain in allowed -> allow${opts.modifiers ?? ""}`,
    "  default block",
    "}",
    "",
  ].join("\n"))
  return path
}

const show = (r: { code: number | null; out: string; err: string }) => `${r.code} ${r.out} ${r.err}`

const cases: ReadonlyArray<{ readonly name: string; readonly opts: Parameters<typeof file>[1]; readonly message: RegExp }> = [
  { name: "limit-conns", opts: { modifiers: " limit 10 per user" }, message: /`limit` in rule `ok` of policy `default` \(.*limit-conns\.rules:\d+\): per-rule limits are not enforced/ },
  { name: "limit-rate", opts: { modifiers: " limit 20/s" }, message: /`limit` in rule `ok` .*\(.*limit-rate\.rules:\d+\)/ },
  { name: "bandwidth", opts: { modifiers: " bandwidth 1MiB/s" }, message: /`bandwidth` in rule `ok` .*\(.*bandwidth\.rules:\d+\): per-rule limits are not enforced/ },
  { name: "on-error-empty", opts: { set: " on-error empty" }, message: /set `allowed` \(.*on-error-empty\.rules:\d+\): `on-error empty` is not enforced/ },
]

describe("features the runtime does not enforce refuse to start (real binary)", () => {
  it("the control file (no such feature) checks, starts and serves", async () => {
    const control = file("control", { set: " refresh 1h on-error keep-last", modifiers: " idle 2m tag \"t\" log", options: "workers 1" })
    const checked = proxyd(["check", control])
    expect(checked.code, show(checked)).toBe(0)
    const p = await start(control)
    expect(p.port).toBeGreaterThan(0)
    expect(await stop(p)).toBe(0)
  }, 40_000)

  for (const c of cases) {
    it(`${c.name}: exit 1, the feature and its place named, no listener opened`, () => {
      const path = file(c.name, c.opts)
      const checked = proxyd(["check", path])
      expect(checked.code, show(checked)).toBe(0)
      const r = proxyd(["--rules", path, "--listen", "mixed://127.0.0.1:0"])
      expect(r.code).toBe(1)
      expect(r.err).toMatch(c.message)
      expect(r.err).toContain("proxyd: not started")
      expect(r.err + r.out).not.toContain('"listening"')
    }, 40_000)
  }
})
