/**
 * The loader: what a call does after its lookup missed. It joins the computation of the
 * key under way in this process, or starts one (the function runs, its result is stored);
 * {@linkcode FeatureLoader} adds what the options ask for: stale values and background
 * refreshes (`staleWhileRevalidate`), computations of other processes (the shared
 * backend's flights), the remote tier read first, and bounds (`timeout`). A plain cache
 * gets the plain {@linkcode Loader}, which runs none of that.
 *
 * @module
 */

import { bytesToKeyString } from "../codec/key_codec.ts";
import { type FlightClaim, type Flights, isPromisedEntry, MISS, peeked } from "../store/store.ts";
import type { AnyFunction } from "./types.ts";
import { active, CallContext, runInContext } from "./context.ts";
import { Computation, free, hold, isThenable, release } from "./computation.ts";
import { boundedJoin, type InFlight, sameKey } from "./in_flight.ts";
import type { Counters } from "./counters.ts";
import { DISPOSED, type Tiers } from "./tiers.ts";
import { checkTags, mergeTags, stillValid, type TagClock, Tagged } from "./tags.ts";

const EMPTY = new Computation(new Uint8Array(0));

/** The error of a call made (or waiting) after its cache was disposed. */
export function disposedError(): Error {
  return new Error("Cannot use a cache after it was disposed");
}

/** What a loader is made of. */
export interface LoaderParts {
  /** The cached function. */
  fn: AnyFunction;
  /** Its name, for messages. */
  name: string;
  tiers: Tiers;
  counters: Counters;
  inFlight: InFlight;
  /** Whether a computation may read its context after an `await`. */
  readsContext: () => boolean;
  /** Most ms a computation is waited for (`Infinity`: no bound). */
  flightTimeout: number;
  /** The clock of tag invalidations that this cache's entries are checked against. */
  tagClock: TagClock;
  /** The `tags` option, if set. */
  tagsOf: AnyFunction | undefined;
}

/** The miss path of a plain cache. */
export class Loader {
  /** Whether a call returned a Promise: entries set by hand then hit as Promises too, and
   * misses may run in an async context. */
  sawPromise: boolean;
  /** Whether no call of the function has returned yet (its first outermost call may
   * return a Promise). */
  firstCall = true;
  /** The computation held by the last {@linkcode Loader.afterMiss} that returned MISS: the
   * caller runs the function, then ends it with {@linkcode Loader.endMiss}. */
  missHeld: Computation = EMPTY;
  readonly fn: AnyFunction;
  readonly name: string;
  readonly tiers: Tiers;
  readonly counters: Counters;
  readonly inFlight: InFlight;
  readonly readsContext: () => boolean;
  readonly flightTimeout: number;
  readonly tagClock: TagClock;
  readonly tagsOf: AnyFunction | undefined;

  constructor(p: LoaderParts) {
    this.fn = p.fn;
    this.name = p.name;
    this.tiers = p.tiers;
    this.counters = p.counters;
    this.inFlight = p.inFlight;
    this.readsContext = p.readsContext;
    this.flightTimeout = p.flightTimeout;
    this.tagClock = p.tagClock;
    this.tagsOf = p.tagsOf;
    this.sawPromise = p.fn.constructor?.name === "AsyncFunction";
  }

