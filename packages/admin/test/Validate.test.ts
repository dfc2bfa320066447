/**
 * The admin plugin's check-time validation: `proxyd check` reports an admin API
 * off loopback without a `token` as T082, offline (no env, no start), with the
 * built-in plugins as the CLI registers them.
 */
import { describe, expect, it } from "vitest"
import { Check } from "@proxyd/rules"
import { Registry } from "@proxyd/runtime"
import { geoIpPlugin } from "@proxyd/geoip"
import { adminPlugin } from "../src/index.ts"

const options = Registry.checkOptions([...Registry.builtins, geoIpPlugin, adminPlugin])
const diags = (text: string) =>
  Check.checkSource(text, "a.rules", {}, options).diagnostics.map((d) => `${d.code} ${d.severity} ${d.span.start.line}:${d.span.start.column} ${d.message} | ${d.hint ?? ""}`)
const POLICY = "policy p {\n  default allow\n}\n"

describe("admin declaration in check (T082)", () => {
  it("off loopback without a token is an error at the declaration", () => {
    expect(diags(`admin listen 0.0.0.0:9090\n${POLICY}`)).toEqual([
      "T082 error 1:1 the admin API listens on 0.0.0.0, which is not loopback, and has no `token` | add `token env(NAME)` (a bearer token is required off loopback), or listen on 127.0.0.1",
    ])
    expect(diags(`listen socks5 127.0.0.1:1080\nadmin {\n  listen 192.0.2.1:9090\n}\n${POLICY}`)).toEqual([
      "T082 error 2:1 the admin API listens on 192.0.2.1, which is not loopback, and has no `token` | add `token env(NAME)` (a bearer token is required off loopback), or listen on 127.0.0.1",
    ])
  })

  it("loopback without a token, the default address, and off loopback with a token are accepted", () => {
    expect(diags(`admin listen 127.0.0.1:9090\n${POLICY}`)).toEqual([])
    expect(diags(`admin listen localhost:9090\n${POLICY}`)).toEqual([])
    expect(diags(`admin {\n}\n${POLICY}`)).toEqual([])
    // The token is only named, never read: check works offline without ADMIN_TOKEN set.
    expect(diags(`admin listen 0.0.0.0:9090 token env(PROXYD_TEST_UNSET_ADMIN_TOKEN)\n${POLICY}`)).toEqual([])
  })
})
