/**
 * The `cache()` factory: wraps a function (or decorates a method, TC39 standard
 * decorators) with a cache whose store is chosen by the options.
 *
 * @module
 */

import { bytesToKeyString, KeyWriter } from "./key_codec.ts";
import { Backend, type CacheOptions, type ResolvedOptions, resolveOptions } from "./options.ts";
import { type KeyBytes, MISS, type Store } from "./store.ts";
import { createStore } from "./engine.ts";
import { describe } from "./_validate.ts";
import { type DecorationSite, decorationSite, defaultSharedName } from "./_naming.ts";
import { register } from "./registry.ts";

/** Counters and sizes of a cache, from {@linkcode CachedFunction.cacheInfo}. */
export interface CacheInfo {
  /** Calls answered from the cache (including calls that joined a pending computation). */
  hits: number;
  /** Calls that ran the function. */
  misses: number;
  /** Most entries kept (`Infinity` when unbounded). */
  maxSize: number;
  /** Entries held now. */
  currentSize: number;
}

/** {@linkcode CacheInfo} of a shared cache: exact totals over every process. */
export interface SharedCacheInfo extends CacheInfo {
  /** Results not stored because their key or value exceeded `maxKeySize`/`maxValueSize`
   * (or the whole of `maxBytes`). */
  oversizeSkips: number;
  /** Bytes of the budget that the entries hold now: their keys and values in chunks of
   * 256 bytes (248 of data each), at most `maxBytes`. */
  bytes: number;
  /** Byte budget of the keys and values (the file's, when it was adopted). */
  maxBytes: number;
}

/** Any function. */
// deno-lint-ignore no-explicit-any
export type AnyFunction = (...args: any[]) => any;

/** A cached function: `fn` with the same parameters, return type and `name`, plus cache
 * controls. */
export type CachedFunction<F extends AnyFunction, I extends CacheInfo = CacheInfo> = F & {
  /** Returns the counters and sizes of the cache. */
  cacheInfo(): I;
  /**
   * Removes every entry and resets every counter. Computations under way still settle for
   * their callers, but their results are not stored.
   */
  cacheClear(): void;
  /**
   * The cached value for these arguments (mapped through `key` when it is set), or
   * `undefined` when there is none or it expired. An async function's entry gives its
   * resolved value, not a Promise. Never calls the function, counts nothing and marks
   * nothing visited. A decorated method that keys on `this` needs the instance as `this`:
   * `users.find.cacheGet.call(users, 1)`.
   *
   * @throws {Error} If the cache was disposed.
   */
  cacheGet(...args: Parameters<F>): Awaited<ReturnType<F>> | undefined;
  /**
   * Stores `value` for these arguments, replacing any entry, inserted now. A computation
   * under way for them still settles for its callers, but its result is not stored. For an
   * async function (or one that has returned a Promise), later hits return a Promise of
   * `value`; a Promise given as `value` is stored by its resolved value.
   *
   * @throws {TypeError} With the shared backend, if `value` cannot be serialized.
   * @throws {Error} If the cache was disposed.
   */
  cacheSet(value: Awaited<ReturnType<F>>, ...args: Parameters<F>): void;
  /**
   * Removes the entry for these arguments (with the shared backend, for every process);
   * returns whether there was one. A computation under way for them still settles for its
   * callers, but its result is not stored, and the next call starts a new one.
   *
   * @throws {Error} If the cache was disposed.
   */
  cacheDelete(...args: Parameters<F>): boolean;
  /**
   * Releases the cache's native resources (a shared file stays, with its entries). Later
   * calls throw.
   */
  [Symbol.dispose](): void;
};

/**
 * What `cache(options)` returns: call it with a function, or use it as a standard
 * (TC39) method decorator.
 */
export interface CacheDecorator<I extends CacheInfo = CacheInfo> {
  <F extends AnyFunction>(fn: F): CachedFunction<F, I>;
  <F extends AnyFunction>(method: F, context: ClassMethodDecoratorContext): CachedFunction<F, I>;
}

const memoryWriter = new KeyWriter(256, false);
const sharedWriter = new KeyWriter(256, true);

/** The key bytes of one miss under way, held from before `fn` runs until its result is
 * stored. */
class HeldKey implements KeyBytes {
  len = 0;
  /** Address of `buf`, taken once per buffer for stores that read keys by pointer. */
  #ptr: Deno.PointerValue | undefined = undefined;
  /** The pending-map key, when the lookup already made it. */
  pkey: string | undefined = undefined;
  constructor(public buf: Uint8Array) {}
  pointer(): Deno.PointerValue {
    return this.#ptr ?? (this.#ptr = Deno.UnsafePointer.of(this.buf));
  }
}

