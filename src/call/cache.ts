/**
 * The `cache()` factory: wraps a function (or decorates a method, TC39 standard
 * decorators) with a cache built from parts: the key codec, the tiers (local store, and a
 * remote one with `remote`), the counters, in-process single-flight and the loader (the
 * miss path; see `loader.ts`). The hit path is `cached` → {@linkcode CachePath.lookup} →
 * the store.
 *
 * @module
 */

import { KeyWriter } from "../codec/key_codec.ts";
import {
  Backend,
  type CacheOptions,
  type ResolvedOptions,
  resolveOptions,
} from "../options/options.ts";
import { ABSENT, type Flights, hitOf, INVALID, MISS, peeked, type Store } from "../store/store.ts";
import { createStore, type StoreParts } from "../store/engine.ts";
import { describe } from "../options/_validate.ts";
import {
  anonymousName,
  type DecorationSite,
  decorationSite,
  defaultSharedName,
} from "../options/_naming.ts";
import { register } from "../ops/registry.ts";
import { mayReadContext } from "./context.ts";
import { RemoteLink } from "../remote/_remote_link.ts";
import { type Computation, hold, isThenable, release } from "./computation.ts";
import { InFlight } from "./in_flight.ts";
import { type Counters, FileCounters, LocalCounters } from "./counters.ts";
import { DISPOSED, RemoteTiers, Tiers } from "./tiers.ts";
import { FeatureLoader, Loader } from "./loader.ts";
import { processTags, reachTags, stillValid, type TagClock, Tagged } from "./tags.ts";
import { sizer } from "./sizes.ts";
import type {
  AnyFunction,
  CacheControls,
  CacheDecorator,
  CachedFunction,
  CacheInfo,
  SharedCacheInfo,
} from "./types.ts";

const memoryWriter = new KeyWriter(256, false);
const sharedWriter = new KeyWriter(256, true);

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

/** The cached functions made here, for {@linkcode cacheControls}. */
const cachedFunctions = new WeakSet<AnyFunction>();

/**
 * The hit path of one cache: encodes a call's key and looks it up; a miss goes to the
 * loader. One class for every cache, so that every cache's calls go to the same methods
 * (one call target per call site, which the JIT inlines).
 */
class CachePath {
  /** The local store ({@linkcode DISPOSED} once the cache is disposed). */
  store: Store;

  /**
   * @param store The local store.
   * @param loader The miss path.
   * @param writer The key writer reused by every call (a nested call gets its own).
   * @param valueKeys Whether keys are values only (shared or remote: no identity keys).
   * @param keyFn The `key` option.
   * @param withThis Whether the key includes `this` (a decorated method).
   */
  constructor(
    store: Store,
    readonly loader: Loader,
    readonly writer: KeyWriter,
    readonly valueKeys: boolean,
    readonly keyFn: AnyFunction | undefined,
    readonly withThis: boolean,
  ) {
    this.store = store;
  }

  /**
   * The array that the cached function lends the arguments of a call in (see `lending`), or
   * `undefined`. It is filled again by the next call: the miss path, which keeps a call's
   * arguments, gets a copy ({@linkcode CachePath.owned}).
   */
  lent: unknown[] | undefined = undefined;

  /** `args`, or a copy of them when they are in the lent array. */
  owned(args: unknown[]): unknown[] {
    return args === this.lent ? args.slice() : args;
  }

  /** Encodes the key and looks it up: the value, a computation to join, or MISS after
   * holding the miss's key in the loader's `missHeld` (read before user code runs). */
  lookup(self: unknown, args: unknown[]): unknown {
    // Encode the key into the reused writer; a nested encode (a getter calling a cached
    // function) gets a writer of its own. The writer stays busy through the lookup, which
    // may read an injected clock (user code).
    const w = this.writer.busy ? new KeyWriter(64, this.valueKeys) : this.writer;
    w.busy = true;
    let hit: unknown;
    try {
      this.encode(w, self, args);
      hit = this.store.get(w);
    } finally {
      w.busy = false;
    }
    return hit !== MISS ? hit : this.loader.afterMiss(w.buf, w.len, self, this.owned(args));
  }

