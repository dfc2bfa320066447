import { describe, expect, it } from "vitest"
import fc from "fast-check"
import * as H from "../src/HttpHead.ts"
import { ChunkedScanner } from "../src/Chunked.ts"

const req = (text: string) => H.parseRequestHead(Buffer.from(text, "latin1"))
const proxy = (text: string) => {
  const r = req(text)
  if (r.k !== "ok") throw new Error(`head did not parse: ${JSON.stringify(r)}`)
  return H.toProxyRequest(r.value)
}

describe("HttpHead", () => {
  it("parses CONNECT authority-form, including [v6]:port", () => {
    expect(proxy("CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n")).toMatchObject({ kind: "connect", target: { host: "example.com", port: 443 } })
    expect(proxy("CONNECT [2001:db8::1]:8443 HTTP/1.1\r\n\r\n")).toMatchObject({ kind: "connect", target: { host: "2001:db8::1", port: 8443 } })
    expect(proxy("CONNECT 10.0.0.1:22 HTTP/1.0\r\n\r\n")).toMatchObject({ kind: "connect", target: { host: "10.0.0.1", port: 22 }, keepAlive: false })
    for (const bad of ["example.com", "example.com:0", "example.com:65536", "[::1]", "[nope]:80", ":80", "exa_mple..com:1", "[::1]x:80"]) {
      expect(proxy(`CONNECT ${bad} HTTP/1.1\r\n\r\n`)).toBeTypeOf("string")
    }
  })

  it("parses absolute-form with default port, query and v6 literal", () => {
    expect(proxy("GET http://Example.com/a/b?c=d HTTP/1.1\r\nHost: example.com\r\n\r\n")).toMatchObject({
      kind: "forward", target: { host: "Example.com", port: 80 }, path: "/a/b?c=d", framing: { k: "none" }, keepAlive: true,
    })
    expect(proxy("GET http://[::1]:8080 HTTP/1.1\r\nHost: [::1]:8080\r\n\r\n")).toMatchObject({ target: { host: "::1", port: 8080 }, path: "/" })
    expect(proxy("GET http://h?x HTTP/1.1\r\nHost: h\r\n\r\n")).toMatchObject({ path: "/?x" })
    expect(proxy("GET http://h/ HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n")).toMatchObject({ keepAlive: false })
  })

  it("rejects origin-form, other schemes, userinfo, missing/bad authority, duplicate Host", () => {
    expect(proxy("GET / HTTP/1.1\r\nHost: h\r\n\r\n")).toBe("origin-form request to a proxy")
    expect(proxy("OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n")).toBe("origin-form request to a proxy")
    expect(proxy("GET https://h/ HTTP/1.1\r\nHost: h\r\n\r\n")).toBeTypeOf("string")
    expect(proxy("GET http://u:p@h/ HTTP/1.1\r\nHost: h\r\n\r\n")).toBe("userinfo in the request URI")
    expect(proxy("GET http:/// HTTP/1.1\r\nHost: h\r\n\r\n")).toBe("missing or bad authority")
    expect(proxy("GET http://h:x/ HTTP/1.1\r\nHost: h\r\n\r\n")).toBe("missing or bad authority")
    expect(proxy("GET http://h/ HTTP/1.1\r\n\r\n")).toBe("missing Host header")
    expect(proxy("GET http://h/ HTTP/1.1\r\nHost: h\r\nhost: h\r\n\r\n")).toBe("duplicate Host header")
  })

  it("body framing: Content-Length, chunked; rejects CL+TE, bad CL, other codings", () => {
    expect(proxy("POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\n")).toMatchObject({ framing: { k: "length", n: 5 } })
    expect(proxy("POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 5, 5\r\n\r\n")).toMatchObject({ framing: { k: "length", n: 5 } })
    expect(proxy("POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: Chunked\r\n\r\n")).toMatchObject({ framing: { k: "chunked" } })
    expect(proxy("POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n")).toBe("Content-Length with Transfer-Encoding")
    for (const cl of ["-1", "5a", "", "5, 6", "1e3", "0x10"]) {
      expect(proxy(`POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: ${cl}\r\n\r\n`)).toBe("bad Content-Length")
    }
    expect(proxy("POST http://h/ HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")).toBe("bad Content-Length")
    expect(proxy("POST http://h/ HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n")).toBe("unsupported Transfer-Encoding")
  })

  it("strict syntax: whitespace before colon, obs-fold, bare LF, control bytes, bad request line → 400", () => {
    const bad = [
      "GET http://h/ HTTP/1.1\r\nHost : h\r\n\r\n",
      "GET http://h/ HTTP/1.1\r\nHost: h\r\nX-A: 1\r\n  folded\r\n\r\n",
      "GET http://h/ HTTP/1.1\nHost: h\r\n\r\n",
      "GET http://h/ HTTP/1.1\r\nHost: h\rX: y\r\n\r\n",
      "GET http://h/ HTTP/1.1\r\nHost: h\x01\r\n\r\n",
      "GET http://h/ HTTP/1.1\r\nBad(Name): x\r\n\r\n",
      "GET  http://h/ HTTP/1.1\r\n\r\n",
      "GET http://h/ HTTP/2.0\r\n\r\n",
      "G@T http://h/ HTTP/1.1\r\n\r\n",
      "GET http://h/\x7f HTTP/1.1\r\n\r\n",
    ]
    for (const text of bad) expect(req(text)).toMatchObject({ k: "error", code: "400" })
    expect(req("\r\nGET http://h/ HTTP/1.1\r\nHost: h\r\n\r\n").k).toBe("ok")
  })

  it("431 when no complete head fits in the limit; more while under it", () => {
    const big = `GET http://h/ HTTP/1.1\r\nHost: h\r\nX: ${"a".repeat(70_000)}`
    expect(req(big)).toMatchObject({ k: "error", code: "431" })
    expect(req(big.slice(0, 1000))).toEqual({ k: "more" })
    expect(H.parseRequestHead(Buffer.from(`${big}\r\n\r\n`))).toMatchObject({ k: "error", code: "431" })
  })

  it("Proxy-Authorization Basic: case-insensitive scheme, split at the first colon", () => {
    const b64 = (s: string) => Buffer.from(s).toString("base64")
    expect(H.parseBasic(`Basic ${b64("alice:pa:ss")}`)).toEqual({ user: "alice", pass: "pa:ss" })
    expect(H.parseBasic(`bAsIc ${b64("bob:")}`)).toEqual({ user: "bob", pass: "" })
    expect(H.parseBasic(`Bearer ${b64("a:b")}`)).toBeUndefined()
    expect(H.parseBasic(`Basic ${b64("nocolon")}`)).toBeUndefined()
    expect(H.parseBasic("Basic !!!")).toBeUndefined()
  })

  it("hop-by-hop headers and headers named in Connection are stripped", () => {
    const headers: H.Header[] = [["Host", "h"], ["Connection", "keep-alive, X-Secret"], ["X-Secret", "1"], ["Proxy-Authorization", "Basic x"],
      ["Proxy-Connection", "keep-alive"], ["Keep-Alive", "5"], ["TE", "trailers"], ["Upgrade", "h2c"], ["Transfer-Encoding", "chunked"], ["X-Ok", "2"]]
    expect(H.endToEnd(headers).map(([n]) => n)).toEqual(["Host", "Transfer-Encoding", "X-Ok"])
  })

  it("response framing per RFC 9112 §6.3", () => {
    const res = (text: string) => (H.parseResponseHead(Buffer.from(text)) as { value: H.ResponseHead }).value
    expect(H.responseFraming("GET", res("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"))).toEqual({ k: "length", n: 3 })
    expect(H.responseFraming("HEAD", res("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"))).toEqual({ k: "none" })
    expect(H.responseFraming("GET", res("HTTP/1.1 204 No Content\r\n\r\n"))).toEqual({ k: "none" })
    expect(H.responseFraming("GET", res("HTTP/1.1 304 Not Modified\r\nContent-Length: 9\r\n\r\n"))).toEqual({ k: "none" })
    expect(H.responseFraming("GET", res("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"))).toEqual({ k: "chunked" })
    expect(H.responseFraming("GET", res("HTTP/1.0 200 OK\r\n\r\n"))).toEqual({ k: "close" })
    expect(H.parseResponseHead(Buffer.from("HTTP/1.1 200\r\n\r\n")).k).toBe("ok")
    expect(H.parseResponseHead(Buffer.from("HTTP/1.1 20 OK\r\n\r\n"))).toMatchObject({ k: "error", code: "502" })
  })

  it("property: random bytes never throw", () => {
    fc.assert(fc.property(fc.uint8Array({ maxLength: 400 }), (b) => {
      for (const r of [H.parseRequestHead(Buffer.from(b)), H.parseResponseHead(Buffer.from(b))]) expect(["more", "ok", "error"]).toContain(r.k)
      const text = Buffer.from(b).toString("latin1")
      const head = H.parseRequestHead(Buffer.from(`GET http://h/ HTTP/1.1\r\nHost: h\r\nX: ${text}\r\n\r\n`, "latin1"))
      if (head.k === "ok") expect(typeof H.toProxyRequest(head.value)).not.toBe("undefined")
      expect(H.parseBasic(text) === undefined || typeof H.parseBasic(text)!.user === "string").toBe(true)
    }), { numRuns: 2000 })
  })
})