  /**
   * After a lookup of `buf[0..len)` missed: a computation to join, or MISS after holding
   * the key in {@linkcode Loader.missHeld} as the current computation (the caller runs the
   * function), or the Promise of an async miss started here.
   */
  afterMiss(buf: Uint8Array, len: number, self: unknown, args: unknown[]): unknown {
    // First: the lookup's claim of the key's flight (before any user code runs).
    const claimed = this.takeClaim();
    if (this.inFlight.size > 0) {
      const r = this.joinInFlight(buf, len, claimed);
      if (r !== MISS) return r;
    }
    const held = hold(buf, len, undefined);
    held.owner = this;
    held.claimed = claimed;
    held.args = args;
    // The tag barrier: invalidations from now on make this computation's entry a miss.
    held.epoch = this.tagClock.epoch;
    if (this.tagsOf !== undefined) held.tags = this.optionTags(self, args);
    const r = this.beforeCompute(held, self, args);
    if (r !== MISS) return r;
    held.parent = active.current as Computation | undefined;
    active.current = held;
    // A function that may return a Promise (seen one, or its first outermost call) runs
    // here; a synchronous one in the caller, whose frame stays small.
    if (this.sawPromise || (this.firstCall && held.parent === undefined)) {
      return this.asyncMiss(held, self, args);
    }
    this.missHeld = held;
    return MISS;
  }

  /** The result of the computation of `buf[0..len)` under way in this process, joined
   * (the lookup's `claimed` flight released), or MISS when there is none or it was
   * abandoned. Apart from `afterMiss`, which the JIT inlines into the lookup only while it
   * stays small. */
  joinInFlight(buf: Uint8Array, len: number, claimed: FlightClaim | undefined): unknown {
    const joined = this.inFlight.find(buf, len);
    if (joined === undefined) return MISS;
    const r = this.join(joined, buf, len);
    if (r !== MISS && claimed === "owner") this.dropClaim(buf, len);
    return r;
  }

  /** The claim of the key's flight made by the lookup that just missed, if the store
   * claims on a miss (none in a plain cache). */
  takeClaim(): FlightClaim | undefined {
    return undefined;
  }

  /** Releases the flight of `buf[0..len)` that the lookup claimed, for a call that does
   * not compute (none in a plain cache). */
  dropClaim(_buf: Uint8Array, _len: number): void {}

  /** A call of a key whose computation `joined` is under way: its result (a hit), or MISS
   * when that computation is older than `flightTimeout` and is abandoned (detached). */
  join(joined: Computation, _buf: Uint8Array, _len: number): unknown {
    // A computation one of whose tags was invalidated since it started: its result is a
    // miss for calls made from now on (README, "Tags"), so it is detached (without an
    // abort: its callers still get its value) and this call computes anew.
    // (An epoch below 0 was taken before a shared tag clock was first read in this
    // process: another process may have invalidated a tag since, so it is checked too.)
    if (
      (joined.epoch !== this.tagClock.epoch || joined.epoch < 0) && this.invalidated(joined)
    ) {
      this.detach(joined, undefined);
      return MISS;
    }
    if (this.abandoned(joined)) return MISS;
    this.counters.join();
    return this.bounded(joined);
  }

  /** Whether `joined`, which calls have found under way for longer than `flightTimeout`
   * (from the first call that joined it), is abandoned now: detached, its signal aborted,
   * so that the call computes anew. */
  abandoned(joined: Computation): boolean {
    const now = performance.now();
    if (joined.startedAt === 0) {
      joined.startedAt = now;
      return false;
    }
    if (now - joined.startedAt <= this.flightTimeout) return false;
    this.detach(joined, "flightTimeout");
    return true;
  }

  /** Whether a tag of the computation `c` (the `tags` option's, or added by its context
   * so far) was invalidated after it started. */
  invalidated(c: Computation): boolean {
    const tags = mergeTags(c.tags, c.ctx?.tags);
    return tags !== undefined && this.tagClock.invalidSince(tags, c.epoch);
  }

  /** Before `held` is computed here: another answer (stale value, another process's
   * result), or MISS. None in a plain cache. */
  beforeCompute(_held: Computation, _self: unknown, _args: unknown[]): unknown {
    return MISS;
  }

  /** The tags that the `tags` option gives these arguments. */
  optionTags(self: unknown, args: unknown[]): readonly string[] {
    return checkTags("Cannot tag the entry", "the tags option", this.tagsOf!.apply(self, args));
  }

