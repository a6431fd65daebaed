/**
 * The remote tier: what `cache({ remote })` asks of the store behind its local tier, shared
 * by every host that uses the same server and cache `name`. A tier has two parts:
 *
 * - a {@linkcode RemoteStorage}: bytes in, bytes out, under a cache name and key;
 * - a {@linkcode RemoteBus} (optional): invalidations published by one instance and
 *   applied by every other to its local tier.
 *
 * Built in: `redisTier()` (`@warp/cache/redis`) and `kvTier()` (`@warp/cache/kv`) give
 * both. Any other client (ioredis, iovalkey, `@db/redis`...) plugs in by implementing one
 * part or both and pairing them with {@linkcode remoteTier}; a tier without a bus shares
 * values, but a change made on one host then reaches the others' local tiers only when
 * their copies expire.
 *
 * A storage keeps bytes and never needs to decode them: the cache encodes keys and values
 * with the shared backend's codecs and frames each value with its deadline and the time
 * its computation started (see the README, "Remote tier").
 *
 * @module
 */

import { fitsTimer, LONGEST_TIMER_MS } from "../options/_validate.ts";

/**
 * An invalidation, published by an instance after `cacheDelete`, `cacheSet` or
 * `cacheClear` (and, later, tag invalidations) and applied by every other instance to its
 * local tier. It names keys, every entry (`"clear"`), or tags.
 */
export interface Invalidation {
  /** The publishing instance (random, per cache instance): it ignores its own messages. */
  origin: string;
  /**
   * When the change was made: Unix ms on the publisher's clock. A remote value stored
   * before a `"clear"` (or before a named tag's invalidation) is a miss for the hosts that
   * received it (clamped to their own clock: see the README on clock skew).
   */
  stamp: number;
  /** The encoded keys whose local copies are stale, or `"clear"`: every entry. */
  keys: Uint8Array[] | "clear";
  /** Tags whose entries are stale (none: `undefined` or empty). */
  tags?: string[] | undefined;
  /**
   * A repair: the publisher removed values of these keys that it had written from
   * computations older than another instance's invalidation (its write may have landed
   * after that change). Receivers drop their copies but never repair in turn.
   */
  repair?: boolean | undefined;
}

/**
 * The storage part of a remote tier. Every method may reject (a server down, slow or
 * wrong): the cache bounds each call by `remoteTimeout`, counts failures in
 * `remoteErrors`, and stops calling for a while after failures (a circuit breaker), so no
 * rejection ever reaches a caller. A method must not throw synchronously.
 *
 * `name` is the cache's name (a remote key contains it); `key` the encoded key bytes.
 * `signal` aborts when the call's time is up: passing it on is optional.
 */
export interface RemoteStorage {
  /** The bytes stored under `key` of cache `name`, or `undefined`. */
  get(name: string, key: Uint8Array, signal: AbortSignal): Promise<Uint8Array | undefined>;
  /**
   * Stores `value` under `key` of cache `name`, replacing any; it may expire after `ttl`
   * ms (`undefined`: no expiry; the storage may keep it longer, never shorter).
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
  /** Closes the connections the storage opened (never a client given to it). Idempotent. */
  close(): Promise<void>;
  /**
   * The largest value (in bytes, framed) the storage keeps, if it has a limit (Deno KV:
   * 64 KiB): the cache keeps a larger value local without calling `set` (not an error).
   */
  readonly maxValueBytes?: number | undefined;
}

/** What a {@linkcode RemoteBus} subscription calls. */
export interface BusListener {
  /** An invalidation published for the cache (by any instance, this one included). */
  message(message: Invalidation): void;
  /**
   * Messages may have been lost: the subscription was re-established after a lost
   * connection, or fell behind. Called once the subscription is in place again; the cache
   * then drops its local copies, which may have missed invalidations.
   */
  gap(): void;
}

/** The bus part of a remote tier (methods may reject, as {@linkcode RemoteStorage}'s). */
export interface RemoteBus {
  /** Publishes `message` to every instance subscribed to cache `name` (itself included). */
  publish(name: string, message: Invalidation, signal: AbortSignal): Promise<void>;
  /**
   * Delivers each invalidation published for cache `name` to `listener`, until the
   * returned function is called. Re-establishes itself after a lost connection, then
   * calls `listener.gap()`.
   */
  subscribe(name: string, listener: BusListener): Promise<() => Promise<void>>;
  /** Closes the connections the bus opened. Idempotent. */
  close(): Promise<void>;
}