const chunked = (parts: ReadonlyArray<Uint8Array>, trailer = "") =>
  Buffer.concat([...parts.map((p) => Buffer.concat([Buffer.from(`${p.length.toString(16)};x=y\r\n`), p, Buffer.from("\r\n")])), Buffer.from(`0\r\n${trailer}\r\n`)])

describe("ChunkedScanner", () => {
  it("finds the end of a chunked body, with extensions and trailers, and leaves what follows", () => {
    const body = chunked([Buffer.from("hello"), Buffer.from("world!")], "X-T: 1\r\n")
    const s = new ChunkedScanner()
    expect(s.feed(Buffer.concat([body, Buffer.from("NEXT")]))).toBe(body.length)
    expect(s.done).toBe(true)
  })

  it("rejects framing errors", () => {
    for (const bad of ["x\r\n", "5\r\nhello\n", "5\nhello\r\n", "5\r\nhelloXX", "1234567890abcd\r\n", "0\r\nX: 1\n\r\n"]) {
      expect(new ChunkedScanner().feed(Buffer.from(bad))).toBe("error")
    }
  })

  it("property: any split finds the same end", () => {
    fc.assert(fc.property(fc.array(fc.uint8Array({ minLength: 1, maxLength: 300 }), { maxLength: 6 }), fc.array(fc.nat(3000), { maxLength: 8 }), (parts, cuts) => {
      const body = chunked(parts)
      const stream = Buffer.concat([body, Buffer.from("tail")])
      const points = [...new Set(cuts.map((c) => c % stream.length))].sort((a, b) => a - b)
      const s = new ChunkedScanner()
      let consumed = 0
      let prev = 0
      for (const p of [...points, stream.length]) {
        if (s.done) break
        const n = s.feed(stream.subarray(prev, p))
        expect(n).not.toBe("error")
        consumed += n as number
        prev = p
      }
      expect(s.done).toBe(true)
      expect(consumed).toBe(body.length)
    }), { numRuns: 500 })
  })
})