  /** The miss of a call whose key was not looked up by its bytes (found absent, or invalid,
   * by its arguments): its key is encoded for the miss path; `before` runs while the writer
   * is held. */
  missEncoded(self: unknown, args: unknown[], before?: (w: KeyWriter) => void): unknown {
    const w = this.writer.busy ? new KeyWriter(64, this.valueKeys) : this.writer;
    w.busy = true;
    try {
      // A plain object found absent by the values the store read: its key from them.
      if (this.store.writeAbsentKey?.(args, w) !== true) this.encode(w, self, args);
      before?.(w);
    } finally {
      w.busy = false;
    }
    return this.loader.afterMiss(w.buf, w.len, self, this.owned(args));
  }

  encode(w: KeyWriter, self: unknown, args: unknown[]): void {
    const keyFn = this.keyFn;
    if (keyFn === undefined) w.call(self, this.withThis, args);
    else w.call(self, this.withThis, [keyFn.apply(self, args)]);
  }

  /** The key of `args` held apart (give it back with `release`): for the entry controls,
   * which run user code (the store's clock, the value codec) while using it. */
  heldKeyOf(self: unknown, args: unknown[]): Computation {
    const w = this.writer.busy ? new KeyWriter(64, this.valueKeys) : this.writer;
    w.busy = true;
    try {
      this.encode(w, self, args);
    } finally {
      w.busy = false;
    }
    return hold(w.buf, w.len, undefined);
  }
}

/**
 * The hit path of a store indexed by arguments (the TypeScript one, `Store.argsIndexed`)
 * for a cache that keys on its arguments alone (no `this`, no `key` option): a call of
 * primitive arguments is answered without encoding its key; the others, and a key the store
 * knows is absent, take the encoded path. Other stores never pay for the check.
 */
class ArgsPath extends CachePath {
  override lookup(self: unknown, args: unknown[]): unknown {
    const v = this.store.getArgs!(args);
    // Absent (its miss is counted): the key is encoded for the miss path, not looked up.
    if (v === ABSENT) return this.missEncoded(self, args);
    return v !== MISS ? v : super.lookup(self, args);
  }
}

/**
 * The hit path of a cache whose entries may carry tags: an entry whose tags were
 * invalidated after it was stored is dropped and the call misses; a valid one moves its
 * epoch forward, so that its next hit compares one number again.
 */
class TaggedPath extends CachePath {
  /**
   * @param base The hit path without tags.
   * @param clock The clock its entries are checked against.
   * @param counters The cache's counters (an invalid hit is a miss).
   * @param dropInvalid Whether an invalid entry is deleted at once (memory stores). A
   * shared one stays until replaced or evicted: deleting it would end the flight of the
   * process recomputing it.
   */
  constructor(
    base: CachePath,
    readonly clock: TagClock,
    readonly counters: Counters,
    readonly dropInvalid: boolean,
  ) {
    super(base.store, base.loader, base.writer, base.valueKeys, base.keyFn, base.withThis);
    this.byArgs = base instanceof ArgsPath;
    this.lent = base.lent;
  }

  /** Whether the store answers this cache's calls by their arguments (see `ArgsPath`). */
  readonly byArgs: boolean;

  override lookup(self: unknown, args: unknown[]): unknown {
    if (this.byArgs) {
      // The store checks the entry's tags (its epoch is kept beside it).
      const v = this.store.getArgsTagged!(args, this.clock);
      if (v === ABSENT) return this.missEncoded(self, args);
      // Invalid: its hit was counted by `getArgsTagged`, as `get` counts it below.
      if (v === INVALID) return this.missEncoded(self, args, (w) => this.dropInvalidEntry(w));
      if (v !== MISS) return v;
    }
    const w = this.writer.busy ? new KeyWriter(64, this.valueKeys) : this.writer;
    w.busy = true;
    let hit: unknown;
    try {
      this.encode(w, self, args);
      hit = this.store.get(w);
      if (hit instanceof Tagged) {
        if (stillValid(hit, this.clock)) return hitOf(hit.v);
        this.dropInvalidEntry(w);
        hit = MISS;
      }
    } finally {
      w.busy = false;
    }
    return hit !== MISS ? hit : this.loader.afterMiss(w.buf, w.len, self, this.owned(args));
  }

  /** Drops an entry found invalid (memory stores) and counts its hit as a miss. */
  dropInvalidEntry(w: KeyWriter): void {
    if (this.dropInvalid) this.store.delete(w);
    this.counters.invalidHit();
  }
}

