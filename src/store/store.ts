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

import type { TagClock } from "./tagged.ts";

/** Returned by {@linkcode Store.get} when the key is absent or expired. */
export const MISS: unique symbol = Symbol("@warp/cache.miss");

/** Returned by {@linkcode Store.getArgs} when the call's key is absent: the miss is
 * counted, and `get` need not be called. */
export const ABSENT: unique symbol = Symbol("@warp/cache.absent");

/** Returned by {@linkcode Store.getArgsTagged} when the entry's tags were invalidated
 * since it was stored: its hit is counted, and the caller counts it as a miss. */
export const INVALID: unique symbol = Symbol("@warp/cache.invalid");

/**
 * An async result as peeks see it: the Promise every hit returns and its resolved value
 * ({@linkcode peeked}). The Promise is V8's own, untouched (a property on it would cost
 * each `await` of a hit a lookup of its `constructor`, about 15 ns), and no `WeakMap`
 * holds the value (200 ns an insert). The native memory store keeps the two side by side,
 * so that a hit returns its stored value with no check, and makes one of these on a peek;
 * the TypeScript store and a tagged entry keep one.
 */
export class AsyncEntry {
  /**
   * @param promise The Promise hits return.
   * @param value Its resolved value.
   */
  constructor(readonly promise: Promise<unknown>, readonly value: unknown) {}
}

/** The entry a store keeps for an async result `value`: hits return its one Promise
 * ({@linkcode hitOf}), and {@linkcode peeked} reads `value` back. */
export function promisedEntry(value: unknown): AsyncEntry {
  return new AsyncEntry(Promise.resolve(value), value);
}

/** A stored entry as a hit returns it: an async result's Promise, else `v` itself. */
export function hitOf(v: unknown): unknown {
  return v instanceof AsyncEntry ? v.promise : v;
}

/** The value of an entry as the function returned it: an async result's resolved value
 * for an entry made by {@linkcode promisedEntry}, else `v` itself. */
export function peeked(v: unknown): unknown {
  return v instanceof AsyncEntry ? v.value : v;
}

/** Whether `v` is an entry made by {@linkcode promisedEntry} (an async result). */
export function isPromisedEntry(v: unknown): v is AsyncEntry {
  return v instanceof AsyncEntry;
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
  /**
   * Whether the holder (a computation) owns the key's cross-process flight. A store whose
   * flights settle on set ({@linkcode Flights.settlesOnSet}) stores a value under such a
   * key only while it still owns the flight, ends the flight and sets this to `false`.
   */
  flight?: boolean;
  /**
   * The arguments of the call whose key these are, when its holder keeps them (a miss's
   * computation): a store indexed by arguments that just found this very array absent
   * (`getArgs`) inserts the key by them instead of decoding its bytes.
   */
  args?: unknown[] | undefined;
}

/** What {@linkcode Store.writeAbsentKey} writes a key into: the key codec's `KeyWriter`. */
export interface ShapedKeyWriter {
  /** Writes the key of a call of one plain object of shape `number` (memory form) whose
   * values, in sorted key order, are `key[1..]`; returns its length. */
  shapedCall(number: number, key: readonly unknown[]): number;
  /** The buffer written into (the key at `[0, length)`). */
  readonly buf: Uint8Array;
}

/**
 * The lower-level API that every store class has besides its {@linkcode Store}: key bytes
 * `key[0..len)` and an explicit time `now` in ms (`NaN` for the native stores: their own
 * clock). For tests, benchmarks and the simulator, which drive time themselves.
 */
