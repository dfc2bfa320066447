/**
 * A strict parser of the Prometheus text exposition format (version 0.0.4).
 *
 * Details: used by tests to prove `/metrics` is well formed, and handy for
 * tools. Checks: metric and label name syntax, `# TYPE` at most once per
 * family and before its samples, sample names belonging to their family
 * (`_bucket`/`_sum`/`_count` for histograms, `_sum`/`_count` and `quantile` for
 * summaries), label value escapes (`\\`, `\"`, `\n` only), float values
 * (`NaN`, `+Inf`, `-Inf`, any case, as Prometheus reads them), no duplicate series, histogram buckets cumulative
 * with a `+Inf` bucket equal to `_count`. Throws `Error("line N: ...")`.
 */

export interface Sample { readonly name: string; readonly labels: Readonly<Record<string, string>>; readonly value: number }
export interface Family { readonly name: string; type: string; help: string; readonly samples: Array<Sample> }

const METRIC = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/
const TYPES = new Set(["counter", "gauge", "histogram", "summary", "untyped"])

const num = (s: string, at: string): number => {
  // As Prometheus (Go's ParseFloat): NaN and Inf/Infinity in any case (prom-client writes `Nan`).
  if (/^nan$/i.test(s)) return Number.NaN
  if (/^\+?inf(inity)?$/i.test(s)) return Number.POSITIVE_INFINITY
  if (/^-inf(inity)?$/i.test(s)) return Number.NEGATIVE_INFINITY
  if (!/^[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?$/.test(s)) throw new Error(`${at}: bad value \`${s}\``)
  return Number(s)
}

const familyOf = (sample: string, families: ReadonlyMap<string, Family>): Family | undefined => {
  const f = families.get(sample)
  if (f !== undefined && f.type !== "histogram" && f.type !== "summary") return f
  for (const suf of ["_bucket", "_sum", "_count"]) {
    if (!sample.endsWith(suf)) continue
    const base = families.get(sample.slice(0, -suf.length))
    if (base !== undefined && (base.type === "histogram" || (base.type === "summary" && suf !== "_bucket"))) return base
  }
  return f?.type === "summary" ? f : undefined
}

export const parse = (text: string): Map<string, Family> => {
  const families = new Map<string, Family>()
  const seen = new Set<string>()
  if (text.length > 0 && !text.endsWith("\n")) throw new Error("exposition must end with a newline")
  const lines = text.split("\n")
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!
    const at = `line ${i + 1}`
    if (line === "") continue
    if (line.startsWith("#")) {
      const m = /^# (HELP|TYPE) (\S+) ?(.*)$/.exec(line)
      if (m === null) continue // a plain comment
      const [, kw, name, rest] = m as unknown as [string, string, string, string]
      if (!METRIC.test(name)) throw new Error(`${at}: bad metric name \`${name}\``)
      const f = families.get(name) ?? { name, type: "untyped", help: "", samples: [] }
      if (kw === "TYPE") {
        if (!TYPES.has(rest)) throw new Error(`${at}: unknown type \`${rest}\``)
        if (families.has(name) && (f.samples.length > 0 || f.type !== "untyped")) throw new Error(`${at}: TYPE for \`${name}\` after its samples or twice`)
        f.type = rest
      } else f.help = rest
      families.set(name, f)
      continue
    }
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( -?\d+)?$/.exec(line)
    if (m === null) throw new Error(`${at}: not a sample: ${line}`)
    const name = m[1]!
    const labels: Record<string, string> = {}
    let body = m[3] ?? ""
    for (let n = 0; body.length > 0 && n < 1000; n++) {
      const lm = /^([^=]+)="((?:[^"\\]|\\.)*)"(,?)/.exec(body)
      if (lm === null || !LABEL.test(lm[1]!)) throw new Error(`${at}: bad labels \`${m[3]}\``)
      if (Object.hasOwn(labels, lm[1]!)) throw new Error(`${at}: label \`${lm[1]}\` twice`)
      const raw = lm[2]!
      if (/\\[^\\"n]/.test(raw.replace(/\\\\/g, ""))) throw new Error(`${at}: bad escape in \`${raw}\``)
      labels[lm[1]!] = raw.replace(/\\(.)/g, (_x, c: string) => (c === "n" ? "\n" : c))
      body = body.slice(lm[0].length)
      if (lm[3] === "" && body.length > 0) throw new Error(`${at}: labels not separated by commas`)
    }
    const value = num(m[4]!, at)
    const f = familyOf(name, families) ?? (() => {
      const g: Family = { name, type: "untyped", help: "", samples: [] }
      families.set(name, g)
      return g
    })()
    const key = `${name}{${Object.keys(labels).sort().map((k) => `${k}=${labels[k]}`).join(",")}}`
    if (seen.has(key)) throw new Error(`${at}: duplicate series ${key}`)
    seen.add(key)
    f.samples.push({ name, labels, value })
  }
  for (const f of families.values()) if (f.type === "histogram") checkHistogram(f)
  return families
}

const checkHistogram = (f: Family): void => {
  const groups = new Map<string, { buckets: Array<[number, number]>; count?: number }>()
  for (const s of f.samples) {
    const { le, ...rest } = s.labels
    const k = JSON.stringify(Object.entries(rest).sort())
    const g = groups.get(k) ?? { buckets: [] }
    groups.set(k, g)
    if (s.name === `${f.name}_bucket`) {
      if (le === undefined) throw new Error(`histogram ${f.name}: bucket without le`)
      g.buckets.push([num(le, f.name), s.value])
    } else if (s.name === `${f.name}_count`) g.count = s.value
  }
  for (const g of groups.values()) {
    const b = g.buckets.sort((x, y) => x[0] - y[0])
    for (let i = 1; i < b.length; i++) if (b[i]![1] < b[i - 1]![1]) throw new Error(`histogram ${f.name}: buckets not cumulative`)
    const inf = b[b.length - 1]
    if (inf === undefined || inf[0] !== Number.POSITIVE_INFINITY) throw new Error(`histogram ${f.name}: no +Inf bucket`)
    if (g.count !== inf[1]) throw new Error(`histogram ${f.name}: +Inf bucket ${inf[1]} != _count ${g.count}`)
  }
}

/** The value of one series, or undefined. */
export const value = (families: ReadonlyMap<string, Family>, family: string, sample: string, labels: Readonly<Record<string, string>> = {}): number | undefined => {
  const f = families.get(family)
  const s = f?.samples.find((x) => x.name === sample && Object.entries(labels).every(([k, v]) => x.labels[k] === v))
  return s?.value
}
