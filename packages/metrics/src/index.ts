export * as Metrics from "./Metrics.ts"
export * as PromText from "./PromText.ts"
