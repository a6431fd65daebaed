/**
 * The `cache()` factory: wraps a function (or decorates a method, TC39 standard
 * decorators) with a cache whose store is chosen by the options.
 *
 * @module
 */

import { bytesToKeyString, KeyWriter } from "./key_codec.ts";
import { Backend, type CacheOptions, type ResolvedOptions, resolveOptions } from "./options.ts";
import { MISS, type Store } from "./store.ts";
import { createStore } from "./engine.ts";

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
  /** Results not stored because their key or value exceeded `maxKeySize`/`maxValueSize`. */
  oversizeSkips: number;
}

/** Any function. */
// deno-lint-ignore no-explicit-any
export type AnyFunction = (...args: any[]) => any;

/** A cached function: `fn` with the same parameters, return type and `name`, plus cache
 * controls. */
export type CachedFunction<F extends AnyFunction, I extends CacheInfo = CacheInfo> = F & {
  /** Returns the counters and sizes of the cache. */
  cacheInfo(): I;
  /** Removes every entry and resets every counter. */
  cacheClear(): void;
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

/**
 * Key bytes of the misses under way, one reused buffer per nesting depth: a miss copies
 * its key here before user code runs (a nested cached call reuses the writer), without
 * allocating a fresh ArrayBuffer per miss.
 */
const missKeys: Uint8Array[] = [];
/** Addresses of `missKeys` (taken once per buffer, only for stores that use them). */
const missPointers: (Deno.PointerValue | undefined)[] = [];
let missDepth = 0;

function holdKey(src: Uint8Array, len: number, depth: number): Uint8Array {
  let kb = missKeys[depth];
  if (kb === undefined || kb.length < len) {
    kb = missKeys[depth] = new Uint8Array(Math.max(256, len * 2));
    missPointers[depth] = undefined;
  }
  if (len <= 64) {
    for (let i = 0; i < len; i++) kb[i] = src[i]!;
  } else {
    kb.set(src.subarray(0, len));
  }
  return kb;
}

function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === "object" || typeof value === "function") &&
    typeof (value as { then?: unknown }).then === "function";
}

/** `now` for stores that read their own clock: the native stores, on `NaN`. */
const ownClock = (): number => NaN;
/** Default clock of the TypeScript store: monotonic. */
const monotonicClock = (): number => performance.now();

function wrap(
  fn: AnyFunction,
  name: string,
  opts: ResolvedOptions,
  isMethod: boolean,
): CachedFunction<AnyFunction, CacheInfo> {
  const shared = opts.backend === Backend.Shared;
  const store: Store = createStore(opts, fn, name);
  // Without an injected clock, native stores read their own (a JS clock call costs more
  // than the whole lookup): monotonic for memory, Unix time for shared.
  const clock = opts.clock ?? (store.ownClock ? ownClock : monotonicClock);
  const keyPointer = store.keyPointer;
  const ttlOn = opts.ttl !== undefined;
  // A shared entry may be read by a handle with a ttl of its own (the ttl belongs to the
  // handle, not to the file): stamp every insertion with the real time, ttl or not.
  const stampSets = ttlOn || shared;
  const keyFn = opts.key as AnyFunction | undefined;
  // A method keys on `this` (by identity). A shared cache cannot key on identity, so a
  // shared method with a `key` option keys on what `key` returns alone.
  const withThis = isMethod && !(shared && keyFn !== undefined);
  const mainWriter = shared ? sharedWriter : memoryWriter;
  const pending = new Map<string, Promise<unknown>>();
  let generation = 0;

  function settle(
    keyBytes: Uint8Array,
    pkey: string,
    result: PromiseLike<unknown>,
  ): Promise<unknown> {
    const gen = generation;
    const joined: Promise<unknown> = Promise.resolve(result).then(
      (value) => {
        if (pending.get(pkey) === joined) pending.delete(pkey);
        if (gen === generation) {
          store.set(keyBytes, keyBytes.length, value, clock(), true);
        }
        return value;
      },
      (reason) => {
        if (pending.get(pkey) === joined) pending.delete(pkey);
        throw reason;
      },
    );
    pending.set(pkey, joined);
    return joined;
  }

  const cached = function (this: unknown, ...args: unknown[]): unknown {
    // Encode the key into the reused writer; a nested encode (a getter calling a cached
    // function) gets a writer of its own.
    const w = mainWriter.busy ? new KeyWriter(64, shared) : mainWriter;
    w.busy = true;
    let len: number;
    try {
      len = keyFn === undefined
        ? w.call(this, withThis, args)
        : w.call(this, withThis, [keyFn.apply(this, args)]);
    } finally {
      w.busy = false;
    }
    const now = ttlOn ? clock() : 0;
    const hit = keyPointer ? store.get(w.buf, len, now, w.pointer()) : store.get(w.buf, len, now);
    if (hit !== MISS) return hit;

    let pkey: string | undefined;
    if (pending.size > 0) {
      pkey = bytesToKeyString(w.buf, len);
      const joined = pending.get(pkey);
      if (joined !== undefined) {
        store.countHit();
        return joined;
      }
    }
    // Hold the key before user code runs: a nested cached call reuses the writer.
    const depth = missDepth++;
    const keyBytes = holdKey(w.buf, len, depth);
    let result: unknown;
    try {
      result = fn.apply(this, args);
    } finally {
      missDepth = depth;
    }
    if (isThenable(result)) {
      // The key must outlive this call: copy it.
      const own = keyBytes.slice(0, len);
      return settle(own, pkey ?? bytesToKeyString(own, len), result);
    }
    if (keyPointer) {
      const ptr = missPointers[depth] ?? (missPointers[depth] = Deno.UnsafePointer.of(keyBytes));
      store.set(keyBytes, len, result, stampSets ? clock() : 0, false, ptr);
    } else {
      store.set(keyBytes, len, result, stampSets ? clock() : 0, false);
    }
    return result;
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
      if (shared) (out as SharedCacheInfo).oversizeSkips = info.oversizeSkips ?? 0;
      return out;
    },
    cacheClear: (): void => {
      generation++;
      pending.clear();
      store.clear();
    },
  };
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
 * @throws {RangeError} If `maxSize`, `ttl`, `maxKeySize` or `maxValueSize` is out of range.
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
    if (context === undefined) return wrap(fn, fn.name, opts, false);
    return wrap(fn, String(context.name), opts, true);
  }
  return decorate as CacheDecorator<CacheInfo>;
}
