/**
 * `proxyd explain FILE [request flags] connect|bind|udp HOST:PORT`: the
 * decision for one request, the deciding rule with `file:line`, every rule
 * and matcher visited (true / false / unknown) and the facts used.
 *
 * Details: facts not given are unknown, exactly as in `test` blocks; give
 * them with `--fact dst.ip=1.2.3.4`. The file must check (errors: exit 1);
 * bad flags or request words: exit 2.
 */
import * as Effect from "effect/Effect"
import { Explain } from "@proxyd/rules"
import { bool, type FlagSpec, helpText, type Parsed, str, strs, UsageError } from "./Args.ts"
import { checkEntry, renderDiagnostics, summaryLine } from "./CheckCommand.ts"
import { Io } from "./Io.ts"
import { choosePolicy } from "./Policy.ts"
import { buildRequest } from "./Request.ts"

export const explainFlags = {
  policy: { kind: "string", value: "NAME", description: "the policy to ask (default: --listener's policy, else the file's default policy)" },
  src: { kind: "string", value: "IP[:PORT]", description: "client address" },
  user: { kind: "string", value: "USER", description: "authenticated user (sets auth password)" },
  group: { kind: "string", value: "GROUP", multiple: true, description: "a group of the user (repeatable)" },
  listener: { kind: "string", value: "NAME", description: "listener the request arrived on" },
  protocol: { kind: "string", value: "socks4|socks5|http", choices: ["socks4", "socks5", "http"], description: "client protocol" },
  auth: { kind: "string", value: "none|password", choices: ["none", "password"], description: "how the client authenticated (default: password with --user, else none)" },
  at: { kind: "string", value: "ISO-TIME", description: "request time, e.g. 2026-03-02T09:30Z (default: unknown)" },
  fact: { kind: "string", value: "NAME=VALUE", multiple: true, description: "a looked-up fact: dst.ip=IP, dst.country=CC, dst.asn=N, src.country=CC, src.asn=N (repeatable)" },
  format: { kind: "string", value: "human|json", choices: ["human", "json"], description: "output format (default human)" },
  "no-color": { kind: "boolean", description: "no ANSI colours in diagnostics" },
} as const satisfies Record<string, FlagSpec>

export const explainHelp = helpText(
  "proxyd explain FILE [options] connect|bind|udp HOST:PORT",
  "Shows how a policy decides one request: the outcome, the deciding rule (file:line),\neach rule visited with each matcher true/false/unknown, and the facts used.\nFacts not given (--fact, --src, --user, --at) are unknown.",
  explainFlags,
  "Example: proxyd explain rulesets/default.rules --fact dst.ip=127.0.0.1 connect intranet.example:80\nExit status: 0 explained, 1 the file has errors, 2 usage or I/O errors.",
)

export const runExplain = (args: Parsed) => Effect.gen(function*() {
  const io = yield* Io
  const [file, command, target, ...rest] = args.positionals
  if (file === undefined || command === undefined || target === undefined) {
    return yield* new UsageError({ message: "explain needs FILE and a request, e.g. `proxyd explain x.rules connect example.com:443`", command: "explain" })
  }
  if (rest.length > 0) return yield* new UsageError({ message: `unexpected argument \`${rest[0]}\``, command: "explain" })
  const req = buildRequest({
    command, target, src: str(args, "src"), user: str(args, "user"), groups: strs(args, "group"), listener: str(args, "listener"),
    protocol: str(args, "protocol"), auth: str(args, "auth"), at: str(args, "at"), facts: strs(args, "fact"),
  })
  if (typeof req === "string") return yield* new UsageError({ message: req, command: "explain" })
  const report = checkEntry(io, file, { runTests: false })
  if (report.program === undefined) {
    io.err(renderDiagnostics(report, io.color && !bool(args, "no-color")))
    io.err(`${summaryLine(report)}\n`)
    return report.ioError ? 2 : 1
  }
  const program = report.program
  const chosen = choosePolicy(program, str(args, "policy"), str(args, "listener"))
  if (!chosen.ok) return yield* new UsageError({ message: chosen.message, command: "explain" })
  if (req.listener !== undefined && !program.listeners.some((l) => l.name === req.listener)) {
    return yield* new UsageError({ message: `no listener named \`${req.listener}\``, command: "explain" })
  }
  // As in `test` blocks: the user's groups are the given ones plus every `usergroup` listing the user.
  const groups = new Set(req.groups ?? [])
  if (req.user !== undefined) for (const [g, users] of program.usergroups) if (users.includes(req.user)) groups.add(g)
  const full = groups.size === 0 ? req : { ...req, groups: [...groups] }
  const result = Explain.explain(program, chosen.name, full)
  io.out(str(args, "format") === "json" ? `${JSON.stringify(result, null, 2)}\n` : Explain.renderExplain(result))
  return 0
})