/** The counters of a cache: in its store's file (shared), else here. */
function countersOf(file: ConstructorParameters<typeof FileCounters>[0] | undefined): Counters {
  return file === undefined ? new LocalCounters() : new FileCounters(file);
}

/** The parts of one cache, assembled from its options. */
interface Assembly {
  cacheName: string;
  shared: boolean;
  link: RemoteLink | undefined;
  tiers: Tiers;
  flights: Flights | undefined;
  counters: Counters;
  loader: Loader;
  path: CachePath;
  /** Whether `cacheInfo()` reports `staleHits` and `refreshes`. */
  counted: boolean;
  /** The clock of tag invalidations its entries are checked against. */
  tagClock: TagClock;
  /** The `tags` option. */
  tagsOf: AnyFunction | undefined;
  /** The engine that holds its entries. */
  engine: StoreParts["engine"];
  /** The directory of a shared cache's file. */
  dir: string | undefined;
  /** Stops `invalidateTags()` from reaching this cache's remote tier. */
  unreach: () => void;
  /** Whether a memory byte budget is set (`cacheInfo()` reports it). */
  budget: boolean;
}

/** Builds the parts of the cache of `fn` (`name`) from `opts`. */
function assemble(
  fn: AnyFunction,
  name: string,
  opts: ResolvedOptions,
  isMethod: boolean,
  site: DecorationSite,
): Assembly {
  const shared = opts.backend === Backend.Shared;
  // A shared or remote cache keys on values (identity means nothing in another process).
  const valueKeys = shared || opts.remote !== undefined;
  // The store reads time when it needs it: from an injected clock (checked), else its own.
  const clock = opts.clock === undefined ? undefined : checkedClock(opts.clock);
  // A shared cache's name (given, or the default one) names its file and its listing.
  const cacheName = valueKeys ? (opts.name ?? defaultSharedName(fn, name, site)) : name;
  const parts = createStore(opts, name, cacheName, clock);
  const counters = countersOf(parts.fileCounters);
  // A shared cache's entries are checked against its directory's clock, which every
  // process shares; invalidateTags() reaches it for as long as the process lives.
  const tagClock: TagClock = parts.tagClock ?? processTags;
  if (parts.tagClock !== undefined) reachTags(parts.tagClock);
  const link = opts.remote === undefined ? undefined : new RemoteLink(
    opts.remote,
    cacheName,
    opts.remoteTimeout,
    {
      // Another instance changed these keys: computations under way no longer store their
      // results, and the local copies go.
      // (Their signals do not abort: their callers still get their results.)
      drop(key: Uint8Array): void {
        if (tiers.local === DISPOSED) return;
        loader.detachKey(key, key.length, undefined);
        const k = hold(key, key.length, undefined);
        tiers.local.delete(k);
        release(k);
      },
      dropAll(): void {
        if (tiers.local === DISPOSED) return;
        loader.detachAll(undefined);
        tiers.local.clear();
      },
      // Another host invalidated tags: the local entries carrying them are misses here.
      dropTags(tags: readonly string[]): void {
        tagClock.invalidate(tags);
      },
    },
  );
  // A memory byte budget sizes each entry (the shared file counts its own bytes).
  const sized = !shared && opts.maxBytes !== undefined ? sizer(opts.sizeOf) : undefined;
  const tiers = link === undefined
    ? new Tiers(parts.store, sized)
    : new RemoteTiers(parts.store, link, opts.ttl, sized);
  // invalidateTags() reaches the other hosts through the link's bus.
  const unreach = link === undefined
    ? () => {}
    : reachTags({ invalidate: (tags) => link.invalidateTags(tags) });
  const flights = parts.flights;
  const tagsOf = opts.tags as AnyFunction | undefined;
  const base = {
    fn,
    name,
    tiers,
    counters,
    inFlight: new InFlight(),
    readsContext: mayReadContext(String(fn)),
    flightTimeout: opts.flightTimeout,
    tagClock,
    tagsOf,
  };
  const swr = opts.staleWhileRevalidate !== undefined;
  const timeout = opts.timeout;
  // A plain cache gets the plain loader: none of the features' code runs on its misses.
  const featured = swr || timeout !== undefined || flights !== undefined || link !== undefined ||
    opts.ttlJitter !== undefined || opts.staleIfError !== undefined || sized !== undefined;
  const loader: Loader = featured
    ? new FeatureLoader({
      ...base,
      stale: swr,
      timeout,
      flights,
      ttl: opts.ttl,
      ttlJitter: opts.ttlJitter,
      staleWindow: opts.staleWhileRevalidate,
      staleIfError: opts.staleIfError,
      errorBackoff: opts.errorBackoff,
      now: clock ?? (() => performance.now()),
    })
    : new Loader(base);
  const keyFn = opts.key as AnyFunction | undefined;
  // A method keys on `this` (by identity). A shared cache cannot key on identity, so a
  // shared method with a `key` option keys on what `key` returns alone.
  const withThis = isMethod && !(valueKeys && keyFn !== undefined);
  // A store indexed by arguments answers calls keyed on their arguments alone directly.
  const byArgs = parts.store.argsIndexed === true && !withThis && keyFn === undefined;
  const path = new (byArgs ? ArgsPath : CachePath)(
    parts.store,
    loader,
    valueKeys ? sharedWriter : memoryWriter,
    valueKeys,
    keyFn,
    withThis,
  );
  const counted = swr || timeout !== undefined || opts.staleIfError !== undefined;
  return {
    cacheName,
    shared,
    link,
    tiers,
    flights,
    counters,
    loader,
    // Entries of a shared or remote cache may come with tags from another process or host.
    path: valueKeys ? new TaggedPath(path, tagClock, counters, !shared) : path,
    counted,
    tagClock,
    tagsOf,
    engine: parts.engine,
    dir: parts.store.dir,
    unreach,
    budget: sized !== undefined,
  };
}

