/**
 * Seeded random `.rules` text for the formatter and fuzz tests.
 *
 * Details: `validFile` writes a syntactically valid file (not necessarily one
 * that type-checks) in a random layout: random spacing, line breaks where the
 * grammar allows them (conditions, lists, blocks, between items), `;`
 * separators, line continuations, blank lines and numbered comments in every
 * place a comment may stand. `tokenSoup` and `randomText` make mostly invalid
 * input. Everything is a pure function of the `Rng`, so a seed replays.
 */

export interface Rng {
  /** Uniform in [0, 1). */
  readonly next: () => number
  readonly int: (n: number) => number
  readonly pick: <A>(xs: ReadonlyArray<A>) => A
  readonly chance: (p: number) => boolean
}

/** mulberry32: small, fast, good enough for test data. */
export const rng = (seed: number): Rng => {
  let a = seed >>> 0
  const next = () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
  const int = (n: number) => Math.floor(next() * n)
  return { next, int, pick: (xs) => xs[int(xs.length)]!, chance: (p) => next() < p }
}

const BARE = ["10.0.0.0/8", "example.com:443", "30s", "1MiB/s", "Mon-Fri", "8000..8999", "socks5://a.example:1080", "alice", ".ads.example",
  "*.x.example", "::1", "AS13335", "08:00-20:00", "-5", "x_y", "42", "1h30m", "fd00::/8", "a.b.c", "192.168.0.1:8080", "20/s", "keep-last"]
const NAMES = ["alice", "bob", "edge", "corp", "exit", "lan", "ads", "web", "ops", "x", "r_1", "deep.name", "per-user"]
const FIELDS = ["dst.ip", "src.ip", "dst.port", "src.port", "dst.domain", "user", "group", "command", "protocol", "auth", "listener", "dst.country", "src.asn", "custom.field"]
const OPS = ["==", "!=", "<", "<=", ">", ">=", "in", "not in", "suffix", "matches", "regex"]
const KEYWORDS = ["include", "plugin", "geoip", "options", "listen", "auth", "usergroup", "set", "upstream", "chain", "group", "tor", "frobnicate"]
const STRING_PARTS = ["a", " ", "\\\"", "\\\\", "\\n", "\\t", "é", "#", "{", "}", "[", "->", ";", "\t", "日本", "😀"]

