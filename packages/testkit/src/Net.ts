/** Test helpers: a raw TCP client that reads exact byte counts, small local servers (echo, UDP echo, hashing), random-byte senders and hashers, and port probes. */
import { connect, createServer, type Server, type Socket } from "node:net"
import { createSocket, type Socket as UdpSocket } from "node:dgram"
import { createHash, randomBytes } from "node:crypto"
import type { ChildProcess } from "node:child_process"
import type { Readable, Writable } from "node:stream"

export interface RawClient {
  readonly socket: Socket
  send(bytes: Uint8Array | string): void
  /** Resolves with exactly `n` bytes; rejects on close or after `timeoutMs`. */
  read(n: number, timeoutMs?: number): Promise<Buffer>
  /** Resolves with everything until the peer closes (or `timeoutMs`: rejects). */
  readToEnd(timeoutMs?: number): Promise<Buffer>
  readonly closed: Promise<void>
}

export const rawClient = (port: number, host = "127.0.0.1"): Promise<RawClient> =>
  new Promise((resolve, reject) => {
    const socket = connect({ host, port, allowHalfOpen: true })
    let buf = Buffer.alloc(0)
    let ended = false
    let waiter: (() => void) | undefined
    socket.on("data", (d) => {
      buf = Buffer.concat([buf, d])
      waiter?.()
    })
    const closed = new Promise<void>((r) => socket.once("close", () => {
      ended = true
      waiter?.()
      r()
    }))
    socket.on("end", () => {
      ended = true
      waiter?.()
    })
    socket.on("error", () => {})
    const wait = <T>(ready: () => T | undefined, timeoutMs: number, what: string) =>
      new Promise<T>((res, rej) => {
        const timer = setTimeout(() => {
          waiter = undefined
          rej(new Error(`timeout waiting for ${what} (have ${buf.length} bytes: ${buf.subarray(0, 64).toString("hex")})`))
        }, timeoutMs)
        const check = () => {
          const v = ready()
          if (v !== undefined) {
            clearTimeout(timer)
            waiter = undefined
            res(v)
          } else if (ended) {
            clearTimeout(timer)
            waiter = undefined
            rej(new Error(`closed while waiting for ${what} (have ${buf.length} bytes: ${buf.subarray(0, 64).toString("hex")})`))
          }
        }
        waiter = check
        check()
      })
    socket.once("connect", () => resolve({
      socket,
      closed,
      send: (b) => socket.write(b),
      read: (n, timeoutMs = 3000) => wait(() => {
        if (buf.length < n) return undefined
        const out = buf.subarray(0, n)
        buf = buf.subarray(n)
        return out
      }, timeoutMs, `${n} bytes`),
      readToEnd: (timeoutMs = 3000) => wait(() => (ended ? buf : undefined), timeoutMs, "end").catch((e) => {
        if (ended) return buf
        throw e
      }),
    }))
    socket.once("error", reject)
  })

export interface TestServer { readonly server: Server; readonly port: number; readonly peers: Array<{ address: string; port: number }>; close(): Promise<void> }

/** A TCP server that answers every chunk with `prefix + chunk`, and records its peers. */
export const echoServer = (host = "127.0.0.1", prefix = "echo:"): Promise<TestServer> =>
  new Promise((resolve) => {
    const peers: TestServer["peers"] = []
    const sockets = new Set<Socket>()
    const server = createServer({ allowHalfOpen: true }, (s) => {
      sockets.add(s)
      s.once("close", () => sockets.delete(s))
      peers.push({ address: s.remoteAddress!, port: s.remotePort! })
      s.on("data", (d) => s.write(Buffer.concat([Buffer.from(prefix), d])))
      s.on("end", () => s.end())
      s.on("error", () => {})
    })
    server.listen({ host, port: 0 }, () => {
      const a = server.address()
      resolve({
        server, peers, port: typeof a === "object" && a !== null ? a.port : 0,
        close: () => new Promise((r) => {
          for (const s of sockets) s.destroy()
          server.close(() => r())
        }),
      })
    })
  })

/** A port on 127.0.0.1 with nothing listening (bound, then closed): to connect to and be refused, or (racily) to bind. */
export const closedPort = (): Promise<number> =>
  new Promise((resolve) => {
    const s = createServer()
    s.listen({ host: "127.0.0.1", port: 0 }, () => {
      const a = s.address()
      s.close(() => resolve(typeof a === "object" && a !== null ? a.port : 0))
    })
  })

