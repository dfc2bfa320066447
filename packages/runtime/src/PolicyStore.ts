/**
 * The current policy state in one `Ref`, reloaded beside the running one and swapped atomically.
 *
 * Details: `load` = check (parse, includes, sets) + refuse what the runtime
 * cannot enforce (`Support.ts`) + load auth sources + compile every policy +
 * derive listener specs. Only a fully valid result replaces the state; on any
 * error the old state keeps serving and the reason is returned (rendered like
 * `proxyd check`; warnings beyond `MAX_LOGGED_WARNINGS` are counted, not
 * rendered). The advisory analysis lints are not run here (`proxyd check`
 * runs them), and `Check.checkFiles` hands back the result the CLI already
 * computed when no file changed, so start-up checks the file once.
 * Connections read the state when they decide, so a running
 * connection keeps the decision it got.
 * `watchFiles` watches every file the state was built from (rules file,
 * includes, set files, htpasswd files) through their directories, so editors'
 * rename-replace saves are seen without re-arming; changes are debounced
 * (200 ms) into one reload.
 */
import { watch, type FSWatcher } from "node:fs"
import { basename, dirname, isAbsolute, resolve as resolvePath } from "node:path"
import { Effect, Ref } from "effect"
import { Check, type Diagnostic, Render } from "@proxyd/rules"
import type { Ir } from "@proxyd/rules"
import * as Auth from "./Auth.ts"
import { globalSpec, listenerSpecs, type GlobalSpec, type ListenerSpec, type ListenOverride } from "./Config.ts"
import { attachFacts, compile, type Compiled } from "./Engine.ts"
import { unsupported } from "./Support.ts"
import type { Host } from "./Registry.ts"

export interface PolicyState {
  readonly version: number
  readonly program: Ir.Program
  readonly compiled: ReadonlyMap<string, Compiled>
  readonly auths: ReadonlyMap<string, Auth.AuthSource>
  readonly listeners: ReadonlyArray<ListenerSpec>
  readonly global: GlobalSpec
  /** Every file the state was built from (watched for reload). */
  readonly files: ReadonlyArray<string>
}

export type LoadResult =
  | { readonly ok: true; readonly state: PolicyState; readonly warnings: string | undefined }
  | { readonly ok: false; readonly message: string }

export interface LoadOptions {
  readonly rulesFile: string
  readonly overrides?: ReadonlyArray<ListenOverride> | undefined
  /** Further refusals (e.g. a listener kind without a protocol handler). */
  readonly extraCheck?: (program: Ir.Program, listeners: ReadonlyArray<ListenerSpec>) => Array<string>
  /** Action kinds an outbound provider handles (`via`, `tor`): not refused by `Support.unsupported`. */
  readonly provided?: ReadonlySet<string>
  /** Plugins (`Registry.start`): their vocabularies check the file, their auth kinds load sources, their fact sources feed plugin fields. */
  readonly plugins?: Host | undefined
}

/** What the runtime can enforce because a plugin provides it (for `Support.unsupported`). */
export const pluginProvided = (host: Host | undefined): Array<string> =>
  host === undefined ? [] : [...[...host.auth.kinds.keys()].map((k) => `auth:${k}`), "plugins"]

const htpasswdPath = (a: Ir.AuthIR): string | undefined => {
  const p = Auth.authFile(a)
  return p === undefined ? undefined : isAbsolute(p) ? p : resolvePath(dirname(a.span.file), p)
}

const isProblems = (x: Auth.AuthSource | ReadonlyArray<string>): x is ReadonlyArray<string> => Array.isArray(x)

/** Warnings logged in full at start and reload; the rest are counted (a generated policy can have thousands). */
export const MAX_LOGGED_WARNINGS = 20

const renderWarnings = (ds: ReadonlyArray<Diagnostic.Diagnostic>, sources: ReadonlyMap<string, string>, file: string): string => {
  if (ds.length <= MAX_LOGGED_WARNINGS) return Render.renderHuman(ds, sources)
  const shown = ds.slice(0, MAX_LOGGED_WARNINGS).map((d) => Render.renderOne(d, sources)).join("\n\n")
  return `${shown}\n\n... and ${ds.length - MAX_LOGGED_WARNINGS} more warnings (${ds.length} in all): run \`proxyd check ${file}\` to see them\n`
}

