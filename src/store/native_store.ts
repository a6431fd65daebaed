/**
 * The in-process store backed by the Rust library (`rust/src/sieve.rs`): Rust keeps the
 * index (key bytes to slot, SIEVE state, insertion times, entries' own TTLs), JavaScript
 * keeps the values in an array indexed by slot, so values keep their identity and cost no
 * serialization. A slot's value is dropped only when Rust reports the entry removed (a
 * stale entry stays, with its value).
 *
 * @module
 */

import type { NativeSymbols } from "../native/ffi.ts";
import {
  EXPIRED_BASE,
  MAX_MEM_CAPACITY,
  MEM_INFO,
  MEM_INFO_FIELDS,
  NO_TTL,
  Status,
  UNBOUNDED_CAPACITY,
} from "../native/_abi.ts";
import { unwrap } from "../native/errors.ts";
import { checkEntrySize, checkEntryTtl, checkMemoryMaxBytes } from "../options/_validate.ts";
import {
  AsyncEntry,
  type ByteStore,
  MISS,
  type Store,
  type StoreInfo,
  StoreView,
  type ViewOptions,
} from "./store.ts";

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
  /** The value of each slot as a hit returns it (an async result: its Promise)… */
  #values: unknown[] = [];
  /** …and an async result's resolved value, which peeks read (see `AsyncEntry`). */
  #resolved: unknown[] = [];
  #maxSize: number;
  #info = new Float64Array(MEM_INFO_FIELDS);
  #token = {};
  /** Misses counted by Rust that joined a pending call: hits, for `info()`. */
  #joins = 0;
  #staleHits = 0;
  #refreshes = 0;
  /** Set while a `set` is between its native insert and its value store (see `set`). */
  #setting = false;
  #pendingKey: Uint8Array = EMPTY;
  #pendingLen = 0;
  /** The byte budget (`undefined`: none), the entries' sizes by slot, their sum, and the
   * entries not stored for being larger than the budget. The library knows nothing of
   * sizes: this side evicts by the policy (`warp_mem_evict`) until an entry fits. */
  #maxBytes: number | undefined;
  #sizes: number[] = [];
  #bytes = 0;
  #oversizeSkips = 0;

  /**
   * @param lib The loaded native symbols.
   * @param maxSize Most entries (`Infinity` for unbounded).
   * @param ttl Entry lifetime in ms, or `undefined`.
   * @param policy Eviction policy number (0 SIEVE, 1 LRU, 2 MRU, 3 FIFO, 4 LFU, 5 S3-FIFO,
   *   6 W-TinyLFU, 7 ARC).
   * @param stale Stale window in ms after an entry's TTL (0: none), during which `get`
   * keeps the entry (a miss) and `peekStale` returns it.
   * @param maxBytes Byte budget: the sum of the entries' sizes (given to `set`) that
   * eviction keeps the store within, besides `maxSize`; `undefined`: none.
   * @throws {CacheError} If the library refuses the parameters.
   * @throws {RangeError} If `maxBytes` is not a positive integer.
   */
  constructor(
    lib: NativeSymbols,
    maxSize: number,
    ttl: number | undefined,
    policy: number,
    stale = 0,
    maxBytes?: number,
  ) {
    this.#maxBytes = checkMemoryMaxBytes("the native memory store", maxBytes);
    this.#lib = lib;
    this.ttlOn = ttl !== undefined;
    this.#maxSize = maxSize;
    // A larger `maxSize` (`Infinity` included) is unbounded.
    const capacity = maxSize > MAX_MEM_CAPACITY ? UNBOUNDED_CAPACITY : maxSize;
    const handle = lib.warp_mem_new(capacity, ttl ?? NO_TTL, policy, stale);
    if (handle === null) unwrap(Status.InvalidArgument, "Creating the native memory store");
    this.#handle = handle;
    registry.register(this, { lib, handle: handle! }, this.#token);
  }

  get(key: Uint8Array, len: number, now: number, ptr?: Deno.PointerValue): unknown {
    if (this.#setting) this.#repair();
    const r = ptr === undefined
      ? this.#lib.warp_mem_get(this.#handle, key, len, now)
      : this.#lib.warp_mem_get_ptr(this.#handle, ptr, len, now);
    if (r >= 0) return this.#values[r];
    // A miss covers a stale entry too: it stays, and so does its value. The status is written
    // as a literal, pinned to the generated fact by tests/abi_test.ts: V8 folds a literal but
    // reads an imported object's property on every call (see `set`).
    return r === -1 /* abi: Status.Miss */ ? MISS : this.#missOther(r);
  }

  /** The miss of a lookup that found its entry expired (its value goes), or an error.
   * Apart from `get`, which the JIT inlines into the hit path only while it stays small. */
  #missOther(r: number): unknown {
    if (r <= EXPIRED_BASE) {
      this.#free(EXPIRED_BASE - r);
      return MISS;
    }
    return unwrap(r, "Cache lookup");
  }

  /**
   * Stores `value` under `key[0..len)` (see `TsSieveStore.set`, whose rules, byte budget
   * included, this follows); `size` is the entry's size in bytes under a byte budget.
   */
  set(
    key: Uint8Array,
    len: number,
    value: unknown,
    now: number,
    promised: boolean,
    ptr?: Deno.PointerValue,
    ttl?: number,
    size?: number,
  ): boolean {
    if (this.#setting) this.#repair();
    let bytes = 0;
    // An entry's own TTL and the byte budget take a method of their own: the JIT inlines
    // this one into the miss path only while it stays small.
    if (ttl !== undefined || this.#maxBytes !== undefined) {
      bytes = this.#admit(key, len, now, ttl, size);
      if (bytes < 0) return false;
    }
    // A literal, pinned to the generated fact by tests/abi_test.ts: with the imported
    // binding and `Status.Miss` in `get`, a miss measured 5-8% slower (paired samples in one
    // process, both orders), V8 reading a module binding where it folds a literal.
    const ownTtl = ttl ?? NaN /* abi: NO_TTL */;
    // Everything that calls a function is done before Rust inserts the key, and nothing
    // that could throw (a stack overflow at a call) runs between the insert and the value
    // store below. Should that still be cut short, `#setting` stays set and the next
    // operation drops the key, so its slot never answers with another entry's value.
    const stored = promised ? Promise.resolve(value) : value;
    this.#pendingKey = key;
    this.#pendingLen = len;
    this.#setting = true;
    const r = ptr === undefined
      ? this.#lib.warp_mem_set(this.#handle, key, len, now, ownTtl)
      : this.#lib.warp_mem_set_ptr(this.#handle, ptr, len, now, ownTtl);
    if (r >= 0) {
      this.#values[r] = stored;
      // Written only where an async result is or was (a cache of sync results keeps it
      // empty): a value is a Promise only as an async result's (see `#entry`).
      if (promised) this.#resolved[r] = value;
      else if (r < this.#resolved.length) this.#resolved[r] = undefined;
      this.#setting = false;
      if (this.#maxBytes !== undefined) {
        // `r` is the key's own slot, a free one, or the slot of the entry just evicted to
        // make room by count: its size (0 when free) leaves the sum.
        this.#bytes += bytes - (this.#sizes[r] ?? 0);
        this.#sizes[r] = bytes;
      }
      return true;
    }
    this.#setting = false;
    unwrap(r, "Cache insert");
    return false;
  }

  /**
   * Checks an entry's own TTL and, under a byte budget, its size, making room for it: its
   * size in bytes (0 without a budget), or -1 for an entry larger than the budget (counted,
   * and the key's present entry removed).
   */
  #admit(
    key: Uint8Array,
    len: number,
    now: number,
    ttl: number | undefined,
    size: number | undefined,
  ): number {
    if (ttl !== undefined) checkEntryTtl("the native memory store", ttl);
    if (this.#maxBytes === undefined) return 0;
    const bytes = checkEntrySize("the native memory store", size);
    if (bytes > this.#maxBytes) {
      this.#skipOversize(key, len);
      return -1;
    }
    this.#makeRoom(key, len, bytes, this.#maxBytes, now);
    return bytes;
  }

  /**
   * Evicts by the policy until an entry of `size` bytes fits within `maxBytes` beside the
   * others; the key's present entry (fresh or stale) does not count, and may be evicted
   * itself.
   */
  #makeRoom(key: Uint8Array, len: number, size: number, maxBytes: number, now: number): void {
    const lib = this.#lib;
    let own = lib.warp_mem_peek_stale(this.#handle, key, len, now);
    if (own < Status.Miss) unwrap(own, "Cache lookup");
    while (this.#bytes - (own < 0 ? 0 : this.#sizes[own]!) + size > maxBytes) {
      const victim = unwrap(lib.warp_mem_evict(this.#handle), "Cache eviction");
      if (victim < 0) break;
      this.#free(victim);
      if (victim === own) own = Status.Miss;
    }
  }

  /** The entry of `slot` as a peek returns it: an async result as its `AsyncEntry`. Only
   * async results are kept as Promises (a Promise given to `set` is stored by its value). */
  #entry(slot: number): unknown {
    const v = this.#values[slot];
    return v instanceof Promise ? new AsyncEntry(v, this.#resolved[slot]) : v;
  }

  /** Forgets the value of `slot` (freed by Rust), and takes its size off the byte count. */
  #free(slot: number): void {
    this.#values[slot] = undefined;
    if (slot < this.#resolved.length) this.#resolved[slot] = undefined;
    if (this.#maxBytes !== undefined) this.#freeBytes(slot);
  }

  /** Counts an entry larger than the byte budget, and removes the key's present entry. */
  #skipOversize(key: Uint8Array, len: number): false {
    this.#oversizeSkips++;
    this.delete(key, len);
    return false;
  }

  /** Takes the size of the freed `slot` off the byte count. */
  #freeBytes(slot: number): void {
    this.#bytes -= this.#sizes[slot] ?? 0;
    this.#sizes[slot] = 0;
  }

  /** Drops the key of a `set` that was cut short between the insert and the value store
   * (its key buffer is the caller's, never given back for reuse after a throw). */
  #repair(): void {
    this.#setting = false;
    const key = this.#pendingKey;
    this.#pendingKey = EMPTY;
    const slot = this.#lib.warp_mem_delete(this.#handle, key, this.#pendingLen);
    if (slot >= 0) this.#free(slot);
  }

  /** The value under `key[0..len)` if present and fresh at `now` (an async result's resolved
   * value), else {@linkcode MISS}; counts nothing, marks nothing. */
  peek(key: Uint8Array, len: number, now: number): unknown {
    if (this.#setting) this.#repair();
    const r = this.#lib.warp_mem_peek(this.#handle, key, len, now);
    if (r >= 0) return this.#entry(r);
    if (r === Status.Miss) return MISS;
    return unwrap(r, "Cache lookup");
  }

  delete(key: Uint8Array, len: number): boolean {
    if (this.#setting) this.#repair();
    const slot = unwrap(this.#lib.warp_mem_delete(this.#handle, key, len), "Cache delete");
    if (slot < 0) return false;
    this.#free(slot);
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
    if (r >= 0) return this.#entry(r);
    if (r === Status.Miss) return MISS;
    return unwrap(r, "Cache lookup");
  }

  clear(): void {
    this.#staleHits = 0;
    this.#refreshes = 0;
    this.#setting = false;
    unwrap(this.#lib.warp_mem_clear(this.#handle), "Cache clear");
    this.#values = [];
    this.#resolved = [];
    this.#joins = 0;
    this.#sizes = [];
    this.#bytes = 0;
    this.#oversizeSkips = 0;
  }

  info(): StoreInfo {
    if (this.#setting) this.#repair();
    unwrap(this.#lib.warp_mem_info(this.#handle, this.#info), "Cache info");
    const i = this.#info;
    const hits = i[MEM_INFO.hits]!;
    const misses = i[MEM_INFO.misses]!;
    const evictions = i[MEM_INFO.evictions]!;
    const len = i[MEM_INFO.currentSize]!;
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
    if (this.#maxBytes !== undefined) {
      info.bytes = this.#bytes;
      info.maxBytes = this.#maxBytes;
      info.oversizeSkips = this.#oversizeSkips;
    }
    return info;
  }

  close(): void {
    if (this.#handle === null) return;
    registry.unregister(this.#token);
    this.#lib.warp_mem_free(this.#handle);
    this.#handle = null;
    this.#values = [];
    this.#resolved = [];
  }
}

/** The time of a store without an injected clock: `LIBRARY_TIME`, the library reads its own
 * monotonic clock (a JS clock call costs more than the lookup). A literal, checked by
 * tests/abi_test.ts: V8 folds a literal, and reads an imported binding on every call. */
const DEFAULT_TIME = (): number => NaN /* abi: LIBRARY_TIME */;

/** How {@linkcode StoreView} drives this store. */
const VIEW: ViewOptions = {
  defaultTime: DEFAULT_TIME,
  pointerGets: true,
  pointerSets: true,
  stampAlways: false,
};
