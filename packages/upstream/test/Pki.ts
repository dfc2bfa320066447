/**
 * A throwaway PKI with the `openssl` CLI (a CA and a server certificate for
 * 127.0.0.1/localhost), for proxyd as a TLS-wrapped upstream.
 */
import { execFileSync } from "node:child_process"
import { writeFileSync } from "node:fs"
import { join } from "node:path"

export const hasOpenssl = (): boolean => {
  try {
    execFileSync("openssl", ["version"], { stdio: "ignore" })
    return true
  } catch {
    return false
  }
}

const openssl = (args: ReadonlyArray<string>, cwd: string): void => {
  execFileSync("openssl", [...args], { cwd, stdio: ["ignore", "ignore", "pipe"], timeout: 30_000 })
}

export interface KeyPair { readonly cert: string; readonly key: string }

export const makeCa = (dir: string, name: string): KeyPair => {
  const cert = join(dir, `${name}.pem`), key = join(dir, `${name}.key`)
  openssl(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", cert,
    "-days", "2", "-subj", `/CN=${name}`, "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign"], dir)
  return { cert, key }
}

export const serverCert = (dir: string, ca: KeyPair, name: string): KeyPair => {
  const cert = join(dir, `${name}.pem`), key = join(dir, `${name}.key`), csr = join(dir, `${name}.csr`), ext = join(dir, `${name}.ext`)
  writeFileSync(ext, "subjectAltName=IP:127.0.0.1,DNS:proxy.test\nextendedKeyUsage=serverAuth\n")
  openssl(["req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-keyout", key, "-out", csr, "-subj", `/CN=${name}`], dir)
  openssl(["x509", "-req", "-in", csr, "-CA", ca.cert, "-CAkey", ca.key, "-CAcreateserial", "-out", cert, "-days", "2", "-extfile", ext], dir)
  return { cert, key }
}
