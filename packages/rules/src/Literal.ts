/**
 * Classifies and parses bare tokens: numbers, ranges, durations, sizes, rates,
 * IPs, CIDRs, host:port, URLs, time windows, weekdays, timestamps, names.
 *
 * Details: every parser returns `{ ok: true, value }` or `{ ok: false, message,
 * hint? }` so the checker can report a precise, specific error at the token.
 * `classify` names the shape of a token for "expected X, found Y" messages.
 */
import { parseCidr, parseIp } from "./Ip.ts"

export type Parsed<A> = { readonly ok: true; readonly value: A } | { readonly ok: false; readonly message: string; readonly hint?: string }

const ok = <A>(value: A): Parsed<A> => ({ ok: true, value })
const bad = <A>(message: string, hint?: string): Parsed<A> => (hint === undefined ? { ok: false, message } : { ok: false, message, hint })

export type LiteralKind =
  | "int" | "range" | "duration" | "size" | "rate" | "ip" | "cidr" | "hostport" | "url"
  | "window" | "weekdays" | "timestamp" | "name" | "other"

const DURATION = /^(\d+(ms|s|m|h|d))+$/
const SIZE = /^\d+(B|kB|KB|MB|GB|KiB|MiB|GiB|TiB)?$/
const RATE = /^\d+(B|kB|KB|MB|GB|KiB|MiB|GiB)?\/(s|m|h)$/
const WEEKDAY = /^(Mon|Tue|Wed|Thu|Fri|Sat|Sun)([-,](Mon|Tue|Wed|Thu|Fri|Sat|Sun))*$/i
const NAME = /^[A-Za-z_][A-Za-z0-9_.-]*$/

