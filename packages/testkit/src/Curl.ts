/**
 * curl as a test client.
 *
 * Details: `curl` is looked up once; when it is missing, `needCurl` fails the
 * test under `CI=true` (CI must install it) and skips it otherwise. curl runs
 * with an environment stripped of proxy variables (only `PATH` is passed) and
 * a 10 s ceiling.
 */
import { execFile, execFileSync } from "node:child_process"

const curlPath = (() => {
  try {
    execFileSync("curl", ["--version"], { stdio: "ignore" })
    return "curl"
  } catch {
    return undefined
  }
})()

/** Fails under CI=true when curl is missing; otherwise skips with a message. Returns whether curl is usable. */
export const needCurl = (ctx: { skip: (note?: string) => void }): boolean => {
  if (curlPath !== undefined) return true
  if (process.env["CI"] === "true") throw new Error("curl is required for these tests in CI (.ci/run must `apt-get install -y curl`)")
  ctx.skip("curl is not installed: skipping the curl end-to-end test")
  return false
}

export interface CurlResult { readonly code: number; readonly stdout: string; readonly stderr: string }

export const curl = (args: ReadonlyArray<string>): Promise<CurlResult> =>
  new Promise((resolve) => {
    execFile(curlPath ?? "curl", ["--silent", "--show-error", "--max-time", "10", ...args], { env: { PATH: process.env["PATH"] ?? "/usr/bin:/bin" }, timeout: 15_000 }, (err, stdout, stderr) => {
      const code = err === null ? 0 : typeof (err as { code?: unknown }).code === "number" ? (err as { code: number }).code : -1
      resolve({ code, stdout, stderr })
    })
  })
