/**
 * `proxyd passwd [--algo argon2id|bcrypt|scrypt] USER`: prints one htpasswd line `USER:HASH`.
 *
 * Details: the password is read from stdin: on a terminal it is asked twice
 * with echo off (raw mode; Backspace edits, Ctrl-C aborts), from a pipe the
 * first line is taken (`printf 'secret\n' | proxyd passwd alice`). The line
 * goes to stdout, prompts to stderr, so `proxyd passwd alice >> users.htpasswd`
 * works. Default algorithm: argon2id (m=19456 KiB, t=2, p=1); bcrypt writes
 * `$2y$10$` like Apache's `htpasswd -B` (at most 72 bytes of password);
 * scrypt writes passlib's `$scrypt$ln=15,r=8,p=1$`. The hash is made by the
 * runtime's `Auth.hashPassword`, the same code that verifies it.
 *
 * Gotchas: never pass a password as an argument (it would land in the shell
 * history and the process list); there is no flag for it on purpose.
 */
import * as Effect from "effect/Effect"
import { Auth } from "@proxyd/runtime"
import { type FlagSpec, helpText, type Parsed, str, UsageError } from "./Args.ts"
import { Io } from "./Io.ts"

export const passwdFlags = {
  algo: { kind: "string", value: "ALGO", choices: ["argon2id", "bcrypt", "scrypt"], description: "hash algorithm (default argon2id)" },
} as const satisfies Record<string, FlagSpec>

export const passwdHelp = helpText(
  "proxyd passwd [--algo argon2id|bcrypt|scrypt] USER",
  "Prints an htpasswd line `USER:HASH` for `auth NAME = htpasswd \"FILE\"` (or a hash for a\n`static` block). The password is read from stdin: asked twice without echo on a terminal,\nthe first line of a pipe otherwise.",
  passwdFlags,
  "Exit status: 0 ok, 1 the password was empty or the two entries differ, 2 usage errors.",
)

const readPiped = (): Promise<string> =>
  new Promise((resolve, reject) => {
    const chunks: Array<Buffer> = []
    let size = 0
    process.stdin.on("data", (c: Buffer) => {
      size += c.length
      if (size > 65_536) {
        process.stdin.destroy()
        reject(new Error("input too long"))
      } else chunks.push(c)
    })
    process.stdin.on("end", () => resolve(Buffer.concat(chunks).toString("utf8").split(/\r?\n/)[0] ?? ""))
    process.stdin.on("error", reject)
  })

/** One line from the terminal with echo off. */
const askHidden = (prompt: string): Promise<string> =>
  new Promise((resolve, reject) => {
    const stdin = process.stdin
    // Echo off before the prompt: keys typed as soon as it shows must not echo.
    stdin.setRawMode(true)
    stdin.resume()
    process.stderr.write(prompt)
    let text = ""
    const done = (f: () => void) => {
      stdin.setRawMode(false)
      stdin.pause()
      stdin.off("data", onData)
      process.stderr.write("\n")
      f()
    }
    const onData = (b: Buffer) => {
      for (const ch of b.toString("utf8")) {
        if (ch === "\r" || ch === "\n") return done(() => resolve(text))
        if (ch === "\u0003" || ch === "\u0004") return done(() => reject(new Error("aborted")))
        if (ch === "\u007f" || ch === "\b") text = [...text].slice(0, -1).join("")
        else if (ch >= " ") text += ch
      }
    }
    stdin.on("data", onData)
  })

export const runPasswd = (args: Parsed) => Effect.gen(function*() {
  const io = yield* Io
  const algo = (str(args, "algo") ?? "argon2id") as Auth.HashAlgo
  const [user, extra] = args.positionals
  if (user === undefined) return yield* new UsageError({ message: "passwd needs a USER", command: "passwd" })
  if (extra !== undefined) return yield* new UsageError({ message: `unexpected argument \`${extra}\` (the password is read from stdin)`, command: "passwd" })
  if (!/^[^\s:#]+$/.test(user)) return yield* new UsageError({ message: "USER must not be empty or contain spaces, `:` or `#`", command: "passwd" })
  const read = yield* Effect.tryPromise(async () => {
    if (process.stdin.isTTY !== true) return { pass: await readPiped(), again: undefined }
    const pass = await askHidden("Password: ")
    return { pass, again: await askHidden("Again: ") }
  }).pipe(Effect.result)
  if (read._tag === "Failure") {
    io.err(`proxyd passwd: ${read.failure.cause instanceof Error ? read.failure.cause.message : "cannot read the password"}\n`)
    return 1
  }
  const { pass, again } = read.success
  if (pass === "") {
    io.err("proxyd passwd: empty password\n")
    return 1
  }
  if (again !== undefined && again !== pass) {
    io.err("proxyd passwd: the two passwords differ\n")
    return 1
  }
  const hash = yield* Effect.tryPromise(() => Auth.hashPassword(pass, algo)).pipe(Effect.result)
  if (hash._tag === "Failure") {
    io.err(`proxyd passwd: ${hash.failure.cause instanceof Error ? hash.failure.cause.message : "hashing failed"}\n`)
    return 1
  }
  io.out(`${user}:${hash.success}\n`)
  return 0
})