export interface ByteStore {
  /** {@linkcode Store.get} at time `now`; `ptr` may be the address of `key`. */
  get(key: Uint8Array, len: number, now: number, ptr?: Deno.PointerValue): unknown;
  /** {@linkcode Store.getArgs} at time `now`, where the store indexes entries by their
   * arguments (the TypeScript store). */
  getArgs?(args: unknown[], now: number): unknown;
  /** {@linkcode Store.getArgsTagged} at time `now`. */
  getArgsTagged?(args: unknown[], now: number, clock: TagClock): unknown;
  /** {@linkcode Store.writeAbsentKey}. */
  writeAbsentKey?(args: unknown[], w: ShapedKeyWriter): boolean;
  /** {@linkcode Store.set} at time `now`; `ptr` may be the address of `key`; `ttl` the
   * entry's own TTL in ms (`undefined`: the store's); `size` the entry's size in bytes for
   * a memory store's byte budget (`maxBytes`; unused without one, and by the shared store);
   * `owner` the {@linkcode KeyBytes} of the call (its `flight` mark: see
   * {@linkcode KeyBytes.flight}; used by the shared store). */
  set(
    key: Uint8Array,
    len: number,
    value: unknown,
    now: number,
    promised: boolean,
    ptr?: Deno.PointerValue,
    ttl?: number,
    size?: number,
    owner?: KeyBytes,
  ): boolean;
  /** {@linkcode Store.put}, where it differs from `set` (the shared store), at the times
   * `now()` of its tries. */
  put?(
    key: Uint8Array,
    len: number,
    value: unknown,
    now: () => number,
    promised: boolean,
    ptr?: Deno.PointerValue,
    ttl?: number,
    size?: number,
    owner?: KeyBytes,
  ): void;
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
  /** {@linkcode Store.dir}. */
  readonly dir?: string | undefined;
  /** {@linkcode Store.delete}. */
  delete(key: Uint8Array, len: number): boolean;
  /** {@linkcode Store.countJoin}. */
  countJoin(): void;
  /** Turns one hit counted by this store into a miss (a hit on an entry whose tags were
   * invalidated), where the store keeps its counters itself (the shared file). */
  countInvalidHit?(): void;
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
   * Returns the value stored under `key` if present and fresh (an async result: its
   * Promise, {@linkcode hitOf}), else {@linkcode MISS}. Counts a hit or a miss and marks the entry for the eviction policy (SIEVE: sets its
   * visited bit). Reads the key before returning.
   */
  get(key: KeyBytes): unknown;
  /** Whether {@linkcode Store.getArgs} may answer (the TypeScript store). */
  readonly argsIndexed?: boolean;
  /**
   * A hit looked up by the arguments of a call without `this` rather than by its encoded
   * key, where the store indexes entries so ({@linkcode Store.argsIndexed}): the value if
   * present and fresh (a hit counted, as `get` would); {@linkcode ABSENT} when the key is
   * absent (a miss counted, as `get` would: the caller goes on with the miss without
   * `get`); else {@linkcode MISS} with nothing counted (arguments not indexed so, or an
   * expired entry), and the caller then encodes the key and calls `get`.
   */
  getArgs?(args: unknown[]): unknown;
  /**
   * {@linkcode Store.getArgs} for a cache whose entries may carry tags (a `Tagged`, see
   * `tagged.ts`), checked against `clock`: a valid entry's value (the hit's form), or
   * {@linkcode INVALID} for an entry whose tags were invalidated since it was stored (its
   * hit counted), else as `getArgs`.
   */
  getArgsTagged?(args: unknown[], clock: TagClock): unknown;
  /**
   * Writes into `w` the key of the call of `args` that {@linkcode Store.getArgs} has just
   * found absent ({@linkcode ABSENT}), when the store read it by values it kept (a plain
   * object's): the bytes that encoding the call writes, without reading its arguments
   * again. `false`, with nothing written, for any other call: the caller encodes the key.
   */
  writeAbsentKey?(args: unknown[], w: ShapedKeyWriter): boolean;
  /**
   * Stores `value` under `key`, inserted now, evicting one entry when full. `promised`
   * says that `value` is the resolution of a Promise: later hits must then return a
   * Promise resolving to it. `value` itself is never a Promise (an async result is given
   * by its resolved value): the memory stores tell async results by their stored Promise. `ttl` is the entry's own TTL in ms (positive, `Infinity`
   * for never), replacing the store's for this entry; `undefined` keeps the store's.
   * `size` is the entry's size in bytes under a memory store's byte budget. When
   * `key.flight` is true and the store's flights settle on set
   * ({@linkcode Flights.settlesOnSet}), the value is stored only while the flight is still
   * this handle's, and the flight ends (`key.flight` becomes `false`). Returns `false` when
   * the entry was not stored (too large, the shared file's lock is held by a stopped
   * process, or the flight was lost). Throws `TypeError` when the value cannot be stored
   * (shared backend: not serializable).
   */
  set(key: KeyBytes, value: unknown, promised: boolean, ttl?: number, size?: number): boolean;
  /**
   * `cacheSet`: {@linkcode Store.set}, except that a shared store whose write lock is held by
   * a live process (stopped, in a debugger) waits for it as `delete` does, up to
   * `LONG_WAIT_MS` (5 s), and then throws: an explicit update is never dropped without a word.
   *
   * @throws {CacheError} Code `Status.Busy` (-8) when the lock stayed held that long.
   */
  put(key: KeyBytes, value: unknown, promised: boolean, ttl?: number, size?: number): void;
  /**
   * The entry stored under `key` if present and fresh, else {@linkcode MISS}, without
   * counting anything or marking the entry for the eviction policy (`cacheGet()`). An async
   * result comes as its {@linkcode AsyncEntry}: {@linkcode hitOf} gives the Promise a hit
   * returns, {@linkcode peeked} its value.
   */
  peek(key: KeyBytes): unknown;
  /**
   * The entry stored under `key` while it is fresh or stale (older than its TTL, but not
   * older than its TTL plus the store's stale window, or plus `window` ms when given and
   * shorter), else {@linkcode MISS}; like {@linkcode Store.peek} it counts and marks
   * nothing. `get` keeps a stale entry (it counts a miss and returns {@linkcode MISS})
   * until its window ends.
   */
  peekStale(key: KeyBytes, window?: number): unknown;
  /** Removes `key`; returns whether it was present. */
  delete(key: KeyBytes): boolean;
  /** The directory of a shared store's file (for listings and metrics), else `undefined`. */
  readonly dir?: string | undefined;
  /** Removes every entry and resets every counter. */
  clear(): void;
  /** Returns the counters and sizes. */
  info(): StoreInfo;
  /** Releases native resources. Idempotent. */
  close(): void;
}

