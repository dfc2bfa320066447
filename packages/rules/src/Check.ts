/**
 * The checker's entry point: files in, a checked `Program` and every diagnostic out.
 *
 * Details: `checkFiles([a, b])` checks each entry independently (each with its
 * own includes) and concatenates the diagnostics; `program` is returned only
 * when there is exactly one entry and no error. `checkSource` checks text in
 * memory; `extraFiles` are further files (includes, set files) by path.
 * Diagnostics are sorted by file, line, column. Never throws: an internal
 * failure becomes diagnostic `T000` (a checker bug). A single entry that
 * checked without errors is remembered, and checking it again with the same
 * plugins and unchanged files returns that result (see `last`).
 */
import { posix } from "node:path"
import { readFileSync } from "node:fs"
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
  // The parse trees are dropped here (the program keeps what it needs): at 100,000 rules they are most of the memory a check uses.
  return { program: hasErrors(diagnostics) ? undefined : program, diagnostics, sources: loaded.sources }
}

/**
 * The last single-entry result without errors. `proxyd --rules` checks its
 * file in the CLI, the plugin registry and the policy store in turn; the
 * later ones get this result when the entry, the plugins and the text of
 * every file it was built from are the same (each file is read again and
 * compared, so an edit in between is never missed). The checker is a function
 * of those inputs, and its result is never mutated.
 */
let last: { readonly entry: string; readonly options: CheckOptions; readonly result: CheckResult } | undefined

/**
 * Drops the remembered result, for a process that checked a file it will not load itself (the
 * `workers` supervisor: at 100k rules the result is ~115 MB of its heap).
 */
export const forgetLastCheck = (): void => { last = undefined }

const sameVocabulary = (a: object, b: object): boolean => {
  if (a === b) return true
  const ka = Object.keys(a)
  if (ka.length !== Object.keys(b).length) return false
  return ka.every((k) => Object.hasOwn(b, k) && (a as Record<string, unknown>)[k] === (b as Record<string, unknown>)[k])
}

const sameOptions = (a: CheckOptions, b: CheckOptions): boolean => {
  const pa = a.plugins ?? []
  const pb = b.plugins ?? []
  return pa.length === pb.length && pa.every((x, i) => sameVocabulary(x, pb[i]!)) && JSON.stringify(a.pluginErrors ?? []) === JSON.stringify(b.pluginErrors ?? [])
}

const unchanged = (sources: ReadonlyMap<string, string>, reader: SourceReader): boolean => {
  for (const [path, text] of sources) {
    let now: string | undefined
    try {
      now = reader.read(path)
    } catch {
      return false
    }
    if (now !== text) return false
  }
  return true
}

const checkOneShared = (entry: string, reader: SourceReader, options: CheckOptions): CheckResult => {
  const prev = last
  if (prev !== undefined && prev.entry === entry && sameOptions(prev.options, options) && unchanged(prev.result.sources, reader)) return prev.result
  last = undefined
  const result = checkOne(entry, reader, options)
  if (result.program !== undefined) last = { entry, options, result }
  return result
}

/** `options.plugins`: vocabularies of the plugins the files name (see `Extension.ts`). */
export const checkFiles = (entries: ReadonlyArray<string>, reader: SourceReader, options: CheckOptions = {}): CheckResult => {
  if (entries.length === 1) return checkOneShared(entries[0]!, reader, options)
  const diagnostics: Diagnostic[] = []
  const sources = new Map<string, string>()
  for (const entry of entries) {
    const r = checkOne(entry, reader, options)
    diagnostics.push(...r.diagnostics)
    for (const [k, v] of r.sources) sources.set(k, v)
  }
  diagnostics.sort(compareDiagnostics)
  return { program: undefined, diagnostics, sources }
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
