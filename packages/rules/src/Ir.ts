/**
 * The checked, resolved form of a rules file ("IR"): plain data, printable as JSON.
 *
 * Details: the checker (`Checker.ts`) turns the AST into a `Program`; the
 * compiler (`Compiler.ts`) turns each `PolicyIR` into a decision graph; the
 * reference interpreter (`Reference.ts`) evaluates a `PolicyIR` directly and
 * defines the semantics every optimisation must keep.
 *
 * Semantics, in one place:
 *  - Every leaf condition is a membership test `field ∈ S` (a `Matcher`).
 *    `!=` and `not in` are `not` over a membership. Port comparisons
 *    (`<`, `>=`, …) are port ranges.
 *  - Three-valued logic (Kleene): a leaf whose fact is missing is `unknown`;
 *    `not unknown = unknown`; `and`/`or` are Kleene's. A rule fires only when
 *    its condition is `true`.
 *  - `guard` rules are checked first, all of them (their order does not matter:
 *    they can only block); when several fire, the first in file order is
 *    reported. Then `rule`s in order, first `true` wins. Then `default`.
 *  - `.onion` destinations never have an IP: `dst.ip`, `dst.country`,
 *    `dst.asn` are unknown for them, whatever facts are given.
 */
import type { Span } from "./Ast.ts"

// ---------------------------------------------------------------------------
// Values
// ---------------------------------------------------------------------------

/** An IP network. IPv4-mapped IPv6 (`::ffff:a.b.c.d`) is stored as IPv4. */
export interface Cidr {
  readonly family: 4 | 6
  /** The network address as an unsigned integer (32 or 128 bits). */
  readonly addr: bigint
  readonly prefix: number
}

export type DomainPattern =
  /** `example.com`: that name only. */
  | { readonly t: "exact"; readonly d: string }
  /** `.example.com` or `suffix "example.com"`: the name and every subdomain (label boundary). */
  | { readonly t: "suffix"; readonly d: string }
  /** `*.example.com`: strict subdomains only. */
  | { readonly t: "sub"; readonly d: string }
  /** `matches "ads.*.example"`: a glob over the whole name; `*` matches any run of characters. */
  | { readonly t: "glob"; readonly g: string }
  /** `regex "..."`: a linear-time-checked JS regex, anchored by the author. */
  | { readonly t: "regex"; readonly r: string }

export type StringPattern =
  | { readonly t: "exact"; readonly s: string }
  | { readonly t: "glob"; readonly g: string }
  | { readonly t: "regex"; readonly r: string }

export type Weekday = 0 | 1 | 2 | 3 | 4 | 5 | 6 // Sunday = 0

export type Matcher =
  | { readonly kind: "ip"; readonly field: "src.ip" | "dst.ip"; readonly cidrs: ReadonlyArray<Cidr> }
  | { readonly kind: "port"; readonly field: "src.port" | "dst.port"; readonly ranges: ReadonlyArray<readonly [number, number]> }
  | { readonly kind: "domain"; readonly field: "dst.domain"; readonly patterns: ReadonlyArray<DomainPattern> }
  | { readonly kind: "string"; readonly field: "user"; readonly patterns: ReadonlyArray<StringPattern> }
  /** True when any of the connection's groups is in `values`. Unknown when groups are unknown (no user). */
  | { readonly kind: "group"; readonly field: "group"; readonly values: ReadonlyArray<string> }
  | { readonly kind: "enum"; readonly field: "listener" | "protocol" | "command" | "auth"; readonly values: ReadonlyArray<string> }
  | { readonly kind: "country"; readonly field: "src.country" | "dst.country"; readonly values: ReadonlyArray<string> }
  | { readonly kind: "asn"; readonly field: "src.asn" | "dst.asn"; readonly values: ReadonlyArray<number> }
  /**
   * True when the request time, in `tz`, falls on one of `days` (bitmask,
   * bit d = weekday d) and inside one of `windows` (minutes since midnight,
   * `[start, end)`, `end` may be 1440; a window with start > end wraps midnight
   * and its day is the day it starts).
   */
  | { readonly kind: "time"; readonly field: "time"; readonly days: number; readonly windows: ReadonlyArray<readonly [number, number]>; readonly tz: string }
  /**
   * A field contributed by a plugin (`Extension.ts`): true when the request's
   * value of `name` (`Request.plugin[name]`) is one of `values`; unknown when
   * the value is missing (`undefined` or `null`).
   */
  | { readonly kind: "plugin"; readonly field: "plugin"; readonly name: string; readonly values: ReadonlyArray<string> }

export type Field = Matcher["field"]

