/**
 * The in-process store backed by the Rust library (`rust/src/sieve.rs`): Rust keeps the
 * index (key bytes to slot, SIEVE state, insertion times, entries' own TTLs), JavaScript
 * keeps the values in an array indexed by slot, so values keep their identity and cost no
 * serialization. A slot's value is dropped only when Rust reports the entry removed (a
 * stale entry stays, with its value).
 *
 * @module
 */

import { EXPIRED_BASE, type NativeSymbols, STORE_TTL } from "../native/ffi.ts";
import { unwrap } from "../native/errors.ts";
import { checkEntryTtl } from "../options/_validate.ts";
import {
  type ByteStore,
  MISS,
  promisedEntry,
  type Store,
  type StoreInfo,
  StoreView,
  type ViewOptions,
} from "./store.ts";

/** Largest capacity passed to Rust; larger `maxSize` (and `Infinity`) mean unbounded. */
const MAX_NATIVE_CAPACITY = 0x7fff_ffff;

const EMPTY = new Uint8Array(0);

const registry = new FinalizationRegistry<{ lib: NativeSymbols; handle: Deno.PointerObject }>(
  ({ lib, handle }) => lib.warp_mem_free(handle),
);

/** A native SIEVE store handle; {@linkcode NativeMemoryStore.keyed} makes its
 * {@linkcode Store}. */
export class NativeMemoryStore implements ByteStore {
  #lib: NativeSymbols;
  /** Whether entries expire (a TTL was given). */
  readonly ttlOn: boolean;
  #handle: Deno.PointerObject | null;
  #values: unknown[] = [];
  #maxSize: number;
  #info = new Float64Array(6);
  #token = {};
  /** Misses counted by Rust that joined a pending call: hits, for `info()`. */
  #joins = 0;
  #staleHits = 0;
  #refreshes = 0;
  /** Set while a `set` is between its native insert and its value store (see `set`). */
  #setting = false;
  #pendingKey: Uint8Array = EMPTY;
  #pendingLen = 0;

