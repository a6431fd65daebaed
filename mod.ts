/**
 * `@warp/cache`: a caching decorator for Deno backed by a Rust library. SIEVE eviction,
 * TTL, async single-flight, and a `shared` backend whose entries every Deno process of the
 * machine sees through a memory-mapped file.
 *
 * @example Cache a function
 * ```ts
 * import { cache } from "@warp/cache";
 * import assert from "node:assert/strict";
 *
 * const square = cache({ maxSize: 256 })((x: number) => x * x);
 * square(3); // miss: calls the function
 * square(3); // hit
 * assert.deepEqual(square.cacheInfo(), { hits: 1, misses: 1, maxSize: 256, currentSize: 1 });
 * ```
 *
 * @module
 */

export { cache, cacheControls } from "./src/call/cache.ts";
export { cacheContext } from "./src/call/context.ts";
export { invalidateTags } from "./src/call/tags.ts";
export type { CacheContext } from "./src/call/context.ts";
export { remoteTier } from "./src/remote/remote.ts";
export type {
  BusListener,
  Invalidation,
  RemoteBus,
  RemoteStorage,
  RemoteTier,
  RemoteTierOptions,
} from "./src/remote/remote.ts";
export type {
  AnyFunction,
  CacheControls,
  CacheDecorator,
  CachedFunction,
  CacheInfo,
  SharedCacheInfo,
} from "./src/call/types.ts";
export { CacheError } from "./src/native/errors.ts";
export { caches, clearAll } from "./src/ops/registry.ts";
export type { BackendName, CacheListing, EngineName, StrategyName } from "./src/ops/registry.ts";
export { Backend, Strategy } from "./src/options/options.ts";
export { SieveCache } from "./src/store/sieve_cache.ts";
export type { CacheOptions } from "./src/options/options.ts";
export type { SieveCacheInfo, SieveCacheOptions } from "./src/store/sieve_cache.ts";
