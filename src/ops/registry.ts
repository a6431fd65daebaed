/**
 * The caches of this process: {@linkcode caches} lists every live one with its info, and
 * {@linkcode clearAll} clears them all. They are the cached functions and the
 * `SieveCache` instances. The registry holds caches weakly: a cache whose function (or
 * `SieveCache`) was dropped leaves it when the garbage collector takes it, and a disposed
 * one at once. The OpenTelemetry instruments (`metrics.ts`) read it when metrics are
 * collected.
 *
 * @module
 */

import type { CacheInfo } from "../call/types.ts";
import { Backend, Strategy } from "../options/options.ts";
import { instrument } from "./metrics.ts";
import type { BackendName, EngineName, Registered, StrategyName } from "./_registered.ts";

export type { BackendName, EngineName, Registered, StrategyName } from "./_registered.ts";

const BACKEND_NAMES: Record<Backend, BackendName> = {
  [Backend.Memory]: "memory",
  [Backend.Shared]: "shared",
};
const STRATEGY_NAMES: Record<Strategy, StrategyName> = {
  [Strategy.Sieve]: "sieve",
  [Strategy.Lru]: "lru",
  [Strategy.Mru]: "mru",
  [Strategy.Fifo]: "fifo",
  [Strategy.Lfu]: "lfu",
  [Strategy.S3Fifo]: "s3fifo",
  [Strategy.WTinyLfu]: "wtinylfu",
  [Strategy.Arc]: "arc",
};

/** One live cache of this process, as {@linkcode caches} lists it. */
export interface CacheListing {
  /**
   * The cache's name: the shared cache's `name` (given, or the default one), else the
   * cached function's name; a function without a name is `(anonymous) <url:line:column>`,
   * where `cache()` was applied.
   */
  name: string;
  /** Where its entries live: `"memory"` or `"shared"`. */
  backend: BackendName;
  /** Its eviction policy: `"sieve"`, `"lru"`, `"mru"`, `"fifo"`, `"lfu"`, `"s3fifo"`,
   * `"wtinylfu"` or `"arc"`. */
  strategy: StrategyName;
  /** A shared cache's directory (its file is `sharedFileName(name)` there). */
  dir?: string;
  /** The engine that holds its entries: `"native"` (the Rust library), `"ts"` (the
   * TypeScript store, where the library cannot load) or `"shared"` (a shared file,
   * through the library). */
  engine?: EngineName;
  /** Its counters and sizes, read now (see `cacheInfo()`; for a `SieveCache`, its
   * `info()`). */
  info: CacheInfo;
  /**
   * Entries evicted to make room for new ones (not expirations nor deletes) since the cache
   * was created or last cleared; for a shared cache, by every process. Present when the
   * cache counts them (every cache of this package does).
   */
  evictions?: number;
}

const live = new Set<WeakRef<Registered>>();
/** Each owner's record: an entry lives as long as its key (the owner), and no longer. */
const owned = new WeakMap<object, Registered>();
/**
 * The size of `live` at which `register` next drops the references whose cache was
 * collected: twice its size after the last sweep, so that a sweep costs O(1) amortized per
 * registration and dead references never outnumber live ones by more than that. (A
 * `FinalizationRegistry` would drop each at once, but registering with one tripled the cost
 * of `new SieveCache()`, which programs may call per request.)
 */
let sweepAt = 64;

/**
 * Adds a cache to the registry; returns the function that takes it out (on dispose).
 * `owner` is what keeps the cache alive (the cached function): the entry goes when it does.
 * `held`: the owner keeps `cache` itself (a `SieveCache`, in a private field), so the
 * registry need not tie them.
 */
export function register(owner: object, cache: Registered, held = false): () => void {
  const ref = new WeakRef(cache);
  if (live.size >= sweepAt) {
    registered();
    sweepAt = Math.max(64, 2 * live.size);
  }
  live.add(ref);
  // The registered record must live as long as its owner, and no longer.
  if (!held) owned.set(owner, cache);
  // Once per meter provider: a no-op when the instruments are registered already.
  instrument(registered);
  return () => {
    live.delete(ref);
  };
}

/** Every live registered cache, in creation order (for the metrics' callback); drops the
 * references whose cache was collected. */
export function registered(): Registered[] {
  const out: Registered[] = [];
  for (const ref of live) {
    const c = ref.deref();
    if (c === undefined) live.delete(ref);
    else out.push(c);
  }
  return out;
}

/**
 * Every live cache of this process, in creation order, with its info.
 *
 * @returns One {@linkcode CacheListing} per cache that is neither disposed nor garbage
 * collected.
 *
 * @example Listing the caches
 * ```ts
 * import { cache, caches } from "@warp/cache";
 * import assert from "node:assert/strict";
 *
 * const square = cache({ maxSize: 8 })(function square(x: number) {
 *   return x * x;
 * });
 * square(3);
 * const mine = caches().find((c) => c.name === "square");
 * assert.equal(mine?.info.misses, 1);
 * ```
 */
export function caches(): CacheListing[] {
  return registered().map(listing);
}

/** The listing of `c`, read now. */
export function listing(c: Registered): CacheListing {
  const out: CacheListing = {
    name: c.name,
    backend: BACKEND_NAMES[c.backend],
    strategy: STRATEGY_NAMES[c.strategy],
    info: c.info(),
  };
  if (c.dir !== undefined) out.dir = c.dir;
  if (c.engine !== undefined) out.engine = c.engine;
  if (c.evictions !== undefined) out.evictions = c.evictions();
  return out;
}

/**
 * Clears every live cache of this process (each as its `cacheClear()` does: entries and
 * counters; for a shared cache, in every process).
 *
 * @returns How many caches were cleared.
 *
 * @example Clearing everything
 * ```ts
 * import { cache, clearAll } from "@warp/cache";
 * import assert from "node:assert/strict";
 *
 * const twice = cache()((x: number) => x * 2);
 * twice(1);
 * clearAll();
 * assert.equal(twice.cacheInfo().currentSize, 0);
 * ```
 */
export function clearAll(): number {
  const all = registered();
  for (const c of all) c.clear();
  return all.length;
}
