/**
 * THE symbol table of the native library, its loader and its ABI check. This is the only
 * file that calls `Deno.dlopen`.
 *
 * Location (README "Native library"): the `WARP_CACHE_LIB` environment variable (a path)
 * when it is set, and then that path only; otherwise the crate's release build output
 * `rust/target/release/`. Loading is lazy (first use) and never prompts: without
 * `--allow-ffi` (or without permission to read `WARP_CACHE_LIB`) the library is simply
 * not available, and the memory backend uses the TypeScript store.
 *
 * @module
 */

/** ABI version that this table matches; see `ABI_VERSION` in `rust/src/ffi/mod.rs`. */
export const ABI_VERSION = 1;

/**
 * `warp_mem_get` reports "expired" as `EXPIRED_BASE - slot` (see `rust/src/ffi/mem.rs`).
 */
export const EXPIRED_BASE = -16;

/**
 * Byte lengths are `u32` and times `f64` ms: 64-bit integers would be BigInts and leave
 * V8's fast-call path (STYLE.md §13).
 */
export const symbols = {
  warp_abi_version: { parameters: [], result: "u32" },
  // (buf: *mut u8, cap: u32) -> full message length
  warp_last_error: { parameters: ["buffer", "u32"], result: "u32" },

  // In-process store. (capacity: 0 = unbounded, ttl_ms: <= 0 = none, policy) -> handle
  warp_mem_new: { parameters: ["u32", "f64", "u32"], result: "pointer" },
  warp_mem_free: { parameters: ["pointer"], result: "void" },
  // (h, key, key_len, now_ms) -> slot | -1 miss | EXPIRED_BASE - slot | status.
  // now_ms = NaN: the library reads its own monotonic clock.
  warp_mem_get: { parameters: ["pointer", "buffer", "u32", "f64"], result: "i32" },
  // The same function, taking the key as a pointer taken once from a long-lived buffer:
  // 6 ns a call cheaper than "buffer" (STYLE.md §13). Used on the hit path.
  warp_mem_get_ptr: {
    name: "warp_mem_get",
    parameters: ["pointer", "pointer", "u32", "f64"],
    result: "i32",
  },
  // (h, key, key_len, now_ms) -> slot (an evicted entry's slot is reused) | status
  warp_mem_set: { parameters: ["pointer", "buffer", "u32", "f64"], result: "i32" },
  // The same function with the key as a pointer to a long-lived buffer (the miss path's
  // held key).
  warp_mem_set_ptr: {
    name: "warp_mem_set",
    parameters: ["pointer", "pointer", "u32", "f64"],
    result: "i32",
  },
  // (h, key, key_len, now_ms) -> slot | -1, without counting or marking
  warp_mem_peek: { parameters: ["pointer", "buffer", "u32", "f64"], result: "i32" },
  // (h, key, key_len) -> former slot | -1
  warp_mem_delete: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  // (h) -> evicted slot | -1
  warp_mem_evict: { parameters: ["pointer"], result: "i32" },
  warp_mem_clear: { parameters: ["pointer"], result: "i32" },
  warp_mem_len: { parameters: ["pointer"], result: "i32" },
  // (h, out: 6 x f64 = hits, misses, evictions, expirations, len, capacity) -> status
  warp_mem_info: { parameters: ["pointer", "buffer"], result: "i32" },

  // Shared store (unix only, hence optional).
  // (path, path_len, capacity, max_key_size, max_value_size, ttl_ms) -> handle | null
  warp_shm_open: {
    parameters: ["buffer", "u32", "u32", "u32", "u32", "f64"],
    result: "pointer",
    optional: true,
  },
  warp_shm_close: { parameters: ["pointer"], result: "void", optional: true },
  // (h, key, key_len, out, out_cap, now_ms) -> value length | -1 miss | status.
  // now_ms = NaN: the library reads Unix time, a clock every process agrees on.
  warp_shm_get: {
    parameters: ["pointer", "buffer", "u32", "buffer", "u32", "f64"],
    result: "i32",
    optional: true,
  },
  // The same function with the key (the writer's buffer) and the output (the store's value
  // buffer) as pointers taken once: two "buffer" arguments cost ~15 ns more per hit.
  warp_shm_get_ptr: {
    name: "warp_shm_get",
    parameters: ["pointer", "pointer", "u32", "pointer", "u32", "f64"],
    result: "i32",
    optional: true,
  },
  // (h, key, key_len, value, value_len, now_ms) -> 0 stored | 1 skipped (oversize) | status
  warp_shm_set: {
    parameters: ["pointer", "buffer", "u32", "buffer", "u32", "f64"],
    result: "i32",
    optional: true,
  },
  // (h, key, key_len) -> 0 removed | -1 absent | status
  warp_shm_delete: {
    parameters: ["pointer", "buffer", "u32"],
    result: "i32",
    optional: true,
  },
  warp_shm_clear: { parameters: ["pointer"], result: "i32", optional: true },
  // (h, out: 8 x f64 = hits, misses, oversize_skips, len, capacity, evictions,
  //  max_key_size, max_value_size) -> status
  warp_shm_info: {
    parameters: ["pointer", "buffer"],
    result: "i32",
    optional: true,
  },
  // (h) -> status: turns one counted miss into a hit (single-flight joins)
  warp_shm_count_hit: { parameters: ["pointer"], result: "i32", optional: true },
} as const satisfies Deno.ForeignLibraryInterface;

