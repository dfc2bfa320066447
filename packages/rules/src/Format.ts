/**
 * `proxyd fmt`: prints a parsed `.rules` file in its one canonical layout.
 *
 * Details: the printer walks the AST in source order and puts every collected
 * comment back by offset. The file is a tree of *pieces* (a declaration, a
 * block line, a policy item, a `{` header, a `}` line, one top-level `and`/`or`
 * operand of a broken rule condition) separated by *gaps*. A comment in a gap
 * stays there: the first one trails the previous piece when no newline came
 * before it in the source, the others get their own line. A comment inside a
 * piece printed on one line (inside a list, between a rule's name and `when`,
 * inside parentheses) moves to its own line just before that line. Both rules
 * give the same result on the second run, so the layout is idempotent.
 *
 * Layout: 2-space indent; tokens separated by one space; `[a, b]`, `{80, 443}`,
 * `f(a, b)`; strings re-escaped; one blank line where the source had one or more
 * between two pieces (none right after `{` or before `}`); a block with one
 * setting, and a test whose body fits, on one line; a rule condition longer
 * than `WIDTH` (or with a comment between its operands) broken before each
 * top-level `and`/`or`, aligned under `when`; in a run of one-line rules
 * (no blank line or own-line comment between), `NAME`, `when` and `->` aligned
 * in columns when the run fits in `WIDTH`; parentheses and implicit `==` kept
 * as written; `time in` printed as `time`.
 *
 * Gotchas: a file with parse errors is refused (its diagnostics returned), and
 * so is a result that would not parse back to the same AST and comments (a
 * formatter bug, reported as P099): formatting never loses text.
 */
import type { ActionNode, BlockLine, CommentNode, DeclNode, ExpectActionNode, ExprNode, FileNode, ItemNode, PolicyItemNode, PolicyNode, RuleNode, TestNode, Token } from "./Ast.ts"
import { type Diagnostic, error, fileSpan } from "./Diagnostic.ts"
import { parse } from "./Parser.ts"

export type FormatResult = { readonly ok: true; readonly text: string } | { readonly ok: false; readonly diagnostics: ReadonlyArray<Diagnostic> }

/** Column limit for one-line blocks and tests and for unbroken rule conditions. */
export const WIDTH = 100

/** Canonical layout of a rules file. Refuses (returns the parse diagnostics) when the file does not parse: never loses text. */
export const format = (source: string, file: string): FormatResult => {
  const parsed = parse(source, file)
  if (parsed.diagnostics.length > 0) return { ok: false, diagnostics: parsed.diagnostics }
  let text: string
  try {
    text = print(source, parsed.file)
  } catch (e) {
    // A stack overflow on input the parser just managed to read: the same limit as the parser's P004.
    if (e instanceof RangeError) return { ok: false, diagnostics: [error("P004", "nesting too deep to format", fileSpan(file))] }
    return { ok: false, diagnostics: [internal(file, String(e))] }
  }
  const again = parse(text, file)
  if (again.diagnostics.some((d) => d.code === "P004")) return { ok: false, diagnostics: again.diagnostics } // at the parser's depth limit
  if (again.diagnostics.length > 0 || shape(again.file.items) !== shape(parsed.file.items) || commentTexts(again.file) !== commentTexts(parsed.file)) {
    return { ok: false, diagnostics: [internal(file, "the formatted text would not mean the same")] }
  }
  return { ok: true, text }
}

const internal = (file: string, why: string): Diagnostic =>
  error("P099", `cannot format this file: ${why}; it is left unchanged`, fileSpan(file), { hint: "this is a formatter bug; please report it with the file" })

/**
 * The tree without spans, as a string: equal shapes mean equal meaning.
 * Iterative: a parsed tree may nest deeper than `JSON.stringify` can recurse.
 */
