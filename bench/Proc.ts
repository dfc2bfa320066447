/**
 * What the network benchmark reads from /proc: CPU time and memory of a process tree, the
 * machine's busy time, and the open-file limit.
 *
 * Details: `treeCpu` sums utime+stime+cutime+cstime over a process and its descendants, so a
 * child that exits (Dante's forked workers) moves its time into its waiting parent and the sum
 * is conserved. `meter()` brackets one measurement: the target's CPU, the harness's own
 * process (the load generator's threads), the endpoints' process, and "other load": the
 * machine's user+nice+system time minus everything in the harness's process tree (which holds
 * the targets and the endpoints), in cores. Steal and softirq time are reported apart: they are
 * not other processes, but they are noise.
 * Gotchas: clock ticks are USER_HZ = 100 (10 ms resolution); a process that exits without being
 * waited for loses its time.
 */
import { readdirSync, readFileSync } from "node:fs"

const HZ = 100

interface Stat { readonly ppid: number; readonly ticks: number }

const table = (withChildren: boolean): Map<number, Stat> => {
  const stats = new Map<number, Stat>()
  for (const d of readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue
    try {
      const s = readFileSync(`/proc/${d}/stat`, "utf8")
      const f = s.slice(s.lastIndexOf(")") + 2).split(" ") // f[0] is field 3 (state)
      const ticks = Number(f[11]) + Number(f[12]) + (withChildren ? Number(f[13]) + Number(f[14]) : 0)
      stats.set(Number(d), { ppid: Number(f[1]), ticks })
    } catch { /* exited meanwhile */ }
  }
  return stats
}

/** `pid` and every descendant of it that is alive now. */
export const tree = (pid: number): Array<number> => {
  const stats = table(false)
  const out: Array<number> = []
  for (const [p] of stats) {
    let q: number | undefined = p
    for (let depth = 0; q !== undefined && q > 1 && depth < 32; depth++) {
      if (q === pid) { out.push(p); break }
      q = stats.get(q)?.ppid
    }
  }
  return out
}

/** CPU seconds (user+system, with waited-for children) of `pid`'s process tree; 0 for undefined. */
export const treeCpu = (pid: number | undefined): number => {
  if (pid === undefined) return 0
  const stats = table(true)
  let ticks = 0
  for (const [p, s] of stats) {
    let q: number | undefined = p
    for (let depth = 0; q !== undefined && q > 1 && depth < 32; depth++) {
      if (q === pid) { ticks += s.ticks; break }
      q = stats.get(q)?.ppid
    }
  }
  return ticks / HZ
}

/** CPU seconds of one process alone (all its threads, no children). */
export const ownCpu = (pid: number): number => {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8")
    const f = s.slice(s.lastIndexOf(")") + 2).split(" ")
    return (Number(f[11]) + Number(f[12])) / HZ
  } catch { return 0 }
}

export const alive = (pid: number | undefined): boolean => {
  if (pid === undefined) return true
  try {
    const s = readFileSync(`/proc/${pid}/stat`, "utf8")
    return s.slice(s.lastIndexOf(")") + 2, s.lastIndexOf(")") + 3) !== "Z"
  } catch { return false }
}

/** Machine-wide CPU seconds from the first line of /proc/stat. */
const machine = (): { used: number; steal: number; softirq: number } => {
  const f = readFileSync("/proc/stat", "utf8").split("\n", 1)[0]!.trim().split(/\s+/).slice(1).map(Number)
  // user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
  return { used: (f[0]! + f[1]! + f[2]!) / HZ, softirq: (f[5]! + f[6]!) / HZ, steal: (f[7] ?? 0) / HZ }
}

export interface MeterReading {
  /** wall seconds */
  readonly wall: number
  /** CPU seconds of the target's process tree */
  readonly proxyCpu: number
  /** CPU seconds of the harness process alone (main thread + worker threads: the load generator) */
  readonly clientCpu: number
  /** CPU seconds of the endpoints process (echo, first-byte) */
  readonly endpointCpu: number
  /** cores used by processes outside the harness's tree */
  readonly otherCores: number
  /** cores of softirq+irq time and of steal (not charged to any process) */
  readonly softirqCores: number
  readonly stealCores: number
}

