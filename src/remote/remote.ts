/**
 * The remote tier interface: what `cache({ remote })` asks of a store behind its local
 * tier, shared by every host that uses the same server and cache `name`. Built in:
 * `redisTier()` (`@warp/cache/redis`) and `kvTier()` (`@warp/cache/kv`); any other client
 * (ioredis, iovalkey, `@db/redis`...) plugs in by implementing {@linkcode RemoteTier}.
 *
 * A tier stores bytes: the cache encodes keys and values with the shared backend's codecs
 * and frames each value with its deadline, so a tier whose expiry is only a lower bound
 * (Deno KV's `expireIn`) never serves an expired value. A tier never needs to decode.
 *
 * @module
 */

/**
 * A keys-only invalidation, published by an instance after `cacheDelete`, `cacheSet` or
 * `cacheClear` and applied by every other instance to its local tier.
 */
export interface Invalidation {
  /** The publishing instance (random, per cache instance): it ignores its own messages. */
  origin: string;
  /** The encoded keys whose local copies are stale, or `"clear"`: every entry of the
   * cache. */
  keys: Uint8Array[] | "clear";
}

/**
 * A remote tier. Every method may reject (a server down, slow or wrong): the cache bounds
 * each call by `remoteTimeout`, counts failures in `remoteErrors`, and stops calling for a
 * while after failures (a circuit breaker), so no rejection ever reaches a caller. A tier
 * must not throw synchronously.
 *
 * `name` is the cache's name (a remote key contains it); `key` the encoded key bytes.
 */
export interface RemoteTier {
  /** The bytes stored under `key` of cache `name`, or `undefined`. */
  get(name: string, key: Uint8Array, signal: AbortSignal): Promise<Uint8Array | undefined>;
  /**
   * Stores `value` under `key` of cache `name`, replacing any; it may expire after `ttl`
   * ms (`undefined`: no expiry; the tier may keep it longer, never shorter).
   */
  set(
    name: string,
    key: Uint8Array,
    value: Uint8Array,
    ttl: number | undefined,
    signal: AbortSignal,
  ): Promise<void>;
  /** Removes `key` of cache `name`; resolves to whether it was there. */
  delete(name: string, key: Uint8Array, signal: AbortSignal): Promise<boolean>;
  /** Removes every entry of cache `name`. */
  clear(name: string, signal: AbortSignal): Promise<void>;
  /** Publishes `message` to every instance subscribed to cache `name` (itself included). */
  publish(name: string, message: Invalidation, signal: AbortSignal): Promise<void>;
  /**
   * Calls `listener` with each invalidation published for cache `name`, until the
   * returned function is called. Resubscribes by itself after a reconnection.
   */
  subscribe(name: string, listener: (message: Invalidation) => void): Promise<() => Promise<void>>;
  /** Closes the connections the tier opened (not a `client` given to it). */
  close(): Promise<void>;
  /**
   * The largest value (in bytes, framed) the tier can store, if it has a limit (Deno KV:
   * 64 KiB): the cache keeps a larger value local without calling `set` (not an error).
   */
  readonly maxValueBytes?: number | undefined;
}
