/**
 * THE symbol table of the native library, its loader and its ABI check. This is the only
 * file that calls `Deno.dlopen`.
 *
 * Location (SPEC §8): the `WARP_CACHE_LIB` environment variable (a path), then the
 * crate's release build output `rust/target/release/`. Loading is lazy (first use) and
 * never prompts: without `--allow-ffi` (or without permission to read `WARP_CACHE_LIB`)
 * the library is simply not available, and the memory backend uses the TypeScript store.
 *
 * @module
 */

/** ABI version that this table matches; see `ABI_VERSION` in `rust/src/ffi/mod.rs`. */
export const ABI_VERSION = 2;

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
  // (capacity, max_key_size, max_value_size) -> bytes of the cache file (f64, exact)
  warp_shm_file_size: { parameters: ["u32", "u32", "u32"], result: "f64", optional: true },
  // () -> largest cache file in bytes (64 GiB)
  warp_shm_max_file_size: { parameters: [], result: "f64", optional: true },
} as const satisfies Deno.ForeignLibraryInterface;

/** The loaded library's symbols. */
export type NativeSymbols = Deno.DynamicLibrary<typeof symbols>["symbols"];

let loaded: NativeSymbols | null | undefined;
let loadError = "";

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
 * Where the library is looked for, in order: `WARP_CACHE_LIB`, then the cargo release
 * output next to this module (only when this module is a local file).
 */
export function libraryCandidates(): string[] {
  const out: string[] = [];
  const fromEnv = envVar("WARP_CACHE_LIB");
  if (fromEnv) out.push(fromEnv);
  const here = new URL(import.meta.url);
  if (here.protocol === "file:") {
    const url = new URL(
      `../rust/target/release/${libraryFileName()}`,
      import.meta.url,
    );
    out.push(decodeURIComponent(url.pathname));
  }
  return out;
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

/**
 * Loads the native library once and returns its symbols, or `null` when it is not
 * available (no `--allow-ffi`, not built, or a load error; see
 * {@linkcode nativeLoadError}). Never prompts for a permission.
 *
 * @throws {Error} If the library loads but reports another ABI version (a stale build).
 */
export function loadNative(): NativeSymbols | null {
  if (loaded !== undefined) return loaded;
  loaded = null;
  if (typeof Deno?.dlopen !== "function" || !permitted({ name: "ffi" })) {
    loadError = "Deno.dlopen is not permitted here (run with --allow-ffi)";
    return null;
  }
  const tried: string[] = [];
  for (const path of libraryCandidates()) {
    let lib: Deno.DynamicLibrary<typeof symbols>;
    try {
      lib = Deno.dlopen(path, symbols);
    } catch (e) {
      tried.push(`${path}: ${e instanceof Error ? e.message : String(e)}`);
      continue;
    }
    const version = lib.symbols.warp_abi_version();
    if (version !== ABI_VERSION) {
      lib.close();
      throw new Error(
        `Cannot load the @warp/cache native library: ${path} has ABI version ${version}, expected ${ABI_VERSION}; rebuild it with \`deno task build\``,
      );
    }
    loaded = lib.symbols;
    return loaded;
  }
  loadError = tried.length
    ? `the native library could not be loaded (${tried.join("; ")}): ${BUILD_HINT}`
    : `no native library was found: ${BUILD_HINT}`;
  return null;
}

/** Why {@linkcode loadNative} returned `null` (empty when it did not). */
export function nativeLoadError(): string {
  return loadError;
}
