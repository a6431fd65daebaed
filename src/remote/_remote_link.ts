/**
 * One cache's link to its remote tier: the frames of the values it stores there, the
 * invalidations it publishes and applies, and its counters. Every remote call goes through
 * a {@linkcode GuardedTier} (timeout, circuit breaker, errors counted and logged once), so
 * nothing here ever rejects towards a caller.
 *
 * A remote value is framed as `[version u8 = 1][deadline f64 LE: Unix ms, or +Infinity]`
 * followed by the shared backend's value encoding: a tier whose expiry only bounds from
 * below (Deno KV's `expireIn`) never serves an expired value, and a frame that fails to
 * decode is a miss.
 *
 * @module
 */

import { GuardedTier } from "./_remote_guard.ts";
import type { Invalidation, RemoteTier } from "./remote.ts";
import { decodeValueIn, encodeValue, isPromised } from "../codec/value_codec.ts";

const FRAME_VERSION = 1;
const HEADER = 9;

/** A value read from the remote tier. */
export interface RemoteValue {
  value: unknown;
  /** Whether it was an async function's resolved value (hits return a Promise of it). */
  promised: boolean;
  /** Ms until its deadline (`undefined`: none). */
  ttl: number | undefined;
}

/** What the link applies to the local tier when another instance invalidates. */
export interface LocalTier {
  /** Drops the local copy of encoded key `key`. */
  drop(key: Uint8Array): void;
  /** Drops every local entry. */
  dropAll(): void;
}

/** Frames `value` with its deadline (Unix ms; `Infinity`: none). */
export function frameValue(value: unknown, promised: boolean, deadline: number): Uint8Array {
  const body = encodeValue(value, promised);
  const out = new Uint8Array(HEADER + body.length);
  out[0] = FRAME_VERSION;
  new DataView(out.buffer).setFloat64(1, deadline, true);
  out.set(body, HEADER);
  return out;
}

/** The value of a frame, or `undefined` when it is past its deadline at `now` (Unix ms),
 * of another version, or does not decode. */
export function unframeValue(frame: Uint8Array, now: number): RemoteValue | undefined {
  if (frame.length <= HEADER || frame[0] !== FRAME_VERSION) return undefined;
  const deadline = new DataView(frame.buffer, frame.byteOffset, frame.byteLength).getFloat64(
    1,
    true,
  );
  if (!(deadline > now)) return undefined;
  const body = frame.subarray(HEADER);
  try {
    return {
      value: decodeValueIn(body, body.length),
      promised: isPromised(body),
      ttl: deadline === Infinity ? undefined : deadline - now,
    };
  } catch {
    return undefined;
  }
}

/** The remote side of one cache. */
export class RemoteLink {
  /** The guarded tier, once a Promise of it resolved. */
  #tier: GuardedTier | undefined = undefined;
  readonly #origin = crypto.randomUUID();
  readonly #wallClock: () => number;
  readonly #local: LocalTier;
  #unsubscribe: Promise<(() => Promise<void>) | undefined> = Promise.resolve(undefined);
  #closed = false;
  /** A tier Promise that rejected: counted as one error. */
  #setupErrors = 0;
  #warnedEncode = false;
  #maxValueBytes = Infinity;
  /** Calls answered by the remote tier. */
  hits = 0;

