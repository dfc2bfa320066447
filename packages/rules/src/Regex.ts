/**
 * Safety check for `regex "..."` operands: must compile, and must not be
 * super-linear under a backtracking engine.
 *
 * Details: conservative. Rejected: backreferences (`\1`, `\k<x>`),
 * lookbehind/lookahead, and a repeated group (`*`, `+`, `{n,}`, `{n,m}` with
 * m > 1) whose body contains a quantifier or an alternation — `(a+)+`,
 * `(a*)*`, `(a|a)*`. Adjacent quantifiers like `.*.*` are polynomial and allowed.
 */

export type RegexCheck = { readonly ok: true } | { readonly ok: false; readonly code: "T032" | "T033"; readonly message: string; readonly hint?: string }

const repeats = (src: string, i: number): boolean => {
  const c = src[i]
  if (c === "*" || c === "+") return true
  if (c !== "{") return false
  const m = /^\{(\d*)(,(\d*))?\}/.exec(src.slice(i))
  if (m === null) return false
  if (m[2] === undefined) return Number(m[1]) > 1
  return m[3] === "" || Number(m[3]) > 1
}

export const checkRegex = (src: string): RegexCheck => {
  try {
    new RegExp(src, "i")
  } catch (e) {
    return { ok: false, code: "T032", message: `invalid regular expression: ${e instanceof Error ? e.message.replace(/^Invalid regular expression: /, "") : String(e)}` }
  }
  if (/\\[1-9]|\\k</.test(src)) return { ok: false, code: "T033", message: "backreferences are not allowed in `regex` (matching could take exponential time)" }
  if (/\(\?<?[=!]/.test(src)) return { ok: false, code: "T033", message: "lookaround is not allowed in `regex`" }
  // Scan groups: does a repeated group contain a quantifier or `|`?
  const stack: Array<{ risky: boolean }> = []
  let inClass = false
  let lastClosedRisky = false
  for (let i = 0; i < src.length; i++) {
    const c = src[i]!
    if (c === "\\") {
      i++
      lastClosedRisky = false
      continue
    }
    if (inClass) {
      if (c === "]") inClass = false
      continue
    }
    if (c === "[") {
      inClass = true
      lastClosedRisky = false
      continue
    }
    if (c === "(") {
      stack.push({ risky: false })
      lastClosedRisky = false
      continue
    }
    if (c === ")") {
      const g = stack.pop()
      lastClosedRisky = g?.risky ?? false
      if (repeats(src, i + 1) && lastClosedRisky) {
        return { ok: false, code: "T033", message: "nested repetition in `regex` can take exponential time (a repeated group containing a quantifier or `|`)", hint: "rewrite without repeating a group that itself repeats or alternates, e.g. `(a+)+` → `a+`; or use `matches` with a glob" }
      }
      if (lastClosedRisky || repeats(src, i + 1)) { const top = stack[stack.length - 1]; if (top) top.risky = true }
      continue
    }
    if (c === "|" || repeats(src, i)) {
      const top = stack[stack.length - 1]
      if (top) top.risky = true
    }
    lastClosedRisky = false
  }
  return { ok: true }
}