/**
 * Free key buffers. A miss takes one before `fn` runs and gives it back once its result is
 * stored, so every miss under way owns its bytes: a cached call made by user code at any
 * point in between (in `fn`, a `then` getter of the result, a Proxy trap, a getter walked by
 * the value codec) takes another one. A miss that throws never gives its buffer back; the
 * pool makes a new one when empty.
 */
const keyPool: HeldKey[] = [];

const EMPTY_HELD = new HeldKey(new Uint8Array(0));

function disposed(): never {
  throw new Error("Cannot use a cache after it was disposed");
}

/** The store of a disposed cache: every use throws. */
const DISPOSED: Store = {
  get: disposed,
  set: disposed,
  peek: disposed,
  delete: disposed,
  peekStale: disposed,
  countJoin: disposed,
  countStaleHit: disposed,
  countRefresh: disposed,
  flights: undefined,
  clear: disposed,
  info: disposed,
  close: (): void => {},
};

function holdKey(src: Uint8Array, len: number, pkey: string | undefined): HeldKey {
  let held = keyPool.pop();
  if (held === undefined || held.buf.length < len) {
    held = new HeldKey(new Uint8Array(Math.max(256, len * 2)));
  }
  const kb = held.buf;
  if (len <= 64) {
    for (let i = 0; i < len; i++) kb[i] = src[i]!;
  } else {
    kb.set(src.subarray(0, len));
  }
  held.len = len;
  held.pkey = pkey;
  return held;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === "object" || typeof value === "function") &&
    typeof (value as { then?: unknown }).then === "function";
}

/** A user clock, checked on every read: a non-number or non-finite time is a
 * `TypeError` on both engines (never an FFI type error or a cache that never expires). */
function checkedClock(clock: () => number): () => number {
  return () => {
    const t = clock();
    if (typeof t !== "number" || !Number.isFinite(t)) {
      throw new TypeError(
        `Cannot read the cache clock: clock must return a finite number of milliseconds: received ${
          describe(t)
        }`,
      );
    }
    return t;
  };
}

const NO_SITE: DecorationSite = { where: "", className: "" };