export const shape = (root: unknown): string => {
  const out: string[] = []
  const stack: Array<{ readonly close: string } | { readonly key: string } | { readonly value: unknown }> = [{ value: root }]
  while (stack.length > 0) {
    const top = stack.pop()!
    if ("close" in top) out.push(top.close)
    else if ("key" in top) out.push(`${JSON.stringify(top.key)}:`)
    else if (Array.isArray(top.value)) {
      out.push("[")
      stack.push({ close: "]" })
      for (let i = top.value.length - 1; i >= 0; i--) stack.push({ value: top.value[i] })
    } else if (top.value !== null && typeof top.value === "object") {
      const o = top.value as Record<string, unknown>
      out.push("{")
      stack.push({ close: "}" })
      const keys = Object.keys(o).filter((k) => k !== "span" && o[k] !== undefined).sort().reverse()
      for (const k of keys) stack.push({ value: o[k] }, { key: k })
    } else out.push(`${JSON.stringify(top.value) ?? "undefined"},`)
  }
  return out.join("")
}

const commentTexts = (f: FileNode): string => JSON.stringify(f.comments.map((c) => c.text).sort())

// ----------------------------------------------------------------------------
// Text of tokens, expressions and actions (one line each)
// ----------------------------------------------------------------------------

const str = (value: string): string =>
  `"${value.replace(/[\\"\n\t]/g, (c) => (c === "\n" ? "\\n" : c === "\t" ? "\\t" : `\\${c}`))}"`

const tok = (t: Token): string => {
  switch (t.kind) {
    case "bare": return t.text
    case "string": return str(t.value)
    case "arrow": return "->"
    case "call": return `${t.name}(${t.args.map(tok).join(", ")})`
    case "list": {
      const items = t.items.map(tok).join(", ")
      return t.open === "bracket" ? `[${items}]` : `{${items}}`
    }
  }
}

const expr = (e: ExprNode): string => {
  switch (e.kind) {
    case "and": return e.items.map(expr).join(" and ")
    case "or": return e.items.map(expr).join(" or ")
    case "not": return `not ${expr(e.expr)}`
    case "paren": return `(${expr(e.expr)})`
    case "cmp": return e.op.implicit === true ? `${e.field.text} ${tok(e.value)}` : `${e.field.text} ${e.op.text} ${tok(e.value)}`
    case "time": {
      // `time in in` is the only way to write a first window spelt `in`.
      const words = ["time", ...(e.specs[0]?.text === "in" ? ["in"] : []), ...e.specs.map((s) => s.text)]
      return (e.tz === undefined ? words : [...words, "tz", str(e.tz.value)]).join(" ")
    }
  }
}

const action = (a: ActionNode | ExpectActionNode): string => {
  switch (a.kind) {
    case "allow": return "allow"
    case "block": return a.message === undefined ? "block" : `block ${str(a.message.value)}`
    case "redirect": return a.target === undefined ? "redirect" : `redirect ${tok(a.target)}`
    case "tor": return a.target === undefined ? "tor" : `tor ${a.target.text}`
    case "via": return "else" in a && a.else !== undefined ? `via ${a.target.text} else ${action(a.else)}` : `via ${a.target.text}`
  }
}

// ----------------------------------------------------------------------------
// The printer
// ----------------------------------------------------------------------------

interface Line { readonly indent: number; readonly text: string; trailing?: string; readonly blank: boolean }
/** A part of a rule that may start a line: the head, a top-level operand, an `and` operand inside an `or` operand, the action. */
interface Piece { readonly text: string; readonly start: number; readonly end: number; readonly kind: "head" | "top" | "nested" | "arrow"; readonly operand: number }
/** Column widths of an aligned run of one-line rules: `KIND NAME when COND -> ACTION`. */
interface Align { readonly kind: number; readonly name: number; readonly cond: number }
/** Blank lines allowed in a gap: before its first own-line element (`lead`) and before the next piece (`trail`). */
interface Blanks { readonly lead: boolean; readonly trail: boolean }

const BLANK_LINE = /\n[ \t\r]*\n/

