/**
 * What the runtime enforces today, and the refusal for everything it does not.
 *
 * Details: "a declared safety feature is never silently ignored": a program
 * that uses a feature the runtime cannot enforce yet refuses to start (and a
 * reload to such a program is rejected, the old policy keeps serving). Each
 * message names the feature, where it is used and when it arrives.
 * Not enforced yet: GeoIP fields (country/ASN) unless a GeoIP provider is
 * given (`provided` has "geoip"), `via`/`tor` actions unless an
 * outbound provider (`provided`, from `startServer({ outbounds })`) handles them,
 * the `limit`/`bandwidth` modifiers,
 * plugins, auth sources other than `static` and `htpasswd`,
 * `on-error empty` on set files (an unreadable set file fails the reload:
 * keep-last). A set file's `refresh` is enforced by `Server.ts` (a reload
 * on that period, besides the file watcher).
 */
import type { Ir } from "@proxyd/rules"

const at = (span: { readonly file: string; readonly start: { readonly line: number } } | undefined): string =>
  span === undefined ? "" : ` (${span.file}:${span.start.line})`

const condMatchers = (c: Ir.Cond, out: Array<Ir.Cond & { k: "match" }>): void => {
  switch (c.k) {
    case "true": return
    case "not": return condMatchers(c.c, out)
    case "and": case "or": for (const i of c.items) condMatchers(i, out); return
    case "match": out.push(c); return
  }
}

const actionProblems = (a: Ir.ActionIR, where: string, out: Array<string>, provided: ReadonlySet<string>): void => {
  if (a.k === "via") {
    if (!provided.has("via")) out.push(`\`via ${a.target}\`${where}: upstream proxies, chains and groups need the upstream outbound (\`@proxyd/upstream\`, issue 4), which this server was started without`)
    if (a.else !== undefined) actionProblems(a.else, where, out, provided)
  } else if (a.k === "tor" && !provided.has("tor")) {
    out.push(`\`tor\`${where}: Tor needs the Tor outbound (\`@proxyd/tor\`), which this server was started without`)
  }
}

export const SUPPORTED_AUTH = new Set(["static", "htpasswd"])

/** Messages for every feature the program uses that the runtime does not enforce; empty when it can serve it. */
export const unsupported = (program: Ir.Program, provided: ReadonlySet<string> = new Set()): Array<string> => {
  const out: Array<string> = []
  for (const policy of program.policies.values()) {
    for (const rule of [...policy.guards, ...policy.rules, policy.default]) {
      const where = ` in rule \`${rule.name}\` of policy \`${policy.name}\`${at(rule.span)}`
      const ms: Array<Ir.Cond & { k: "match" }> = []
      condMatchers(rule.cond, ms)
      for (const m of ms) {
        if ((m.m.kind === "country" || m.m.kind === "asn") && !provided.has("geoip")) {
          out.push(`\`${m.m.field}\`${where}: GeoIP lookups are not implemented in the runtime yet, so this condition cannot be enforced`)
        }
      }
      actionProblems(rule.action, where, out, provided)
      for (const mod of rule.modifiers) {
        if (mod.k === "rate" || mod.k === "conns" || mod.k === "bandwidth") {
          out.push(`\`${mod.k === "bandwidth" ? "bandwidth" : "limit"}\`${where}: per-rule limits are not enforced by the runtime yet`)
        }
      }
    }
  }
  for (const a of program.auths.values()) {
    if (!SUPPORTED_AUTH.has(a.kind) && !provided.has(`auth:${a.kind}`)) out.push(`auth \`${a.name}\`${at(a.span)}: auth source kind \`${a.kind}\` is not implemented yet (static and htpasswd are)`)
  }
  for (const s of program.sets.values()) {
    // A set file that cannot be read at reload fails the reload, so the last good copy keeps serving:
    // that is `keep-last` (and `fail`), not `empty`, which an allow-list relies on to deny everything.
    if (s.file?.onError === "empty") out.push(`set \`${s.name}\`${at(s.span)}: \`on-error empty\` is not enforced by the runtime yet (an unreadable set file fails the reload and the last good copy keeps serving); write \`on-error keep-last\` or \`on-error fail\``)
  }
  if (!provided.has("plugins")) for (const p of program.plugins) out.push(`plugin \`${p.spec}\`${at(p.span)}: plugins are not loaded by the runtime yet`)
  return out
}
