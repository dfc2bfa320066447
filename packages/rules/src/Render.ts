/**
 * Renders diagnostics for people (code frames) and for tools (JSON).
 *
 * Details: human form is
 *
 *     file:line:col: error[T010]: message
 *       12 |   rule x -> via corpp
 *          |                 ^^^^^
 *       hint: did you mean `corp`?
 *       note: first defined here
 *       --> file:3:10
 *        3 | upstream corp = ...
 *          |          ^^^^
 *
 * A span over several lines is underlined to the end of its first line. Tabs
 * before the caret are copied so the caret lines up. Without the source text
 * the frame is left out. JSON is one plain object per diagnostic with
 * 1-based `line`/`column` and exclusive `endLine`/`endColumn`. The line
 * starts of each source are indexed once (per `sources` map), so rendering
 * thousands of diagnostics of a large file stays linear.
 */
import type { Span } from "./Ast.ts"
import type { Diagnostic } from "./Diagnostic.ts"

export interface RenderOptions { readonly color?: boolean }

const paint = (on: boolean, code: string, s: string): string => (on ? `\u001b[${code}m${s}\u001b[0m` : s)

const location = (s: Span): string => `${s.file}:${s.start.line}:${s.start.column}`

/** Offsets of the line starts of each source text, computed once per sources map and file (code frames stay linear in the number of diagnostics). */
const lineIndexes = new WeakMap<ReadonlyMap<string, string>, Map<string, Uint32Array>>()

const lineStarts = (sources: ReadonlyMap<string, string>, file: string, text: string): Uint32Array => {
  let perFile = lineIndexes.get(sources)
  if (perFile === undefined) lineIndexes.set(sources, (perFile = new Map()))
  let starts = perFile.get(file)
  if (starts === undefined) {
    let n = 1
    for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) n++
    starts = new Uint32Array(n)
    let k = 1
    for (let i = text.indexOf("\n"); i !== -1; i = text.indexOf("\n", i + 1)) starts[k++] = i + 1
    perFile.set(file, starts)
  }
  return starts
}

/** Line `line` (1-based) of `file` without its newline, or undefined past the end. */
const sourceLine = (sources: ReadonlyMap<string, string>, file: string, line: number): string | undefined => {
  const text = sources.get(file)
  if (text === undefined || line < 1) return undefined
  const starts = lineStarts(sources, file, text)
  if (line > starts.length) return undefined
  const end = line < starts.length ? starts[line]! - 1 : text.length
  return text.slice(starts[line - 1]!, end)
}

const frame = (span: Span, sources: ReadonlyMap<string, string>, color: boolean, caretColor: string): string[] => {
  const raw = sourceLine(sources, span.file, span.start.line)
  if (raw === undefined) return []
  const line = raw.replace(/\r$/, "")
  const num = String(span.start.line)
  const pad = " ".repeat(num.length)
  const startCol = Math.max(1, Math.min(span.start.column, line.length + 1))
  const endCol = span.end.line === span.start.line ? Math.max(span.end.column, startCol + 1) : line.length + 1
  const width = Math.max(1, Math.min(endCol, line.length + 1) - startCol)
  const lead = line.slice(0, startCol - 1).replace(/[^\t]/g, " ")
  const bar = paint(color, "34", "|")
  return [
    `  ${paint(color, "34", num)} ${bar} ${line}`,
    `  ${pad} ${bar} ${lead}${paint(color, caretColor, "^".repeat(width))}`,
  ]
}

export const renderOne = (d: Diagnostic, sources: ReadonlyMap<string, string>, opts: RenderOptions = {}): string => {
  const color = opts.color === true
  const sevColor = d.severity === "error" ? "1;31" : "1;33"
  const out: string[] = [`${location(d.span)}: ${paint(color, sevColor, `${d.severity}[${d.code}]`)}: ${paint(color, "1", d.message)}`]
  out.push(...frame(d.span, sources, color, sevColor))
  if (d.hint !== undefined) out.push(`  ${paint(color, "1;36", "hint")}: ${d.hint}`)
  for (const n of d.notes ?? []) {
    out.push(`  ${paint(color, "1;32", "note")}: ${n.message}`)
    if (n.span !== undefined) {
      out.push(`  --> ${location(n.span)}`)
      out.push(...frame(n.span, sources, color, "1;32"))
    }
  }
  return out.join("\n")
}

/** Every diagnostic with its code frame, then a summary line. Empty string for no diagnostics. */
export const renderHuman = (ds: ReadonlyArray<Diagnostic>, sources: ReadonlyMap<string, string>, opts: RenderOptions = {}): string => {
  if (ds.length === 0) return ""
  const errors = ds.filter((d) => d.severity === "error").length
  const warnings = ds.length - errors
  const plural = (n: number, w: string) => `${n} ${w}${n === 1 ? "" : "s"}`
  return `${ds.map((d) => renderOne(d, sources, opts)).join("\n\n")}\n\n${plural(errors, "error")}, ${plural(warnings, "warning")}\n`
}

export interface JsonDiagnostic {
  readonly code: string
  readonly severity: string
  readonly message: string
  readonly file: string
  readonly line: number
  readonly column: number
  readonly endLine: number
  readonly endColumn: number
  readonly hint?: string
  readonly notes: ReadonlyArray<{ readonly message: string; readonly file?: string; readonly line?: number; readonly column?: number }>
}

export const renderJson = (ds: ReadonlyArray<Diagnostic>): JsonDiagnostic[] =>
  ds.map((d) => ({
    code: d.code,
    severity: d.severity,
    message: d.message,
    file: d.span.file,
    line: d.span.start.line,
    column: d.span.start.column,
    endLine: d.span.end.line,
    endColumn: d.span.end.column,
    ...(d.hint === undefined ? {} : { hint: d.hint }),
    notes: (d.notes ?? []).map((n) => (n.span === undefined ? { message: n.message } : { message: n.message, file: n.span.file, line: n.span.start.line, column: n.span.start.column })),
  }))