export type Cond =
  | { readonly k: "true" }
  | { readonly k: "and"; readonly items: ReadonlyArray<Cond> }
  | { readonly k: "or"; readonly items: ReadonlyArray<Cond> }
  | { readonly k: "not"; readonly c: Cond }
  /** `setRef` names the set the entries came from, for display only. */
  | { readonly k: "match"; readonly m: Matcher; readonly setRef?: string }

// ---------------------------------------------------------------------------
// Actions and modifiers
// ---------------------------------------------------------------------------

export type OutboundKind = "upstream" | "chain" | "group"

export type ActionIR =
  | { readonly k: "allow" }
  | { readonly k: "block"; readonly message?: string }
  | { readonly k: "redirect"; readonly host: string; readonly port: number }
  | { readonly k: "via"; readonly target: string; readonly targetKind: OutboundKind; readonly else?: ActionIR }
  | { readonly k: "tor"; readonly target: string }

export type LimitKey = "user" | "src" | "rule" | "dst" | "listener"

export type ModifierIR =
  /** New connections per `perSeconds`, counted per key. */
  | { readonly k: "rate"; readonly count: number; readonly perSeconds: number; readonly per: LimitKey; readonly span?: Span }
  /** Concurrent connections, counted per key. */
  | { readonly k: "conns"; readonly max: number; readonly per: LimitKey; readonly span?: Span }
  | { readonly k: "bandwidth"; readonly bytesPerSecond: number; readonly per: LimitKey | "connection"; readonly span?: Span }
  | { readonly k: "idle"; readonly ms: number; readonly span?: Span }
  | { readonly k: "log"; readonly span?: Span }
  | { readonly k: "tag"; readonly value: string; readonly span?: Span }

export interface RuleIR {
  readonly name: string
  readonly kind: "guard" | "rule" | "default"
  /** `{k:"true"}` for `default` and for a rule without `when`. */
  readonly cond: Cond
  readonly action: ActionIR
  readonly modifiers: ReadonlyArray<ModifierIR>
  readonly span?: Span
}

export interface PolicyIR {
  readonly name: string
  readonly guards: ReadonlyArray<RuleIR>
  readonly rules: ReadonlyArray<RuleIR>
  readonly default: RuleIR
  readonly span?: Span
}

// ---------------------------------------------------------------------------
// Requests and decisions
// ---------------------------------------------------------------------------

export type Command = "connect" | "bind" | "udp"

/** Facts that cost something to obtain. `undefined`: not looked up yet; `null`: looked up, missing. */
export interface Facts {
  readonly "dst.ip"?: string | null
  readonly "dst.country"?: string | null
  readonly "dst.asn"?: number | null
  readonly "src.country"?: string | null
  readonly "src.asn"?: number | null
}
export type FactName = keyof Facts

export interface Request {
  readonly command: Command
  /** As the client sent it: a domain name, or an IPv4/IPv6 literal (no brackets). */
  readonly dstHost: string
  readonly dstPort: number
  readonly listener?: string
  readonly protocol?: string
  readonly srcIp?: string
  readonly srcPort?: number
  readonly user?: string
  /** Groups of the user (from the auth backend and `usergroup` declarations). */
  readonly groups?: ReadonlyArray<string>
  /** `none` when the client did not authenticate, `password` for RFC 1929 / Basic. */
  readonly auth?: string
  /** Epoch milliseconds. */
  readonly time?: number
  readonly facts?: Facts
  /** Values of plugin fields by field name (`time.weekday`); missing or `null`: unknown. */
  readonly plugin?: Readonly<Record<string, string | null>>
}

export interface Decision {
  readonly action: ActionIR
  readonly rule: string
  readonly ruleKind: RuleIR["kind"]
  readonly modifiers: ReadonlyArray<ModifierIR>
}

/**
 * What evaluation returns. With `missing: "unknown"` (tests, explain, diff)
 * every fact not given is unknown. With `missing: "need"` (the runtime) the
 * evaluator returns the first costly fact a reachable matcher needs; the caller
 * obtains it (as a value or `null`) and evaluates again.
 */
export type Outcome =
  | { readonly type: "decision"; readonly decision: Decision }
  | { readonly type: "need"; readonly fact: FactName }

export interface EvalOptions { readonly missing: "unknown" | "need" }

// ---------------------------------------------------------------------------
// A checked file
// ---------------------------------------------------------------------------

export type SecretRef = { readonly from: "env"; readonly name: string } | { readonly from: "file"; readonly path: string } | { readonly from: "literal"; readonly value: string }

export type ListenerKind = "socks5" | "socks4" | "http" | "mixed"

