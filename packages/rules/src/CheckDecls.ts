/**
 * Checks generic declarations (listen, auth, usergroup, set, upstream, chain,
 * group, tor, options, geoip, plugin) into their IR.
 *
 * Details: `declareAll` enters every name first, so references may point
 * forward. `checkDecl` then builds each declaration's IR; references to
 * policies (listeners) are resolved later by `Checker.ts`.
 */
import type { DeclNode, Span, Token } from "./Ast.ts"
import { type Ctx, describeToken, kindLabel, type Namespace, withArticle } from "./CheckContext.ts"
import { checkSetEntries } from "./CheckSets.ts"
import { checkCidr, type CidrsValue, collectSettings, one, type Setting } from "./CheckSettings.ts"
import type { Cidr, GroupStrategy, ListenerKind, ProbeIR, SecretRef, SetType, TorIsolation, UpstreamKind } from "./Ir.ts"
import { parseCidr, parseIp } from "./Ip.ts"
import * as L from "./Literal.ts"
import { didYouMean } from "./Suggest.ts"
import { AUTH_KINDS, declarations, GROUP_STRATEGIES, LISTENER_KINDS, POLICY_ONLY, SET_TYPES, type SettingSpec, UPSTREAM_SCHEMES } from "./Vocabulary.ts"

const NS: Record<string, Namespace> = {
  listen: "listener", auth: "auth", usergroup: "usergroup", set: "set", upstream: "outbound", chain: "outbound", group: "outbound", tor: "tor",
}

const KIND_LABEL: Record<string, string> = { listen: "listener" }

/** The listener's name: explicit, else its kind (`socks5`). */
export const listenerName = (d: DeclNode): { name: string; span: Span } | undefined => {
  if (d.name !== undefined) return { name: d.name.text, span: d.name.span }
  const k = d.args[0]
  if (k?.kind === "bare") return { name: k.text, span: k.span }
  return undefined
}

/** Reports structural problems (unknown keyword, name rules); returns false when the declaration cannot be checked further. */
const structureOk = (ctx: Ctx, d: DeclNode): boolean => {
  const kw = d.keyword.text
  const spec = declarations.get(kw) ?? ctx.ext.declarations.get(kw)?.spec
  if (spec === undefined) {
    if (POLICY_ONLY.has(kw)) {
      ctx.err("T055", `\`${kw}\` is only allowed inside a policy`, d.keyword.span, { hint: `put it inside \`policy NAME { ... }\`` })
    } else {
      const all = [...declarations.keys(), ...ctx.ext.declarations.keys(), "policy", "test"]
      ctx.err("T001", `unknown declaration \`${kw}\``, d.keyword.span, {
        hint: didYouMean(kw, all) ?? `declarations: ${all.join(", ")}`,
      })
    }
    return false
  }
  if (spec.name === "required" && d.name === undefined) {
    ctx.err("T005", `\`${kw}\` needs a name`, d.keyword.span, { hint: `write \`${spec.form}\`` })
    return false
  }
  if (spec.name === "none" && d.name !== undefined) {
    ctx.err("T005", `\`${kw}\` does not take a name`, d.name.span, { hint: `write \`${spec.form}\`` })
    return false
  }
  return true
}

/** Pass 1: enter every declared name. Returns the declarations that passed the structure check. */
export const declareAll = (ctx: Ctx, decls: ReadonlyArray<DeclNode>): DeclNode[] => {
  const ok: DeclNode[] = []
  for (const d of decls) {
    if (!structureOk(ctx, d)) continue
    const ns = NS[d.keyword.text]
    if (ns !== undefined) {
      const n = d.keyword.text === "listen" ? listenerName(d) : d.name === undefined ? undefined : { name: d.name.text, span: d.name.span }
      const hint = d.keyword.text === "listen" && d.name === undefined ? `an unnamed listener is named after its kind; name them: \`listen NAME = ${n?.name ?? "socks5"} ...\`` : undefined
      if (n !== undefined && !ctx.declare(ns, KIND_LABEL[d.keyword.text] ?? d.keyword.text, n.name, n.span, hint)) continue
    }
    ok.push(d)
  }
  return ok
}

