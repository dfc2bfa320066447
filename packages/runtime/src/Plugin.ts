/**
 * The plugin API: a plugin is a value `Plugin.make({ id, vocabulary, layer })`.
 *
 * Details: the lifecycle follows Caddy's, in Effect terms:
 *  1. decode: the checker type-checks the plugin's `vocabulary` (plain data,
 *     `@proxyd/rules` `Extension.VocabularyExtension`) offline: `proxyd check`
 *     imports the module and reads this value, never builds its layer;
 *  2. provision: the runtime builds `layer(ctx)` once at start, in the
 *     server's scope; `ctx` is the checked program and this plugin's own
 *     declarations (`Program.pluginDecls`);
 *  3. validate: the layer fails with `PluginError` (the server does not start,
 *     the message names the plugin);
 *  4. use: the layer provides one or more of the service tags below; the
 *     registry (`Registry.ts`) merges them into what the server uses;
 *  5. cleanup: scope finalizers (`Effect.addFinalizer`, `Layer.effect` with
 *     `acquireRelease`) run at shutdown.
 * Services a plugin may provide:
 *  - `AuthKinds`: loaders for `auth NAME = KIND ...` kinds (static, htpasswd,
 *    webhook are plugins too); merged into one `AuthBackend`;
 *  - `AuthGuard`: wraps every auth source (brute-force defence);
 *  - `FactSource`: values of the plugin's fields (`time.weekday`) per request;
 *  - `GeoIp`, `Metrics`: one provider each (part of issue 5, other plugins);
 * and may require `SharedState` (counters and bans shared by all plugins;
 * in-memory now, Redis with scale-out) and `PluginContext`.
 * Ids are namespaced like Caddy module ids: `proxyd.auth.htpasswd`,
 * `example.time.weekday` (dotted lower-case words, at least two).
 *
 * Gotchas: a plugin never imports another plugin; it reaches other plugins'
 * work only through these services. Everything a plugin provides must be
 * synchronous-cheap on the hot path (`FactSource.get` runs per decision).
 */
import { Context, Data, type Layer } from "effect"
import type { Extension, Ir } from "@proxyd/rules"
import type { AuthSource } from "./Auth.ts"
import type { GeoProvider } from "./Geo.ts"
import type { Log } from "./Log.ts"
import type { Observer } from "./Observe.ts"

export class PluginError extends Data.TaggedError("PluginError")<{ readonly plugin: string; readonly message: string }> {}

/** What a plugin's layer is built from. */
export interface PluginContextShape {
  readonly program: Ir.Program
  /** This plugin's declarations (keywords its vocabulary adds), in file order. */
  readonly decls: ReadonlyArray<Ir.PluginDeclIR>
  /** Directory of the rules file (relative paths in settings resolve against it). */
  readonly baseDir: string
  readonly log: Log
  /** The merged `Metrics` (calls are forwarded to the metrics plugin once it is built; a no-op without one). */
  readonly metrics: MetricsShape
}
export class PluginContext extends Context.Service<PluginContext, PluginContextShape>()("@proxyd/runtime/PluginContext") {}

/** Client facts an auth backend may use (the webhook sends them). */
export interface AuthClient { readonly src: string; readonly listener: string }

/**
 * Loads one `auth NAME = KIND ...` declaration into a source. Synchronous:
 * called on every (re)load; returns problems (user/line names only, never a
 * hash) to refuse the load.
 */
export type AuthLoader = (auth: Ir.AuthIR, baseDir: string) => AuthSource | ReadonlyArray<string>

/** Auth kinds a plugin implements, with the files each source reads (watched for reload). */
export interface AuthKindsShape {
  readonly kinds: ReadonlyMap<string, { readonly load: AuthLoader; readonly files?: (auth: Ir.AuthIR, baseDir: string) => ReadonlyArray<string> }>
}
export class AuthKinds extends Context.Service<AuthKinds, AuthKindsShape>()("@proxyd/runtime/AuthKinds") {}

/** The merged auth backend: every kind any plugin provides. */
export interface AuthBackendShape {
  readonly kinds: AuthKindsShape["kinds"]
  /** Loads a source, or the problems. Unknown kind: one problem. */
  load(auth: Ir.AuthIR, baseDir: string): AuthSource | ReadonlyArray<string>
}
export class AuthBackend extends Context.Service<AuthBackend, AuthBackendShape>()("@proxyd/runtime/AuthBackend") {}

