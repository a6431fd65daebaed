/**
 * The interface between {@linkcode cache} and its stores (the native in-process store, the
 * TypeScript in-process store and the shared mmap store): {@linkcode Store}. Each store
 * class also has a lower-level API of its own (key buffer, length and time), which tests
 * and benchmarks use, and makes its {@linkcode Store} with `keyed(clock)`.
 *
 * Keys arrive as encoded bytes (see `key_codec.ts`).
 *
 * @module
 */

/** Returned by {@linkcode Store.get} when the key is absent or expired. */
export const MISS: unique symbol = Symbol("@warp/cache.miss");

/**
 * The resolved value behind each Promise that a memory store keeps for an async result (a
 * hit returns that one Promise): what {@linkcode Store.peek} returns instead of it.
 */
const resolvedValues = new WeakMap<Promise<unknown>, unknown>();

/** The Promise a memory store keeps for an async result `value`. */
export function promisedEntry(value: unknown): Promise<unknown> {
  const p = Promise.resolve(value);
  resolvedValues.set(p, value);
  return p;
}

/** What {@linkcode Store.peek} returns for a memory store's stored value `v`. */
export function peeked(v: unknown): unknown {
  return v instanceof Promise && resolvedValues.has(v) ? resolvedValues.get(v) : v;
}

/** Counters and sizes of a store. */
export interface StoreInfo {
  /** Lookups that found a fresh entry (plus lookups that joined a computation). */
  hits: number;
  /** Lookups that found nothing, or an expired entry. */
  misses: number;
  /** Most entries kept (`Infinity` when unbounded). */
  maxSize: number;
  /** Entries held now. */
  currentSize: number;
  /** Entries removed to make room for new ones (by the eviction policy; not expirations nor
   * deletes) since the store was created or last cleared. Left out while 0. */
  evictions?: number;
  /** Stale values returned (`staleWhileRevalidate`, or `timeout` with a stale value):
   * counted in `hits` too. Left out while it and `refreshes` are 0. */
  staleHits?: number;
  /** Background refreshes run (`staleWhileRevalidate`). Left out while it and `staleHits`
   * are 0. */
  refreshes?: number;
  /** Keys or values not stored because they exceeded their size limit or the byte budget
   * (shared; memory with a byte budget). */
  oversizeSkips?: number;
  /** Bytes that the entries hold: of the shared file's data area, or the sum of the sizes
   * given to a memory store's `set` (with a byte budget). */
  bytes?: number;
  /** Byte budget of the entries (shared; memory with a byte budget). */
  maxBytes?: number;
}

/**
 * Encoded key bytes `buf[0..len)` held by their owner for the whole call, with their
 * address for stores that pass keys to the library by pointer.
 */
export interface KeyBytes {
  /** The buffer holding the key from offset 0. */
  readonly buf: Uint8Array;
  /** Length of the key in bytes. */
  readonly len: number;
  /**
   * The address of `buf` (taken once per buffer; needs `--allow-ffi`), or `undefined` when
   * the key is short-lived and should be passed as a buffer.
   */
  pointer(): Deno.PointerValue | undefined;
}

/**
 * The lower-level API that every store class has besides its {@linkcode Store}: key bytes
 * `key[0..len)` and an explicit time `now` in ms (`NaN` for the native stores: their own
 * clock). For tests, benchmarks and the simulator, which drive time themselves.
 */
export interface ByteStore {
  /** {@linkcode Store.get} at time `now`; `ptr` may be the address of `key`. */
  get(key: Uint8Array, len: number, now: number, ptr?: Deno.PointerValue): unknown;
  /** {@linkcode Store.set} at time `now`; `ptr` may be the address of `key`; `ttl` the
   * entry's own TTL in ms (`undefined`: the store's); `size` the entry's size in bytes for
   * a memory store's byte budget (`maxBytes`; unused without one, and by the shared store). */
  set(
    key: Uint8Array,
    len: number,
    value: unknown,
    now: number,
    promised: boolean,
    ptr?: Deno.PointerValue,
    ttl?: number,
    size?: number,
  ): boolean;
  /** {@linkcode Store.peek} at time `now`. */
  peek(key: Uint8Array, len: number, now: number): unknown;
  /** {@linkcode Store.peekStale} at time `now`. */
  peekStale(key: Uint8Array, len: number, now: number): unknown;
  /** {@linkcode Store.countStaleHit}. */
  countStaleHit(joined?: boolean): void;
  /** {@linkcode Store.countRefresh}. */
  countRefresh(): void;
  /** Cross-process single-flight (the shared store), else `undefined`. */
  readonly flights?: Flights | undefined;
  /** {@linkcode Store.delete}. */
  delete(key: Uint8Array, len: number): boolean;
  /** {@linkcode Store.countJoin}. */
  countJoin(): void;
  /** {@linkcode Store.clear}. */
  clear(): void;
  /** {@linkcode Store.info}. */
  info(): StoreInfo;
  /** {@linkcode Store.close}. */
  close(): void;
}

