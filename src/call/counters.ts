/**
 * The counters of a cache beyond the store's own hits and misses: lookups that missed but
 * joined a computation (hits), stale values returned (`staleHits`) and background refreshes
 * (`refreshes`). A memory cache keeps them here; a shared cache keeps them in its file,
 * where they are exact totals over every process ({@linkcode FileCounters}).
 *
 * @module
 */

import type { StoreInfo } from "../store/store.ts";

/** What the call path counts besides the store's lookups. */
export interface Counters {
  /** The lookup just made missed but joined a computation under way: a hit, not a miss. */
  join(): void;
  /**
   * The lookup just made found a stale entry and returned its value: a hit and a stale hit,
   * not a miss. `joined`: the call was counted as a hit already (it joined a computation,
   * then got the stale value on a timeout): the stale hit only.
   */
  staleHit(joined: boolean): void;
  /** A background refresh started. */
  refresh(): void;
  /** The lookup just made found an entry whose tags were invalidated: a miss, not the hit
   * that the store counted. */
  invalidHit(): void;
  /** `info` (the store's) with these counters applied. */
  apply(info: StoreInfo): StoreInfo;
  /** Resets the counters kept here (with the store's `clear`). */
  clear(): void;
}

/** The counters of a memory cache, kept in this process. */
export class LocalCounters implements Counters {
  #joins = 0;
  #staleHits = 0;
  #refreshes = 0;

  join(): void {
    this.#joins++;
  }

  staleHit(joined: boolean): void {
    if (!joined) this.#joins++;
    this.#staleHits++;
  }

  refresh(): void {
    this.#refreshes++;
  }

  invalidHit(): void {
    this.#joins--;
  }

  apply(info: StoreInfo): StoreInfo {
    info.hits += this.#joins;
    info.misses -= this.#joins;
    if (this.#staleHits > 0 || this.#refreshes > 0) {
      info.staleHits = (info.staleHits ?? 0) + this.#staleHits;
      info.refreshes = (info.refreshes ?? 0) + this.#refreshes;
    }
    return info;
  }

  clear(): void {
    this.#joins = 0;
    this.#staleHits = 0;
    this.#refreshes = 0;
  }
}

/** What a store that keeps these counters itself offers (the shared file: exact totals over
 * every process). */
export interface CountingStore {
  countJoin(): void;
  countStaleHit(joined?: boolean): void;
  countRefresh(): void;
  /** Turns one hit counted by this handle into a miss, where the store can. */
  countInvalidHit?(): void;
}

/** The counters of a store that keeps them itself: its `info()` includes them. */
export class FileCounters implements Counters {
  constructor(readonly store: CountingStore) {}

  join(): void {
    this.store.countJoin();
  }

  staleHit(joined: boolean): void {
    this.store.countStaleHit(joined);
  }

  refresh(): void {
    this.store.countRefresh();
  }

  invalidHit(): void {
    this.store.countInvalidHit?.();
  }

  apply(info: StoreInfo): StoreInfo {
    return info;
  }

  clear(): void {}
}