const print = (src: string, file: FileNode): string => {
  const comments: ReadonlyArray<CommentNode> = file.comments
  const offsets = comments.map((c) => c.span.start.offset)
  const out: Line[] = []
  let next = 0 // first comment not yet printed
  let blankNext = false

  const push = (indent: number, text: string) => {
    out.push({ indent, text, blank: blankNext })
    blankNext = false
  }
  const blankBetween = (from: number, to: number) => to > from && BLANK_LINE.test(src.slice(from, to))

  /** Index of the first comment starting at or after `from`. */
  const firstAt = (from: number): number => {
    let lo = 0, hi = offsets.length
    while (lo < hi) {
      const mid = (lo + hi) >> 1
      if (offsets[mid]! < from) lo = mid + 1
      else hi = mid
    }
    return lo
  }
  /** Is there a comment starting in [from, to)? */
  const hasComment = (from: number, to: number): boolean => {
    const k = firstAt(from)
    return k < offsets.length && offsets[k]! < to
  }

  /** The comments between two pieces; `blanks` undefined: no blank lines (inside a rule). */
  const gap = (prevEnd: number, nextStart: number, indent: number, blanks?: Blanks) => {
    let pos = prevEnd
    let own = 0
    let first = true
    while (next < comments.length && offsets[next]! < nextStart) {
      const c = comments[next++]!
      const start = c.span.start.offset
      const last = out.at(-1)
      if (first && start >= prevEnd && last !== undefined && last.trailing === undefined && !src.slice(prevEnd, start).includes("\n")) {
        last.trailing = c.text
      } else {
        blankNext = blanks !== undefined && (own > 0 || blanks.lead) && blankBetween(pos, start)
        push(indent, `#${c.text}`)
        own++
      }
      first = false
      pos = Math.max(pos, c.span.end.offset)
    }
    blankNext = blanks !== undefined && (own > 0 || blanks.lead) && blanks.trail && blankBetween(pos, nextStart)
  }

  /** One output line for the source text ending at `end`; comments inside it go on their own lines before it. */
  const emit = (end: number, indent: number, text: string, commentIndent = indent) => {
    while (next < comments.length && offsets[next]! < end) push(commentIndent, `#${comments[next++]!.text}`)
    push(indent, text)
  }

  /** Offset of the `{` or `}` after `from`, past blanks, `=`, `;`, line continuations and comments. */
  const find = (from: number, want: "{" | "}"): number => {
    let i = from
    while (i < src.length) {
      const ch = src[i]!
      if (ch === want) return i
      if (ch === "#") {
        while (i < src.length && src[i] !== "\n") i++
      } else if (" \t\r\n\\;=".includes(ch)) i++
      else break
    }
    throw new Error(`expected \`${want}\` at offset ${i}`)
  }

  const tokens = (ts: ReadonlyArray<Token>) => ts.map(tok).join(" ")
  const lastEnd = (ts: ReadonlyArray<Token>, otherwise: number) => ts.at(-1)?.span.end.offset ?? otherwise

  /** `PREFIX { lines } SUFFIX`; `manyOnOneLine`: a test body, whose lines may share one line joined by `;`. */
  const block = (prefix: string, lines: ReadonlyArray<BlockLine>, open: number, indent: number, manyOnOneLine: boolean, suffix = "", suffixEnd?: number): number => {
    const inner = indent + 2
    if ((manyOnOneLine || lines.length <= 1) && lines.every((l) => l.block === undefined)) {
      let clean = true
      let prev = open + 1
      for (const l of lines) {
        clean &&= !hasComment(prev, l.span.start.offset)
        prev = lastEnd(l.tokens, prev)
      }
      const close = find(prev, "}")
      const body = lines.map((l) => tokens(l.tokens)).join("; ")
      const text = `${prefix} {${body === "" ? "" : ` ${body} `}}${suffix}`
      if (clean && !hasComment(prev, close) && indent + text.length <= WIDTH) {
        const end = suffixEnd ?? close + 1
        emit(end, indent, text)
        return end
      }
    }
    emit(open + 1, indent, `${prefix} {`)
    let prev = open + 1
    for (let i = 0; i < lines.length; i++) { // a loop, not forEach: nested blocks recurse through here
      gap(prev, lines[i]!.span.start.offset, inner, { lead: i > 0, trail: true })
      prev = blockLine(lines[i]!, inner)
    }
    const close = find(prev, "}")
    gap(prev, close, inner, { lead: lines.length > 0, trail: false })
    const end = suffixEnd ?? close + 1
    emit(end, indent, `}${suffix}`, inner)
    return end
  }

  const blockLine = (l: BlockLine, indent: number): number => {
    const end = lastEnd(l.tokens, l.span.start.offset)
    if (l.block === undefined) {
      emit(end, indent, tokens(l.tokens))
      return end
    }
    return block(tokens(l.tokens), l.block, find(end, "{"), indent, false)
  }

  const decl = (d: DeclNode, indent: number): number => {
    const header = [d.keyword.text, ...(d.name === undefined ? [] : [d.name.text, "="]), ...d.args.map(tok)].join(" ")
    const end = lastEnd(d.args, (d.name ?? d.keyword).span.end.offset)
    if (d.block === undefined) {
      emit(end, indent, header)
      return end
    }
    return block(header, d.block, find(end, "{"), indent, false)
  }

  const test = (t: TestNode, indent: number): number => {
    const expect = ["expect", action(t.expect.action), ...(t.expect.rule === undefined ? [] : ["by", t.expect.rule.text])].join(" ")
    return block(`test ${str(t.name.value)}`, t.body, find(t.name.span.end.offset, "{"), indent, true, ` ${expect}`, t.expect.span.end.offset)
  }

  const policy = (p: PolicyNode, indent: number): number => {
    const open = find(p.name.span.end.offset, "{")
    const inner = indent + 2
    const aligns = alignments(p.items, inner)
    emit(open + 1, indent, `policy ${p.name.text} {`)
    let prev = open + 1
    for (let i = 0; i < p.items.length; i++) {
      const item = p.items[i]!
      gap(prev, item.span.start.offset, inner, { lead: i > 0, trail: true })
      const a = aligns[i]
      if (a !== undefined && item.kind !== "default") {
        prev = itemEnd(item)
        emit(prev, inner, alignedRule(item, a))
      } else prev = policyItem(item, inner)
    }
    const close = find(prev, "}")
    gap(prev, close, inner, { lead: p.items.length > 0, trail: false })
    emit(close + 1, indent, "}", inner)
    return close + 1
  }

  /**
   * Column widths for runs of one-line rules: a run ends at a blank line, an
   * own-line comment, a broken rule, before a rule with a comment inside, and
   * at the default; a run whose aligned lines would pass `WIDTH` is not aligned.
   * Every condition reads the same after formatting, so alignment is idempotent.
   */
  const alignments = (items: ReadonlyArray<PolicyItemNode>, indent: number): Array<Align | undefined> => {
    const oneLine = items.map((it) => it.kind !== "default" && !ruleLayout(it, indent).breaks.some(Boolean))
    // A comment inside a rule goes on its own line before it: it splits the run there, in this run and the next.
    const joins = (i: number) => !separated(itemEnd(items[i - 1]!), items[i]!.span.start.offset) && !hasComment(items[i]!.span.start.offset, itemEnd(items[i]!))
    const aligns: Array<Align | undefined> = []
    let first = 0
    while (first < items.length) {
      let last = first
      while (oneLine[first] && last + 1 < items.length && oneLine[last + 1] && joins(last + 1)) last++
      const run = items.slice(first, last + 1).filter((it): it is RuleNode => it.kind !== "default")
      if (run.length > 1) {
        const a: Align = { kind: Math.max(...run.map((r) => r.kind.length)), name: Math.max(...run.map((r) => r.name.text.length)), cond: Math.max(...run.map((r) => whenText(r).length)) }
        if (run.every((r) => indent + alignedRule(r, a).length <= WIDTH)) for (let i = first; i <= last; i++) aligns[i] = a
      }
      first = last + 1
    }
    return aligns
  }

  /** A blank line or an own-line comment between two pieces. */
  const separated = (from: number, to: number): boolean => {
    if (blankBetween(from, to)) return true
    for (let k = firstAt(from); k < offsets.length && offsets[k]! < to; k++) {
      if (k > firstAt(from) || src.slice(from, offsets[k]!).includes("\n")) return true
    }
    return false
  }

  const itemEnd = (item: PolicyItemNode) => lastEnd(item.modifiers, item.action.span.end.offset)
  const tailText = (item: PolicyItemNode) => [action(item.action), ...item.modifiers.map(tok)].join(" ")
  const whenText = (r: RuleNode) => (r.when === undefined ? "" : `when ${expr(r.when)}`)
  const alignedRule = (r: RuleNode, a: Align): string =>
    `${r.kind.padEnd(a.kind)} ${r.name.text.padEnd(a.name)}${a.cond > 0 ? ` ${whenText(r).padEnd(a.cond)}` : ""} -> ${tailText(r)}`

  const policyItem = (item: PolicyItemNode, indent: number): number => {
    const end = itemEnd(item)
    if (item.kind === "default") {
      emit(end, indent, `default ${tailText(item)}`)
      return end
    }
    const { pieces, breaks, column } = ruleLayout(item, indent)
    let i = 0
    while (i < pieces.length) {
      let j = i
      while (j + 1 < pieces.length && !breaks[j + 1]) j++
      const at = column(pieces[i]!)
      if (i > 0) gap(pieces[i - 1]!.end, pieces[i]!.start, at)
      emit(pieces[j]!.end, at, pieces.slice(i, j + 1).map((p) => p.text).join(" "))
      i = j + 1
    }
    return end
  }

  /** Where a rule breaks: before each piece `k` with `breaks[k]`, and at which column each piece starts a line. */
  const ruleLayout = (item: RuleNode, indent: number) => {
    const pieces = rulePieces(item, `-> ${tailText(item)}`, itemEnd(item))
    const commentBefore = pieces.map((p, i) => i > 0 && hasComment(pieces[i - 1]!.end, p.start))
    const cont = indent + item.kind.length + 1 + item.name.text.length + 1 // the column of `when`
    const join = (ps: ReadonlyArray<Piece>) => ps.map((p) => p.text).join(" ")
    const operands = pieces.filter((p) => p.kind === "top").length + 1
    const broken = commentBefore.some(Boolean) || (operands > 1 && indent + join(pieces).length > WIDTH)
    const nestedBroken = (operand: number): boolean => {
      const own = pieces.filter((p) => p.operand === operand)
      return own.some((p) => p.kind === "nested" && commentBefore[pieces.indexOf(p)] === true) || (operand === 0 ? indent : cont) + join(own).length > WIDTH
    }
    const breaks = pieces.map((p, k) =>
      k > 0 && (p.kind === "top" ? broken : p.kind === "nested" ? broken && nestedBroken(p.operand) : commentBefore[k] === true))
    const column = (p: Piece) => (p.kind === "head" ? indent : p.kind === "nested" ? cont + 2 : cont)
    return { pieces, breaks, column }
  }

  /**
   * `rule NAME when A`, `and B`, ..., `-> ACTION MODIFIERS`: the places where a
   * rule may break. Under a top-level `or`, an `and` operand is split too.
   */
  const rulePieces = (r: RuleNode, tail: string, end: number): Piece[] => {
    const head = `${r.kind} ${r.name.text}`
    const pieces: Piece[] = []
    if (r.when === undefined) pieces.push({ text: head, start: r.span.start.offset, end: r.name.span.end.offset, kind: "head", operand: 0 })
    else {
      const w = r.when
      const operands = w.kind === "and" || w.kind === "or" ? w.items : [w]
      operands.forEach((e, i) => {
        const prefix = i === 0 ? `${head} when ` : `${w.kind} `
        const start = i === 0 ? r.span.start.offset : e.span.start.offset
        const kind = i === 0 ? "head" : "top"
        if (w.kind === "or" && e.kind === "and") {
          e.items.forEach((a, k) =>
            pieces.push(k === 0
              ? { text: prefix + expr(a), start, end: a.span.end.offset, kind, operand: i }
              : { text: `and ${expr(a)}`, start: a.span.start.offset, end: a.span.end.offset, kind: "nested", operand: i }))
        } else pieces.push({ text: prefix + expr(e), start, end: e.span.end.offset, kind, operand: i })
      })
    }
    pieces.push({ text: tail, start: r.action.span.start.offset, end, kind: "arrow", operand: -1 })
    return pieces
  }

  const item = (it: ItemNode, indent: number): number =>
    it.kind === "decl" ? decl(it, indent) : it.kind === "policy" ? policy(it, indent) : test(it, indent)

  let prev = 0
  file.items.forEach((it, i) => {
    gap(prev, it.span.start.offset, 0, { lead: i > 0, trail: true })
    prev = item(it, 0)
  })
  gap(prev, src.length, 0, { lead: file.items.length > 0, trail: false })
  while (next < comments.length) push(0, `#${comments[next++]!.text}`) // unreachable: every comment is before the end

  if (out.length === 0) return ""
  return `${out.map((l, i) => `${l.blank && i > 0 ? "\n" : ""}${" ".repeat(l.indent)}${l.text}${l.trailing === undefined ? "" : ` #${l.trailing}`}`).join("\n")}\n`
}
