/**
 * Small statistics for the network benchmark: median and min–max over rounds, quantiles over samples.
 */

export interface Summary { readonly median: number; readonly min: number; readonly max: number; readonly n: number }

/** Median (the lower middle for an even count) and min–max; null for no values. */
export const summary = (xs: ReadonlyArray<number>): Summary | null => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return null
  return { median: s[Math.floor((s.length - 1) / 2)]!, min: s[0]!, max: s[s.length - 1]!, n: s.length }
}

/** The `p` quantile (nearest rank) of sorted `xs`; NaN for none. */
export const quantile = (sorted: ArrayLike<number>, p: number): number =>
  sorted.length === 0 ? Number.NaN : sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(p * sorted.length) - 1))]!

/** Median, quartiles and a bootstrap 90 % interval of the median of some ratios (the interval null for fewer than 4). */
export interface Ratios { readonly median: number | null; readonly q1: number | null; readonly q3: number | null; readonly lo90: number | null; readonly hi90: number | null; readonly n: number }

const mid = (sorted: ReadonlyArray<number>): number => {
  const n = sorted.length
  return n % 2 === 1 ? sorted[(n - 1) / 2]! : (sorted[n / 2 - 1]! + sorted[n / 2]!) / 2
}

/** Per-pair ratios summarised: median (mean of the middle two for an even count), quartiles (nearest rank), and the 5th–95th percentile of the median over 2,000 resamples (a fixed seed, so a report is reproducible from its runs). */
export const ratios = (xs: ReadonlyArray<number>): Ratios => {
  const s = xs.filter((x) => Number.isFinite(x)).sort((a, b) => a - b)
  if (s.length === 0) return { median: null, q1: null, q3: null, lo90: null, hi90: null, n: 0 }
  let seed = 0x9e3779b9
  const rnd = () => { // mulberry32
    seed = (seed + 0x6d2b79f5) >>> 0
    let t = Math.imul(seed ^ (seed >>> 15), seed | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32
  }
  const B = 2000
  const meds = new Float64Array(B)
  const r = new Array<number>(s.length)
  for (let b = 0; b < B; b++) {
    for (let i = 0; i < s.length; i++) r[i] = s[Math.floor(rnd() * s.length)]!
    r.sort((a, c) => a - c)
    meds[b] = mid(r)
  }
  meds.sort()
  const ok = s.length >= 4
  return { median: mid(s), q1: quantile(s, 0.25), q3: quantile(s, 0.75), lo90: ok ? quantile(meds, 0.05) : null, hi90: ok ? quantile(meds, 0.95) : null, n: s.length }
}
