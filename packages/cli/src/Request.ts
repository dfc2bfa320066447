/**
 * Builds an `Ir.Request` from command-line words (`explain`), with usage
 * errors for malformed parts.
 *
 * Details: the destination is `HOST:PORT` or `[IPv6]:PORT`; `--src IP[:PORT]`;
 * `--at` any ISO 8601 time `Date.parse` accepts (`2026-03-01T23:00Z`);
 * `--fact NAME=VALUE` for the costly facts (`dst.ip`, `dst.country`,
 * `dst.asn`, `src.country`, `src.asn`). `auth` defaults to `password` when a
 * user is given, else `none`, as in `test` blocks.
 */
import type { Ir } from "@proxyd/rules"
import { Ip } from "@proxyd/rules"

const COMMANDS = ["connect", "bind", "udp"] as const
const FACTS = ["dst.ip", "dst.country", "dst.asn", "src.country", "src.asn"] as const

export interface RequestWords {
  readonly command: string
  readonly target: string
  readonly src?: string | undefined
  readonly user?: string | undefined
  readonly groups: ReadonlyArray<string>
  readonly listener?: string | undefined
  readonly protocol?: string | undefined
  readonly auth?: string | undefined
  readonly at?: string | undefined
  readonly facts: ReadonlyArray<string>
}

/** Splits `host:port`, `[v6]:port`; undefined when malformed. */
export const splitHostPort = (text: string): { readonly host: string; readonly port: number | undefined } | undefined => {
  const m = /^\[([^\]]+)\](?::(\d+))?$/.exec(text)
  if (m !== null) return { host: m[1]!, port: m[2] === undefined ? undefined : Number(m[2]) }
  const colons = text.split(":").length - 1
  if (colons > 1) return Ip.isIpLiteral(text) ? { host: text, port: undefined } : undefined
  if (colons === 0) return text === "" ? undefined : { host: text, port: undefined }
  const [host, port] = text.split(":") as [string, string]
  if (host === "" || !/^\d+$/.test(port)) return undefined
  return { host, port: Number(port) }
}

const validPort = (p: number | undefined): p is number => p !== undefined && Number.isInteger(p) && p >= 0 && p <= 65535

/** A request, or the reason the words do not make one. */
export const buildRequest = (w: RequestWords): Ir.Request | string => {
  if (!(COMMANDS as ReadonlyArray<string>).includes(w.command)) return `the request must start with connect, bind or udp, not \`${w.command}\``
  const dst = splitHostPort(w.target)
  if (dst === undefined || !validPort(dst.port)) return `destination \`${w.target}\` must be HOST:PORT or [IPv6]:PORT with a port 0..65535`
  let srcIp: string | undefined
  let srcPort: number | undefined
  if (w.src !== undefined) {
    const s = splitHostPort(w.src)
    if (s === undefined || !Ip.isIpLiteral(s.host) || (s.port !== undefined && !validPort(s.port))) return `--src \`${w.src}\` must be IP or IP:PORT`
    srcIp = s.host
    srcPort = s.port
  }
  let time: number | undefined
  if (w.at !== undefined) {
    time = Date.parse(w.at)
    if (Number.isNaN(time)) return `--at \`${w.at}\` is not an ISO 8601 time (e.g. 2026-03-01T23:00Z)`
  }
  const facts: Record<string, string | number> = {}
  for (const f of w.facts) {
    const eq = f.indexOf("=")
    const name = eq === -1 ? f : f.slice(0, eq)
    const value = eq === -1 ? "" : f.slice(eq + 1)
    if (!(FACTS as ReadonlyArray<string>).includes(name) || value === "") return `--fact \`${f}\` must be NAME=VALUE with NAME one of ${FACTS.join(", ")}`
    if (name === "dst.ip") {
      if (!Ip.isIpLiteral(value)) return `--fact dst.ip=\`${value}\` is not an IP address`
      facts[name] = value
    } else if (name.endsWith(".asn")) {
      const n = /^(?:AS)?(\d+)$/i.exec(value)
      if (n === null) return `--fact ${name}=\`${value}\` is not an AS number (13335 or AS13335)`
      facts[name] = Number(n[1])
    } else {
      if (!/^[A-Za-z]{2}$/.test(value)) return `--fact ${name}=\`${value}\` is not a two-letter country code`
      facts[name] = value.toUpperCase()
    }
  }
  return {
    command: w.command as Ir.Command,
    dstHost: dst.host,
    dstPort: dst.port,
    ...(srcIp === undefined ? {} : { srcIp }),
    ...(srcPort === undefined ? {} : { srcPort }),
    ...(w.user === undefined ? {} : { user: w.user }),
    ...(w.user === undefined && w.groups.length === 0 ? {} : { groups: w.groups }),
    ...(w.listener === undefined ? {} : { listener: w.listener }),
    ...(w.protocol === undefined ? {} : { protocol: w.protocol }),
    auth: w.auth ?? (w.user === undefined ? "none" : "password"),
    ...(time === undefined ? {} : { time }),
    ...(Object.keys(facts).length === 0 ? {} : { facts: facts as Ir.Facts }),
  }
}
