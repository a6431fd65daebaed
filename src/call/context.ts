/**
 * The context of one computation of a cached function: {@linkcode CacheContext}, returned
 * by `cacheContext()` inside the function.
 *
 * @module
 */

import { AsyncLocalStorage } from "node:async_hooks";
import { describe } from "../options/_validate.ts";

/**
 * What `cacheContext()` returns inside a cached function: the context of the computation
 * under way (a miss, or a background refresh), also after an `await`.
 *
 * @typeParam T The function's (resolved) return type.
 */
export interface CacheContext<T = unknown> {
  /**
   * Aborted when the computation is detached from the cache by `cacheDelete` or
   * `cacheClear` for its key, by disposing the cache, or abandoned after `flightTimeout`
   * (its result will not be stored; pass it on to `fetch` to stop the work). Its reason is
   * a `DOMException` named `AbortError`.
   */
  readonly signal: AbortSignal;
  /**
   * Sets this entry's own TTL in ms, replacing the cache's `ttl` for it (longer or
   * shorter; also on a cache without `ttl`): for example from an HTTP
   * `Cache-Control: max-age`. `Infinity`: the entry never expires; `0`: the result is
   * returned but not stored. The last call before the result is stored wins; calls after
   * that do nothing.
   *
   * @param ms Milliseconds: 0, positive, or `Infinity`.
   * @throws {TypeError} If `ms` is not a number.
   * @throws {RangeError} If `ms` is negative or `NaN`.
   */
  setTtl(ms: number): void;
  /** The stale value that this computation refreshes (`staleWhileRevalidate`), else
   * `undefined`. */
  readonly stale: T | undefined;
  /**
   * Adds tags to the entry this computation will store (besides those of the `tags`
   * option): `invalidateTags(tag)` then makes it a miss. Calls after the result was
   * stored do nothing.
   *
   * @param tags Strings.
   * @throws {TypeError} If a tag is not a string.
   */
  tag(...tags: string[]): void;
}

const detachedReason = (why: string): DOMException =>
  new DOMException(`The cached computation was detached by ${why}`, "AbortError");

/** The {@linkcode CacheContext} of one computation. */
export class CallContext<T = unknown> implements CacheContext<T> {
  #controller: AbortController | undefined = undefined;
  #abortedBy: string | undefined = undefined;
  /** The entry's own TTL set by `setTtl`, or `undefined`. */
  ttl: number | undefined = undefined;
  /** Whether the result is still to be stored (`setTtl` has effect). */
  live = true;
  /** Whether this computation refreshes a stale entry (no call waits for it). */
  refresh = false;
  /** Whether a call waits for this refresh (it came past the stale window). */
  awaited = false;
  /** The encoded key, for a cache with a remote tier. */
  remoteKey: Uint8Array | undefined = undefined;
  /** The remote link's stamp of when the computation started (see `RemoteLink.stamp`). */
  remoteSince = 0;
  /** Whether the value came from the remote tier (not written back to it). */
  fromRemote = false;
  /** Tags added by `tag()`, or `undefined`. */
  tags: string[] | undefined = undefined;
  /** A refresh's stale entry as stored with tags (a `Tagged`), checked before a caller
   * that timed out is given `stale`; `undefined` for an entry without tags. */
  staleTagged: unknown = undefined;

  /**
   * @param stale The value refreshed, or `undefined`.
   */
  constructor(readonly stale: T | undefined) {}

  get signal(): AbortSignal {
    if (this.#controller === undefined) {
      this.#controller = new AbortController();
      if (this.#abortedBy !== undefined) this.#controller.abort(detachedReason(this.#abortedBy));
    }
    return this.#controller.signal;
  }

  setTtl(ms: number): void {
    if (typeof ms !== "number") {
      throw new TypeError(
        `Cannot set the entry's TTL: setTtl takes milliseconds (a number): received ${
          describe(ms)
        }`,
      );
    }
    if (!(ms >= 0)) {
      throw new RangeError(
        `Cannot set the entry's TTL: setTtl takes 0, a positive number of milliseconds or Infinity: received ${ms}`,
      );
    }
    if (this.live) this.ttl = ms;
  }

  tag(...tags: string[]): void {
    for (const t of tags) {
      if (typeof t !== "string") {
        throw new TypeError(
          `Cannot tag the entry: tag takes strings: received ${describe(t)}`,
        );
      }
      if (!t.isWellFormed()) {
        // The remote tier's frames and bus (UTF-8) could not carry it losslessly.
        throw new TypeError(
          `Cannot tag the entry: tag takes well-formed strings (no lone surrogate): received ${
            JSON.stringify(t)
          }`,
        );
      }
    }
    if (this.live) (this.tags ??= []).push(...tags);
  }

  /** Aborts the signal (now, or when it is first read): the computation was detached by
   * `why`. */
  detach(why: string): void {
    this.live = false;
    if (this.#abortedBy !== undefined) return;
    this.#abortedBy = why;
    this.#controller?.abort(detachedReason(why));
  }
}

/** What holds a computation's context: the synchronous computation under way makes its
 * context when `cacheContext()` first asks for it. */
export interface ContextHolder {
  ctx: CallContext | undefined;
}

/**
 * The synchronous computation under way (innermost), for `cacheContext()`; set and reset by
 * the call path around each synchronous part of a computation.
 */
export const active: { current: ContextHolder | undefined } = { current: undefined };

/** The context of async computations, across `await`s (see {@linkcode runInContext}). */
const asyncContext = new AsyncLocalStorage<CallContext>();

/** Whether `cacheContext()` was ever called in this process: from then on every async
 * computation runs in an async context (see {@linkcode mayReadContext}). */
let contextRead = false;

/**
 * Whether a computation of `fn` may read its context after an `await`: its source text
 * names `cacheContext`, or `cacheContext()` has been called in this process (from a
 * helper, say). Only then does a computation run in an async context, which costs about
 * 300 ns a miss (an `AsyncLocalStorage` run); see the README, "`cacheContext()`".
 */
export function mayReadContext(source: string): () => boolean {
  if (source.includes("cacheContext")) return () => true;
  return () => contextRead;
}

/**
 * Runs `fn` with `ctx` as the context that `cacheContext()` finds after an `await`.
 *
 * @returns What `fn` returns (or throws).
 */
export function runInContext(
  ctx: CallContext,
  // deno-lint-ignore no-explicit-any
  fn: (...args: any[]) => unknown,
  self: unknown,
  args: unknown[],
): unknown {
  return asyncContext.run(ctx, Reflect.apply, fn, self, args);
}

/**
 * The context of the computation under way, inside a cached function (also after an
 * `await` in an async function, and in a background refresh); `undefined` outside any.
 *
 * A computation runs in an async context when the cached function's source names
 * `cacheContext` (the usual case: it calls it itself), or once `cacheContext()` has been
 * called anywhere in the process; so a helper that reads it after an `await` finds it from
 * the process's first read of a context on. The synchronous part of a computation always
 * finds it.
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
  contextRead = true;
  const held = active.current;
  if (held !== undefined) return (held.ctx ??= new CallContext(undefined)) as CacheContext<T>;
  return asyncContext.getStore() as CacheContext<T> | undefined;
}