  /** An entry read by `peek` or `peekStale`: MISS when its tags were invalidated since it
   * was stored, else the hit's form of its value. */
  entryOf(raw: unknown): unknown {
    if (!(raw instanceof Tagged)) return raw;
    return this.tagClock.invalidSince(raw.tags, raw.at, raw.hashes) ? MISS : raw.v;
  }

  /** Runs the function for `held`, in its async context when that may be read. */
  call(held: Computation, self: unknown, args: unknown[]): unknown {
    if (this.readsContext()) {
      return runInContext(held.ctx ??= new CallContext(undefined), this.fn, self, args);
    }
    return Reflect.apply(this.fn, self, args);
  }

  /** {@linkcode Loader.call} with `held` as the synchronous computation under way. */
  callAsCurrent(held: Computation, self: unknown, args: unknown[]): unknown {
    const parent = active.current;
    active.current = held;
    try {
      return this.call(held, self, args);
    } finally {
      active.current = parent;
    }
  }

  /** A miss of a function that may return a Promise. */
  asyncMiss(held: Computation, self: unknown, args: unknown[]): unknown {
    try {
      return this.endMiss(held, this.call(held, self, args));
    } catch (e) {
      return this.failMiss(e);
    }
  }

  /** Stores the result of a miss (or starts settling a Promise), frees its key and makes
   * its parent the current computation (last: a throw before leaves it to `failMiss`). */
  endMiss(held: Computation, result: unknown): unknown {
    const parent = held.parent;
    this.firstCall = false;
    if (isThenable(result)) {
      const joined = this.settle(held, result);
      active.current = parent;
      return joined;
    }
    this.storeResult(held, result, false);
    this.endComputation(held);
    active.current = parent;
    return result;
  }

  /**
   * A miss whose function (or store) threw: it is the current computation (every cached call
   * nested in it made its parent current again, on return and on throw); its parent is now,
   * its flight is released, and its key is not reused (the throw may have cut a store
   * operation short).
   */
  failMiss(error: unknown): unknown {
    const held = active.current as Computation;
    active.current = held.parent;
    this.releaseFlight(held);
    if (held.ctx !== undefined) held.ctx.live = false;
    return this.failedNow(held, error);
  }

  /** A synchronous failure of the computation of `held`: rethrown (a
   * {@linkcode FeatureLoader} with `staleIfError` may answer with a stale value). */
  failedNow(_held: Computation, error: unknown): unknown {
    throw error;
  }

  /** A failure of the async computation of `held` (still holding its key): rethrown (a
   * {@linkcode FeatureLoader} with `staleIfError` may resolve with a stale value). */
  failed(_held: Computation, reason: unknown): unknown {
    throw reason;
  }

  /** Makes the Promise `result` the computation of `held`, joinable by other calls;
   * returns the caller's view of it. */
  settle(held: Computation, result: PromiseLike<unknown>): Promise<unknown> {
    this.register(held, result);
    return this.bounded(held);
  }

  /** Makes the Promise `result` the computation of `held`, joinable by other calls, and
   * stored when it resolves (`cacheSet` of a Promise too); returns it. */
  register(held: Computation, result: PromiseLike<unknown>): Promise<unknown> {
    this.sawPromise = true;
    held.joined = this.track(held, Promise.resolve(result), () => true);
    // Detached while it ran synchronously: no call joins it.
    if (!held.detached) this.inFlight.add(held);
    return held.joined;
  }

  /**
   * `result` as the computation of `held` (registered in flight): when it resolves, its
   * value is stored unless the computation was detached meanwhile; either way (a store
   * that throws too) the computation ends. `promised()` says whether the value is an async
   * result.
   */
  track(
    held: Computation,
    result: Promise<unknown>,
    promised: () => boolean,
  ): Promise<unknown> {
    return result.then(
      (value) => {
        try {
          if (this.inFlight.take(held)) this.storeResult(held, value, promised());
        } finally {
          this.endComputation(held);
        }
        return value;
      },
      (reason) => {
        this.inFlight.take(held);
        try {
          return this.failed(held, reason);
        } finally {
          this.endComputation(held);
        }
      },
    );
  }

