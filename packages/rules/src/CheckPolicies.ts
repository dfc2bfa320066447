/**
 * Checks policies: rules, guards and the default; actions, modifiers; and the
 * rule-level lints that need resolved outbounds (`.onion` not via tor L006,
 * command/outbound misfit L007/L008).
 *
 * Details: a rule whose condition has errors is left out of the IR (errors
 * make the program `undefined` anyway). Rule names are unique per policy,
 * guards, rules and `default` together.
 */
import type { ActionNode, PolicyNode, RuleNode, Span, Token } from "./Ast.ts"
import { CondChecker } from "./CheckConditions.ts"
import { type Ctx, describeToken } from "./CheckContext.ts"
import { resolve } from "./CheckDecls.ts"
import type { ActionIR, Cond, LimitKey, ModifierIR, OutboundKind, PolicyIR, RuleIR } from "./Ir.ts"
import * as L from "./Literal.ts"
import { didYouMean } from "./Suggest.ts"

const LIMIT_KEYS = ["user", "src", "rule", "dst", "listener"] as const
const MODIFIERS = ["limit", "bandwidth", "idle", "log", "tag"]

const outboundKind = (ctx: Ctx, name: string): OutboundKind => (ctx.lookup("outbound", name)?.kind ?? "upstream") as OutboundKind

// Shared by every rule that has them (a 100k-rule policy kept 100k copies of each): IR is never mutated.
const ALLOW: ActionIR = Object.freeze({ k: "allow" })
const BLOCK: ActionIR = Object.freeze({ k: "block" })
const NO_MODIFIERS: ReadonlyArray<ModifierIR> = Object.freeze([])

/** Resolves an action; `undefined` when it has errors (reported). */
export const checkAction = (ctx: Ctx, a: ActionNode): ActionIR | undefined => {
  switch (a.kind) {
    case "allow": return ALLOW
    case "block": return a.message === undefined ? BLOCK : { k: "block", message: a.message.value }
    case "redirect": {
      const text = a.target.kind === "string" ? a.target.value : a.target.text
      const r = L.parseHostPort(text)
      if (!r.ok) {
        ctx.err("T030", `redirect target: ${r.message}`, a.target.span, { hint: r.hint ?? 'write `redirect "host:port"`' })
        return undefined
      }
      return { k: "redirect", host: r.value.host, port: r.value.port }
    }
    case "via": {
      const name = a.target.text
      if (ctx.lookup("tor", name) !== undefined && ctx.lookup("outbound", name) === undefined) {
        ctx.err("T012", `\`${name}\` is a tor endpoint, not an upstream, chain or group`, a.target.span, { hint: `write \`tor ${name}\`` })
        return undefined
      }
      if (!resolve(ctx, "outbound", name, a.target.span, "outbound")) return undefined
      let otherwise: ActionIR | undefined
      if (a.else !== undefined) {
        if (a.else.kind === "via" && a.else.target.text === name) {
          ctx.err("T059", `\`else\` routes via \`${name}\` again`, a.else.target.span, { hint: "name a different outbound, or `block`" })
          return undefined
        }
        otherwise = checkAction(ctx, a.else)
        if (otherwise === undefined) return undefined
      }
      return { k: "via", target: name, targetKind: outboundKind(ctx, name), ...(otherwise === undefined ? {} : { else: otherwise }) }
    }
    case "tor": {
      const tors = ctx.names("tor")
      if (a.target === undefined) {
        if (tors.length === 1) {
          ctx.use("tor", tors[0]!)
          return { k: "tor", target: tors[0]! }
        }
        for (const t of tors) ctx.use("tor", t)
        ctx.err("T056", tors.length === 0 ? "`tor` needs a declared tor endpoint" : `\`tor\` needs a name: ${tors.length} tor endpoints are declared`, a.span, {
          hint: tors.length === 0 ? "declare `tor NAME = socks 127.0.0.1:9050`" : `write \`tor ${tors[0]}\` (one of ${tors.join(", ")})`,
        })
        return undefined
      }
      const name = a.target.text
      if (ctx.lookup("outbound", name) !== undefined && ctx.lookup("tor", name) === undefined) {
        ctx.err("T012", `\`${name}\` is an outbound, not a tor endpoint`, a.target.span, { hint: `write \`via ${name}\`` })
        return undefined
      }
      return resolve(ctx, "tor", name, a.target.span, "tor endpoint") ? { k: "tor", target: name } : undefined
    }
  }
}

