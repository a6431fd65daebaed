/**
 * {@linkcode SieveCache}: a `Map`-like cache with SIEVE eviction and optional TTL, for
 * direct use.
 *
 * @module
 */

import { SIEVE, SieveQueue } from "./_sieve_queue.ts";
import { checkMaxSize, checkTtl, describe } from "../options/_validate.ts";
import { register, type Registered } from "../ops/registry.ts";
import type { CacheInfo } from "../call/types.ts";
import { Backend, Strategy } from "../options/options.ts";

/** Counters and sizes of a {@linkcode SieveCache}, from its `info()`. */
export interface SieveCacheInfo {
  /** `get()` lookups that found a fresh entry. */
  hits: number;
  /** `get()` lookups that found no entry, or an expired one. */
  misses: number;
  /** Entries evicted to make room for new keys (not expirations nor deletes). */
  evictions: number;
  /** Most entries kept, as given (`Infinity`: unbounded). */
  maxSize: number;
  /** Entries held, including expired ones that no lookup has removed yet (as `size`). */
  currentSize: number;
}

/** Options of {@linkcode SieveCache}. */
export interface SieveCacheOptions {
  /**
   * Most entries kept: a positive integer, or `Infinity` for no bound. When a new key is
   * set into a full cache, SIEVE evicts one entry that no lookup has visited since the
   * hand last passed it.
   */
  maxSize: number;
  /**
   * Age in ms since the entry was set after which it is absent. Lookups do not extend it;
   * setting the key again does. `undefined`: entries never expire.
   *
   * @default {undefined}
   */
  ttl?: number | undefined;
  /**
   * Time source in ms for `ttl`; called only when `ttl` is set. It must not go backwards.
   *
   * @default {performance.now}
   */
  clock?: (() => number) | undefined;
  /**
   * The name under which `caches()` lists the cache and its metrics are reported (the
   * attribute `cache.name`); several caches may share one (their metrics are added up).
   *
   * @default {"SieveCache"}
   */
  name?: string | undefined;
}

const defaultClock = (): number => performance.now();

// Test hooks, set by the class's static block: they reach private state without being
// methods of the public class.
// deno-lint-ignore no-explicit-any
let orderOf: (c: SieveCache<any, any>) => Array<[unknown, boolean]>;
// deno-lint-ignore no-explicit-any
let validateOf: (c: SieveCache<any, any>) => void;

/**
 * A `Map`-like cache holding at most `maxSize` entries, evicting with SIEVE (Zhang et al.,
 * NSDI 2024): a lookup marks its entry visited and moves nothing; to make room, a hand
 * walks from the oldest entry towards the newest, giving visited entries a second chance
 * (clearing the bit) and evicting the first unvisited one, and stays where it stopped.
 *
 * Keys are compared with SameValueZero, as by `Map` (`NaN` equals `NaN`, `0` equals `-0`,
 * objects by identity); values are kept as they are. With `ttl`, an entry is absent once
 * `clock() - setTime >= ttl`; it is removed when a lookup meets it.
 *
 * **Note:** {@linkcode SieveCache.prototype.size | size} counts expired entries that no
 * lookup has removed yet; iteration skips them.
 *
 * @typeParam K Type of the keys.
 * @typeParam V Type of the values.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 *
 * const cache = new SieveCache<string, number>({ maxSize: 2 });
 * cache.set("a", 1).set("b", 2);
 * assert.equal(cache.get("a"), 1); // "a" is now visited
 * cache.set("c", 3); // full: "a" gets a second chance, "b" is evicted
 * assert.deepEqual([...cache.keys()], ["a", "c"]);
 * assert.equal(cache.has("b"), false);
 * ```
 *
 * @example Entries that expire
 * ```ts
 * import assert from "node:assert/strict";
 *
 * let now = 0;
 * const cache = new SieveCache<string, string>({ maxSize: 10, ttl: 1000, clock: () => now });
 * cache.set("session", "token");
 * now = 999;
 * assert.equal(cache.get("session"), "token");
 * now = 1000;
 * assert.equal(cache.get("session"), undefined);
 * ```
 */