/** Wraps every loaded auth source (the brute-force guard). At most one provider. */
export interface AuthGuardShape {
  wrap(source: AuthSource, auth: string): AuthSource
}
export class AuthGuard extends Context.Service<AuthGuard, AuthGuardShape>()("@proxyd/runtime/AuthGuard") {}

/** Values of plugin fields. `get` runs per decision for the fields a policy uses; `null` = unknown. */
export interface FactSourceShape {
  readonly fields: ReadonlyArray<string>
  get(field: string, request: Ir.Request): string | null
}
export class FactSource extends Context.Service<FactSource, FactSourceShape>()("@proxyd/runtime/FactSource") {}

/** GeoIP lookups (implemented by the GeoIP plugin). `undefined`/`null`: no entry. */
export interface GeoIpShape {
  country(ip: string): string | null
  asn(ip: string): number | null
  /** Per-load hooks (`Geo.GeoProvider`): open the program's databases, then serve from them. */
  readonly prepare?: GeoProvider["prepare"]
  readonly activate?: GeoProvider["activate"]
}
export class GeoIp extends Context.Service<GeoIp, GeoIpShape>()("@proxyd/runtime/GeoIp") {}

/** Metrics sink (implemented by the metrics plugin; a no-op when absent). Bounded label sets only. */
export interface MetricsShape {
  inc(name: string, labels?: Readonly<Record<string, string>>, by?: number): void
  observe(name: string, value: number, labels?: Readonly<Record<string, string>>): void
  set(name: string, value: number, labels?: Readonly<Record<string, string>>): void
  /** Hears the server's connections and reloads (`Observe.ts`); the server registers it. */
  readonly observer?: Observer
}
export class Metrics extends Context.Service<Metrics, MetricsShape>()("@proxyd/runtime/Metrics") {}
export const noopMetrics: MetricsShape = { inc: () => {}, observe: () => {}, set: () => {} }

/**
 * Counters and bans shared across connections (and, with a Redis layer,
 * across processes). Promise-based so a remote store fits the same shape.
 */
export interface SharedStateShape {
  /** Adds 1 to `key` (created with a TTL of `windowMs` when absent) and returns the new count. */
  incr(key: string, windowMs: number): Promise<number>
  get(key: string): Promise<string | undefined>
  set(key: string, value: string, ttlMs: number): Promise<void>
  del(key: string): Promise<void>
}
export class SharedState extends Context.Service<SharedState, SharedStateShape>()("@proxyd/runtime/SharedState") {}

/** The services a plugin layer may provide. */
export type Provided = AuthKinds | AuthGuard | FactSource | GeoIp | Metrics
/** The services a plugin layer may require. */
export type Requires = PluginContext | SharedState

/** A plugin providing the services `ROut` (some of `Provided`). */
export interface PluginOf<ROut extends Provided> {
  /** Namespaced id: dotted lower-case words, e.g. `proxyd.auth.htpasswd`. */
  readonly id: string
  /** What the plugin adds to the language (checked offline). */
  readonly vocabulary: Omit<Extension.VocabularyExtension, "plugin">
  /** Provisioning; absent for vocabulary-only plugins. Never built by `check`. */
  readonly layer?: Layer.Layer<ROut, PluginError, Requires>
  readonly doc?: string
}

/** Any plugin (the registry reads whichever `Provided` services its layer built). */
export type Plugin = PluginOf<never>

const ID = /^[a-z][a-z0-9-]*(\.[a-z][a-z0-9-]*)+$/

/** A plugin value, with its id checked. Throws on a malformed id (a programming error in the plugin). */
export const make = <ROut extends Provided = never>(plugin: PluginOf<ROut>): Plugin => {
  if (!ID.test(plugin.id)) throw new Error(`plugin id \`${plugin.id}\` must be dotted lower-case words, e.g. \`example.time.weekday\``)
  return plugin as unknown as Plugin
}

/** The vocabulary as the checker takes it. */
export const vocabularyOf = (p: Plugin): Extension.VocabularyExtension => ({ ...p.vocabulary, plugin: p.id })

/** True when `v` looks like a plugin value (for modules loaded at run time). */
export const isPlugin = (v: unknown): v is Plugin =>
  typeof v === "object" && v !== null && typeof (v as Plugin).id === "string" && typeof (v as Plugin).vocabulary === "object" && (v as Plugin).vocabulary !== null

