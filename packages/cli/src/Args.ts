/**
 * A small argv parser: flags (boolean, string, repeatable string, choices)
 * and positionals, with exact usage errors.
 *
 * Details: accepts `--flag value`, `--flag=value`, `--no-color`-style
 * booleans, `--` to end flags, and flags anywhere among positionals. An
 * unknown flag fails with a did-you-mean. Usage errors are `UsageError`
 * values (exit code 2 in `main.ts`).
 *
 * Gotchas: `effect/cli` would own the exit codes and needs the platform-node
 * services; `proxyd` promises exit 2 on usage errors and a dependency-free
 * bundle, hence this parser.
 */
import * as Data from "effect/Data"

export class UsageError extends Data.TaggedError("UsageError")<{ readonly message: string; readonly command?: string }> {}

export type FlagSpec =
  | { readonly kind: "boolean"; readonly description: string }
  | { readonly kind: "string"; readonly description: string; readonly value: string; readonly choices?: ReadonlyArray<string>; readonly multiple?: boolean }

export interface Parsed {
  readonly flags: Readonly<Record<string, ReadonlyArray<string> | boolean | undefined>>
  readonly positionals: ReadonlyArray<string>
}

/** Edit distance with adjacent transpositions (optimal string alignment). */
const distance = (a: string, b: string): number => {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array<number>(b.length).fill(0)])
  for (let j = 1; j <= b.length; j++) d[0]![j] = j
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + (a[i - 1] === b[j - 1] ? 0 : 1))
      // A swap of two neighbours counts as one edit (`chekc` → `check`).
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1)
    }
  }
  return d[a.length]![b.length]!
}

/** The closest of `names` to `word`, when it is close enough to be a typo. */
export const suggest = (word: string, names: Iterable<string>): string | undefined => {
  let best: string | undefined
  let bestD = Infinity
  for (const n of names) {
    const dist = distance(word, n)
    if (dist < bestD) {
      best = n
      bestD = dist
    }
  }
  return best !== undefined && bestD <= Math.max(1, Math.floor(best.length / 3)) ? best : undefined
}

/** Parses `argv` against `spec`. `help` is always accepted (`--help`, `-h`). */
export const parseArgs = (argv: ReadonlyArray<string>, spec: Readonly<Record<string, FlagSpec>>, command: string): Parsed | UsageError => {
  const flags: Record<string, string[] | boolean> = {}
  const positionals: string[] = []
  const fail = (message: string): UsageError => new UsageError({ message, command })
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    if (arg === "--") {
      positionals.push(...argv.slice(i + 1))
      break
    }
    if (arg === "-h" || arg === "--help") {
      flags["help"] = true
      continue
    }
    if (!arg.startsWith("--") || arg === "-") {
      if (arg.startsWith("-") && arg !== "-") return fail(`unknown option \`${arg}\``)
      positionals.push(arg)
      continue
    }
    const eq = arg.indexOf("=")
    const name = arg.slice(2, eq === -1 ? undefined : eq)
    const inline = eq === -1 ? undefined : arg.slice(eq + 1)
    const f = spec[name]
    if (f === undefined) {
      const near = suggest(name, Object.keys(spec))
      return fail(`unknown option \`--${name}\`${near === undefined ? "" : `, did you mean \`--${near}\`?`}`)
    }
    if (f.kind === "boolean") {
      if (inline !== undefined) return fail(`option \`--${name}\` takes no value`)
      flags[name] = true
      continue
    }
    let value = inline
    if (value === undefined) {
      const next = argv[i + 1]
      if (next === undefined || (next.startsWith("--") && next.length > 2)) return fail(`option \`--${name}\` needs a value (${f.value})`)
      value = next
      i++
    }
    if (f.choices !== undefined && !f.choices.includes(value)) {
      return fail(`option \`--${name}\` must be one of ${f.choices.join(", ")}, not \`${value}\``)
    }
    const prev = flags[name]
    if (Array.isArray(prev) && f.multiple !== true) return fail(`option \`--${name}\` given twice`)
    flags[name] = [...(Array.isArray(prev) ? prev : []), value]
  }
  return { flags, positionals }
}

/** The single value of a string flag. */
export const str = (p: Parsed, name: string): string | undefined => {
  const v = p.flags[name]
  return Array.isArray(v) ? v[0] : undefined
}

export const strs = (p: Parsed, name: string): ReadonlyArray<string> => {
  const v = p.flags[name]
  return Array.isArray(v) ? v : []
}

export const bool = (p: Parsed, name: string): boolean => p.flags[name] === true

/** Help text for a command: usage line, description, then one line per flag. */
export const helpText = (usage: string, description: string, spec: Readonly<Record<string, FlagSpec>>, extra = ""): string => {
  const rows = Object.entries(spec).map(([name, f]) => [f.kind === "boolean" ? `--${name}` : `--${name} ${f.value}`, f.description] as const)
  rows.push(["-h, --help", "show this help"])
  const width = Math.max(...rows.map(([a]) => a.length))
  return `Usage: ${usage}\n\n${description}\n\nOptions:\n${rows.map(([a, b]) => `  ${a.padEnd(width)}  ${b}`).join("\n")}\n${extra === "" ? "" : `\n${extra}\n`}`
}
