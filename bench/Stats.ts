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