/** The counters and sizes of a cache, as `cacheInfo()` reports them. */
function infoOf(a: Assembly): CacheInfo {
  const info = a.counters.apply(a.tiers.local.info());
  const out: CacheInfo = {
    hits: info.hits,
    misses: info.misses,
    maxSize: info.maxSize,
    currentSize: info.currentSize,
  };
  if (a.counted) {
    out.staleHits = info.staleHits ?? 0;
    out.refreshes = info.refreshes ?? 0;
  }
  if (a.link !== undefined) {
    out.remoteHits = a.link.hits;
    out.remoteErrors = a.link.errors;
  }
  if (a.budget) {
    out.bytes = info.bytes ?? 0;
    out.maxBytes = info.maxBytes ?? 0;
    out.oversizeSkips = info.oversizeSkips ?? 0;
  }
  if (a.shared) {
    const s = out as SharedCacheInfo;
    s.oversizeSkips = info.oversizeSkips ?? 0;
    s.bytes = info.bytes ?? 0;
    s.maxBytes = info.maxBytes ?? 0;
  }
  return out;
}

/** The controls of a cache (`cacheInfo`, `cacheClear`, the entry controls, dispose);
 * `unregister` takes it out of the registry. */
function controlsOf(a: Assembly, unregister: () => void): CacheControls<AnyFunction> {
  const { tiers, loader, flights } = a;
  return {
    cacheInfo: (): CacheInfo => infoOf(a),
    cacheClear: (): void => {
      loader.detachAll("cacheClear");
      tiers.clear();
      a.counters.clear();
    },
    cacheGet(this: unknown, ...args: unknown[]): unknown {
      const k = a.path.heldKeyOf(this, args);
      try {
        const v = loader.entryOf(tiers.local.peek(k));
        return v === MISS ? undefined : peeked(v);
      } finally {
        release(k);
      }
    },
    cacheSet(this: unknown, value: unknown, ...args: unknown[]): void {
      const k = a.path.heldKeyOf(this, args);
      k.epoch = a.tagClock.epoch;
      if (a.tagsOf !== undefined) k.tags = loader.optionTags(this, args);
      // A computation under way for this key, here or in another process, no longer stores
      // its result.
      loader.detachKey(k.buf, k.len, undefined);
      flights?.end(k);
      if (isThenable(value)) {
        // The entry it replaces goes now (in every tier), so that calls made meanwhile
        // join the Promise; its value is stored once it resolves.
        tiers.delete(k);
        k.since = tiers.stamp();
        k.args = args;
        loader.register(k, value).catch(() => {});
        return;
      }
      if (k.tags === undefined || k.tags.length === 0) {
        tiers.set(k, value, loader.sawPromise, loader.newTtl(), args);
      } else {
        tiers.setTagged(k, value, loader.sawPromise, loader.newTtl(), k.tags, k.epoch, args);
      }
      release(k);
    },
    cacheDelete(this: unknown, ...args: unknown[]): boolean {
      const k = a.path.heldKeyOf(this, args);
      loader.detachKey(k.buf, k.len, "cacheDelete");
      const removed = tiers.delete(k);
      release(k);
      return removed;
    },
    [Symbol.dispose](): void {
      if (tiers.local === DISPOSED) return;
      loader.detachAll("disposing the cache");
      unregister();
      a.unreach();
      a.path.store = DISPOSED;
      tiers.close();
    },
  };
}

