/**
 * The plugin diagnostics through the real `proxyd check`, golden-style (exact
 * output): T080 a `plugin` that cannot be loaded, T081 a plugin whose
 * vocabulary conflicts with the language, T082 the admin plugin's check-time
 * validation (admin API off loopback without a token). The golden driver of
 * `packages/rules` runs without plugins, so these live here; the same
 * examples are in docs/diagnostics.md.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { afterAll, describe, expect, it } from "vitest"
import { proxyd } from "./proxyd.ts"

const dir = mkdtempSync(join(tmpdir(), "proxyd-plugin-diags-"))
afterAll(() => rmSync(dir, { recursive: true, force: true }))
const TAIL = "listen socks5 127.0.0.1:1080\npolicy p {\n  default allow\n}\n"
const check = (name: string, text: string) => {
  writeFileSync(join(dir, name), text)
  return proxyd(["check", name], { cwd: dir })
}

describe("plugin diagnostics in proxyd check", () => {
  it("T080: a plugin module that does not exist, at the string of its `plugin` line", () => {
    const r = check("t080.rules", `plugin "./ldap-plugin.ts"\n${TAIL}`)
    expect(r.code).toBe(1)
    expect(r.out).toBe([
      "t080.rules:1:8: error[T080]: cannot load plugin `./ldap-plugin.ts`: module not found",
      '  1 | plugin "./ldap-plugin.ts"',
      "    |        ^^^^^^^^^^^^^^^^^^",
      "  hint: a plugin is a module whose default export is `Plugin.make({ id, vocabulary, layer })`",
      "",
      "t080.rules: 1 error, tests not run, 0 warnings",
      "",
    ].join("\n"))
    // Fixed: the module exists and exports a plugin.
    writeFileSync(join(dir, "ldap-plugin.ts"), 'export default { id: "example.ldap", vocabulary: {} }\n')
    expect(check("t080.rules", `plugin "./ldap-plugin.ts"\n${TAIL}`).code).toBe(0)
  })

  it("T081: a plugin declaring a field the language owns, at its `plugin` line; renamed, it loads", () => {
    writeFileSync(join(dir, "users-plugin.ts"), 'export default { id: "example.users", vocabulary: { fields: [{ name: "user", type: "string" }] } }\n')
    const r = check("t081.rules", `plugin "./users-plugin.ts"\n${TAIL}`)
    expect(r.code).toBe(1)
    expect(r.out).toBe([
      "t081.rules:1:1: error[T081]: plugin `example.users` declares the field `user`, which the language already defines",
      '  1 | plugin "./users-plugin.ts"',
      "    | ^^^^^^^^^^^^^^^^^^^^^^^^^^",
      "  hint: plugin keywords, fields and auth kinds must be unique; remove one of the plugins or rename",
      "",
      "t081.rules: 1 error, tests not run, 0 warnings",
      "",
    ].join("\n"))
    writeFileSync(join(dir, "users-plugin.ts"), 'export default { id: "example.users", vocabulary: { fields: [{ name: "http.tenant", type: "string" }] } }\n')
    expect(check("t081.rules", `plugin "./users-plugin.ts"\n${TAIL}`).code).toBe(0)
  })

  it("T082: the admin API off loopback without a token; with `token env(...)` it passes (the variable is not read)", () => {
    const r = check("t082.rules", `admin listen 0.0.0.0:9090\n${TAIL}`)
    expect(r.code).toBe(1)
    expect(r.out).toBe([
      "t082.rules:1:1: error[T082]: the admin API listens on 0.0.0.0, which is not loopback, and has no `token`",
      "  1 | admin listen 0.0.0.0:9090",
      "    | ^^^^^^^^^^^^^^^^^^^^^^^^^",
      "  hint: add `token env(NAME)` (a bearer token is required off loopback), or listen on 127.0.0.1",
      "",
      "t082.rules: 1 error, tests not run, 0 warnings",
      "",
    ].join("\n"))
    expect(check("t082.rules", `admin listen 0.0.0.0:9090 token env(PROXYD_ADMIN_TOKEN_UNSET)\n${TAIL}`).code).toBe(0)
  })
})
