/**
 * Witness requests: a concrete request that makes a condition `true`, and its
 * one-line form in the `test { ... }` request syntax.
 *
 * Details: `findWitness` expands the condition to DNF (`Space.ts`) and solves
 * the terms in order; the first satisfiable term gives the witness. It says
 * whether "no witness" is a proof (`none`) or the search gave up (`gave-up`:
 * too many DNF terms, or globs/regexes the sampler could not satisfy).
 *
 * Gotchas: a witness leaves every field the condition does not mention unknown,
 * except the ones a request always has (command, destination, port) and the
 * defaults the test syntax implies (`auth password` with a user, else `none`),
 * so pasting `formatRequest(w)` into a test reproduces `w` exactly.
 */
import type { Cond, Request } from "./Ir.ts"
import { type Dnf, solveTerm, toDnf } from "./Space.ts"

export type WitnessResult =
  | { readonly t: "found"; readonly request: Request }
  | { readonly t: "none" }
  | { readonly t: "gave-up"; readonly reason: string }

const dnfCache = new WeakMap<Cond, Dnf>()
/** `toDnf`, memoised per condition object. */
export const dnfOf = (cond: Cond): Dnf => {
  let d = dnfCache.get(cond)
  if (d === undefined) {
    d = toDnf(cond)
    dnfCache.set(cond, d)
  }
  return d
}

/** A request for which `cond` is `true`, or a proof there is none, or the reason the search gave up. */
export const findWitness = (cond: Cond): WitnessResult => {
  const dnf = dnfOf(cond)
  if (!dnf.ok) return { t: "gave-up", reason: dnf.reason }
  let reason: string | undefined
  for (const term of dnf.terms) {
    const r = solveTerm(term)
    if (r.t === "sat") return { t: "found", request: r.request }
    if (r.t === "unknown") reason ??= r.reason
  }
  return reason === undefined ? { t: "none" } : { t: "gave-up", reason }
}

/** A concrete request for which `cond` is `true` (not `unknown`), or `undefined` (none exists, or the search gave up: see `findWitness`). */
export const witness = (cond: Cond): Request | undefined => {
  const r = findWitness(cond)
  return r.t === "found" ? r.request : undefined
}

const BARE = /^[A-Za-z0-9_][A-Za-z0-9_.@-]*$/
const name = (s: string): string => (BARE.test(s) ? s : JSON.stringify(s))
const hostPort = (host: string, port: number): string => `${host.includes(":") ? `[${host}]` : host}:${port}`

const isoMinute = (ms: number): string => {
  const iso = new Date(ms).toISOString()
  return iso.endsWith(":00.000Z") ? `${iso.slice(0, 16)}Z` : iso
}

/**
 * One line in the test-block request syntax, e.g.
 * `connect ads.example.com:443 src 10.0.0.1 user alice`.
 */
export const formatRequest = (req: Request): string => {
  const parts: Array<string> = [`${req.command} ${hostPort(req.dstHost, req.dstPort)}`]
  if (req.srcIp !== undefined) parts.push(`src ${req.srcPort === undefined ? req.srcIp : hostPort(req.srcIp, req.srcPort)}`)
  if (req.user !== undefined) parts.push(`user ${name(req.user)}`)
  if (req.groups !== undefined && req.groups.length > 0) parts.push(req.groups.length === 1 ? `group ${name(req.groups[0]!)}` : `groups [${req.groups.map(name).join(", ")}]`)
  if (req.listener !== undefined) parts.push(`listener ${name(req.listener)}`)
  if (req.protocol !== undefined) parts.push(`protocol ${req.protocol}`)
  if (req.auth !== undefined && req.auth !== (req.user !== undefined ? "password" : "none")) parts.push(`auth ${req.auth}`)
  if (req.time !== undefined) parts.push(`at ${isoMinute(req.time)}`)
  const f = req.facts
  if (f !== undefined) {
    for (const k of ["dst.ip", "dst.country", "dst.asn", "src.country", "src.asn"] as const) {
      const v = f[k]
      if (v !== undefined && v !== null) parts.push(`${k} ${v}`)
    }
  }
  return parts.join(" ")
}