/** Settings from `tokens` (inline, after the positional part) and every block line. */
const settingsOf = (ctx: Ctx, d: DeclNode, tokens: ReadonlyArray<Token>, specs: Readonly<Record<string, SettingSpec>> = (declarations.get(d.keyword.text) ?? ctx.ext.declarations.get(d.keyword.text)!.spec).settings): Map<string, Setting[]> => {
  const into = new Map<string, Setting[]>()
  collectSettings(ctx, tokens, specs, `\`${d.keyword.text}\``, into)
  for (const line of d.block ?? []) collectSettings(ctx, line.tokens, specs, `\`${d.keyword.text}\``, into)
  for (const [name, spec] of Object.entries(specs)) {
    if (spec.required === true && !into.has(name)) ctx.err("T003", `\`${d.keyword.text}\` needs the setting \`${name}\``, d.name?.span ?? d.keyword.span, { hint: `add \`${name} ${spec.pattern}\`` })
  }
  return into
}

const settingRecord = (settings: Map<string, Setting[]>, skip: ReadonlyArray<string>): Record<string, unknown> => {
  const out: Record<string, unknown> = {}
  for (const [k, v] of settings) {
    if (skip.includes(k)) continue
    const s = v[0]!
    out[k] = s.values.length === 0 ? true : s.values.length === 1 ? s.values[0]!.value : s.values.map((x) => x.value)
  }
  return out
}

/** Expects `args[i]` to be one of `words`; reports otherwise. */
const keywordArg = <W extends string>(ctx: Ctx, d: DeclNode, i: number, words: ReadonlyArray<W>, what: string): W | undefined => {
  const t = d.args[i]
  if (t === undefined) {
    ctx.err("T003", `\`${d.keyword.text}\` needs ${what}: ${words.join(", ")}`, d.name?.span ?? d.keyword.span, { hint: `write \`${declarations.get(d.keyword.text)!.form}\`` })
    return undefined
  }
  if (t.kind === "bare" && (words as ReadonlyArray<string>).includes(t.text)) return t.text as W
  ctx.err("T004", `expected ${what} (${words.join(", ")}), found ${describeToken(t)}`, t.span, { hint: t.kind === "bare" ? didYouMean(t.text, words) : undefined })
  return undefined
}

export interface Pending { readonly policySetting: Setting | undefined; readonly listenerIndex: number }

const LOOPBACK = (host: string): boolean => host === "localhost" || host.startsWith("127.") || host === "::1"

/** Resolves a `proxy-protocol from` value: inline CIDRs plus the entries of `cidrs` sets. */
const cidrsValue = (ctx: Ctx, v: unknown): Cidr[] => {
  const x = v as CidrsValue
  const out = [...x.cidrs]
  for (const { name, span } of x.sets) {
    if (!resolve(ctx, "set", name, span, "set")) continue
    const set = ctx.sets.get(name)
    if (set !== undefined && set.type !== "cidrs") {
      ctx.err("T012", `set \`${name}\` holds ${set.type}, expected cidrs`, span, { notes: [{ message: `\`${name}\` is declared here`, span: ctx.lookup("set", name)!.span }] })
      continue
    }
    for (const e of set?.entries ?? []) {
      const r = parseCidr(e)
      if (r.ok) out.push(r.cidr)
    }
  }
  return out
}

