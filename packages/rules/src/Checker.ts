/**
 * The checker: a loaded item list in, a `Program` and diagnostics out.
 */
import type { Diagnostic } from "./Diagnostic.ts"
import type { Program } from "./Ir.ts"
import type { Loaded, SourceReader } from "./Loader.ts"

export const checkLoaded = (_loaded: Loaded, _reader: SourceReader): { readonly program: Program | undefined; readonly diagnostics: ReadonlyArray<Diagnostic> } =>
  ({ program: undefined, diagnostics: [] })