/**
 * What {@linkcode cache} sees of a store: the one seam between the decorator and the
 * three stores. Each store implements it its own way: the native stores read keys by
 * pointer and time from their own clock (the library's, unless a `clock` is injected),
 * the TypeScript store reads key bytes and `performance.now()`. Times never cross this
 * interface: the store decides when it needs one (TTL; shared insertion times).
 */
export interface Store {
  /**
   * Returns the value stored under `key` if present and fresh, else {@linkcode MISS}.
   * Counts a hit or a miss and marks the entry for the eviction policy (SIEVE: sets its
   * visited bit). Reads the key before returning.
   */
  get(key: KeyBytes): unknown;
  /**
   * Stores `value` under `key`, inserted now, evicting one entry when full. `promised`
   * says that `value` is the resolution of a Promise: later hits must then return a
   * Promise resolving to it. `ttl` is the entry's own TTL in ms (positive, `Infinity`
   * for never), replacing the store's for this entry; `undefined` keeps the store's. Returns `false` when the entry was not stored (too large, or
   * the shared file's lock is held by a stopped process). Throws `TypeError` when the
   * value cannot be stored (shared backend: not serializable).
   */
  set(key: KeyBytes, value: unknown, promised: boolean, ttl?: number): boolean;
  /**
   * The value stored under `key` if present and fresh, else {@linkcode MISS}, as the
   * function returned it (an async function's resolved value, not a Promise), without
   * counting anything or marking the entry for the eviction policy (`cacheGet()`).
   */
  peek(key: KeyBytes): unknown;
  /**
   * The value stored under `key` while it is fresh or stale (older than its TTL, but not
   * older than its TTL plus the store's stale window), else {@linkcode MISS}; like
   * {@linkcode Store.peek} it counts and marks nothing. `get` keeps a stale entry (it
   * counts a miss and returns {@linkcode MISS}) until its window ends.
   */
  peekStale(key: KeyBytes): unknown;
  /** Removes `key`; returns whether it was present. */
  delete(key: KeyBytes): boolean;
  /**
   * The lookup just made found no entry but joined a computation under way: count it as a
   * hit, not the miss that `get` counted.
   */
  countJoin(): void;
  /**
   * The lookup just made found a stale entry and returned its value: count it as a hit and
   * a stale hit, not the miss that `get` counted. `joined`: the call was counted as a hit
   * already (it joined a computation, then got the stale value on a timeout): count the
   * stale hit only.
   */
  countStaleHit(joined?: boolean): void;
  /** Counts a background refresh started. */
  countRefresh(): void;
  /** Cross-process single-flight (the shared store), else `undefined`. */
  readonly flights: Flights | undefined;
  /** Removes every entry and resets every counter. */
  clear(): void;
  /** Returns the counters and sizes. */
  info(): StoreInfo;
  /** Releases native resources. Idempotent. */
  close(): void;
}

/** What {@linkcode Flights.claim} found: `"owner"`: this process now computes the key
 * (call {@linkcode Flights.release} when done); `"wait"`: another live process computes it
 * (call {@linkcode Flights.wait}); `"none"`: no flight could be recorded (the table is
 * full): compute without one. */
export type FlightClaim = "owner" | "wait" | "none";

/** How {@linkcode Flights.wait} ended: `"done"`: the owner released the key (look it up
 * again: a miss means it failed or its value was not stored); `"owner"`: the owner died and
 * this process took the key over (compute, then release); `"timeout"`: `ms` passed. */
export type FlightEnd = "done" | "owner" | "timeout";