export class SieveCache<K, V> implements Iterable<[K, V]> {
  #queue: SieveQueue;
  #index = new Map<K, number>();
  /** By slot: the key and the value (`undefined` in free slots). */
  #keys: (K | undefined)[] = [];
  #values: (V | undefined)[] = [];
  #clock: () => number;
  /**
   * Set while the queue and the index are being changed together. A throw in between (a
   * stack overflow in the caller's recursion can strike at any call) leaves it set, and the
   * next operation empties the cache instead of reading a half-done change.
   */
  #busy = false;
  #disposed = false;
  #hits = 0;
  #misses = 0;
  /** What the registry (`caches()`, `clearAll()`, the metrics) reads; held here, so that
   * it lives as long as this cache. */
  #registered: Registered;
  /** Takes the cache out of the registry. */
  #unregister: () => void;

  /**
   * Creates an empty cache.
   *
   * @param options Size bound, TTL and clock; see {@linkcode SieveCacheOptions}.
   * @throws {TypeError} If `maxSize` or `ttl` is not a number, `clock` is not a function,
   *   or `name` is not a string.
   * @throws {RangeError} If `maxSize` is not a positive integer nor `Infinity`, or `ttl` is
   *   0, negative, `NaN` or infinite.
   */
  constructor(options: SieveCacheOptions) {
    if (typeof options !== "object" || options === null) {
      throw new TypeError(
        `Cannot create SieveCache: options must be an object: received ${describe(options)}`,
      );
    }
    const maxSize = checkMaxSize("SieveCache", options.maxSize);
    const ttl = checkTtl("SieveCache", options.ttl);
    const clock = options.clock ?? defaultClock;
    if (typeof clock !== "function") {
      throw new TypeError(
        `Cannot create SieveCache: clock must be a function: received ${describe(clock)}`,
      );
    }
    const name = options.name ?? "SieveCache";
    if (typeof name !== "string") {
      throw new TypeError(
        `Cannot create SieveCache: name must be a string: received ${describe(name)}`,
      );
    }
    this.#clock = clock;
    this.#queue = new SieveQueue(maxSize, ttl, SIEVE);
    this.#registered = new Listed(name, this);
    this.#unregister = register(this, this.#registered, true);
  }

