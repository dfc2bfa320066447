/**
 * The checker's entry point: files in, a checked `Program` and every diagnostic out.
 *
 * Details: `checkFiles([a, b])` checks each entry independently (each with its
 * own includes) and concatenates the diagnostics; `program` is returned only
 * when there is exactly one entry and no error. `checkSource` checks text in
 * memory; `extraFiles` are further files (includes, set files) by path.
 * Diagnostics are sorted by file, line, column. Never throws: an internal
 * failure becomes diagnostic `T000` (a checker bug).
 */
import { posix } from "node:path"
import { readFileSync } from "node:fs"
import type { FileNode } from "./Ast.ts"
import { type Diagnostic, error, fileSpan, hasErrors } from "./Diagnostic.ts"
import type { Program } from "./Ir.ts"
import type { CheckOptions } from "./Extension.ts"
import { load, type SourceReader } from "./Loader.ts"
import { checkLoaded } from "./Checker.ts"

export type { SourceReader } from "./Loader.ts"

export interface CheckResult {
  /** undefined when there are errors that make it meaningless. */
  readonly program: Program | undefined
  /** Sorted by file, line, column. */
  readonly diagnostics: ReadonlyArray<Diagnostic>
  /** Every file read (for code frames). */
  readonly sources: ReadonlyMap<string, string>
  readonly asts: ReadonlyMap<string, FileNode>
}

export const compareDiagnostics = (a: Diagnostic, b: Diagnostic): number =>
  a.span.file < b.span.file ? -1 : a.span.file > b.span.file ? 1
    : a.span.start.line - b.span.start.line || a.span.start.column - b.span.start.column || (a.code < b.code ? -1 : a.code > b.code ? 1 : 0)

const checkOne = (entry: string, reader: SourceReader, options: CheckOptions): CheckResult => {
  const loaded = load(entry, reader)
  const diagnostics: Diagnostic[] = [...loaded.diagnostics]
  let program: Program | undefined
  if (loaded.readable) {
    try {
      const r = checkLoaded(loaded, reader, options)
      diagnostics.push(...r.diagnostics)
      program = r.program
    } catch (e) {
      diagnostics.push(error("T000", `internal checker error: ${e instanceof Error ? e.message : String(e)}`, fileSpan(entry)))
    }
  }
  diagnostics.sort(compareDiagnostics)
  return { program: hasErrors(diagnostics) ? undefined : program, diagnostics, sources: loaded.sources, asts: loaded.asts }
}

/** `options.plugins`: vocabularies of the plugins the files name (see `Extension.ts`). */
export const checkFiles = (entries: ReadonlyArray<string>, reader: SourceReader, options: CheckOptions = {}): CheckResult => {
  if (entries.length === 1) return checkOne(entries[0]!, reader, options)
  const diagnostics: Diagnostic[] = []
  const sources = new Map<string, string>()
  const asts = new Map<string, FileNode>()
  for (const entry of entries) {
    const r = checkOne(entry, reader, options)
    diagnostics.push(...r.diagnostics)
    for (const [k, v] of r.sources) sources.set(k, v)
    for (const [k, v] of r.asts) asts.set(k, v)
  }
  diagnostics.sort(compareDiagnostics)
  return { program: undefined, diagnostics, sources, asts }
}

const join = (from: string, rel: string, p: typeof posix): string =>
  p.isAbsolute(rel) ? p.normalize(rel) : p.join(p.dirname(from), rel)

/** A reader over an in-memory map of files (posix paths). */
export const memoryReader = (files: Readonly<Record<string, string>>): SourceReader => ({
  read: (path) => (Object.hasOwn(files, path) ? files[path] : undefined),
  resolve: (from, rel) => join(from, rel, posix),
})

export const checkSource = (text: string, file = "input.rules", extraFiles: Record<string, string> = {}, options: CheckOptions = {}): CheckResult =>
  checkFiles([file], memoryReader({ ...extraFiles, [file]: text }), options)

/** Reads from the file system; paths resolve against the including file's directory. */
export const nodeReader: SourceReader = {
  read: (path) => {
    try {
      return readFileSync(path, "utf8")
    } catch {
      return undefined
    }
  },
  resolve: (from, rel) => join(from, rel, posix),
}
