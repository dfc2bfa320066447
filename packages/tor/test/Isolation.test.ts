import { describe, expect, it } from "vitest"
import type { Ir } from "@proxyd/rules"
import { credentials, credentialsFor, isolationKey, PASSWORD } from "../src/Isolation.ts"

const salt = Buffer.from("salt")
const torOf = (isolate: Ir.TorIsolation): Ir.TorIR => ({
  name: "t", socksHost: "127.0.0.1", socksPort: 9050, isolate,
  span: { file: "x.rules", start: { line: 1, column: 1, offset: 0 }, end: { line: 1, column: 1, offset: 0 } },
})
const alice = { user: "alice", srcIp: "10.0.0.1", rule: "web" }
const bob = { user: "bob", srcIp: "10.0.0.2", rule: "web" }

describe("isolation keys", () => {
  it("per-user: the proxyd user, or anonymous; a user named anonymous is not the anonymous client", () => {
    expect(isolationKey("per-user", alice)).toBe("user:alice")
    expect(isolationKey("per-user", { rule: "r" })).toBe("anonymous")
    expect(isolationKey("per-user", { user: "anonymous", rule: "r" })).not.toBe(isolationKey("per-user", { rule: "r" }))
  })
  it("per-rule, per-src, none", () => {
    expect(isolationKey("per-rule", alice)).toBe(isolationKey("per-rule", bob))
    expect(isolationKey("per-src", alice)).toBe("src:10.0.0.1")
    expect(isolationKey("per-src", bob)).not.toBe(isolationKey("per-src", alice))
    expect(isolationKey("none", alice)).toBeUndefined()
  })
  it("per-connection draws a fresh key every time", () => {
    const keys = new Set(Array.from({ length: 50 }, () => isolationKey("per-connection", alice)))
    expect(keys.size).toBe(50)
  })
})

describe("isolation credentials", () => {
  it("are proxyd:<16 hex>, deterministic for a salt, and reveal neither user nor address", () => {
    const a = credentials(salt, torOf("per-user"), alice)!
    expect(a.user).toMatch(/^proxyd:[0-9a-f]{16}$/)
    expect(a.pass).toBe(PASSWORD)
    expect(credentials(salt, torOf("per-user"), { ...alice, srcIp: "10.9.9.9", rule: "other" })).toEqual(a)
    expect(a.user).not.toContain("alice")
    const s = credentials(salt, torOf("per-src"), alice)!
    expect(s.user).not.toContain("10.0.0.1")
  })
  it("differ between users, salts and tor endpoints", () => {
    expect(credentials(salt, torOf("per-user"), alice)).not.toEqual(credentials(salt, torOf("per-user"), bob))
    expect(credentialsFor(salt, "t", "user:alice")).not.toEqual(credentialsFor(Buffer.from("other"), "t", "user:alice"))
    expect(credentialsFor(salt, "t", "user:alice")).not.toEqual(credentialsFor(salt, "u", "user:alice"))
  })
  it("none sends no credentials; per-connection differs per connection", () => {
    expect(credentials(salt, torOf("none"), alice)).toBeUndefined()
    expect(credentials(salt, torOf("per-connection"), alice)).not.toEqual(credentials(salt, torOf("per-connection"), alice))
  })
})
