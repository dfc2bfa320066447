/**
 * Scripted stand-ins for Tor (tests that need no tor binary): a ControlPort
 * that answers from a table and records commands, and a SocksPort that
 * records each handshake and answers with a chosen REP code.
 */
import * as net from "node:net"

export interface FakeControl {
  readonly port: number
  readonly commands: Array<string>
  progress: number
  close(): Promise<void>
}

export const fakeControl = async (password: string, progress = 100): Promise<FakeControl> => {
  const commands: Array<string> = []
  const state = { progress }
  const server = net.createServer((s) => {
    let buf = ""
    let authed = false
    s.on("error", () => {})
    s.on("data", (b: Buffer) => {
      buf += b.toString("latin1")
      for (let nl = buf.indexOf("\r\n"); nl >= 0; nl = buf.indexOf("\r\n")) {
        const line = buf.slice(0, nl)
        buf = buf.slice(nl + 2)
        commands.push(line)
        if (line.startsWith("AUTHENTICATE")) {
          authed = line === `AUTHENTICATE "${password}"`
          s.write(authed ? "250 OK\r\n" : "515 Authentication failed: Password did not match HashedControlPassword value from configuration\r\n")
          if (!authed) s.end()
        } else if (!authed) {
          s.end("514 Authentication required.\r\n")
        } else if (line === "GETINFO status/bootstrap-phase") {
          s.write(`250-status/bootstrap-phase=NOTICE BOOTSTRAP PROGRESS=${state.progress} TAG=${state.progress === 100 ? "done" : "loading_descriptors"} SUMMARY="${state.progress === 100 ? "Done" : "Loading relay descriptors"}"\r\n250 OK\r\n`)
        } else if (line === "SIGNAL NEWNYM") {
          s.write("250 OK\r\n")
        } else if (line === "QUIT") {
          s.end("250 closing connection\r\n")
        } else {
          s.write(`510 Unrecognized command "${line.split(" ")[0]}"\r\n`)
        }
      }
    })
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  return {
    port: (server.address() as net.AddressInfo).port,
    commands,
    get progress() { return state.progress },
    set progress(p: number) { state.progress = p },
    close: () => new Promise<void>((r) => server.close(() => r())),
  }
}

export interface Handshake { readonly methods: Array<number>; readonly user?: string; readonly pass?: string; readonly atyp: number; readonly host: string; readonly port: number }

export interface FakeSocks {
  readonly port: number
  readonly handshakes: Array<Handshake>
  /** REP code to answer (0 = success, then `greeting` is sent right after the reply). */
  rep: number
  close(): Promise<void>
}

export const fakeSocksPort = async (greeting = "early"): Promise<FakeSocks> => {
  const handshakes: Array<Handshake> = []
  const state = { rep: 0 }
  const server = net.createServer((s) => {
    let buf = Buffer.alloc(0)
    let phase: "greet" | "auth" | "req" | "done" = "greet"
    let methods: Array<number> = []
    let user: string | undefined
    let pass: string | undefined
    s.on("error", () => {})
    s.on("data", (b: Buffer) => {
      buf = Buffer.concat([buf, b])
      for (let i = 0; i < 3; i++) {
        if (phase === "greet" && buf.length >= 2 && buf.length >= 2 + buf[1]!) {
          methods = [...buf.subarray(2, 2 + buf[1]!)]
          buf = buf.subarray(2 + buf[1]!)
          const m = methods.includes(2) ? 2 : 0
          s.write(Buffer.from([5, m]))
          phase = m === 2 ? "auth" : "req"
        } else if (phase === "auth" && buf.length >= 2) {
          const ul = buf[1]!
          if (buf.length < 3 + ul) return
          const pl = buf[2 + ul]!
          if (buf.length < 3 + ul + pl) return
          user = buf.subarray(2, 2 + ul).toString()
          pass = buf.subarray(3 + ul, 3 + ul + pl).toString()
          buf = buf.subarray(3 + ul + pl)
          s.write(Buffer.from([1, 0]))
          phase = "req"
        } else if (phase === "req" && buf.length >= 5) {
          const atyp = buf[3]!
          const len = atyp === 3 ? 7 + buf[4]! : atyp === 1 ? 10 : 22
          if (buf.length < len) return
          const host = atyp === 3 ? buf.subarray(5, 5 + buf[4]!).toString() : `atyp${atyp}`
          handshakes.push({ methods, ...(user === undefined ? {} : { user }), ...(pass === undefined ? {} : { pass }), atyp, host, port: buf.readUInt16BE(len - 2) })
          phase = "done"
          const reply = Buffer.from([5, state.rep, 0, 1, 0, 0, 0, 0, 0, 0])
          if (state.rep === 0) s.write(Buffer.concat([reply, Buffer.from(greeting)]))
          else s.end(reply)
          return
        }
      }
    })
  })
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r))
  return {
    port: (server.address() as net.AddressInfo).port,
    handshakes,
    get rep() { return state.rep },
    set rep(r: number) { state.rep = r },
    close: () => new Promise<void>((r) => server.close(() => r())),
  }
}

/** A port with nothing listening (bound, then closed). */
export const closedPort = async (): Promise<number> => {
  const s = net.createServer()
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r))
  const port = (s.address() as net.AddressInfo).port
  await new Promise<void>((r) => s.close(() => r()))
  return port
}