/**
 * Single-flight across the processes of a shared cache: one computation per key at a time,
 * recorded in the shared file with the computing process's liveness, so that the others
 * wait for its result without polling, and take over when it dies.
 */
export interface Flights {
  /** Claims the computation of `key` for this process, or reports who has it. */
  claim(key: KeyBytes): FlightClaim;
  /** Waits, without blocking the thread, until the key's flight ends, its owner dies or
   * `ms` pass (`Infinity`: no bound). The key bytes must stay unchanged until it settles. */
  wait(key: KeyBytes, ms: number): Promise<FlightEnd>;
  /** {@linkcode Flights.wait}, blocking the thread (for functions that return no Promise). */
  waitSync(key: KeyBytes, ms: number): FlightEnd;
  /** Whether this process still owns the flight of `key` (a delete or clear in any process
   * ends every flight it concerns: the owner must then not store its result). */
  owns(key: KeyBytes): boolean;
  /** Ends this process's flight of `key` and wakes its waiters. Idempotent. */
  release(key: KeyBytes): void;
}

/** How a store is driven through its {@linkcode StoreView}. */
export interface ViewOptions {
  /** The time of the store when no clock is injected (`NaN`: the library reads its own). */
  defaultTime: () => number;
  /** Whether lookups pass the key's address (long-lived buffers) rather than the buffer. */
  pointerGets: boolean;
  /** Whether inserts pass the key's address rather than the buffer. */
  pointerSets: boolean;
  /** Whether every operation passes the time, TTL or not (the shared file: another process
   * may judge an entry with a TTL of its own, or have stored one with its own TTL). */
  stampAlways: boolean;
}

/**
 * The {@linkcode Store} over a {@linkcode ByteStore}: one class for the three stores, so
 * that every cache's calls go to the same methods (one call target per call site, which the
 * JIT inlines; per-cache closures measured 3–5 ns slower a hit). Time comes from the
 * injected clock, else the store's default, and is read only when the store needs it.
 */
export class StoreView implements Store {
  #s: ByteStore;
  #time: () => number;
  /** Whether operations pass the time (else 0): a TTL, own or the store's, may need it. */
  #timed: boolean;
  #pointerGets: boolean;
  #pointerSets: boolean;
  readonly flights: Flights | undefined;

  /**
   * @param s The store.
   * @param ttlOn Whether its entries expire.
   * @param clock The injected clock, or `undefined`.
   * @param o How the store wants to be called.
   */
  constructor(s: ByteStore, ttlOn: boolean, clock: (() => number) | undefined, o: ViewOptions) {
    this.#s = s;
    this.#time = clock ?? o.defaultTime;
    // A store stamped always (shared) is read with the time always: another process may
    // have stored an entry with a TTL of its own.
    this.#timed = ttlOn || o.stampAlways;
    this.flights = s.flights;
    this.#pointerGets = o.pointerGets;
    this.#pointerSets = o.pointerSets;
  }

  get(k: KeyBytes): unknown {
    return this.#s.get(
      k.buf,
      k.len,
      this.#timed ? this.#time() : 0,
      this.#pointerGets ? k.pointer() : undefined,
    );
  }

  set(k: KeyBytes, value: unknown, promised: boolean, ttl?: number): boolean {
    // An entry with a TTL of its own makes every later lookup read the time.
    if (ttl !== undefined) this.#timed = true;
    return this.#s.set(
      k.buf,
      k.len,
      value,
      this.#timed ? this.#time() : 0,
      promised,
      this.#pointerSets ? k.pointer() : undefined,
      ttl,
    );
  }

  peek(k: KeyBytes): unknown {
    return this.#s.peek(k.buf, k.len, this.#timed ? this.#time() : 0);
  }

  peekStale(k: KeyBytes): unknown {
    return this.#s.peekStale(k.buf, k.len, this.#timed ? this.#time() : 0);
  }

  delete(k: KeyBytes): boolean {
    return this.#s.delete(k.buf, k.len);
  }

  countJoin(): void {
    this.#s.countJoin();
  }

  countStaleHit(joined?: boolean): void {
    this.#s.countStaleHit(joined);
  }

  countRefresh(): void {
    this.#s.countRefresh();
  }

  clear(): void {
    this.#s.clear();
  }

  info(): StoreInfo {
    return this.#s.info();
  }

  close(): void {
    this.#s.close();
  }
}
