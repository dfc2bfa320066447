/**
 * Diagnostics: every problem the language toolchain reports.
 *
 * Details: a diagnostic has a stable `code` (P0xx parse, T0xx names/types/ranges,
 * L0xx lints, X0xx tests), a severity, a primary span, an optional hint and
 * related notes ("first defined here"). Rendering lives in `Render.ts`.
 */
import type { Span } from "./Ast.ts"

export type Severity = "error" | "warning"

export interface Note { readonly message: string; readonly span?: Span }

export interface Diagnostic {
  readonly code: string
  readonly severity: Severity
  readonly message: string
  readonly span: Span
  readonly hint?: string
  readonly notes?: ReadonlyArray<Note>
}

export const error = (code: string, message: string, span: Span, extra?: { hint?: string; notes?: ReadonlyArray<Note> }): Diagnostic =>
  ({ code, severity: "error", message, span, ...extra })

export const warning = (code: string, message: string, span: Span, extra?: { hint?: string; notes?: ReadonlyArray<Note> }): Diagnostic =>
  ({ code, severity: "warning", message, span, ...extra })

/** A span for a whole file or for a location without a node. */
export const fileSpan = (file: string, line = 1, column = 1, offset = 0): Span => ({
  file, start: { offset, line, column }, end: { offset, line, column: column + 1 }
})

export const hasErrors = (ds: ReadonlyArray<Diagnostic>): boolean => ds.some((d) => d.severity === "error")