export const load = (opts: LoadOptions, version: number): LoadResult => {
  const host = opts.plugins
  const checked = Check.checkFiles([opts.rulesFile], Check.nodeReader, host?.checkOptions ?? {})
  const program = checked.program
  if (program === undefined) {
    const text = Render.renderHuman(checked.diagnostics, checked.sources)
    return { ok: false, message: text.length > 0 ? text : `${opts.rulesFile}: cannot be loaded` }
  }
  const warnings = checked.diagnostics.length > 0 ? renderWarnings(checked.diagnostics, checked.sources, opts.rulesFile) : undefined
  const listeners = listenerSpecs(program, opts.overrides)
  const provided = host === undefined ? opts.provided : new Set([...(opts.provided ?? []), ...pluginProvided(host)])
  const problems = [...unsupported(program, provided), ...(opts.extraCheck?.(program, listeners) ?? [])]
  if (listeners.length === 0) problems.push("no listener: declare one (`listen mixed 127.0.0.1:1080`) or pass --listen")
  const auths = new Map<string, Auth.AuthSource>()
  const files = new Set(checked.sources.keys())
  for (const a of program.auths.values()) {
    if (host !== undefined) {
      const baseDir = dirname(resolvePath(opts.rulesFile))
      for (const f of host.auth.kinds.get(a.kind)?.files?.(a, baseDir) ?? []) files.add(f)
      const src = host.auth.load(a, baseDir)
      if (isProblems(src)) problems.push(...src)
      else auths.set(a.name, host.guard === undefined ? src : host.guard.wrap(src, a.name))
      continue
    }
    const path = htpasswdPath(a)
    if (path !== undefined) files.add(path)
    const src = Auth.load(path === undefined ? a : { ...a, settings: { ...a.settings, path } })
    if (Array.isArray(src)) problems.push(...src)
    else auths.set(a.name, src)
  }
  const compiled = new Map<string, Compiled>()
  for (const l of listeners) {
    if (!program.policies.has(l.policy)) problems.push(`listener \`${l.name}\`: no policy \`${l.policy}\``)
    if (l.auth !== undefined && !program.auths.has(l.auth.source)) problems.push(`listener \`${l.name}\`: no auth source \`${l.auth.source}\``)
  }
  if (problems.length > 0) return { ok: false, message: problems.map((p) => `error: ${p}`).join("\n") }
  try {
    for (const [name, p] of program.policies) {
      const c = compile(p)
      if (host !== undefined) attachFacts(c, p, host.facts)
      compiled.set(name, c)
    }
  } catch (e) {
    return { ok: false, message: `error: internal compiler error: ${e instanceof Error ? e.message : String(e)}` }
  }
  return {
    ok: true,
    warnings,
    state: { version, program, compiled, auths, listeners, global: globalSpec(program), files: [...files].map((f) => resolvePath(f)) },
  }
}

export interface PolicyStore {
  readonly ref: Ref.Ref<PolicyState>
  /** The state now (sync; connections call it when they decide). */
  current(): PolicyState
  /** Loads beside the running state; swaps only when valid. */
  reload(): Effect.Effect<LoadResult>
}

export const make = (opts: LoadOptions, initial: PolicyState): PolicyStore => {
  const ref = Ref.makeUnsafe(initial)
  return {
    ref,
    current: () => Ref.getUnsafe(ref),
    reload: () => Effect.gen(function*() {
      const old = yield* Ref.get(ref)
      const r = load(opts, old.version + 1)
      if (r.ok) yield* Ref.set(ref, r.state)
      return r
    }),
  }
}

export interface Watcher {
  /** Watches exactly these files from now on. */
  update(files: ReadonlyArray<string>): void
  close(): void
}

/** Calls `onChange` (debounced) when any of the files changes, is replaced or removed. */
export const watchFiles = (files: ReadonlyArray<string>, onChange: () => void, debounceMs = 200): Watcher => {
  const watchers = new Map<string, FSWatcher>()
  let names = new Map<string, Set<string>>()
  let timer: ReturnType<typeof setTimeout> | undefined
  let closed = false
  const fire = () => {
    if (timer !== undefined) clearTimeout(timer)
    timer = setTimeout(() => { timer = undefined; if (!closed) onChange() }, debounceMs)
  }
  const update = (fs: ReadonlyArray<string>) => {
    const next = new Map<string, Set<string>>()
    for (const f of fs) {
      const d = dirname(f)
      const set = next.get(d) ?? new Set<string>()
      set.add(basename(f))
      next.set(d, set)
    }
    names = next
    for (const [d, w] of watchers) if (!next.has(d)) { w.close(); watchers.delete(d) }
    for (const d of next.keys()) {
      if (watchers.has(d)) continue
      try {
        const w = watch(d, { persistent: false }, (_event, name) => {
          if (name === null || names.get(d)?.has(name.toString()) === true) fire()
        })
        w.on("error", () => {})
        watchers.set(d, w)
      } catch {
        // A directory that cannot be watched: SIGHUP still reloads.
      }
    }
  }
  update(files)
  return {
    update,
    close: () => {
      closed = true
      if (timer !== undefined) clearTimeout(timer)
      for (const w of watchers.values()) w.close()
      watchers.clear()
    },
  }
}
