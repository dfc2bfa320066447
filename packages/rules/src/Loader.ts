/**
 * Reads an entry file and its `include`s through an injected reader.
 *
 * Details: each file is parsed once; `include "x.rules"` (resolved against the
 * including file) splices the included file's items in place, so the checker
 * sees one flat item list in file order. Every text read is kept in `sources`
 * for code frames. Set files (`set x = domains file "..."`) are read later by
 * the checker, which records them in `sources` too.
 *
 * Gotchas: an include cycle is reported once (T015) at the `include` that
 * closes it; an unreadable include is T014. A file included twice (diamond)
 * is spliced once.
 */
import type { DeclNode, FileNode, ItemNode, Span } from "./Ast.ts"
import { type Diagnostic, error, fileSpan } from "./Diagnostic.ts"
import { parse } from "./Parser.ts"

export interface SourceReader {
  /** File text, or undefined when it cannot be read. `path` is already resolved. */
  read(path: string): string | undefined
  /** Resolves `rel` against the directory of the file `from`. */
  resolve(from: string, rel: string): string
}

export interface Loaded {
  /** All items in order, includes spliced in place. */
  readonly items: ReadonlyArray<ItemNode>
  readonly files: ReadonlyArray<string>
  readonly sources: Map<string, string>
  readonly asts: Map<string, FileNode>
  readonly diagnostics: Diagnostic[]
  /** True when the entry itself could be read. */
  readonly readable: boolean
}

const includeTarget = (d: DeclNode): { readonly path: string; readonly span: Span } | undefined => {
  const a = d.args[0]
  if (d.args.length === 1 && a !== undefined && a.kind === "string" && d.name === undefined && d.block === undefined) return { path: a.value, span: a.span }
  return undefined
}

/** Reads and parses `entry` and everything it includes. Never throws. */
export const load = (entry: string, reader: SourceReader): Loaded => {
  const sources = new Map<string, string>()
  const asts = new Map<string, FileNode>()
  const diagnostics: Diagnostic[] = []
  const items: ItemNode[] = []
  const files: string[] = []
  const done = new Set<string>()

  const visit = (path: string, stack: ReadonlyArray<string>, at: Span | undefined): boolean => {
    if (stack.includes(path)) {
      const cycle = [...stack.slice(stack.indexOf(path)), path].join(" -> ")
      diagnostics.push(error("T015", `include cycle: ${cycle}`, at ?? fileSpan(path), { hint: "remove one of the `include`s in the cycle" }))
      return true
    }
    if (done.has(path)) return true
    let text: string | undefined
    try {
      text = reader.read(path)
    } catch {
      text = undefined
    }
    if (text === undefined) {
      if (at !== undefined) diagnostics.push(error("T014", `cannot read included file \`${path}\``, at))
      else diagnostics.push(error("E001", `cannot read \`${path}\``, fileSpan(path)))
      return false
    }
    done.add(path)
    files.push(path)
    sources.set(path, text)
    const parsed = parse(text, path)
    asts.set(path, parsed.file)
    diagnostics.push(...parsed.diagnostics)
    for (const item of parsed.file.items) {
      if (item.kind === "decl" && item.keyword.text === "include") {
        const target = includeTarget(item)
        if (target === undefined) {
          diagnostics.push(error("T004", "`include` takes one string: the path of the file to include", item.span, { hint: 'write `include "common.rules"`' }))
          continue
        }
        let resolved: string
        try {
          resolved = reader.resolve(path, target.path)
        } catch {
          resolved = target.path
        }
        visit(resolved, [...stack, path], target.span)
        continue
      }
      items.push(item)
    }
    return true
  }
  const readable = visit(entry, [], undefined)
  return { items, files, sources, asts, diagnostics, readable }
}
