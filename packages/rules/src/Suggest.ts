/**
 * "Did you mean": the closest candidate by edit distance.
 *
 * Details: Damerau–Levenshtein (optimal string alignment), case-insensitive.
 * A candidate is suggested when its distance is at most a third of the
 * longer word (at least 1, at most 3) — close enough to be a typo.
 */

export const distance = (a: string, b: string): number => {
  const x = a.toLowerCase()
  const y = b.toLowerCase()
  const d: number[][] = []
  for (let i = 0; i <= x.length; i++) d.push([i, ...new Array<number>(y.length).fill(0)])
  for (let j = 0; j <= y.length; j++) d[0]![j] = j
  for (let i = 1; i <= x.length; i++) {
    for (let j = 1; j <= y.length; j++) {
      const cost = x[i - 1] === y[j - 1] ? 0 : 1
      let v = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost)
      if (i > 1 && j > 1 && x[i - 1] === y[j - 2] && x[i - 2] === y[j - 1]) v = Math.min(v, d[i - 2]![j - 2]! + 1)
      d[i]![j] = v
    }
  }
  return d[x.length]![y.length]!
}

/** The best candidate within typo distance, or undefined. */
export const suggest = (word: string, candidates: Iterable<string>): string | undefined => {
  let best: string | undefined
  let bestD = Infinity
  for (const c of candidates) {
    if (c === word) continue
    const dist = distance(word, c)
    const limit = Math.min(3, Math.max(1, Math.floor(Math.max(word.length, c.length) / 3)))
    if (dist <= limit && dist < bestD) {
      best = c
      bestD = dist
    }
  }
  return best
}

/** `did you mean \`x\`?` or undefined. */
export const didYouMean = (word: string, candidates: Iterable<string>): string | undefined => {
  const s = suggest(word, candidates)
  return s === undefined ? undefined : `did you mean \`${s}\`?`
}
