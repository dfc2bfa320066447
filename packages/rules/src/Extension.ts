/**
 * Vocabulary that plugins add to the language, checked offline by `proxyd check`.
 *
 * Details: a plugin (runtime `Plugin.make({ id, vocabulary, layer })`) carries a
 * `VocabularyExtension`: plain data, no code, so the checker can type-check a
 * rules file that uses a plugin without starting it. It may add
 *  - declarations: a top-level keyword with a `DeclSpec` in the same pattern
 *    language as `Vocabulary.ts` (`timeout: { pattern: "DUR" }`); their
 *    settings are checked like built-in ones (unknown setting → did-you-mean,
 *    value types, required settings) and land in `Program.pluginDecls`;
 *  - fields: `name` (dotted, e.g. `time.weekday`) of type `string` (any value,
 *    operators `==`, `!=`, `in`, `not in`) or `enum` (values from a closed list,
 *    typos reported with did-you-mean). A condition on a plugin field compiles
 *    to a `plugin` matcher (`Ir.ts`) whose value is read from
 *    `Request.plugin[name]`; a missing value is unknown (three-valued logic).
 *    `costly: true` marks a field whose value the runtime obtains through the
 *    plugin's `FactSource` only when a policy mentions it;
 *  - auth kinds: `auth NAME = KIND ...` kinds handled by the plugin's
 *    `AuthBackend` (settings in `authSettings`);
 *  - `validate`: the one piece of code, a pure function `check` runs offline
 *    on the plugin's checked declarations (after their settings are typed)
 *    for rules the settings schema cannot express (e.g. the admin API off
 *    loopback needs a `token`). It returns diagnostics with the plugin's own
 *    stable codes; it must not do I/O (no env, files or sockets). A validator
 *    that throws is reported as T000 naming the plugin.
 * The checker receives extensions through `checkFiles(entries, reader, { plugins })`.
 * Extensions are merged with `mergeExtensions`; a keyword or field that a
 * built-in or another plugin already owns is refused (T081), naming both owners.
 *
 * Gotchas: the rules package never imports a plugin module. Finding which
 * plugins a file names (`pluginSpecs`) is syntax-only; importing them is the
 * runtime's job (`Registry.ts`), after which the file is checked again with
 * their vocabularies.
 */
import type { Span } from "./Ast.ts"
import type { PluginDeclIR } from "./Ir.ts"
import { load, type SourceReader } from "./Loader.ts"
import type { DeclSpec, SettingSpec } from "./Vocabulary.ts"

export interface FieldSpec {
  /** Dotted lower-case name, e.g. `time.weekday`; must not be a built-in field. */
  readonly name: string
  readonly type: "string" | "enum"
  /** For `enum`: the allowed values. */
  readonly values?: ReadonlyArray<string>
  /** The runtime fetches it through the plugin's `FactSource` only when a policy uses it. */
  readonly costly?: boolean
  /** Why the value can be missing (shown by lint L005 under `not`); omit when it is always known at runtime. */
  readonly unknownWhen?: string
  readonly doc?: string
}

/** A diagnostic a plugin's `validate` reports (a stable code from docs/diagnostics.md). */
export interface PluginDiagnostic {
  readonly code: string
  readonly severity: "error" | "warning"
  readonly message: string
  readonly span: Span
  readonly hint?: string
}

/** Check-time validation of a plugin's declarations: pure, offline. */
export type Validate = (decls: ReadonlyArray<PluginDeclIR>) => ReadonlyArray<PluginDiagnostic>

export interface VocabularyExtension {
  /** The owning plugin's id (for messages). */
  readonly plugin: string
  readonly declarations?: Readonly<Record<string, DeclSpec>>
  readonly fields?: ReadonlyArray<FieldSpec>
  /** Auth kinds (`auth NAME = KIND ...`) with the settings each accepts. */
  readonly authKinds?: Readonly<Record<string, Readonly<Record<string, SettingSpec>>>>
  /** Runs on this plugin's checked declarations (all of them, in file order, possibly none). */
  readonly validate?: Validate
}

export interface CheckOptions {
  readonly plugins?: ReadonlyArray<VocabularyExtension>
  /** Plugins named by `plugin "SPEC"` that could not be loaded: reported as T080 at that declaration. */
  readonly pluginErrors?: ReadonlyArray<{ readonly spec: string; readonly message: string }>
}

