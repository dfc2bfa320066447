/**
 * Outbound reasons to protocol replies: every SOCKS5 REP code and HTTP status
 * the issue names (RFC 1928 §6), including the ones no loopback test can
 * provoke end to end (network unreachable needs a destination without a route).
 */
import { describe, expect, it } from "vitest"
import { httpStatus, type OutboundReason, socks5Rep } from "../src/Errors.ts"
import { reasonOf } from "../src/Outbound.ts"

describe("outbound reasons", () => {
  it("errno → reason → SOCKS5 REP and HTTP status", () => {
    const cases: ReadonlyArray<readonly [OutboundReason, number, number]> = [
      [{ _tag: "General", message: "x" }, 0x01, 502],
      [{ _tag: "Blocked" }, 0x02, 403],
      [reasonOf({ code: "ENETUNREACH" }, "h"), 0x03, 502],
      [reasonOf({ code: "ENETDOWN" }, "h"), 0x03, 502],
      [reasonOf({ code: "EHOSTUNREACH" }, "h"), 0x04, 502],
      [reasonOf({ code: "ENOTFOUND" }, "h"), 0x04, 502],
      [reasonOf({ code: "ECONNREFUSED" }, "h"), 0x05, 502],
      [reasonOf({ code: "ETIMEDOUT" }, "h"), 0x06, 504],
      [{ _tag: "CommandNotSupported" }, 0x07, 400],
      [reasonOf({ code: "EAFNOSUPPORT" }, "h"), 0x08, 400],
      [reasonOf({ code: "EWHATEVER" }, "h"), 0x01, 502],
    ]
    for (const [reason, rep, status] of cases) {
      expect(socks5Rep(reason), reason._tag).toBe(rep)
      expect(httpStatus(reason), reason._tag).toBe(status)
    }
  })
})
