/**
 * THE symbol table of the native library, its loader and its ABI check. This is the only
 * file that opens the native library with `Deno.dlopen` (`_uid.ts` opens the C library for
 * `geteuid`). The signatures are written here by hand; the values that cross with them (the
 * ABI version checked on load, status codes, sentinels, field orders, limits) come from
 * `_abi.ts`, generated from the crate (`rust/src/abi.rs`).
 *
 * Where the library is looked for, how it is verified and downloaded: `_library.ts` and
 * the README ("Native library"). A library is loaded from the very file that was checked
 * (`openCandidate`: on Linux through `/proc/self/fd/<n>`), whose descriptor stays open while
 * the library is loaded. Loading is lazy (first use) and never prompts: without
 * `--allow-ffi` (or the permissions to read, verify or download it) the library is simply
 * not available, and the memory backend uses the TypeScript store.
 *
 * @module
 */

import {
  baseUrl,
  candidates,
  download,
  downloadBlocker,
  envVar,
  INSTALL_COMMAND,
  openCandidate,
  type OpenedLibrary,
  permitted,
  userLibraryDir,
} from "./_library.ts";
import { ABI_VERSION } from "./_abi.ts";

export { envVar };

/**
 * The values that cross with these symbols (status codes, sentinels such as `NO_TTL` and
 * `LIBRARY_TIME`, result codes, info field orders, limits) are in `_abi.ts`, generated from
 * `rust/src/abi.rs`; the table below matches its `ABI_VERSION`.
 *
 * Byte lengths are `u32` and times `f64` ms: 64-bit integers would be BigInts and leave
 * V8's fast-call path (measured by the raw FFI group of `deno task bench`).
 */
