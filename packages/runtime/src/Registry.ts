/**
 * The plugin registry: the built-in plugins, third-party plugins named by the rules file, and the host built from them.
 *
 * Details: `builtins` is the one list of built-in plugins (explicit, no
 * registration by import side effect). `loadThirdParty` finds the rules
 * file's `plugin "SPEC"` declarations (syntax only), imports each module —
 * `./x.ts` relative to the file that names it, or a package name resolved
 * from that file's directory — and takes its default export (or its export
 * named `plugin`) when it is a `Plugin.make` value; failures become T080
 * diagnostics through `checkOptions`. `proxyd check` stops there: it never
 * builds a layer. `build` provisions every plugin's layer in the caller's
 * scope (finalizers = cleanup) and merges what they provide into a `Host`
 * that the server uses: one `AuthBackend` over every plugin's auth kinds, the
 * `AuthGuard`, the fact sources, the GeoIp and Metrics services.
 * Duplicate plugin ids, two plugins providing one auth kind, two GeoIp,
 * Metrics or AuthGuard providers are refused with a `PluginError` naming them.
 *
 * Gotchas: plugin layers are built once at start from the program then
 * loaded; a reload re-checks the file with the same vocabularies and reloads
 * auth sources, but adding or removing a `plugin` line needs a restart.
 */
import { createRequire } from "node:module"
import { dirname, isAbsolute, resolve } from "node:path"
import { pathToFileURL } from "node:url"
import { Context, Effect, Layer, type Scope } from "effect"
import { Check, Extension, type Ir } from "@proxyd/rules"
import * as AuthPlugins from "./AuthPlugins.ts"
import type { Log } from "./Log.ts"
import * as Plugin from "./Plugin.ts"
import * as SharedState from "./SharedState.ts"

/** The built-in plugins, in load order. */
export const builtins: ReadonlyArray<Plugin.Plugin> = [...AuthPlugins.plugins]

/** Problems with a plugin list: duplicate ids. */
export const validate = (plugins: ReadonlyArray<Plugin.Plugin>): Array<string> => {
  const seen = new Map<string, number>()
  const out: Array<string> = []
  plugins.forEach((p, i) => {
    const first = seen.get(p.id)
    if (first !== undefined) out.push(`duplicate plugin id \`${p.id}\` (plugins #${first + 1} and #${i + 1}); each plugin id must be unique`)
    else seen.set(p.id, i)
  })
  return out
}

export interface ThirdParty {
  readonly plugins: ReadonlyArray<Plugin.Plugin>
  readonly errors: ReadonlyArray<{ readonly spec: string; readonly message: string }>
}

/** Where `spec` (named in `from`) points: a file URL for paths, a resolved package entry otherwise. */
const locate = (spec: string, from: string): string => {
  if (spec.startsWith("./") || spec.startsWith("../") || isAbsolute(spec)) return pathToFileURL(isAbsolute(spec) ? spec : resolve(dirname(from), spec)).href
  try {
    return pathToFileURL(createRequire(resolve(from)).resolve(spec)).href
  } catch {
    // ESM-only packages (no `require` condition): the package's own entry, found from the rules file's directory.
    return import.meta.resolve(spec, pathToFileURL(resolve(from)).href)
  }
}

/**
 * Imports the plugins the rules file names (never builds them). A plugin
 * whose id is already taken (by a built-in in `taken` or an earlier plugin)
 * is left out with an error, so `check` reports it at its `plugin` line.
 */
