/**
 * Runs a checked program's `test` blocks and reports rule coverage.
 *
 * Details: each test is evaluated with the compiled evaluator (`missing:
 * "unknown"`: every fact a test does not give is unknown) and cross-checked
 * with the reference interpreter. Diagnostics:
 *  - `X001` (error): a test whose decision differs from its `expect`, with the
 *    expected and actual outcome and a note at the deciding rule.
 *  - `X010` (warning): per policy, the rules no test reaches (only when the
 *    program has at least one test).
 *  - `X099` (error): the compiled evaluator and the reference interpreter
 *    disagree. That is a bug in proxyd, never in the rules file.
 *
 * Gotchas: `via X else ACTION` decides `via X`; the `else` action is the
 * runtime's fallback and is not what a test compares.
 */
import type { Span } from "./Ast.ts"
import { type Diagnostic, error, fileSpan, warning } from "./Diagnostic.ts"
import type { ActionIR, Decision, ExpectIR, Outcome, PolicyIR, Program, Request, RuleIR, TestIR } from "./Ir.ts"
import { compile, type CompiledPolicy } from "./Compiler.ts"
import { evaluate } from "./Evaluator.ts"
import { evaluateReference } from "./Reference.ts"

export interface TestResult {
  readonly test: TestIR
  readonly passed: boolean
  /** Undefined only when the test names a policy the program does not have. */
  readonly decision: Decision | undefined
  /** Why it failed. */
  readonly message?: string
}

export interface Uncovered {
  readonly policy: string
  readonly rules: ReadonlyArray<string>
}

export interface TestRun {
  readonly results: ReadonlyArray<TestResult>
  readonly diagnostics: ReadonlyArray<Diagnostic>
  /** Per policy, the rules no test reaches (empty when the program has no tests). */
  readonly uncovered: ReadonlyArray<Uncovered>
}

export interface RunOptions {
  /** Replaces the compiled evaluator (used to test the cross-check itself). */
  readonly evaluate?: (policy: PolicyIR, req: Request) => Outcome
}

const UNKNOWN = { missing: "unknown" } as const

/** `host:port`, with brackets around an IPv6 host. */
export const hostPort = (host: string, port: number): string => (host.includes(":") ? `[${host}]:${port}` : `${host}:${port}`)

/** One outcome as written in a test's `expect` (`block "msg"`, `via corp`, `redirect "h:p"`). */
export const formatAction = (a: ActionIR | ExpectIR): string => {
  switch (a.k) {
    case "allow": return "allow"
    case "block": return a.message === undefined ? "block" : `block ${JSON.stringify(a.message)}`
    case "redirect":
      if ("host" in a) return `redirect "${hostPort(a.host, a.port)}"`
      return a.target === undefined ? "redirect" : `redirect "${a.target}"`
    case "via": return `via ${a.target}`
    case "tor": return a.target === undefined ? "tor" : `tor ${a.target}`
  }
}

export const formatDecision = (d: Decision): string => `${formatAction(d.action)} by ${d.rule}`

const sameRedirect = (expected: string, host: string, port: number): boolean => {
  const bare = expected.startsWith("[") ? expected.replace(/^\[([^\]]*)\]/, "$1") : expected
  return expected === hostPort(host, port) || bare === `${host}:${port}`
}

/** Why `decision` does not meet the expectation, or undefined when it does. */
export const mismatch = (expect: ExpectIR, expectRule: string | undefined, decision: Decision): string | undefined => {
  const got = decision.action
  const want = expectRule === undefined ? formatAction(expect) : `${formatAction(expect)} by ${expectRule}`
  const fail = (): string => `expected ${want}, got ${formatDecision(decision)}`
  if (got.k !== expect.k) return fail()
  switch (expect.k) {
    case "block":
      if (expect.message !== undefined && (got.k !== "block" || got.message !== expect.message)) return fail()
      break
    case "redirect":
      if (expect.target !== undefined && (got.k !== "redirect" || !sameRedirect(expect.target, got.host, got.port))) return fail()
      break
    case "via":
      if (got.k !== "via" || got.target !== expect.target) return fail()
      break
    case "tor":
      if (expect.target !== undefined && (got.k !== "tor" || got.target !== expect.target)) return fail()
      break
    case "allow":
      break
  }
  if (expectRule !== undefined && decision.rule !== expectRule) return fail()
  return undefined
}

const shellWord = (w: string): string => (/^[\w.:@%+=,/[\]-]+$/.test(w) ? w : `'${w.replace(/'/g, "'\\''")}'`)

