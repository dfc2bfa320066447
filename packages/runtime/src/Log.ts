/**
 * Structured log lines: JSON (one object per line, the default) or `pretty`.
 *
 * Details: a `Log` is a plain synchronous object (hot-path friendly; no Effect
 * per line). Lines below the level are dropped before any formatting. The sink
 * is injectable (`write`) so tests can capture lines. The default sink is
 * stderr, batched: lines go out in one write at most 20 ms after the first of
 * them (or at once past 64 KiB), and whatever is pending is written
 * synchronously when the process exits, so no line is lost on exit (a SIGKILL
 * loses at most the last 20 ms). JSON lines are serialised straight from the
 * caller's fields (no copy) unless a key needs redacting.
 *
 * Gotchas: fields whose key looks like a credential (`pass`, `password`,
 * `secret`, `token`, `authorization`, `cookie`, `hash`) are replaced by
 * `"[redacted]"` before writing, whatever the caller passes — a second line of
 * defence; callers must not pass secrets in the first place.
 */
import { writeSync } from "node:fs"

export type Level = "debug" | "info" | "warn" | "error"
export type Format = "json" | "pretty"

const RANK: Readonly<Record<Level, number>> = { debug: 10, info: 20, warn: 30, error: 40 }

export const isLevel = (s: string): s is Level => Object.hasOwn(RANK, s)

export interface Log {
  readonly level: Level
  readonly format: Format
  enabled(level: Level): boolean
  log(level: Level, msg: string, fields?: Readonly<Record<string, unknown>>): void
  debug(msg: string, fields?: Readonly<Record<string, unknown>>): void
  info(msg: string, fields?: Readonly<Record<string, unknown>>): void
  warn(msg: string, fields?: Readonly<Record<string, unknown>>): void
  error(msg: string, fields?: Readonly<Record<string, unknown>>): void
}

export interface LogOptions {
  readonly level?: Level
  readonly format?: Format
  /** Receives each finished line, without the trailing newline. Default: stderr. */
  readonly write?: (line: string) => void
  /** Fields every line carries right after `msg` (a worker's `worker: i`). */
  readonly base?: Readonly<Record<string, string | number>>
}

const SECRET_KEY = /pass|secret|token|authorization|cookie|hash|credential/i

/** Copies `fields` into `out`, without undefined values and with credential-like keys redacted. */
const redactInto = (out: Record<string, unknown>, fields: Readonly<Record<string, unknown>>): Record<string, unknown> => {
  for (const k in fields) {
    const v = fields[k]
    if (v === undefined) continue
    out[k] = isSecret(k) ? "[redacted]" : v
  }
  return out
}

const secretKeys = new Map<string, boolean>()
/** Whether a field name looks like a credential (cached: field names are few). */
const isSecret = (k: string): boolean => {
  let v = secretKeys.get(k)
  if (v === undefined) {
    v = SECRET_KEY.test(k)
    if (secretKeys.size < 10_000) secretKeys.set(k, v)
  }
  return v
}

/** One JSON line: time, level, msg, then the fields (undefined ones left out, credential-like ones redacted). */
const jsonLine = (time: string, lv: Level, msg: string, fields: Readonly<Record<string, unknown>>, base: Readonly<Record<string, unknown>> | undefined, baseText: string): string => {
  let copy = false
  for (const k in fields) {
    if (isSecret(k) || k === "time" || k === "level" || k === "msg" || (base !== undefined && Object.hasOwn(base, k))) { copy = true; break }
  }
  if (copy) return JSON.stringify(redactInto({ time, level: lv, msg, ...base }, fields))
  const body = JSON.stringify(fields)
  return `{"time":"${time}","level":"${lv}","msg":${JSON.stringify(msg)}${baseText}${body.length > 2 ? `,${body.slice(1)}` : "}"}`
}

let pending = ""
let flushScheduled = false
const flush = (): void => {
  flushScheduled = false
  if (pending.length === 0) return
  const out = pending
  pending = ""
  process.stderr.write(out)
}
/** Writes the lines still waiting for their batch now (a worker thread about to end). */
export const flushNow = (): void => flush()

let exitHooked = false
/** How long a line may wait for others to share its write. */
const FLUSH_MS = 20
/** stderr, one write per `FLUSH_MS` (see the module's Details). */
const batchedStderr = (line: string): void => {
  if (!exitHooked) {
    exitHooked = true
    process.once("exit", () => {
      if (pending.length === 0) return
      try { writeSync(2, pending) } catch { /* stderr closed */ }
      pending = ""
    })
  }
  pending += line + "\n"
  if (pending.length > 65_536) flush()
  else if (!flushScheduled) { flushScheduled = true; setTimeout(flush, FLUSH_MS).unref() }
}

// Anything but printable ASCII (spaces, quotes, `=`, control bytes, escapes) is quoted and escaped.
const prettyValue = (v: unknown): string =>
  typeof v === "string" ? (/^[\x21-\x7e]+$/.test(v) && !/["=]/.test(v) ? v : JSON.stringify(v)) : JSON.stringify(v)

export const make = (opts: LogOptions = {}): Log => {
  const level = opts.level ?? "info"
  const format = opts.format ?? "json"
  const write = opts.write ?? batchedStderr
  const min = RANK[level]
  const base = opts.base === undefined || Object.keys(opts.base).length === 0 ? undefined : opts.base
  // `,"worker":2` (JSON) or ` worker=2` (pretty), made once.
  const baseJson = base === undefined ? "" : `,${JSON.stringify(base).slice(1, -1)}`
  const basePretty = base === undefined ? "" : Object.entries(base).map(([k, v]) => ` ${k}=${prettyValue(v)}`).join("")
  const log = (lv: Level, msg: string, fields: Readonly<Record<string, unknown>> = {}): void => {
    if (RANK[lv] < min) return
    const time = new Date().toISOString()
    if (format === "json") {
      write(jsonLine(time, lv, msg, fields, base, baseJson))
    } else {
      const safe = redactInto({}, fields)
      let line = `${time} ${lv.toUpperCase().padEnd(5)} ${msg}${basePretty}`
      for (const k of Object.keys(safe)) line += ` ${k}=${prettyValue(safe[k])}`
      write(line)
    }
  }
  return {
    level,
    format,
    enabled: (lv) => RANK[lv] >= min,
    log,
    debug: (m, f) => log("debug", m, f),
    info: (m, f) => log("info", m, f),
    warn: (m, f) => log("warn", m, f),
    error: (m, f) => log("error", m, f),
  }
}

/** A log that keeps its lines in memory (tests, and `check`-style capture). */
export const memory = (level: Level = "debug"): Log & { readonly lines: Array<string> } => {
  const lines: Array<string> = []
  return Object.assign(make({ level, format: "json", write: (l) => lines.push(l) }), { lines })
}