export const symbols = {
  warp_abi_version: { parameters: [], result: "u32" },
  // (buf: *mut u8, cap: u32) -> full message length
  warp_last_error: { parameters: ["buffer", "u32"], result: "u32" },

  // In-process store.
  // (capacity (UNBOUNDED_CAPACITY: none), ttl_ms (NO_TTL: none), policy (POLICY),
  //  stale_ms (0: none)) -> handle | null
  warp_mem_new: { parameters: ["u32", "f64", "u32", "f64"], result: "pointer" },
  warp_mem_free: { parameters: ["pointer"], result: "void" },
  // (h, key, key_len, now_ms) -> slot | Status.Miss (or stale: the entry and its value stay) |
  // EXPIRED_BASE - slot (removed: drop its value) | status.
  // now_ms = LIBRARY_TIME: the library reads its own monotonic clock (only for entries with
  // a TTL).
  warp_mem_get: { parameters: ["pointer", "buffer", "u32", "f64"], result: "i32" },
  // The same function, taking the key as a pointer taken once from a long-lived buffer:
  // 6 ns a call cheaper than "buffer" (measured by the raw FFI group of `deno task bench`). Used on the hit path.
  warp_mem_get_ptr: {
    name: "warp_mem_get",
    parameters: ["pointer", "pointer", "u32", "f64"],
    result: "i32",
  },
  // (h, key, key_len, now_ms, ttl_ms (NO_TTL: the store's)) -> slot (an evicted entry's
  // slot is reused) | status
  warp_mem_set: { parameters: ["pointer", "buffer", "u32", "f64", "f64"], result: "i32" },
  // The same function with the key as a pointer to a long-lived buffer (the miss path's
  // held key).
  warp_mem_set_ptr: {
    name: "warp_mem_set",
    parameters: ["pointer", "pointer", "u32", "f64", "f64"],
    result: "i32",
  },
  // (h, key, key_len, now_ms) -> slot | -1, without counting or marking
  warp_mem_peek: { parameters: ["pointer", "buffer", "u32", "f64"], result: "i32" },
  // (h, key, key_len, now_ms) -> slot while fresh or stale | -1, without counting or marking
  warp_mem_peek_stale: { parameters: ["pointer", "buffer", "u32", "f64"], result: "i32" },
  // (h, key, key_len) -> former slot | -1
  warp_mem_delete: { parameters: ["pointer", "buffer", "u32"], result: "i32" },
  // (h) -> evicted slot | -1
  warp_mem_evict: { parameters: ["pointer"], result: "i32" },
  warp_mem_clear: { parameters: ["pointer"], result: "i32" },
  warp_mem_len: { parameters: ["pointer"], result: "i32" },
  // (h, out: MEM_INFO_FIELDS x f64, in the order of MEM_INFO) -> status
  warp_mem_info: { parameters: ["pointer", "buffer"], result: "i32" },

  // Shared store (unix only, hence optional).
  // (path, path_len, capacity, max_key_size, max_value_size, max_bytes (DEFAULT_BUDGET:
  //  the default), ttl_ms (NO_TTL: none), stale_ms (0: none)) -> handle | null
  warp_shm_open: {
    parameters: ["buffer", "u32", "u32", "u32", "u32", "u64", "f64", "f64"],
    result: "pointer",
    optional: true,
  },
  warp_shm_close: { parameters: ["pointer"], result: "void", optional: true },
  // (h, key, key_len, out, out_cap, now_ms) -> value length | Status.Miss | status.
  // now_ms = LIBRARY_TIME: the library reads Unix time, a clock every process agrees on.
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
  // warp_shm_get that claims the key's flight when it misses (the lookup of cache()):
  // (h, key, key_len, out, out_cap, now_ms) -> value length | MISS_CLAIMED - claim code
  // (a miss, and what the claim found: FLIGHT in src/store/shared_flights.ts) | status.
  // Key and output as pointers taken once, as warp_shm_get_ptr.
  warp_shm_get_claim_ptr: {
    name: "warp_shm_get_claim",
    parameters: ["pointer", "pointer", "u32", "pointer", "u32", "f64"],
    result: "i32",
    optional: true,
  },
  // The same function with the key as a buffer (a nested call's own key writer).
  warp_shm_get_claim: {
    parameters: ["pointer", "buffer", "u32", "buffer", "u32", "f64"],
    result: "i32",
    optional: true,
  },
  // warp_shm_get without counting or marking the entry visited (cacheGet()).
  warp_shm_peek: {
    parameters: ["pointer", "buffer", "u32", "buffer", "u32", "f64"],
    result: "i32",
    optional: true,
  },
  // warp_shm_peek that also returns a stale entry (past its TTL, within the stale window).
  warp_shm_peek_stale: {
    parameters: ["pointer", "buffer", "u32", "buffer", "u32", "f64"],
    result: "i32",
    optional: true,
  },
  // (h, key, key_len, value, value_len, now_ms, ttl_ms (the entry's own; NO_TTL: the
  //  handle's)) -> SET.stored | SET.skipped (oversize) | SET.busy | status
  warp_shm_set: {
    parameters: ["pointer", "buffer", "u32", "buffer", "u32", "f64", "f64"],
    result: "i32",
    optional: true,
  },
  // warp_shm_set by the owner of the key's flight, which it ends, stored or not:
  // (h, key, key_len, value, value_len, now_ms, ttl_ms) -> SET.stored | SET.skipped | SET.busy |
  // SET.lost (not stored: the flight was no longer this handle's) | status
  warp_shm_set_owned: {
    parameters: ["pointer", "buffer", "u32", "buffer", "u32", "f64", "f64"],
    result: "i32",
    optional: true,
  },
  // (h, key, key_len) -> Status.Ok removed | Status.Miss absent | status
  warp_shm_delete: {
    parameters: ["pointer", "buffer", "u32"],
    result: "i32",
    optional: true,
  },
  warp_shm_clear: { parameters: ["pointer"], result: "i32", optional: true },
  // (h, out: SHM_INFO_FIELDS x f64, in the order of SHM_INFO) -> status
  warp_shm_info: {
    parameters: ["pointer", "buffer"],
    result: "i32",
    optional: true,
  },
  // (h) -> status: turns one counted miss into a hit (single-flight joins)
  warp_shm_count_hit: { parameters: ["pointer"], result: "i32", optional: true },
  // (h) -> status: turns one counted miss into a hit and counts a stale hit
  warp_shm_count_stale_hit: { parameters: ["pointer", "u8"], result: "i32", optional: true },
  // (h) -> status: counts a background refresh
  warp_shm_count_refresh: { parameters: ["pointer"], result: "i32", optional: true },
  // (h) -> status: turns one counted hit into a miss (a hit on an entry whose tags were
  // invalidated)
  warp_shm_count_invalid_hit: { parameters: ["pointer"], result: "i32", optional: true },
  // Tag clock of a directory (`.warp_tags`, rust/src/shm/tags.rs; src/store/shared_tags.ts).
  // (dir, dir_len) -> clock | null (reason in warp_last_error). Never freed.
  warp_tags_open: { parameters: ["buffer", "u32"], result: "pointer", optional: true },
  // (clock) -> start of its mapping (LAYOUT file size bytes, never unmapped)
  warp_tags_base: { parameters: ["pointer"], result: "pointer", optional: true },
  // (out: 10 x f64 = file size, header size, slot size, slots, probe, offsets of the nonce,
  //  epoch and floor, format version, offset of the first epoch) -> status
  warp_tags_layout: { parameters: ["buffer"], result: "i32", optional: true },
  // (clock, hashes: count pairs of u32 (low, high), count) -> Status.Ok | Status.Corrupt
  // (reopen, retry)
  warp_tags_invalidate: {
    parameters: ["pointer", "buffer", "u32"],
    result: "i32",
    optional: true,
  },
  // Flights (cross-process single-flight; codes: FLIGHT in _abi.ts).
  // (h, key, key_len, async (1: the computation is known to be async))
  //  -> owner | wait | local | none | status
  warp_shm_flight_claim: {
    parameters: ["pointer", "buffer", "u32", "u8"],
    result: "i32",
    optional: true,
  },
  // (h, key, key_len) -> status: this handle's computation of key is async
  warp_shm_flight_mark_async: {
    parameters: ["pointer", "buffer", "u32"],
    result: "i32",
    optional: true,
  },
  // (h, key, key_len) -> 1 owned by this handle | 0 | status
  warp_shm_flight_owns: {
    parameters: ["pointer", "buffer", "u32"],
    result: "i32",
    optional: true,
  },
  // (h, key, key_len) -> status (idempotent)
  warp_shm_flight_release: {
    parameters: ["pointer", "buffer", "u32"],
    result: "i32",
    optional: true,
  },
  // (h, key, key_len) -> status: ends every process's flight of key
  warp_shm_flight_end: {
    parameters: ["pointer", "buffer", "u32"],
    result: "i32",
    optional: true,
  },
  // (h, key, key_len, ms (Infinity: no bound), until_async) -> done | owner | async |
  // timeout | status. Blocks the calling thread, never on a flight of this process.
  warp_shm_flight_wait_sync: {
    parameters: ["pointer", "buffer", "u32", "f64", "u8"],
    result: "i32",
    optional: true,
  },
  // () -> id of the calling thread's dispatcher of asynchronous waits | status
  warp_shm_flight_dispatcher: { parameters: [], result: "i32", optional: true },
  // (dispatcher, h, key, key_len, ms (Infinity: no bound)) -> an end code (ended at once) |
  // FLIGHT_ID_BASE + wait id | status
  warp_shm_flight_register: {
    parameters: ["u32", "pointer", "buffer", "u32", "f64"],
    result: "i32",
    optional: true,
  },
  // (dispatcher, out: u32 pairs (wait id, end code), cap (u32s)) -> pairs written | status.
  // Sleeps (on another thread) until waits of the dispatcher end: one call at a time per
  // JavaScript thread, for all its waits; 0 at once when it has none.
  warp_shm_flight_next: {
    parameters: ["u32", "buffer", "u32"],
    result: "i32",
    nonblocking: true,
    optional: true,
  },
  // (capacity, max_key_size, max_value_size, max_bytes (DEFAULT_BUDGET: the default)) ->
  // bytes of the cache file (f64, exact)
  warp_shm_file_size: {
    parameters: ["u32", "u32", "u32", "u64"],
    result: "f64",
    optional: true,
  },
  // (capacity, max_key_size, max_value_size) -> the default byte budget (f64, exact)
  warp_shm_default_max_bytes: {
    parameters: ["u32", "u32", "u32"],
    result: "f64",
    optional: true,
  },
  // () -> largest cache file in bytes (64 GiB)
  warp_shm_max_file_size: { parameters: [], result: "f64", optional: true },
  // (path, path_len, out: SHM_INSPECT_FIELDS x f64, in the order of SHM_INSPECT: those of
  //  warp_shm_info, then format version, file size, in use, consistent read, write lock held)
  //  -> verdict (INSPECT) | status. Reads the file without changing it.
  warp_shm_inspect: {
    parameters: ["buffer", "u32", "buffer"],
    result: "i32",
    optional: true,
  },
} as const satisfies Deno.ForeignLibraryInterface;

