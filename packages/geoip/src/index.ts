export * as Database from "./Database.ts"
export * as GeoIp from "./GeoIp.ts"
export * as Layout from "./Layout.ts"
export { geoIpPlugin } from "./GeoIpPlugin.ts"