export const validFile = (r: Rng): string => {
  let comments = 0
  const comment = () => `#${r.pick(["", " ", " c"])}${comments++} ${r.pick(["", "note", "x { y", "\"q\"", "# again", "->", "tab\there"])}`
  /** Inline whitespace (`_`): spaces, tabs, a line continuation. */
  const sp = () => r.pick([" ", " ", " ", "  ", "\t", " \\\n    "])
  /** Free whitespace (`__`): may hold newlines, blank lines and comments. */
  const ws = () => r.pick([" ", " ", " ", "  ", "\n  ", `  ${comment()}\n  `, `\n\n  ${comment()}\n`, `\n${comment()}\n\n    `, "\r\n "])
  /** End of a statement. */
  const eos = () => r.pick(["\n", "\n", "\n", ` ${comment()}\n`, ";", "; ", "\n\n", "\r\n"])
  const str = () => {
    let s = ""
    for (let i = r.int(4); i > 0; i--) s += r.pick(STRING_PARTS)
    return `"${s}"`
  }
  const list = (open: "[" | "{", depth: number): string => {
    const n = r.int(4)
    let s = open + (r.chance(0.3) ? ws() : "")
    for (let i = 0; i < n; i++) s += token(depth + 1, false) + (i < n - 1 ? r.pick([",", ", ", ` ,${ws()}`, ws()]) : r.pick(["", ",", ws()]))
    return s + (open === "[" ? "]" : "}")
  }
  const token = (depth: number, arrows: boolean): string => {
    const k = r.int(depth > 2 ? 6 : 10)
    if (k < 3) return r.pick(BARE)
    if (k < 4) return r.pick(NAMES)
    if (k < 5) return str()
    if (k < 6) return arrows ? "->" : r.pick(BARE)
    if (k < 8) return list("[", depth)
    if (k < 9) return `${r.pick(["env", "file", "failover", "hash"])}(${[...Array(r.int(3))].map(() => token(depth + 1, false)).join(r.pick([",", ", ", " ,\n "]))})`
    return "[::1]:8080"
  }
  const tokens = (n: number, arrows: boolean) => [...Array(n)].map(() => token(0, arrows)).join(sp())
  const blockBody = (depth: number): string => {
    let s = "{" + r.pick(["", " ", "\n  ", ` ${comment()}\n  `])
    for (let i = r.int(4); i > 0; i--) {
      s += tokens(1 + r.int(3), false)
      if (depth < 2 && r.chance(0.15)) s += sp() + blockBody(depth + 1)
      s += i > 1 ? r.pick([";", "; ", "\n  ", ` ${comment()}\n  `, "\n\n  "]) : r.pick(["", " ", "\n", ` ${comment()}\n`, ";"])
    }
    return `${s}}`
  }
  const decl = () => {
    let s = r.pick(KEYWORDS)
    if (r.chance(0.4)) s += `${sp()}${r.pick(NAMES)}${sp()}=`
    if (r.chance(0.8)) s += sp() + tokens(1 + r.int(4), true)
    if (r.chance(0.3)) s += sp() + blockBody(0)
    return s
  }
  const operand = () => r.pick([r.pick(BARE), r.pick(NAMES), str(), list("[", 1), list("{", 1), `file(${str()})`])
  const expr = (depth: number): string => {
    const k = r.int(depth > 4 ? 3 : 9)
    if (k === 0) return `${r.pick(FIELDS)}${ws()}${r.pick(OPS)}${ws()}${operand()}`
    if (k === 1) return `${r.pick(FIELDS)}${ws()}${r.pick([r.pick(NAMES), r.pick(BARE), str(), list("[", 1)])}`
    if (k === 2) return `time${r.chance(0.3) ? `${ws()}in` : ""}${[...Array(1 + r.int(3))].map(() => ws() + r.pick(["Mon-Fri", "Sat", "08:00-20:00", "Mon", "Sat,Sun"])).join("")}${r.chance(0.3) ? `${ws()}tz${ws()}${str()}` : ""}`
    if (k < 5) return [...Array(2 + r.int(3))].map(() => expr(depth + 1)).join(`${ws()}and${ws()}`)
    if (k < 7) return [...Array(2 + r.int(3))].map(() => expr(depth + 1)).join(`${ws()}or${ws()}`)
    if (k === 7) return `not${ws()}${expr(depth + 1)}`
    return `(${r.chance(0.3) ? ws() : ""}${expr(depth + 1)}${r.chance(0.3) ? ws() : ""})`
  }
  const action = (depth: number): string => {
    const k = r.int(depth > 1 ? 4 : 6)
    if (k === 0) return "allow"
    if (k === 1) return r.chance(0.5) ? "block" : `block${sp()}${str()}`
    if (k === 2) return `redirect${sp()}${r.chance(0.5) ? str() : "new.example:443"}`
    if (k === 3) return r.chance(0.5) ? "tor" : `tor${sp()}${r.pick(NAMES)}`
    return `via${sp()}${r.pick(NAMES)}${r.chance(0.5) ? `${sp()}else${sp()}${action(depth + 1)}` : ""}`
  }
  const modifiers = () => [...Array(r.int(3))].map(() => sp() + r.pick(["limit 20/s per user", "limit 10", "bandwidth 1MiB/s", "idle 5m", "log", `tag ${str()}`])).join("")
  const policy = () => {
    let s = `policy${sp()}${r.pick(NAMES)}${sp()}{${ws()}`
    for (let i = r.int(5); i > 0; i--) {
      const kind = r.pick(["rule", "rule", "guard"])
      s += `${kind}${sp()}${r.pick(NAMES)}${ws()}${r.chance(0.85) ? `when${ws()}${expr(0)}${ws()}` : ""}->${sp()}${action(0)}${modifiers()}${eos()}${ws()}`
    }
    return `${s}default${sp()}${action(0)}${modifiers()}${r.pick(["\n", ";", ` ${comment()}\n`, ""])}${ws()}}`
  }
  const test = () => {
    const expect = r.pick(["allow", "block", `block ${str()}`, "redirect", `redirect ${str()}`, "redirect a.example:80", "via corp", "tor", "tor onion"])
    return `test${sp()}${str()}${sp()}${blockBody(1)}${ws()}expect${sp()}${expect}${r.chance(0.5) ? `${sp()}by${sp()}${r.pick(NAMES)}` : ""}`
  }
  let out = r.pick(["", "\n", `${comment()}\n`, "\n\n"])
  for (let i = 1 + r.int(6); i > 0; i--) {
    const k = r.int(10)
    out += (k < 5 ? decl() : k < 8 ? policy() : test()) + (i > 1 ? eos() : r.pick(["", "\n", ` ${comment()}`, eos()])) + r.pick(["", "", "\n", `${comment()}\n`, "\n\n"])
  }
  return out
}

const SOUP = ["policy", "rule", "guard", "default", "when", "and", "or", "not", "in", "->", "allow", "block", "via", "else", "tor", "redirect",
  "test", "expect", "by", "time", "tz", "{", "}", "[", "]", "(", ")", ",", ";", "=", "==", "!=", "<=", "\"", "\"s\"", "#", "\\", "\n", "\r\n",
  ...KEYWORDS, ...FIELDS, ...BARE, ...NAMES]

/** Random vocabulary and punctuation, randomly spaced: mostly invalid. */
export const tokenSoup = (r: Rng): string => {
  let s = ""
  for (let i = r.int(60); i > 0; i--) s += r.pick(SOUP) + r.pick(["", " ", " ", "\n", "  "])
  return s
}

/** Random characters: ASCII, controls, NUL, CR, lone surrogates, astral characters. */
export const randomText = (r: Rng): string => {
  let s = ""
  for (let i = r.int(200); i > 0; i--) {
    const k = r.int(10)
    s += k < 5 ? String.fromCharCode(32 + r.int(95)) : k < 6 ? r.pick(["\n", "\r", "\t", "\0", "\r\n", "\f", "\v"]) : k < 7 ? String.fromCharCode(r.int(0x10000)) : k < 8 ? "😀" : r.pick(["{", "}", "\"", "#", "(", ")", "[", "]"])
  }
  return s
}