/** The loaded library's symbols. */
export type NativeSymbols = Deno.DynamicLibrary<typeof symbols>["symbols"];

let loaded: NativeSymbols | null | undefined;
let loadError = "";
let loadedPath = "";
let loadFailure: NativeLoadFailure | null = null;
let loadThrown: Error | null = null;
let downloadError = "";

/** Why the library did not load, when that is a configuration error. */
export interface NativeLoadFailure {
  /** The path that was set in `WARP_CACHE_LIB`. */
  path: string;
  /** Why it did not load: the `Deno.dlopen` error, or the ABI version it reports. */
  reason: string;
}

/** Whether this module runs from a checkout that can build the library with cargo. */
function inCheckout(): boolean {
  const manifest = new URL("../../rust/Cargo.toml", import.meta.url);
  if (manifest.protocol !== "file:") return false;
  try {
    return Deno.statSync(decodeURIComponent(manifest.pathname)).isFile;
  } catch {
    return false;
  }
}

/** How to get a library, for error messages (callers add it once): the permissions that let
 * the first use download it, the install command, `WARP_CACHE_LIB`, and in a checkout the
 * build command. */
export function installHint(): string {
  const build = inCheckout() ? "build it with `deno task build` (needs Rust), or " : "";
  return `run with --allow-ffi --allow-env --allow-read --allow-write --allow-net (or -A) so that the first use downloads it, or install it ahead of time with \`${INSTALL_COMMAND}\`, or ${build}set WARP_CACHE_LIB to its path`;
}

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
 * available: no `--allow-ffi`, none found or verified (see `_library.ts`), or
 * `WARP_CACHE_LIB` set to a path that does not load (then {@linkcode nativeLoadFailure}
 * says why). {@linkcode nativeLoadError} tells why it returned `null`. Never downloads (see
 * {@linkcode prepareNative}) and never prompts.
 *
 * @throws {Error} If a library found beside the module loads but reports another ABI
 * version (a stale build); every later call throws it again.
 */
