/**
 * The context of one computation of a cached function: {@linkcode CacheContext}, returned
 * by `cacheContext()` inside the function.
 *
 * @module
 */

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
   * `cacheClear` for its key, or by disposing the cache (its result will not be stored;
   * pass it on to `fetch` to stop the work). Its reason is a `DOMException` named
   * `AbortError`.
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
  /** The encoded key, for a cache with a remote tier. */
  remoteKey: Uint8Array | undefined = undefined;
  /** The remote link's stamp of when the computation started (see `RemoteLink.stamp`). */
  remoteSince = 0;
  /** Whether the value came from the remote tier (not written back to it). */
  fromRemote = false;

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

  /** Aborts the signal (now, or when it is first read): the computation was detached by
   * `why`. */
  detach(why: string): void {
    this.live = false;
    if (this.#abortedBy !== undefined) return;
    this.#abortedBy = why;
    this.#controller?.abort(detachedReason(why));
  }
}
