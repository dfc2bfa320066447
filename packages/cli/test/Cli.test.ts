import { assert, describe, it } from "@effect/vitest"
import { Effect, Layer } from "effect"
import { readFileSync } from "node:fs"
import { parseArgs, UsageError } from "../src/Args.ts"
import { cli } from "../src/Cli.ts"
import { Io, memoryIo, type MemoryIo } from "../src/Io.ts"
import { buildRequest, splitHostPort } from "../src/Request.ts"
import { VERSION } from "../src/Version.ts"

const GOOD = `listen socks5 127.0.0.1:1080
set lan = cidrs [10.0.0.0/8]
policy main {
  guard lan when dst.ip in lan -> block "lan"
  rule web when dst.port in [80, 443] -> allow
  default block "no"
}
test "web" { connect example.com:443 } expect allow by web
test "lan" { connect 10.0.0.1:443 } expect block "lan" by lan
test "ssh" { connect example.com:22 } expect block by default
`
const FAILING = GOOD.replace('expect allow by web', 'expect block by web')
const BROKEN = GOOD.replace("-> allow", "-> via nowhere")

/** Runs the CLI on in-memory files; returns the exit status and the captured output. */
const run = (argv: string[], files: Record<string, string> = {}) => Effect.gen(function*() {
  const io: MemoryIo = memoryIo(files)
  const code = yield* cli(argv).pipe(Effect.provide(Layer.succeed(Io, io)))
  return { code, out: io.stdout(), err: io.stderr(), io }
})

describe("proxyd check", () => {
  it.effect("exits 0 with a summary line for a clean file", () => Effect.gen(function*() {
    const r = yield* run(["check", "a.rules"], { "a.rules": GOOD })
    assert.strictEqual(r.code, 0)
    assert.strictEqual(r.out, "a.rules: ok, 3 tests passed, 0 warnings\n")
  }))

  it.effect("exits 1 on a failing test and shows expected vs got", () => Effect.gen(function*() {
    const r = yield* run(["check", "a.rules"], { "a.rules": FAILING })
    assert.strictEqual(r.code, 1)
    assert.include(r.out, 'a.rules:8:1: error[X001]: test "web" failed: expected block by web, got allow by web')
    assert.include(r.out, "a.rules: 1 error, 2 tests passed, 1 failed, 0 warnings")
  }))

  it.effect("exits 1 on a checker error with file:line:col and a code frame", () => Effect.gen(function*() {
    const r = yield* run(["check", "a.rules"], { "a.rules": BROKEN })
    assert.strictEqual(r.code, 1)
    assert.match(r.out, /^a\.rules:5:\d+: error\[T\d+\]: .*nowhere/m)
    assert.include(r.out, "  5 |   rule web when dst.port in [80, 443] -> via nowhere")
    assert.include(r.out, "a.rules: 1 error, tests not run")
  }))

  it.effect("exits 2 with E001 and the OS message for an unreadable file", () => Effect.gen(function*() {
    const r = yield* run(["check", "a.rules", "missing.rules"], { "a.rules": GOOD })
    assert.strictEqual(r.code, 2)
    assert.include(r.out, "missing.rules:1:1: error[E001]: cannot read `missing.rules`: ENOENT: no such file or directory")
    assert.include(r.out, "a.rules: ok, 3 tests passed, 0 warnings\nmissing.rules: not read\n")
  }))

  it.effect("--require-tests makes a file without tests an error", () => Effect.gen(function*() {
    const text = GOOD.split("\ntest")[0] + "\n"
    const plain = yield* run(["check", "a.rules"], { "a.rules": text })
    assert.strictEqual(plain.code, 0)
    const strict = yield* run(["check", "--require-tests", "a.rules"], { "a.rules": text })
    assert.strictEqual(strict.code, 1)
    assert.include(strict.out, "error[X002]")
  }))

  it.effect("--format json prints one document with files, diagnostics, tests and uncovered rules", () => Effect.gen(function*() {
    const text = GOOD.replace(/test "ssh".*\n/, "")
    const r = yield* run(["check", "--format", "json", "a.rules"], { "a.rules": text })
    assert.strictEqual(r.code, 0)
    const doc = JSON.parse(r.out)
    assert.deepStrictEqual(doc.files, [{ file: "a.rules", ok: true, errors: 0, warnings: 1, tests: { passed: 2, failed: 0 } }])
    assert.deepStrictEqual(doc.tests.passed, 2)
    assert.deepStrictEqual(doc.uncovered, [{ file: "a.rules", policy: "main", rules: ["default"] }])
    assert.strictEqual(doc.diagnostics[0].code, "X010")
    assert.strictEqual(doc.diagnostics[0].line, 6)
  }))

  it.effect("usage errors exit 2 with a did-you-mean on stderr", () => Effect.gen(function*() {
    const a = yield* run(["check", "--formt", "json", "a.rules"], { "a.rules": GOOD })
    assert.strictEqual(a.code, 2)
    assert.include(a.err, "unknown option `--formt`, did you mean `--format`?")
    const b = yield* run(["check"])
    assert.strictEqual(b.code, 2)
    const c = yield* run(["chekc", "a.rules"])
    assert.strictEqual(c.code, 2)
    assert.include(c.err, "did you mean `check`?")
    const d = yield* run(["check", "--format", "xml", "a.rules"])
    assert.include(d.err, "must be one of human, json")
  }))
})

