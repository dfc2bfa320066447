/**
 * Parses `.rules` source into a `FileNode`, reporting every syntax error.
 *
 * Details: Peggy stops at the first error. To report all broken statements in
 * one run, the parser blanks the broken statement (keeping newlines, so every
 * later line and column stays exact) and parses again, up to `MAX_ERRORS`.
 * Inside a policy only the broken rule is blanked, so other rules are still
 * checked.
 */
import type { CommentNode, FileNode, ItemNode, Span } from "./Ast.ts"
import { type Diagnostic, error, fileSpan } from "./Diagnostic.ts"
import { parse as peggyParse, SyntaxError as PeggySyntaxError } from "./grammar/rules.generated.js"

const MAX_ERRORS = 50

export interface ParseResult {
  readonly file: FileNode
  readonly diagnostics: ReadonlyArray<Diagnostic>
}

const EMPTY = (): FileNode => ({ kind: "file", items: [], comments: [] })

const describeExpected = (e: PeggySyntaxError): string => {
  const names = new Set<string>()
  for (const x of e.expected ?? []) {
    if (x.type === "literal" && (x.text === "\n" || x.text === "\r")) names.add("end of line")
    else if (x.type === "literal" && x.text === "\\") continue
    else if (x.type === "literal" && x.text !== undefined) names.add(`\`${x.text}\``)
    else if (x.type === "end") names.add("end of file")
    else if (x.description !== undefined && !["whitespace", "comment"].includes(x.description)) names.add(x.description)
  }
  const list = [...names].sort()
  if (list.length === 0) return ""
  if (list.length === 1) return list[0]!
  return `${list.slice(0, -1).join(", ")} or ${list.at(-1)}`
}

const foundText = (e: PeggySyntaxError): string =>
  e.found === null ? "end of file" : e.found === "\n" ? "end of line" : `\`${e.found}\``

