/**
 * The checker: a loaded item list in, a `Program` and diagnostics out.
 *
 * Details: pass 1 declares every name (so references may point forward);
 * pass 2 checks declarations in dependency order (sets, groups of users and
 * auths before listeners; upstreams before chains and groups), then policies,
 * listener → policy resolution, cycles, tests, and the unused-name lints.
 * Code ranges: T0xx names/types/ranges, L001–L049 lints (docs/diagnostics.md).
 */
import type { DeclNode, PolicyNode, TestNode } from "./Ast.ts"
import { Ctx } from "./CheckContext.ts"
import { checkDecl, declareAll, type Globals, type Pending, resolve } from "./CheckDecls.ts"
import { checkPolicy } from "./CheckPolicies.ts"
import { checkTest, type TestEnv } from "./CheckTests.ts"
import { FIELDS } from "./CheckConditions.ts"
import type { Diagnostic } from "./Diagnostic.ts"
import { type CheckOptions, mergeExtensions } from "./Extension.ts"
import { fileSpan } from "./Diagnostic.ts"
import { AUTH_KINDS, declarations } from "./Vocabulary.ts"
import type { PolicyIR, Program, TestIR } from "./Ir.ts"
import type { Loaded, SourceReader } from "./Loader.ts"

const ORDER = ["geoip", "plugin", "options", "set", "usergroup", "auth", "upstream", "chain", "group", "tor", "listen"]

/** Cycles among chains and groups (T013), each reported once at its first member in file order. */
const checkCycles = (ctx: Ctx): void => {
  const edges = (n: string): ReadonlyArray<string> => ctx.chains.get(n)?.hops ?? ctx.groups.get(n)?.members ?? []
  const state = new Map<string, "visiting" | "done">()
  const reported = new Set<string>()
  const visit = (n: string, path: string[]): void => {
    const s = state.get(n)
    if (s === "done") return
    if (s === "visiting") {
      const cycle = [...path.slice(path.indexOf(n)), n]
      const key = [...new Set(cycle)].sort().join(",")
      if (!reported.has(key)) {
        reported.add(key)
        const sym = ctx.lookup("outbound", cycle[0]!)!
        ctx.err("T013", `cycle in outbounds: ${cycle.join(" -> ")}`, sym.span, {
          hint: "a chain or group cannot contain itself, directly or through others",
          notes: cycle.slice(1, -1).map((c) => ({ message: `\`${c}\` is part of the cycle`, span: ctx.lookup("outbound", c)!.span })),
        })
      }
      return
    }
    state.set(n, "visiting")
    for (const m of edges(n)) visit(m, [...path, n])
    state.set(n, "done")
  }
  for (const n of [...ctx.chains.keys(), ...ctx.groups.keys()]) visit(n, [])
}

const unusedLints = (ctx: Ctx): void => {
  const kinds: Array<[Parameters<Ctx["lookup"]>[0], string]> = [["set", "set"], ["outbound", ""], ["tor", "tor endpoint"], ["auth", "auth"], ["usergroup", "user group"]]
  for (const [ns, label] of kinds) {
    for (const sym of ctx.symbols.get(ns)?.values() ?? []) {
      if (ctx.isUsed(ns, sym.name)) continue
      ctx.warn("L001", `${label === "" ? sym.kind : label} \`${sym.name}\` is never used`, sym.span, { hint: "remove it, or refer to it from a rule" })
    }
  }
}