describe("proxyd explain", () => {
  it.effect("prints the decision, the rule with file:line, the matchers and the facts", () => Effect.gen(function*() {
    const r = yield* run(["explain", "a.rules", "--fact", "dst.ip=10.1.1.1", "connect", "intranet.example:443"], { "a.rules": GOOD })
    assert.strictEqual(r.code, 0)
    assert.include(r.out, '→ block "lan" by lan (a.rules:4) in policy main')
    assert.match(r.out, /dst\.ip in lan\s+true/)
    assert.include(r.out, "facts used: dst.ip = 10.1.1.1")
  }))

  it.effect("shows unknown facts and emits JSON on request", () => Effect.gen(function*() {
    const r = yield* run(["explain", "a.rules", "--format", "json", "connect", "example.com:22"], { "a.rules": GOOD })
    assert.strictEqual(r.code, 0)
    const doc = JSON.parse(r.out)
    assert.strictEqual(doc.rule, "default")
    assert.deepStrictEqual(doc.steps[0], { rule: "lan", matcher: "dst.ip in lan", value: "unknown" })
    assert.deepStrictEqual(doc.factsUsed, [{ fact: "dst.ip", value: null }])
  }))

  it.effect("adds the user's usergroups to the request", () => Effect.gen(function*() {
    const text = `listen socks5 127.0.0.1:1080
usergroup ops = [alice]
policy p {
  rule ops when group == ops -> allow
  default block
}
test "t" { user alice; connect a.example:1 } expect allow by ops
test "u" { connect a.example:1 } expect block
`
    const r = yield* run(["explain", "p.rules", "--user", "alice", "connect", "a.example:1"], { "p.rules": text })
    assert.include(r.out, "→ allow by ops")
    assert.include(r.out, "user alice groups [ops]")
  }))

  it.effect("rejects malformed requests with exit 2", () => Effect.gen(function*() {
    const files = { "a.rules": GOOD }
    for (const argv of [
      ["explain", "a.rules", "connect", "example.com"],
      ["explain", "a.rules", "send", "example.com:1"],
      ["explain", "a.rules", "--fact", "dst.ip=nope", "connect", "a:1"],
      ["explain", "a.rules", "--at", "yesterday", "connect", "a:1"],
      ["explain", "a.rules", "--policy", "nope", "connect", "a:1"],
      ["explain", "a.rules"],
    ]) {
      const r = yield* run(argv, files)
      assert.strictEqual(r.code, 2, argv.join(" "))
      assert.match(r.err, /^proxyd: /)
    }
  }))

  it.effect("picks the policy: --policy, else --listener's, else the default; several policies need a choice", () => Effect.gen(function*() {
    const text = `listen a = socks5 127.0.0.1:1080 policy open
listen b = socks5 127.0.0.1:1081 policy closed
policy open {
  default allow
}
policy closed {
  default block "closed"
}
test "open" { listener a; policy open; connect x.example:1 } expect allow
test "closed" { listener b; policy closed; connect x.example:1 } expect block
`
    const files = { "two.rules": text }
    const byListener = yield* run(["explain", "two.rules", "--listener", "b", "connect", "x.example:1"], files)
    assert.include(byListener.out, '→ block "closed" by default')
    assert.include(byListener.out, "in policy closed")
    const byPolicy = yield* run(["explain", "two.rules", "--listener", "b", "--policy", "open", "connect", "x.example:1"], files)
    assert.include(byPolicy.out, "→ allow by default")
    const none = yield* run(["explain", "two.rules", "connect", "x.example:1"], files)
    assert.strictEqual(none.code, 2)
    assert.include(none.err, "several policies (open, closed): choose one with --policy")
    const badListener = yield* run(["explain", "two.rules", "--listener", "c", "connect", "x.example:1"], files)
    assert.strictEqual(badListener.code, 2)
    assert.include(badListener.err, "no listener named `c`")
  }))

  it.effect("exits 1 with the diagnostics when the file does not check", () => Effect.gen(function*() {
    const r = yield* run(["explain", "a.rules", "connect", "a:1"], { "a.rules": BROKEN })
    assert.strictEqual(r.code, 1)
    assert.include(r.err, "error[T")
  }))
})