function wrap(
  fn: AnyFunction,
  name: string,
  opts: ResolvedOptions,
  isMethod: boolean,
  site: DecorationSite,
): CachedFunction<AnyFunction, CacheInfo> {
  const a = assemble(fn, name, opts, isMethod, site);
  const loader = a.loader;
  let path = a.path;
  // The first entry stored with tags turns the hit path into the one that checks tags.
  a.tiers.onTagged = () => {
    if (!(path instanceof TaggedPath)) {
      path = a.path = new TaggedPath(path, a.tagClock, a.counters, !a.shared);
    }
  };
  // The frame of this function sits between every two levels of a memoized recursion, so
  // it stays small (see RELIABILITY.md, hole 9).
  const called = function (this: unknown, ...args: unknown[]): unknown {
    const r = path.lookup(this, args);
    if (r !== MISS) return r;
    try {
      return loader.endMiss(loader.missHeld, fn.apply(this, args));
    } catch (e) {
      return loader.failMiss(e);
    }
  };
  const quiet = opts.key === undefined && opts.clock === undefined;
  const cached = lending(fn.length, called, a, fn, quiet);
  Object.defineProperty(cached, "name", { value: name, configurable: true });
  Object.defineProperty(cached, "length", { value: fn.length, configurable: true });
  const unregister = register(cached, {
    name: a.cacheName || anonymousName(site),
    backend: opts.backend,
    strategy: opts.strategy,
    engine: a.engine,
    info: () => infoOf(a),
    clear: () => controls.cacheClear(),
    evictions: () => a.tiers.local.info().evictions ?? 0,
    dir: a.dir,
  });
  const controls = controlsOf(a, () => unregister());
  cachedFunctions.add(cached);
  return Object.assign(cached, controls) as CachedFunction<AnyFunction, CacheInfo>;
}

/**
 * The cached function of `fn`: for one of one, two or three declared parameters, one that lends
 * a call of that many number or string arguments an array of its own for the lookup,
 * where `called` gets a new array from its rest parameter on every call: a hit then
 * allocates nothing (measured in turns: a hit of two ints 1.2-1.3x faster on both engines,
 * see bench/RESULTS.md; of three ints 1.1-1.3x, CHANGELOG.md). A call of that many arguments of other types gets a new array
 * (the lent one keeps the last arguments until the next such call, and a cache must not
 * keep an object alive); a call of another number of arguments goes to `called` (through
 * `apply`: one more call, 8-24% of an object argument's hit when every object call took
 * it). The miss path keeps a copy ({@linkcode CachePath.owned}), made before any user code
 * runs; the function runs with the call's own arguments.
 *
 * Only for a cache whose lookup runs no user code (no `key` option, no injected clock):
 * nothing can call the function again while the array is lent, so the lookup needs no
 * flag and no `finally` (a frame that stays as small as `called`'s, between every two
 * levels of a memoized recursion; and a function small enough to be inlined into its
 * callers along with the hit path: emptying the array after each lookup made a hit ~20%
 * slower, measured).
 *
 * @param arity `fn.length`.
 * @param called The cached function with a rest parameter.
 * @param a The cache's parts (`a.path` changes when the first entry with tags is stored;
 * each path keeps the lent array, see {@linkcode TaggedPath}).
 * @param fn The function cached.
 * @param quiet Whether the lookup runs no user code.
 */