/**
 * What {@linkcode Flights.claim} found: `"owner"`: this handle now computes the key (call
 * {@linkcode Flights.release} when done); `"wait"`: a live handle of another process
 * computes it (call {@linkcode Flights.wait} or {@linkcode Flights.waitSync}); `"local"`: a
 * live handle of this same process computes it (this one included; a synchronous caller
 * must not block on it: its owner may need this very thread); `"none"`: no flight could
 * be recorded (the table is full): compute without one.
 */
export type FlightClaim = "owner" | "wait" | "local" | "none";

/**
 * How a wait ended: `"done"`: the flight ended (look the key up; a miss means nothing was
 * stored); `"owner"`: its owner died and this handle took the flight over (compute, then
 * release); `"async"` ({@linkcode Flights.waitSync} with `untilAsync` only): the owner's
 * computation is async, or a handle of this process owns the flight: switch to
 * {@linkcode Flights.wait}; `"timeout"`: `ms` passed; `"closed"`: this handle was closed
 * meanwhile.
 */
export type FlightEnd = "done" | "owner" | "async" | "timeout" | "closed";

/**
 * Single-flight across the processes of a shared cache: one computation per key at a time,
 * recorded in the shared file with the owner's liveness, so that the others wait for its
 * result without polling, and take over when it dies. Keys are told apart by their 64-bit
 * hash.
 */
export interface Flights {
  /**
   * Claims the computation of `key` for this handle, or reports who has it. `async`: the
   * computation is known to be async (recorded for synchronous waiters; see
   * {@linkcode Flights.markAsync}).
   */
  claim(key: KeyBytes, async: boolean): FlightClaim;
  /** Records that this handle's computation of `key` is async (its function returned a
   * Promise): synchronous waiters that asked to know stop blocking their thread. Nothing
   * when this handle does not own the flight. */
  markAsync(key: KeyBytes): void;
  /**
   * Waits without blocking the thread until the key's flight ends, its owner dies or is
   * gone (then this handle takes it over), `ms` ms pass (`Infinity`: no bound) or this
   * handle is closed. Every wait of the thread shares one thread of Deno's blocking pool.
   * Waits for a flight of this process too.
   *
   * @throws {RangeError} If `ms` is negative or `NaN`.
   */
  wait(key: KeyBytes, ms: number): Promise<FlightEnd>;
  /**
   * {@linkcode Flights.wait}, blocking the thread (for functions that return no Promise),
   * but never on a flight of this process: then `"async"` with `untilAsync`, else `"done"`.
   * `untilAsync`: also return `"async"` as soon as the owner's computation is known to be
   * async.
   *
   * @throws {RangeError} If `ms` is negative or `NaN`.
   */
  waitSync(key: KeyBytes, ms: number, untilAsync: boolean): FlightEnd;
  /** Whether this handle still owns the flight of `key` (a delete, a set or a clear in any
   * process, or {@linkcode Flights.end}, ends it: the owner must then not store its
   * result). */
  owns(key: KeyBytes): boolean;
  /** Ends this handle's flight of `key` and wakes its waiters. Idempotent. */
  release(key: KeyBytes): void;
  /** Ends every process's flight of `key` (a value set by hand: the computation under way
   * must not store over it) and wakes its waiters. */
  end(key: KeyBytes): void;
  /**
   * Whether the store's `set` of a key whose holder owns its flight
   * ({@linkcode KeyBytes.flight}) checks that it still does, stores, and ends the flight,
   * in one step: the caller then neither asks {@linkcode Flights.owns} nor calls
   * {@linkcode Flights.release} after a store.
   */
  readonly settlesOnSet?: boolean;
  /**
   * Makes the store's lookups (`Store.get`) claim the key's flight when they miss, in the
   * same call (one call instead of a lookup, a claim and a second lookup; the store looks
   * the key up again under the claim). The caller must then take each such claim with
   * {@linkcode Flights.takeClaim} right after the miss, before any user code runs, and
   * release it if it does not compute.
   */
  claimOnMiss?(): void;
  /**
   * The claim made by the last lookup that missed (see {@linkcode Flights.claimOnMiss}),
   * once; `undefined` when that lookup claimed nothing.
   */
  takeClaim?(): FlightClaim | undefined;
}

