import { describe, expect, it } from "vitest"
import { authenticateCommand, infoValue, parseBootstrap, parseCircuits, parseStreams, quoted, ReplyParser } from "../src/Control.ts"

describe("control reply parser", () => {
  it("single-line and multi-line replies, split anywhere", () => {
    const text = "250-version=0.4.9.11\r\n250 OK\r\n515 Authentication failed: Wrong length on authentication cookie.\r\n"
    for (let cut = 0; cut <= text.length; cut++) {
      const p = new ReplyParser()
      const got = [...p.push(text.slice(0, cut)), ...p.push(text.slice(cut))]
      expect(got).toEqual([
        { code: 250, lines: ["version=0.4.9.11", "OK"] },
        { code: 515, lines: ["Authentication failed: Wrong length on authentication cookie."] },
      ])
    }
  })
  it("data blocks (250+) end at a lone dot and undouble leading dots; async events are skipped", () => {
    const p = new ReplyParser()
    const r = p.push("650 STREAM 1 NEW 0 x:80\r\n250+stream-status=\r\n1 SUCCEEDED 5 a.onion:80\r\n..dots\r\n.\r\n250 OK\r\n")
    expect(r).toEqual([{ code: 250, lines: ["stream-status=", "1 SUCCEEDED 5 a.onion:80", ".dots", "OK"] }])
    expect(infoValue(r[0]!, "stream-status")).toBe("1 SUCCEEDED 5 a.onion:80\n.dots")
  })
  it("single-line GETINFO values; a missing key", () => {
    const [r] = new ReplyParser().push('250-status/bootstrap-phase=NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"\r\n250 OK\r\n')
    expect(infoValue(r!, "status/bootstrap-phase")).toBe('NOTICE BOOTSTRAP PROGRESS=100 TAG=done SUMMARY="Done"')
    expect(infoValue(r!, "version")).toBeUndefined()
  })
  it("rejects garbage", () => {
    expect(() => new ReplyParser().push("HTTP/1.0 200 OK\r\n")).toThrow(/malformed control reply/)
  })
})

describe("control commands and values", () => {
  it("AUTHENTICATE: none, hex cookie, quoted password with escapes", () => {
    expect(authenticateCommand(undefined)).toBe("AUTHENTICATE")
    expect(authenticateCommand({ cookie: Buffer.from([0, 0xab, 0xff]) })).toBe("AUTHENTICATE 00abff")
    expect(authenticateCommand({ password: 'a "b" \\c' })).toBe('AUTHENTICATE "a \\"b\\" \\\\c"')
    expect(quoted("")).toBe('""')
  })
  it("bootstrap phase", () => {
    expect(parseBootstrap('NOTICE BOOTSTRAP PROGRESS=45 TAG=loading_descriptors SUMMARY="Asking for relay descriptors"')).toEqual({ progress: 45, tag: "loading_descriptors", summary: "Asking for relay descriptors" })
    expect(parseBootstrap('WARN BOOTSTRAP PROGRESS=5 TAG=conn SUMMARY="Connecting" WARNING="Connection refused" REASON=CONNECTREFUSED')?.warning).toBe("Connection refused")
    expect(parseBootstrap("nonsense")).toBeUndefined()
  })
  it("stream-status and circuit-status", () => {
    expect(parseStreams("12 SUCCEEDED 7 127.0.0.1.$AB.exit:80\n13 NEW 0 x.onion:80\n")).toEqual([
      { id: "12", status: "SUCCEEDED", circuit: "7", target: "127.0.0.1.$AB.exit:80" },
      { id: "13", status: "NEW", circuit: "0", target: "x.onion:80" },
    ])
    expect(parseStreams("")).toEqual([])
    const c = parseCircuits('7 BUILT $A~a,$B~b,$C~c BUILD_FLAGS=NEED_CAPACITY PURPOSE=GENERAL SOCKS_USERNAME="proxyd:00ff" SOCKS_PASSWORD="proxyd" TIME_CREATED=2026\n8 EXTENDED $A~a PURPOSE=HS_VANGUARDS\n')
    expect(c).toEqual([
      { id: "7", status: "BUILT", purpose: "GENERAL", socksUsername: "proxyd:00ff" },
      { id: "8", status: "EXTENDED", purpose: "HS_VANGUARDS" },
    ])
  })
})