export const checkListen = (ctx: Ctx, d: DeclNode): Pending | undefined => {
  const kind = keywordArg<ListenerKind>(ctx, d, 0, LISTENER_KINDS, "a listener kind")
  const addrTok = d.args[1]
  let addr: L.HostPort | undefined
  if (addrTok === undefined) ctx.err("T003", "`listen` needs an address to listen on", d.args[0]?.span ?? d.keyword.span, { hint: "write e.g. `listen socks5 127.0.0.1:1080`" })
  else if (addrTok.kind !== "bare") ctx.err("T030", `expected host:port, found ${describeToken(addrTok)}`, addrTok.span)
  else {
    const r = L.parseHostPort(addrTok.text)
    if (r.ok) addr = r.value
    else ctx.err("T030", r.message, addrTok.span, { hint: r.hint })
  }
  const settings = settingsOf(ctx, d, d.args.slice(2))
  const n = listenerName(d)
  if (kind === undefined || addr === undefined || n === undefined) return undefined
  const authS = one(settings, "auth")
  let auth: { source: string; required: boolean } | undefined
  if (authS !== undefined) {
    const name = authS.values[0]!.value as string
    if (resolve(ctx, "auth", name, authS.values[0]!.token.span, "auth")) auth = { source: name, required: !authS.words.has("optional") }
  }
  const tlsS = one(settings, "tls")
  const file = (v: unknown): SecretRef => ({ from: "file", path: v as string })
  const tls = tlsS === undefined ? undefined : {
    cert: file(tlsS.values[0]!.value), key: file(tlsS.values[1]!.value), ...(tlsS.values[2] === undefined ? {} : { ca: file(tlsS.values[2].value) }),
  }
  const pp = one(settings, "proxy-protocol")
  const proxyProtocol = pp === undefined ? undefined : cidrsValue(ctx, pp.values[0]!.value)
  if (!LOOPBACK(addr.host) && authS === undefined) {
    ctx.warn("L009", `listener \`${n.name}\` accepts connections from the network without authentication (open proxy)`, addrTok!.span, {
      hint: "add `auth NAME`, listen on 127.0.0.1, or make sure a firewall restricts who can connect",
    })
  }
  ctx.listeners.push({
    name: n.name, kind, host: addr.host, port: addr.port, policy: "",
    ...(auth === undefined ? {} : { auth }), ...(tls === undefined ? {} : { tls }), ...(proxyProtocol === undefined ? {} : { proxyProtocol }),
    settings: settingRecord(settings, ["policy", "auth", "tls", "proxy-protocol"]), span: d.span,
  })
  return { policySetting: one(settings, "policy"), listenerIndex: ctx.listeners.length - 1 }
}

/** Looks a name up in a namespace, reporting T010 with did-you-mean. Marks it used. */
export const resolve = (ctx: Ctx, ns: Namespace, name: string, span: Span, what: string): boolean => {
  if (ctx.lookup(ns, name) === undefined) {
    const other = (["set", "outbound", "tor", "auth", "usergroup", "listener", "policy"] as const).map((o) => ctx.lookup(o, name)).find((x) => x !== undefined)
    if (other !== undefined && other.ns !== ns) {
      ctx.err("T012", `\`${name}\` is ${withArticle(kindLabel(other.kind))}, expected ${what === "outbound" ? "an upstream, chain or group" : withArticle(what)}`, span, { notes: [{ message: `\`${name}\` is declared here`, span: other.span }] })
    } else {
      ctx.undefinedName(ns, name, span, what)
    }
    return false
  }
  ctx.use(ns, name)
  return true
}

const checkAuth = (ctx: Ctx, d: DeclNode): void => {
  const kindTok = d.args[0]
  if (kindTok === undefined || kindTok.kind !== "bare") {
    ctx.err("T003", "`auth` needs a kind: static, htpasswd or webhook", kindTok?.span ?? d.name!.span, { hint: `write \`${declarations.get("auth")!.form}\`` })
    return
  }
  const kind = kindTok.text
  const settings: Record<string, unknown> = {}
  if (kind === "static") {
    const users: Array<{ user: string; hash: string; groups: string[] }> = []
    for (const line of d.block ?? []) {
      const [u, h, g, gl] = line.tokens
      if (u?.kind !== "bare" || h?.kind !== "string" || (g !== undefined && (g.kind !== "bare" || g.text !== "groups" || gl?.kind !== "list")) || line.tokens.length > 4) {
        ctx.err("T004", "a static auth line is `USER \"HASH\" [groups [g1, g2]]`", line.span)
        continue
      }
      // A value that is not `$...$` (crypt/PHC) or `{SCHEME}` is a password written in clear.
      if (!/^\$[a-z0-9-]+\$|^\{[A-Z0-9-]+\}/.test(h.value)) {
        ctx.err("T043", `the password of \`${u.text}\` is written in clear; a static user needs a password hash`, h.span, { hint: `make a hash with \`proxyd passwd ${u.text}\` (argon2id; \`--algo bcrypt\` or \`scrypt\` also work) and paste the part after \`${u.text}:\`` })
        continue
      }
      users.push({ user: u.text, hash: h.value, groups: gl?.kind === "list" ? gl.items.flatMap((i) => (i.kind === "bare" ? [i.text] : [])) : [] })
    }
    if (d.args.length > 1) ctx.err("T004", `unexpected ${describeToken(d.args[1]!)} after \`static\``, d.args[1]!.span, { hint: "list users in a block: `static { alice \"$argon2id$...\" }`" })
    settings.users = users
  } else if (kind === "htpasswd") {
    const p = d.args[1]
    const path = p?.kind === "string" ? p.value : p?.kind === "call" && p.name === "file" && p.args[0]?.kind === "string" ? p.args[0].value : undefined
    if (path === undefined) ctx.err("T003", "`htpasswd` needs the path of the password file", p?.span ?? kindTok.span, { hint: 'write `auth NAME = htpasswd "users.htpasswd"`' })
    else settings.path = path
    for (const t of d.args.slice(2)) ctx.err("T004", `unexpected ${describeToken(t)} after the htpasswd path`, t.span)
  } else if (kind === "webhook") {
    const u = d.args[1]
    if (u?.kind !== "string") ctx.err("T003", "`webhook` needs a URL string", u?.span ?? kindTok.span, { hint: 'write `auth NAME = webhook "http://127.0.0.1:9000/auth"`' })
    else {
      const r = L.parseUrl(u.value)
      if (!r.ok || !["http", "https"].includes(r.value.scheme)) ctx.err("T030", r.ok ? `webhook URL must be http or https, found \`${r.value.scheme}\`` : r.message, u.span)
      settings.url = u.value
    }
    Object.assign(settings, settingRecord(settingsOf(ctx, d, d.args.slice(2)), []))
  } else if (ctx.ext.authKinds.has(kind)) {
    Object.assign(settings, settingRecord(settingsOf(ctx, d, d.args.slice(1), ctx.ext.authKinds.get(kind)!.settings), []))
  } else {
    const kinds = [...AUTH_KINDS, ...ctx.ext.authKinds.keys()]
    ctx.err("T004", `unknown auth kind \`${kind}\``, kindTok.span, { hint: didYouMean(kind, kinds) ?? `auth kinds: ${kinds.join(", ")}` })
    return
  }
  ctx.auths.set(d.name!.text, { name: d.name!.text, kind, settings, span: d.span })
}

