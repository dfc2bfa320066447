/**
 * The JSON body of `POST /api/explain` → the policy and the `Ir.Request` to explain.
 *
 * Details: the fields mirror `proxyd explain`'s flags so the answer is the
 * same as `proxyd explain --format json`: `{ "command": "connect",
 * "target": "host:443", "src": "IP[:PORT]", "user", "groups": [..],
 * "listener", "protocol", "auth", "at": ISO time, "facts": { "dst.ip": "..",
 * "dst.country": "DE", "dst.asn": 13335 }, "policy" }`. Only `target` is
 * required (`command` defaults to connect). As in the CLI and `test` blocks,
 * facts not given are unknown (no DNS or GeoIP lookups are made), and the
 * user's groups include every `usergroup` listing the user.
 */
import { Ip } from "@proxyd/rules"
import type { Ir } from "@proxyd/rules"

const FACTS = new Set(["dst.ip", "dst.country", "dst.asn", "src.country", "src.asn"])

const split = (text: string): { host: string; port: number | undefined } | undefined => {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text)
  if (m !== null) return { host: m[1]!, port: m[2] === undefined ? undefined : Number(m[2]) }
  const i = text.lastIndexOf(":")
  if (i <= 0 || text.indexOf(":") !== i) return Ip.isIpLiteral(text) ? { host: text, port: undefined } : text.includes(":") || text === "" ? undefined : { host: text, port: undefined }
  const p = text.slice(i + 1)
  return /^\d{1,5}$/.test(p) ? { host: text.slice(0, i), port: Number(p) } : undefined
}

const str = (b: Record<string, unknown>, k: string): string | undefined | null => {
  const v = b[k]
  return v === undefined ? undefined : typeof v === "string" ? v : null
}

export const buildExplainRequest = (program: Ir.Program, body: unknown): { readonly policy: string; readonly request: Ir.Request } | string => {
  if (typeof body !== "object" || body === null || Array.isArray(body)) return "the body must be a JSON object"
  const b = body as Record<string, unknown>
  for (const k of ["command", "target", "src", "user", "listener", "protocol", "auth", "at", "policy"]) if (str(b, k) === null) return `\`${k}\` must be a string`
  const command = str(b, "command") ?? "connect"
  if (!["connect", "bind", "udp"].includes(command)) return `\`command\` must be connect, bind or udp, not \`${command}\``
  const target = str(b, "target")
  const dst = target === undefined || target === null ? undefined : split(target)
  if (dst === undefined || dst.port === undefined || dst.port > 65535) return "`target` must be HOST:PORT or [IPv6]:PORT"
  let srcIp: string | undefined, srcPort: number | undefined
  const src = str(b, "src")
  if (typeof src === "string") {
    const s = split(src)
    if (s === undefined || !Ip.isIpLiteral(s.host) || (s.port !== undefined && s.port > 65535)) return "`src` must be IP or IP:PORT"
    srcIp = s.host
    srcPort = s.port
  }
  const groups = new Set<string>()
  if (b["groups"] !== undefined) {
    if (!Array.isArray(b["groups"]) || !b["groups"].every((g) => typeof g === "string")) return "`groups` must be a list of strings"
    for (const g of b["groups"]) groups.add(g as string)
  }
  const user = str(b, "user") ?? undefined
  if (user !== undefined) for (const [g, users] of program.usergroups) if (users.includes(user)) groups.add(g)
  const at = str(b, "at") ?? undefined
  const time = at === undefined ? undefined : Date.parse(at)
  if (time !== undefined && Number.isNaN(time)) return "`at` must be an ISO 8601 time (e.g. 2026-03-01T23:00Z)"
  const facts: Record<string, string | number> = {}
  const fb = b["facts"] ?? {}
  if (typeof fb !== "object" || fb === null || Array.isArray(fb)) return "`facts` must be an object"
  for (const [k, v] of Object.entries(fb)) {
    if (!FACTS.has(k)) return `unknown fact \`${k}\` (${[...FACTS].join(", ")})`
    if (k === "dst.ip") { if (typeof v !== "string" || !Ip.isIpLiteral(v)) return "`dst.ip` must be an IP address"; facts[k] = v }
    else if (k.endsWith(".asn")) {
      const n = typeof v === "number" ? String(v) : typeof v === "string" ? v : ""
      const m = /^(?:AS)?(\d+)$/i.exec(n)
      if (m === null) return `\`${k}\` must be an AS number`
      facts[k] = Number(m[1])
    } else { if (typeof v !== "string" || !/^[A-Za-z]{2}$/.test(v)) return `\`${k}\` must be a two-letter country code`; facts[k] = v.toUpperCase() }
  }
  const listener = str(b, "listener") ?? undefined
  const asked = str(b, "policy") ?? undefined
  let policy: string | undefined
  if (asked !== undefined) { if (!program.policies.has(asked)) return `no policy named \`${asked}\``; policy = asked }
  else if (listener !== undefined) {
    const l = program.listeners.find((x) => x.name === listener)
    if (l === undefined) return `no listener named \`${listener}\``
    policy = l.policy
  } else policy = program.defaultPolicy
  if (policy === undefined) return "the rules file has several policies: give `policy`"
  const request: Ir.Request = {
    command: command as Ir.Command,
    dstHost: dst.host,
    dstPort: dst.port,
    ...(srcIp === undefined ? {} : { srcIp }),
    ...(srcPort === undefined ? {} : { srcPort }),
    ...(user === undefined ? {} : { user }),
    ...(user === undefined && groups.size === 0 ? {} : { groups: [...groups] }),
    ...(listener === undefined ? {} : { listener }),
    ...(typeof b["protocol"] === "string" ? { protocol: b["protocol"] as Ir.Request["protocol"] & string } : {}),
    auth: (str(b, "auth") ?? (user === undefined ? "none" : "password")) as Ir.Request["auth"] & string,
    ...(time === undefined ? {} : { time }),
    ...(Object.keys(facts).length === 0 ? {} : { facts: facts as Ir.Facts }),
  }
  return { policy, request }
}
