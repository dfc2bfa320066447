/**
 * Test helpers shared by the packages' tests (private; never shipped).
 *
 * Details: depends on `@proxyd/rules` and `@proxyd/runtime` only, so the
 * protocol packages' tests can use it without a project-reference cycle;
 * whatever needs the protocol handlers takes them as a parameter.
 */
export * from "./Cleanup.ts"
export * from "./Curl.ts"
export * from "./Express.ts"
export * from "./Harness.ts"
export * from "./Net.ts"
export * from "./Proxyd.ts"