  /**
   * Returns the counters and sizes: `get()` lookups (`peek()` and `has()` count nothing)
   * and evictions since the cache was created or last cleared.
   *
   * @returns Hits, misses, evictions, `maxSize` and the number of entries held.
   */
  info(): SieveCacheInfo {
    if (this.#busy) this.#repair();
    const queue = this.#queue;
    return {
      hits: this.#hits,
      misses: this.#misses,
      evictions: queue.evictions,
      maxSize: queue.capacity,
      currentSize: queue.size,
    };
  }

  /** Most entries kept, as given (`Infinity`: unbounded). */
  get maxSize(): number {
    return this.#queue.capacity;
  }

  /** Entries held, including expired ones that no lookup has removed yet. */
  get size(): number {
    if (this.#busy) this.#repair();
    return this.#queue.size;
  }

  /**
   * Returns the value of `key` and marks the entry visited (so that eviction spares it
   * once).
   *
   * @param key Key to look up.
   * @returns The value, or `undefined` if the key is absent or expired (then removed).
   */
  get(key: K): V | undefined {
    if (this.#busy) this.#repair();
    const slot = this.#index.get(key);
    if (slot === undefined) {
      this.#misses++;
      return undefined;
    }
    const queue = this.#queue;
    if (queue.hasTtl && queue.expired(slot, this.#clock())) {
      this.#removeSlot(slot);
      this.#misses++;
      return undefined;
    }
    queue.visited[slot] = 1;
    this.#hits++;
    return this.#values[slot];
  }

  /**
   * Returns the value of `key` without marking the entry visited.
   *
   * @param key Key to look up.
   * @returns The value, or `undefined` if the key is absent or expired (then removed).
   */
  peek(key: K): V | undefined {
    const slot = this.#freshSlot(key);
    return slot === undefined ? undefined : this.#values[slot];
  }

  /**
   * Sets `key` to `value`. A key already present keeps its place and visited bit and gets
   * a new set time (for `ttl`); a new key evicts one entry when the cache is full.
   *
   * @param key Key to set.
   * @param value Value to keep (as is, no copy).
   * @returns This cache.
   */
  set(key: K, value: V): this {
    if (this.#busy) this.#repair();
    const queue = this.#queue;
    const now = queue.hasTtl ? this.#clock() : 0;
    let slot = this.#index.get(key);
    if (slot !== undefined) {
      queue.insertedAt[slot] = now;
      this.#values[slot] = value;
      return this;
    }
    this.#busy = true;
    if (queue.size >= queue.capacity) {
      const victim = queue.evict();
      this.#index.delete(this.#keys[victim] as K);
      this.#keys[victim] = undefined;
      this.#values[victim] = undefined;
    }
    // Store -0 as 0, as Map does, so that iteration gives back the key that Map holds.
    const k = (key === 0 ? 0 : key) as K;
    slot = queue.add(now);
    this.#keys[slot] = k;
    this.#values[slot] = value;
    this.#index.set(k, slot);
    this.#busy = false;
    return this;
  }

  /**
   * Tells whether `key` is present and fresh, without marking the entry visited.
   *
   * @param key Key to look up.
   * @returns Whether a lookup would find it now.
   */
  has(key: K): boolean {
    return this.#freshSlot(key) !== undefined;
  }

  /**
   * Removes `key`.
   *
   * @param key Key to remove.
   * @returns Whether the key was present and fresh.
   */
  delete(key: K): boolean {
    if (this.#busy) this.#repair();
    const slot = this.#index.get(key);
    if (slot === undefined) return false;
    const queue = this.#queue;
    const fresh = !(queue.hasTtl && queue.expired(slot, this.#clock()));
    this.#removeSlot(slot);
    return fresh;
  }

  /** Removes every entry and resets the counters of
   * {@linkcode SieveCache.prototype.info | info()}. */
  clear(): void {
    this.#repair();
    this.#hits = 0;
    this.#misses = 0;
    this.#queue.evictions = 0;
  }

  /**
   * Releases the entries; later calls throw (the cache holds no native resource, so this
   * only ends its use). Calling it again does nothing.
   */
  [Symbol.dispose](): void {
    if (this.#disposed) return;
    this.#repair();
    this.#disposed = true;
    this.#unregister();
    // Every operation checks `#busy` first and so reaches `#repair`, which throws now.
    this.#busy = true;
  }

  /** Empties the cache; `#busy` is cleared last, so a repair cut short is done again. */
  #repair(): void {
    if (this.#disposed) throw new Error("Cannot use a SieveCache after it was disposed");
    this.#queue.clear();
    this.#index.clear();
    this.#keys = [];
    this.#values = [];
    this.#busy = false;
  }

  /**
   * Iterates over the fresh entries, oldest first (insertion order, as `Map`). Lookups do
   * not move entries, so this is the order in which the keys were first set. Entries
   * removed during the iteration are skipped; entries added are not visited.
   *
   * @returns An iterator of `[key, value]` pairs.
   */
  *entries(): IterableIterator<[K, V]> {
    if (this.#busy) this.#repair();
    const queue = this.#queue;
    const now = queue.hasTtl ? this.#clock() : 0;
    const slots = queue.order();
    for (let i = slots.length - 1; i >= 0; i--) {
      const slot = slots[i]!;
      const key = this.#keys[slot] as K;
      if (this.#index.get(key) !== slot || (queue.hasTtl && queue.expired(slot, now))) continue;
      yield [key, this.#values[slot] as V];
    }
  }

  /**
   * Iterates over the keys of the fresh entries, oldest first.
   *
   * @returns An iterator of keys.
   */
  *keys(): IterableIterator<K> {
    for (const [key] of this.entries()) yield key;
  }

  /**
   * Iterates over the values of the fresh entries, oldest first.
   *
   * @returns An iterator of values.
   */
  *values(): IterableIterator<V> {
    for (const [, value] of this.entries()) yield value;
  }

  /**
   * Calls `callback` for each fresh entry, oldest first, as `Map.prototype.forEach`.
   *
   * @param callback Called with the value, the key and this cache.
   * @param thisArg `this` of the calls.
   */
  forEach(callback: (value: V, key: K, cache: this) => void, thisArg?: unknown): void {
    for (const [key, value] of this.entries()) callback.call(thisArg, value, key, this);
  }

  /**
   * Same as {@linkcode SieveCache.prototype.entries | entries()}.
   *
   * @returns An iterator of `[key, value]` pairs.
   */
  [Symbol.iterator](): IterableIterator<[K, V]> {
    return this.entries();
  }

  /** `"SieveCache"`, for `Object.prototype.toString`. */
  get [Symbol.toStringTag](): string {
    return "SieveCache";
  }

  /**
   * Keys from the newest to the oldest with their visited bits: the SIEVE state, for
   * tests. Includes expired entries not yet removed.
   *
   * @returns `[key, visited]` pairs, newest first.
   */
  #order(): Array<[K, boolean]> {
    if (this.#busy) this.#repair();
    const queue = this.#queue;
    return queue.order().map((slot) => [this.#keys[slot] as K, queue.visited[slot] === 1]);
  }

  /**
   * Checks the invariants of the queue and of the index, for tests.
   *
   * @throws {Error} On the first violation found.
   */
  #validate(): void {
    if (this.#busy) this.#repair();
    const queue = this.#queue;
    queue.validate((slot) => this.#index.get(this.#keys[slot] as K) === slot);
    if (this.#index.size !== queue.size) {
      throw new Error(
        `SieveCache invariant violated: ${this.#index.size} indexed, ${queue.size} live`,
      );
    }
    for (const slot of queue.free) {
      if (this.#keys[slot] !== undefined || this.#values[slot] !== undefined) {
        throw new Error(`SieveCache invariant violated: free slot ${slot} keeps an entry`);
      }
    }
  }

  static {
    orderOf = (c) => c.#order();
    validateOf = (c) => c.#validate();
  }

  /** The slot of `key` if present and fresh (an expired entry is removed). */
  #freshSlot(key: K): number | undefined {
    if (this.#busy) this.#repair();
    const slot = this.#index.get(key);
    if (slot === undefined) return undefined;
    const queue = this.#queue;
    if (queue.hasTtl && queue.expired(slot, this.#clock())) {
      this.#removeSlot(slot);
      return undefined;
    }
    return slot;
  }

  #removeSlot(slot: number): void {
    this.#busy = true;
    this.#index.delete(this.#keys[slot] as K);
    this.#queue.remove(slot);
    this.#keys[slot] = undefined;
    this.#values[slot] = undefined;
    this.#busy = false;
  }
}

/** What the registry reads of a {@linkcode SieveCache} (a class: one shape, no closures
 * per cache, as `new SieveCache()` may run per request). */
class Listed implements Registered {
  readonly backend = Backend.Memory;
  readonly strategy = Strategy.Sieve;
  constructor(readonly name: string, readonly cache: SieveCache<unknown, unknown>) {}
  info(): CacheInfo {
    const { hits, misses, maxSize, currentSize } = this.cache.info();
    return { hits, misses, maxSize, currentSize };
  }
  clear(): void {
    this.cache.clear();
  }
  evictions(): number {
    return this.cache.info().evictions;
  }
}

/**
 * Keys of `cache` from the newest to the oldest with their visited bits: the SIEVE state,
 * for tests (not part of the public API). Includes expired entries not yet removed.
 */
export function sieveCacheOrder<K, V>(cache: SieveCache<K, V>): Array<[K, boolean]> {
  return orderOf(cache) as Array<[K, boolean]>;
}

/**
 * Checks the invariants of the queue and of the index of `cache`, for tests (not part of
 * the public API).
 *
 * @throws {Error} On the first violation found.
 */
export function validateSieveCache<K, V>(cache: SieveCache<K, V>): void {
  validateOf(cache);
}