const toDiagnostic = (e: PeggySyntaxError, file: string, source: string): Diagnostic => {
  const { start } = e.location
  const span = {
    file,
    start: { offset: start.offset, line: start.line, column: start.column },
    end: { offset: start.offset + 1, line: start.line, column: start.column + 1 },
  }
  // Specific shapes first: they read better than an "expected" list.
  const lineText = source.split("\n")[start.line - 1] ?? ""
  const before = lineText.slice(0, start.column - 1)
  const quotes = (before.match(/"/g) ?? []).length - (before.match(/\\"/g) ?? []).length
  const after = lineText.slice(start.column)
  if ((e.found === "\n" && quotes % 2 === 1) || (e.found === "\"" && quotes % 2 === 0 && !after.includes("\""))) {
    return error("P002", "unterminated string", span, { hint: "close the string with `\"` before the end of the line" })
  }
  if (e.found === null && /[{[(]/.test(source)) {
    const opens = (source.match(/[{[(]/g) ?? []).length
    const closes = (source.match(/[}\])]/g) ?? []).length
    if (opens > closes) return error("P003", "unexpected end of file: a bracket or brace is not closed", span, { hint: "add the missing `}`, `]` or `)`" })
  }
  const expected = describeExpected(e)
  return error("P001", `syntax error: unexpected ${foundText(e)}${expected ? `, expected ${expected}` : ""}`, span)
}

const lineStarts = (s: string): number[] => {
  const starts = [0]
  for (let i = 0; i < s.length; i++) if (s.charCodeAt(i) === 10) starts.push(i + 1)
  return starts
}

const blank = (s: string, from: number, to: number): string =>
  s.slice(0, from) + s.slice(from, to).replace(/[^\n]/g, " ") + s.slice(to)

const isTopLevelStart = (line: string): boolean => /^[A-Za-z_]/.test(line)
const isPolicyItemStart = (line: string): boolean => /^\s*(rule|guard|default)\b/.test(line)

/** Offset of the start of the top-level statement containing line `errLine`. */
const lastTopLevelStart = (text: string, errLine: number): number => {
  const starts = lineStarts(text)
  const lines = text.split("\n")
  let stmt = Math.min(errLine, lines.length) - 1
  while (stmt > 0 && !isTopLevelStart(lines[stmt] ?? "")) stmt--
  return starts[Math.max(stmt, 0)] ?? 0
}

/** The region to blank so that parsing can go on after an error on `errLine` (1-based). */
const recoveryRegion = (text: string, errLine: number): [number, number] => {
  const starts = lineStarts(text)
  const lines = text.split("\n")
  const lineOf = (i: number) => lines[i] ?? ""
  let stmt = errLine - 1
  while (stmt > 0 && !isTopLevelStart(lineOf(stmt))) stmt--
  let next = errLine
  while (next < lines.length && !isTopLevelStart(lineOf(next))) next++
  // Inside a policy: blank only the broken rule.
  if (/^policy\b/.test(lineOf(stmt)) && errLine - 1 > stmt) {
    let ruleStart = errLine - 1
    while (ruleStart > stmt && !isPolicyItemStart(lineOf(ruleStart))) ruleStart--
    if (ruleStart > stmt) {
      let ruleEnd = errLine
      while (ruleEnd < lines.length && !isPolicyItemStart(lineOf(ruleEnd)) && !/^\s*}/.test(lineOf(ruleEnd)) && !isTopLevelStart(lineOf(ruleEnd))) ruleEnd++
      return [starts[ruleStart]!, ruleEnd < starts.length ? starts[ruleEnd]! : text.length]
    }
  }
  return [starts[stmt] ?? 0, next < starts.length ? starts[next]! : text.length]
}

/** P004 at the deepest point of `(`/`[`/`{` nesting (strings and comments are not skipped: a position hint only). */
const tooDeep = (source: string, file: string): Diagnostic => {
  let depth = 0, max = 0, at = 0, line = 1, column = 1, atLine = 1, atColumn = 1
  for (let i = 0; i < source.length; i++) {
    const c = source[i]
    if (c === "(" || c === "[" || c === "{") {
      if (++depth > max) { max = depth; at = i; atLine = line; atColumn = column }
    } else if (c === ")" || c === "]" || c === "}") depth = Math.max(0, depth - 1)
    if (c === "\n") { line++; column = 1 } else column++
  }
  return error("P004", "nesting too deep", fileSpan(file, atLine, atColumn, at), { hint: `brackets nest ${max} levels here; flatten the expression or the list` })
}

/**
 * Nesting limit of the tree (parentheses, `not`, lists, calls, blocks): every later
 * pass recurses over the tree, so a deeper tree is refused here, whatever the stack size.
 */
export const MAX_DEPTH = 256

/** The span of the first node nested deeper than `MAX_DEPTH` (counted in spanned nodes), or undefined. Iterative, two flat stacks (no tuple per node). */
const tooDeepNode = (root: unknown): Span | undefined => {
  const nodes: Array<unknown> = [root]
  const depths: Array<number> = [0]
  while (nodes.length > 0) {
    const v = nodes.pop()
    const depth = depths.pop()!
    if (v === null || typeof v !== "object") continue
    if (Array.isArray(v)) {
      for (let i = 0; i < v.length; i++) {
        const child: unknown = v[i]
        if (child !== null && typeof child === "object") { nodes.push(child); depths.push(depth) }
      }
      continue
    }
    const span = (v as { span?: Span }).span
    const d = span !== undefined ? depth + 1 : depth
    if (d > MAX_DEPTH && span !== undefined) return span
    for (const k in v) {
      if (k === "span") continue
      const child = (v as Record<string, unknown>)[k]
      if (child !== null && typeof child === "object") { nodes.push(child); depths.push(d) }
    }
  }
  return undefined
}

/**
 * The last parse, kept for a moment: `proxyd --rules` reads a file's `plugin`
 * declarations (twice) and then checks it, each parsing the same text, which
 * at 100,000 rules takes seconds each time. The tree is released
 * `PARSE_MEMO_MS` after its last use, so a running server does not keep it.
 * Parse trees are never mutated (callers copy what they change).
 */
let memo: { readonly source: string; readonly file: string; readonly result: ParseResult } | undefined
let memoTimer: ReturnType<typeof setTimeout> | undefined
const PARSE_MEMO_MS = 3_000
/** Texts shorter than this are parsed again (cheap), so only large files are memoised. */
const PARSE_MEMO_MIN = 64 * 1024

const remember = (source: string, file: string, result: ParseResult): ParseResult => {
  if (source.length < PARSE_MEMO_MIN) return result
  memo = { source, file, result }
  if (memoTimer !== undefined) clearTimeout(memoTimer)
  memoTimer = setTimeout(() => { memo = undefined; memoTimer = undefined }, PARSE_MEMO_MS)
  memoTimer.unref?.()
  return result
}

/**
 * Drops the kept parse now (a server calls it once a load is done: at 100,000 rules the tree is
 * ~200 MB that would otherwise stay reachable for `PARSE_MEMO_MS`, into the first traffic).
 */
export const forgetLastParse = (): void => {
  memo = undefined
  if (memoTimer !== undefined) clearTimeout(memoTimer)
  memoTimer = undefined
}

/** Parses one file's text. Never throws. */
export const parse = (source: string, file: string): ParseResult => {
  const m = memo
  if (m !== undefined && m.file === file && m.source === source) return remember(source, file, m.result)
  return remember(source, file, parseText(source, file))
}

const parseText = (source: string, file: string): ParseResult => {
  const diagnostics: Diagnostic[] = []
  // A byte-order mark (Windows editors) reads as a space: offsets and columns stay exact.
  let text = source.charCodeAt(0) === 0xfeff ? ` ${source.slice(1)}` : source
  let lastRegion = ""
  for (let attempt = 0; attempt <= MAX_ERRORS; attempt++) {
    try {
      const node = peggyParse(text, { grammarSource: file })
      const deep = tooDeepNode(node.items)
      if (deep !== undefined) {
        diagnostics.push(error("P004", "nesting too deep", deep, { hint: `nest at most ${MAX_DEPTH} levels of parentheses, \`not\`, lists and blocks` }))
        return { file: EMPTY(), diagnostics }
      }
      return { file: dedupeComments(node), diagnostics }
    } catch (e) {
      if (e instanceof RangeError) {
        // The generated parser recurses once per nesting level; a stack overflow is a diagnostic, not a crash.
        diagnostics.push(tooDeep(source, file))
        return { file: EMPTY(), diagnostics }
      }
      if (!(e instanceof PeggySyntaxError)) throw e
      // A second error at the same place is the same problem seen again after recovery.
      if (diagnostics.at(-1)?.span.start.offset !== e.location.start.offset) diagnostics.push(toDiagnostic(e, file, text))
      let [from, to] = e.found === null
        ? recoveryRegion(text, 1).map((_, i) => (i === 0 ? lastTopLevelStart(text, e.location.start.line) : text.length)) as [number, number]
        : recoveryRegion(text, e.location.start.line)
      const key = `${from}:${to}`
      if (key === lastRegion || to <= from) {
        // The same region failed twice: blank from the error to the end.
        from = Math.min(from, e.location.start.offset)
        to = text.length
      }
      lastRegion = key
      if (from >= text.length) break
      text = blank(text, from, to)
    }
  }
  return { file: EMPTY(), diagnostics }
}

/** Actions run again when the parser backtracks; keep one comment per offset. */
const dedupeComments = (node: FileNode): FileNode => {
  const seen = new Map<number, CommentNode>()
  // A CRLF file's comments would end in `\r`: drop trailing CRs, so CRLF and LF files parse alike.
  for (const c of node.comments) seen.set(c.span.start.offset, c.text.endsWith("\r") ? { ...c, text: c.text.replace(/\r+$/, "") } : c)
  const comments = [...seen.values()].sort((a, b) => a.span.start.offset - b.span.start.offset)
  return { kind: "file", items: node.items as ReadonlyArray<ItemNode>, comments }
}
