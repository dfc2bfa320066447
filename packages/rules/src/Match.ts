/**
 * Leaf-level matching shared by the reference interpreter and the compiled
 * evaluator: domain normalisation, glob and regex caches, time windows.
 */
import type { DomainPattern, StringPattern } from "./Ir.ts"

/** Lower case, no trailing dot. */
export const normalizeDomain = (name: string): string => {
  const lower = name.toLowerCase()
  return lower.endsWith(".") ? lower.slice(0, -1) : lower
}

export const isOnion = (name: string): boolean => {
  const n = normalizeDomain(name)
  return n === "onion" || n.endsWith(".onion")
}

const globCache = new Map<string, RegExp>()
/** `*` matches any run of characters (also dots); everything else is literal. Case-insensitive. */
export const globRegex = (glob: string): RegExp => {
  let re = globCache.get(glob)
  if (re === undefined) {
    const body = glob.split("*").map((part) => part.replace(/[.+?^${}()|[\]\\]/g, "\\$&")).join(".*")
    re = new RegExp(`^${body}$`, "i")
    globCache.set(glob, re)
  }
  return re
}

const regexCache = new Map<string, RegExp>()
export const cachedRegex = (source: string): RegExp => {
  let re = regexCache.get(source)
  if (re === undefined) {
    re = new RegExp(source, "i")
    regexCache.set(source, re)
  }
  return re
}

/** `name` equals `d` or is a subdomain of it. Both normalised. */
export const domainHasSuffix = (name: string, d: string): boolean =>
  name === d || (name.length > d.length && name.endsWith(d) && name.charCodeAt(name.length - d.length - 1) === 46)

export const domainPatternMatches = (p: DomainPattern, name: string): boolean => {
  switch (p.t) {
    case "exact": return name === p.d
    case "suffix": return domainHasSuffix(name, p.d)
    case "sub": return name !== p.d && domainHasSuffix(name, p.d)
    case "glob": return globRegex(p.g).test(name)
    case "regex": return cachedRegex(p.r).test(name)
  }
}

export const stringPatternMatches = (p: StringPattern, s: string): boolean => {
  switch (p.t) {
    case "exact": return s === p.s
    case "glob": return globRegex(p.g).test(s)
    case "regex": return cachedRegex(p.r).test(s)
  }
}

const WEEKDAYS: Record<string, number> = { Sun: 0, Mon: 1, Tue: 2, Wed: 3, Thu: 4, Fri: 5, Sat: 6 }
const fmtCache = new Map<string, Intl.DateTimeFormat>()

/** Weekday (Sunday = 0) and minute of the day of `epochMs` in time zone `tz`. */
export const localTime = (epochMs: number, tz: string): { readonly day: number; readonly minute: number } => {
  let fmt = fmtCache.get(tz)
  if (fmt === undefined) {
    fmt = new Intl.DateTimeFormat("en-US", { timeZone: tz, weekday: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23" })
    fmtCache.set(tz, fmt)
  }
  let day = 0, hour = 0, minute = 0
  for (const part of fmt.formatToParts(epochMs)) {
    if (part.type === "weekday") day = WEEKDAYS[part.value] ?? 0
    else if (part.type === "hour") hour = Number(part.value)
    else if (part.type === "minute") minute = Number(part.value)
  }
  return { day, minute: hour * 60 + minute }
}

export const isValidTimeZone = (tz: string): boolean => {
  try {
    new Intl.DateTimeFormat("en-US", { timeZone: tz })
    return true
  } catch {
    return false
  }
}

/** Does a time matcher hold at `epochMs`? Windows that wrap midnight belong to the day they start. */
export const timeMatches = (days: number, windows: ReadonlyArray<readonly [number, number]>, tz: string, epochMs: number): boolean => {
  const { day, minute } = localTime(epochMs, tz)
  const yesterday = (day + 6) % 7
  for (const [start, end] of windows) {
    if (start <= end) {
      if ((days & (1 << day)) !== 0 && minute >= start && minute < end) return true
    } else {
      if ((days & (1 << day)) !== 0 && minute >= start) return true
      if ((days & (1 << yesterday)) !== 0 && minute < end) return true
    }
  }
  return false
}
