/**
 * Shared state of one checker run: diagnostics, symbol tables, use tracking.
 *
 * Details: one namespace per kind; upstreams, chains and groups share the
 * `outbound` namespace. `use(ns, name)` marks a declaration as used for the
 * unused-declaration lint (L001).
 */
import type { Span, Token } from "./Ast.ts"
import { type Diagnostic, error, type Note, warning } from "./Diagnostic.ts"
import type { AuthIR, ChainIR, GroupIR, ListenerIR, PluginDeclIR, SetIR, TorIR, UpstreamIR } from "./Ir.ts"
import { EMPTY, type Extensions } from "./Extension.ts"
import type { SourceReader } from "./Loader.ts"
import { suggest } from "./Suggest.ts"

export type Namespace = "listener" | "auth" | "usergroup" | "set" | "outbound" | "tor" | "policy" | "test"

export interface Sym { readonly ns: Namespace; readonly kind: string; readonly name: string; readonly span: Span }

/** How a declaration kind reads in messages. */
export const kindLabel = (kind: string): string => ({ usergroup: "user group", tor: "tor endpoint" } as Record<string, string>)[kind] ?? kind

/** `an upstream`, `a set`, `a user group`. */
export const withArticle = (label: string): string => `${/^[aeio]|^up/.test(label) ? "an" : "a"} ${label}`

export interface Extra { readonly hint?: string | undefined; readonly notes?: ReadonlyArray<Note> }

export class Ctx {
  readonly diagnostics: Diagnostic[] = []
  readonly symbols = new Map<Namespace, Map<string, Sym>>()
  readonly used = new Set<string>()
  readonly listeners: ListenerIR[] = []
  readonly auths = new Map<string, AuthIR>()
  readonly usergroups = new Map<string, ReadonlyArray<string>>()
  readonly sets = new Map<string, SetIR>()
  readonly upstreams = new Map<string, UpstreamIR>()
  readonly chains = new Map<string, ChainIR>()
  readonly groups = new Map<string, GroupIR>()
  readonly tors = new Map<string, TorIR>()
  readonly pluginDecls: PluginDeclIR[] = []
  /** Names of sets whose entries failed to check: references to them stay silent. */
  readonly brokenSets = new Set<string>()
  geoip: { country?: string; asn?: string } | undefined
  readonly reader: SourceReader
  readonly sources: Map<string, string>
  /** Plugin vocabularies (keywords, fields, auth kinds). */
  readonly ext: Extensions
  /** Plugin load failures by spec (T080 at the `plugin` declaration). */
  readonly pluginErrors: ReadonlyMap<string, string>

  constructor(reader: SourceReader, sources: Map<string, string>, ext: Extensions = EMPTY, pluginErrors: ReadonlyMap<string, string> = new Map()) {
    this.reader = reader
    this.sources = sources
    this.ext = ext
    this.pluginErrors = pluginErrors
  }

  err(code: string, message: string, span: Span, extra: Extra = {}): void {
    this.diagnostics.push(error(code, message, span, clean(extra)))
  }

  warn(code: string, message: string, span: Span, extra: Extra = {}): void {
    this.diagnostics.push(warning(code, message, span, clean(extra)))
  }

  /** Declares a name; a duplicate is T011 with a note at the first definition. Returns false on duplicate. */
  declare(ns: Namespace, kind: string, name: string, span: Span, hint = "names must be unique; rename one of them"): boolean {
    let table = this.symbols.get(ns)
    if (table === undefined) {
      table = new Map()
      this.symbols.set(ns, table)
    }
    const first = table.get(name)
    if (first !== undefined) {
      const message = first.kind === kind ? `duplicate ${kindLabel(kind)} \`${name}\`` : `duplicate name \`${name}\`: ${withArticle(kindLabel(first.kind))} already has this name`
      this.err("T011", message, span, { notes: [{ message: "first defined here", span: first.span }], hint })
      return false
    }
    table.set(name, { ns, kind, name, span })
    return true
  }

  lookup(ns: Namespace, name: string): Sym | undefined {
    return this.symbols.get(ns)?.get(name)
  }

  names(ns: Namespace): string[] {
    return [...(this.symbols.get(ns)?.keys() ?? [])]
  }

  /** A path written in `from`, resolved against that file's directory (absolute paths stay). */
  resolvePath(from: string, rel: string): string {
    try {
      return this.reader.resolve(from, rel)
    } catch {
      return rel
    }
  }

  /** T010 with a did-you-mean; the suggested name counts as used (it is probably the one meant). */
  undefinedName(ns: Namespace, name: string, span: Span, what: string): void {
    const close = suggest(name, this.names(ns))
    if (close !== undefined) this.use(ns, close)
    this.err("T010", `undefined ${what} \`${name}\``, span, { hint: close === undefined ? undefined : `did you mean \`${close}\`?` })
  }

  use(ns: Namespace, name: string): void {
    this.used.add(`${ns}:${name}`)
  }

  isUsed(ns: Namespace, name: string): boolean {
    return this.used.has(`${ns}:${name}`)
  }
}

const clean = (e: Extra): { hint?: string; notes?: ReadonlyArray<Note> } => {
  const out: { hint?: string; notes?: ReadonlyArray<Note> } = {}
  if (e.hint !== undefined) out.hint = e.hint
  if (e.notes !== undefined && e.notes.length > 0) out.notes = e.notes
  return out
}

/** Source text of a token, for messages. */
export const tokenText = (t: Token): string => {
  switch (t.kind) {
    case "bare": return t.text
    case "string": return JSON.stringify(t.value)
    case "list": return t.open === "bracket" ? `[${t.items.map(tokenText).join(", ")}]` : `{${t.items.map(tokenText).join(", ")}}`
    case "call": return `${t.name}(${t.args.map(tokenText).join(", ")})`
    case "arrow": return "->"
  }
}

export const describeToken = (t: Token): string => {
  switch (t.kind) {
    case "bare": return `\`${t.text}\``
    case "string": return `string ${JSON.stringify(t.value)}`
    case "list": return "a list"
    case "call": return `\`${t.name}(...)\``
    case "arrow": return "`->`"
  }
}

/** A span covering `a` to `b`. */
export const joinSpans = (a: Span, b: Span): Span => ({ file: a.file, start: a.start, end: b.end })
