import { describe, expect, it } from "vitest"
import { cidrContains, cidrCovers, formatCidr, formatIp, parseCidr, parseIp } from "../src/Ip.ts"

describe("Ip", () => {
  it("parses strict IPv4 and IPv6, normalising IPv4-mapped addresses", () => {
    expect(parseIp("10.0.0.1")).toEqual({ family: 4, value: 0x0a000001n })
    expect(parseIp("::ffff:10.0.0.1")).toEqual({ family: 4, value: 0x0a000001n })
    expect(parseIp("::1")).toEqual({ family: 6, value: 1n })
    for (const bad of ["127.1", "1", "256.0.0.1", "01.2.3.4", "1.2.3.4.5", "fe80::1%eth0", "example.com", "", ":::"]) {
      expect(parseIp(bad)).toBeUndefined()
    }
  })

  it("reports prefix and host-bit errors with a fixed suggestion", () => {
    expect(parseCidr("10.0.0.0/33")).toMatchObject({ ok: false, reason: "bad-prefix" })
    expect(parseCidr("fd00::/129")).toMatchObject({ ok: false, reason: "bad-prefix" })
    expect(parseCidr("10.0.0.1/8")).toMatchObject({ ok: false, reason: "host-bits", fixed: "10.0.0.0/8" })
    expect(parseCidr("::ffff:127.0.0.0/104")).toMatchObject({ ok: true, cidr: { family: 4, prefix: 8 } })
    const c = parseCidr("2001:db8::/32")
    expect(c.ok && formatCidr(c.cidr)).toBe("2001:db8::/32")
  })

  it("tests containment and coverage", () => {
    const a = parseCidr("10.0.0.0/8"), b = parseCidr("10.1.0.0/16")
    if (!a.ok || !b.ok) throw new Error("parse")
    expect(cidrCovers(a.cidr, b.cidr)).toBe(true)
    expect(cidrCovers(b.cidr, a.cidr)).toBe(false)
    expect(cidrContains(b.cidr, parseIp("10.1.255.255")!)).toBe(true)
    expect(cidrContains(b.cidr, parseIp("10.2.0.0")!)).toBe(false)
    expect(formatIp(parseIp("192.168.1.2")!)).toBe("192.168.1.2")
  })
})