  /**
   * @param tier The tier, or a Promise of it (calls before it resolves skip the remote).
   * @param name The cache's name: its namespace in the tier.
   * @param timeout Most ms per remote operation.
   * @param local The local tier, for invalidations from other instances.
   * @param wallClock Unix ms, for deadlines.
   */
  constructor(
    tier: RemoteTier | Promise<RemoteTier>,
    readonly name: string,
    timeout: number,
    local: LocalTier,
    wallClock: () => number = Date.now,
  ) {
    this.#wallClock = wallClock;
    this.#local = local;
    if (tier instanceof Promise) {
      tier.then((t) => this.#attach(t, timeout), (e) => {
        this.#setupErrors++;
        console.warn(
          `@warp/cache: ${name}: the remote tier could not be set up, the cache stays local: ${
            e instanceof Error ? e.message : String(e)
          }`,
        );
      });
    } else {
      this.#attach(tier, timeout);
    }
  }

  #attach(tier: RemoteTier, timeout: number): void {
    if (this.#closed) return;
    this.#maxValueBytes = tier.maxValueBytes ?? Infinity;
    const guarded = new GuardedTier(tier, this.name, { timeout });
    this.#tier = guarded;
    this.#unsubscribe = guarded.subscribe((m: Invalidation) => {
      if (m.origin === this.#origin) return;
      if (m.keys === "clear") this.#local.dropAll();
      else for (const key of m.keys) this.#local.drop(key);
    });
  }

  /** Remote operations that failed or timed out (and a tier Promise that rejected). */
  get errors(): number {
    return (this.#tier?.errors ?? 0) + this.#setupErrors;
  }

  /** The value stored remotely under `key`, or `undefined` (absent, expired, undecodable,
   * or the tier failing or not set up yet). */
  async fetch(key: Uint8Array): Promise<RemoteValue | undefined> {
    const tier = this.#tier;
    if (tier === undefined) return undefined;
    const frame = await tier.get(key);
    if (frame === undefined) return undefined;
    const found = unframeValue(frame, this.#wallClock());
    if (found !== undefined) this.hits++;
    return found;
  }

  /**
   * Writes `value` under `key` (both copied now), expiring after `ttl` ms (`undefined`:
   * never), in the background. A value that the shared codec cannot encode is not written
   * (one warning per cache).
   */
  write(key: Uint8Array, value: unknown, promised: boolean, ttl: number | undefined): void {
    void this.#write(key.slice(), value, promised, ttl);
  }

  /** Writes `value` (as `write`), then tells every other instance to drop its local copy. */
  set(key: Uint8Array, value: unknown, promised: boolean, ttl: number | undefined): void {
    const k = key.slice();
    void this.#write(k, value, promised, ttl).then(() => this.#publish([k]));
  }

  /** Removes `key` remotely, then tells every other instance to drop its local copy. */
  delete(key: Uint8Array): void {
    const k = key.slice();
    void this.#tier?.delete(k).then(() => this.#publish([k]));
  }

  /** Removes every remote entry of the cache, then tells every other instance to drop its
   * local entries. */
  clear(): void {
    void this.#tier?.clear().then(() => this.#publish("clear"));
  }

  /** Stops listening for invalidations (the tier itself stays open: other caches may use
   * it; close it with its own `close()`). */
  async close(): Promise<void> {
    this.#closed = true;
    const unsubscribe = await this.#unsubscribe;
    await unsubscribe?.();
  }

  #publish(keys: Uint8Array[] | "clear"): Promise<boolean> | undefined {
    return this.#tier?.publish({ origin: this.#origin, keys });
  }

  /** Encodes and writes in the background; resolves once the tier answered (or failed). */
  #write(
    key: Uint8Array,
    value: unknown,
    promised: boolean,
    ttl: number | undefined,
  ): Promise<unknown> {
    const tier = this.#tier;
    if (tier === undefined) return Promise.resolve();
    let frame: Uint8Array;
    try {
      frame = frameValue(value, promised, ttl === undefined ? Infinity : this.#wallClock() + ttl);
    } catch (e) {
      if (!this.#warnedEncode) {
        this.#warnedEncode = true;
        console.warn(
          `@warp/cache: ${this.name}: a result was not written to the remote tier: ${
            e instanceof Error ? e.message : String(e)
          }`,
        );
      }
      return Promise.resolve();
    }
    // Larger than the tier can store: kept local (not an error).
    if (frame.length > this.#maxValueBytes) return Promise.resolve();
    return tier.set(key, frame, ttl);
  }
}
