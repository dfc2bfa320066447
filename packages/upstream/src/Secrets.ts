/**
 * Upstream credentials and files: `SecretRef` → value, read at start and at every reload.
 *
 * Details: `env(NAME)` reads the environment variable; `file(PATH)` reads the
 * file and drops one trailing newline (`\n` or `\r\n`); a relative path is
 * resolved against the rules file that declares it. A missing variable or an
 * unreadable file is a problem that refuses the program, naming the upstream
 * and the variable/file, never a value.
 *
 * Gotchas: values live only inside `Hop` objects; nothing here logs them, and
 * errors carry names only.
 */
import { readFileSync } from "node:fs"
import * as path from "node:path"
import type { Ir } from "@proxyd/rules"

export type Read<T> = { readonly ok: true; readonly value: T } | { readonly ok: false; readonly problem: string }

/** Resolves `p` against the directory of the file that declared it. */
export const relativeTo = (declaredIn: string, p: string): string => (path.isAbsolute(p) ? p : path.resolve(path.dirname(declaredIn), p))

export const readSecret = (ref: Ir.SecretRef, declaredIn: string): Read<string> => {
  switch (ref.from) {
    case "literal": return { ok: true, value: ref.value }
    case "env": {
      const v = process.env[ref.name]
      return v === undefined ? { ok: false, problem: `environment variable \`${ref.name}\` is not set` } : { ok: true, value: v }
    }
    case "file": {
      const p = relativeTo(declaredIn, ref.path)
      try {
        return { ok: true, value: readFileSync(p, "utf8").replace(/\r?\n$/, "") }
      } catch (e) {
        return { ok: false, problem: `cannot read \`${p}\` (${(e as { code?: string }).code ?? "error"})` }
      }
    }
  }
}

/** Reads a plain file (a CA bundle). */
export const readPlain = (p: string, declaredIn: string): Read<Buffer> => {
  const full = relativeTo(declaredIn, p)
  try {
    return { ok: true, value: readFileSync(full) }
  } catch (e) {
    return { ok: false, problem: `cannot read \`${full}\` (${(e as { code?: string }).code ?? "error"})` }
  }
}
