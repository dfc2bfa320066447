/**
 * The built-in auth plugins: `static`, `htpasswd` and `webhook` sources, and the brute-force guard.
 *
 * Details: each is a `Plugin.make` value like a third-party plugin. The three
 * source plugins provide `AuthKinds` (one kind each); the checker already
 * knows their syntax (`auth NAME = static {...} | htpasswd "f" | webhook "url"`),
 * so their vocabulary is empty. `proxyd.auth.guard` adds the declaration
 *
 *     auth-guard window 10m delay-after 3 delay 250ms max-delay 5s ban-after 10 ban 1m max-ban 1h
 *
 * (every setting optional; defaults in `BruteForce.ts`) and provides the
 * `AuthGuard` that wraps every source, keeping its counters in `SharedState`.
 * htpasswd files reload with the rules file (they are watched like it).
 *
 * Gotchas: static users must carry a hash (`$2y$`, `$argon2id$`, `$scrypt$`);
 * a plaintext password is refused at load, naming the user.
 */
import { dirname, isAbsolute, resolve } from "node:path"
import { Effect, Layer } from "effect"
import type { Ir } from "@proxyd/rules"
import * as Auth from "./Auth.ts"
import * as BruteForce from "./BruteForce.ts"
import * as Plugin from "./Plugin.ts"
import * as Webhook from "./Webhook.ts"

const abs = (p: string, baseDir: string): string => (isAbsolute(p) ? p : resolve(baseDir, p))

/** The directory a path in `auth` resolves against: the file that declares it. */
const dirOf = (a: Ir.AuthIR, baseDir: string): string => (a.span.file === "" ? baseDir : dirname(a.span.file))

const kinds = (entries: Plugin.AuthKindsShape["kinds"]): Layer.Layer<Plugin.AuthKinds> => Layer.succeed(Plugin.AuthKinds, { kinds: entries })

export const staticAuth = Plugin.make({
  id: "proxyd.auth.static",
  doc: "Users and password hashes written in the rules file.",
  vocabulary: {},
  layer: kinds(new Map([["static", { load: (a: Ir.AuthIR) => Auth.load(a) }]])),
})

const htpasswdPath = (a: Ir.AuthIR, baseDir: string): string | undefined => {
  const p = Auth.authFile(a)
  return p === undefined ? undefined : abs(p, dirOf(a, baseDir))
}

export const htpasswdAuth = Plugin.make({
  id: "proxyd.auth.htpasswd",
  doc: "An htpasswd file (bcrypt $2y$, argon2id, scrypt), reloaded when it changes.",
  vocabulary: {},
  layer: kinds(new Map([["htpasswd", {
    load: (a: Ir.AuthIR, baseDir: string) => {
      const path = htpasswdPath(a, baseDir)
      return Auth.load(path === undefined ? a : { ...a, settings: { ...a.settings, path } })
    },
    files: (a: Ir.AuthIR, baseDir: string) => {
      const p = htpasswdPath(a, baseDir)
      return p === undefined ? [] : [p]
    },
  }]])),
})

const num = (v: unknown): number | undefined => (typeof v === "number" ? v : undefined)

export const webhookAuth = Plugin.make({
  id: "proxyd.auth.webhook",
  doc: "Asks an HTTP endpoint (POST JSON {user, password, src, listener}; 2xx with {groups} allows).",
  vocabulary: {},
  layer: kinds(new Map([["webhook", {
    load: (a: Ir.AuthIR) => {
      const url = a.settings["url"]
      if (typeof url !== "string") return [`auth \`${a.name}\`: webhook needs a URL`]
      const timeoutMs = num(a.settings["timeout"])
      const cacheMs = num(a.settings["cache"])
      return Webhook.make({ url, ...(timeoutMs === undefined ? {} : { timeoutMs }), ...(cacheMs === undefined ? {} : { cacheMs }) })
    },
  }]])),
})

const GUARD_SETTINGS: Readonly<Record<string, { readonly pattern: string; readonly key: keyof BruteForce.GuardOptions }>> = {
  window: { pattern: "DUR", key: "windowMs" },
  "delay-after": { pattern: "INT", key: "delayAfter" },
  delay: { pattern: "DUR", key: "baseDelayMs" },
  "max-delay": { pattern: "DUR", key: "maxDelayMs" },
  "ban-after": { pattern: "INT", key: "banAfter" },
  ban: { pattern: "DUR", key: "banMs" },
  "max-ban": { pattern: "DUR", key: "maxBanMs" },
}

/** Guard options from `auth-guard` declarations (later ones win). */
export const guardOptions = (decls: ReadonlyArray<Ir.PluginDeclIR>): Partial<BruteForce.GuardOptions> => {
  const out: Partial<Record<keyof BruteForce.GuardOptions, number>> = {}
  for (const d of decls) {
    for (const [name, v] of Object.entries(d.settings)) {
      const s = GUARD_SETTINGS[name]
      if (s !== undefined && typeof v === "number") out[s.key] = v
    }
  }
  return out
}

export const guardPlugin = Plugin.make({
  id: "proxyd.auth.guard",
  doc: "Brute-force defence: progressive delays and temporary bans per source address.",
  vocabulary: {
    declarations: {
      "auth-guard": {
        name: "none",
        form: "auth-guard [window DUR] [delay-after INT] [delay DUR] [max-delay DUR] [ban-after INT] [ban DUR] [max-ban DUR]",
        settings: Object.fromEntries(Object.entries(GUARD_SETTINGS).map(([k, v]) => [k, { pattern: v.pattern }])),
      },
    },
  },
  layer: Layer.effect(Plugin.AuthGuard, Effect.gen(function*() {
    const ctx = yield* Plugin.PluginContext
    const state = yield* Plugin.SharedState
    const options = guardOptions(ctx.decls)
    return { wrap: (source, auth) => BruteForce.guard(source, auth, { state, log: ctx.log, metrics: ctx.metrics, options }) }
  })),
})

export const plugins: ReadonlyArray<Plugin.Plugin> = [staticAuth, htpasswdAuth, webhookAuth, guardPlugin]