/** The shape of a bare token, for messages. */
export const classify = (text: string): LiteralKind => {
  if (/^\d+$/.test(text)) return "int"
  if (/^\d+\.\.\d+$/.test(text)) return "range"
  if (DURATION.test(text)) return "duration"
  if (SIZE.test(text)) return "size"
  if (RATE.test(text)) return "rate"
  if (/^[a-z][a-z0-9+.-]*:\/\//i.test(text)) return "url"
  if (/^\d\d?:\d\d-\d\d?:\d\d$/.test(text)) return "window"
  if (/^\d{4}-\d\d-\d\dT/.test(text)) return "timestamp"
  if (parseIp(text) !== undefined) return "ip"
  if (text.includes("/") && parseCidr(text).ok) return "cidr"
  if (/^\[.*\]:\d+$/.test(text) || /^[^:]+:\d+$/.test(text)) return "hostport"
  if (WEEKDAY.test(text)) return "weekdays"
  if (NAME.test(text)) return "name"
  return "other"
}

export const describeKind = (k: LiteralKind): string => ({
  int: "a number", range: "a range", duration: "a duration", size: "a size", rate: "a rate", ip: "an IP address",
  cidr: "a CIDR", hostport: "a host:port", url: "a URL", window: "a time window", weekdays: "weekdays",
  timestamp: "a timestamp", name: "a name", other: "a value",
})[k]

export const parseInteger = (text: string, min = 0, max = Number.MAX_SAFE_INTEGER): Parsed<number> => {
  if (!/^\d+$/.test(text)) return bad(`expected a whole number, found \`${text}\``)
  const n = Number(text)
  if (n < min || n > max) return bad(`\`${text}\` is out of range (${min}..${max})`)
  return ok(n)
}

export const parsePort = (text: string): Parsed<number> => {
  if (!/^\d+$/.test(text)) return bad(`expected a port number, found \`${text}\``)
  const n = Number(text)
  if (n > 65535) return bad(`port \`${text}\` is out of range (0..65535)`)
  return ok(n)
}

/** `80` or `8000..8999`. */
export const parsePortRange = (text: string): Parsed<readonly [number, number]> => {
  const m = /^(\d+)\.\.(\d+)$/.exec(text)
  if (m === null) {
    const p = parsePort(text)
    return p.ok ? ok([p.value, p.value] as const) : p
  }
  const a = parsePort(m[1]!)
  if (!a.ok) return a
  const b = parsePort(m[2]!)
  if (!b.ok) return b
  if (a.value > b.value) return bad(`port range \`${text}\` is inverted (${a.value} > ${b.value})`, `write \`${b.value}..${a.value}\``)
  return ok([a.value, b.value] as const)
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 }

/** `500ms`, `10s`, `5m`, `2h`, `1d`, `1h30m` → milliseconds. */
export const parseDuration = (text: string): Parsed<number> => {
  if (!DURATION.test(text)) {
    if (/^\d+$/.test(text)) return bad(`duration \`${text}\` has no unit`, `write \`${text}s\` or \`${text}ms\``)
    return bad(`expected a duration (\`500ms\`, \`10s\`, \`5m\`, \`2h\`, \`1d\`), found \`${text}\``)
  }
  let total = 0
  for (const m of text.matchAll(/(\d+)(ms|s|m|h|d)/g)) total += Number(m[1]) * DURATION_UNITS[m[2]!]!
  return ok(total)
}

const SIZE_UNITS: Record<string, number> = {
  "": 1, B: 1, kB: 1000, KB: 1000, MB: 1e6, GB: 1e9, KiB: 1024, MiB: 1024 ** 2, GiB: 1024 ** 3, TiB: 1024 ** 4,
}

/** `512`, `1KiB`, `10MiB`, `1kB` → bytes. */
export const parseSize = (text: string): Parsed<number> => {
  const m = /^(\d+)([A-Za-z]*)$/.exec(text)
  if (m === null) return bad(`expected a size (\`512\`, \`1KiB\`, \`10MiB\`, \`1GB\`), found \`${text}\``)
  const unit = SIZE_UNITS[m[2]!]
  if (unit === undefined) return bad(`unknown size unit \`${m[2]}\``, "use B, kB, MB, GB, KiB, MiB, GiB or TiB")
  return ok(Number(m[1]) * unit)
}

const PER_SECONDS: Record<string, number> = { s: 1, m: 60, h: 3600 }

export type Rate = { readonly k: "count"; readonly count: number; readonly perSeconds: number } | { readonly k: "bytes"; readonly bytesPerSecond: number }

/** `20/s`, `100/m` (a count per time) or `1MiB/s` (bytes per second). */
export const parseRate = (text: string): Parsed<Rate> => {
  const m = /^(\d+)([A-Za-z]*)\/([A-Za-z]+)$/.exec(text)
  if (m === null) return bad(`expected a rate (\`20/s\`, \`100/m\`, \`1MiB/s\`), found \`${text}\``)
  const per = PER_SECONDS[m[3]!]
  if (per === undefined) return bad(`unknown rate period \`/${m[3]}\``, "use `/s`, `/m` or `/h`")
  if (m[2] === "") {
    if (Number(m[1]) === 0) return bad(`rate \`${text}\` is zero`)
    return ok({ k: "count", count: Number(m[1]), perSeconds: per })
  }
  const size = parseSize(`${m[1]}${m[2]}`)
  if (!size.ok) return size
  return ok({ k: "bytes", bytesPerSecond: size.value / per })
}

export interface HostPort { readonly host: string; readonly port: number }

const HOSTNAME = /^(?=.{1,253}$)[A-Za-z0-9_]([A-Za-z0-9_-]{0,62})(\.[A-Za-z0-9_]([A-Za-z0-9_-]{0,62}))*\.?$/

export const isHostname = (text: string): boolean => HOSTNAME.test(text)

/** A domain name or an IP literal (no brackets). */
export const parseHost = (text: string): Parsed<string> => {
  if (parseIp(text) !== undefined) return ok(text)
  if (/^\d+(\.\d+)*$/.test(text)) return bad(`\`${text}\` is not an IPv4 address (four numbers 0..255)`)
  if (isHostname(text)) return ok(text)
  return bad(`\`${text}\` is not a host name or IP address`)
}

/** `host:port`, `1.2.3.4:80`, `[::1]:80`. */
export const parseHostPort = (text: string): Parsed<HostPort> => {
  let host: string
  let portText: string
  const v6 = /^\[([^\]]*)\]:(.*)$/.exec(text)
  if (v6 !== null) {
    host = v6[1]!
    portText = v6[2]!
    if (parseIp(host) === undefined || !host.includes(":")) return bad(`\`${host}\` is not an IPv6 address`)
  } else {
    const i = text.lastIndexOf(":")
    if (i === -1) return bad(`expected host:port, found \`${text}\``, `add the port, e.g. \`${text}:443\``)
    host = text.slice(0, i)
    portText = text.slice(i + 1)
    if (host.includes(":")) return bad(`an IPv6 address with a port must be in brackets`, `write \`[${host}]:${portText}\``)
    const h = parseHost(host)
    if (!h.ok) return h
  }
  const p = parsePort(portText)
  if (!p.ok) return p
  return ok({ host, port: p.value })
}

export interface Url { readonly scheme: string; readonly host: string; readonly port: number | undefined; readonly userinfo: string | undefined; readonly path: string }

