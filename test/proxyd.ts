/**
 * Runs the real `proxyd` command (packages/cli/bin/proxyd.js) in a child
 * process with the Node running the tests (Node 24), for end-to-end tests.
 */
import { spawnSync } from "node:child_process"
import { fileURLToPath } from "node:url"

export const ROOT = fileURLToPath(new URL("..", import.meta.url))
export const BIN = fileURLToPath(new URL("../packages/cli/bin/proxyd.js", import.meta.url))

export interface Run { readonly code: number | null; readonly out: string; readonly err: string }

export const proxyd = (args: ReadonlyArray<string>, opts: { readonly cwd?: string; readonly env?: Record<string, string> } = {}): Run => {
  const r = spawnSync(process.execPath, [BIN, ...args], {
    cwd: opts.cwd ?? ROOT,
    encoding: "utf8",
    env: { ...process.env, NO_COLOR: "1", ...opts.env },
    timeout: 60_000,
  })
  return { code: r.status, out: r.stdout, err: r.stderr }
}
