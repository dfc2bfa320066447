export * as HttpHead from "./HttpHead.ts"
export * as Chunked from "./Chunked.ts"
export { errorResponse, httpHandler, makeHttpHandler, type HttpOptions } from "./HttpHandler.ts"