export function loadNative(): NativeSymbols | null {
  if (loadThrown) throw loadThrown;
  if (loaded !== undefined) return loaded;
  loaded = null;
  if (typeof Deno?.dlopen !== "function" || !permitted({ name: "ffi" })) {
    loadError = "Deno.dlopen is not permitted here (run with --allow-ffi)";
    return null;
  }
  const tried: string[] = [];
  for (const c of candidates()) {
    const opened = openCandidate(c);
    if (c.source === "WARP_CACHE_LIB") {
      // An explicit path that fails is a configuration error: never replaced.
      const lib = typeof opened === "string" ? { reason: opened } : openOpened(opened);
      if (!("reason" in lib)) return use(lib, opened as OpenedLibrary);
      loadFailure = { path: c.path, reason: lib.reason };
      loadError = `WARP_CACHE_LIB=${c.path} could not be loaded: ${lib.reason}`;
      return null;
    }
    if (typeof opened === "string") {
      tried.push(`${c.path} (${c.source}): ${opened}`);
      continue;
    }
    const lib = openOpened(opened);
    if (!("reason" in lib)) return use(lib, opened);
    if (lib.version !== undefined) {
      loadThrown = new Error(`Cannot load the @warp/cache native library ${c.path}: ${lib.reason}`);
      throw loadThrown;
    }
    tried.push(`${c.path} (${c.source}): ${lib.reason}`);
  }
  loadError = `no native library could be loaded (tried ${tried.join("; ") || "nothing"}${
    downloadError ? `; download: ${downloadError}` : ""
  })`;
  return null;
}