describe("proxyd fmt, graph, diff, run", () => {
  const messy = "listen   socks5 127.0.0.1:1080\npolicy p {\n  default    allow\n}\n"

  it.effect("fmt prints, checks and writes", () => Effect.gen(function*() {
    const printed = yield* run(["fmt", "m.rules"], { "m.rules": messy })
    assert.strictEqual(printed.code, 0)
    assert.include(printed.out, "listen socks5 127.0.0.1:1080\n")
    const checked = yield* run(["fmt", "--check", "m.rules", "c.rules"], { "m.rules": messy, "c.rules": printed.out })
    assert.strictEqual(checked.code, 1)
    assert.strictEqual(checked.out, "m.rules\n")
    const written = yield* run(["fmt", "--write", "m.rules"], { "m.rules": messy })
    assert.strictEqual(written.code, 0)
    assert.strictEqual(written.io.files.get("m.rules"), printed.out)
    const many = yield* run(["fmt", "m.rules", "c.rules"], { "m.rules": messy, "c.rules": messy })
    assert.strictEqual(many.code, 2)
  }))

  it.effect("graph prints DOT", () => Effect.gen(function*() {
    const r = yield* run(["graph", "a.rules"], { "a.rules": GOOD })
    assert.strictEqual(r.code, 0)
    assert.match(r.out, /^digraph /)
  }))

  it.effect("diff lists changed requests and says so when there are none", () => Effect.gen(function*() {
    const after = GOOD.replace("[80, 443]", "[443]")
    const r = yield* run(["diff", "old.rules", "new.rules"], { "old.rules": GOOD, "new.rules": after })
    assert.strictEqual(r.code, 0)
    assert.match(r.out, /^connect \S+:80: allow by web → block "no" by default$/m)
    const same = yield* run(["diff", "old.rules", "old.rules"], { "old.rules": GOOD })
    assert.strictEqual(same.out, "no differences\n")
    const json = yield* run(["diff", "--format", "json", "old.rules", "new.rules"], { "old.rules": GOOD, "new.rules": after })
    const doc = JSON.parse(json.out)
    assert.strictEqual(doc.differences[0].before.rule, "web")
    assert.strictEqual(doc.differences[0].after.rule, "default")
  }))

  it.effect("run refuses a file that does not check (1) and needs --rules (2)", () => Effect.gen(function*() {
    const bad = yield* run(["run", "--rules", "a.rules"], { "a.rules": BROKEN })
    assert.strictEqual(bad.code, 1)
    assert.include(bad.err, "a.rules:")
    const none = yield* run(["run"])
    assert.strictEqual(none.code, 2)
  }))

  it.effect("never prints secret values: explain and graph show env() references only", () => Effect.gen(function*() {
    const text = `listen socks5 127.0.0.1:1080
upstream corp = socks5://corp.example:1080 auth env(CORP_USER) env(CORP_PASS)
policy p {
  rule r when dst.port == 443 -> via corp
  default allow
}
test "t" { connect a.example:443 } expect via corp
test "u" { connect a.example:80 } expect allow
`
    const secret = "hunter2-secret-value"
    process.env["CORP_PASS"] = secret
    try {
      for (const argv of [["explain", "s.rules", "connect", "a.example:443"], ["graph", "s.rules"], ["check", "--format", "json", "s.rules"]]) {
        const r = yield* run(argv, { "s.rules": text })
        assert.strictEqual(r.code, 0)
        assert.notInclude(r.out + r.err, secret)
      }
    } finally {
      delete process.env["CORP_PASS"]
    }
  }))
})

