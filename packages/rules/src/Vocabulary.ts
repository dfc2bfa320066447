/**
 * The declaration vocabulary: which top-level keywords exist, whether they take
 * a name, and which settings they accept with which value patterns
 * (docs/design/language.md, "Declarations").
 *
 * Details: a setting pattern is a small string grammar: UPPER words are value
 * types (`DUR SIZE RATE INT STR PATH SECRET HOSTPORT NAME CIDRS`), lower words
 * are literal keywords, `a|b|c` is a choice of keywords, `[ ... ]` is an
 * optional group and ` || ` separates alternatives. Settings on one line are
 * split at the setting names of their declaration kind. Plugins may add
 * keywords with `extendVocabulary` (later).
 */

export interface SettingSpec {
  readonly pattern: string
  readonly required?: boolean
  /** May be given more than once. */
  readonly repeat?: boolean
}

export interface DeclSpec {
  /** `required`: `KEYWORD NAME = ...`; `optional`: `listen [NAME =] ...`; `none`: no name. */
  readonly name: "required" | "optional" | "none"
  /** The positional form, for messages. */
  readonly form: string
  readonly settings: Readonly<Record<string, SettingSpec>>
}

const s = (pattern: string, extra: Omit<SettingSpec, "pattern"> = {}): SettingSpec => ({ pattern, ...extra })

export const OPTIONS_SETTINGS: Readonly<Record<string, SettingSpec>> = {
  "handshake-timeout": s("DUR"),
  "connect-timeout": s("DUR"),
  "idle-timeout": s("DUR"),
  "drain-timeout": s("DUR"),
  "max-connections": s("INT"),
  "max-connections-per-ip": s("INT"),
  "max-udp-associations-per-ip": s("INT"),
  workers: s("INT"),
}

const table: Record<string, DeclSpec> = {
  include: { name: "none", form: 'include "path.rules"', settings: {} },
  plugin: { name: "none", form: 'plugin "./x.ts"', settings: {} },
  geoip: { name: "none", form: 'geoip [country|asn] "file.mmdb"', settings: {} },
  options: { name: "none", form: "options { SETTING VALUE ... }", settings: OPTIONS_SETTINGS },
  listen: {
    name: "optional",
    form: "listen [NAME =] socks5|socks4|http|mixed HOST:PORT [settings]",
    settings: {
      policy: s("NAME"),
      auth: s("NAME [optional]"),
      tls: s("cert PATH key PATH [ca PATH]"),
      "proxy-protocol": s("from CIDRS"),
      "handshake-timeout": s("DUR"),
      "idle-timeout": s("DUR"),
      "max-connections": s("INT"),
      "max-connections-per-ip": s("INT"),
    },
  },
  auth: {
    name: "required",
    form: 'auth NAME = static { USER "HASH" ... } | htpasswd PATH | webhook "URL"',
    settings: { timeout: s("DUR"), cache: s("DUR") },
  },
  usergroup: { name: "required", form: "usergroup NAME = [alice, bob]", settings: {} },
  set: {
    name: "required",
    form: "set NAME = TYPE [entries] | TYPE file PATH [refresh DUR] [on-error keep-last|fail|empty]",
    settings: { file: s("PATH"), refresh: s("DUR"), "on-error": s("keep-last|fail|empty") },
  },
  upstream: {
    name: "required",
    form: "upstream NAME = SCHEME://HOST:PORT [settings]",
    settings: {
      auth: s("SECRET SECRET"),
      "connect-timeout": s("DUR"),
      "tls-ca": s("PATH"),
      sni: s("STR"),
      insecure: s(""),
    },
  },
  chain: { name: "required", form: "chain NAME = a -> b [-> c ...]", settings: { "connect-timeout": s("DUR"), timeout: s("DUR") } },
  group: {
    name: "required",
    form: "group NAME = failover|fastest|round-robin|hash(m1, m2, ...)",
    settings: {
      probe: s("tcp HOSTPORT || http STR [expect INT]"),
      every: s("DUR"),
      "down-after": s("INT"),
      "up-after": s("INT"),
      tries: s("INT"),
      by: s("user|dst|src"),
    },
  },
  tor: {
    name: "required",
    form: "tor NAME = socks HOST:PORT [control HOST:PORT] [cookie PATH | password SECRET] [isolate MODE]",
    settings: {
      socks: s("HOSTPORT", { required: true }),
      control: s("HOSTPORT"),
      cookie: s("PATH"),
      password: s("SECRET"),
      isolate: s("per-user|per-rule|per-src|per-connection|none"),
    },
  },
}

/** Request settings of `test` blocks. */
export const TEST_SETTINGS: Readonly<Record<string, SettingSpec>> = {
  connect: s("HOSTPORT"),
  bind: s("HOSTPORT"),
  udp: s("HOSTPORT"),
  src: s("SRC"),
  user: s("NAME"),
  group: s("NAME", { repeat: true }),
  groups: s("NAMES"),
  listener: s("NAME"),
  protocol: s("socks4|socks5|http"),
  auth: s("none|password"),
  policy: s("NAME"),
  at: s("TIMESTAMP"),
  "dst.ip": s("IP"),
  "dst.country": s("NAME"),
  "dst.asn": s("ASN"),
  "src.country": s("NAME"),
  "src.asn": s("ASN"),
}

export const declarations: ReadonlyMap<string, DeclSpec> = new Map(Object.entries(table))

/** Keywords that only make sense inside a policy. */
export const POLICY_ONLY = new Set(["rule", "guard", "default"])

export const LISTENER_KINDS = ["socks5", "socks4", "http", "mixed"] as const
export const SET_TYPES = ["domains", "cidrs", "ports", "users", "groups", "countries", "asns"] as const
export const UPSTREAM_SCHEMES = ["socks5", "socks4", "socks4a", "http", "https"] as const
export const GROUP_STRATEGIES = ["failover", "fastest", "round-robin", "hash"] as const
export const AUTH_KINDS = ["static", "htpasswd", "webhook"] as const

// ---------------------------------------------------------------------------
// Patterns
// ---------------------------------------------------------------------------

export type PatternNode =
  | { readonly t: "type"; readonly type: string }
  | { readonly t: "word"; readonly words: ReadonlyArray<string> }
  | { readonly t: "opt"; readonly items: ReadonlyArray<PatternNode> }

const patternCache = new Map<string, ReadonlyArray<ReadonlyArray<PatternNode>>>()

/** Parses a setting pattern into its alternatives. */
export const parsePattern = (pattern: string): ReadonlyArray<ReadonlyArray<PatternNode>> => {
  const cached = patternCache.get(pattern)
  if (cached !== undefined) return cached
  const alts = pattern.split(" || ").map((alt) => {
    const words = alt.split(/\s+/).filter((w) => w !== "")
    let i = 0
    const seq = (): PatternNode[] => {
      const out: PatternNode[] = []
      while (i < words.length) {
        const w = words[i++]!
        if (w === "]") return out
        if (w.startsWith("[")) {
          words[--i] = w.slice(1)
          if (words[i] === "") i++
          out.push({ t: "opt", items: seq() })
          continue
        }
        let word = w
        let close = false
        if (word.endsWith("]")) {
          word = word.slice(0, -1)
          close = true
        }
        out.push(/^[A-Z]+$/.test(word) ? { t: "type", type: word } : { t: "word", words: word.split("|") })
        if (close) return out
      }
      return out
    }
    return seq()
  })
  patternCache.set(pattern, alts)
  return alts
}
