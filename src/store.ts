/**
 * The interface that every store behind {@linkcode cache} implements: the native
 * in-process store, the TypeScript in-process store and the shared (mmap) store.
 *
 * Keys arrive as encoded bytes (see `key_codec.ts`): `key.subarray(0, len)`. A store
 * must finish reading those bytes before it returns, since the buffer is reused.
 *
 * @module
 */

/** Returned by {@linkcode Store.get} when the key is absent or expired. */
export const MISS: unique symbol = Symbol("@warp/cache.miss");

/** Counters and sizes of a store. */
export interface StoreInfo {
  /** Lookups that found a fresh entry (plus misses turned into hits by `countHit`). */
  hits: number;
  /** Lookups that found nothing, or an expired entry. */
  misses: number;
  /** Most entries kept (`Infinity` when unbounded). */
  maxSize: number;
  /** Entries held now. */
  currentSize: number;
  /** Keys or values not stored because they exceeded their size limit or the byte budget
   * (shared only). */
  oversizeSkips?: number;
  /** Bytes of the data area that the entries hold (shared only). */
  bytes?: number;
  /** Byte budget of the entries' keys and values (shared only). */
  maxBytes?: number;
}

/** A cache store keyed by encoded bytes. Time is in ms, from the cache's clock. */
export interface Store {
  /** Whether `now = NaN` makes the store read its own clock (native stores). */
  readonly ownClock: boolean;
  /** Whether `get` wants the key buffer's address as its fourth argument. */
  readonly keyPointer: boolean;
  /**
   * Returns the value stored under `key[0..len)` if present and fresh at `now`, else
   * {@linkcode MISS}. Counts a hit or a miss and marks the entry for the eviction policy
   * (SIEVE: sets its visited bit). When `keyPointer` is set, `ptr` is the address of
   * `key` (a long-lived buffer) and the store may read the key through it.
   */
  get(key: Uint8Array, len: number, now: number, ptr?: Deno.PointerValue): unknown;
  /**
   * Stores `value` under `key[0..len)` at time `now`, evicting one entry when full.
   * `promised` says that `value` is the resolution of a Promise: later hits must then
   * return a Promise resolving to it (memory stores keep `Promise.resolve(value)`).
   * With `keyPointer`, `ptr` may be the address of `key` (a long-lived buffer).
   * Returns `false` when the entry was not stored because it is too large (counted in
   * `oversizeSkips`). Throws `TypeError` when the value cannot be stored (shared backend:
   * not serializable).
   */
  set(
    key: Uint8Array,
    len: number,
    value: unknown,
    now: number,
    promised: boolean,
    ptr?: Deno.PointerValue,
  ): boolean;
  /** Removes `key[0..len)`; returns whether it was present. */
  delete(key: Uint8Array, len: number): boolean;
  /** Turns the miss counted by the last `get` into a hit (single-flight joins). */
  countHit(): void;
  /** Removes every entry and resets every counter. */
  clear(): void;
  /** Returns the counters and sizes. */
  info(): StoreInfo;
  /** Releases native resources. Idempotent. */
  close(): void;
}
