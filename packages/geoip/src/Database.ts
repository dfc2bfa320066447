/**
 * One opened mmdb file: synchronous lookups, reopened when the file changes on disk.
 *
 * Details: the whole file is read into memory (`maxmind.Reader` over a
 * Buffer), so a lookup is plain synchronous code on the decide path. The file
 * is watched through its directory (editors and `geoipupdate` replace files by
 * rename); changes are debounced (500 ms) and the new file is opened beside
 * the old one: a file that does not open keeps the old reader serving and
 * reports the error through `onReload`. `maxmind`'s own LRU cache is kept
 * (10 000 entries by default).
 *
 * Gotchas: invalid addresses (`"?"`, names) give null rather than throwing;
 * IPv4-mapped IPv6 (`::ffff:1.2.3.4`, what a dual-stack socket reports) is
 * looked up as the IPv4 address.
 */
import { readFileSync, watch, type FSWatcher } from "node:fs"
import { basename, dirname } from "node:path"
import { isIP } from "node:net"
import { Reader } from "maxmind"

export interface DatabaseInfo {
  readonly path: string
  readonly type: string
  readonly builtAt: string
  readonly loadedAt: string
}

export interface Database {
  readonly path: string
  /** The record for an address, or null (not found, not an address). */
  get(ip: string): unknown
  info(): DatabaseInfo
  close(): void
}

export type ReloadEvent = { readonly path: string; readonly ok: true } | { readonly path: string; readonly ok: false; readonly error: string }

const open = (path: string): { reader: Reader<Record<string, unknown>>; loadedAt: string } =>
  ({ reader: new Reader<Record<string, unknown>>(readFileSync(path)), loadedAt: new Date().toISOString() })

/** Opens the file now (throws a readable Error when it cannot) and watches it unless `watchFile` is false. */
export const openDatabase = (path: string, opts: { readonly watchFile?: boolean; readonly onReload?: (e: ReloadEvent) => void } = {}): Database => {
  let cur: ReturnType<typeof open>
  try {
    cur = open(path)
  } catch (e) {
    throw new Error(`GeoIP database \`${path}\` cannot be opened: ${e instanceof Error ? e.message : String(e)}`)
  }
  let watcher: FSWatcher | undefined
  let timer: ReturnType<typeof setTimeout> | undefined
  if (opts.watchFile !== false) {
    try {
      watcher = watch(dirname(path), { persistent: false }, (_ev, name) => {
        if (name !== null && name.toString() !== basename(path)) return
        if (timer !== undefined) clearTimeout(timer)
        timer = setTimeout(() => {
          timer = undefined
          try {
            cur = open(path)
            opts.onReload?.({ path, ok: true })
          } catch (e) {
            opts.onReload?.({ path, ok: false, error: e instanceof Error ? e.message : String(e) })
          }
        }, 500)
      })
      watcher.on("error", () => {})
    } catch {
      // An unwatchable directory: the database is still served, just not reloaded.
    }
  }
  return {
    path,
    get: (ip) => {
      const a = ip.startsWith("::ffff:") && isIP(ip.slice(7)) === 4 ? ip.slice(7) : ip
      if (isIP(a) === 0) return null
      try { return cur.reader.get(a) } catch { return null }
    },
    info: () => ({
      path,
      type: cur.reader.metadata.databaseType,
      builtAt: cur.reader.metadata.buildEpoch.toISOString(),
      loadedAt: cur.loadedAt,
    }),
    close: () => {
      if (timer !== undefined) clearTimeout(timer)
      watcher?.close()
    },
  }
}
