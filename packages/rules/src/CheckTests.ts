/**
 * Checks `test` blocks into `TestIR`: the request, the expected outcome, the
 * deciding rule, and the policy the test runs against.
 *
 * Details: policy = the test's `policy`, else its listener's policy, else the
 * program's default policy, else T072. Groups of the request are the `group`/
 * `groups` settings plus every `usergroup` that lists the user. Facts not
 * given stay unknown.
 */
import type { PolicyNode, TestNode } from "./Ast.ts"
import { checkCountry } from "./CheckSets.ts"
import { type Ctx } from "./CheckContext.ts"
import { resolve } from "./CheckDecls.ts"
import { collectSettings, one, type Setting } from "./CheckSettings.ts"
import type { Command, ExpectIR, Facts, Request, TestIR } from "./Ir.ts"
import * as L from "./Literal.ts"
import { ruleNames } from "./CheckPolicies.ts"
import { didYouMean } from "./Suggest.ts"
import { TEST_SETTINGS } from "./Vocabulary.ts"

export interface TestEnv {
  readonly policies: ReadonlyMap<string, PolicyNode>
  readonly listenerPolicy: ReadonlyMap<string, string>
  readonly defaultPolicy: string | undefined
}

const str = (s: Setting | undefined): string | undefined => s?.values[0]?.value as string | undefined

