/**
 * Password checks for listener auth sources: `static` users and `htpasswd` files.
 *
 * Details: three hash formats are accepted:
 *  - bcrypt (`$2y$`/`$2b$`/`$2a$`, Apache `htpasswd -B`), checked with the
 *    pure-JS `bcryptjs` (no native build; bcrypt passwords over 72 bytes are
 *    refused at verification, as bcrypt would silently truncate them);
 *  - scrypt (passlib's format): `$scrypt$ln=<log2 N>,r=<r>,p=<p>$<salt>$<key>`
 *  - argon2id (RFC 9106 / the reference CLI's format, Node 24 `crypto.argon2`):
 *    `$argon2id$v=19$m=<KiB>,t=<passes>,p=<lanes>$<salt>$<key>`
 * Salt and key are base64 without padding (`+/`; passlib's `./` variant also
 * accepted). `hashPassword` makes them (`scrypt` ln=15,r=8,p=1 by default).
 * `$apr1$` (MD5), `{SHA}` and crypt(3) are refused when the source is loaded,
 * with the user and the format named.
 * Comparison is `timingSafeEqual`; an unknown user is checked against a dummy
 * hash with the parameters of the source's first user, so it costs the same.
 *
 * Gotchas: never put a password or hash into an error or a log line; errors
 * name the user and the line only.
 */
import * as crypto from "node:crypto"
import { readFileSync } from "node:fs"
import bcrypt from "bcryptjs"

export interface UserEntry { readonly user: string; readonly hash: string; readonly groups: ReadonlyArray<string> }

type Parsed =
  | { readonly kind: "bcrypt"; readonly hash: string; readonly cost: number }
  | { readonly kind: "scrypt"; readonly ln: number; readonly r: number; readonly p: number; readonly salt: Buffer; readonly key: Buffer }
  | { readonly kind: "argon2id"; readonly m: number; readonly t: number; readonly p: number; readonly salt: Buffer; readonly key: Buffer }

const b64 = (s: string): Buffer | undefined =>
  /^[A-Za-z0-9+/.]+$/.test(s) ? Buffer.from(s.replaceAll(".", "+"), "base64") : undefined

const params = (s: string): Map<string, number> => {
  const m = new Map<string, number>()
  for (const kv of s.split(",")) {
    const [k, v] = kv.split("=")
    if (k !== undefined && v !== undefined && /^\d+$/.test(v)) m.set(k, Number(v))
  }
  return m
}

/** Parses a hash, or returns why it cannot be used (never containing the hash). */
export const parseHash = (hash: string): Parsed | string => {
  const bc = /^\$2[aby]\$(\d\d)\$[./A-Za-z0-9]{53}$/.exec(hash)
  if (bc !== null) {
    const cost = Number(bc[1])
    return cost >= 4 && cost <= 31 ? { kind: "bcrypt", hash, cost } : "malformed bcrypt hash (cost must be 04..31)"
  }
  if (/^\$2[abxy]?\$/.test(hash)) return "malformed bcrypt hash (expected $2y$NN$ and 53 characters)"
  if (hash.startsWith("$apr1$") || hash.startsWith("{SHA}") || hash.startsWith("$1$")) return "weak hash formats ($apr1$, {SHA}, $1$) are not accepted (use $2y$ bcrypt, $scrypt$ or $argon2id$)"
  const parts = hash.split("$")
  // ["", kind, params..., salt, key]
  if (parts[1] === "scrypt" && parts.length === 5) {
    const ps = params(parts[2]!)
    const salt = b64(parts[3]!), key = b64(parts[4]!)
    const ln = ps.get("ln"), r = ps.get("r"), p = ps.get("p")
    if (ln === undefined || r === undefined || p === undefined || salt === undefined || key === undefined || ln < 1 || ln > 24 || r < 1 || p < 1 || key.length < 16) {
      return "malformed $scrypt$ hash (expected $scrypt$ln=N,r=R,p=P$salt$key)"
    }
    return { kind: "scrypt", ln, r, p, salt, key }
  }
  if (parts[1] === "argon2id" && parts.length === 6) {
    const ps = params(parts[3]!)
    const salt = b64(parts[4]!), key = b64(parts[5]!)
    const m = ps.get("m"), t = ps.get("t"), p = ps.get("p")
    if (parts[2] !== "v=19" || m === undefined || t === undefined || p === undefined || salt === undefined || key === undefined || salt.length < 8 || key.length < 16) {
      return "malformed $argon2id$ hash (expected $argon2id$v=19$m=M,t=T,p=P$salt$key)"
    }
    return { kind: "argon2id", m, t, p, salt, key }
  }
  return "unknown hash format (use $2y$ bcrypt, $scrypt$ or $argon2id$)"
}

