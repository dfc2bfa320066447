export * as Admin from "./Admin.ts"
export * as AdminConfig from "./Config.ts"
export * as ExplainRequest from "./ExplainRequest.ts"
export { adminPlugin } from "./AdminPlugin.ts"
