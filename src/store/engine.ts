/**
 * Picks the store behind a cache: the native in-process store when the library loads,
 * the TypeScript store otherwise (README, "Engines"), and the shared store for
 * `backend: "shared"` (README, "Shared backend").
 *
 * `WARP_CACHE_ENGINE=ts` forces the TypeScript store for the memory backend (the shared
 * backend still uses the library), `WARP_CACHE_ENGINE=native` makes a missing library an
 * error instead of a fallback (for tests and benchmarks). A `WARP_CACHE_LIB` that does not
 * load is a configuration error: the memory backend falls back with one warning per
 * process, the shared backend throws (`shared_store.ts`).
 *
 * @module
 */

import {
  envVar,
  installHint,
  loadNative,
  nativeLoadError,
  nativeLoadFailure,
  prepareNative,
} from "../native/ffi.ts";
import { NativeMemoryStore } from "./native_store.ts";
import { Backend, type ResolvedOptions, Strategy } from "../options/options.ts";
import type { Store } from "./store.ts";
import { TsSieveStore } from "./ts_store.ts";
import { sharedFileName, SharedStore } from "./shared_store.ts";

/**
 * Which engine backs the memory backend in this process: `"native"` when the library
 * loads (unless `WARP_CACHE_ENGINE=ts`), else `"ts"`.
 */
export function memoryEngine(): "native" | "ts" {
  if (envEngine() === "ts") return "ts";
  return loadNative() === null ? "ts" : "native";
}

function envEngine(): string | undefined {
  return envVar("WARP_CACHE_ENGINE");
}

let warnedFallback = false;

/** Warns, once per process, that an explicit `WARP_CACHE_LIB` failed and why. */
function warnFallback(): void {
  if (warnedFallback || nativeLoadFailure() === null) return;
  warnedFallback = true;
  console.warn(
    `@warp/cache: the memory backend uses the TypeScript store, because ${nativeLoadError()}`,
  );
}

/**
 * Creates the store for a cache with resolved options.
 *
 * @param sharedName The shared cache's name (given, or the default one): its file.
 * @param clock An injected time source (checked by the caller), or `undefined` for each
 * store's own.
 * @throws {Error} If the shared backend is asked for where it cannot work, or
 * `WARP_CACHE_ENGINE=native` and the library does not load.
 */
export function createStore(
  opts: ResolvedOptions,
  name: string,
  sharedName: string,
  clock?: () => number,
): Store {
  if (opts.backend === Backend.Shared) {
    if (opts.strategy !== Strategy.Sieve) {
      throw new TypeError(
        `Cannot create cache: the shared backend evicts by SIEVE only: received strategy ${
          Strategy[opts.strategy]
        }`,
      );
    }
    const location = {
      dir: opts.dir, // undefined: the default, once the library is known to load
      file: sharedFileName(sharedName),
    };
    const store = new SharedStore(
      location,
      opts.maxSize,
      opts.maxKeySize,
      opts.maxValueSize,
      opts.ttl,
      name,
      opts.maxBytes,
      opts.staleWhileRevalidate ?? 0,
    );
    if (opts.largeValues === "file") store.useLargeValues();
    return store.keyed(clock);
  }
  const engine = envEngine();
  const lib = engine === "ts" ? null : loadNative();
  if (lib !== null) {
    return new NativeMemoryStore(
      lib,
      opts.maxSize,
      opts.ttl,
      opts.strategy,
      opts.staleWhileRevalidate ?? 0,
    ).keyed(clock);
  }
  if (engine === "native") {
    throw new Error(
      `Cannot create cache: WARP_CACHE_ENGINE=native but ${nativeLoadError()}: ${installHint()}`,
    );
  }
  if (engine !== "ts") warnFallback();
  return new TsSieveStore({
    maxSize: opts.maxSize,
    ttl: opts.ttl,
    policy: opts.strategy,
    stale: opts.staleWhileRevalidate ?? 0,
  })
    .keyed(clock);
}

// The first import downloads the library when none is found and every permission this
// needs is granted (never a prompt): the shared backend then works on the very first run.
await prepareNative();