/** The merged view the checker consults. */
export interface Extensions {
  readonly declarations: ReadonlyMap<string, { readonly plugin: string; readonly spec: DeclSpec }>
  readonly fields: ReadonlyMap<string, { readonly plugin: string; readonly spec: FieldSpec }>
  readonly authKinds: ReadonlyMap<string, { readonly plugin: string; readonly settings: Readonly<Record<string, SettingSpec>> }>
  /** Conflicts found while merging (reported as T081 by the checker). */
  readonly conflicts: ReadonlyArray<string>
  /** The plugins' `validate` functions, in plugin order. */
  readonly validators: ReadonlyArray<{ readonly plugin: string; readonly validate: Validate }>
}

export const EMPTY: Extensions = { declarations: new Map(), fields: new Map(), authKinds: new Map(), conflicts: [], validators: [] }

const FIELD_NAME = /^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)+$/

/**
 * Merges extensions against the built-in keywords and fields (passed in so
 * this module stays free of checker imports).
 */
export const mergeExtensions = (
  exts: ReadonlyArray<VocabularyExtension>,
  builtin: { readonly keywords: ReadonlyArray<string>; readonly fields: ReadonlyArray<string>; readonly authKinds: ReadonlyArray<string> },
): Extensions => {
  if (exts.length === 0) return EMPTY
  const declarations = new Map<string, { plugin: string; spec: DeclSpec }>()
  const fields = new Map<string, { plugin: string; spec: FieldSpec }>()
  const authKinds = new Map<string, { plugin: string; settings: Readonly<Record<string, SettingSpec>> }>()
  const conflicts: string[] = []
  const validators: Array<{ plugin: string; validate: Validate }> = []
  const owner = (table: ReadonlyMap<string, { plugin: string }>, builtins: ReadonlyArray<string>, key: string): string | undefined =>
    builtins.includes(key) ? "the language" : table.get(key)?.plugin !== undefined ? `plugin \`${table.get(key)!.plugin}\`` : undefined
  for (const e of exts) {
    if (e.validate !== undefined) validators.push({ plugin: e.plugin, validate: e.validate })
    for (const [kw, spec] of Object.entries(e.declarations ?? {})) {
      const o = owner(declarations, [...builtin.keywords, "policy", "test", "rule", "guard", "default"], kw)
      if (o !== undefined) conflicts.push(`plugin \`${e.plugin}\` declares the keyword \`${kw}\`, which ${o} already defines`)
      else declarations.set(kw, { plugin: e.plugin, spec })
    }
    for (const f of e.fields ?? []) {
      const o = owner(fields, builtin.fields, f.name)
      if (o !== undefined) conflicts.push(`plugin \`${e.plugin}\` declares the field \`${f.name}\`, which ${o} already defines`)
      else if (!FIELD_NAME.test(f.name)) conflicts.push(`plugin \`${e.plugin}\`: field name \`${f.name}\` must be dotted lower-case words, e.g. \`time.weekday\``)
      else if (f.type === "enum" && (f.values ?? []).length === 0) conflicts.push(`plugin \`${e.plugin}\`: enum field \`${f.name}\` lists no values`)
      else fields.set(f.name, { plugin: e.plugin, spec: f })
    }
    for (const [k, settings] of Object.entries(e.authKinds ?? {})) {
      const o = owner(authKinds, builtin.authKinds, k)
      if (o !== undefined) conflicts.push(`plugin \`${e.plugin}\` declares the auth kind \`${k}\`, which ${o} already defines`)
      else authKinds.set(k, { plugin: e.plugin, settings })
    }
  }
  return { declarations, fields, authKinds, conflicts, validators }
}

export interface PluginRef {
  /** As written: `./my-plugin.ts` or a package name. */
  readonly spec: string
  /** The rules file that names it (relative paths resolve against its directory). */
  readonly from: string
  readonly span: Span
}

/**
 * The `plugin "..."` declarations of `entry` and its includes, syntax only
 * (no checking): what the runtime must import before checking the file with
 * their vocabularies.
 */
export const pluginSpecs = (entry: string, reader: SourceReader): ReadonlyArray<PluginRef> => {
  const loaded = load(entry, reader)
  const out: PluginRef[] = []
  for (const item of loaded.items) {
    if (item.kind !== "decl" || item.keyword.text !== "plugin") continue
    const a = item.args[0]
    if (a?.kind === "string" && item.args.length === 1) out.push({ spec: a.value, from: item.span.file, span: a.span })
  }
  return out
}
