/**
 * Read-only inspection of shared cache files, for operators (`src/ops/cli.ts`): the verdict
 * (valid, foreign, other version, corrupt), sizes and counters of a file, read through
 * `warp_shm_inspect` (`rust/src/shm/inspect.rs`), which opens the file read-only, maps its
 * header `PROT_READ` and reads it in a bounded seqlock read: inspecting a file never
 * changes it (no counter bumped, no stripe taken, no lock held, nothing repaired).
 *
 * Names. A cache file does not record its cache's name: its file name is
 * `sharedFileName(name)` (`<name>.warp` for a name made of `[A-Za-z0-9._-]`, at most 120
 * characters, not starting with a dot; otherwise the sanitized name plus `-` and 8 hex
 * characters of its hash). So {@linkcode cacheNameOf} gives the file's stem, which is the
 * cache's name exactly for names of the first kind, and for the others the stem the
 * operator sees in `ls` and can pass back ({@linkcode resolveCacheFile} accepts a name or
 * a stem).
 *
 * @module
 */

import { loadNative, nativeLastError, nativeLoadError } from "../native/ffi.ts";
import { INSPECT, SHM_INSPECT, SHM_INSPECT_FIELDS } from "../native/_abi.ts";
import { sharedFileName } from "../store/shared_store.ts";

/** Sizes and counters of a valid cache file. */
export interface CacheFileInfo {
  /** Live entries. */
  entries: number;
  /** Most entries (`maxSize`). */
  maxSize: number;
  /** Bytes the entries hold (whole 256-byte chunks; entries in their slots hold none). */
  bytes: number;
  /** The byte budget of the entries. */
  maxBytes: number;
  /** Largest serialized key in bytes. */
  maxKeySize: number;
  /** Largest serialized value in bytes. */
  maxValueSize: number;
  hits: number;
  misses: number;
  /** `hits / (hits + misses)`, or `null` before the first lookup. */
  hitRatio: number | null;
  oversizeSkips: number;
  staleHits: number;
  refreshes: number;
  evictions: number;
  /** Format version of the file. */
  formatVersion: number;
  /** Size of the file in bytes. */
  fileSize: number;
  /** Whether a process has the file open (`null`: cannot tell, outside Linux). */
  inUse: boolean | null;
  /** Whether the header was read while no writer was active. */
  consistent: boolean;
  /** Whether the write lock was held when it was read. */
  locked: boolean;
}

/** The verdict of a cache file: `ok` with its info, or why it is not a usable cache. */
export type Inspection =
  | { status: "ok"; info: CacheFileInfo }
  | {
    status: "foreign" | "other version" | "corrupt" | "unreadable";
    /** What is wrong, naming the file. */
    error: string;
    /** Format version, for `other version`. */
    formatVersion?: number;
  };

const encoder = new TextEncoder();

/**
 * Inspects the cache file at `path` without changing it.
 *
 * @param path Path of the file.
 * @returns The verdict and, for a valid file, its sizes and counters.
 * @throws {Error} If the native library (with `warp_shm_inspect`) is not available.
 */
export function inspectCacheFile(path: string): Inspection {
  const lib = loadNative();
  if (lib === null || lib.warp_shm_inspect === null) {
    throw new Error(
      `Cannot inspect shared caches: the native library is needed, and ${
        nativeLoadError() || "the loaded library lacks warp_shm_inspect (rebuild it)"
      }`,
    );
  }
  const bytes = encoder.encode(path);
  const out = new Float64Array(SHM_INSPECT_FIELDS);
  const r = lib.warp_shm_inspect(bytes, bytes.length, out);
  if (r === INSPECT.valid) {
    const f = (k: keyof typeof SHM_INSPECT): number => out[SHM_INSPECT[k]]!;
    const hits = f("hits");
    const misses = f("misses");
    const inUse = f("inUse");
    return {
      status: "ok",
      info: {
        entries: f("currentSize"),
        maxSize: f("maxSize"),
        bytes: f("bytes"),
        maxBytes: f("maxBytes"),
        maxKeySize: f("maxKeySize"),
        maxValueSize: f("maxValueSize"),
        hits,
        misses,
        hitRatio: hits + misses === 0 ? null : hits / (hits + misses),
        oversizeSkips: f("oversizeSkips"),
        staleHits: f("staleHits"),
        refreshes: f("refreshes"),
        evictions: f("evictions"),
        formatVersion: f("formatVersion"),
        fileSize: f("fileSize"),
        inUse: inUse < 0 ? null : inUse === 1,
        consistent: f("consistent") === 1,
        locked: f("locked") === 1,
      },
    };
  }
  const error = nativeLastError();
  if (r === INSPECT.foreign) return { status: "foreign", error };
  if (r === INSPECT.otherVersion) {
    return { status: "other version", error, formatVersion: out[SHM_INSPECT.formatVersion]! };
  }
  if (r === INSPECT.corrupt) return { status: "corrupt", error };
  return { status: "unreadable", error };
}

/** The suffix of every shared cache file. */
export const CACHE_FILE_SUFFIX = ".warp";

/**
 * The name shown for the cache file `file` (a file name, not a path): its stem, which is
 * the cache's name for names made of `[A-Za-z0-9._-]` (see the module docs).
 */
export function cacheNameOf(file: string): string {
  return file.endsWith(CACHE_FILE_SUFFIX) ? file.slice(0, -CACHE_FILE_SUFFIX.length) : file;
}

/** Whether the file name `file` has the pattern of a cache file (`*.warp`, no leading dot). */
export function isCacheFileName(file: string): boolean {
  return file.endsWith(CACHE_FILE_SUFFIX) && !file.startsWith(".") &&
    file.length > CACHE_FILE_SUFFIX.length;
}

/**
 * The file of the cache `name` in `dir`: `sharedFileName(name)`, as the shared backend
 * maps it; or, when no such file exists and `name` is the stem of a cache file there (as
 * `ls` shows it), that file.
 */
export function resolveCacheFile(dir: string, name: string): string {
  const base = dir.replace(/\/+$/, "") || "/";
  const mapped = `${base}/${sharedFileName(name)}`;
  if (exists(mapped)) return mapped;
  const stem = `${name}${CACHE_FILE_SUFFIX}`;
  if (isCacheFileName(stem) && !stem.includes("/") && exists(`${base}/${stem}`)) {
    return `${base}/${stem}`;
  }
  return mapped;
}

function exists(path: string): boolean {
  try {
    Deno.lstatSync(path);
    return true;
  } catch {
    return false;
  }
}
