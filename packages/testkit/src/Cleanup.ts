/**
 * Per-test cleanup: what a test starts is stopped after it, last first.
 *
 * Details: `cleanupsAfterEach()` registers an `afterEach` in the calling test
 * file (call it once, at the top level) and returns `defer` (run a function
 * after the current test) and `later` (stop or close a server/harness after
 * the current test, and return it).
 */
import { afterEach } from "vitest"

export interface Cleanups {
  defer(...cleanup: Array<() => Promise<void> | void>): void
  later<A extends { stop?: () => Promise<void>; close?: () => Promise<void> | void }>(x: A): A
}

export const cleanupsAfterEach = (): Cleanups => {
  const cleanups: Array<() => Promise<void> | void> = []
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c()
  })
  const defer = (...cleanup: Array<() => Promise<void> | void>): void => {
    cleanups.push(...cleanup)
  }
  return {
    defer,
    later: (x) => {
      defer(() => (x.stop ?? x.close)!.call(x))
      return x
    },
  }
}
