/**
 * The public types of cached functions: their counters ({@linkcode CacheInfo}), their
 * controls ({@linkcode CacheControls}) and the decorator's shape. A module of types only,
 * so that the parts of the call path and the registry share them without an import circle.
 *
 * @module
 */

/** Counters and sizes of a cache, from {@linkcode CacheControls.cacheInfo}. */
export interface CacheInfo {
  /** Calls answered from the cache (including calls that joined a pending computation). */
  hits: number;
  /** Calls that ran the function. */
  misses: number;
  /** Most entries kept (`Infinity` when unbounded). */
  maxSize: number;
  /** Entries held now. */
  currentSize: number;
  /** Stale values returned: by `staleWhileRevalidate`, by `timeout` while a refresh was
   * under way, and by `staleIfError` (counted in `hits` too when given without calling the
   * function; a failed miss that `staleIfError` answered counts in `misses`). Present when
   * one of these options is set. */
  staleHits?: number;
  /** Background refreshes started by `staleWhileRevalidate`. Present when `timeout` or
   * `staleWhileRevalidate` is set. */
  refreshes?: number;
  /** Local misses answered by the remote tier (counted in `hits` too). Present with
   * `remote`. */
  remoteHits?: number;
  /** Remote operations that failed or timed out (none of them failed a call). Present with
   * `remote`. */
  remoteErrors?: number;
  /** Bytes the entries hold (their sizes by `sizeOf`), at most `maxBytes`. Present with a
   * memory cache's `maxBytes` (and always for a shared cache: see
   * {@linkcode SharedCacheInfo}). */
  bytes?: number;
  /** The byte budget. Present with `maxBytes` (and for a shared cache). */
  maxBytes?: number;
  /** Results not stored because they were larger than the whole budget. Present with a
   * memory cache's `maxBytes` (and for a shared cache). */
  oversizeSkips?: number;
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

/**
 * The controls of a cached function (see {@linkcode CachedFunction}); for a decorated
 * method, whose declared type a decorator cannot change, `cacheControls(obj.method)` gives
 * them typed.
 *
 * @typeParam F The cached function's type.
 * @typeParam I Its counters: {@linkcode CacheInfo}, or {@linkcode SharedCacheInfo}.
 */
export interface CacheControls<F extends AnyFunction, I extends CacheInfo = CacheInfo> {
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
}

/** A cached function: `fn` with the same parameters, return type and `name`, plus cache
 * controls. */
export type CachedFunction<F extends AnyFunction, I extends CacheInfo = CacheInfo> =
  & F
  & CacheControls<F, I>;

/**
 * What `cache(options)` returns: call it with a function, or use it as a standard
 * (TC39) method decorator.
 */
export interface CacheDecorator<I extends CacheInfo = CacheInfo> {
  <F extends AnyFunction>(fn: F): CachedFunction<F, I>;
  <F extends AnyFunction>(method: F, context: ClassMethodDecoratorContext): CachedFunction<F, I>;
}