export const checkLoaded = (loaded: Loaded, reader: SourceReader, options: CheckOptions = {}): { readonly program: Program | undefined; readonly diagnostics: ReadonlyArray<Diagnostic> } => {
  const ext = mergeExtensions(options.plugins ?? [], { keywords: [...declarations.keys()], fields: Object.keys(FIELDS), authKinds: AUTH_KINDS })
  const ctx = new Ctx(reader, loaded.sources, ext, new Map((options.pluginErrors ?? []).map((e) => [e.spec, e.message])))
  const decls = loaded.items.filter((i): i is DeclNode => i.kind === "decl")
  if (ext.conflicts.length > 0) {
    const at = decls.find((d) => d.keyword.text === "plugin")?.span ?? fileSpan(loaded.files[0] ?? "")
    for (const c of ext.conflicts) ctx.err("T081", c, at, { hint: "plugin keywords, fields and auth kinds must be unique; remove one of the plugins or rename" })
  }
  const policyNodes = loaded.items.filter((i): i is PolicyNode => i.kind === "policy")
  const testNodes = loaded.items.filter((i): i is TestNode => i.kind === "test")

  const good = declareAll(ctx, decls)
  const policyByName = new Map<string, PolicyNode>()
  for (const p of policyNodes) if (ctx.declare("policy", "policy", p.name.text, p.name.span)) policyByName.set(p.name.text, p)
  for (const t of testNodes) ctx.declare("test", "test", t.name.value, t.name.span)

  const globals: Globals = { plugins: [], options: {} }
  const pending: Pending[] = []
  const sorted = [...good].sort((a, b) => ORDER.indexOf(a.keyword.text) - ORDER.indexOf(b.keyword.text))
  for (const d of sorted) {
    try {
      const p = checkDecl(ctx, d, globals)
      if (p !== undefined) pending.push(p)
    } catch (e) {
      ctx.err("T000", `internal checker error in \`${d.keyword.text}\`: ${e instanceof Error ? e.message : String(e)}`, d.keyword.span)
    }
  }
  checkCycles(ctx)
  for (const v of ext.validators) {
    try {
      for (const d of v.validate(ctx.pluginDecls.filter((x) => x.plugin === v.plugin))) {
        const extra = d.hint === undefined ? {} : { hint: d.hint }
        if (d.severity === "error") ctx.err(d.code, d.message, d.span, extra)
        else ctx.warn(d.code, d.message, d.span, extra)
      }
    } catch (e) {
      ctx.err("T000", `internal error in plugin \`${v.plugin}\`'s validate: ${e instanceof Error ? e.message : String(e)}`, fileSpan(loaded.files[0] ?? ""))
    }
  }

  const policies = new Map<string, PolicyIR>()
  for (const p of policyByName.values()) {
    try {
      const ir = checkPolicy(ctx, p)
      if (ir !== undefined) policies.set(p.name.text, ir)
    } catch (e) {
      ctx.err("T000", `internal checker error in policy \`${p.name.text}\`: ${e instanceof Error ? e.message : String(e)}`, p.name.span)
    }
  }

  // The default policy: the only one, else the one named `default`.
  const names = [...policyByName.keys()]
  const defaultPolicy = names.length === 1 ? names[0] : policyByName.has("default") ? "default" : undefined
  if (defaultPolicy !== undefined) ctx.use("policy", defaultPolicy)

  // Listener → policy.
  const listenerPolicy = new Map<string, string>()
  const listeners = ctx.listeners.map((l, i) => {
    const p = pending.find((x) => x.listenerIndex === i)?.policySetting
    let policy = defaultPolicy
    if (p !== undefined) {
      const name = p.values[0]!.value as string
      policy = resolve(ctx, "policy", name, p.values[0]!.token.span, "policy") ? name : undefined
    } else if (policy === undefined) {
      ctx.err("T050", `listener \`${l.name}\` has no policy`, ctx.lookup("listener", l.name)?.span ?? l.span, {
        hint: names.length === 0 ? "declare `policy NAME { ... default block }`" : `add \`policy NAME\` to the listener (one of ${names.join(", ")}), or name one policy \`default\``,
      })
    }
    if (policy !== undefined) listenerPolicy.set(l.name, policy)
    return { ...l, policy: policy ?? "" }
  })

  const env: TestEnv = { policies: policyByName, listenerPolicy, defaultPolicy }
  const tests: TestIR[] = []
  for (const t of testNodes) {
    try {
      const ir = checkTest(ctx, t, env)
      if (ir !== undefined) tests.push(ir)
    } catch (e) {
      ctx.err("T000", `internal checker error in test: ${e instanceof Error ? e.message : String(e)}`, t.name.span)
    }
  }

  unusedLints(ctx)
  if (names.length > 1) {
    for (const n of names) {
      if (!ctx.isUsed("policy", n)) ctx.warn("L010", `policy \`${n}\` is not used by any listener or test`, policyByName.get(n)!.name.span, { hint: "bind it with `listen ... policy NAME`, or remove it" })
    }
  }

  const program: Program = {
    files: loaded.files,
    listeners,
    auths: ctx.auths,
    usergroups: ctx.usergroups,
    sets: ctx.sets,
    upstreams: ctx.upstreams,
    chains: ctx.chains,
    groups: ctx.groups,
    tors: ctx.tors,
    ...(ctx.geoip === undefined ? {} : { geoip: ctx.geoip }),
    plugins: globals.plugins,
    pluginDecls: ctx.pluginDecls,
    options: globals.options,
    policies,
    ...(defaultPolicy === undefined ? {} : { defaultPolicy }),
    tests,
  }
  return { program, diagnostics: ctx.diagnostics }
}