/** Whether something accepts TCP connections on 127.0.0.1:`port` right now. */
export const accepts = (port: number): Promise<boolean> =>
  new Promise((resolve) => {
    const s = connect({ host: "127.0.0.1", port })
    s.once("connect", () => { s.destroy(); resolve(true) })
    s.once("error", () => resolve(false))
  })

/** Waits (up to 5 s) until 127.0.0.1:`port` accepts; throws when it never does or when `child` exits first. */
export const waitPort = async (port: number, child?: ChildProcess): Promise<void> => {
  for (let i = 0; i < 200; i++) {
    if (await accepts(port)) return
    if (child !== undefined && (child.exitCode !== null || child.signalCode !== null)) throw new Error(`peer exited with ${child.exitCode ?? child.signalCode}`)
    await new Promise((r) => setTimeout(r, 25))
  }
  throw new Error(`port ${port} never accepted`)
}

export const udpEcho = (host = "127.0.0.1"): Promise<{ socket: UdpSocket; port: number; close(): void }> =>
  new Promise((resolve) => {
    const socket = createSocket(host.includes(":") ? "udp6" : "udp4")
    socket.on("message", (m, r) => socket.send(Buffer.concat([Buffer.from("udp:"), m]), r.port, r.address))
    socket.bind({ address: host, port: 0 }, () => resolve({ socket, port: socket.address().port, close: () => socket.close() }))
  })

export const ipv6Available = (): Promise<boolean> =>
  new Promise((resolve) => {
    const s = createServer()
    s.once("error", () => resolve(false))
    s.listen({ host: "::1", port: 0 }, () => s.close(() => resolve(true)))
  })

/** Writes `total` random bytes to `s` (with backpressure), ends it unless `end` is false, and resolves with their sha256 (after the end is flushed). */
export const sendRandom = (s: Writable, total: number, end = true): Promise<string> =>
  new Promise((resolve, reject) => {
    const hash = createHash("sha256")
    let left = total
    const pump = (): void => {
      while (left > 0) {
        const chunk = randomBytes(Math.min(left, 256 * 1024))
        left -= chunk.length
        hash.update(chunk)
        if (!s.write(chunk)) return void s.once("drain", pump)
      }
      if (end) s.end(() => resolve(hash.digest("hex")))
      else resolve(hash.digest("hex"))
    }
    s.once("error", reject)
    pump()
  })

/** Resolves with the sha256 and length of everything `s` delivers until its end. */
export const hashUntilEnd = (s: Readable): Promise<{ hash: string; bytes: number }> =>
  new Promise((resolve, reject) => {
    const hash = createHash("sha256")
    let bytes = 0
    s.on("data", (d: Buffer) => {
      hash.update(d)
      bytes += d.length
    })
    s.once("end", () => resolve({ hash: hash.digest("hex"), bytes }))
    s.once("error", reject)
  })

/** Hashes exactly the first `total` bytes `s` delivers. */
export const hashBytes = (s: Socket, total: number): Promise<{ hash: string; bytes: number }> =>
  new Promise((resolve, reject) => {
    const hash = createHash("sha256")
    let bytes = 0
    const on = (d: Buffer): void => {
      const take = d.subarray(0, total - bytes)
      hash.update(take)
      bytes += take.length
      if (bytes >= total) { s.off("data", on); resolve({ hash: hash.digest("hex"), bytes }) }
    }
    s.on("data", on)
    s.once("close", () => { if (bytes < total) reject(new Error(`closed after ${bytes} of ${total} bytes`)) })
    s.once("error", reject)
  })

/** A TCP server that hashes what each client sends and sends `total` random bytes back; `results` holds one entry per connection. */
export const hashServer = (total: number): Promise<TestServer & { readonly results: Array<Promise<{ received: { hash: string; bytes: number }; sent: string }>> }> =>
  new Promise((resolve) => {
    const results: Array<Promise<{ received: { hash: string; bytes: number }; sent: string }>> = []
    const sockets = new Set<Socket>()
    const server = createServer({ allowHalfOpen: true }, (s) => {
      sockets.add(s)
      s.once("close", () => sockets.delete(s))
      results.push(Promise.all([hashUntilEnd(s), sendRandom(s, total)]).then(([received, sent]) => ({ received, sent })))
    })
    server.listen({ host: "127.0.0.1", port: 0 }, () => {
      const a = server.address()
      resolve({
        server, peers: [], results, port: typeof a === "object" && a !== null ? a.port : 0,
        close: () => new Promise((r) => {
          for (const s of sockets) s.destroy()
          server.close(() => r())
        }),
      })
    })
  })