  /** A caller's view of the computation `c` (bounded by `timeout` in a
   * {@linkcode FeatureLoader}). */
  bounded(c: Computation): Promise<unknown> {
    return c.joined!;
  }

  /** Stores a computation's result, unless its context says not to (`setTtl(0)`). */
  storeResult(held: Computation, value: unknown, promised: boolean): void {
    if (held.detached) return;
    const ctx = held.ctx;
    const own = ctx?.ttl;
    if (own === 0) return;
    // Tags merged only where the context added some: a call the JIT never sees made is
    // not inlined, and the miss path of a cache without tags stays within its budget.
    const ctxTags = ctx?.tags;
    const tags = ctxTags === undefined && held.tags === undefined
      ? undefined
      : mergeTags(held.tags, ctxTags);
    this.tiers.write(held, value, promised, own ?? this.newTtl(), tags);
  }

  /** The own TTL (ms) of an entry stored now without one from its context: `undefined`,
   * the store's (a {@linkcode FeatureLoader} adds `ttlJitter`). */
  newTtl(): number | undefined {
    return undefined;
  }

  /** Releases the cross-process flight of `held` (none in a plain cache). */
  releaseFlight(_held: Computation): void {}

  /** Ends a computation: releases its flight and frees its key. */
  endComputation(held: Computation): void {
    this.releaseFlight(held);
    free(held);
  }

  /** Detaches the computation under way for the key `buf[0..len)`, if any (see
   * {@linkcode Loader.detach}). */
  detachKey(buf: Uint8Array, len: number, why: string | undefined): void {
    if (active.current !== undefined) this.detachRunning(buf, len, why);
    if (this.inFlight.size === 0) return;
    const c = this.inFlight.find(buf, len);
    if (c !== undefined) this.detach(c, why);
  }

  /** Detaches the computation `c` (its result is not stored) and, with `why`, aborts its
   * signal. */
  detach(c: Computation, why: string | undefined): void {
    if (!this.inFlight.take(c)) return;
    if (why !== undefined) c.ctx?.detach(why);
    // Its flight ends now, so that the next computation of the key in this process can
    // own one (a flight names the handle, not the computation).
    this.releaseFlight(c);
  }

  /** Detaches every computation under way. */
  detachAll(why: string | undefined): void {
    if (active.current !== undefined) this.detachRunning(undefined, 0, why);
    for (const c of this.inFlight.all()) this.detach(c, why);
  }

  /**
   * Detaches this cache's computations that are running synchronously now (the call was
   * made from inside them: a function that sets, deletes or clears while it computes), of
   * the key `buf[0..len)` or, without `buf`, all of them: they are not in flight yet (an
   * async one registers when its function returns), so only `active` knows them.
   */
  detachRunning(buf: Uint8Array | undefined, len: number, why: string | undefined): void {
    for (let c = active.current as Computation | undefined; c !== undefined; c = c.parent) {
      if (c.owner !== this || c.detached) continue;
      if (buf !== undefined && !sameKey(c, buf, len)) continue;
      c.detached = true;
      if (why !== undefined) (c.ctx ??= new CallContext(undefined)).detach(why);
    }
  }

  /** An entry as a hit returns it: a Promise when the function returns Promises. */
  hitForm(entry: unknown): unknown {
    if (isPromisedEntry(entry)) return entry.promise;
    return this.sawPromise ? Promise.resolve(entry) : entry;
  }
}

