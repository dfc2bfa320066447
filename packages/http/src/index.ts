export * as HttpHead from "./HttpHead.ts"
export * as Chunked from "./Chunked.ts"
export * as Wire from "./Wire.ts"
export { errorResponse, httpHandler, makeHttpHandler, type HttpOptions } from "./HttpHandler.ts"
