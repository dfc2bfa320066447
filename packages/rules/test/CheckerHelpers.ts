/**
 * Helpers for the checker specs: diagnostics as `line:col code message` lines.
 */
import { checkSource, type CheckResult } from "../src/Check.ts"

export const check = (text: string, extra: Record<string, string> = {}): CheckResult => checkSource(text, "t.rules", extra)

/** `line:col CODE message` for every diagnostic (all files; other files prefixed with their name). */
export const diags = (text: string, extra: Record<string, string> = {}): string[] =>
  check(text, extra).diagnostics.map((d) => `${d.span.file === "t.rules" ? "" : `${d.span.file}:`}${d.span.start.line}:${d.span.start.column} ${d.code} ${d.message}`)

/** Only the diagnostics with these codes. */
export const only = (codes: ReadonlyArray<string>, text: string, extra: Record<string, string> = {}): string[] =>
  diags(text, extra).filter((l) => codes.includes(l.split(" ")[1]!))

export const hints = (text: string): Array<string | undefined> => check(text).diagnostics.map((d) => d.hint)

/** A minimal valid policy to append. */
export const POLICY = "policy p {\n  default block\n}\n"
