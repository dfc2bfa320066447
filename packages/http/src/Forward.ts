/**
 * Moving one HTTP message body, and one response, between two paused sockets without buffering whole bodies.
 *
 * Details: `copyBody` copies exactly the body the framing describes
 * (Content-Length, chunked — scanned by `ChunkedScanner` and passed through
 * unchanged —, or until the source closes), starting with the bytes already
 * in the source's reader; bytes past the end stay in the reader (the next
 * message). Each write waits for the kernel (backpressure).
 */
import type { Socket } from "node:net"
import { Effect } from "effect"
import { Wire } from "@proxyd/runtime"
import { ChunkedScanner } from "./Chunked.ts"
import type { Framing } from "./HttpHead.ts"

export type CopyResult = "done" | "source-error" | "sink-error"

/** Generator body written once (Effect.fnUntraced): one is made per message otherwise (docs/design/runtime.md). */
export const copyBody: (from: Socket, reader: Wire.ByteReader, to: Socket, framing: Framing) => Effect.Effect<CopyResult> = Effect.fnUntraced(
  function*(from: Socket, reader: Wire.ByteReader, to: Socket, framing: Framing) {
    if (framing.k === "none") return "done"
    if (framing.k === "length") {
      let left = framing.n
      while (left > 0) {
        const chunk = yield* Wire.readSome(from, reader)
        if (chunk === undefined) return "source-error"
        const part = chunk.subarray(0, left)
        reader.unshift(chunk.subarray(part.length))
        left -= part.length
        if (!(yield* Wire.write(to, part))) return "sink-error"
      }
      return "done"
    }
    if (framing.k === "chunked") {
      const scanner = new ChunkedScanner()
      while (!scanner.done) {
        const chunk = yield* Wire.readSome(from, reader)
        if (chunk === undefined) return "source-error"
        const n = scanner.feed(chunk)
        if (n === "error") return "source-error"
        reader.unshift(chunk.subarray(n))
        if (!(yield* Wire.write(to, chunk.subarray(0, n)))) return "sink-error"
      }
      return "done"
    }
    for (;;) {
      const chunk = yield* Wire.readSome(from, reader)
      if (chunk === undefined) return "done"
      if (!(yield* Wire.write(to, chunk))) return "sink-error"
    }
  },
)
