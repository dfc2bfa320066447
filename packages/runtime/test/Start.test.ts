import * as net from "node:net"
import { Effect } from "effect"
import { describe, expect, it } from "vitest"
import { Check, Render } from "@proxyd/rules"
import { parseListen } from "../src/Config.ts"
import * as Log from "../src/Log.ts"
import { startServer, type ServerOptions } from "../src/Server.ts"
import { allHandlers, lineHandler, tempDir, writeRules } from "./support.ts"

const refusal = async (rules: string, extra: Partial<ServerOptions> = {}): Promise<string> => {
  const file = writeRules(tempDir(), rules)
  const exit = await Effect.runPromiseExit(startServer({ rulesFile: file, handlers: allHandlers, log: Log.memory(), watch: false, ...extra }))
  if (exit._tag === "Success") {
    await Effect.runPromise(exit.value.shutdown(0))
    throw new Error("the server started")
  }
  return String(exit.cause)
}

describe("refusing to start", () => {
  it("a file that does not check prints the same diagnostics as `check`", async () => {
    const text = "listen t = http 127.0.0.1:0\npolicy default {\n  rule r when dst.prot == 1 -> block\n  default allow\n}\n"
    const file = writeRules(tempDir(), text)
    const exit = await Effect.runPromiseExit(startServer({ rulesFile: file, handlers: allHandlers, log: Log.memory(), watch: false }))
    expect(exit._tag).toBe("Failure")
    const checked = Check.checkFiles([file], Check.nodeReader)
    const expected = Render.renderHuman(checked.diagnostics, checked.sources)
    expect(expected).toContain("dst.prot")
    expect(String(exit._tag === "Failure" ? exit.cause : "")).toContain(expected.split("\n")[0]!)
  })

  it("features the runtime cannot enforce yet: via, tor, GeoIP fields, limits", async () => {
    expect(await refusal(`
listen t = http 127.0.0.1:0
upstream up = socks5://127.0.0.1:9050
policy default {
  rule out when dst.port == 80 -> via up
  default allow
}
`)).toMatch(/via up.*issue 4/)
    expect(await refusal(`
listen t = http 127.0.0.1:0
tor t1 = socks 127.0.0.1:9050
policy default {
  rule o when dst.domain in [.onion] -> tor
  default allow
}
`)).toMatch(/Tor needs the Tor outbound \(`@proxyd\/tor`\), which this server was started without/)
    expect(await refusal(`
listen t = http 127.0.0.1:0
policy default {
  rule r when dst.port == 80 -> allow limit 10
  default allow
}
`)).toMatch(/limits are not enforced/)
    expect(await refusal(`
geoip "country.mmdb"
listen t = http 127.0.0.1:0
policy default {
  rule de when dst.country == DE -> block
  default allow
}
`)).toMatch(/`dst.country` in rule `de`.*GeoIP lookups are not implemented/)
  })

  it("MD5 ($apr1$) hashes are refused, naming the user but never the hash", async () => {
    const hash = "$apr1$abcdefgh$abcdefghijklmnopqrstuv"
    const msg = await refusal(`
listen t = http 127.0.0.1:0 auth users
auth users = static {
  alice "${hash}"
}
policy default { default allow }
`)
    expect(msg).toMatch(/user `alice`: weak hash formats/)
    expect(msg).not.toContain(hash)
  })

  it("a listener kind without its protocol handler", async () => {
    expect(await refusal("listen m = mixed 127.0.0.1:0\npolicy default { default allow }\n", { handlers: { http: lineHandler("http") } }))
      .toMatch(/listener `m` \(mixed\): no socks5 protocol handler/)
  })

  it("a port in use", async () => {
    const busy = net.createServer()
    await new Promise<void>((r) => busy.listen(0, "127.0.0.1", r))
    const port = (busy.address() as net.AddressInfo).port
    try {
      expect(await refusal(`listen t = http 127.0.0.1:${port}\npolicy default { default allow }\n`)).toMatch(/EADDRINUSE/)
    } finally {
      busy.close()
    }
  })

  it("--listen overrides: parsed, and a bad one refuses", async () => {
    expect(parseListen("socks5://127.0.0.1:1080")).toEqual({ kind: "socks5", host: "127.0.0.1", port: 1080 })
    expect(parseListen("[::1]:8080")).toEqual({ kind: "mixed", host: "::1", port: 8080 })
    expect(parseListen("ftp://1.2.3.4:21")).toMatch(/unknown listener protocol/)
    expect(parseListen("127.0.0.1")).toMatch(/expected/)
    expect(await refusal("listen t = http 127.0.0.1:0\npolicy default { default allow }\n", { listen: ["nope"] })).toMatch(/--listen/)
  })
})
