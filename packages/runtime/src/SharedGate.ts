/**
 * Connection counters shared by worker threads: `Gate`s over one `SharedArrayBuffer`.
 *
 * Details: with `workers N` every worker admits connections against the same limits
 * (`max-connections`, `max-connections-per-ip`, a listener's own), so the counts live in
 * memory all workers see. The buffer is an `Int32Array`: a header (lock word, slots in use,
 * live slots, capacity) and an open-addressing table of 4-int slots
 * `[fingerprint hi, fingerprint lo, count, state]` (state 0 empty, 1 live, 2 deleted). A key is
 * a gate's scope (`*` for the process-wide gate, one string per listener binding) with or
 * without a source IP; the table keeps its 64-bit fingerprint (two 32-bit multiply-xorshift
 * hashes), not the string (a wrong match needs two keys alive at once with equal 64-bit
 * fingerprints: ~1e-10 at a million keys). `tryEnter` and `leave` are one critical section
 * each under a spin lock (`Atomics.compareExchange`, then `Atomics.wait` in 50 µs steps if the
 * holder was descheduled); a count that reaches 0 frees its slot. Deleted slots are swept by
 * rebuilding the table in place when live and deleted slots together reach three quarters.
 *
 * Gotchas: the table never grows. `capacityFor(maxConnections)` gives room for 8 keys per
 * allowed connection (each connection holds at most 4: two gates × total and per-IP); when
 * three quarters of the slots are live, a new key is refused and the connection with it
 * (`tryEnter` returns false, `full()` says why).
 */
import type { Gate } from "./Listener.ts"

const LOCK = 0
const USED = 1
const LIVE = 2
const CAP = 3
const HEADER = 4
const SLOT = 4

/** Slots for a policy allowing `maxConnections` at once: 8 keys each, at least 4,096, at most 2^21 (32 MiB). */
export const capacityFor = (maxConnections: number): number => {
  const want = Math.min(2 ** 21, Math.max(4096, Number.isFinite(maxConnections) ? maxConnections * 8 : 2 ** 21))
  let c = 4096
  while (c < want) c *= 2
  return c
}

/** The shared buffer for `capacity` slots (a power of two); hand it to every worker. */
export const allocate = (capacity: number): SharedArrayBuffer => {
  if (capacity < 16 || (capacity & (capacity - 1)) !== 0) throw new RangeError(`capacity must be a power of two >= 16, got ${capacity}`)
  const sab = new SharedArrayBuffer((HEADER + capacity * SLOT) * 4)
  new Int32Array(sab)[CAP] = capacity
  return sab
}

/** A hash state: two 32-bit lanes, continued character by character. */
interface Lanes { a: number; b: number }

const mix = (h: Lanes, s: string): void => {
  let a = h.a
  let b = h.b
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i)
    a = Math.imul(a ^ c, 0x9e3779b1)
    b = Math.imul(b ^ c, 0x85ebca77)
  }
  h.a = a
  h.b = b
}

const finish = (h: Lanes): void => {
  let a = h.a
  let b = h.b
  a = Math.imul(a ^ (a >>> 16), 0x7feb352d) ^ Math.imul(b ^ (b >>> 13), 0x846ca68b)
  b = Math.imul(b ^ (b >>> 16), 0x7feb352d) ^ Math.imul(a ^ (a >>> 15), 0xc2b2ae35)
  h.a = a | 0
  h.b = b | 0
}

export interface SharedCounters {
  /** A gate counting under `scope` (one per limit), limits read at each admission. */
  gate(scope: string, limits: () => { readonly max: number; readonly perIp: number }): Gate
  /** The current count of `scope`'s total, or of one source IP under it. */
  count(scope: string, ip?: string): number
  /** Live keys in the table. */
  live(): number
  /** Whether the last refusal was for want of table space (not a limit). */
  full(): boolean
}