function lending(
  arity: number,
  called: AnyFunction,
  a: Assembly,
  fn: AnyFunction,
  quiet: boolean,
): AnyFunction {
  if (!quiet || arity < 1 || arity > 3) return called;
  const lent: unknown[] = new Array(arity).fill(0);
  a.path.lent = lent;
  const loader = a.loader;
  if (arity === 1) {
    return function (this: unknown, x: unknown): unknown {
      if (arguments.length !== 1) return called.apply(this, arguments as unknown as unknown[]);
      let r: unknown;
      if (typeof x === "number" || typeof x === "string") {
        lent[0] = x;
        r = a.path.lookup(this, lent);
      } else {
        r = a.path.lookup(this, [x]);
      }
      if (r !== MISS) return r;
      try {
        return loader.endMiss(loader.missHeld, fn.call(this, x));
      } catch (e) {
        return loader.failMiss(e);
      }
    };
  }
  if (arity === 3) {
    return function (this: unknown, x: unknown, y: unknown, z: unknown): unknown {
      if (arguments.length !== 3) return called.apply(this, arguments as unknown as unknown[]);
      let r: unknown;
      if (
        (typeof x === "number" || typeof x === "string") &&
        (typeof y === "number" || typeof y === "string") &&
        (typeof z === "number" || typeof z === "string")
      ) {
        lent[0] = x;
        lent[1] = y;
        lent[2] = z;
        r = a.path.lookup(this, lent);
      } else {
        r = a.path.lookup(this, [x, y, z]);
      }
      if (r !== MISS) return r;
      try {
        return loader.endMiss(loader.missHeld, fn.call(this, x, y, z));
      } catch (e) {
        return loader.failMiss(e);
      }
    };
  }
  return function (this: unknown, x: unknown, y: unknown): unknown {
    if (arguments.length !== 2) return called.apply(this, arguments as unknown as unknown[]);
    let r: unknown;
    if (
      (typeof x === "number" || typeof x === "string") &&
      (typeof y === "number" || typeof y === "string")
    ) {
      lent[0] = x;
      lent[1] = y;
      r = a.path.lookup(this, lent);
    } else {
      r = a.path.lookup(this, [x, y]);
    }
    if (r !== MISS) return r;
    try {
      return loader.endMiss(loader.missHeld, fn.call(this, x, y));
    } catch (e) {
      return loader.failMiss(e);
    }
  };
}

/**
 * The controls of a cached function, typed: for a method decorated with `@cache`, whose
 * declared type a decorator cannot change (`users.find.cacheInfo()` does not type-check).
 *
 * @typeParam F The cached function's type.
 * @typeParam I Its counters: {@linkcode CacheInfo}, or {@linkcode SharedCacheInfo} for a
 * shared cache.
 * @param fn A function made by {@linkcode cache} (a decorated method, read from its object).
 * @returns `fn` itself, typed with its controls.
 * @throws {TypeError} If `fn` is not a cached function.
 *
 * @example The controls of a decorated method
 * ```ts
 * import { cache, cacheControls } from "@warp/cache";
 * import assert from "node:assert/strict";
 *
 * class Users {
 *   @cache({ maxSize: 128 })
 *   find(id: number): { id: number } {
 *     return { id };
 *   }
 * }
 * const users = new Users();
 * users.find(1);
 * users.find(1);
 * assert.equal(cacheControls(users.find).cacheInfo().hits, 1);
 * ```
 */
export function cacheControls<F extends AnyFunction, I extends CacheInfo = CacheInfo>(
  fn: F,
): CacheControls<F, I> {
  if (typeof fn !== "function" || !cachedFunctions.has(fn)) {
    throw new TypeError(
      `Cannot get cache controls: cacheControls takes a function made by cache(): received ${
        describe(fn)
      }`,
    );
  }
  return fn as unknown as CacheControls<F, I>;
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
    // The site is part of a shared cache's default name, and names a function without a
    // name in caches(); a named memory cache needs none.
    const site = ((opts.backend === Backend.Shared || opts.remote !== undefined) &&
        opts.name === undefined) || (!isMethod && fn.name === "")
      ? decorationSite(isMethod)
      : NO_SITE;
    return wrap(fn, isMethod ? String(context.name) : fn.name, opts, isMethod, site);
  }
  return decorate as CacheDecorator<CacheInfo>;
}