/** `scheme://[user:pass@]host[:port][/path]`. */
export const parseUrl = (text: string): Parsed<Url> => {
  const m = /^([a-z][a-z0-9+.-]*):\/\/(?:([^@/]*)@)?(\[[^\]]*\]|[^:/]*)(?::([^/]*))?(\/.*)?$/i.exec(text)
  if (m === null) return bad(`\`${text}\` is not a URL`)
  const rawHost = m[3]!
  const host = rawHost.startsWith("[") ? rawHost.slice(1, -1) : rawHost
  if (host === "") return bad(`URL \`${text}\` has no host`)
  const h = parseHost(host)
  if (!h.ok) return h
  let port: number | undefined
  if (m[4] !== undefined) {
    const p = parsePort(m[4])
    if (!p.ok) return p
    port = p.value
  }
  return ok({ scheme: m[1]!.toLowerCase(), host, port, userinfo: m[2], path: m[5] ?? "" })
}

/** `08:00-20:00` → minutes `[start, end)`; `24:00` allowed as an end; start > end wraps midnight. */
export const parseWindow = (text: string): Parsed<readonly [number, number]> => {
  const m = /^(\d\d?):(\d\d)-(\d\d?):(\d\d)$/.exec(text)
  if (m === null) return bad(`expected a time window like \`08:00-20:00\`, found \`${text}\``)
  const [h1, m1, h2, m2] = [m[1], m[2], m[3], m[4]].map(Number) as [number, number, number, number]
  if (h1 > 23 || m1 > 59) return bad(`\`${m[1]}:${m[2]}\` is not a time of day (00:00..23:59)`)
  if (h2 > 24 || m2 > 59 || (h2 === 24 && m2 !== 0)) return bad(`\`${m[3]}:${m[4]}\` is not a time of day (00:00..24:00)`)
  const start = h1 * 60 + m1
  const end = h2 * 60 + m2
  if (start === end) return bad(`time window \`${text}\` is empty`, "for the whole day write `00:00-24:00` or leave the window out")
  return ok([start, end] as const)
}

const DAY_INDEX: Record<string, number> = { sun: 0, mon: 1, tue: 2, wed: 3, thu: 4, fri: 5, sat: 6 }

/** `Mon-Fri`, `Sat,Sun`, `Mon`, `Fri-Mon` (wraps) → bitmask, bit d = weekday d (Sunday = 0). */
export const parseWeekdays = (text: string): Parsed<number> => {
  let mask = 0
  for (const part of text.split(",")) {
    const ends = part.split("-")
    const idx = ends.map((e) => DAY_INDEX[e.toLowerCase()])
    if (ends.length > 2 || idx.some((i) => i === undefined)) {
      const badDay = ends.find((e) => DAY_INDEX[e.toLowerCase()] === undefined) ?? part
      return bad(`\`${badDay}\` is not a weekday`, "use Mon, Tue, Wed, Thu, Fri, Sat, Sun, ranges like `Mon-Fri` and lists like `Sat,Sun`")
    }
    const from = idx[0]!
    const to = idx[idx.length - 1]!
    for (let d = from, n = 0; n < 7; d = (d + 1) % 7, n++) {
      mask |= 1 << d
      if (d === to) break
    }
  }
  return ok(mask)
}

/** ISO 8601 `2026-03-01T23:00Z`, `2026-03-01T23:00:00+01:00` → epoch ms. A zone is required. */
export const parseTimestamp = (text: string): Parsed<number> => {
  if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:\d\d)$/.test(text)) {
    return bad(`expected an ISO 8601 time with a zone like \`2026-03-01T23:00Z\`, found \`${text}\``)
  }
  const ms = Date.parse(text)
  if (Number.isNaN(ms)) return bad(`\`${text}\` is not a valid date and time`)
  const [y, mo, d] = text.slice(0, 10).split("-").map(Number) as [number, number, number]
  const check = new Date(Date.UTC(y, mo - 1, d))
  if (check.getUTCMonth() !== mo - 1 || check.getUTCDate() !== d) return bad(`\`${text.slice(0, 10)}\` is not a valid date`)
  return ok(ms)
}

/** `13335` or `AS13335` → 13335. */
export const parseAsn = (text: string): Parsed<number> => {
  const m = /^(?:AS)?(\d+)$/i.exec(text)
  if (m === null || Number(m[1]) > 4294967295) return bad(`\`${text}\` is not an AS number (\`13335\` or \`AS13335\`)`)
  return ok(Number(m[1]))
}

export const isName = (text: string): boolean => NAME.test(text)