/** What a {@linkcode FeatureLoader} adds to a {@linkcode Loader}'s parts. */
export interface FeatureParts extends LoaderParts {
  /** Whether a stale window is on (`staleWhileRevalidate`). */
  stale: boolean;
  /** `timeout` (ms), if set. */
  timeout: number | undefined;
  /** Cross-process single-flight (the shared backend), if any. */
  flights: Flights | undefined;
  /** The cache's `ttl` (ms), if set. */
  ttl: number | undefined;
  /** `ttlJitter` (ms), if set (with `ttl`). */
  ttlJitter: number | undefined;
  /** `staleWhileRevalidate` (ms), if set. */
  staleWindow: number | undefined;
  /** `staleIfError` (ms), if set. */
  staleIfError: number | undefined;
  /** `errorBackoff` (ms), set with `staleIfError`. */
  errorBackoff: number | undefined;
  /** The cache's clock (ms), for back-offs. */
  now: () => number;
}

/** The miss path of a cache with a stale window, a timeout, flights or a remote tier. */
export class FeatureLoader extends Loader {
  readonly stale: boolean;
  readonly timeout: number | undefined;
  readonly flights: Flights | undefined;
  readonly ttl: number | undefined;
  readonly ttlJitter: number | undefined;
  readonly staleWindow: number | undefined;
  readonly staleIfError: number | undefined;
  readonly errorBackoff: number;
  readonly now: () => number;
  /** Keys whose computation failed (with `staleIfError`), until when (ms, by `now`) they
   * back off. */
  readonly #backoff = new Map<string, number>();

  constructor(p: FeatureParts) {
    super(p);
    this.stale = p.stale;
    this.timeout = p.timeout;
    this.flights = p.flights;
    this.ttl = p.ttl;
    this.ttlJitter = p.ttlJitter;
    this.staleWindow = p.staleWindow;
    this.staleIfError = p.staleIfError;
    this.errorBackoff = p.errorBackoff ?? 0;
    this.now = p.now;
    // The store's lookups claim on a miss; `afterMiss` takes each claim.
    this.flights?.claimOnMiss?.();
  }

  override takeClaim(): FlightClaim | undefined {
    return this.flights?.takeClaim?.();
  }

  override dropClaim(buf: Uint8Array, len: number): void {
    const k = hold(buf, len, undefined);
    this.flights!.release(k);
    release(k);
  }

  /** The claim of the flight of `held`: the one its lookup made, else a new one. */
  claimOf(held: Computation): FlightClaim {
    const c = held.claimed;
    if (c === undefined) return this.flights!.claim(held, this.sawPromise);
    held.claimed = undefined;
    return c;
  }

  override joinInFlight(
    buf: Uint8Array,
    len: number,
    claimed: FlightClaim | undefined,
  ): unknown {
    if (claimed === "owner") {
      const joined = this.inFlight.find(buf, len);
      if (joined !== undefined && joined.flight) {
        // A computation of this process that owned the key's flight, which the lookup
        // could claim anew: a cacheDelete, cacheClear or cacheSet in another process ended
        // it (a live flight of this process is "local"). It is detached as those detach a
        // computation here (its result is not stored; README, "Controls"), without an abort
        // (README, `cacheContext()`), and this call computes under the flight it claimed
        // (a handle has one flight word per key: the old one must not release it).
        joined.flight = false;
        this.detach(joined, undefined);
        return MISS;
      }
    }
    return super.joinInFlight(buf, len, claimed);
  }

  override join(joined: Computation, buf: Uint8Array, len: number): unknown {
    if (joined.ctx?.refresh === true) {
      // A refresh is abandoned as any computation is: this call starts another (README,
      // "A computation nobody waits for any more"), else one that never settles would hold
      // the key for the whole stale window.
      if (this.abandoned(joined)) return MISS;
      // A refresh under way: the stale value at once while in its window; past it, the
      // call waits for the refresh (and gets the stale value on a timeout).
      const k = hold(buf, len, undefined);
      const entry = this.entryOf(this.tiers.local.peekStale(k, this.staleWindow));
      release(k);
      if (entry !== MISS) {
        this.counters.staleHit(false);
        return this.hitForm(entry);
      }
      // A call waits for it: its failure, answered stale, answers a call.
      joined.ctx.awaited = true;
    }
    return super.join(joined, buf, len);
  }

