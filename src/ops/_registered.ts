/**
 * What a cache gives the registry (`registry.ts`), which the metrics (`metrics.ts`) read:
 * types only, so that both modules share them without importing each other.
 *
 * @module
 */

import type { CacheInfo } from "../call/types.ts";
import type { Backend, Strategy } from "../options/options.ts";

/** The name of a {@linkcode Backend}, as the `backend` option takes it. */
export type BackendName = "memory" | "shared";
/** The engine behind a cache (see `CacheListing.engine`). */
export type EngineName = "native" | "ts" | "shared";
/** The name of a {@linkcode Strategy}, as the `strategy` option takes it. */
export type StrategyName =
  | "sieve"
  | "lru"
  | "mru"
  | "fifo"
  | "lfu"
  | "s3fifo"
  | "wtinylfu"
  | "arc";

/** What a cache gives the registry. */
export interface Registered {
  name: string;
  backend: Backend;
  strategy: Strategy;
  info(): CacheInfo;
  clear(): void;
  /** Entries evicted since creation or the last clear, where the cache counts them. */
  evictions?: (() => number) | undefined;
  /** A shared cache's directory: two shared caches of one name in two directories are two
   * caches (and two metric series). */
  dir?: string | undefined;
  /** The engine that holds its entries. */
  engine?: EngineName | undefined;
}
