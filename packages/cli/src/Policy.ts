/**
 * Picks the policy a command works on: `--policy`, else the policy of
 * `--listener`, else the program's default policy.
 */
import type { Ir } from "@proxyd/rules"

export const choosePolicy = (program: Ir.Program, policy: string | undefined, listener: string | undefined): { readonly ok: true; readonly name: string } | { readonly ok: false; readonly message: string } => {
  const names = [...program.policies.keys()]
  if (policy !== undefined) {
    return program.policies.has(policy) ? { ok: true, name: policy } : { ok: false, message: `no policy named \`${policy}\` (policies: ${names.join(", ") || "none"})` }
  }
  if (listener !== undefined) {
    const l = program.listeners.find((x) => x.name === listener)
    if (l === undefined) return { ok: false, message: `no listener named \`${listener}\` (listeners: ${program.listeners.map((x) => x.name).join(", ") || "none"})` }
    return { ok: true, name: l.policy }
  }
  if (program.defaultPolicy !== undefined) return { ok: true, name: program.defaultPolicy }
  if (names.length === 0) return { ok: false, message: "the file declares no policy" }
  return { ok: false, message: `the file has several policies (${names.join(", ")}): choose one with --policy` }
}
