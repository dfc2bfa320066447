/**
 * The example plugin: its weekday function, its vocabulary checked by the
 * real `proxyd check`, and its fact source used by the real `proxyd --rules`
 * (a rule blocking today's weekday blocks curl; one blocking another day does not).
 */
import { execFileSync } from "node:child_process"
import { mkdtempSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, beforeAll, describe, expect, it } from "vitest"
import { curl, httpOrigin, needCurl, type Origin } from "@proxyd/testkit"
import { BIN, ROOT } from "../../../test/proxyd.ts"
import { start, stop, waitFor } from "../../../test/spawn.ts"
import plugin, { DAYS, weekdayAt } from "../plugin.ts"

const HERE = join(import.meta.dirname, "..")

const check = (file: string): { code: number; out: string } => {
  try {
    return { code: 0, out: execFileSync(process.execPath, [BIN, "check", "--no-color", file], { encoding: "utf8", cwd: ROOT }) }
  } catch (e) {
    const x = e as { status: number; stdout: string }
    return { code: x.status, out: x.stdout }
  }
}

describe("weekdayAt", () => {
  it("gives the weekday in the zone", () => {
    const t = Date.parse("2026-11-22T23:30:00Z") // Sunday in UTC
    expect(weekdayAt(t, "UTC")).toBe("Sun")
    expect(weekdayAt(t, "Europe/Berlin")).toBe("Mon")
    expect(weekdayAt(t, "America/New_York")).toBe("Sun")
    expect(plugin.id).toBe("example.time.weekday")
  })
})

describe("proxyd check with the plugin", () => {
  it("checks example.rules (its tests pass) and reports typos in plugin vocabulary", () => {
    const ok = check(join(HERE, "example.rules"))
    expect(ok.out).toContain("ok, 2 tests passed, 0 warnings")
    expect(ok.code).toBe(0)
    const d = mkdtempSync(join(tmpdir(), "weekday-"))
    writeFileSync(join(d, "bad.rules"), `plugin "${join(HERE, "plugin.ts")}"\nweekday-clock zone "UTC"\npolicy p {\n  rule w when time.weekday == Fry -> block\n  default allow\n}\n`)
    const bad = check(join(d, "bad.rules"))
    expect(bad.code).toBe(1)
    expect(bad.out).toContain("2:15: error[T002]: unknown setting `zone` for `weekday-clock`")
    expect(bad.out).toContain("2:1: error[T003]: `weekday-clock` needs the setting `tz`")
    expect(bad.out).toContain("4:31: error[T063]: `Fry` is not a time.weekday")
    expect(bad.out).toContain("hint: did you mean `Fri`?")
  })
})

let origin: Origin
beforeAll(async () => {
  origin = await httpOrigin((m, u) => `hi ${m} ${u}`)
})
afterAll(() => origin.close())

describe("proxyd --rules with the plugin", () => {
  it("the fact source gives the request's weekday: today is blocked, another day is not", async (ctx) => {
    needCurl(ctx)
    const d = mkdtempSync(join(tmpdir(), "weekday-"))
    const today = weekdayAt(Date.now(), "UTC")
    const other = DAYS[(DAYS.indexOf(today as (typeof DAYS)[number]) + 3) % 7]!
    for (const [day, blocked] of [[today, true], [other, false]] as const) {
      const file = join(d, `${day}.rules`)
      writeFileSync(file, `plugin "${join(HERE, "plugin.ts")}"\nweekday-clock tz "UTC"\nlisten mixed 127.0.0.1:1080\npolicy p {\n  rule day when time.weekday == ${day} -> block "not on ${day}"\n  default allow\n}\n`)
      const p = await start(file)
      try {
        const r = await curl(["--socks5-hostname", `127.0.0.1:${p.port}`, `http://localhost:${origin.port}/w`])
        if (blocked) expect(r.code).not.toBe(0)
        else expect(r.stdout).toBe("hi GET /w")
        await waitFor(() => p.closes().some((c) => c["rule"] !== undefined))
        const close = p.closes().find((c) => c["rule"] !== undefined)
        expect(close?.["rule"]).toBe(blocked ? "day" : "default")
      } finally {
        await stop(p)
      }
    }
  })
})