function wrap(
  fn: AnyFunction,
  name: string,
  opts: ResolvedOptions,
  isMethod: boolean,
  site: DecorationSite,
): CachedFunction<AnyFunction, CacheInfo> {
  const shared = opts.backend === Backend.Shared;
  // The store reads time when it needs it: from an injected clock (checked), else its own.
  const clock = opts.clock === undefined ? undefined : checkedClock(opts.clock);
  // A shared cache's name (given, or the default one) names its file and its listing.
  const cacheName = shared ? (opts.name ?? defaultSharedName(fn, name, site)) : name;
  let store: Store = createStore(opts, name, cacheName, clock);
  const keyFn = opts.key as AnyFunction | undefined;
  // A method keys on `this` (by identity). A shared cache cannot key on identity, so a
  // shared method with a `key` option keys on what `key` returns alone.
  const withThis = isMethod && !(shared && keyFn !== undefined);
  const mainWriter = shared ? sharedWriter : memoryWriter;
  const pending = new Map<string, Promise<unknown>>();
  /** The key held by the last `lookup` that missed. */
  let missHeld: HeldKey = EMPTY_HELD;
  /** Whether a call returned a Promise: entries set by hand then hit as Promises too. */
  let sawPromise = fn.constructor?.name === "AsyncFunction";

  const timeout = opts.timeout;
  /** A caller's view of a computation: rejects with a `TimeoutError` after `timeout` ms
   * (the computation goes on); the computation itself without a timeout. */
  const bounded = timeout === undefined
    ? (p: Promise<unknown>): Promise<unknown> => p
    : (p: Promise<unknown>): Promise<unknown> =>
      new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          reject(
            new DOMException(
              `${name || "(anonymous)"} did not settle within the cache's timeout of ${timeout} ms`,
              "TimeoutError",
            ),
          );
        }, timeout);
        p.then((v) => {
          clearTimeout(timer);
          resolve(v);
        }, (e) => {
          clearTimeout(timer);
          reject(e);
        });
      });

  /** Joins a Promise result to the pending map; stores its value under `held` (kept out of
   * the pool until then) when it resolves, unless it was detached from the pending map
   * meanwhile (cacheClear, cacheDelete, cacheSet). */
  function settle(held: HeldKey, pkey: string, result: PromiseLike<unknown>): Promise<unknown> {
    sawPromise = true;
    const joined: Promise<unknown> = Promise.resolve(result).then(
      (value) => {
        // Not registered any more: cacheDelete, cacheSet or cacheClear came in between (or
        // a computation started after them holds the key now).
        if (pending.get(pkey) === joined) {
          pending.delete(pkey);
          store.set(held, value, true);
        }
        keyPool.push(held);
        return value;
      },
      (reason) => {
        if (pending.get(pkey) === joined) pending.delete(pkey);
        keyPool.push(held);
        throw reason;
      },
    );
    pending.set(pkey, joined);
    return joined;
  }

  /** Encodes the key and looks it up: the value, a pending computation to join, or MISS
   * after holding the miss's key in `missHeld` (read before user code runs). */
  function lookup(self: unknown, args: unknown[]): unknown {
    // Encode the key into the reused writer; a nested encode (a getter calling a cached
    // function) gets a writer of its own. The writer stays busy through the lookup, which
    // may read an injected clock (user code).
    const w = mainWriter.busy ? new KeyWriter(64, shared) : mainWriter;
    w.busy = true;
    let hit: unknown;
    try {
      encode(w, self, args);
      hit = store.get(w);
    } finally {
      w.busy = false;
    }
    return hit !== MISS ? hit : joinOrHold(w.buf, w.len);
  }

  function encode(w: KeyWriter, self: unknown, args: unknown[]): void {
    if (keyFn === undefined) w.call(self, withThis, args);
    else w.call(self, withThis, [keyFn.apply(self, args)]);
  }

  /** The key of `args` held apart (give it back to the pool when done): for the entry
   * controls, which run user code (the store's clock, the value codec) while using it. */
  function heldKeyOf(self: unknown, args: unknown[]): HeldKey {
    const w = mainWriter.busy ? new KeyWriter(64, shared) : mainWriter;
    w.busy = true;
    try {
      encode(w, self, args);
    } finally {
      w.busy = false;
    }
    return holdKey(w.buf, w.len, undefined);
  }

  /** After a store miss: the pending computation to join, or MISS with the key held in
   * `missHeld` before user code runs (a nested cached call reuses the writer). Kept out of
   * `lookup` so that the hit path stays small enough to be inlined. */
  function joinOrHold(buf: Uint8Array, len: number): unknown {
    let pkey: string | undefined;
    if (pending.size > 0) {
      pkey = bytesToKeyString(buf, len);
      const joined = pending.get(pkey);
      if (joined !== undefined) {
        store.countJoin();
        return bounded(joined);
      }
    }
    missHeld = holdKey(buf, len, pkey);
    return MISS;
  }

  /** Stores the result of a miss (or starts settling a Promise) and frees its key. */
  function endMiss(held: HeldKey, result: unknown): unknown {
    if (isThenable(result)) {
      return bounded(settle(held, held.pkey ?? bytesToKeyString(held.buf, held.len), result));
    }
    store.set(held, result, false);
    keyPool.push(held);
    return result;
  }

  // The frame of this function sits between every two levels of a memoized recursion, so
  // it stays small: no try/finally, no locals beyond these (see RELIABILITY.md, hole 9).
  const cached = function (this: unknown, ...args: unknown[]): unknown {
    const r = lookup(this, args);
    if (r !== MISS) return r;
    // Arguments are evaluated in order: `missHeld` is read before `fn` runs (and before a
    // nested cached call could set it again).
    return endMiss(missHeld, fn.apply(this, args));
  };

  Object.defineProperty(cached, "name", { value: name, configurable: true });
  Object.defineProperty(cached, "length", { value: fn.length, configurable: true });
  const controls = {
    cacheInfo: (): CacheInfo => {
      const info = store.info();
      const out: CacheInfo = {
        hits: info.hits,
        misses: info.misses,
        maxSize: info.maxSize,
        currentSize: info.currentSize,
      };
      if (shared) {
        const s = out as SharedCacheInfo;
        s.oversizeSkips = info.oversizeSkips ?? 0;
        s.bytes = info.bytes ?? 0;
        s.maxBytes = info.maxBytes ?? 0;
      }
      return out;
    },
    cacheClear: (): void => {
      pending.clear();
      store.clear();
    },
    cacheGet(this: unknown, ...args: unknown[]): unknown {
      const k = heldKeyOf(this, args);
      const v = store.peek(k);
      keyPool.push(k);
      return v === MISS ? undefined : v;
    },
    cacheSet(this: unknown, value: unknown, ...args: unknown[]): void {
      const k = heldKeyOf(this, args);
      const pkey = bytesToKeyString(k.buf, k.len);
      // A computation under way for this key no longer stores its result.
      pending.delete(pkey);
      if (isThenable(value)) {
        settle(k, pkey, value).catch(() => {});
        return;
      }
      store.set(k, value, sawPromise);
      keyPool.push(k);
    },
    cacheDelete(this: unknown, ...args: unknown[]): boolean {
      const k = heldKeyOf(this, args);
      pending.delete(bytesToKeyString(k.buf, k.len));
      const removed = store.delete(k);
      keyPool.push(k);
      return removed;
    },
    [Symbol.dispose](): void {
      if (store === DISPOSED) return;
      const open = store;
      store = DISPOSED;
      pending.clear();
      unregister();
      open.close();
    },
  };
  const unregister = register(cached, {
    name: cacheName,
    backend: opts.backend,
    strategy: opts.strategy,
    info: controls.cacheInfo,
    clear: controls.cacheClear,
  });
  return Object.assign(cached, controls) as CachedFunction<AnyFunction, CacheInfo>;
}

