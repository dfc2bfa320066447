import { mkdtempSync, rmSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import * as Log from "../src/Log.ts"
import * as Workers from "../src/Workers.ts"

const dir = mkdtempSync(join(tmpdir(), "proxyd-supervisor-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))

const entry = new URL("./fixtures/worker-entry.ts", import.meta.url)

const run = (mode: string) => {
  const log = Log.memory("debug")
  let sup: Workers.Supervisor | undefined
  const done = Workers.supervise({
    workers: 2, entry, rulesFile: "unused.rules", listen: [mode, join(dir, `${mode}.marker`)],
    maxConnections: 10, log, signals: false, onStarted: (s) => { sup = s },
  })
  return { log, done, sup: () => sup }
}

const until = async (pred: () => boolean, ms = 10_000): Promise<boolean> => {
  for (let t = 0; t < ms && !pred(); t += 25) await new Promise((r) => setTimeout(r, 25))
  return pred()
}

describe("the workers' supervisor (real worker threads, a stand-in server)", () => {
  it("pins the ports worker 1 reports, reloads every worker, and shuts down with status 0", async () => {
    const r = run("plain")
    expect(await until(() => r.sup() !== undefined)).toBe(true)
    const s = r.sup()!
    expect(s.addresses()).toEqual([{ listener: "a", kind: "socks5", host: "127.0.0.1", port: 1001 }])
    expect(s.threads()).toHaveLength(2)
    expect(await s.reload()).toEqual({ ok: true, version: 2 })
    expect(r.log.lines.some((l) => l.includes("policy reloaded in every worker"))).toBe(true)
    await s.shutdown()
    expect(await r.done).toBe(0)
  }, 30_000)

  it("the plugins' SharedState is one store: both workers' counts meet", async () => {
    const r = run("state")
    expect(await until(() => r.sup() !== undefined)).toBe(true)
    // Each worker counted once before serving; worker 1 reports the shared count as its version.
    expect(await r.sup()!.reload()).toEqual({ ok: true, version: 2 })
    await r.sup()!.shutdown()
    expect(await r.done).toBe(0)
  }, 30_000)

  it("restarts a worker that exits on its own; the restarted one serves reloads", async () => {
    const r = run("crash-once")
    expect(await until(() => r.sup() !== undefined)).toBe(true)
    const s = r.sup()!
    const before = s.threads()
    expect(await until(() => s.restarts() === 1 && s.threads().length === 2 && s.threads()[1] !== before[1])).toBe(true)
    expect(r.log.lines.some((l) => l.includes("worker exited; restarting it") && l.includes('"worker":2') && l.includes('"code":3'))).toBe(true)
    expect(await until(() => s.ready() === 2)).toBe(true)
    expect((await s.reload()).ok).toBe(true)
    await s.shutdown()
    expect(await r.done).toBe(0)
  }, 30_000)

  it("a worker that keeps exiting stops the server with status 1", async () => {
    const r = run("crash-always")
    expect(await r.done).toBe(1)
    expect(r.sup()?.restarts()).toBe(Workers.MAX_RESTARTS + 1)
    expect(r.log.lines.some((l) => l.includes("workers keep exiting; stopping"))).toBe(true)
  }, 60_000)

  it("a worker that cannot start stops the start: status 1, its reason printed", async () => {
    const r = run("fail-start")
    const err: Array<string> = []
    const write = process.stderr.write.bind(process.stderr)
    process.stderr.write = ((chunk: string) => { err.push(String(chunk)); return true }) as typeof process.stderr.write
    try {
      expect(await r.done).toBe(1)
    } finally {
      process.stderr.write = write
    }
    expect(r.sup()).toBe(undefined)
    expect(err.join("")).toBe("listener `a`: cannot listen on 127.0.0.1:1: EADDRINUSE\nproxyd: not started\n")
  }, 30_000)
})