  override beforeCompute(held: Computation, self: unknown, args: unknown[]): unknown {
    // A "local" claim may be stale: the computation of this process that owned the flight
    // was just detached by this call (its tags invalidated, or abandoned after
    // flightTimeout), which ended the flight. Claimed again, so that the computation that
    // replaces it holds the flight and other processes wait for it.
    if (held.claimed === "local") held.claimed = undefined;
    // A flight that the lookup claimed is this computation's until it ends.
    const looked = held.claimed !== undefined;
    if (held.claimed === "owner") held.flight = true;
    if (this.tiers.remote) held.since = this.tiers.stamp();
    if (this.#backoff.size > 0) {
      const r = this.backedOff(held);
      if (r !== MISS) return r;
    }
    if (this.stale) {
      const raw = this.tiers.local.peekStale(held, this.staleWindow);
      const entry = this.entryOf(raw);
      if (entry !== MISS) {
        this.counters.staleHit(false);
        this.refresh(held, peeked(entry), self, args, raw instanceof Tagged ? raw : undefined);
        return this.hitForm(entry);
      }
    }
    if (this.flights === undefined) return MISS;
    const claim = this.claimOf(held);
    // Another process may have stored the key between this process's lookup and its
    // claim (its whole flight fitting in between): look again before computing (a claim
    // made by the lookup looked again already).
    if (claim === "owner" && !looked) {
      held.flight = true;
      const entry = this.entryOf(this.tiers.local.peek(held));
      if (entry !== MISS) {
        this.counters.join();
        this.endComputation(held);
        return this.hitForm(entry);
      }
    }
    if (claim === "owner" || claim === "none") return MISS;
    // A synchronous caller never blocks on a computation of its own process (it could
    // never end while the thread waits).
    if (claim === "local" && !this.sawPromise) return MISS;
    if (this.sawPromise) return this.awaitFlight(held, self, args);
    return this.waitSync(held, self, args);
  }

  /** A key whose computation failed within `errorBackoff`: its stale value, without
   * calling the function (a stale hit); else MISS. */
  backedOff(held: Computation): unknown {
    const pkey = held.pkey ??= bytesToKeyString(held.buf, held.len);
    const until = this.#backoff.get(pkey);
    if (until === undefined) return MISS;
    if (this.now() >= until) {
      this.#backoff.delete(pkey);
      return MISS;
    }
    const entry = this.entryOf(this.tiers.local.peekStale(held, this.staleIfError));
    if (entry === MISS) return MISS;
    this.counters.staleHit(false);
    // (Releases the flight that the lookup claimed.)
    this.endComputation(held);
    return this.hitForm(entry);
  }

