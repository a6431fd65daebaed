/**
 * One computation of a cached function (a miss, a background refresh, or a wait for the
 * computation of another process): the key bytes it holds from before the function runs
 * until its result is stored, its context, the Promise its callers share and whether it
 * owns the key's cross-process flight. And the pool of their key buffers.
 *
 * @module
 */

import type { FlightClaim, KeyBytes } from "../store/store.ts";
import type { CallContext, ContextHolder } from "./context.ts";

/** A call waiting for a computation with a bound (`timeout`): settled by the computation,
 * or by its timer, after which the computation no longer refers to it. */
export interface TimedWaiter {
  resolve(value: unknown): void;
  reject(reason: unknown): void;
  timer: ReturnType<typeof setTimeout>;
}

/** One computation under way; see the module doc. */
export class Computation implements KeyBytes, ContextHolder {
  len = 0;
  /** Address of `buf`, taken once per buffer for stores that read keys by pointer. */
  #ptr: Deno.PointerValue | undefined = undefined;
  /** The key bytes as a string, once made (the back-off of `staleIfError` keys on it). */
  pkey: string | undefined = undefined;
  /** Whether it is the in-process single-flight's computation of its key. */
  pending = false;
  /** The hash of its key, while pending. */
  hash = 0;
  /** The next computation of the same hash bucket, while pending. */
  next: Computation | undefined = undefined;
  /** The computation that was current when this one started (synchronous nesting). */
  parent: Computation | undefined = undefined;
  /** Its context, made when asked for (or up front for async computations). */
  ctx: CallContext | undefined = undefined;
  /** The result its callers share, once it is a Promise. */
  joined: Promise<unknown> | undefined = undefined;
  /** Whether this process owns the key's flight in a shared file. */
  flight = false;
  /** The claim of the key's flight made by the lookup that missed (a shared store claims
   * on a miss), until the loader takes it. */
  claimed: FlightClaim | undefined = undefined;
  /** When a call first joined it (`performance.now()` ms; 0: none yet): one joined longer
   * ago than `flightTimeout` is abandoned by the next call of its key. */
  startedAt = 0;
  /** Calls waiting for it with a bound (`timeout`), once one did. */
  waiters: Set<TimedWaiter> | undefined = undefined;
  /** The tag clock's epoch when it started (its entry is invalid after a later
   * invalidation of one of its tags). */
  epoch = 0;
  /** Its tags from the `tags` option, if any. */
  tags: readonly string[] | undefined = undefined;
  /** The arguments of its call: they size its entry under a memory byte budget
   * (`maxBytes`), and spare the TypeScript store decoding its key (`KeyBytes.args`). */
  args: unknown[] | undefined = undefined;
  /** With a remote tier: the link's stamp of when it started (an invalidation after it
   * keeps its result from every tier). */
  since = 0;
  /** The loader whose miss it is (set when the miss starts), so that a detach made while
   * it runs synchronously finds it among the computations under way (`active`). */
  owner: unknown = undefined;
  /** Whether it was detached (`cacheDelete`, `cacheSet` of its key, `cacheClear`) while it
   * ran synchronously: its result is not stored, and no call joins it. */
  detached = false;

  constructor(public buf: Uint8Array) {}

  pointer(): Deno.PointerValue {
    return this.#ptr ?? (this.#ptr = Deno.UnsafePointer.of(this.buf));
  }
}

/**
 * Free key buffers. A miss takes one before `fn` runs and gives it back once its result is
 * stored, so every miss under way owns its bytes: a cached call made by user code at any
 * point in between (in `fn`, a `then` getter of the result, a Proxy trap, a getter walked by
 * the value codec) takes another one. A miss that throws never gives its buffer back (the
 * throw may have cut a store operation short); the pool makes a new one when empty.
 */
const pool: Computation[] = [];

/** A computation holding a copy of `src[0..len)`, its single-flight key `pkey` if known. */
export function hold(src: Uint8Array, len: number, pkey: string | undefined): Computation {
  let c = pool.pop();
  if (c === undefined || c.buf.length < len) c = fresh(len);
  const kb = c.buf;
  if (len <= 64) {
    for (let i = 0; i < len; i++) kb[i] = src[i]!;
  } else {
    copyLong(kb, src, len);
  }
  c.len = len;
  c.pkey = pkey;
  return c;
}

// The two rare paths of `hold` are functions of their own: the JIT inlines `hold` into the
// miss path only while it stays small.

/** A new computation whose buffer holds a key of `len` bytes. */
function fresh(len: number): Computation {
  return new Computation(new Uint8Array(Math.max(256, len * 2)));
}

/** Copies a long key `src[0..len)` into `kb`. */
function copyLong(kb: Uint8Array, src: Uint8Array, len: number): void {
  kb.set(src.subarray(0, len));
}

/** Gives a computation's key back to the pool; its context no longer stores anything. */
export function free(c: Computation): void {
  const ctx = c.ctx;
  if (ctx !== undefined) {
    ctx.live = false;
    c.ctx = undefined;
  }
  c.joined = undefined;
  c.parent = undefined;
  c.waiters = undefined;
  c.flight = false;
  c.claimed = undefined;
  c.tags = undefined;
  c.args = undefined;
  c.owner = undefined;
  c.detached = false;
  pool.push(c);
}

/** Gives back a key held for an entry control (no context, no flight). What the control
 * set on it (`cacheSet`: the tags of its entry) goes, so that the next holder of the
 * buffer (a miss or a control of any cache) does not inherit it. */
export function release(c: Computation): void {
  c.tags = undefined;
  c.args = undefined;
  pool.push(c);
}

/** Whether `value` is a thenable (a Promise or a Promise-like object). */
export function isThenable(value: unknown): value is PromiseLike<unknown> {
  return value !== null && (typeof value === "object" || typeof value === "function") &&
    typeof (value as { then?: unknown }).then === "function";
}
