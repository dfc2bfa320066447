/**
 * Test fixture: a private Tor network on 127.0.0.1 (3 directory authorities,
 * 2 relays, 1 onion service, 1 client), plus a local HTTP server behind both
 * an exit and the onion.
 *
 * Details: follows the verified recipe in the shared notes
 * (`tor-test-network.md`): `TestingTorNetwork`, fast initial voting, every
 * relay an exit bound to 127.0.0.1 (`OutboundBindAddressExit`) with the open
 * exit policy (the strict one breaks microdescriptor summaries), exits
 * without DNS (`ServerDNSResolvConfFile` points at a closed port), and a
 * staged start: the onion service and the client start only once the
 * consensus lists all five relays. Ready means: client bootstrap 100 %, the
 * service has uploaded its descriptor, and the onion answers on port 9
 * (mapped to auth0's DirPort, always listening). Ports: a base below the
 * ephemeral range, every port checked free; node i uses base+10i+0..3
 * (OR, Dir, Control, Socks). The client has `ExtendedErrors` (0xF0–0xF7),
 * `SafeSocks 1` (an IP-only request fails with 0x02: a proxy that resolved a
 * name would be caught) and maps `*.tornet.test` to 127.0.0.1. Its ControlPort
 * takes the cookie and the password `tornet`.
 *
 * Gotchas: tors run in the foreground as children (`RunAsDaemon 0`) with
 * `__OwningControllerProcess` set to this process, so they exit on their own if
 * the test runner dies; `stop()` sends SIGTERM by PID, then SIGKILL after 5 s.
 * Everything lives in a temp dir removed by `stop()`.
 */
import { type ChildProcess, execFile, spawn } from "node:child_process"
import { accessSync, constants, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs"
import * as http from "node:http"
import * as net from "node:net"
import { tmpdir } from "node:os"
import * as path from "node:path"
import { promisify } from "node:util"
import { bootstrapStatus, newnym } from "../src/Control.ts"
import { connectThroughTor } from "../src/TorSocks.ts"

const run = promisify(execFile)

export const CONTROL_PASSWORD = "tornet"

export interface TorNetwork {
  readonly dir: string
  readonly socksPort: number
  readonly controlPort: number
  readonly cookieFile: string
  readonly onion: string
  /** The local HTTP server (answers `hello from <host>` with the Host header). */
  readonly httpPort: number
  /** Onion port mapped to the local HTTP server. */
  readonly onionHttpPort: number
  readonly pids: ReadonlyArray<number>
  readonly startMs: number
  stop(): Promise<void>
}

/** Where a tor binary (`tor`, `tor-gencert`) is, or undefined when it is not installed. */
export const torBinary = (name = "tor"): string | undefined => {
  for (const dir of [...(process.env["PATH"] ?? "").split(":"), "/usr/sbin", "/usr/bin"]) {
    const p = path.join(dir, name)
    try {
      accessSync(p, constants.X_OK)
      return p
    } catch {}
  }
  return undefined
}

const portFree = (port: number): Promise<boolean> => new Promise((resolve) => {
  const s = net.createServer()
  s.once("error", () => resolve(false))
  s.listen({ host: "127.0.0.1", port, exclusive: true }, () => s.close(() => resolve(true)))
})

const pickBase = async (): Promise<number> => {
  for (let attempt = 0; attempt < 50; attempt++) {
    const base = 20000 + Math.floor(Math.random() * 120) * 100
    const ports = Array.from({ length: 7 }, (_, i) => [0, 1, 2, 3].map((k) => base + 10 * i + k)).flat().concat([base + 99])
    const free = await Promise.all(ports.map(portFree))
    if (free.every(Boolean)) return base
  }
  throw new Error("no free port range for the Tor network")
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms))

const until = async <A>(what: string, timeoutMs: number, f: () => Promise<A | undefined>, everyMs = 300, check: () => void = () => {}): Promise<A> => {
  const end = Date.now() + timeoutMs
  let last = ""
  while (Date.now() < end) {
    check()
    try {
      const v = await f()
      if (v !== undefined) return v
    } catch (e) {
      last = (e as Error).message
    }
    await sleep(everyMs)
  }
  throw new Error(`Tor network: timed out waiting for ${what}${last === "" ? "" : ` (last error: ${last})`}`)
}

const httpGet = (port: number, p: string): Promise<string> => new Promise((resolve, reject) => {
  const req = http.get({ host: "127.0.0.1", port, path: p, timeout: 3000 }, (res) => {
    let body = ""
    res.setEncoding("latin1")
    res.on("data", (c: string) => { body += c })
    res.on("end", () => resolve(body))
  })
  req.on("timeout", () => req.destroy(new Error("timeout")))
  req.on("error", reject)
})

