/**
 * The `cache()` factory: wraps a function (or decorates a method, TC39 standard
 * decorators) with a cache whose store is chosen by the options.
 *
 * @module
 */

import { bytesToKeyString, KeyWriter } from "../codec/key_codec.ts";
import {
  Backend,
  type CacheOptions,
  type ResolvedOptions,
  resolveOptions,
} from "../options/options.ts";
import { type KeyBytes, MISS, type Store } from "../store/store.ts";
import { createStore } from "../store/engine.ts";
import { describe } from "../options/_validate.ts";
import { type DecorationSite, decorationSite, defaultSharedName } from "../options/_naming.ts";
import { register } from "../ops/registry.ts";
import { type CacheContext, CallContext } from "./context.ts";
import { AsyncLocalStorage } from "node:async_hooks";
import { RemoteLink } from "../remote/_remote_link.ts";

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
  /** Stale values returned: by `staleWhileRevalidate`, or by `timeout` while a refresh
   * was under way (counted in `hits` too). Present when either option is set. */
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

/**
 * One computation under way (a miss, a background refresh or a wait for another process):
 * its key bytes, held from before `fn` runs until its result is stored, its context and
 * the Promise its callers share.
 */
class HeldKey implements KeyBytes {
  len = 0;
  /** Address of `buf`, taken once per buffer for stores that read keys by pointer. */
  #ptr: Deno.PointerValue | undefined = undefined;
  /** The pending-map key, when it was made. */
  pkey: string | undefined = undefined;
  /** The computation that was current when this one started (synchronous nesting). */
  parent: HeldKey | undefined = undefined;
  /** Its context, made when asked for (or up front for async functions and refreshes). */
  ctx: CallContext | undefined = undefined;
  /** The result its callers share, once `fn` returned a Promise (or for a refresh or a
   * wait for another process). */
  joined: Promise<unknown> | undefined = undefined;
  /** Whether this process owns the key's flight in a shared file. */
  flight = false;
  /** With a remote tier: the link's stamp of when this computation started. */
  since = 0;
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

/** The synchronous computation under way (innermost), for `cacheContext()`. */
let current: HeldKey | undefined = undefined;

/** The context of async computations, across `await`s. */
const asyncContext = new AsyncLocalStorage<CallContext>();

/**
 * The context of the computation under way, inside a cached function (also after an
 * `await` in an async function, and in a background refresh); `undefined` outside any.
 *
 * A function that returns a Promise without being declared `async` gets its context in
 * callbacks that run later (`then`) from its second call on, once the cache has seen it
 * return a Promise; its synchronous part always has it.
 *
 * @typeParam T The cached function's (resolved) return type, for `stale`.
 * @returns The context, or `undefined` when no cached computation is under way.
 *
 * @example Cache for as long as the server says
 * ```ts
 * import { cache, cacheContext } from "@warp/cache";
 *
 * const getJson = cache({ ttl: 60_000 })(async (url: string): Promise<unknown> => {
 *   const ctx = cacheContext()!; // always there inside a cached function
 *   const res = await fetch(url, { signal: ctx.signal });
 *   const maxAge = /max-age=(\d+)/.exec(res.headers.get("cache-control") ?? "")?.[1];
 *   if (maxAge !== undefined) ctx.setTtl(Number(maxAge) * 1000);
 *   return await res.json();
 * });
 * ```
 */
export function cacheContext<T = unknown>(): CacheContext<T> | undefined {
  const held = current;
  if (held !== undefined) return (held.ctx ??= new CallContext(undefined)) as CacheContext<T>;
  return asyncContext.getStore() as CacheContext<T> | undefined;
}

const EMPTY_HELD = new HeldKey(new Uint8Array(0));

function disposed(): never {
  throw new Error("Cannot use a cache after it was disposed");
}

/** The store of a disposed cache: every use throws. */
const DISPOSED: Store = {
  get: disposed,
  set: disposed,
  peek: disposed,
  peekStale: disposed,
  delete: disposed,
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

/** Gives a computation's key back to the pool; its context no longer stores anything. */
function freeHeld(held: HeldKey): void {
  const ctx = held.ctx;
  if (ctx !== undefined) {
    ctx.live = false;
    held.ctx = undefined;
  }
  held.joined = undefined;
  held.parent = undefined;
  keyPool.push(held);
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

/** Runs `fn` in `ctx`, so that `cacheContext()` finds it after an `await`. */
function callInContext(ctx: CallContext, fn: AnyFunction, self: unknown, args: unknown[]): unknown {
  return asyncContext.run(ctx, Reflect.apply, fn, self, args);
}

function wrap(
  fn: AnyFunction,
  name: string,
  opts: ResolvedOptions,
  isMethod: boolean,
  site: DecorationSite,
): CachedFunction<AnyFunction, CacheInfo> {
  const shared = opts.backend === Backend.Shared;
  // A shared or remote cache keys on values (identity means nothing in another process).
  const valueKeys = shared || opts.remote !== undefined;
  // The store reads time when it needs it: from an injected clock (checked), else its own.
  const clock = opts.clock === undefined ? undefined : checkedClock(opts.clock);
  // A shared cache's name (given, or the default one) names its file and its listing.
  const cacheName = valueKeys ? (opts.name ?? defaultSharedName(fn, name, site)) : name;
  let store: Store = createStore(opts, name, cacheName, clock);
  const flights = store.flights;
  const keyFn = opts.key as AnyFunction | undefined;
  // A method keys on `this` (by identity). A shared cache cannot key on identity, so a
  // shared method with a `key` option keys on what `key` returns alone.
  const withThis = isMethod && !(valueKeys && keyFn !== undefined);
  const mainWriter = valueKeys ? sharedWriter : memoryWriter;
  const pending = new Map<string, HeldKey>();
  /** The key held by the last `lookup` that missed. */
  let missHeld: HeldKey = EMPTY_HELD;
  /** Whether a call returned a Promise: entries set by hand then hit as Promises too, and
   * misses run in an async context. */
  let sawPromise = fn.constructor?.name === "AsyncFunction";
  /** Whether no call of `fn` has returned yet (its first outermost call runs in an async
   * context: it may return a Promise). */
  let firstCall = true;
  const swr = opts.staleWhileRevalidate !== undefined;
  const timeout = opts.timeout;
  const link = opts.remote === undefined ? undefined : new RemoteLink(
    opts.remote,
    cacheName,
    opts.remoteTimeout,
    {
      // Another instance changed these keys: drop the local copies, and detach the
      // computations under way (their results are not stored).
      drop(key: Uint8Array): void {
        if (store === DISPOSED) return;
        if (pending.size > 0) detach(bytesToKeyString(key, key.length), undefined);
        const k = holdKey(key, key.length, undefined);
        store.delete(k);
        freeHeld(k);
      },
      dropAll(): void {
        if (store === DISPOSED) return;
        for (const pkey of [...pending.keys()]) detach(pkey, undefined);
        store.clear();
      },
    },
  );

  /** A new context for the computation of `held`. */
  function newContext(held: HeldKey, stale: unknown): CallContext {
    const ctx = new CallContext(stale);
    if (link !== undefined) {
      ctx.remoteKey = held.buf.slice(0, held.len);
      ctx.remoteSince = held.since;
    }
    held.ctx = ctx;
    return ctx;
  }

  /** With a remote tier, a computation of an async function first looks there: runs in
   * the computation's context. */
  async function fetchOrCompute(this: unknown, ...args: unknown[]): Promise<unknown> {
    const ctx = asyncContext.getStore() as CallContext;
    const found = await link!.fetch(ctx.remoteKey!, ctx.remoteSince);
    if (found !== undefined && ctx.live) {
      ctx.fromRemote = true;
      if (found.ttl !== undefined) ctx.setTtl(found.ttl);
      // The local miss was answered without running the function: a hit.
      if (!ctx.refresh) store.countJoin();
      return found.value;
    }
    return await fn.apply(this, args);
  }

  /** What a computation runs: `fn`, or with a remote tier (once `fn` is known to return
   * Promises) the remote lookup first. */
  function computation(): AnyFunction {
    return link !== undefined && sawPromise ? fetchOrCompute : fn;
  }

  function timeoutError(): DOMException {
    return new DOMException(
      `${name || "(anonymous)"} did not settle within the cache's timeout of ${timeout} ms`,
      "TimeoutError",
    );
  }

  /** A caller's view of a computation: after `timeout` ms it gets the stale value being
   * refreshed, if any, else rejects with a `TimeoutError` (the computation goes on). */
  function bounded(held: HeldKey): Promise<unknown> {
    const p = held.joined!;
    if (timeout === undefined) return p;
    // A refresh carries the stale value it refreshes.
    const hasStale = held.ctx?.refresh === true;
    const stale = held.ctx?.stale;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        if (hasStale) {
          store.countStaleHit(true);
          resolve(stale);
        } else {
          reject(timeoutError());
        }
      }, timeout);
      p.then((v) => {
        clearTimeout(timer);
        resolve(v);
      }, (e) => {
        clearTimeout(timer);
        reject(e);
      });
    });
  }

  /** Stores a computation's result, unless its context says not to (`setTtl(0)`) or it
   * lost its flight (a delete or clear in another process). */
  function storeResult(held: HeldKey, value: unknown, promised: boolean): void {
    const ctx = held.ctx;
    const ttl = ctx?.ttl;
    if (ttl === 0) return;
    if (held.flight && !flights!.owns(held)) return;
    if (link === undefined) {
      store.set(held, value, promised, ttl);
      return;
    }
    // An invalidation made or received since the computation started: stored nowhere.
    const key = held.buf.subarray(0, held.len);
    if (!link.mayStore(key, held.since)) return;
    store.set(held, value, promised, ttl);
    if (ctx?.fromRemote !== true) {
      const remoteTtl = ttl ?? opts.ttl;
      link.write(key, value, promised, remoteTtl === Infinity ? undefined : remoteTtl, held.since);
    }
  }

  /** Releases the flight of `held`, if it owns one. */
  function releaseFlight(held: HeldKey): void {
    if (!held.flight) return;
    held.flight = false;
    // A disposed store released its flights when it closed.
    if (store !== DISPOSED) flights!.release(held);
  }

  /** Ends a computation: releases its flight and frees its key. */
  function endComputation(held: HeldKey): void {
    releaseFlight(held);
    freeHeld(held);
  }

  /**
   * Makes `result` the computation of `held` (registered under `pkey`): when it resolves,
   * its value is stored unless the computation was detached meanwhile (cacheClear,
   * cacheDelete, cacheSet); either way the computation ends. `promised()` says whether the
   * value is an async result.
   */
  function track(
    held: HeldKey,
    pkey: string,
    result: Promise<unknown>,
    promised: () => boolean,
  ): Promise<unknown> {
    return result.then(
      (value) => {
        if (pending.get(pkey) === held) {
          pending.delete(pkey);
          storeResult(held, value, promised());
        }
        endComputation(held);
        return value;
      },
      (reason) => {
        if (pending.get(pkey) === held) pending.delete(pkey);
        endComputation(held);
        throw reason;
      },
    );
  }

  /** Registers `result` as the key's computation (see `track`). */
  function settle(held: HeldKey, pkey: string, result: PromiseLike<unknown>): HeldKey {
    sawPromise = true;
    held.joined = track(held, pkey, Promise.resolve(result), () => true);
    pending.set(pkey, held);
    return held;
  }

  /** Encodes the key and looks it up: the value, a pending computation to join, or MISS
   * after holding the miss's key in `missHeld` (read before user code runs). */
  function lookup(self: unknown, args: unknown[]): unknown {
    // Encode the key into the reused writer; a nested encode (a getter calling a cached
    // function) gets a writer of its own. The writer stays busy through the lookup, which
    // may read an injected clock (user code).
    const w = mainWriter.busy ? new KeyWriter(64, valueKeys) : mainWriter;
    w.busy = true;
    let hit: unknown;
    try {
      encode(w, self, args);
      hit = store.get(w);
    } finally {
      w.busy = false;
    }
    return hit !== MISS ? hit : joinOrHold(w.buf, w.len, self, args);
  }

  function encode(w: KeyWriter, self: unknown, args: unknown[]): void {
    if (keyFn === undefined) w.call(self, withThis, args);
    else w.call(self, withThis, [keyFn.apply(self, args)]);
  }

  /** The key of `args` held apart (give it back to the pool when done): for the entry
   * controls, which run user code (the store's clock, the value codec) while using it. */
  function heldKeyOf(self: unknown, args: unknown[]): HeldKey {
    const w = mainWriter.busy ? new KeyWriter(64, valueKeys) : mainWriter;
    w.busy = true;
    try {
      encode(w, self, args);
    } finally {
      w.busy = false;
    }
    return holdKey(w.buf, w.len, undefined);
  }

  /** After a store miss: a pending computation to join, a stale value, a value computed by
   * another process, or MISS with the key held in `missHeld` and made the current
   * computation. Kept out of `lookup` so that the hit path stays small enough to be
   * inlined. */
  function joinOrHold(buf: Uint8Array, len: number, self: unknown, args: unknown[]): unknown {
    let pkey: string | undefined;
    if (pending.size > 0) {
      pkey = bytesToKeyString(buf, len);
      const joined = pending.get(pkey);
      if (joined !== undefined) {
        if (joined.ctx?.refresh === true) {
          // A refresh under way: the stale value at once while in its window; past it, the
          // call waits for the refresh (and gets the stale value on a timeout).
          const k = holdKey(buf, len, pkey);
          const stale = store.peekStale(k);
          freeHeld(k);
          if (stale !== MISS) {
            store.countStaleHit();
            return sawPromise ? Promise.resolve(stale) : stale;
          }
        }
        store.countJoin();
        return bounded(joined);
      }
    }
    const held = holdKey(buf, len, pkey);
    if (link !== undefined) held.since = link.stamp();
    if (swr || flights !== undefined) {
      const r = staleOrFlight(held, self, args);
      if (r !== MISS) return r;
    }
    held.parent = current;
    current = held;
    // A function that may return a Promise (seen one, or its first outermost call) runs
    // here; a synchronous one in `cached`, whose frame stays small.
    if (sawPromise || (firstCall && held.parent === undefined)) return asyncMiss(held, self, args);
    missHeld = held;
    return MISS;
  }

  /** A miss with a stale window or flights: the stale value (starting a refresh), the
   * value another process computed, or MISS (this process computes, `held` still held). */
  function staleOrFlight(held: HeldKey, self: unknown, args: unknown[]): unknown {
    if (swr) {
      const stale = store.peekStale(held);
      if (stale !== MISS) {
        store.countStaleHit();
        refresh(held, stale, self, args);
        return sawPromise ? Promise.resolve(stale) : stale;
      }
    }
    if (flights === undefined) return MISS;
    const claim = flights.claim(held);
    if (claim === "owner") {
      held.flight = true;
      // Another process may have stored the key between this process's lookup and its
      // claim (its whole flight fitting in between): look again before computing.
      const value = store.peek(held);
      if (value !== MISS) {
        store.countJoin();
        endComputation(held);
        return sawPromise ? Promise.resolve(value) : value;
      }
    }
    if (claim !== "wait") return MISS;
    // Another process computes the key.
    if (sawPromise) {
      const pkey = held.pkey ??= bytesToKeyString(held.buf, held.len);
      held.joined = awaitFlight(held, pkey, self, args);
      pending.set(pkey, held);
      return bounded(held);
    }
    for (;;) {
      const end = flights.waitSync(held, timeout ?? Infinity);
      if (end === "owner") held.flight = true;
      if (end !== "done") return MISS;
      const value = store.peek(held);
      if (value !== MISS) {
        store.countJoin();
        freeHeld(held);
        return value;
      }
      // Its computation failed or was not stored: claim the key again.
      const again = flights.claim(held);
      if (again === "owner") held.flight = true;
      if (again !== "wait") return MISS;
    }
  }

  /** Waits for another process's computation of the key, then returns its value, or
   * computes the key here when that one failed or its process died. */
  async function awaitFlight(
    held: HeldKey,
    pkey: string,
    self: unknown,
    args: unknown[],
  ): Promise<unknown> {
    try {
      for (;;) {
        const end = await flights!.wait(held, timeout ?? Infinity);
        if (end === "timeout") throw timeoutError();
        if (end === "done") {
          const value = store.peek(held);
          if (value !== MISS) {
            store.countJoin();
            if (pending.get(pkey) === held) pending.delete(pkey);
            return value;
          }
          const again = flights!.claim(held);
          if (again === "wait") continue;
          held.flight = again === "owner";
        } else {
          held.flight = true;
        }
        // This process computes the key.
        if (link !== undefined) held.since = link.stamp();
        const ctx = newContext(held, undefined);
        const value = await callInContext(ctx, computation(), self, args);
        if (pending.get(pkey) === held) {
          pending.delete(pkey);
          storeResult(held, value, true);
        }
        return value;
      }
    } catch (e) {
      if (pending.get(pkey) === held) pending.delete(pkey);
      throw e;
    } finally {
      endComputation(held);
    }
  }

  /** Starts one background refresh of a stale key (unless another process refreshes it):
   * `fn` runs in a microtask with the stale value in its context; its result replaces the
   * stale entry, its failure keeps it until its window ends. */
  function refresh(held: HeldKey, stale: unknown, self: unknown, args: unknown[]): void {
    if (flights !== undefined) {
      const claim = flights.claim(held);
      if (claim === "wait") {
        freeHeld(held);
        return;
      }
      held.flight = claim === "owner";
    }
    store.countRefresh();
    const pkey = held.pkey ??= bytesToKeyString(held.buf, held.len);
    const ctx = newContext(held, stale);
    ctx.refresh = true;
    let promised = false;
    const run = Promise.resolve().then(() => {
      const r = callInContext(ctx, computation(), self, args);
      if (isThenable(r)) promised = sawPromise = true;
      return r;
    });
    held.joined = track(held, pkey, run, () => promised);
    // A failed refresh keeps the stale value; only callers that joined it see the error.
    held.joined.catch(() => {});
    pending.set(pkey, held);
  }

  /** Stores the result of a miss (or starts settling a Promise), frees its key and makes
   * its parent the current computation (last: a throw before leaves it to `failMiss`). */
  function endMiss(held: HeldKey, result: unknown): unknown {
    const parent = held.parent;
    firstCall = false;
    if (isThenable(result)) {
      const joined = bounded(
        settle(held, held.pkey ?? bytesToKeyString(held.buf, held.len), result),
      );
      current = parent;
      return joined;
    }
    storeResult(held, result, false);
    endComputation(held);
    current = parent;
    return result;
  }

  /**
   * A miss whose `fn` (or store) threw: it is the current computation (every cached call
   * nested in it made its parent current again, on return and on throw); its parent is now,
   * its flight is released, and its key is not reused (the throw may have cut a store
   * operation short).
   */
  function failMiss(error: unknown): never {
    const held = current!;
    current = held.parent;
    releaseFlight(held);
    if (held.ctx !== undefined) held.ctx.live = false;
    throw error;
  }

  /** A miss of a function that may return a Promise: `fn` runs in an async context of its
   * own, so that `cacheContext()` finds it after an `await`. */
  function asyncMiss(held: HeldKey, self: unknown, args: unknown[]): unknown {
    try {
      return endMiss(
        held,
        callInContext(held.ctx ?? newContext(held, undefined), computation(), self, args),
      );
    } catch (e) {
      return failMiss(e);
    }
  }

  /** Detaches the computation of `pkey` (its result is not stored) and aborts its signal. */
  function detach(pkey: string, why: string | undefined): void {
    const held = pending.get(pkey);
    if (held === undefined) return;
    pending.delete(pkey);
    if (why !== undefined) held.ctx?.detach(why);
    // Its flight ends now, so that the next computation of the key in this process can
    // own one (a flight names the handle, not the computation).
    releaseFlight(held);
  }

  // The frame of this function sits between every two levels of a memoized recursion, so
  // it stays small (see RELIABILITY.md, hole 9).
  const cached = function (this: unknown, ...args: unknown[]): unknown {
    const r = lookup(this, args);
    if (r !== MISS) return r;
    try {
      return endMiss(missHeld, fn.apply(this, args));
    } catch (e) {
      return failMiss(e);
    }
  };

  Object.defineProperty(cached, "name", { value: name, configurable: true });
  Object.defineProperty(cached, "length", { value: fn.length, configurable: true });
  const counted = swr || timeout !== undefined;
  const controls = {
    cacheInfo: (): CacheInfo => {
      const info = store.info();
      const out: CacheInfo = {
        hits: info.hits,
        misses: info.misses,
        maxSize: info.maxSize,
        currentSize: info.currentSize,
      };
      if (counted) {
        out.staleHits = info.staleHits ?? 0;
        out.refreshes = info.refreshes ?? 0;
      }
      if (link !== undefined) {
        out.remoteHits = link.hits;
        out.remoteErrors = link.errors;
      }
      if (shared) {
        const s = out as SharedCacheInfo;
        s.oversizeSkips = info.oversizeSkips ?? 0;
        s.bytes = info.bytes ?? 0;
        s.maxBytes = info.maxBytes ?? 0;
      }
      return out;
    },
    cacheClear: (): void => {
      for (const pkey of [...pending.keys()]) detach(pkey, "cacheClear");
      store.clear();
      link?.clear();
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
      detach(pkey, undefined);
      if (isThenable(value)) {
        if (link !== undefined) k.since = link.stamp();
        settle(k, pkey, value).joined!.catch(() => {});
        return;
      }
      store.set(k, value, sawPromise);
      link?.set(k.buf.subarray(0, k.len), value, sawPromise, opts.ttl);
      keyPool.push(k);
    },
    cacheDelete(this: unknown, ...args: unknown[]): boolean {
      const k = heldKeyOf(this, args);
      detach(bytesToKeyString(k.buf, k.len), "cacheDelete");
      const removed = store.delete(k);
      link?.delete(k.buf.subarray(0, k.len));
      keyPool.push(k);
      return removed;
    },
    [Symbol.dispose](): void {
      if (store === DISPOSED) return;
      const open = store;
      store = DISPOSED;
      for (const pkey of [...pending.keys()]) detach(pkey, "disposing the cache");
      unregister();
      open.close();
      void link?.close();
    },
  };
  const unregister = register(cached, {
    name: cacheName,
    backend: opts.backend,
    strategy: opts.strategy,
    info: controls.cacheInfo,
    clear: controls.cacheClear,
    evictions: () => store.info().evictions ?? 0,
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
    const site = (opts.backend === Backend.Shared || opts.remote !== undefined) &&
        opts.name === undefined
      ? decorationSite(isMethod)
      : NO_SITE;
    return wrap(fn, isMethod ? String(context.name) : fn.name, opts, isMethod, site);
  }
  return decorate as CacheDecorator<CacheInfo>;
}