/** The loaded library's symbols. */
export type NativeSymbols = Deno.DynamicLibrary<typeof symbols>["symbols"];

let loaded: NativeSymbols | null | undefined;
let loadError = "";
let loadFailure: NativeLoadFailure | null = null;
let loadThrown: Error | null = null;

/** Why the library did not load, when that is a configuration error. */
export interface NativeLoadFailure {
  /** The path that was set in `WARP_CACHE_LIB`. */
  path: string;
  /** Why it did not load: the `Deno.dlopen` error, or the ABI version it reports. */
  reason: string;
}

function permitted(desc: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(desc).state === "granted";
  } catch {
    return false;
  }
}

/**
 * The environment variable `name`, or `undefined` when it is unset, empty, or not
 * readable without a prompt (no `--allow-env` for it).
 */
export function envVar(name: string): string | undefined {
  if (!permitted({ name: "env", variable: name })) return undefined;
  return Deno.env.get(name) || undefined;
}

/** File name of the library on this platform: `libwarp_cache.so`, `.dylib`, `.dll`. */
export function libraryFileName(os: string = Deno.build.os): string {
  if (os === "windows") return "warp_cache.dll";
  if (os === "darwin") return "libwarp_cache.dylib";
  return "libwarp_cache.so";
}

/**
 * Where the library is looked for: the path in `WARP_CACHE_LIB` alone when it is set (an
 * explicit path is never replaced by another library), otherwise the cargo release output
 * next to this module (only when this module is a local file).
 */
export function libraryCandidates(): string[] {
  const fromEnv = envVar("WARP_CACHE_LIB");
  if (fromEnv) return [fromEnv];
  const here = new URL(import.meta.url);
  if (here.protocol !== "file:") return [];
  const url = new URL(`../rust/target/release/${libraryFileName()}`, import.meta.url);
  return [decodeURIComponent(url.pathname)];
}

/** How to get a library, for error messages. */
export const BUILD_HINT =
  "build it with `deno task build` (needs Rust), or set WARP_CACHE_LIB to its path";

function readLastError(lib: NativeSymbols): string {
  const buf = new Uint8Array(1024);
  const n = lib.warp_last_error(buf, buf.length);
  return new TextDecoder().decode(buf.subarray(0, Math.min(n, buf.length)));
}

/** The message recorded by the library for the last failed call on this thread. */
export function nativeLastError(): string {
  return loaded ? readLastError(loaded) : loadError;
}

