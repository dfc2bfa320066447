/**
 * `set NAME = TYPE file PATH refresh DUR`: the server re-reads set files on
 * that period even when no file-system event arrives (here the watcher is off,
 * as on a network mount that sends none). Without `refresh`, nothing is
 * re-read until a reload is asked for.
 */
import { writeFileSync } from "node:fs"
import { join } from "node:path"
import { describe, expect, it } from "vitest"
import { dial, localServer, start, tempDir, tracker, until, writeRules } from "./support.ts"

const { track } = tracker()

const rules = (refresh: string) => `
listen t = http 127.0.0.1:0
set closed = domains file "names.txt"${refresh}
policy default {
  rule closed when dst.domain in closed -> block "closed"
  default allow
}
`

const ask = async (port: number, echoPort: number): Promise<string> => {
  const c = await dial(port, `CONNECT localhost ${echoPort}\n`)
  await until(() => c.text().includes("\n"), 3_000)
  c.socket.destroy()
  return c.text().split("\n")[0]!
}

describe("set file refresh", () => {
  it("refresh 1s: a changed set file is picked up without a watcher or a signal; without refresh it is not", async () => {
    const echo = track(await localServer())
    const dirA = tempDir()
    writeFileSync(join(dirA, "names.txt"), "nothing.example\n")
    const a = track(await start(writeRules(dirA, rules(" refresh 1s"))))
    const dirB = tempDir()
    writeFileSync(join(dirB, "names.txt"), "nothing.example\n")
    const b = track(await start(writeRules(dirB, rules(""))))
    expect(await ask(a.port, echo.port)).toMatch(/^OK /)
    expect(await ask(b.port, echo.port)).toMatch(/^OK /)
    writeFileSync(join(dirA, "names.txt"), "localhost\n")
    writeFileSync(join(dirB, "names.txt"), "localhost\n")
    expect(await until(() => a.log.lines.some((l) => l.includes('"policy reloaded"')), 4_000)).toBe(true)
    expect(await ask(a.port, echo.port)).toBe("ERR blocked closed")
    expect(await ask(b.port, echo.port)).toMatch(/^OK /)
    expect(b.log.lines.some((l) => l.includes('"policy reloaded"'))).toBe(false)
    // It keeps refreshing: the next change is picked up too.
    writeFileSync(join(dirA, "names.txt"), "nothing.example\n")
    expect(await until(() => a.log.lines.filter((l) => l.includes('"policy reloaded"')).length >= 2, 4_000)).toBe(true)
    expect(await ask(a.port, echo.port)).toMatch(/^OK /)
  }, 20_000)
})