export const loadThirdParty = async (rulesFile: string, taken: ReadonlyArray<Plugin.Plugin> = builtins): Promise<ThirdParty> => {
  const plugins: Array<Plugin.Plugin> = []
  const errors: Array<{ spec: string; message: string }> = []
  const ids = new Set(taken.map((p) => p.id))
  for (const ref of Extension.pluginSpecs(rulesFile, Check.nodeReader)) {
    try {
      const mod = (await import(locate(ref.spec, ref.from))) as Record<string, unknown>
      const p = [mod["default"], mod["plugin"]].find(Plugin.isPlugin)
      if (p === undefined) errors.push({ spec: ref.spec, message: "the module has no default export made with `Plugin.make`" })
      else if (ids.has(p.id)) errors.push({ spec: ref.spec, message: `duplicate plugin id \`${p.id}\`: another plugin already has it` })
      else {
        ids.add(p.id)
        plugins.push(p)
      }
    } catch (e) {
      const code = (e as { code?: string }).code
      errors.push({ spec: ref.spec, message: code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND" ? "module not found" : e instanceof Error ? e.message.split("\n")[0]! : String(e) })
    }
  }
  return { plugins, errors }
}

/** Check options for a rules file: the built-ins plus the plugins it names (imported, never built). */
export const forCheck = async (rulesFile: string, base: ReadonlyArray<Plugin.Plugin> = builtins): Promise<Extension.CheckOptions> => {
  const third = await loadThirdParty(rulesFile, base)
  return checkOptions([...base, ...third.plugins], third.errors)
}

/** What `Check.checkFiles` needs to know about these plugins. */
export const checkOptions = (plugins: ReadonlyArray<Plugin.Plugin>, errors: ThirdParty["errors"] = []): Extension.CheckOptions => ({
  plugins: plugins.map(Plugin.vocabularyOf),
  pluginErrors: errors,
})

export interface Host {
  readonly plugins: ReadonlyArray<Plugin.Plugin>
  readonly checkOptions: Extension.CheckOptions
  readonly auth: Plugin.AuthBackendShape
  readonly guard: Plugin.AuthGuardShape | undefined
  readonly facts: ReadonlyArray<Plugin.FactSourceShape>
  readonly geoIp: Plugin.GeoIpShape | undefined
  readonly metrics: Plugin.MetricsShape
  readonly state: Plugin.SharedStateShape
}

export interface BuildOptions {
  readonly program: Ir.Program
  readonly rulesFile: string
  readonly log: Log
  /** Default: the in-memory layer. */
  readonly sharedState?: Layer.Layer<Plugin.SharedState>
  readonly errors?: ThirdParty["errors"]
}

const fail = (plugin: string, message: string) => Effect.fail(new Plugin.PluginError({ plugin, message }))

/** Provisions every plugin in the current scope and merges their services. */
export const build = (plugins: ReadonlyArray<Plugin.Plugin>, opts: BuildOptions): Effect.Effect<Host, Plugin.PluginError, Scope.Scope> =>
  Effect.gen(function*() {
    const dup = validate(plugins)
    if (dup.length > 0) return yield* fail("registry", dup.join("; "))
    const stateCtx = yield* Layer.build(opts.sharedState ?? SharedState.layerMemory)
    const state = Context.get(stateCtx, Plugin.SharedState)
    const kinds = new Map<string, Plugin.AuthKindsShape["kinds"] extends ReadonlyMap<string, infer V> ? V : never>()
    const owner = new Map<string, string>()
    const facts: Array<Plugin.FactSourceShape> = []
    let guard: Plugin.AuthGuardShape | undefined
    let geoIp: Plugin.GeoIpShape | undefined
    let metrics: Plugin.MetricsShape | undefined
    // Plugins report metrics through a forwarder: the provider may be built after them.
    let sink: Plugin.MetricsShape = Plugin.noopMetrics
    const forward: Plugin.MetricsShape = {
      inc: (n, l, by) => sink.inc(n, l, by),
      observe: (n, v, l) => sink.observe(n, v, l),
      set: (n, v, l) => sink.set(n, v, l),
    }
    const single = <A>(what: string, id: string, prev: A | undefined, next: A | undefined): Effect.Effect<A | undefined, Plugin.PluginError> => {
      if (next === undefined) return Effect.succeed(prev)
      if (prev !== undefined) return fail(id, `two plugins provide ${what} (\`${owner.get(what)}\` and \`${id}\`); keep one`)
      owner.set(what, id)
      return Effect.succeed(next)
    }
    for (const p of plugins) {
      if (p.layer === undefined) continue
      const pctx: Plugin.PluginContextShape = {
        program: opts.program,
        decls: (opts.program.pluginDecls ?? []).filter((d) => d.plugin === p.id),
        baseDir: dirname(resolve(opts.rulesFile)),
        log: opts.log,
        metrics: forward,
      }
      const env = Layer.merge(Layer.succeed(Plugin.PluginContext, pctx), Layer.succeedContext(stateCtx))
      const built = yield* Layer.build(Layer.provide(p.layer, env)).pipe(
        Effect.mapError((e) => (e.plugin === p.id ? e : new Plugin.PluginError({ plugin: p.id, message: e.message }))),
      )
      const ak = Context.getOrUndefined(built, Plugin.AuthKinds as never) as Plugin.AuthKindsShape | undefined
      for (const [k, v] of ak?.kinds ?? []) {
        if (kinds.has(k)) return yield* fail(p.id, `auth kind \`${k}\` is provided by \`${owner.get(`auth:${k}`)}\` and \`${p.id}\``)
        kinds.set(k, v)
        owner.set(`auth:${k}`, p.id)
      }
      const fs = Context.getOrUndefined(built, Plugin.FactSource as never) as Plugin.FactSourceShape | undefined
      if (fs !== undefined) facts.push(fs)
      guard = yield* single("the auth guard", p.id, guard, Context.getOrUndefined(built, Plugin.AuthGuard as never) as Plugin.AuthGuardShape | undefined)
      geoIp = yield* single("GeoIp", p.id, geoIp, Context.getOrUndefined(built, Plugin.GeoIp as never) as Plugin.GeoIpShape | undefined)
      metrics = yield* single("Metrics", p.id, metrics, Context.getOrUndefined(built, Plugin.Metrics as never) as Plugin.MetricsShape | undefined)
    }
    sink = metrics ?? Plugin.noopMetrics
    const auth: Plugin.AuthBackendShape = {
      kinds,
      load: (a, baseDir) => {
        const k = kinds.get(a.kind)
        return k === undefined ? [`auth \`${a.name}\`: no plugin provides the auth kind \`${a.kind}\``] : k.load(a, baseDir)
      },
    }
    return { plugins, checkOptions: checkOptions(plugins, opts.errors), auth, guard, facts, geoIp, metrics: metrics ?? Plugin.noopMetrics, state }
  })

/**
 * Everything `proxyd --rules` needs: the built-ins plus the file's plugins,
 * checked, then built. Fails with the rendered diagnostics when the file does not check.
 */
export const start = (rulesFile: string, opts: { readonly log: Log; readonly builtins?: ReadonlyArray<Plugin.Plugin>; readonly sharedState?: Layer.Layer<Plugin.SharedState> }): Effect.Effect<Host, Plugin.PluginError, Scope.Scope> =>
  Effect.gen(function*() {
    const third = yield* Effect.promise(() => loadThirdParty(rulesFile, opts.builtins ?? builtins))
    const plugins = [...(opts.builtins ?? builtins), ...third.plugins]
    const dup = validate(plugins)
    if (dup.length > 0) return yield* fail("registry", dup.join("; "))
    const checked = Check.checkFiles([rulesFile], Check.nodeReader, checkOptions(plugins, third.errors))
    // An unchecked file is reported by the server's own load, with code frames; build with an empty program meanwhile.
    const program: Ir.Program = checked.program ?? EMPTY_PROGRAM
    return yield* build(plugins, { program, rulesFile, log: opts.log, errors: third.errors, ...(opts.sharedState === undefined ? {} : { sharedState: opts.sharedState }) })
  })

const EMPTY_PROGRAM: Ir.Program = {
  files: [], listeners: [], auths: new Map(), usergroups: new Map(), sets: new Map(), upstreams: new Map(), chains: new Map(),
  groups: new Map(), tors: new Map(), plugins: [], pluginDecls: [], options: {}, policies: new Map(), tests: [],
}