/**
 * A remote tier: a storage and, optionally, a bus. `close()` (or `await using`) ends both
 * within the tier's timeout, whatever the server does, after sending what the caches
 * using it still had to send (invalidations kept while the server was unreachable).
 */
export interface RemoteTier extends AsyncDisposable {
  /** Where values live. */
  readonly storage: RemoteStorage;
  /** How invalidations travel between instances (`undefined`: they do not). */
  readonly bus: RemoteBus | undefined;
  /** Most ms that `close()` takes. */
  readonly timeout: number;
  /** Sends what is pending, then closes both parts; resolves within `timeout` ms. */
  close(): Promise<void>;
}

/** Work that a tier's `close()` lets finish first (the caches' pending invalidations). */
const pendingWork = new WeakMap<object, Set<() => Promise<void>>>();

/**
 * Registers `drain` to run when `tier` closes (bounded by its timeout); returns the
 * function that unregisters it. Used by the caches that use the tier.
 */
export function onTierClose(tier: RemoteTier, drain: () => Promise<void>): () => void {
  let set = pendingWork.get(tier);
  if (set === undefined) pendingWork.set(tier, set = new Set());
  set.add(drain);
  return () => set.delete(drain);
}

/** Options of {@linkcode remoteTier}. */
export interface RemoteTierOptions {
  /**
   * Most ms that `close()` takes: past it, it resolves and leaves the parts to end in the
   * background.
   * @default {500}
   */
  timeout?: number;
}

/** Resolves `promise`, or `undefined` after `ms` (never rejects). */
export async function within(promise: Promise<unknown>, ms: number): Promise<void> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  await Promise.race([
    promise.catch(() => {}),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, ms);
    }),
  ]);
  clearTimeout(timer);
}

/**
 * Pairs a storage with a bus (or none) into a {@linkcode RemoteTier} for
 * `cache({ remote })`.
 *
 * @param parts `storage`, and `bus` if any (a tier without one shares values but not
 * invalidations).
 * @param options `timeout`: most ms that `close()` takes.
 * @returns The tier; its `close()` closes both parts.
 * @throws {TypeError} If `storage` lacks a method of {@linkcode RemoteStorage}, or `bus`
 * one of {@linkcode RemoteBus}.
 * @throws {RangeError} If `timeout` is not a positive finite number.
 *
 * @example A storage of one server with the bus of another
 * ```ts ignore
 * import { remoteTier } from "@warp/cache";
 * import { kvTier } from "@warp/cache/kv";
 * import { redisTier } from "@warp/cache/redis";
 *
 * const kv = await kvTier({ path: "cache.kv" });
 * const redis = await redisTier({ url: "redis://127.0.0.1:6379" });
 * await using tier = remoteTier({ storage: kv.storage, bus: redis.bus });
 * ```
 */
export function remoteTier(
  parts: { storage: RemoteStorage; bus?: RemoteBus | undefined },
  options: RemoteTierOptions = {},
): RemoteTier {
  const owner = "Cannot create remoteTier";
  const { storage, bus } = parts ?? {};
  for (const m of ["get", "set", "delete", "clear", "close"] as const) {
    if (typeof (storage as Partial<RemoteStorage> | undefined)?.[m] !== "function") {
      throw new TypeError(
        `${owner}: storage must have a ${m}() method: received ${String(storage)}`,
      );
    }
  }
  if (bus !== undefined) {
    for (const m of ["publish", "subscribe", "close"] as const) {
      if (typeof (bus as Partial<RemoteBus> | null)?.[m] !== "function") {
        throw new TypeError(`${owner}: bus must have a ${m}() method: received ${String(bus)}`);
      }
    }
  }
  const timeout = options.timeout ?? 500;
  if (
    typeof timeout !== "number" || !Number.isFinite(timeout) || timeout <= 0 ||
    !fitsTimer(timeout)
  ) {
    throw new RangeError(
      `${owner}: timeout must be a positive number of ms no larger than ${LONGEST_TIMER_MS} (the longest timer): received ${
        String(timeout)
      }`,
    );
  }
  let closing: Promise<void> | undefined;
  const tier: RemoteTier = {
    storage,
    bus,
    timeout,
    close(): Promise<void> {
      closing ??= within(
        (async () => {
          const drains = [...(pendingWork.get(tier) ?? [])];
          await Promise.all(drains.map((d) => d().catch(() => {})));
          await Promise.all([storage.close(), bus?.close()].map((p) => p?.catch(() => {})));
        })(),
        timeout,
      );
      return closing;
    },
    [Symbol.asyncDispose](): Promise<void> {
      return tier.close();
    },
  };
  return tier;
}