/** Parses the modifier tokens after an action. */
export const checkModifiers = (ctx: Ctx, tokens: ReadonlyArray<Token>): ReadonlyArray<ModifierIR> | undefined => {
  const out: ModifierIR[] = []
  let ok = true
  let i = 0
  const fail = (t: Token, message: string, hint?: string) => {
    ctx.err("T058", message, t.span, { hint })
    ok = false
  }
  const per = <K extends string>(keys: ReadonlyArray<K>, dflt: K): K => {
    const t = tokens[i]
    if (!(t?.kind === "bare" && t.text === "per")) return dflt
    const k = tokens[i + 1]
    i += 2
    if (k?.kind === "bare" && (keys as ReadonlyArray<string>).includes(k.text)) return k.text as K
    fail(k ?? t, `\`per\` needs one of ${keys.join(", ")}`, k?.kind === "bare" ? didYouMean(k.text, keys) : undefined)
    return dflt
  }
  while (i < tokens.length && ok) {
    const t = tokens[i++]!
    const word = t.kind === "bare" ? t.text : undefined
    const arg = tokens[i]
    const span = t.span
    if (word === "log") out.push({ k: "log", span })
    else if (word === "tag") {
      if (arg?.kind !== "string") fail(arg ?? t, "`tag` needs a string", 'write `tag "name"`')
      else {
        i++
        out.push({ k: "tag", value: arg.value, span })
      }
    } else if (word === "idle") {
      const d = arg?.kind === "bare" ? L.parseDuration(arg.text) : undefined
      if (d === undefined || !d.ok) fail(arg ?? t, d?.ok === false ? d.message : "`idle` needs a duration like `5m`")
      else {
        i++
        out.push({ k: "idle", ms: d.value, span })
      }
    } else if (word === "limit") {
      if (arg?.kind === "bare" && /^\d+$/.test(arg.text)) {
        i++
        out.push({ k: "conns", max: Number(arg.text), per: per(LIMIT_KEYS, "src"), span })
      } else {
        const r = arg?.kind === "bare" ? L.parseRate(arg.text) : undefined
        if (r === undefined || !r.ok || r.value.k !== "count") fail(arg ?? t, r?.ok === false ? r.message : "`limit` needs a rate like `20/s` or a connection count like `100`", "for bytes per second use `bandwidth 1MiB/s`")
        else {
          i++
          out.push({ k: "rate", count: r.value.count, perSeconds: r.value.perSeconds, per: per(LIMIT_KEYS, "src"), span })
        }
      }
    } else if (word === "bandwidth") {
      const r = arg?.kind === "bare" ? L.parseRate(arg.text) : undefined
      if (r === undefined || !r.ok || r.value.k !== "bytes") fail(arg ?? t, r?.ok === false ? r.message : "`bandwidth` needs bytes per time like `1MiB/s`")
      else {
        i++
        out.push({ k: "bandwidth", bytesPerSecond: r.value.bytesPerSecond, per: per<LimitKey | "connection">([...LIMIT_KEYS, "connection"], "connection"), span })
      }
    } else {
      fail(t, word !== undefined ? `unknown modifier \`${word}\`` : `unexpected ${describeToken(t)} after the action`, word !== undefined ? didYouMean(word, MODIFIERS) ?? `modifiers: ${MODIFIERS.join(", ")}` : undefined)
      break
    }
  }
  return ok ? (out.length === 0 ? NO_MODIFIERS : out) : undefined
}

// ---------------------------------------------------------------------------
// Rule-level lints
// ---------------------------------------------------------------------------

const isOnionDomain = (d: string): boolean => d === "onion" || d.endsWith(".onion")

/** True when the condition can only hold for `.onion` names. */
const onlyOnion = (c: Cond): boolean => {
  switch (c.k) {
    case "match":
      if (c.m.kind !== "domain" || c.m.patterns.length === 0) return false
      return c.m.patterns.every((p) => (p.t === "glob" ? /\.onion$/i.test(p.g) : p.t === "regex" ? false : isOnionDomain(p.d)))
    case "and": return c.items.some(onlyOnion)
    case "or": return c.items.length > 0 && c.items.every(onlyOnion)
    default: return false
  }
}

/** Can the condition be true for a request with this command? (Conservative: only command leaves decide.) */
const allowsCommand = (c: Cond, cmd: string): boolean => {
  switch (c.k) {
    case "true": return true
    case "match": return c.m.kind !== "enum" || c.m.field !== "command" || c.m.values.includes(cmd)
    case "not": return c.c.k === "match" && c.c.m.kind === "enum" && c.c.m.field === "command" ? !c.c.m.values.includes(cmd) : true
    case "and": return c.items.every((x) => allowsCommand(x, cmd))
    case "or": return c.items.some((x) => allowsCommand(x, cmd))
  }
}

/** The http(s) upstream an outbound goes through (directly or in a chain), if any. */
const httpHop = (ctx: Ctx, name: string, depth = 0): string | undefined => {
  if (depth > 32) return undefined
  const u = ctx.upstreams.get(name)
  if (u !== undefined) return u.kind === "http" || u.kind === "https" ? name : undefined
  const ch = ctx.chains.get(name)
  if (ch !== undefined) {
    for (const h of ch.hops) {
      const x = httpHop(ctx, h, depth + 1)
      if (x !== undefined) return x
    }
  }
  return undefined
}