/** The `proxyd explain` command line that reproduces a test's request. */
export const explainCommand = (test: TestIR): string => {
  const r = test.request
  const words = ["proxyd", "explain", test.span.file, "--policy", test.policy]
  if (r.srcIp !== undefined) words.push("--src", r.srcPort === undefined ? r.srcIp : hostPort(r.srcIp, r.srcPort))
  if (r.user !== undefined) words.push("--user", r.user)
  for (const g of r.groups ?? []) words.push("--group", g)
  if (r.listener !== undefined) words.push("--listener", r.listener)
  if (r.protocol !== undefined) words.push("--protocol", r.protocol)
  if (r.auth !== undefined && r.auth !== (r.user === undefined ? "none" : "password")) words.push("--auth", r.auth)
  if (r.time !== undefined) words.push("--at", new Date(r.time).toISOString())
  for (const [k, v] of Object.entries(r.facts ?? {})) if (v !== undefined && v !== null) words.push("--fact", `${k}=${v}`)
  words.push(r.command, hostPort(r.dstHost, r.dstPort))
  return words.map(shellWord).join(" ")
}

const sameDecision = (a: Decision, b: Decision): boolean =>
  a.rule === b.rule && a.ruleKind === b.ruleKind && JSON.stringify(a.action) === JSON.stringify(b.action)

const allRules = (p: PolicyIR): ReadonlyArray<RuleIR> => [...p.guards, ...p.rules, p.default]

const ruleSpan = (p: PolicyIR, name: string): Span | undefined => allRules(p).find((r) => r.name === name)?.span

const decisionOf = (o: Outcome): Decision | undefined => (o.type === "decision" ? o.decision : undefined)

/** Runs every test of `program`; never throws. */
export const runTests = (program: Program, opts: RunOptions = {}): TestRun => {
  const compiled = new Map<string, CompiledPolicy>()
  const evaluateCompiled = opts.evaluate ?? ((policy: PolicyIR, req: Request): Outcome => {
    let c = compiled.get(policy.name)
    if (c === undefined) {
      c = compile(policy)
      compiled.set(policy.name, c)
    }
    return evaluate(c, req, UNKNOWN)
  })
  const results: TestResult[] = []
  const diagnostics: Diagnostic[] = []
  const reached = new Map<string, Set<string>>()

  for (const test of program.tests) {
    const policy = program.policies.get(test.policy)
    if (policy === undefined) {
      const message = `test "${test.name}" uses policy \`${test.policy}\`, which does not exist`
      results.push({ test, passed: false, decision: undefined, message })
      diagnostics.push(error("X001", message, test.span))
      continue
    }
    let fast: Decision | undefined
    let internal: string | undefined
    try {
      fast = decisionOf(evaluateCompiled(policy, test.request))
      if (fast === undefined) internal = "the compiled evaluator asked for a fact with missing: unknown"
    } catch (e) {
      internal = `the compiled evaluator threw: ${e instanceof Error ? e.message : String(e)}`
    }
    const slow = decisionOf(evaluateReference(policy, test.request, UNKNOWN))!
    if (internal === undefined && fast !== undefined && !sameDecision(fast, slow)) {
      internal = `the compiled evaluator decided ${formatDecision(fast)}, the reference interpreter ${formatDecision(slow)}`
    }
    if (internal !== undefined) {
      diagnostics.push(error("X099", `internal error in test "${test.name}": ${internal}`, test.span, {
        hint: "this is a bug in proxyd, not in your rules; please report it with this file",
      }))
    }
    // The reference interpreter defines the semantics: judge the test by it.
    const decision = slow
    let seen = reached.get(policy.name)
    if (seen === undefined) reached.set(policy.name, (seen = new Set()))
    seen.add(decision.rule)
    const why = mismatch(test.expect, test.expectRule, decision)
    if (why === undefined) {
      results.push({ test, passed: internal === undefined, decision, ...(internal === undefined ? {} : { message: internal }) })
      continue
    }
    const message = `test "${test.name}" failed: ${why}`
    results.push({ test, passed: false, decision, message })
    const span = ruleSpan(policy, decision.rule)
    diagnostics.push(error("X001", message, test.span, {
      notes: [{ message: `decided by ${decision.ruleKind === "default" ? "the default" : `${decision.ruleKind} \`${decision.rule}\``} of policy \`${policy.name}\``, ...(span === undefined ? {} : { span }) }],
      hint: `to see every rule it visits, run: ${explainCommand(test)}`,
    }))
  }

  const uncovered: Uncovered[] = []
  if (program.tests.length > 0) {
    for (const policy of program.policies.values()) {
      const seen = reached.get(policy.name) ?? new Set<string>()
      const rules = allRules(policy).map((r) => r.name).filter((name) => !seen.has(name))
      if (rules.length === 0) continue
      uncovered.push({ policy: policy.name, rules })
      const first = allRules(policy).find((r) => r.name === rules[0])
      const span = first?.span ?? policy.span ?? fileSpan(program.files[0] ?? "<input>")
      diagnostics.push(warning("X010", `no test reaches ${rules.length === 1 ? "rule" : "rules"} ${rules.map((r) => `\`${r}\``).join(", ")} of policy \`${policy.name}\``, span, {
        hint: "add a `test` block whose request each of these rules decides",
      }))
    }
  }
  return { results, diagnostics, uncovered }
}
