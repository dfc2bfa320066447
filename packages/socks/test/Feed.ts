/** Test helper: feeds bytes to codecs through a `ByteReader` in arbitrary pieces. */
import { Wire } from "@proxyd/runtime"

/** Feeds `bytes` in pieces cut at `cuts`; parses one message per parser, in order; returns them and the bytes left. */
export const feed = (parsers: ReadonlyArray<(b: Buffer) => Wire.Parse<unknown>>, bytes: Buffer, cuts: ReadonlyArray<number>) => {
  const reader = new Wire.ByteReader()
  const out: Array<Wire.Parse<unknown>> = []
  const points = [...new Set(cuts.map((c) => c % (bytes.length + 1)))].sort((a, b) => a - b)
  let prev = 0
  for (const p of [...points, bytes.length]) {
    reader.push(bytes.subarray(prev, p))
    prev = p
    while (out.length < parsers.length) {
      const r = reader.take(parsers[out.length]!)
      if (r.k === "more") break
      out.push(r)
      if (r.k === "error") return { out, rest: reader.rest() }
    }
  }
  return { out, rest: reader.rest() }
}
