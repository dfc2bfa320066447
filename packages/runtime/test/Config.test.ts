/**
 * The documented defaults and their overrides: handshake 10 s, connect 10 s,
 * idle 5 min, drain 30 s, 10 000 connections, no per-IP limit; `options`
 * override them for every listener, a listener's own settings override
 * `options` (docs/running.md, "Timeouts and limits").
 */
import { describe, expect, it } from "vitest"
import { Check } from "@proxyd/rules"
import { DEFAULTS, globalSpec, listenerSpecs } from "../src/Config.ts"
import { tempDir, writeRules } from "./support.ts"

const program = (text: string) => {
  const r = Check.checkFiles([writeRules(tempDir(), text)], Check.nodeReader)
  expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([])
  return r.program!
}

describe("timeouts and limits", () => {
  it("defaults when the file says nothing", () => {
    expect(DEFAULTS).toMatchObject({ handshakeMs: 10_000, connectMs: 10_000, idleMs: 300_000, drainMs: 30_000, maxConnections: 10_000, maxPerIp: Number.POSITIVE_INFINITY })
    const p = program("listen a = socks5 127.0.0.1:0\npolicy default { default allow }\n")
    expect(globalSpec(p)).toEqual({ drainMs: 30_000, maxConnections: 10_000, maxPerIp: Number.POSITIVE_INFINITY })
    expect(listenerSpecs(p, undefined)[0]).toMatchObject({ handshakeMs: 10_000, connectMs: 10_000, idleMs: 300_000, maxConnections: 10_000, maxPerIp: Number.POSITIVE_INFINITY })
  })

  it("options override the defaults; a listener's settings override options", () => {
    const p = program(`options { handshake-timeout 2s connect-timeout 3s idle-timeout 1m drain-timeout 5s max-connections 50 max-connections-per-ip 5 }
listen a = socks5 127.0.0.1:0
listen b = http 127.0.0.1:0 { handshake-timeout 1s idle-timeout 30s max-connections 7 max-connections-per-ip 2 }
policy default { default allow }
`)
    expect(globalSpec(p)).toEqual({ drainMs: 5_000, maxConnections: 50, maxPerIp: 5 })
    const [a, b] = listenerSpecs(p, undefined)
    expect(a).toMatchObject({ name: "a", handshakeMs: 2_000, connectMs: 3_000, idleMs: 60_000, maxConnections: 50, maxPerIp: 5 })
    expect(b).toMatchObject({ name: "b", handshakeMs: 1_000, connectMs: 3_000, idleMs: 30_000, maxConnections: 7, maxPerIp: 2 })
  })
})
