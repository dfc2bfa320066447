/**
 * A streaming scanner for chunked transfer coding (RFC 9112 §7.1): finds where a chunked body ends.
 *
 * Details: the proxy forwards chunked bodies as they are (bytes unchanged); it
 * only needs to know which bytes belong to the message. `feed(bytes)` returns
 * how many of them do (all of them until the end is seen), or `"error"` on a
 * framing violation. Chunk-size lines (with extensions) are bounded to 4 KiB,
 * sizes to 13 hex digits (exact in a double), trailers to 64 KiB; nothing is buffered.
 */

const MAX_LINE = 4096
const MAX_TRAILERS = 64 * 1024

type State = "size" | "ext" | "size-lf" | "data" | "data-cr" | "data-lf" | "trailer-start" | "trailer" | "trailer-lf" | "end-lf" | "done"

export class ChunkedScanner {
  private state: State = "size"
  private size = 0
  private digits = 0
  private line = 0
  private trailers = 0
  get done(): boolean { return this.state === "done" }

  feed(b: Uint8Array): number | "error" {
    let i = 0
    while (i < b.length && this.state !== "done") {
      if (this.state === "data") {
        const n = Math.min(this.size, b.length - i)
        this.size -= n
        i += n
        if (this.size === 0) this.state = "data-cr"
        continue
      }
      const c = b[i++]!
      switch (this.state) {
        case "size": {
          const v = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1
          if (v >= 0) {
            if (++this.digits > 13) return "error"
            this.size = this.size * 16 + v
          } else if (this.digits === 0) return "error"
          else if (c === 0x0d) this.state = "size-lf"
          else if (c === 0x3b || c === 0x20 || c === 0x09) { this.state = "ext"; this.line = 0 }
          else return "error"
          break
        }
        case "ext":
          if (c === 0x0d) this.state = "size-lf"
          else if (c === 0x0a || ++this.line > MAX_LINE) return "error"
          break
        case "size-lf":
          if (c !== 0x0a) return "error"
          this.digits = 0
          if (this.size === 0) this.state = "trailer-start"
          else this.state = "data"
          break
        case "data-cr":
          if (c !== 0x0d) return "error"
          this.state = "data-lf"
          break
        case "data-lf":
          if (c !== 0x0a) return "error"
          this.state = "size"
          this.size = 0
          break
        case "trailer-start":
          if (c === 0x0d) this.state = "end-lf"
          else if (c === 0x0a) return "error"
          else this.state = "trailer"
          if (++this.trailers > MAX_TRAILERS) return "error"
          break
        case "trailer":
          if (++this.trailers > MAX_TRAILERS || c === 0x0a) return "error"
          if (c === 0x0d) this.state = "trailer-lf"
          break
        case "trailer-lf":
          if (c !== 0x0a) return "error"
          this.state = "trailer-start"
          break
        case "end-lf":
          if (c !== 0x0a) return "error"
          this.state = "done"
          break
      }
    }
    return i
  }
}