export const attach = (sab: SharedArrayBuffer): SharedCounters => {
  const t = new Int32Array(sab)
  const cap = t[CAP]!
  const mask = cap - 1
  let wasFull = false

  const lock = (): void => {
    for (let spins = 0; Atomics.compareExchange(t, LOCK, 0, 1) !== 0; spins++) {
      if (spins > 200) Atomics.wait(t, LOCK, 1, 0.05)
    }
  }
  const unlock = (): void => {
    Atomics.store(t, LOCK, 0)
    Atomics.notify(t, LOCK, 1)
  }

  const limit = (cap * 3) >>> 2

  /** The slot (int offset) holding `a,b`, or -1; with `insert`, creates it (count 0), or -1 when the table is full. */
  const find = (a: number, b: number, insert: boolean): number => {
    let i = (a ^ b) & mask
    let tomb = -1
    let empty = -1
    for (let n = 0; n < cap; n++, i = (i + 1) & mask) {
      const o = HEADER + i * SLOT
      const st = t[o + 3]
      if (st === 0) { empty = o; break }
      if (st === 1 && t[o] === a && t[o + 1] === b) return o
      if (st === 2 && tomb < 0) tomb = o
    }
    if (!insert || t[LIVE]! + 1 > limit) return -1
    let at = tomb
    if (at < 0) {
      if (t[USED]! + 1 > limit) {
        // Deleted slots fill the table: re-insert the live ones, then look again.
        if (t[USED]! - t[LIVE]! < cap >>> 4) return -1
        rebuild()
        return find(a, b, true)
      }
      at = empty
      t[USED]!++
    }
    t[at] = a
    t[at + 1] = b
    t[at + 2] = 0
    t[at + 3] = 1
    t[LIVE]!++
    return at
  }

  /** Re-inserts the live slots so deleted ones stop lengthening probes. */
  const rebuild = (): void => {
    const keep: Array<number> = []
    for (let i = 0; i < cap; i++) {
      const o = HEADER + i * SLOT
      if (t[o + 3] === 1) keep.push(t[o]!, t[o + 1]!, t[o + 2]!)
      t[o] = 0
      t[o + 1] = 0
      t[o + 2] = 0
      t[o + 3] = 0
    }
    t[USED] = 0
    t[LIVE] = 0
    for (let k = 0; k < keep.length; k += 3) t[find(keep[k]!, keep[k + 1]!, true) + 2] = keep[k + 2]!
  }

  /** Frees a slot whose count is 0. */
  const dropIfZero = (o: number): void => {
    if (t[o + 2]! > 0) return
    t[o + 2] = 0
    t[o + 3] = 2
    t[LIVE]!--
  }
  const release = (o: number): void => {
    t[o + 2]!--
    dropIfZero(o)
  }

  const h: Lanes = { a: 0, b: 0 }
  const keyOf = (scope: Lanes, ip: string | undefined): void => {
    h.a = scope.a
    h.b = scope.b
    if (ip !== undefined) mix(h, ip)
    finish(h)
  }
  const scopeLanes = (scope: string): Lanes => {
    const s: Lanes = { a: 0x2545f491, b: 0x4f6cdd1d }
    mix(s, scope)
    // A separator no IP text contains, so `scope` + ip never equals another scope's total key.
    mix(s, "\u0000")
    return s
  }

  const count = (scope: string, ip?: string): number => {
    keyOf(scopeLanes(scope), ip)
    lock()
    try {
      const o = find(h.a, h.b, false)
      return o < 0 ? 0 : t[o + 2]!
    } finally { unlock() }
  }

  const gate = (scope: string, limits: () => { readonly max: number; readonly perIp: number }): Gate => {
    const s = scopeLanes(scope)
    keyOf(s, undefined)
    const ta = h.a
    const tb = h.b
    return {
      tryEnter: (ip) => {
        const l = limits()
        keyOf(s, ip)
        lock()
        try {
          const total = find(ta, tb, true)
          if (total < 0) { wasFull = true; return false }
          const one = find(h.a, h.b, true)
          if (one < 0) {
            dropIfZero(total)
            wasFull = true
            return false
          }
          if (t[total + 2]! >= l.max || t[one + 2]! >= l.perIp) {
            // Keys created just now (count 0) are freed again.
            dropIfZero(one)
            dropIfZero(total)
            wasFull = false
            return false
          }
          t[total + 2]!++
          t[one + 2]!++
          return true
        } finally { unlock() }
      },
      leave: (ip) => {
        keyOf(s, ip)
        lock()
        try {
          const one = find(h.a, h.b, false)
          if (one >= 0) release(one)
          const total = find(ta, tb, false)
          if (total >= 0) release(total)
        } finally { unlock() }
      },
      active: () => {
        lock()
        try {
          const o = find(ta, tb, false)
          return o < 0 ? 0 : t[o + 2]!
        } finally { unlock() }
      },
    }
  }

  return { gate, count, live: () => Atomics.load(t, LIVE), full: () => wasFull }
}
