/**
 * `proxyd graph`: the compiled decision graph as Graphviz DOT.
 *
 * Details: left to right: one node per field index (and one for the rules that
 * are always candidates), one node per index key (a domain pattern, a CIDR, a
 * port range, a value), edges key → candidate rule, then the rule's residual
 * condition (what is left to check once its trigger holds) → the action.
 * Rules are labelled with their position (`#3`), so first-match order is
 * visible; guards are drawn as octagons; a rule with the same condition as an
 * earlier one hangs off it by a dashed edge (it is never a candidate). Long value lists are shortened.
 *
 * Gotchas: the graph shows the plan, not every evaluation detail: the
 * evaluator re-checks the whole condition of a candidate (three-valued), and a
 * trigger on a costly fact not looked up yet makes all rules of its field
 * candidates.
 */
import { type CompiledPolicy, plans } from "./Compiler.ts"
import type { ActionIR, Cond, Matcher } from "./Ir.ts"
import { formatCidr } from "./Ip.ts"

const MAX_ITEMS = 5

const list = (xs: ReadonlyArray<string>): string =>
  xs.length === 1 ? xs[0] : `[${xs.slice(0, MAX_ITEMS).join(", ")}${xs.length > MAX_ITEMS ? `, … (${xs.length} in all)` : ""}]`

const q = (s: string): string => JSON.stringify(s)

/** The values of a matcher as written, one string each. */
export const matcherValues = (m: Matcher): ReadonlyArray<string> => {
  switch (m.kind) {
    case "ip": return m.cidrs.map(formatCidr)
    case "port": return m.ranges.map(([lo, hi]) => (lo === hi ? `${lo}` : `${lo}..${hi}`))
    case "domain": return m.patterns.map((p) => (p.t === "exact" ? p.d : p.t === "suffix" ? `.${p.d}` : p.t === "sub" ? `*.${p.d}` : p.t === "glob" ? `matches ${q(p.g)}` : `regex ${q(p.r)}`))
    case "string": return m.patterns.map((p) => (p.t === "exact" ? p.s : p.t === "glob" ? `matches ${q(p.g)}` : `regex ${q(p.r)}`))
    case "group": case "enum": case "country": case "plugin": return m.values
    case "asn": return m.values.map((a) => `AS${a}`)
    case "time": {
      const days = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"].filter((_, i) => (m.days & (1 << i)) !== 0).join(",")
      const hm = (x: number) => `${String(Math.floor(x / 60)).padStart(2, "0")}:${String(x % 60).padStart(2, "0")}`
      return [`${days} ${m.windows.map(([a, b]) => `${hm(a)}-${hm(b)}`).join(" ")} tz ${q(m.tz)}`]
    }
  }
}

export const matcherText = (m: Matcher, setRef?: string): string =>
  m.kind === "time" ? `time ${matcherValues(m)[0]}` : m.kind === "plugin" ? `${m.name} in ${list(m.values)}` : `${m.field} in ${setRef ?? list(matcherValues(m))}`

export const condText = (c: Cond): string => {
  switch (c.k) {
    case "true": return "true"
    case "match": return matcherText(c.m, c.setRef)
    case "not": return `not (${condText(c.c)})`
    case "and": return c.items.map((i) => (i.k === "or" ? `(${condText(i)})` : condText(i))).join(" and ")
    case "or": return c.items.map(condText).join(" or ")
  }
}

export const actionText = (a: ActionIR): string => {
  switch (a.k) {
    case "allow": return "allow"
    case "block": return a.message === undefined ? "block" : `block ${q(a.message)}`
    case "redirect": return `redirect ${a.host}:${a.port}`
    case "via": return `via ${a.target}${a.else === undefined ? "" : ` else ${actionText(a.else)}`}`
    case "tor": return `tor ${a.target}`
  }
}

/** A DOT string literal. */
const dot = (s: string): string => `"${s.replace(/\\/g, "\\\\").replace(/"/g, '\\"').replace(/\n/g, "\\n")}"`

export const toDot = (c: CompiledPolicy): string => {
  const out: string[] = [`digraph ${dot(`policy ${c.policy.name}`)} {`, "  rankdir=LR;", '  node [shape=box, fontname="monospace"];']
  const fieldNodes = new Map<string, string>()
  const keyNodes = new Map<string, string>()
  const actionNodes = new Map<string, string>()
  const fieldNode = (field: string): string => {
    let id = fieldNodes.get(field)
    if (id === undefined) {
      id = `ix${fieldNodes.size}`
      fieldNodes.set(field, id)
      out.push(`  ${id} [label=${dot(`index ${field}`)}, shape=cylinder];`)
    }
    return id
  }
  const actionNode = (text: string): string => {
    let id = actionNodes.get(text)
    if (id === undefined) {
      id = `act${actionNodes.size}`
      actionNodes.set(text, id)
      out.push(`  ${id} [label=${dot(text)}, shape=oval];`)
    }
    return id
  }
  const always = c.always >= 0 ? "always" : undefined
  if (always !== undefined) out.push(`  ${always} [label="always candidates", shape=cylinder];`)
  for (const plan of plans(c)) {
    const r = `r${plan.position}`
    const guard = plan.rule.kind === "guard"
    out.push(`  ${r} [label=${dot(`#${plan.position} ${plan.rule.kind} ${plan.rule.name}`)}${guard ? ", shape=octagon" : ""}];`)
    if (plan.shadowedBy !== undefined) {
      out.push(`  r${plan.shadowedBy} -> ${r} [label="same condition: never reached", style=dashed];`)
      continue
    }
    if (plan.triggers === undefined) out.push(`  ${always} -> ${r};`)
    else {
      for (const m of plan.triggers) {
        for (const v of matcherValues(m)) {
          const key = `${m.field}\u0000${v}`
          let k = keyNodes.get(key)
          if (k === undefined) {
            k = `k${keyNodes.size}`
            keyNodes.set(key, k)
            out.push(`  ${k} [label=${dot(v)}, shape=ellipse];`)
            out.push(`  ${fieldNode(m.field)} -> ${k};`)
          }
          out.push(`  ${k} -> ${r};`)
        }
      }
    }
    const action = actionNode(guard ? actionText({ k: "block", ...(plan.rule.action.k === "block" && plan.rule.action.message !== undefined ? { message: plan.rule.action.message } : {}) }) : actionText(plan.rule.action))
    if (plan.residual.k === "true") out.push(`  ${r} -> ${action} [label="true"];`)
    else {
      const cnode = `c${plan.position}`
      out.push(`  ${cnode} [label=${dot(condText(plan.residual))}, shape=diamond];`)
      out.push(`  ${r} -> ${cnode};`)
      out.push(`  ${cnode} -> ${action} [label="true"];`)
    }
  }
  const def = actionNode(actionText(c.policy.default.action))
  out.push(`  default [label=${dot(`default (no candidate true)`)}, shape=box, style=dashed];`)
  out.push(`  default -> ${def};`)
  out.push("}")
  return out.join("\n") + "\n"
}