const ruleLints = (ctx: Ctx, name: string, nameSpan: Span, actionSpan: Span, cond: Cond, action: ActionIR): void => {
  if (onlyOnion(cond) && action.k !== "tor" && action.k !== "block") {
    ctx.err("L006", `rule \`${name}\` routes .onion names ${action.k === "via" ? `via \`${action.target}\`` : `with \`${action.k}\``}, not through tor`, actionSpan, {
      hint: ".onion names only resolve inside Tor and leak to DNS or the upstream otherwise; use `tor [NAME]` or `block`",
    })
  }
  if (action.k !== "via") return
  const hop = httpHop(ctx, action.target)
  if (hop === undefined) return
  const through = hop === action.target ? `http upstream \`${hop}\`` : `\`${action.target}\`, which goes through http upstream \`${hop}\``
  for (const cmd of ["udp", "bind"]) {
    if (!allowsCommand(cond, cmd)) continue
    if (!allowsCommand(cond, "connect")) {
      ctx.err("L008", `rule \`${name}\` sends \`${cmd}\` via ${through}, which can only carry \`connect\``, actionSpan, { hint: "route it via a socks5 upstream, or `block` it" })
    } else {
      ctx.warn("L007", `rule \`${name}\` can match \`command ${cmd}\` but routes via ${through}, which can only carry \`connect\``, nameSpan, {
        hint: `add \`command connect and ...\` to the condition, or handle \`${cmd}\` in an earlier rule`,
      })
      break
    }
  }
}

// ---------------------------------------------------------------------------
// Policies
// ---------------------------------------------------------------------------

const checkRule = (ctx: Ctx, conds: CondChecker, r: RuleNode): RuleIR | undefined => {
  conds.nextRule()
  const cond = r.when === undefined ? ({ k: "true" } as const) : conds.convert(r.when)
  if (r.kind === "guard" && r.action.kind !== "block") {
    ctx.err("T054", `guard \`${r.name.text}\` must \`block\`; found \`${r.action.kind}\``, r.action.span, { hint: "guards only block; use a `rule` to allow or route" })
  }
  if (r.kind === "guard" && r.when === undefined) {
    ctx.err("T054", `guard \`${r.name.text}\` has no condition and would block everything`, r.name.span, { hint: "add `when CONDITION`" })
  }
  const action = checkAction(ctx, r.action)
  const modifiers = checkModifiers(ctx, r.modifiers)
  if (cond === undefined || action === undefined || modifiers === undefined) return undefined
  ruleLints(ctx, r.name.text, r.name.span, r.action.span, cond, action)
  // `kind` as a literal, not the parser's copy of the keyword (one string per rule otherwise).
  return { name: r.name.text, kind: r.kind === "guard" ? "guard" : "rule", cond, action, modifiers, span: r.span }
}

export const checkPolicy = (ctx: Ctx, p: PolicyNode): PolicyIR | undefined => {
  const conds = new CondChecker(ctx)
  const guards: RuleIR[] = []
  const rules: RuleIR[] = []
  let def: RuleIR | undefined
  let defSpan: Span | undefined
  let broken = false
  const names = new Map<string, Span>()
  for (let idx = 0; idx < p.items.length; idx++) {
    const item = p.items[idx]!
    if (item.kind === "default") {
      const defaultKw = { ...item.span, end: { ...item.span.start, offset: item.span.start.offset + 7, column: item.span.start.column + 7 } }
      if (defSpan !== undefined) {
        ctx.err("T052", `policy \`${p.name.text}\` has more than one \`default\``, defaultKw, { notes: [{ message: "first default here", span: defSpan }] })
        continue
      }
      defSpan = defaultKw
      if (idx !== p.items.length - 1) ctx.err("T053", "`default` must be the last item of a policy", defaultKw, { hint: "rules after `default` are never reached; move `default` to the end" })
      const action = checkAction(ctx, item.action)
      const modifiers = checkModifiers(ctx, item.modifiers)
      if (action === undefined || modifiers === undefined) broken = true
      else {
        def = { name: "default", kind: "default", cond: { k: "true" }, action, modifiers, span: item.span }
        ruleLints(ctx, "default", defaultKw, item.action.span, { k: "true" }, action)
      }
      continue
    }
    const first = names.get(item.name.text)
    if (item.name.text === "default") {
      ctx.err("T011", "`default` is reserved for the policy's default", item.name.span, { hint: "rename the rule" })
    } else if (first !== undefined) {
      ctx.err("T011", `duplicate rule \`${item.name.text}\` in policy \`${p.name.text}\``, item.name.span, { notes: [{ message: "first defined here", span: first }], hint: "rule names must be unique within a policy" })
    } else names.set(item.name.text, item.name.span)
    const r = checkRule(ctx, conds, item)
    if (r === undefined) broken = true
    else (r.kind === "guard" ? guards : rules).push(r)
  }
  if (defSpan === undefined) {
    ctx.err("T051", `policy \`${p.name.text}\` has no \`default\``, p.name.span, { hint: 'end the policy with `default block` (or `default allow`); nothing is allowed implicitly' })
    return undefined
  }
  if (broken || def === undefined) return undefined
  return { name: p.name.text, guards, rules, default: def, span: p.span }
}

/** Rule names of a policy node (for `by RULE` in tests, also when the policy has errors). */
export const ruleNames = (p: PolicyNode): string[] => p.items.map((i) => (i.kind === "default" ? "default" : i.name.text))
