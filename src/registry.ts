/**
 * The caches of this process: {@linkcode caches} lists every live one with its info, and
 * {@linkcode clearAll} clears them all. The registry holds caches weakly: a cache whose
 * function was dropped leaves it when the garbage collector takes it, and a disposed one at
 * once.
 *
 * @module
 */

import type { CacheInfo } from "./cache.ts";
import type { Backend, Strategy } from "./options.ts";

/** One live cache of this process, as {@linkcode caches} lists it. */
export interface CacheListing {
  /**
   * The cache's name: the shared cache's `name` (given, or the default one), else the
   * cached function's name.
   */
  name: string;
  /** Where its entries live. */
  backend: Backend;
  /** Its eviction policy. */
  strategy: Strategy;
  /** Its counters and sizes, read now (see `cacheInfo()`). */
  info: CacheInfo;
}

/** What a cache gives the registry. */
export interface Registered {
  name: string;
  backend: Backend;
  strategy: Strategy;
  info(): CacheInfo;
  clear(): void;
}

const live = new Set<WeakRef<Registered>>();
const dropped = new FinalizationRegistry<WeakRef<Registered>>((ref) => live.delete(ref));

/**
 * Adds a cache to the registry; returns the function that takes it out (on dispose).
 * `owner` is what keeps the cache alive (the cached function): the entry goes when it does.
 */
export function register(owner: object, cache: Registered): () => void {
  const ref = new WeakRef(cache);
  live.add(ref);
  dropped.register(owner, ref, ref);
  // The registered record must live as long as its owner, and no longer.
  Object.defineProperty(owner, OWNED, { value: cache });
  return () => {
    live.delete(ref);
    dropped.unregister(ref);
  };
}

const OWNED = Symbol("@warp/cache.registered");

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
  const out: CacheListing[] = [];
  for (const ref of live) {
    const c = ref.deref();
    if (c === undefined) {
      live.delete(ref);
      continue;
    }
    out.push({ name: c.name, backend: c.backend, strategy: c.strategy, info: c.info() });
  }
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
  let n = 0;
  for (const ref of live) {
    const c = ref.deref();
    if (c === undefined) {
      live.delete(ref);
      continue;
    }
    c.clear();
    n++;
  }
  return n;
}
