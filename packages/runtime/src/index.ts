export * as Errors from "./Errors.ts"
export * as Inbound from "./Inbound.ts"