export interface ListenerIR {
  readonly name: string
  readonly kind: ListenerKind
  readonly host: string
  readonly port: number
  readonly policy: string
  readonly auth?: { readonly source: string; readonly required: boolean }
  readonly tls?: { readonly cert: SecretRef; readonly key: SecretRef; readonly ca?: SecretRef }
  readonly proxyProtocol?: ReadonlyArray<Cidr>
  readonly settings: Readonly<Record<string, unknown>>
  readonly span: Span
}

export type SetType = "domains" | "cidrs" | "ports" | "users" | "groups" | "countries" | "asns"

export interface SetIR {
  readonly name: string
  readonly type: SetType
  /** Entries as written (inline) or as read from the file at check time. */
  readonly entries: ReadonlyArray<string>
  readonly file?: { readonly path: string; readonly refreshMs?: number; readonly onError: "keep-last" | "fail" | "empty" }
  readonly span: Span
}

export type UpstreamKind = "socks5" | "socks4" | "socks4a" | "http" | "https"

export interface UpstreamIR {
  readonly name: string
  readonly kind: UpstreamKind
  readonly host: string
  readonly port: number
  readonly auth?: { readonly user: SecretRef; readonly pass: SecretRef }
  readonly settings: Readonly<Record<string, unknown>>
  readonly span: Span
}

export interface ChainIR {
  readonly name: string
  readonly hops: ReadonlyArray<string>
  /** `connect-timeout` (per hop) and `timeout` (overall), in ms, when written. */
  readonly settings?: Readonly<Record<string, unknown>>
  readonly span: Span
}

export type GroupStrategy = "failover" | "fastest" | "round-robin" | "hash"

export interface ProbeIR {
  readonly kind: "tcp" | "http"
  readonly target: string
  readonly expectStatus?: number
  readonly everyMs: number
  readonly downAfter: number
  readonly upAfter: number
}

export interface GroupIR {
  readonly name: string
  readonly strategy: GroupStrategy
  readonly members: ReadonlyArray<string>
  readonly hashBy?: "user" | "dst" | "src"
  readonly probe?: ProbeIR
  readonly tries: number
  readonly span: Span
}

export type TorIsolation = "per-user" | "per-rule" | "per-src" | "per-connection" | "none"

export interface TorIR {
  readonly name: string
  readonly socksHost: string
  readonly socksPort: number
  readonly control?: { readonly host: string; readonly port: number; readonly auth?: { readonly cookie: string } | { readonly password: SecretRef } }
  readonly isolate: TorIsolation
  readonly span: Span
}

export interface AuthIR {
  readonly name: string
  readonly kind: string // static | htpasswd | webhook | plugin kinds
  readonly settings: Readonly<Record<string, unknown>>
  readonly span: Span
}

export type ExpectIR =
  | { readonly k: "allow" }
  | { readonly k: "block"; readonly message?: string }
  | { readonly k: "redirect"; readonly target?: string }
  | { readonly k: "via"; readonly target: string }
  | { readonly k: "tor"; readonly target?: string }

export interface TestIR {
  readonly name: string
  readonly policy: string
  readonly request: Request
  readonly expect: ExpectIR
  readonly expectRule?: string
  readonly span: Span
}

/** A declaration whose keyword a plugin contributes; settings checked against its `DeclSpec`. */
export interface PluginDeclIR {
  /** The owning plugin's id. */
  readonly plugin: string
  readonly keyword: string
  readonly name?: string
  /** Setting name → value (as `ListenerIR.settings`: `true` for flags, a value, or an array of values). */
  readonly settings: Readonly<Record<string, unknown>>
  readonly span: Span
}

export interface Program {
  readonly files: ReadonlyArray<string>
  readonly listeners: ReadonlyArray<ListenerIR>
  readonly auths: ReadonlyMap<string, AuthIR>
  readonly usergroups: ReadonlyMap<string, ReadonlyArray<string>>
  readonly sets: ReadonlyMap<string, SetIR>
  readonly upstreams: ReadonlyMap<string, UpstreamIR>
  readonly chains: ReadonlyMap<string, ChainIR>
  readonly groups: ReadonlyMap<string, GroupIR>
  readonly tors: ReadonlyMap<string, TorIR>
  readonly geoip?: { readonly country?: string; readonly asn?: string }
  readonly plugins: ReadonlyArray<{ readonly spec: string; readonly span: Span }>
  /** Declarations of plugin keywords (absent in programs built before plugins existed). */
  readonly pluginDecls?: ReadonlyArray<PluginDeclIR>
  readonly options: Readonly<Record<string, unknown>>
  readonly policies: ReadonlyMap<string, PolicyIR>
  /** The policy used by listeners and tests that name none (the only one, or the one named `default`). */
  readonly defaultPolicy?: string
  readonly tests: ReadonlyArray<TestIR>
}