  /**
   * @param lib The loaded native symbols.
   * @param maxSize Most entries (`Infinity` for unbounded).
   * @param ttl Entry lifetime in ms, or `undefined`.
   * @param policy Eviction policy number (0 SIEVE, 1 LRU, 2 MRU, 3 FIFO, 4 LFU).
   * @param stale Stale window in ms after an entry's TTL (0: none), during which `get`
   * keeps the entry (a miss) and `peekStale` returns it.
   * @throws {CacheError} If the library refuses the parameters.
   */
  constructor(
    lib: NativeSymbols,
    maxSize: number,
    ttl: number | undefined,
    policy: number,
    stale = 0,
  ) {
    this.#lib = lib;
    this.ttlOn = ttl !== undefined;
    this.#maxSize = maxSize;
    const capacity = maxSize > MAX_NATIVE_CAPACITY ? 0 : maxSize;
    const handle = lib.warp_mem_new(capacity, ttl ?? 0, policy, stale);
    if (handle === null) unwrap(-2, "Creating the native memory store");
    this.#handle = handle;
    registry.register(this, { lib, handle: handle! }, this.#token);
  }

  get(key: Uint8Array, len: number, now: number, ptr?: Deno.PointerValue): unknown {
    if (this.#setting) this.#repair();
    const r = ptr === undefined
      ? this.#lib.warp_mem_get(this.#handle, key, len, now)
      : this.#lib.warp_mem_get_ptr(this.#handle, ptr, len, now);
    if (r >= 0) return this.#values[r];
    // -1 covers a stale entry too: it stays, and so does its value.
    if (r === -1) return MISS;
    if (r <= EXPIRED_BASE) {
      this.#values[EXPIRED_BASE - r] = undefined;
      return MISS;
    }
    return unwrap(r, "Cache lookup");
  }

  set(
    key: Uint8Array,
    len: number,
    value: unknown,
    now: number,
    promised: boolean,
    ptr?: Deno.PointerValue,
    ttl?: number,
  ): boolean {
    if (this.#setting) this.#repair();
    if (ttl !== undefined) checkEntryTtl("the native memory store", ttl);
    const ownTtl = ttl ?? STORE_TTL;
    // Everything that calls a function is done before Rust inserts the key, and nothing
    // that could throw (a stack overflow at a call) runs between the insert and the value
    // store below. Should that still be cut short, `#setting` stays set and the next
    // operation drops the key, so its slot never answers with another entry's value.
    const stored = promised ? promisedEntry(value) : value;
    this.#pendingKey = key;
    this.#pendingLen = len;
    this.#setting = true;
    const r = ptr === undefined
      ? this.#lib.warp_mem_set(this.#handle, key, len, now, ownTtl)
      : this.#lib.warp_mem_set_ptr(this.#handle, ptr, len, now, ownTtl);
    if (r >= 0) {
      this.#values[r] = stored;
      this.#setting = false;
      return true;
    }
    this.#setting = false;
    unwrap(r, "Cache insert");
    return false;
  }

  /** Drops the key of a `set` that was cut short between the insert and the value store
   * (its key buffer is the caller's, never given back for reuse after a throw). */
  #repair(): void {
    this.#setting = false;
    const key = this.#pendingKey;
    this.#pendingKey = EMPTY;
    const slot = this.#lib.warp_mem_delete(this.#handle, key, this.#pendingLen);
    if (slot >= 0) this.#values[slot] = undefined;
  }

  /** The value under `key[0..len)` if present and fresh at `now` (an async result's resolved
   * value), else {@linkcode MISS}; counts nothing, marks nothing. */
  peek(key: Uint8Array, len: number, now: number): unknown {
    if (this.#setting) this.#repair();
    const r = this.#lib.warp_mem_peek(this.#handle, key, len, now);
    if (r >= 0) return this.#values[r];
    if (r === -1) return MISS;
    return unwrap(r, "Cache lookup");
  }

  delete(key: Uint8Array, len: number): boolean {
    if (this.#setting) this.#repair();
    const slot = unwrap(this.#lib.warp_mem_delete(this.#handle, key, len), "Cache delete");
    if (slot < 0) return false;
    this.#values[slot] = undefined;
    return true;
  }

  /**
   * The {@linkcode Store} of this handle: keys by pointer, and time from `clock` when one is
   * injected, else from the library's monotonic clock (a JS clock call costs more than the
   * lookup), and only with a TTL.
   */
  keyed(clock?: () => number): Store {
    return new StoreView(this, this.ttlOn, clock, VIEW);
  }

  /** Turns the miss counted by the last lookup into a hit (it joined a computation). */
  countJoin(): void {
    // Rust counted a miss for this lookup; `info()` moves it to the hits.
    this.#joins++;
  }

  /** Turns the miss counted by the last lookup into a hit and a stale hit. */
  countStaleHit(joined = false): void {
    if (!joined) this.#joins++;
    this.#staleHits++;
  }

  /** Counts a background refresh. */
  countRefresh(): void {
    this.#refreshes++;
  }

  /** The value under `key[0..len)` while fresh or stale at `now` (an async result's
   * resolved value), else {@linkcode MISS}; counts nothing, marks nothing, removes nothing. */
  peekStale(key: Uint8Array, len: number, now: number): unknown {
    if (this.#setting) this.#repair();
    const r = this.#lib.warp_mem_peek_stale(this.#handle, key, len, now);
    if (r >= 0) return this.#values[r];
    if (r === -1) return MISS;
    return unwrap(r, "Cache lookup");
  }

  clear(): void {
    this.#staleHits = 0;
    this.#refreshes = 0;
    this.#setting = false;
    unwrap(this.#lib.warp_mem_clear(this.#handle), "Cache clear");
    this.#values = [];
    this.#joins = 0;
  }

  info(): StoreInfo {
    if (this.#setting) this.#repair();
    unwrap(this.#lib.warp_mem_info(this.#handle, this.#info), "Cache info");
    const [hits = 0, misses = 0, evictions = 0, , len = 0] = this.#info;
    const info: StoreInfo = {
      hits: hits + this.#joins,
      misses: misses - this.#joins,
      maxSize: this.#maxSize,
      currentSize: len,
    };
    if (evictions > 0) info.evictions = evictions;
    if (this.#staleHits > 0 || this.#refreshes > 0) {
      info.staleHits = this.#staleHits;
      info.refreshes = this.#refreshes;
    }
    return info;
  }

  close(): void {
    if (this.#handle === null) return;
    registry.unregister(this.#token);
    this.#lib.warp_mem_free(this.#handle);
    this.#handle = null;
    this.#values = [];
  }
}

/** The time of a store without an injected clock: `NaN`: the library reads its own monotonic clock (a JS clock call costs more than the
 * lookup). */
const DEFAULT_TIME = (): number => NaN;

/** How {@linkcode StoreView} drives this store. */
const VIEW: ViewOptions = {
  defaultTime: DEFAULT_TIME,
  pointerGets: true,
  pointerSets: true,
  stampAlways: false,
};
