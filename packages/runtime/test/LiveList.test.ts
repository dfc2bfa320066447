import { describe, expect, it } from "vitest"
import { LiveList } from "../src/LiveList.ts"

describe("LiveList", () => {
  it("keeps members in insertion order and removes any of them in O(1)", () => {
    const l = new LiveList<string>()
    const [a, b, c, d] = ["a", "b", "c", "d"].map((v) => l.add(v))
    expect(l.values()).toEqual(["a", "b", "c", "d"])
    expect(l.size).toBe(4)
    b!.remove() // middle
    expect(l.values()).toEqual(["a", "c", "d"])
    a!.remove() // head
    d!.remove() // tail
    expect(l.values()).toEqual(["c"])
    expect(l.size).toBe(1)
    const e = l.add("e") // after the tail moved
    expect(l.values()).toEqual(["c", "e"])
    c!.remove()
    e.remove()
    expect(l.values()).toEqual([])
    expect(l.size).toBe(0)
    l.add("f")
    expect(l.values()).toEqual(["f"])
  })

  it("removing twice, or a node of another list, changes nothing", () => {
    const l = new LiveList<number>()
    const other = new LiveList<number>()
    const n = l.add(1)
    l.add(2)
    const o = other.add(3)
    n.remove()
    n.remove()
    l.unlink(o)
    expect(l.values()).toEqual([2])
    expect(l.size).toBe(1)
    expect(other.values()).toEqual([3])
  })

  it("a removed node keeps no reference to its value or its neighbours", () => {
    const l = new LiveList<object>()
    l.add({})
    const n = l.add({ big: true })
    l.add({})
    n.remove()
    expect([n.value, n.prev, n.next, n.list]).toEqual([undefined, undefined, undefined, undefined])
  })

  it("values() is a copy (members can be removed while walking it) and find() walks oldest first", () => {
    const l = new LiveList<number>()
    const nodes = [1, 2, 3, 4].map((v) => l.add(v))
    for (const v of l.values()) if (v % 2 === 0) nodes[v - 1]!.remove()
    expect(l.values()).toEqual([1, 3])
    expect(l.find((v) => v > 1)).toBe(3)
    expect(l.find((v) => v > 5)).toBeUndefined()
  })
})
