/**
 * The `admin` declaration: vocabulary for the checker and the listener settings it yields.
 *
 * Details: `admin { listen 127.0.0.1:9090  token env(ADMIN_TOKEN) }` (one
 * line works too: `admin listen 127.0.0.1:9090 token env(ADMIN_TOKEN)`).
 * `listen` defaults to 127.0.0.1:9090. A bearer token is required whenever
 * the address is not loopback (127.0.0.0/8, ::1, localhost): `adminConfig`
 * refuses such a declaration, which refuses the start or the reload. The
 * token is read from the environment or a file (`SECRET`), never written
 * literally (T040, as for every secret).
 *
 * Gotchas: the keyword comes from this plugin's vocabulary (`adminVocabulary`),
 * so `proxyd check` knows it only when the plugin is registered. The loopback
 * rule is checked twice: offline by `check` (the vocabulary's `validate`,
 * error T082) and at load by `adminConfig` (which also reads the token).
 */
import { readFileSync } from "node:fs"
import { dirname, isAbsolute, resolve } from "node:path"
import type { Extension, Ir } from "@proxyd/rules"

export const adminVocabulary: Omit<Extension.VocabularyExtension, "plugin"> = {
  declarations: {
    admin: {
      name: "none",
      form: "admin { listen HOST:PORT [token SECRET] }",
      settings: { listen: { pattern: "HOSTPORT" }, token: { pattern: "SECRET" } },
    },
  },
  validate: (decls) => decls.flatMap((d) => {
    const host = (d.settings["listen"] as { host: string } | undefined)?.host ?? "127.0.0.1"
    if (d.settings["token"] !== undefined || isLoopback(host)) return []
    return [{
      code: "T082",
      severity: "error" as const,
      message: `the admin API listens on ${host}, which is not loopback, and has no \`token\``,
      span: d.span,
      hint: "add `token env(NAME)` (a bearer token is required off loopback), or listen on 127.0.0.1",
    }]
  }),
}

export interface AdminConfig {
  readonly host: string
  readonly port: number
  /** Bearer token; undefined: none (loopback only). */
  readonly token: string | undefined
}

export const DEFAULT_ADMIN = { host: "127.0.0.1", port: 9090 } as const

export const isLoopback = (host: string): boolean =>
  host === "localhost" || host === "::1" || host === "[::1]" || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host)

const readSecret = (ref: unknown, baseFile: string): { ok: true; value: string } | { ok: false; problem: string } => {
  const r = ref as Ir.SecretRef
  if (r.from === "env") {
    const v = process.env[r.name]
    return v === undefined || v === "" ? { ok: false, problem: `environment variable \`${r.name}\` is not set` } : { ok: true, value: v }
  }
  if (r.from === "file") {
    const p = isAbsolute(r.path) ? r.path : resolve(dirname(baseFile), r.path)
    try { return { ok: true, value: readFileSync(p, "utf8").trim() } } catch (e) { return { ok: false, problem: `\`${p}\` cannot be read: ${(e as Error).message}` } }
  }
  return { ok: true, value: r.value }
}

/**
 * The admin listener a program declares: undefined when it declares none, a
 * list of problems when the declaration cannot be served safely.
 */
export const adminConfig = (program: Ir.Program): AdminConfig | ReadonlyArray<string> | undefined => {
  const decls = (program.pluginDecls ?? []).filter((d) => d.keyword === "admin")
  if (decls.length === 0) return undefined
  const d = decls[0]!
  const at = `admin (${d.span.file}:${d.span.start.line})`
  if (decls.length > 1) return [`${at}: only one \`admin\` declaration is allowed`]
  const hp = d.settings["listen"] as { host: string; port: number } | undefined
  const host = hp?.host ?? DEFAULT_ADMIN.host
  const port = hp?.port ?? DEFAULT_ADMIN.port
  let token: string | undefined
  if (d.settings["token"] !== undefined) {
    const s = readSecret(d.settings["token"], d.span.file)
    if (!s.ok) return [`${at}: the token cannot be read: ${s.problem}`]
    token = s.value
  }
  if (token === undefined && !isLoopback(host)) {
    return [`${at}: the admin API listens on ${host}, which is not loopback: add \`token env(NAME)\` (a bearer token is required off loopback)`]
  }
  return { host, port, token }
}