  /** With `staleIfError`: the entry of `held` stored less than `ttl + staleIfError` ago,
   * to answer a failed computation with (a stale hit; the key backs off), else MISS. */
  recover(held: Computation, answers = true): unknown {
    // A disposed cache has no stale value: its callers get the computation's own error.
    if (this.staleIfError === undefined || this.tiers.local === DISPOSED) return MISS;
    const entry = this.entryOf(this.tiers.local.peekStale(held, this.staleIfError));
    if (this.errorBackoff > 0) {
      const pkey = held.pkey ??= bytesToKeyString(held.buf, held.len);
      if (this.#backoff.size >= 4096) this.#pruneBackoff();
      this.#backoff.set(pkey, this.now() + this.errorBackoff);
    }
    if (entry === MISS) return MISS;
    // A stale answer is counted where a call gets it (a refresh nobody waits for answers
    // nobody: its callers got the stale value at once, counted then).
    if (answers) this.counters.staleHit(true);
    return entry;
  }

  /** Drops the back-offs that ended (bounds the map: amortized O(1) a failure). */
  #pruneBackoff(): void {
    const now = this.now();
    for (const [k, until] of this.#backoff) if (until <= now) this.#backoff.delete(k);
  }

  override failedNow(held: Computation, error: unknown): unknown {
    const entry = this.recover(held);
    if (entry === MISS) throw error;
    return this.hitForm(entry);
  }

  override failed(held: Computation, reason: unknown): unknown {
    const ctx = held.ctx;
    const entry = this.recover(held, ctx?.refresh !== true || ctx.awaited);
    if (entry === MISS) throw reason;
    return peeked(entry);
  }

  /** A synchronous wait for another process's computation of `held`: its value (a hit),
   * or MISS (compute here), or a Promise when that computation turns out async. */
  waitSync(held: Computation, self: unknown, args: unknown[]): unknown {
    // Whether this function returns Promises is unknown until its first call returns.
    const untilAsync = this.firstCall && !this.sawPromise;
    const end = this.flights!.waitSync(held, this.flightTimeout, untilAsync);
    if (end === "closed") {
      free(held);
      throw disposedError();
    }
    if (end === "async") return this.awaitFlight(held, self, args);
    if (end === "owner") held.flight = true;
    if (end !== "done") return MISS;
    const entry = this.entryOf(this.tiers.local.peek(held));
    // Nothing stored: compute at once (every waiter does, rather than one after another).
    if (entry === MISS) return MISS;
    this.counters.join();
    free(held);
    return this.hitForm(entry);
  }

  /** Waits for another process's computation of `held` without blocking the thread: the
   * Promise of its value, or of this process's own computation when that one failed, was
   * not stored, its process died or `flightTimeout` passed. */
  awaitFlight(held: Computation, self: unknown, args: unknown[]): Promise<unknown> {
    held.joined = this.flightResult(held, self, args);
    this.inFlight.add(held);
    return this.bounded(held);
  }

  async flightResult(
    held: Computation,
    self: unknown,
    args: unknown[],
  ): Promise<unknown> {
    try {
      const end = await this.flights!.wait(held, this.flightTimeout);
      if (end === "closed") throw disposedError();
      if (end === "done") {
        const entry = this.entryOf(this.tiers.local.peek(held));
        if (entry !== MISS) {
          this.counters.join();
          this.inFlight.take(held);
          return peeked(entry);
        }
      } else if (end === "owner") {
        held.flight = true;
      }
      // This process computes the key.
      if (this.tiers.remote) held.since = this.tiers.stamp();
      const r = this.callAsCurrent(held, self, args);
      const promised = isThenable(r);
      if (promised) this.sawPromise = true;
      const value = await r;
      if (this.inFlight.take(held)) this.storeResult(held, value, promised);
      return value;
    } catch (e) {
      this.inFlight.take(held);
      return this.failed(held, e);
    } finally {
      this.endComputation(held);
    }
  }

  /** Starts one background refresh of a stale key (unless another process refreshes it):
   * the function runs in a microtask with the stale value in its context; its result
   * replaces the stale entry, its failure keeps it until its window ends. */
  refresh(
    held: Computation,
    stale: unknown,
    self: unknown,
    args: unknown[],
    staleTagged?: Tagged,
  ): void {
    const flights = this.flights;
    if (flights !== undefined) {
      const claim = this.claimOf(held);
      if (claim === "wait" || claim === "local") {
        free(held);
        return;
      }
      held.flight = claim === "owner";
    }
    this.counters.refresh();
    const ctx = held.ctx = new CallContext(stale);
    ctx.refresh = true;
    // Its tags, so that a caller that times out is not given it once they are invalidated.
    ctx.staleTagged = staleTagged;
    let promised = false;
    const run = Promise.resolve().then(() => {
      const r = this.callAsCurrent(held, self, args);
      if (isThenable(r)) {
        promised = this.sawPromise = true;
        if (held.flight) flights!.markAsync(held);
      }
      return r;
    });
    held.joined = this.track(held, run, () => promised);
    // A failed refresh keeps the stale value; only callers that joined it see the error.
    held.joined.catch(() => {});
    this.inFlight.add(held);
  }

  /** With a remote tier, a computation of an async function looks there first. */
  override call(held: Computation, self: unknown, args: unknown[]): unknown {
    if (!this.tiers.remote || !this.sawPromise) return super.call(held, self, args);
    return this.fetchOrCompute(held, held.ctx ??= new CallContext(undefined), self, args);
  }

  async fetchOrCompute(
    held: Computation,
    ctx: CallContext,
    self: unknown,
    args: unknown[],
  ): Promise<unknown> {
    const found = await this.tiers.fetch(held.buf.slice(0, held.len), held.since);
    if (found !== undefined && ctx.live) {
      ctx.fromRemote = true;
      if (found.ttl !== undefined) ctx.setTtl(found.ttl);
      // Its tags (those its computation added too) go with the local copy.
      if (found.tags.length > 0) ctx.tag(...found.tags);
      // The local miss was answered without running the function: a hit.
      if (!ctx.refresh) this.counters.join();
      return found.value;
    }
    return await this.computeHere(held, self, args);
  }

  /** Runs the function itself for `held` (not the remote tier), as the current
   * computation. */
  computeHere(held: Computation, self: unknown, args: unknown[]): unknown {
    const parent = active.current;
    active.current = held;
    try {
      return super.call(held, self, args);
    } finally {
      active.current = parent;
    }
  }

  override register(held: Computation, result: PromiseLike<unknown>): Promise<unknown> {
    if (held.flight) this.flights!.markAsync(held);
    return super.register(held, result);
  }

  override bounded(c: Computation): Promise<unknown> {
    const timeout = this.timeout;
    if (timeout === undefined) return c.joined!;
    // A refresh carries the stale value it refreshes.
    const hasStale = c.ctx?.refresh === true;
    const stale = c.ctx?.stale;
    const staleTagged = c.ctx?.staleTagged as Tagged | undefined;
    return boundedJoin(c, timeout, (resolve, reject) => {
      // An invalidated entry is never served stale (README, "Tags"), a timeout included.
      if (hasStale && (staleTagged === undefined || stillValid(staleTagged, this.tagClock))) {
        this.counters.staleHit(true);
        resolve(stale);
      } else {
        reject(this.timeoutError());
      }
    });
  }

  timeoutError(): DOMException {
    return new DOMException(
      `${
        this.name || "(anonymous)"
      } did not settle within the cache's timeout of ${this.timeout} ms`,
      "TimeoutError",
    );
  }

  /** Stores a computation's result, unless it lost its flight (a delete, clear or set in
   * another process) or its context says not to. */
  override storeResult(held: Computation, value: unknown, promised: boolean): void {
    // A store whose flights settle on set checks the ownership itself, under its lock, and
    // ends the flight (the remote tier, written besides, needs the answer first).
    if (
      held.flight && (this.tiers.remote || this.flights!.settlesOnSet !== true) &&
      !this.flights!.owns(held)
    ) {
      return;
    }
    if (this.#backoff.size > 0) {
      this.#backoff.delete(held.pkey ?? bytesToKeyString(held.buf, held.len));
    }
    super.storeResult(held, value, promised);
  }

  /** `ttl` plus a uniform random part in `[0, ttlJitter)`, with `ttlJitter`. */
  override newTtl(): number | undefined {
    const jitter = this.ttlJitter;
    return jitter === undefined ? undefined : this.ttl! + Math.random() * jitter;
  }

  override releaseFlight(held: Computation): void {
    if (!held.flight) return;
    held.flight = false;
    // A disposed store released its flights when it closed.
    if (this.tiers.local !== DISPOSED) this.flights!.release(held);
  }
}
