/**
 * Test PKI made with the `openssl` CLI: a CA, server certificates for 127.0.0.1, client certificates.
 *
 * Details: P-256 keys, valid two days. `tool(name)` tells whether a CLI is on
 * the PATH; `requireTool` is the policy for tests that need one: under
 * `CI=true` a missing tool fails the test (CI must install it), otherwise the
 * test is skipped with a message naming the tool.
 */
import { execFileSync } from "node:child_process"
import { writeFileSync } from "node:fs"
import { join } from "node:path"

const found = new Map<string, boolean>()

/** Whether `name` runs (looked up once). */
export const tool = (name: string, versionArgs: ReadonlyArray<string> = ["--version"]): boolean => {
  let ok = found.get(name)
  if (ok === undefined) {
    try {
      execFileSync(name, [...versionArgs], { stdio: "ignore", timeout: 10_000 })
      ok = true
    } catch (e) {
      ok = (e as NodeJS.ErrnoException).code !== "ENOENT"
    }
    found.set(name, ok)
  }
  return ok
}

/**
 * For tests that need a CLI: true when it is there; under CI=true a missing one throws (the test fails);
 * otherwise logs why and returns false (the caller returns early: skipped).
 */
export const requireTool = (name: string, ctx: { skip: (note?: string) => void }, versionArgs?: ReadonlyArray<string>): boolean => {
  if (tool(name, versionArgs)) return true
  if (process.env["CI"] === "true") throw new Error(`\`${name}\` is not installed; CI must install it (see .ci/run)`)
  ctx.skip(`\`${name}\` is not installed; skipping`)
  return false
}

export interface KeyPair { readonly cert: string; readonly key: string }

const openssl = (args: ReadonlyArray<string>, cwd: string): void => {
  execFileSync("openssl", [...args], { cwd, stdio: ["ignore", "ignore", "pipe"], timeout: 30_000 })
}

/** A self-signed CA named `name` in `dir`. */
export const makeCa = (dir: string, name: string): KeyPair => {
  const cert = join(dir, `${name}.pem`), key = join(dir, `${name}.key`)
  openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
    "-days", "2", "-subj", `/CN=${name}`, "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], dir)
  return { cert, key }
}

/** A leaf certificate `name` signed by `ca`: a server certificate for 127.0.0.1/localhost, or a client certificate. */
export const issue = (dir: string, ca: KeyPair, name: string, usage: "server" | "client"): KeyPair => {
  const cert = join(dir, `${name}.pem`), key = join(dir, `${name}.key`), csr = join(dir, `${name}.csr`), ext = join(dir, `${name}.ext`)
  writeFileSync(ext, usage === "server"
    ? "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n"
    : "extendedKeyUsage=clientAuth\n")
  openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr, "-subj", `/CN=${name}`], dir)
  openssl(["x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext], dir)
  return { cert, key }
}
