/**
 * Plugin vocabularies in the checker: declarations, settings, fields, auth
 * kinds, conflicts and load failures, with exact diagnostics; plugin matchers
 * evaluated the same by the reference interpreter and the compiled evaluator.
 */
import { describe, expect, it } from "vitest"
import { checkSource } from "../src/Check.ts"
import { compile } from "../src/Compiler.ts"
import { evaluate } from "../src/Evaluator.ts"
import type { VocabularyExtension } from "../src/Extension.ts"
import type { Request } from "../src/Ir.ts"
import { evaluateReference } from "../src/Reference.ts"

const WEEKDAY: VocabularyExtension = {
  plugin: "example.time.weekday",
  fields: [{ name: "time.weekday", type: "enum", values: ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"], unknownWhen: "the time is unknown in tests that give none" }],
  declarations: { "weekday-clock": { name: "none", form: 'weekday-clock tz "Europe/Berlin"', settings: { tz: { pattern: "STR", required: true } } } },
}
const TENANT: VocabularyExtension = {
  plugin: "example.tenant",
  fields: [{ name: "http.tenant", type: "string" }],
  authKinds: { ldap: { server: { pattern: "STR", required: true }, timeout: { pattern: "DUR" } } },
}

const diags = (text: string, plugins: ReadonlyArray<VocabularyExtension> = [WEEKDAY, TENANT], pluginErrors: Array<{ spec: string; message: string }> = []) =>
  checkSource(text, "a.rules", {}, { plugins, pluginErrors }).diagnostics.map((d) => `${d.code} ${d.span.start.line}:${d.span.start.column} ${d.message}${d.hint === undefined ? "" : ` | ${d.hint}`}`)

const POLICY = "policy p {\n  default allow\n}\n"

describe("plugin vocabulary in check", () => {
  it("accepts plugin declarations, fields and auth kinds, and records them in the program", () => {
    const r = checkSource(`weekday-clock tz "Europe/Berlin"\nauth corp = ldap server "ldap://x" timeout 2s\nlisten socks5 127.0.0.1:1080 auth corp\npolicy p {\n  rule w when time.weekday in [Sat, Sun] and http.tenant == acme -> block\n  default allow\n}\n`, "a.rules", {}, { plugins: [WEEKDAY, TENANT] })
    expect(r.diagnostics).toEqual([])
    expect(r.program!.pluginDecls).toEqual([{ plugin: "example.time.weekday", keyword: "weekday-clock", settings: { tz: "Europe/Berlin" }, span: expect.anything() }])
    expect(r.program!.auths.get("corp")).toMatchObject({ kind: "ldap", settings: { server: "ldap://x", timeout: 2000 } })
    const cond = r.program!.policies.get("p")!.rules[0]!.cond
    expect(cond).toMatchObject({ k: "and", items: [{ k: "match", m: { kind: "plugin", field: "plugin", name: "time.weekday", values: ["Sat", "Sun"] } }, { k: "match", m: { kind: "plugin", name: "http.tenant", values: ["acme"] } }] })
  })

  it("reports unknown settings, missing settings, bad values and unknown fields with did-you-mean", () => {
    expect(diags(`weekday-clock zone "UTC"\nauth corp = ldap sever "x"\npolicy p {\n  rule a when time.wekday == Mon -> block\n  rule b when time.weekday == Mnn -> block\n  rule c when time.weekday suffix "x" -> block\n  rule d when http.tenant in acme -> block\n  default allow\n}\n`)).toEqual([
      "T003 1:1 `weekday-clock` needs the setting `tz` | add `tz STR`",
      "T002 1:15 unknown setting `zone` for `weekday-clock` | `weekday-clock` settings: tz",
      "L001 2:6 auth `corp` is never used | remove it, or refer to it from a rule",
      "T003 2:6 `auth` needs the setting `server` | add `server STR`",
      "T002 2:18 unknown setting `sever` for `auth` | did you mean `server`?",
      "T061 4:15 unknown field `time.wekday` | did you mean `time.weekday`?",
      "T063 5:31 `Mnn` is not a time.weekday | did you mean `Mon`?",
      "T062 6:28 operator `suffix` does not apply to `time.weekday` | `time.weekday` (from plugin `example.time.weekday`) takes `==`, `!=`, `in`, `not in`",
      "T004 7:30 `in` on a plugin field takes a list of values | write `http.tenant in [a, b]`",
    ])
  })

  it("without the plugin, its keyword and field are unknown (and the declaration hint lists plugin keywords when loaded)", () => {
    expect(diags(`weekday-clock tz "UTC"\npolicy p {\n  rule a when time.weekday == Mon -> block\n  default allow\n}\n`, [])).toEqual([
      "T001 1:1 unknown declaration `weekday-clock` | declarations: include, plugin, geoip, options, listen, auth, usergroup, set, upstream, chain, group, tor, policy, test",
      "T061 3:15 unknown field `time.weekday` | fields: src.ip, dst.ip, src.port, dst.port, dst.domain, user, group, listener, protocol, command, auth, src.country, dst.country, src.asn, dst.asn, time",
    ])
    expect(diags(`weekday-clok tz "UTC"\n${POLICY}`)).toEqual(["T001 1:1 unknown declaration `weekday-clok` | did you mean `weekday-clock`?"])
  })

  it("refuses conflicts with the language or another plugin (T081) and reports plugins that failed to load (T080)", () => {
    const bad: VocabularyExtension = { plugin: "x.bad", declarations: { listen: { name: "none", form: "", settings: {} } }, fields: [{ name: "user", type: "string" }, { name: "time.weekday", type: "string" }, { name: "Bad", type: "string" }] }
    expect(diags(`plugin "./bad.ts"\nplugin "./gone.ts"\n${POLICY}`, [WEEKDAY, bad], [{ spec: "./gone.ts", message: "module not found" }])).toEqual([
      "T081 1:1 plugin `x.bad` declares the keyword `listen`, which the language already defines | plugin keywords, fields and auth kinds must be unique; remove one of the plugins or rename",
      "T081 1:1 plugin `x.bad` declares the field `user`, which the language already defines | plugin keywords, fields and auth kinds must be unique; remove one of the plugins or rename",
      "T081 1:1 plugin `x.bad` declares the field `time.weekday`, which plugin `example.time.weekday` already defines | plugin keywords, fields and auth kinds must be unique; remove one of the plugins or rename",
      "T081 1:1 plugin `x.bad`: field name `Bad` must be dotted lower-case words, e.g. `time.weekday` | plugin keywords, fields and auth kinds must be unique; remove one of the plugins or rename",
      "T080 2:8 cannot load plugin `./gone.ts`: module not found | a plugin is a module whose default export is `Plugin.make({ id, vocabulary, layer })`",
    ])
  })

  it("runs a plugin's `validate` on its checked declarations only, and reports a throwing validator as T000", () => {
    const seen: Array<unknown> = []
    const clock: VocabularyExtension = {
      ...WEEKDAY,
      validate: (decls) => {
        seen.push(decls.map((d) => d.settings))
        return decls.filter((d) => d.settings["tz"] === "Mars/Olympus").map((d) => ({ code: "T099", severity: "error" as const, message: "no such planet", span: d.span, hint: "use an Earth zone" }))
      },
    }
    const throws: VocabularyExtension = { plugin: "x.throws", validate: () => { throw new Error("boom") } }
    expect(diags(`weekday-clock tz "UTC"
weekday-clock tz "Mars/Olympus"
${POLICY}`, [clock, TENANT])).toEqual(["T099 2:1 no such planet | use an Earth zone"])
    expect(seen).toEqual([[{ tz: "UTC" }, { tz: "Mars/Olympus" }]])
    expect(diags(POLICY, [throws])).toEqual(["T000 1:1 internal error in plugin `x.throws`'s validate: boom"])
  })

  it("lints `not` over a plugin field that can be unknown (L005)", () => {
    expect(diags(`policy p {\n  rule a when time.weekday != Sun -> block\n  default allow\n}\n`).filter((d) => d.startsWith("L005"))).toHaveLength(1)
    expect(diags(`policy p {\n  rule a when http.tenant != x -> block\n  default allow\n}\n`).filter((d) => d.startsWith("L005"))).toHaveLength(0)
  })

  it("test blocks give plugin field values; enum values are checked", () => {
    const text = `policy p {\n  rule w when time.weekday in [Sat, Sun] -> block\n  default allow\n}\ntest "sat" { connect a.com:443 time.weekday Sat } expect block by w\ntest "x" { connect a.com:443 time.weekday Sunday } expect allow\n`
    expect(diags(text)).toEqual(["T063 6:43 `Sunday` is not a time.weekday | `time.weekday` is one of Mon, Tue, Wed, Thu, Fri, Sat, Sun"])
    const ok = checkSource(text.split("\ntest \"x\"")[0] + "\n", "a.rules", {}, { plugins: [WEEKDAY] })
    expect(ok.program!.tests[0]!.request.plugin).toEqual({ "time.weekday": "Sat" })
  })
})

describe("plugin matchers evaluate like the reference", () => {
  it("compiled evaluator and reference agree on known, missing and null plugin values", () => {
    const r = checkSource(`policy p {\n  rule we when time.weekday in [Sat, Sun] and dst.port == 443 -> block "weekend"\n  rule alone when http.tenant in [beta, gamma] -> allow\n  rule t when not http.tenant == acme -> block "tenant"\n  default allow\n}\n`, "a.rules", {}, { plugins: [WEEKDAY, TENANT] })
    expect(r.diagnostics.filter((d) => d.severity === "error")).toEqual([])
    const policy = r.program!.policies.get("p")!
    const compiled = compile(policy)
    const reqs: Array<Request> = []
    for (const day of [undefined, null, "Sat", "Mon"]) {
      for (const tenant of [undefined, null, "acme", "beta", "zeta"]) {
        for (const port of [443, 80]) {
          const plugin: Record<string, string | null> = {}
          if (day !== undefined) plugin["time.weekday"] = day
          if (tenant !== undefined) plugin["http.tenant"] = tenant
          reqs.push({ command: "connect", dstHost: "a.com", dstPort: port, ...(Object.keys(plugin).length === 0 ? {} : { plugin }) })
        }
      }
    }
    const rules = new Set<string>()
    for (const req of reqs) {
      const a = evaluateReference(policy, req, { missing: "unknown" })
      const b = evaluate(compiled, req, { missing: "unknown" })
      expect(b).toEqual(a)
      if (a.type === "decision") rules.add(a.decision.rule)
    }
    expect([...rules].sort()).toEqual(["alone", "default", "t", "we"])
  })
})