/** Starts the network; resolves when an onion request succeeds through the client. */
export const startTorNetwork = async (): Promise<TorNetwork> => {
  const t0 = Date.now()
  const tor = torBinary() ?? "tor"
  const gencert = torBinary("tor-gencert") ?? "tor-gencert"
  const dir = mkdtempSync(path.join(tmpdir(), "proxyd-tornet-"))
  const children: Array<ChildProcess> = []
  const server = http.createServer((req, res) => res.end(`hello from ${req.headers.host ?? "?"}`))
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  const httpPort = (server.address() as net.AddressInfo).port

  const stop = async (): Promise<void> => {
    await Promise.all(children.map((c) => new Promise<void>((resolve) => {
      if (c.exitCode !== null || c.signalCode !== null || c.pid === undefined) return resolve()
      const kill = setTimeout(() => { try { process.kill(c.pid!, "SIGKILL") } catch {} }, 5000)
      c.once("exit", () => { clearTimeout(kill); resolve() })
      try { process.kill(c.pid, "SIGTERM") } catch { clearTimeout(kill); resolve() }
    })))
    await new Promise<void>((r) => server.close(() => r()))
    server.closeAllConnections()
    rmSync(dir, { recursive: true, force: true })
  }

  try {
    const B = await pickBase()
    const empty = path.join(dir, "empty")
    writeFileSync(empty, "")
    writeFileSync(path.join(dir, "resolv.conf"), `nameserver 127.0.0.1:${B + 99}\n`)
    const nodes = ["auth0", "auth1", "auth2", "relay3", "relay4", "hs5", "client6"]
    for (const n of nodes) mkdirSync(path.join(dir, n, "keys"), { recursive: true, mode: 0o700 })
    const port = (i: number, k: 0 | 1 | 2 | 3) => B + 10 * i + k

    const hashed = run(tor, ["--defaults-torrc", empty, "-f", empty, "--hash-password", CONTROL_PASSWORD, "--quiet"])
    const certs = [0, 1, 2].map(async (i) => {
      const d = path.join(dir, nodes[i]!)
      await new Promise<void>((resolve, reject) => {
        const p = spawn(gencert, ["--create-identity-key", "--passphrase-fd", "0", "-m", "12", "-i", "keys/authority_identity_key", "-s", "keys/authority_signing_key", "-c", "keys/authority_certificate", "-a", `127.0.0.1:${port(i, 1)}`], { cwd: d, stdio: ["pipe", "ignore", "pipe"] })
        let err = ""
        p.stderr.on("data", (b: Buffer) => { err += b.toString() })
        p.once("error", reject)
        p.stdin.end("\n")
        p.once("exit", (code) => (code === 0 ? resolve() : reject(new Error(`tor-gencert failed: ${err.slice(0, 300)}`))))
      })
      const cert = readFileSync(path.join(d, "keys/authority_certificate"), "utf8")
      return /^fingerprint ([0-9A-F]+)$/m.exec(cert)![1]!
    })
    const fingerprints = [0, 1, 2, 3, 4].map(async (i) => {
      await certs[i]
      const { stdout } = await run(tor, ["--defaults-torrc", empty, "-f", empty, "--DataDirectory", path.join(dir, nodes[i]!), "--ORPort", "1", "--Nickname", nodes[i]!, "--list-fingerprint", "--quiet"])
      const m = new RegExp(`^${nodes[i]} ([0-9A-F ]+)$`, "m").exec(stdout)
      if (m === null) throw new Error(`cannot read ${nodes[i]}'s fingerprint: ${stdout.slice(0, 200)}`)
      return m[1]!.replace(/ /g, "")
    })
    const v3 = await Promise.all(certs)
    const rsa = await Promise.all(fingerprints)
    const hash = (await hashed).stdout.trim().split("\n").pop()!.trim()

    const common = (i: number): string => [
      "TestingTorNetwork 1",
      `DataDirectory ${path.join(dir, nodes[i]!)}`,
      "RunAsDaemon 0",
      `Nickname ${nodes[i]}`,
      `Log notice file ${path.join(dir, nodes[i]!, "notice.log")}`,
      "SafeLogging 0", "LogTimeGranularity 1", "ShutdownWaitLength 0",
      `ControlPort 127.0.0.1:${port(i, 2)}`,
      "CookieAuthentication 1",
      `HashedControlPassword ${hash}`,
      `__OwningControllerProcess ${process.pid}`,
      "ClientUseIPv6 0",
      `GeoIPFile ${empty}`, `GeoIPv6File ${empty}`,
      "PathsNeededToBuildCircuits 0.67",
      "TestingDirAuthVoteExit *", "TestingDirAuthVoteGuard *", "TestingDirAuthVoteHSDir *",
      "TestingMinExitFlagThreshold 0",
      "V3AuthNIntervalsValid 2",
      ...[0, 1, 2].map((a) => `DirAuthority ${nodes[a]} orport=${port(a, 0)} no-v2 v3ident=${v3[a]} 127.0.0.1:${port(a, 1)} ${rsa[a]}`),
    ].join("\n")
    const relay = (i: number): string => [
      "SocksPort 0", "Address 127.0.0.1", `ORPort 127.0.0.1:${port(i, 0)}`, "AssumeReachable 1",
      `ContactInfo tornet-${nodes[i]}@localhost`,
      "ExitRelay 1", "ExitPolicyRejectPrivate 0", "ExitPolicyRejectLocalInterfaces 0",
      "ExitPolicy accept 127.0.0.0/8:*", "ExitPolicy accept *:*", "ExitPolicy reject *:*",
      "OutboundBindAddressExit 127.0.0.1",
      `ServerDNSResolvConfFile ${path.join(dir, "resolv.conf")}`,
      "ServerDNSDetectHijacking 0", "ServerDNSTestAddresses", "ServerDNSAllowBrokenConfig 1",
    ].join("\n")
    const authority = (i: number): string => [
      `DirPort 127.0.0.1:${port(i, 1)}`, "AuthoritativeDirectory 1", "V3AuthoritativeDirectory 1",
      "TestingV3AuthInitialVotingInterval 5", "TestingV3AuthInitialVoteDelay 2", "TestingV3AuthInitialDistDelay 2",
      "V3AuthVotingInterval 20", "V3AuthVoteDelay 4", "V3AuthDistDelay 4",
    ].join("\n")
    const onionService = [
      "SocksPort 0",
      `HiddenServiceDir ${path.join(dir, "hs5", "hs")}`,
      `HiddenServicePort 80 127.0.0.1:${httpPort}`,
      `HiddenServicePort 9 127.0.0.1:${port(0, 1)}`,
      `Log [rend]info file ${path.join(dir, "hs5", "rend.log")}`,
    ].join("\n")
    const client = [
      `SocksPort 127.0.0.1:${port(6, 3)} ExtendedErrors`,
      "SafeSocks 1",
      "MapAddress localhost 127.0.0.1",
      "MapAddress *.tornet.test 127.0.0.1",
    ].join("\n")
    const names = new Map<ChildProcess, string>()
    /** Throws, with the end of its log, when a tor exited during the start (a bad torrc, a port taken). */
    const alive = (): void => {
      const dead = children.find((c) => c.exitCode !== null || c.signalCode !== null)
      if (dead === undefined) return
      const n = names.get(dead)!
      let tail = ""
      try { tail = readFileSync(path.join(dir, n, "notice.log"), "utf8").split("\n").slice(-6).join("\n") } catch {}
      throw new Error(`Tor network: ${n} exited (${dead.exitCode ?? dead.signalCode}) during the start:\n${tail}`)
    }
    const launch = (i: number, extra: string): void => {
      const rc = path.join(dir, nodes[i]!, "torrc")
      writeFileSync(rc, `${common(i)}\n${extra}\n`)
      const c = spawn(tor, ["--defaults-torrc", empty, "-f", rc, "--quiet"], { stdio: "ignore" })
      c.on("error", () => {})
      children.push(c)
      names.set(c, nodes[i]!)
    }
    for (const i of [0, 1, 2]) launch(i, `${relay(i)}\n${authority(i)}`)
    for (const i of [3, 4]) launch(i, relay(i))

    await until("a consensus listing all 5 relays", 120_000, async () => {
      const c = await httpGet(port(0, 1), "/tor/status-vote/current/consensus-microdesc")
      return (c.match(/^r /gm) ?? []).length >= 5 ? true : undefined
    }, 500, alive)
    launch(5, onionService)
    launch(6, client)
    const control = { host: "127.0.0.1", port: port(6, 2), auth: { cookie: path.join(dir, "client6", "control_auth_cookie") } }
    await until("the client's bootstrap", 120_000, async () => ((await bootstrapStatus(control)).progress >= 100 ? true : undefined), 300, alive)
    const onion = await until("the onion hostname", 60_000, async () => {
      try { return readFileSync(path.join(dir, "hs5", "hs", "hostname"), "utf8").trim() } catch { return undefined }
    })
    await until("the onion descriptor upload", 120_000, async () => {
      try { return readFileSync(path.join(dir, "hs5", "rend.log"), "utf8").includes("initiated upload request") ? true : undefined } catch { return undefined }
    })
    let lastNewnym = 0
    await until("the onion answering", 120_000, async () => {
      try {
        const s = await connectThroughTor({ socksHost: "127.0.0.1", socksPort: port(6, 3), dstHost: onion, dstPort: 9, timeoutMs: 20_000 })
        s.destroy()
        return true
      } catch (e) {
        if (Date.now() - lastNewnym > 10_500) { lastNewnym = Date.now(); await newnym(control) }
        throw e
      }
    }, 1000)
    // A NEWNYM sent above may be applied up to 10 s later (rate limit); let it land before the tests look at circuits.
    if (lastNewnym > 0) await sleep(Math.max(0, lastNewnym + 10_500 - Date.now()))
    return {
      dir, socksPort: port(6, 3), controlPort: port(6, 2), cookieFile: control.auth.cookie, onion, httpPort, onionHttpPort: 80,
      pids: children.map((c) => c.pid!).filter((p) => p !== undefined), startMs: Date.now() - t0, stop,
    }
  } catch (e) {
    await stop()
    throw e
  }
}