const derive = (h: Exclude<Parsed, { kind: "bcrypt" }>, pass: string): Promise<Buffer> =>
  new Promise((resolve, reject) => {
    if (h.kind === "scrypt") {
      const N = 2 ** h.ln
      crypto.scrypt(pass, h.salt, h.key.length, { N, r: h.r, p: h.p, maxmem: 256 * N * h.r + 1024 * 1024 }, (e, k) => (e ? reject(e) : resolve(k)))
    } else {
      crypto.argon2("argon2id", { message: pass, nonce: h.salt, parallelism: h.p, tagLength: h.key.length, memory: h.m, passes: h.t }, (e, k) => (e ? reject(e) : resolve(k)))
    }
  })

export const verifyParsed = async (h: Parsed, pass: string): Promise<boolean> => {
  try {
    if (h.kind === "bcrypt") return Buffer.byteLength(pass) <= 72 && (await bcrypt.compare(pass, h.hash))
    const k = await derive(h, pass)
    return k.length === h.key.length && crypto.timingSafeEqual(k, h.key)
  } catch {
    return false
  }
}

const enc = (b: Buffer): string => b.toString("base64").replace(/=+$/, "")

export type HashAlgo = "scrypt" | "argon2id" | "bcrypt"

/** Makes a hash in one of the accepted formats (`proxyd passwd`, tests). bcrypt: cost 10, `$2y$` like Apache's. */
export const hashPassword = async (pass: string, kind: HashAlgo = "scrypt"): Promise<string> => {
  const salt = crypto.randomBytes(16)
  if (kind === "bcrypt") {
    if (Buffer.byteLength(pass) > 72) throw new Error("bcrypt takes at most 72 bytes of password; use argon2id or scrypt")
    return (await bcrypt.hash(pass, 10)).replace(/^\$2b\$/, "$2y$")
  }
  if (kind === "scrypt") {
    const h = { kind, ln: 15, r: 8, p: 1, salt, key: Buffer.alloc(32) } as const
    return `$scrypt$ln=15,r=8,p=1$${enc(salt)}$${enc(await derive(h, pass))}`
  }
  const h = { kind, m: 19456, t: 2, p: 1, salt, key: Buffer.alloc(32) } as const
  return `$argon2id$v=19$m=19456,t=2,p=1$${enc(salt)}$${enc(await derive(h, pass))}`
}

export interface Verified { readonly ok: boolean; readonly groups: ReadonlyArray<string> }

export interface AuthSource {
  /** `client`: who asks (the webhook sends it; the brute-force guard keys on `src`). */
  verify(user: string, pass: string, client?: { readonly src: string; readonly listener: string }): Promise<Verified>
}

/** Builds a source from entries, or returns the problems (user names only). */
export const fromEntries = (name: string, entries: ReadonlyArray<UserEntry>): AuthSource | Array<string> => {
  const problems: Array<string> = []
  const users = new Map<string, { readonly h: Parsed; readonly groups: ReadonlyArray<string> }>()
  for (const e of entries) {
    const h = parseHash(e.hash)
    if (typeof h === "string") problems.push(`auth \`${name}\`, user \`${e.user}\`: ${h}`)
    else users.set(e.user, { h, groups: e.groups })
  }
  if (problems.length > 0) return problems
  const first = users.values().next()
  const template: Parsed = first.done ? { kind: "scrypt", ln: 15, r: 8, p: 1, salt: Buffer.alloc(16), key: Buffer.alloc(32) } : first.value.h
  const dummy: Parsed = template.kind === "bcrypt"
    ? { kind: "bcrypt", cost: template.cost, hash: bcrypt.hashSync(crypto.randomBytes(12).toString("base64"), template.cost) }
    : { ...template, salt: crypto.randomBytes(template.salt.length), key: crypto.randomBytes(template.key.length) }
  return {
    verify: async (user, pass) => {
      const u = users.get(user)
      if (u === undefined) {
        await verifyParsed(dummy, pass)
        return { ok: false, groups: [] }
      }
      const ok = await verifyParsed(u.h, pass)
      return { ok, groups: ok ? u.groups : [] }
    },
  }
}

