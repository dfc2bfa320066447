/**
 * The plugins `proxyd` runs with: the runtime's built-ins plus the packages above the runtime.
 *
 * Details: `Registry.builtins` (auth kinds, brute-force guard) cannot list
 * plugins from packages that depend on the runtime, so the command adds them
 * here: `proxyd.geoip` (country/ASN facts, the CC0 country database built in)
 * and `proxyd.admin` (Prometheus metrics and the `admin` API declaration).
 * `check` and `run` both use this list, so `check` knows the `admin` keyword.
 */
import { Registry, type Plugin } from "@proxyd/runtime"
import { geoIpPlugin } from "@proxyd/geoip"
import { adminPlugin } from "@proxyd/admin"

export const builtins: ReadonlyArray<Plugin.Plugin> = [...Registry.builtins, geoIpPlugin, adminPlugin]
