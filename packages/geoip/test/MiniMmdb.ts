/**
 * A tiny MaxMind DB (mmdb v2) writer for tests: IPv4 networks → records.
 *
 * Details: 24-bit records, IPv4 tree (ip_version 4), data types string, uint16,
 * uint32, map, uint64 (metadata). Enough for Country/City/ASN-shaped records.
 * Written from the MaxMind DB spec (https://maxmind.github.io/MaxMind-DB/).
 */

type Value = string | number | { readonly [k: string]: Value }

const ctrl = (type: number, size: number): Buffer => {
  if (size >= 285) throw new Error("MiniMmdb: values of 285 bytes or more are not supported")
  const [low, extra] = size < 29 ? [size, []] : [29, [size - 29]]
  return Buffer.from(type <= 7 ? [(type << 5) | low, ...extra] : [low, type - 7, ...extra])
}

const uint = (type: number, n: number | bigint): Buffer => {
  const bytes: Array<number> = []
  for (let v = BigInt(n); v > 0n; v >>= 8n) bytes.unshift(Number(v & 0xffn))
  return Buffer.concat([ctrl(type, bytes.length), Buffer.from(bytes)])
}

const encode = (v: Value): Buffer => {
  if (typeof v === "string") {
    const b = Buffer.from(v, "utf8")
    return Buffer.concat([ctrl(2, b.length), b])
  }
  if (typeof v === "number") return uint(6, v)
  const keys = Object.keys(v)
  return Buffer.concat([ctrl(7, keys.length), ...keys.flatMap((k) => [encode(k), encode(v[k]!)])])
}

interface Node { kids: [Node | number | undefined, Node | number | undefined] }

export const writeMmdb = (databaseType: string, networks: ReadonlyArray<readonly [string, Value]>): Buffer => {
  const root: Node = { kids: [undefined, undefined] }
  const data: Array<Buffer> = []
  let dataLen = 0
  for (const [cidr, rec] of networks) {
    const [ip, len] = cidr.split("/") as [string, string]
    const bits = ip.split(".").reduce((a, o) => (a << 8) | Number(o), 0) >>> 0
    const off = dataLen
    const enc = encode(rec)
    data.push(enc)
    dataLen += enc.length
    let n = root
    const prefix = Number(len)
    for (let i = 0; i < prefix; i++) {
      const bit = (bits >>> (31 - i)) & 1
      if (i === prefix - 1) { n.kids[bit] = -(off + 1); break }
      const next = n.kids[bit]
      if (typeof next === "object") n = next
      else { const c: Node = { kids: [undefined, undefined] }; n.kids[bit] = c; n = c }
    }
  }
  const nodes: Array<Node> = []
  const index = new Map<Node, number>()
  const walk = (n: Node): void => { index.set(n, nodes.length); nodes.push(n); for (const k of n.kids) if (typeof k === "object") walk(k) }
  walk(root)
  const count = nodes.length
  const rec = (k: Node | number | undefined): number =>
    k === undefined ? count : typeof k === "object" ? index.get(k)! : count + 16 + (-k - 1)
  const tree = Buffer.alloc(count * 6)
  nodes.forEach((n, i) => { tree.writeUIntBE(rec(n.kids[0]), i * 6, 3); tree.writeUIntBE(rec(n.kids[1]), i * 6 + 3, 3) })
  const meta = Buffer.concat([
    ctrl(7, 9),
    encode("node_count"), uint(6, count),
    encode("record_size"), uint(5, 24),
    encode("ip_version"), uint(5, 4),
    encode("database_type"), encode(databaseType),
    encode("languages"), ctrl(11, 0),
    encode("binary_format_major_version"), uint(5, 2),
    encode("binary_format_minor_version"), uint(5, 0),
    encode("build_epoch"), uint(9, 1_700_000_000n),
    encode("description"), ctrl(7, 0),
  ])
  return Buffer.concat([tree, Buffer.alloc(16), ...data, Buffer.from("\xab\xcd\xefMaxMind.com", "latin1"), meta])
}