/**
 * Loads a checked library file through its open descriptor; closes the descriptor unless
 * it loaded. Where `/proc` is not mounted (`/proc/self/fd/<n>` does not exist), loads it by
 * its path: its directory and the file are writable by this user or root only (checked),
 * so no other user can swap it meanwhile.
 */
function openOpened(opened: OpenedLibrary): NativeSymbols | OpenFailure {
  let lib: NativeSymbols | OpenFailure;
  try {
    lib = openLibrary(opened.loadPath);
    if ("reason" in lib && lib.version === undefined && opened.loadPath !== opened.path) {
      if (/No such file/.test(lib.reason)) lib = openLibrary(opened.path);
    }
  } catch (e) {
    opened.close();
    throw e;
  }
  if ("reason" in lib) {
    opened.close();
    // Name the file, not the descriptor, in messages.
    lib.reason = lib.reason.replaceAll(opened.loadPath, opened.path);
  }
  return lib;
}

function use(lib: NativeSymbols, opened: OpenedLibrary): NativeSymbols {
  loaded = lib;
  loadedPath = opened.path;
  return lib;
}

/**
 * Why {@linkcode loadNative} returned `null`, without advice (empty when it did not).
 * Callers add {@linkcode installHint} once.
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

/** The path of the loaded library (empty when none is loaded). */
export function nativeLibraryPath(): string {
  return loadedPath;
}

/**
 * Makes the library available before first use: when no library is found locally (and
 * `WARP_CACHE_LIB` is not set), downloads this target's artifact from the base URL into the
 * per-user library cache, verified against its pinned SHA-256, provided every permission
 * this needs is already granted (it never prompts). A failure is remembered for the error
 * messages and otherwise ignored: the memory backend then uses the TypeScript store.
 */
export async function prepareNative(): Promise<void> {
  if (loaded !== undefined || typeof Deno?.dlopen !== "function" || !permitted({ name: "ffi" })) {
    return;
  }
  if (candidates().some((c) => c.source === "WARP_CACHE_LIB")) return;
  // A library found here is verified and loaded now, once: checking it here and again at
  // the first cache would hash it twice. A stale one throws at the first cache, as before.
  try {
    if (loadNative() !== null) return;
  } catch {
    return;
  }
  // Whatever happens below, the next loadNative() looks again (and names this download).
  loaded = undefined;
  const base = baseUrl();
  const dir = userLibraryDir();
  let url: URL;
  try {
    url = new URL(base);
  } catch {
    downloadError = `WARP_CACHE_BASE_URL is not a URL: ${base}`;
    return;
  }
  const blocker = downloadBlocker(url, dir);
  if (blocker !== null) {
    downloadError = `not tried from ${base}: ${blocker}`;
    return;
  }
  try {
    await download(base, dir!);
  } catch (e) {
    downloadError = e instanceof Error ? e.message : String(e);
  }
}