/** How a store is driven through its {@linkcode StoreView}. */
export interface ViewOptions {
  /** The time of the store when no clock is injected (`NaN`: the library reads its own). */
  defaultTime: () => number;
  /** The time of lookups (`get`, `getArgs`) when no clock is injected, where it may be
   * coarser than `defaultTime` (the TypeScript store); `undefined`: `defaultTime`. */
  lookupTime?: () => number;
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
  /** The time of lookups: the injected clock (read on every lookup), else the store's
   * lookup time. */
  #lookupTime: () => number;
  /** Whether operations pass the time (else 0): a TTL, own or the store's, may need it. */
  #timed: boolean;
  #pointerGets: boolean;
  #pointerSets: boolean;
  /** The store's stale window in ms (see {@linkcode StoreView.setStaleWindow}). */
  #staleWindow = 0;
  readonly flights: Flights | undefined;
  readonly dir: string | undefined;
  readonly argsIndexed: boolean;

  /**
   * @param s The store.
   * @param ttlOn Whether its entries expire.
   * @param clock The injected clock, or `undefined`.
   * @param o How the store wants to be called.
   */
  constructor(s: ByteStore, ttlOn: boolean, clock: (() => number) | undefined, o: ViewOptions) {
    this.#s = s;
    this.#time = clock ?? o.defaultTime;
    this.#lookupTime = clock ?? o.lookupTime ?? o.defaultTime;
    // A store stamped always (shared) is read with the time always: another process may
    // have stored an entry with a TTL of its own.
    this.#timed = ttlOn || o.stampAlways;
    this.flights = s.flights;
    this.dir = s.dir;
    this.#pointerGets = o.pointerGets;
    this.#pointerSets = o.pointerSets;
    this.argsIndexed = s.getArgs !== undefined;
  }

  getArgs(args: unknown[]): unknown {
    return this.#s.getArgs!(args, this.#timed ? this.#lookupTime() : 0);
  }

  getArgsTagged(args: unknown[], clock: TagClock): unknown {
    return this.#s.getArgsTagged!(args, this.#timed ? this.#lookupTime() : 0, clock);
  }

  writeAbsentKey(args: unknown[], w: ShapedKeyWriter): boolean {
    return this.#s.writeAbsentKey?.(args, w) ?? false;
  }

  get(k: KeyBytes): unknown {
    return this.#s.get(
      k.buf,
      k.len,
      this.#timed ? this.#lookupTime() : 0,
      this.#pointerGets ? k.pointer() : undefined,
    );
  }

  set(k: KeyBytes, value: unknown, promised: boolean, ttl?: number, size?: number): boolean {
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
      size,
      k,
    );
  }

  put(k: KeyBytes, value: unknown, promised: boolean, ttl?: number, size?: number): void {
    const s = this.#s;
    if (s.put === undefined) {
      this.set(k, value, promised, ttl, size);
      return;
    }
    if (ttl !== undefined) this.#timed = true;
    const timed = this.#timed;
    const time = this.#time;
    s.put(
      k.buf,
      k.len,
      value,
      () => timed ? time() : 0,
      promised,
      this.#pointerSets ? k.pointer() : undefined,
      ttl,
      size,
      k,
    );
  }

  peek(k: KeyBytes): unknown {
    return this.#s.peek(k.buf, k.len, this.#timed ? this.#time() : 0);
  }

  peekStale(k: KeyBytes, window?: number): unknown {
    const now = this.#timed ? this.#time() : 0;
    // A shorter window than the store's: the entry is within it now exactly when it is
    // within the store's window at a time later by the difference.
    const shift = window === undefined ? 0 : Math.max(0, this.#staleWindow - window);
    return this.#s.peekStale(k.buf, k.len, now + shift);
  }

  /**
   * Tells the view the store's stale window (ms), for {@linkcode StoreView.peekStale} with
   * a shorter one; the view must then be driven by an explicit clock.
   */
  setStaleWindow(ms: number): void {
    this.#staleWindow = ms;
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

  countInvalidHit(): void {
    this.#s.countInvalidHit?.();
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