/**
 * Creates a caching wrapper: call the result with a function, or use it as a standard
 * (TC39) method decorator. Eviction is SIEVE by default (Zhang et al., "SIEVE is Simpler
 * than LRU", NSDI 2024).
 *
 * Keys are the arguments compared by value (primitives with their type, arrays, plain
 * objects with sorted keys, `Date`, `Uint8Array`, `ArrayBuffer`, `bigint`), other objects
 * by identity (memory backend); a decorated method also keys on `this`. A Promise result
 * is cached by its resolved value, concurrent calls with the same key share one
 * computation, and a rejection is never cached. A thrown exception is never cached.
 *
 * @param options See {@linkcode CacheOptions}; checked here, before any call.
 * @returns A function that wraps `fn`, or decorates a method.
 * @throws {TypeError} If an option has the wrong type, or names an unknown backend or
 * strategy.
 * @throws {RangeError} If `maxSize`, `ttl`, `maxKeySize`, `maxValueSize` or `maxBytes` is
 * out of range.
 * @throws {Error} With the shared backend, when the native library is missing or the
 * platform has no shared memory (Windows).
 *
 * @example Cache a function
 * ```ts
 * import { cache } from "@warp/cache";
 * import assert from "node:assert/strict";
 *
 * let calls = 0;
 * const square = cache({ maxSize: 256 })((x: number) => {
 *   calls++;
 *   return x * x;
 * });
 * assert.equal(square(3), 9);
 * assert.equal(square(3), 9);
 * assert.equal(calls, 1);
 * assert.deepEqual(square.cacheInfo(), { hits: 1, misses: 1, maxSize: 256, currentSize: 1 });
 * ```
 *
 * @example Decorate a method
 * ```ts
 * import { cache } from "@warp/cache";
 * import assert from "node:assert/strict";
 *
 * class Users {
 *   lookups = 0;
 *   @cache({ maxSize: 128, ttl: 60_000 })
 *   async find(id: number): Promise<{ id: number }> {
 *     this.lookups++;
 *     return { id };
 *   }
 * }
 * const users = new Users();
 * assert.equal(await users.find(1), await users.find(1));
 * assert.equal(users.lookups, 1);
 * ```
 */
export function cache(
  options: CacheOptions & { backend: Backend.Shared | "shared" },
): CacheDecorator<SharedCacheInfo>;
/**
 * Creates a caching wrapper for the memory backend (or a backend chosen at run time):
 * the same as the overload above, with {@linkcode CacheInfo} counters.
 *
 * @param options See {@linkcode CacheOptions}; checked here, before any call.
 * @returns A function that wraps `fn`, or decorates a method.
 * @throws {TypeError} If an option has the wrong type or an unknown name.
 * @throws {RangeError} If a number option is out of range.
 */
export function cache(options?: CacheOptions): CacheDecorator<CacheInfo>;
export function cache(options?: CacheOptions): CacheDecorator<CacheInfo> {
  const opts = resolveOptions(options);
  function decorate(fn: AnyFunction, context?: ClassMethodDecoratorContext): AnyFunction {
    if (context !== undefined && context.kind !== "method") {
      throw new TypeError(
        `Cannot decorate a ${String(context.kind)} with @cache: only methods can be cached`,
      );
    }
    if (typeof fn !== "function") {
      throw new TypeError(
        `Cannot cache ${fn === null ? "null" : typeof fn}: cache(options) takes a function`,
      );
    }
    const isMethod = context !== undefined;
    // The site is part of a shared cache's default name; the memory backend needs none.
    const site = opts.backend === Backend.Shared && opts.name === undefined
      ? decorationSite(isMethod)
      : NO_SITE;
    return wrap(fn, isMethod ? String(context.name) : fn.name, opts, isMethod, site);
  }
  return decorate as CacheDecorator<CacheInfo>;
}