/** Starts a meter; the returned function reads it. */
export const meter = (targetPid: number | undefined, endpointPid: number | undefined): (() => MeterReading) => {
  const t0 = performance.now()
  const m0 = machine()
  const all0 = treeCpu(process.pid)
  const p0 = targetPid === undefined ? 0 : treeCpu(targetPid)
  const c0 = ownCpu(process.pid)
  const e0 = endpointPid === undefined ? 0 : ownCpu(endpointPid)
  return () => {
    const wall = (performance.now() - t0) / 1000
    const m1 = machine()
    const all = treeCpu(process.pid) - all0
    return {
      wall,
      proxyCpu: targetPid === undefined ? 0 : treeCpu(targetPid) - p0,
      clientCpu: ownCpu(process.pid) - c0,
      endpointCpu: endpointPid === undefined ? 0 : ownCpu(endpointPid) - e0,
      otherCores: Math.max(0, (m1.used - m0.used - all) / wall),
      softirqCores: (m1.softirq - m0.softirq) / wall,
      stealCores: (m1.steal - m0.steal) / wall,
    }
  }
}

export interface Memory {
  /** sum of VmRSS over the tree, KiB */
  readonly rssKiB: number
  /** sum of Pss from smaps_rollup, KiB; null when unreadable */
  readonly pssKiB: number | null
  readonly processes: number
}

/** VmRSS (and PSS when readable) summed over `pid`'s process tree. */
export const treeMemory = (pid: number): Memory => {
  let rss = 0
  let pss: number | null = 0
  const pids = tree(pid)
  for (const p of pids) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${p}/status`, "utf8"))
      rss += m === null ? 0 : Number(m[1])
    } catch { /* exited */ }
    try {
      const m = /^Pss:\s+(\d+) kB/m.exec(readFileSync(`/proc/${p}/smaps_rollup`, "utf8"))
      if (m === null) pss = null
      else if (pss !== null) pss += Number(m[1])
    } catch { pss = null }
  }
  return { rssKiB: rss, pssKiB: pss, processes: pids.length }
}

/** Soft and hard limits on open files of this process. */
export const fileLimits = (): { soft: number; hard: number } => {
  const m = /Max open files\s+(\S+)\s+(\S+)/.exec(readFileSync("/proc/self/limits", "utf8"))
  const n = (s: string | undefined) => s === undefined || s === "unlimited" ? Number.POSITIVE_INFINITY : Number(s)
  return { soft: n(m?.[1]), hard: n(m?.[2]) }
}

/** Open file descriptors of `pid` (null when unreadable). */
export const openFds = (pid: number): number | null => {
  try { return readdirSync(`/proc/${pid}/fd`).length } catch { return null }
}

/**
 * TIME_WAIT sockets on loopback and the distinct ephemeral local ports they hold: a bind to
 * port 0 cannot take such a port (a connect on loopback can, with tcp_tw_reuse).
 */
export const timeWaitPorts = (): { sockets: number; ports: number; range: number } => {
  let lo = 32768
  let hi = 60999
  try { [lo, hi] = readFileSync("/proc/sys/net/ipv4/ip_local_port_range", "utf8").trim().split(/\s+/).map(Number) as [number, number] } catch { /* default */ }
  let n = 0
  const ports = new Set<number>()
  for (const f of ["/proc/net/tcp", "/proc/net/tcp6"]) {
    let text = ""
    try { text = readFileSync(f, "latin1") } catch { continue }
    for (let i = text.indexOf("\n") + 1; i > 0 && i < text.length; i = text.indexOf("\n", i) + 1) {
      // "  sl  local_address rem_address   st ...": local is "HEX:PORT", st is the 4th field
      const line = text.slice(i, text.indexOf("\n", i) >>> 0)
      const m = /^\s*\d+:\s+[0-9A-F]+:([0-9A-F]{4})\s+\S+\s+06\s/.exec(line)
      if (m === null) continue
      n++
      const port = parseInt(m[1]!, 16)
      if (port >= lo && port <= hi) ports.add(port)
    }
  }
  return { sockets: n, ports: ports.size, range: hi - lo + 1 }
}
