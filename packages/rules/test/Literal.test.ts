import { describe, expect, it } from "vitest"
import * as L from "../src/Literal.ts"
import { checkRegex } from "../src/Regex.ts"

const value = <A>(r: L.Parsed<A>): A => {
  if (!r.ok) throw new Error(r.message)
  return r.value
}
const message = <A>(r: L.Parsed<A>): string => (r.ok ? "ok" : r.message)

describe("Literal.classify", () => {
  it("names the shape of each kind of bare token", () => {
    const cases: Array<[string, L.LiteralKind]> = [
      ["443", "int"], ["8000..8999", "range"], ["1h30m", "duration"], ["10MiB", "size"], ["20/s", "rate"],
      ["1MiB/s", "rate"], ["10.0.0.1", "ip"], ["::1", "ip"], ["10.0.0.0/8", "cidr"], ["example.com:443", "hostport"],
      ["[::1]:80", "hostport"], ["socks5://h:1080", "url"], ["08:00-20:00", "window"], ["Mon-Fri", "weekdays"],
      ["Sat,Sun", "weekdays"], ["2026-03-01T23:00Z", "timestamp"], ["example.com", "name"], ["a!b", "other"],
    ]
    expect(cases.map(([t]) => [t, L.classify(t)])).toEqual(cases)
  })
})

describe("Literal numbers and ranges", () => {
  it("parses ports and rejects out-of-range ones", () => {
    expect(value(L.parsePort("65535"))).toBe(65535)
    expect(message(L.parsePort("65536"))).toBe("port `65536` is out of range (0..65535)")
    expect(message(L.parsePort("http"))).toBe("expected a port number, found `http`")
  })

  it("parses port ranges and reports inverted ones with the fix", () => {
    expect(value(L.parsePortRange("8000..8999"))).toEqual([8000, 8999])
    expect(value(L.parsePortRange("22"))).toEqual([22, 22])
    expect(L.parsePortRange("90..80")).toEqual({ ok: false, message: "port range `90..80` is inverted (90 > 80)", hint: "write `80..90`" })
  })

  it("parses durations, also compound ones, and asks for a unit", () => {
    expect(["500ms", "10s", "5m", "2h", "1d", "1h30m"].map((d) => value(L.parseDuration(d)))).toEqual([500, 10_000, 300_000, 7_200_000, 86_400_000, 5_400_000])
    expect(L.parseDuration("30")).toEqual({ ok: false, message: "duration `30` has no unit", hint: "write `30s` or `30ms`" })
    expect(message(L.parseDuration("3w"))).toBe("expected a duration (`500ms`, `10s`, `5m`, `2h`, `1d`), found `3w`")
  })

  it("parses sizes in decimal and binary units", () => {
    expect(["512", "1KiB", "10MiB", "1GiB", "1kB", "1MB"].map((s) => value(L.parseSize(s)))).toEqual([512, 1024, 10 * 1024 ** 2, 1024 ** 3, 1000, 1e6])
    expect(message(L.parseSize("5XB"))).toBe("unknown size unit `XB`")
  })

  it("parses count rates and byte rates", () => {
    expect(value(L.parseRate("20/s"))).toEqual({ k: "count", count: 20, perSeconds: 1 })
    expect(value(L.parseRate("100/m"))).toEqual({ k: "count", count: 100, perSeconds: 60 })
    expect(value(L.parseRate("1MiB/s"))).toEqual({ k: "bytes", bytesPerSecond: 1024 ** 2 })
    expect(message(L.parseRate("5/w"))).toBe("unknown rate period `/w`")
    expect(message(L.parseRate("0/s"))).toBe("rate `0/s` is zero")
  })

  it("parses ASNs with and without the AS prefix", () => {
    expect(value(L.parseAsn("AS13335"))).toBe(13335)
    expect(value(L.parseAsn("13335"))).toBe(13335)
    expect(message(L.parseAsn("ASX"))).toBe("`ASX` is not an AS number (`13335` or `AS13335`)")
  })
})

