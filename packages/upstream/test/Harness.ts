/**
 * The real server for the tests: `startServer` with the SOCKS5 handler from
 * `@proxyd/socks` as the inbound and `makeUpstreams()` as the `via` outbound;
 * a SOCKS5 client (the `socks` package) to talk to it.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs"
import type { Socket } from "node:net"
import { tmpdir } from "node:os"
import { join } from "node:path"
import { Effect } from "effect"
import { SocksClient } from "socks"
import { Log, Server } from "@proxyd/runtime"
import { makeHttpHandler } from "@proxyd/http"
import { makeSocks5Handler } from "@proxyd/socks"
import * as Testkit from "@proxyd/testkit"
import { makeUpstreams, type Upstreams } from "../src/index.ts"

export interface Proxyd {
  readonly port: number
  /** The port of a named listener. */
  portOf(listener: string): number
  readonly log: { readonly lines: Array<string> }
  readonly upstreams: Upstreams.UpstreamOutbound
  readonly handle: Server.ServerHandle
  readonly file: string
  /** Parsed JSON log lines. */
  lines(): Array<Record<string, unknown>>
  stop(): Promise<void>
}

export const startProxyd = async (rules: string): Promise<Proxyd> => {
  const upstreams = makeUpstreams()
  const p = await Testkit.startProxyd(rules, { socks5: makeSocks5Handler(), http: makeHttpHandler() }, { outbounds: [upstreams] })
  return {
    port: p.handle.addresses()[0]!.port,
    portOf: p.port,
    log: p.log,
    upstreams,
    handle: p.handle,
    file: p.file,
    lines: () => p.lines.flatMap((l) => {
      try { return [JSON.parse(l) as Record<string, unknown>] } catch { return [] }
    }),
    stop: p.stop,
  }
}

/** Refusal message of a rules file that must not start. */
export const refusal = async (rules: string): Promise<string> => {
  const dir = mkdtempSync(join(tmpdir(), "proxyd-upstream-"))
  const file = join(dir, "test.rules")
  writeFileSync(file, rules)
  const exit = await Effect.runPromiseExit(Server.startServer({ rulesFile: file, handlers: { socks5: makeSocks5Handler() }, outbounds: [makeUpstreams()], log: Log.memory(), watch: false }))
  rmSync(dir, { recursive: true, force: true })
  if (exit._tag === "Success") {
    await Effect.runPromise(exit.value.shutdown(0))
    throw new Error("the server started")
  }
  return String(exit.cause)
}

/** SOCKS5 CONNECT through proxyd; resolves with the socket or rejects with the library's error (REP in the message). */
export const through = async (proxyPort: number, host: string, port: number): Promise<Socket> => {
  const r = await SocksClient.createConnection({ command: "connect", proxy: { host: "127.0.0.1", port: proxyPort, type: 5 }, destination: { host, port }, timeout: 20_000 })
  return r.socket
}

/** Raw SOCKS5 CONNECT to 127.0.0.1:port through proxyd; resolves with the REP code. */
export const repOf = (proxyPort: number, host: string, port: number): Promise<number> =>
  import("node:net").then((net) => new Promise<number>((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port: proxyPort })
    let buf = Buffer.alloc(0)
    s.on("error", reject)
    s.write(Buffer.from([5, 1, 0]))
    const name = Buffer.from(host)
    const req = Buffer.concat([Buffer.from([5, 1, 0, 3, name.length]), name, Buffer.from([port >> 8, port & 255])])
    let sent = false
    s.on("data", (d: Buffer) => {
      buf = Buffer.concat([buf, d])
      if (!sent && buf.length >= 2) { sent = true; s.write(req); buf = buf.subarray(2) }
      if (sent && buf.length >= 2) { s.destroy(); resolve(buf[1]!) }
    })
    s.on("close", () => reject(new Error("closed without a reply")))
  }))

/** Sends raw `CONNECT host:port` to an HTTP listener; resolves with the status line of the answer. */
export const httpConnectStatus = (proxyPort: number, hostPort: string): Promise<string> =>
  import("node:net").then((net) => new Promise<string>((resolve, reject) => {
    const s = net.connect({ host: "127.0.0.1", port: proxyPort })
    let buf = ""
    s.on("error", reject)
    s.write(`CONNECT ${hostPort} HTTP/1.1\r\nHost: ${hostPort}\r\n\r\n`)
    s.on("data", (d: Buffer) => {
      buf += d.toString("latin1")
      const i = buf.indexOf("\r\n")
      if (i >= 0) { s.destroy(); resolve(buf.slice(0, i)) }
    })
    s.on("close", () => reject(new Error(`closed: ${JSON.stringify(buf)}`)))
  }))

/** Reads exactly `n` bytes (or until end) from a socket. */
export const readN = (s: Socket, n: number, ms = 10_000): Promise<string> =>
  new Promise((resolve, reject) => {
    let got = ""
    const t = setTimeout(() => reject(new Error(`timeout after ${JSON.stringify(got)}`)), ms)
    const on = (d: Buffer) => {
      got += d.toString()
      if (got.length >= n) { clearTimeout(t); s.off("data", on); resolve(got) }
    }
    s.on("data", on)
    s.once("end", () => { clearTimeout(t); resolve(got) })
  })