describe("help and version", () => {
  it.effect("--version prints the package version", () => Effect.gen(function*() {
    const r = yield* run(["--version"])
    assert.strictEqual(r.out, `proxyd ${VERSION}\n`)
    const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"))
    assert.strictEqual(VERSION, pkg.version)
  }))

  it.effect("--help lists the commands; each command has its own help", () => Effect.gen(function*() {
    const r = yield* run(["--help"])
    assert.strictEqual(r.code, 0)
    for (const c of ["check", "explain", "fmt", "graph", "diff", "run"]) assert.include(r.out, `  ${c} `)
    for (const c of ["check", "explain", "fmt", "graph", "diff", "run"]) {
      const h = yield* run([c, "--help"])
      assert.strictEqual(h.code, 0)
      assert.include(h.out, `Usage: proxyd ${c}`)
    }
    const none = yield* run([])
    assert.strictEqual(none.code, 2)
    assert.include(none.err, "Usage: proxyd COMMAND")
  }))
})

describe("argument parsing", () => {
  it("parses --flag=value, repeated flags, -- and positionals anywhere", () => {
    const spec = { fact: { kind: "string", value: "F", multiple: true, description: "" }, format: { kind: "string", value: "F", description: "" }, x: { kind: "boolean", description: "" } } as const
    const p = parseArgs(["a", "--fact=dst.ip=1.2.3.4", "--fact", "dst.country=DE", "--x", "b", "--", "--format"], spec, "t")
    assert.deepStrictEqual(p, { flags: { fact: ["dst.ip=1.2.3.4", "dst.country=DE"], x: true }, positionals: ["a", "b", "--format"] })
    assert.instanceOf(parseArgs(["--format", "a", "--format", "b"], spec, "t"), UsageError)
    assert.instanceOf(parseArgs(["--format"], spec, "t"), UsageError)
    assert.instanceOf(parseArgs(["--x=1"], spec, "t"), UsageError)
    assert.instanceOf(parseArgs(["-q"], spec, "t"), UsageError)
  })

  it("splits host:port forms and builds requests", () => {
    assert.deepStrictEqual(splitHostPort("[::1]:80"), { host: "::1", port: 80 })
    assert.deepStrictEqual(splitHostPort("example.com:443"), { host: "example.com", port: 443 })
    assert.strictEqual(splitHostPort("a:b:c"), undefined)
    const req = buildRequest({ command: "udp", target: "[::ffff:127.0.0.1]:53", src: "10.0.0.1:5000", user: "alice", groups: ["ops"], at: "2026-03-01T23:00Z", facts: ["dst.asn=AS13335", "dst.country=de"] })
    assert.deepStrictEqual(req, {
      command: "udp", dstHost: "::ffff:127.0.0.1", dstPort: 53, srcIp: "10.0.0.1", srcPort: 5000, user: "alice", groups: ["ops"], auth: "password",
      time: Date.UTC(2026, 2, 1, 23), facts: { "dst.asn": 13335, "dst.country": "DE" },
    })
    assert.strictEqual(typeof buildRequest({ command: "connect", target: "a:70000", groups: [], facts: [] }), "string")
    assert.strictEqual(typeof buildRequest({ command: "connect", target: "a:1", src: "host.example", groups: [], facts: [] }), "string")
  })
})