describe("Literal addresses", () => {
  it("parses host:port for names, IPv4 and bracketed IPv6", () => {
    expect(value(L.parseHostPort("example.com:443"))).toEqual({ host: "example.com", port: 443 })
    expect(value(L.parseHostPort("10.0.0.1:80"))).toEqual({ host: "10.0.0.1", port: 80 })
    expect(value(L.parseHostPort("[2001:db8::1]:8080"))).toEqual({ host: "2001:db8::1", port: 8080 })
  })

  it("explains bad host:port forms", () => {
    expect(L.parseHostPort("example.com")).toEqual({ ok: false, message: "expected host:port, found `example.com`", hint: "add the port, e.g. `example.com:443`" })
    expect(L.parseHostPort("::1:80")).toEqual({ ok: false, message: "an IPv6 address with a port must be in brackets", hint: "write `[::1]:80`" })
    expect(message(L.parseHostPort("300.1.1.1:80"))).toBe("`300.1.1.1` is not an IPv4 address (four numbers 0..255)")
    expect(message(L.parseHostPort("a.com:99999"))).toBe("port `99999` is out of range (0..65535)")
  })

  it("parses URLs with userinfo and default-less ports", () => {
    expect(value(L.parseUrl("socks5://u:p@proxy.example:1080"))).toEqual({ scheme: "socks5", host: "proxy.example", port: 1080, userinfo: "u:p", path: "" })
    expect(value(L.parseUrl("http://[::1]:3128/"))).toEqual({ scheme: "http", host: "::1", port: 3128, userinfo: undefined, path: "/" })
    expect(message(L.parseUrl("proxy.example:1080"))).toBe("`proxy.example:1080` is not a URL")
  })
})

describe("Literal time", () => {
  it("parses windows, including 24:00 and windows over midnight", () => {
    expect(value(L.parseWindow("08:00-20:00"))).toEqual([480, 1200])
    expect(value(L.parseWindow("22:00-24:00"))).toEqual([1320, 1440])
    expect(value(L.parseWindow("22:00-06:00"))).toEqual([1320, 360])
    expect(message(L.parseWindow("25:00-26:00"))).toBe("`25:00` is not a time of day (00:00..23:59)")
    expect(message(L.parseWindow("10:00-10:00"))).toBe("time window `10:00-10:00` is empty")
  })

  it("parses weekday ranges, lists and wrapping ranges into a Sunday-0 bitmask", () => {
    expect(value(L.parseWeekdays("Mon-Fri"))).toBe(0b0111110)
    expect(value(L.parseWeekdays("Sat,Sun"))).toBe(0b1000001)
    expect(value(L.parseWeekdays("Fri-Mon"))).toBe(0b1100011)
    expect(message(L.parseWeekdays("Mon-Fry"))).toBe("`Fry` is not a weekday")
  })

  it("parses ISO timestamps with a zone and rejects impossible dates", () => {
    expect(value(L.parseTimestamp("2026-03-01T23:00Z"))).toBe(Date.UTC(2026, 2, 1, 23, 0))
    expect(value(L.parseTimestamp("2026-03-01T23:00:00+01:00"))).toBe(Date.UTC(2026, 2, 1, 22, 0))
    expect(message(L.parseTimestamp("2026-02-30T10:00Z"))).toBe("`2026-02-30` is not a valid date")
    expect(message(L.parseTimestamp("2026-03-01 10:00"))).toBe("expected an ISO 8601 time with a zone like `2026-03-01T23:00Z`, found `2026-03-01 10:00`")
  })
})

describe("Regex safety", () => {
  it("accepts linear patterns, including alternation that is not repeated and adjacent quantifiers", () => {
    expect(["^(com|net)$", "^[a-z0-9-]+\\.example$", "a.*b.*c", "[(]+x", "(ab){2}", "(a+)?"].map((r) => [r, checkRegex(r).ok])).toEqual(
      ["^(com|net)$", "^[a-z0-9-]+\\.example$", "a.*b.*c", "[(]+x", "(ab){2}", "(a+)?"].map((r) => [r, true]))
  })

  it("rejects nested repetition, repeated alternation, backreferences and lookaround (T033) and bad syntax (T032)", () => {
    expect(["(a+)+", "(a*)*", "(a|ab)*", "((a)+b)+", "(x+){2,}", "(a)\\1", "(?<n>a)\\k<n>", "a(?=b)", "(?<!x)y", "(", "[z-a]"].map((r) => {
      const c = checkRegex(r)
      return c.ok ? "ok" : c.code
    })).toEqual(["T033", "T033", "T033", "T033", "T033", "T033", "T033", "T033", "T033", "T032", "T032"])
  })
})