/** Opens a library file; `Deno.dlopen` but for tests. */
export type LibraryOpener = (
  path: string,
  iface: typeof symbols,
) => Deno.DynamicLibrary<typeof symbols>;

/**
 * The reason in a `Deno.dlopen` error, without the "Could not open library: " prefixes
 * (Deno 2.9.6 writes two) and the path, which the caller names.
 */
function dlopenReason(message: string, path: string): string {
  const prefix = "Could not open library: ";
  let reason = message;
  while (reason.startsWith(prefix)) reason = reason.slice(prefix.length);
  if (reason.startsWith(`${path}: `)) reason = reason.slice(path.length + 2);
  return reason || message;
}

/** Why a library file cannot be used. */
export interface OpenFailure {
  /** The `Deno.dlopen` error, or the ABI version the library reports. */
  reason: string;
  /** The ABI version the library reports, when it loaded but is of another version. */
  version?: number;
}

/**
 * Opens the library at `path` and checks its ABI version.
 *
 * @param path The library file.
 * @param open How to open it (tests pass a stand-in); `Deno.dlopen` by default.
 * @returns The library's symbols, or why it cannot be used.
 * @throws {Deno.errors.PermissionDenied} If `--allow-ffi` is missing.
 */
export function openLibrary(
  path: string,
  open: LibraryOpener = Deno.dlopen,
): NativeSymbols | OpenFailure {
  let lib: Deno.DynamicLibrary<typeof symbols>;
  try {
    lib = open(path, symbols);
  } catch (e) {
    if (e instanceof Deno.errors.PermissionDenied) throw e;
    return { reason: dlopenReason(e instanceof Error ? e.message : String(e), path) };
  }
  const version = lib.symbols.warp_abi_version();
  if (version !== ABI_VERSION) {
    lib.close();
    return {
      reason:
        `it reports ABI version ${version}, expected ${ABI_VERSION}; rebuild it with \`deno task build\``,
      version,
    };
  }
  return lib.symbols;
}

/**
 * Loads the native library once and returns its symbols, or `null` when it is not
 * available: no `--allow-ffi`, not built, or `WARP_CACHE_LIB` set to a path that does not
 * load (then {@linkcode nativeLoadFailure} says why). Never prompts for a permission.
 * {@linkcode nativeLoadError} tells why it returned `null`.
 *
 * @throws {Error} If the release build loads but reports another ABI version (a stale
 * build); every later call throws it again.
 */
export function loadNative(): NativeSymbols | null {
  if (loadThrown) throw loadThrown;
  if (loaded !== undefined) return loaded;
  loaded = null;
  if (typeof Deno?.dlopen !== "function" || !permitted({ name: "ffi" })) {
    loadError = "Deno.dlopen is not permitted here (run with --allow-ffi)";
    return null;
  }
  const fromEnv = envVar("WARP_CACHE_LIB");
  const [path] = libraryCandidates();
  if (path === undefined) {
    loadError = "no native library was found";
    return null;
  }
  const lib = openLibrary(path);
  if (!("reason" in lib)) {
    loaded = lib;
    return loaded;
  }
  if (fromEnv !== undefined) {
    loadFailure = { path, reason: lib.reason };
    loadError = `WARP_CACHE_LIB=${path} could not be loaded: ${lib.reason}`;
  } else if (lib.version !== undefined) {
    loadThrown = new Error(`Cannot load the @warp/cache native library ${path}: ${lib.reason}`);
    throw loadThrown;
  } else {
    loadError = `the native library could not be loaded (${path}: ${lib.reason})`;
  }
  return null;
}

/**
 * Why {@linkcode loadNative} returned `null`, without advice (empty when it did not).
 * Callers add {@linkcode BUILD_HINT}.
 */
export function nativeLoadError(): string {
  return loadError;
}

/**
 * The failure of an explicitly set `WARP_CACHE_LIB` (a configuration error, which the
 * memory backend reports once before it falls back), or `null`.
 */
export function nativeLoadFailure(): NativeLoadFailure | null {
  return loadFailure;
}