const checkUsergroup = (ctx: Ctx, d: DeclNode): void => {
  const list = d.args[0]
  if (list?.kind !== "list" || d.args.length !== 1) {
    ctx.err("T004", "a user group is a list of user names", list?.span ?? d.name!.span, { hint: `write \`usergroup ${d.name!.text} = [alice, bob]\`` })
    return
  }
  const users: string[] = []
  for (const i of list.items) {
    if (i.kind === "bare" && L.isName(i.text)) users.push(i.text)
    else if (i.kind === "string") users.push(i.value)
    else ctx.err("T004", `expected a user name, found ${describeToken(i)}`, i.span)
  }
  ctx.usergroups.set(d.name!.text, users)
}

const checkSet = (ctx: Ctx, d: DeclNode): void => {
  const name = d.name!.text
  const type = keywordArg<SetType>(ctx, d, 0, SET_TYPES, "a set type")
  if (type === undefined) {
    ctx.brokenSets.add(name)
    return
  }
  const second = d.args[1]
  if (second?.kind === "bare" && second.text === "file") {
    const settings = settingsOf(ctx, d, d.args.slice(1))
    const f = one(settings, "file")
    if (f === undefined) {
      ctx.brokenSets.add(name)
      return
    }
    const path = ctx.resolvePath(d.span.file, f.values[0]!.value as string)
    let text: string | undefined
    try {
      text = ctx.reader.read(path)
    } catch {
      text = undefined
    }
    if (text !== undefined) ctx.sources.set(path, text)
    if (text === undefined) {
      ctx.err("T014", `cannot read set file \`${path}\``, f.values[0]!.token.span)
      ctx.brokenSets.add(name)
      return
    }
    const refresh = one(settings, "refresh")?.values[0]?.value as number | undefined
    const onError = (one(settings, "on-error") ? [...one(settings, "on-error")!.words][0] : "keep-last") as "keep-last" | "fail" | "empty"
    const entries = checkSetEntries(ctx, name, type, fileEntries(text, path, type))
    ctx.sets.set(name, { name, type, entries, file: { path, ...(refresh === undefined ? {} : { refreshMs: refresh }), onError }, span: d.span })
    return
  }
  const list = second
  if (list === undefined || list.kind !== "list" || d.args.length > 2) {
    const at = list === undefined ? d.args[0]!.span : list.kind !== "list" ? list.span : d.args[2]!.span
    ctx.err("T004", `a set is \`${type} [entries]\` or \`${type} file "path"\``, at, { hint: `write \`set ${name} = ${type} [...]\`` })
    ctx.brokenSets.add(name)
    return
  }
  const items = list.items.flatMap((t) => {
    if (t.kind === "bare") return [{ text: t.text, span: t.span }]
    if (t.kind === "string") return [{ text: t.value, span: t.span }]
    ctx.err("T004", `expected a set entry, found ${describeToken(t)}`, t.span)
    return []
  })
  const entries = checkSetEntries(ctx, name, type, items)
  ctx.sets.set(name, { name, type, entries, span: d.span })
}