/** Parses an htpasswd file (`user:hash` per line, `#` comments); problems name the line. */
export const parseHtpasswd = (text: string, file: string): { entries: Array<UserEntry>; problems: Array<string> } => {
  const entries: Array<UserEntry> = []
  const problems: Array<string> = []
  text.split(/\r?\n/).forEach((line, i) => {
    const l = line.trim()
    if (l === "" || l.startsWith("#")) return
    const c = l.indexOf(":")
    if (c <= 0) { problems.push(`${file}:${i + 1}: expected user:hash`); return }
    entries.push({ user: l.slice(0, c), hash: l.slice(c + 1), groups: [] })
  })
  return { entries, problems }
}

const asString = (v: unknown): string | undefined => (typeof v === "string" ? v : undefined)

/** The user entries of a `static` auth declaration (tolerant of the checker's shapes). */
const staticEntries = (settings: Readonly<Record<string, unknown>>): Array<UserEntry> => {
  const raw = settings["users"]
  const out: Array<UserEntry> = []
  const groupsOf = (v: unknown): Array<string> => (Array.isArray(v) ? v.filter((g): g is string => typeof g === "string") : [])
  if (Array.isArray(raw)) {
    for (const u of raw) {
      if (typeof u !== "object" || u === null) continue
      const r = u as Record<string, unknown>
      const user = asString(r["user"]) ?? asString(r["name"])
      const hash = asString(r["hash"]) ?? asString(r["password"])
      if (user !== undefined && hash !== undefined) out.push({ user, hash, groups: groupsOf(r["groups"]) })
    }
  } else if (typeof raw === "object" && raw !== null) {
    for (const [user, v] of Object.entries(raw)) {
      if (typeof v === "string") out.push({ user, hash: v, groups: [] })
      else if (typeof v === "object" && v !== null) {
        const hash = asString((v as Record<string, unknown>)["hash"])
        if (hash !== undefined) out.push({ user, hash, groups: groupsOf((v as Record<string, unknown>)["groups"]) })
      }
    }
  }
  return out
}

/** Loads an auth declaration (static or htpasswd), or returns the problems. */
export const load = (a: { readonly name: string; readonly kind: string; readonly settings: Readonly<Record<string, unknown>> }): AuthSource | Array<string> => {
  if (a.kind === "static") return fromEntries(a.name, staticEntries(a.settings))
  if (a.kind === "htpasswd") {
    const path = asString(a.settings["path"]) ?? asString(a.settings["file"])
    if (path === undefined) return [`auth \`${a.name}\`: htpasswd needs a file path`]
    let text: string
    try {
      text = readFileSync(path, "utf8")
    } catch (e) {
      return [`auth \`${a.name}\`: cannot read ${path}: ${(e as NodeJS.ErrnoException).code ?? "error"}`]
    }
    const r = parseHtpasswd(text, path)
    if (r.problems.length > 0) return r.problems
    return fromEntries(a.name, r.entries)
  }
  return [`auth \`${a.name}\`: kind \`${a.kind}\` is not implemented yet`]
}

/** The path an htpasswd source reads (watched for reload). */
export const authFile = (a: { readonly kind: string; readonly settings: Readonly<Record<string, unknown>> }): string | undefined =>
  a.kind === "htpasswd" ? asString(a.settings["path"]) ?? asString(a.settings["file"]) : undefined
