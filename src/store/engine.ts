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
import { Backend, type ResolvedOptions, Strategy, strategyName } from "../options/options.ts";
import type { Flights, Store, StoreView } from "./store.ts";
import { TsSieveStore } from "./ts_store.ts";
import { sharedFileName, SharedStore } from "./shared_store.ts";
import type { TagClock } from "./tagged.ts";

/**
 * Which engine backs the memory backend in this process: `"native"` when the library
 * loads (unless `WARP_CACHE_ENGINE=ts`), else `"ts"`.
 */
export function memoryEngine(): "native" | "ts" {
  if (envEngine() === "ts") return "ts";
  return loadNative() === null ? "ts" : "native";
}

let warnedEngine = false;

/** `WARP_CACHE_ENGINE`: `"ts"`, `"native"`, or `undefined` (unset or empty). Any other
 * value is ignored, with one warning per process naming it. */
function envEngine(): string | undefined {
  const v = envVar("WARP_CACHE_ENGINE");
  if (v === undefined || v === "" || v === "ts" || v === "native") return v || undefined;
  if (!warnedEngine) {
    warnedEngine = true;
    console.warn(
      `@warp/cache: WARP_CACHE_ENGINE=${JSON.stringify(v)} is neither "ts" nor "native": ignored`,
    );
  }
  return undefined;
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

/** How long a store keeps an entry past its TTL (ms): the longer of the stale window
 * (`staleWhileRevalidate`) and the window of `staleIfError`. */
function staleWindow(opts: ResolvedOptions): number {
  return Math.max(opts.staleWhileRevalidate ?? 0, opts.staleIfError ?? 0);
}

/** Whether the call path asks for stale entries within a window shorter than the store's
 * (both windows set, of different lengths): the store is then driven by a JavaScript clock,
 * so that times can be shifted (see `StoreView.peekStale`). */
function twoWindows(opts: ResolvedOptions): boolean {
  const a = opts.staleWhileRevalidate;
  const b = opts.staleIfError;
  return a !== undefined && b !== undefined && a !== b;
}

/** The store of a cache and what comes with it. */
export interface StoreParts {
  /** The entries. */
  store: Store;
  /** Which engine holds them: the native in-process store, the TypeScript one, or the
   * shared file (through the native library). */
  engine: "native" | "ts" | "shared";
  /** A store that keeps the call path's counters itself (the shared file: exact totals
   * over every process), else `undefined` (the call path keeps them). */
  fileCounters: StoreView | undefined;
  /** Cross-process single-flight (the shared file), else `undefined`. */
  flights: Flights | undefined;
  /** The tag clock of the shared file's directory, else `undefined` (this process's). */
  tagClock?: TagClock | undefined;
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
): StoreParts {
  if (opts.backend === Backend.Shared) {
    if (opts.strategy !== Strategy.Sieve) {
      throw new TypeError(
        `Cannot create cache: the shared backend evicts by SIEVE only: received strategy "${
          strategyName(opts.strategy)
        }"`,
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
      staleWindow(opts),
    );
    if (opts.largeValues === "file") store.useLargeValues();
    const view = store.keyed(clock ?? (twoWindows(opts) ? Date.now : undefined)) as StoreView;
    view.setStaleWindow(staleWindow(opts));
    return {
      store: view,
      engine: "shared",
      fileCounters: view,
      flights: view.flights,
      tagClock: store.tags,
    };
  }
  const engine = envEngine();
  const lib = engine === "ts" ? null : loadNative();
  if (lib !== null) {
    const store = new NativeMemoryStore(
      lib,
      opts.maxSize,
      opts.ttl,
      opts.strategy,
      staleWindow(opts),
      opts.maxBytes,
    ).keyed(clock ?? (twoWindows(opts) ? () => performance.now() : undefined)) as StoreView;
    store.setStaleWindow(staleWindow(opts));
    return { store, engine: "native", fileCounters: undefined, flights: undefined };
  }
  if (engine === "native") {
    throw new Error(
      `Cannot create cache: WARP_CACHE_ENGINE=native but ${nativeLoadError()}: ${installHint()}`,
    );
  }
  if (engine !== "ts") warnFallback();
  const store = new TsSieveStore({
    maxSize: opts.maxSize,
    ttl: opts.ttl,
    policy: opts.strategy,
    stale: staleWindow(opts),
    maxBytes: opts.maxBytes,
    // A remote tier's keys are in the shared form (its bytes go to other hosts).
    memoryKeys: opts.remote === undefined,
  })
    .keyed(clock) as StoreView;
  store.setStaleWindow(staleWindow(opts));
  return { store, engine: "ts", fileCounters: undefined, flights: undefined };
}

// The first import downloads the library when none is found and every permission this
// needs is granted (never a prompt): the shared backend then works on the very first run.
await prepareNative();