export const checkTest = (ctx: Ctx, t: TestNode, env: TestEnv): TestIR | undefined => {
  const before = ctx.diagnostics.filter((d) => d.severity === "error").length
  const s = new Map<string, Setting[]>()
  // Plugin fields are given like facts: `time.weekday Sat`.
  const specs = ctx.ext.fields.size === 0 ? TEST_SETTINGS : { ...TEST_SETTINGS, ...Object.fromEntries([...ctx.ext.fields.keys()].map((f) => [f, { pattern: "NAME" }])) }
  for (const line of t.body) collectSettings(ctx, line.tokens, specs, "a test request", s)
  const commands = (["connect", "bind", "udp"] as const).filter((c) => s.has(c))
  const mentioned = t.body.some((l) => l.tokens.some((x) => x.kind === "bare" && ["connect", "bind", "udp"].includes(x.text)))
  if (commands.length > 1 || (commands.length === 0 && !mentioned)) {
    const at = commands.length > 1 ? one(s, commands[1]!)!.nameSpan : t.name.span
    ctx.err("T070", commands.length === 0 ? `test ${JSON.stringify(t.name.value)} has no request` : "a test makes exactly one request", at, {
      hint: commands.length === 0 ? "add `connect HOST:PORT` (or `bind`/`udp`)" : `keep one of ${commands.map((c) => `\`${c}\``).join(", ")}`,
    })
  }
  const listener = one(s, "listener")
  if (listener !== undefined) resolve(ctx, "listener", str(listener)!, listener.values[0]!.token.span, "listener")
  const policyS = one(s, "policy")
  let policy: string | undefined
  if (policyS !== undefined) {
    if (resolve(ctx, "policy", str(policyS)!, policyS.values[0]!.token.span, "policy")) policy = str(policyS)
  } else if (listener !== undefined && env.listenerPolicy.has(str(listener)!)) policy = env.listenerPolicy.get(str(listener)!)
  else if (env.defaultPolicy !== undefined) policy = env.defaultPolicy
  else if (ctx.names("policy").length > 0) {
    ctx.err("T072", `test ${JSON.stringify(t.name.value)} does not say which policy it tests`, t.name.span, { hint: "add `policy NAME` or `listener NAME` to the request, or name one policy `default`" })
  } else ctx.err("T072", "a test needs a policy to run against; none is declared", t.name.span)
  if (policy !== undefined) ctx.use("policy", policy)

  // Expected outcome.
  const a = t.expect.action
  let expect: ExpectIR | undefined
  switch (a.kind) {
    case "allow": expect = { k: "allow" }; break
    case "block": expect = a.message === undefined ? { k: "block" } : { k: "block", message: a.message.value }; break
    case "redirect": {
      if (a.target === undefined) expect = { k: "redirect" }
      else {
        const text = a.target.kind === "string" ? a.target.value : a.target.text
        const r = L.parseHostPort(text)
        if (!r.ok) ctx.err("T030", r.message, a.target.span)
        expect = { k: "redirect", target: text }
      }
      break
    }
    case "via":
      if (resolve(ctx, "outbound", a.target.text, a.target.span, "outbound")) expect = { k: "via", target: a.target.text }
      break
    case "tor":
      if (a.target === undefined) expect = { k: "tor" }
      else if (resolve(ctx, "tor", a.target.text, a.target.span, "tor endpoint")) expect = { k: "tor", target: a.target.text }
      break
  }
  const by = t.expect.rule
  if (by !== undefined && policy !== undefined) {
    const node = env.policies.get(policy)
    const names = node === undefined ? [] : ruleNames(node)
    if (node !== undefined && !names.includes(by.text)) {
      ctx.err("T010", `policy \`${policy}\` has no rule \`${by.text}\``, by.span, { hint: didYouMean(by.text, names) ?? `rules: ${names.join(", ")}` })
    }
  }

  // The request.
  const cmd = commands[0]
  const target = cmd === undefined ? undefined : (one(s, cmd)!.values[0]!.value as L.HostPort)
  const user = str(one(s, "user"))
  const groups = new Set<string>()
  for (const g of s.get("group") ?? []) groups.add(g.values[0]!.value as string)
  for (const g of (one(s, "groups")?.values[0]?.value as string[] | undefined) ?? []) groups.add(g)
  for (const g of groups) if (ctx.lookup("usergroup", g) !== undefined) ctx.use("usergroup", g)
  if (user !== undefined) for (const [g, users] of ctx.usergroups) if (users.includes(user)) groups.add(g)
  const src = one(s, "src")?.values[0]?.value as { ip: string; port?: number } | undefined
  const facts: Record<string, unknown> = {}
  for (const f of ["dst.ip", "dst.asn", "src.asn"] as const) {
    const v = one(s, f)?.values[0]?.value
    if (v !== undefined) facts[f] = v
  }
  for (const f of ["dst.country", "src.country"] as const) {
    const v = one(s, f)
    if (v !== undefined) {
      const c = checkCountry(ctx, str(v)!, v.values[0]!.token.span)
      if (c !== undefined) facts[f] = c
    }
  }
  const plugin: Record<string, string> = {}
  for (const [f, { spec }] of ctx.ext.fields) {
    const v = one(s, f)
    if (v === undefined) continue
    const text = str(v)!
    if (spec.type === "enum" && !(spec.values ?? []).includes(text)) {
      ctx.err("T063", `\`${text}\` is not a ${f}`, v.values[0]!.token.span, { hint: didYouMean(text, spec.values ?? []) ?? `\`${f}\` is one of ${(spec.values ?? []).join(", ")}` })
    } else plugin[f] = text
  }
  const protocol = one(s, "protocol")
  const auth = one(s, "auth")
  const at = one(s, "at")?.values[0]?.value as number | undefined
  const errors = ctx.diagnostics.filter((d) => d.severity === "error").length
  if (errors > before || target === undefined || policy === undefined || expect === undefined) return undefined
  const request: Request = {
    command: cmd as Command,
    dstHost: target.host,
    dstPort: target.port,
    ...(listener === undefined ? {} : { listener: str(listener)! }),
    ...(protocol === undefined ? {} : { protocol: [...protocol.words][0]! }),
    ...(src === undefined ? {} : { srcIp: src.ip, ...(src.port === undefined ? {} : { srcPort: src.port }) }),
    ...(user === undefined ? {} : { user }),
    ...(groups.size === 0 ? {} : { groups: [...groups] }),
    auth: auth === undefined ? (user === undefined ? "none" : "password") : [...auth.words][0]!,
    ...(at === undefined ? {} : { time: at }),
    ...(Object.keys(facts).length === 0 ? {} : { facts: facts as Facts }),
    ...(Object.keys(plugin).length === 0 ? {} : { plugin }),
  }
  return { name: t.name.value, policy, request, expect, ...(by === undefined ? {} : { expectRule: by.text }), span: t.span }
}