/** Lines of a set file as entries with spans into that file; `#` comments and blanks skipped; hosts-file lines accepted for domains. */
const fileEntries = (text: string, path: string, type: SetType): Array<{ text: string; span: Span }> => {
  const out: Array<{ text: string; span: Span }> = []
  let offset = 0
  const lines = text.split("\n")
  for (let i = 0; i < lines.length; i++) {
    const raw = lines[i]!
    const body = raw.replace(/#.*$/, "").replace(/\r$/, "")
    let entry = body.trim()
    let col = body.indexOf(entry) + 1
    if (type === "domains") {
      const hosts = /^(\S+)\s+(\S+)\s*$/.exec(entry)
      if (hosts !== null && parseIp(hosts[1]!) !== undefined) {
        col += entry.indexOf(hosts[2]!, hosts[1]!.length)
        entry = hosts[2]!
      }
    }
    if (entry !== "") {
      out.push({ text: entry, span: { file: path, start: { offset: offset + col - 1, line: i + 1, column: col }, end: { offset: offset + col - 1 + entry.length, line: i + 1, column: col + entry.length } } })
    }
    offset += raw.length + 1
  }
  return out
}

const DEFAULT_PORTS: Record<string, number> = { socks5: 1080, socks4: 1080, socks4a: 1080, http: 80, https: 443 }

const checkUpstream = (ctx: Ctx, d: DeclNode): void => {
  const name = d.name!.text
  const u = d.args[0]
  const settings = settingsOf(ctx, d, d.args.slice(1))
  if (u === undefined || u.kind !== "bare") {
    ctx.err(u === undefined ? "T003" : "T030", "`upstream` needs a URL like `socks5://host:1080`", u?.span ?? d.name!.span, { hint: `write \`${declarations.get("upstream")!.form}\`` })
    return
  }
  const r = L.parseUrl(u.text)
  if (!r.ok) {
    ctx.err("T030", r.message, u.span, { hint: r.hint ?? "write `SCHEME://HOST:PORT`, e.g. `socks5://proxy.example:1080`" })
    return
  }
  const url = r.value
  if (!(UPSTREAM_SCHEMES as ReadonlyArray<string>).includes(url.scheme)) {
    ctx.err("T042", `unsupported upstream scheme \`${url.scheme}\``, u.span, { hint: didYouMean(url.scheme, UPSTREAM_SCHEMES) ?? `schemes: ${UPSTREAM_SCHEMES.join(", ")}` })
    return
  }
  if (url.userinfo !== undefined) {
    ctx.err("T041", "credentials in an upstream URL would be stored in the rules file", u.span, { hint: "remove `user:pass@` and write `auth env(USER_VAR) env(PASS_VAR)`" })
  }
  if (url.path !== "" && url.path !== "/") ctx.err("T030", `an upstream URL has no path, found \`${url.path}\``, u.span)
  if (one(settings, "insecure") !== undefined && url.scheme !== "https") ctx.err("T004", "`insecure` only applies to https upstreams", one(settings, "insecure")!.nameSpan)
  const authS = one(settings, "auth")
  ctx.upstreams.set(name, {
    name, kind: url.scheme as UpstreamKind, host: url.host, port: url.port ?? DEFAULT_PORTS[url.scheme]!,
    ...(authS === undefined ? {} : { auth: { user: authS.values[0]!.value as SecretRef, pass: authS.values[1]!.value as SecretRef } }),
    settings: settingRecord(settings, ["auth"]), span: d.span,
  })
}

/** Checks a member of a chain or group: must be an outbound. */
const outboundMember = (ctx: Ctx, t: Token, what: string): string | undefined => {
  if (t.kind !== "bare" || !L.isName(t.text)) {
    ctx.err("T004", `expected the name of an upstream, chain or group in ${what}, found ${describeToken(t)}`, t.span)
    return undefined
  }
  return resolve(ctx, "outbound", t.text, t.span, "outbound") ? t.text : undefined
}

const checkChain = (ctx: Ctx, d: DeclNode): void => {
  const name = d.name!.text
  const hops: string[] = []
  let i = 0
  let ok = true
  while (i < d.args.length) {
    const t = d.args[i]!
    if (t.kind === "bare" && Object.hasOwn(declarations.get("chain")!.settings, t.text) && hops.length > 0) break
    if (i % 2 === 1) {
      if (t.kind !== "arrow") {
        ctx.err("T004", `expected \`->\` between chain hops, found ${describeToken(t)}`, t.span)
        ok = false
        break
      }
    } else if (t.kind === "bare" && ctx.lookup("outbound", t.text)?.kind === "group") {
      ctx.err("T012", `\`${t.text}\` is a group; chain hops are upstreams or chains`, t.span, { notes: [{ message: `\`${t.text}\` is declared here`, span: ctx.lookup("outbound", t.text)!.span }], hint: "put the chain into the group instead: `group g = failover(chain1, chain2)`" })
      ctx.use("outbound", t.text)
      ok = false
    } else {
      const h = outboundMember(ctx, t, "a chain")
      if (h === undefined) ok = false
      else hops.push(h)
    }
    i++
  }
  const settings = settingsOf(ctx, d, d.args.slice(i))
  if (ok && hops.length < 2) {
    ctx.err("T004", "a chain needs at least two hops", d.args[0]?.span ?? d.name!.span, { hint: `write \`chain ${name} = a -> b\` (for one hop use the upstream directly)` })
    return
  }
  if (ok) ctx.chains.set(name, { name, hops, settings: settingRecord(settings, []), span: d.span })
}

const checkGroup = (ctx: Ctx, d: DeclNode): void => {
  const name = d.name!.text
  const call = d.args[0]
  const settings = settingsOf(ctx, d, d.args.slice(1))
  if (call?.kind !== "call") {
    ctx.err("T004", "a group is `STRATEGY(member, ...)`", call?.span ?? d.name!.span, { hint: `write \`group ${name} = failover(a, b)\`` })
    return
  }
  if (!(GROUP_STRATEGIES as ReadonlyArray<string>).includes(call.name)) {
    ctx.err("T004", `unknown group strategy \`${call.name}\``, call.span, { hint: didYouMean(call.name, GROUP_STRATEGIES) ?? `strategies: ${GROUP_STRATEGIES.join(", ")}` })
    return
  }
  const members = call.args.map((a) => outboundMember(ctx, a, "a group"))
  if (call.args.length === 0) ctx.err("T004", "a group needs at least one member", call.span)
  const by = one(settings, "by")
  if (by !== undefined && call.name !== "hash") ctx.err("T004", "`by` only applies to `hash` groups", by.nameSpan)
  const probeS = one(settings, "probe")
  const every = (one(settings, "every")?.values[0]?.value as number | undefined) ?? 30_000
  const downAfter = (one(settings, "down-after")?.values[0]?.value as number | undefined) ?? 3
  const upAfter = (one(settings, "up-after")?.values[0]?.value as number | undefined) ?? 2
  let probe: ProbeIR | undefined
  if (probeS !== undefined) {
    const isTcp = probeS.words.has("tcp")
    const target = probeS.values[0]!
    if (!isTcp) {
      const r = L.parseUrl(target.value as string)
      if (!r.ok || !["http", "https"].includes(r.value.scheme)) ctx.err("T030", r.ok ? "a probe URL must be http or https" : r.message, target.token.span)
    }
    const expect = probeS.values[1]?.value as number | undefined
    probe = {
      kind: isTcp ? "tcp" : "http",
      target: isTcp ? (target.token.kind === "bare" ? target.token.text : "") : (target.value as string),
      ...(expect === undefined ? {} : { expectStatus: expect }), everyMs: every, downAfter, upAfter,
    }
  }
  if (members.some((m) => m === undefined) || call.args.length === 0) return
  ctx.groups.set(name, {
    name, strategy: call.name as GroupStrategy, members: members as string[],
    ...(by === undefined ? {} : { hashBy: [...by.words][0] as "user" | "dst" | "src" }),
    ...(probe === undefined ? {} : { probe }),
    tries: (one(settings, "tries")?.values[0]?.value as number | undefined) ?? 2, span: d.span,
  })
}

const checkTor = (ctx: Ctx, d: DeclNode): void => {
  const name = d.name!.text
  const settings = settingsOf(ctx, d, d.args)
  const socks = one(settings, "socks")?.values[0]?.value as L.HostPort | undefined
  const control = one(settings, "control")?.values[0]?.value as L.HostPort | undefined
  const cookie = one(settings, "cookie")
  const password = one(settings, "password")
  if (cookie !== undefined && password !== undefined) ctx.err("T004", "give either `cookie` or `password`, not both", password.nameSpan)
  if ((cookie !== undefined || password !== undefined) && control === undefined) ctx.err("T003", "`cookie`/`password` authenticate the control port: add `control HOST:PORT`", (cookie ?? password)!.nameSpan)
  if (socks === undefined) return
  const iso = one(settings, "isolate")
  const auth = cookie !== undefined ? { cookie: cookie.values[0]!.value as string } : password !== undefined ? { password: password.values[0]!.value as SecretRef } : undefined
  ctx.tors.set(name, {
    name, socksHost: socks.host, socksPort: socks.port,
    ...(control === undefined ? {} : { control: { host: control.host, port: control.port, ...(auth === undefined ? {} : { auth }) } }),
    isolate: (iso === undefined ? "per-user" : [...iso.words][0]) as TorIsolation, span: d.span,
  })
}

export interface Globals {
  readonly plugins: Array<{ readonly spec: string; readonly span: Span }>
  readonly options: Record<string, unknown>
}

const checkGeoip = (ctx: Ctx, d: DeclNode): void => {
  const [a, b] = d.args
  let which: "country" | "asn" = "country"
  let file: Token | undefined = a
  if (a?.kind === "bare") {
    if (a.text !== "country" && a.text !== "asn") {
      ctx.err("T004", `expected \`country\`, \`asn\` or a file name, found \`${a.text}\``, a.span, { hint: didYouMean(a.text, ["country", "asn"]) })
      return
    }
    which = a.text
    file = b
  }
  if (file?.kind !== "string" || d.args.length > (a?.kind === "bare" ? 2 : 1)) {
    ctx.err("T004", "`geoip` needs the path of a database file in quotes", file?.span ?? d.keyword.span, { hint: 'write `geoip "GeoLite2-Country.mmdb"` or `geoip asn "GeoLite2-ASN.mmdb"`' })
    return
  }
  ctx.geoip = { ...ctx.geoip, [which]: file.value }
}

/** Pass 2: one declaration. Listeners return their pending policy reference. */
export const checkDecl = (ctx: Ctx, d: DeclNode, globals: Globals): Pending | undefined => {
  switch (d.keyword.text) {
    case "listen": return checkListen(ctx, d)
    case "auth": return void checkAuth(ctx, d)
    case "usergroup": return void checkUsergroup(ctx, d)
    case "set": return void checkSet(ctx, d)
    case "upstream": return void checkUpstream(ctx, d)
    case "chain": return void checkChain(ctx, d)
    case "group": return void checkGroup(ctx, d)
    case "tor": return void checkTor(ctx, d)
    case "geoip": return void checkGeoip(ctx, d)
    case "plugin": {
      const a = d.args[0]
      if (a?.kind !== "string" || d.args.length !== 1) ctx.err("T004", "`plugin` takes one string: a path or package name", a?.span ?? d.keyword.span, { hint: 'write `plugin "./my-plugin.ts"`' })
      else {
        globals.plugins.push({ spec: a.value, span: a.span })
        const why = ctx.pluginErrors.get(a.value)
        if (why !== undefined) ctx.err("T080", `cannot load plugin \`${a.value}\`: ${why}`, a.span, { hint: "a plugin is a module whose default export is `Plugin.make({ id, vocabulary, layer })`" })
      }
      return undefined
    }
    case "options":
      Object.assign(globals.options, settingRecord(settingsOf(ctx, d, d.args), []))
      return undefined
    default: {
      const owner = ctx.ext.declarations.get(d.keyword.text)
      if (owner === undefined) return undefined
      const settings = settingsOf(ctx, d, d.args, owner.spec.settings)
      ctx.pluginDecls.push({ plugin: owner.plugin, keyword: d.keyword.text, ...(d.name === undefined ? {} : { name: d.name.text }), settings: settingRecord(settings, []), span: d.span })
      return undefined
    }
  }
}

export { checkCidr }
