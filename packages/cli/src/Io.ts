/**
 * The CLI's window on the world: output streams and files, as a service.
 *
 * Details: commands read and write only through `Io`, so tests provide an
 * in-memory `Io` (`Io.memory`) and run commands without a process. Reads
 * return the OS message on failure (`ENOENT: no such file or directory, open
 * 'x.rules'`), which `check` reports as `E001`.
 */
import { readFileSync, writeFileSync } from "node:fs"
import { posix } from "node:path"
import * as Context from "effect/Context"
import * as Layer from "effect/Layer"
import type { Check } from "@proxyd/rules"

export type ReadResult = { readonly ok: true; readonly text: string } | { readonly ok: false; readonly message: string }

export interface IoShape {
  readonly out: (text: string) => void
  readonly err: (text: string) => void
  readonly readFile: (path: string) => ReadResult
  readonly writeFile: (path: string, text: string) => { readonly ok: true } | { readonly ok: false; readonly message: string }
  /** What the checker reads through (includes, set files). */
  readonly reader: Check.SourceReader
  /** Colour by default (stdout is a terminal and NO_COLOR is unset). */
  readonly color: boolean
}

const osMessage = (e: unknown): string => (e instanceof Error ? e.message : String(e))

const resolve = (from: string, rel: string): string => (posix.isAbsolute(rel) ? posix.normalize(rel) : posix.join(posix.dirname(from), rel))

export const nodeIo = (): IoShape => {
  const readFile = (path: string): ReadResult => {
    try {
      return { ok: true, text: readFileSync(path, "utf8") }
    } catch (e) {
      return { ok: false, message: osMessage(e) }
    }
  }
  return {
    out: (text) => void process.stdout.write(text),
    err: (text) => void process.stderr.write(text),
    readFile,
    writeFile: (path, text) => {
      try {
        writeFileSync(path, text)
        return { ok: true }
      } catch (e) {
        return { ok: false, message: osMessage(e) }
      }
    },
    reader: { read: (path) => { const r = readFile(path); return r.ok ? r.text : undefined }, resolve },
    color: process.stdout.isTTY === true && (process.env["NO_COLOR"] ?? "") === "",
  }
}

export interface MemoryIo extends IoShape {
  readonly files: Map<string, string>
  readonly stdout: () => string
  readonly stderr: () => string
}

/** An in-memory `Io` over `files` (posix paths), capturing output. For tests. */
export const memoryIo = (files: Readonly<Record<string, string>>): MemoryIo => {
  const store = new Map(Object.entries(files))
  let out = ""
  let err = ""
  const readFile = (path: string): ReadResult => {
    const text = store.get(path)
    return text === undefined ? { ok: false, message: `ENOENT: no such file or directory, open '${path}'` } : { ok: true, text }
  }
  return {
    files: store,
    stdout: () => out,
    stderr: () => err,
    out: (t) => void (out += t),
    err: (t) => void (err += t),
    readFile,
    writeFile: (path, text) => {
      store.set(path, text)
      return { ok: true }
    },
    reader: { read: (path) => store.get(path), resolve },
    color: false,
  }
}

export class Io extends Context.Service<Io, IoShape>()("@proxyd/cli/Io") {
  static readonly node = (): Layer.Layer<Io> => Layer.succeed(Io, nodeIo())
}
