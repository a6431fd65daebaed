/**
 * The guard the cache puts around a {@linkcode RemoteTier}, one per cache `name`, so that a
 * remote that is down, slow or wrong never fails a call:
 *
 * - every call is bounded by `timeout` ms: its signal aborts and the call counts as failed;
 * - failures (rejections and timeouts) are counted in `errors` and logged once per outage:
 *   one `console.warn` line when calls start failing, one when they succeed again;
 * - a circuit breaker opens after `failureThreshold` consecutive failures: calls then
 *   return "unavailable" at once without touching the tier, until a backoff (1 s, doubled
 *   per failed trial, at most 10 s) has passed; then one trial call goes through (others
 *   still get "unavailable"), and its success closes the breaker.
 *
 * No method rejects: `get` resolves to `undefined` and the others to `false` when the
 * tier failed, timed out or was skipped.
 *
 * @module
 */

import type { Invalidation, RemoteTier } from "./remote.ts";

/** Timers and clock of a {@linkcode GuardedTier}; tests inject fake ones. */
export interface GuardClock {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Calls `fn` after `ms`; returns a handle for `clearTimer`. `keepAlive`: the timer
   * keeps the process alive (a caller awaits it), else it does not. */
  setTimer(fn: () => void, ms: number, keepAlive?: boolean): unknown;
  /** Cancels a timer set by `setTimer`. */
  clearTimer(handle: unknown): void;
}

/** The real clock: `performance.now()`, and timers that keep the process alive only while a
 * caller awaits them (a call's timeout; never the breaker's retries). */
export const realClock: GuardClock = {
  now: () => performance.now(),
  setTimer(fn: () => void, ms: number, keepAlive = false): unknown {
    const id = setTimeout(fn, ms);
    if (!keepAlive) Deno.unrefTimer(id);
    return id;
  },
  clearTimer: (handle: unknown): void => clearTimeout(handle as number),
};

/** Options of a {@linkcode GuardedTier}. */
export interface GuardOptions {
  /** The longest a call may take, in ms. */
  timeout: number;
  /** Consecutive failures that open the breaker. @default {3} */
  failureThreshold?: number;
  /** The first wait before a trial call, in ms. @default {1000} */
  backoffMin?: number;
  /** The longest wait between two trial calls, in ms. @default {10000} */
  backoffMax?: number;
  /** The tier's name in log lines. @default {"remote"} */
  tierName?: string;
  /** @default {realClock} */
  clock?: GuardClock;
  /** Where the outage lines go. @default {console.warn} */
  warn?: (line: string) => void;
}

/** The breaker's state: calls go through, none do, or one trial does. */
export type BreakerState = "closed" | "open" | "half-open";

/** A {@linkcode RemoteTier} for one cache `name` whose calls never reject. */
export class GuardedTier {
  readonly #tier: RemoteTier;
  readonly #name: string;
  readonly #timeout: number;
  readonly #threshold: number;
  readonly #backoffMin: number;
  readonly #backoffMax: number;
  readonly #tierName: string;
  readonly #clock: GuardClock;
  readonly #warn: (line: string) => void;

  #errors = 0;
  #skipped = 0;
  #consecutive = 0;
  #failing = false;
  #state: BreakerState = "closed";
  #backoff: number;
  #retryAt = 0;

  /**
   * @param tier The tier to guard.
   * @param name The cache's name (passed to every tier call, and named in log lines).
   * @param options Timeout, breaker and logging settings.
   * @throws {RangeError} If a duration or the threshold is not a positive number.
   */
  constructor(tier: RemoteTier, name: string, options: GuardOptions) {
    this.#tier = tier;
    this.#name = name;
    this.#timeout = positive(options.timeout, "remoteTimeout");
    this.#threshold = positive(options.failureThreshold ?? 3, "failureThreshold");
    this.#backoffMin = positive(options.backoffMin ?? 1000, "backoffMin");
    this.#backoffMax = positive(options.backoffMax ?? 10_000, "backoffMax");
    this.#backoff = this.#backoffMin;
    this.#tierName = options.tierName ?? "remote";
    this.#clock = options.clock ?? realClock;
    this.#warn = options.warn ?? ((line) => console.warn(line));
  }

  /** Failed calls so far: rejections and timeouts (calls skipped by the breaker are not). */
  get errors(): number {
    return this.#errors;
  }

  /** Calls answered "unavailable" by the open breaker without touching the tier. */
  get skipped(): number {
    return this.#skipped;
  }

  /** The breaker's state now. */
  get state(): BreakerState {
    return this.#state;
  }

  /** The bytes under `key`, or `undefined` (absent, or the tier unavailable). */
  async get(key: Uint8Array): Promise<Uint8Array | undefined> {
    const result = await this.#call((signal) => this.#tier.get(this.#name, key, signal));
    return result.ok ? result.value : undefined;
  }

  /** Stores `value` under `key` with `ttl` ms (or none); resolves to whether it did. */
  async set(key: Uint8Array, value: Uint8Array, ttl: number | undefined): Promise<boolean> {
    const result = await this.#call((signal) =>
      this.#tier.set(this.#name, key, value, ttl, signal)
    );
    return result.ok;
  }

  /** Removes `key`; resolves to whether the call succeeded (not whether `key` was there). */
  async delete(key: Uint8Array): Promise<boolean> {
    const result = await this.#call((signal) => this.#tier.delete(this.#name, key, signal));
    return result.ok;
  }

  /** Removes every entry of the cache; resolves to whether it did. */
  async clear(): Promise<boolean> {
    const result = await this.#call((signal) => this.#tier.clear(this.#name, signal));
    return result.ok;
  }

  /** Publishes `message`; resolves to whether it did. */
  async publish(message: Invalidation): Promise<boolean> {
    const result = await this.#call((signal) => this.#tier.publish(this.#name, message, signal));
    return result.ok;
  }

  /**
   * Subscribes `listener` to the cache's invalidations. Resolves at once with the function
   * that ends the subscription; when subscribing fails (or the breaker is open), it tries
   * again at the breaker's next attempt time until it succeeds or that function is called.
   */
  subscribe(listener: (message: Invalidation) => void): Promise<() => Promise<void>> {
    let ended = false;
    let unsubscribe: (() => Promise<void>) | undefined;
    let timer: unknown;
    const attempt = async (): Promise<void> => {
      timer = undefined;
      if (ended || unsubscribe !== undefined) return;
      if (!this.#admit()) {
        schedule();
        return;
      }
      let settled = false;
      let timedOut = false;
      const pending = Promise.resolve().then(() => this.#tier.subscribe(this.#name, listener));
      // A subscription that lands after its timeout is kept, unless ended by then.
      pending.then(async (stop) => {
        if (ended) await stop().catch(() => {});
        else if (timedOut && unsubscribe === undefined) unsubscribe = stop;
      }, () => {});
      const deadline = new Promise<"timeout">((resolve) => {
        const t = this.#clock.setTimer(() => resolve("timeout"), this.#timeout);
        pending.finally(() => this.#clock.clearTimer(t)).catch(() => {});
      });
      try {
        const outcome = await Promise.race([pending, deadline]);
        settled = true;
        if (outcome === "timeout") {
          timedOut = true;
          this.#failure(new Error(`subscribe timed out after ${this.#timeout} ms`));
          schedule();
          return;
        }
        this.#success();
        unsubscribe = outcome;
      } catch (error) {
        if (!settled) this.#failure(error);
        schedule();
      }
    };
    const schedule = (): void => {
      if (ended) return;
      // Open: at the breaker's trial time. Half-open (another call's trial in flight): once
      // that trial has had its time. Closed (a single failure): after the shortest backoff.
      const wait = this.#state === "open"
        ? Math.max(0, this.#retryAt - this.#clock.now())
        : this.#state === "half-open"
        ? this.#timeout
        : this.#backoffMin;
      timer = this.#clock.setTimer(() => void attempt(), wait);
    };
    const end = async (): Promise<void> => {
      if (ended) return;
      ended = true;
      if (timer !== undefined) this.#clock.clearTimer(timer);
      const stop = unsubscribe;
      unsubscribe = undefined;
      if (stop !== undefined) await stop().catch(() => {});
    };
    return attempt().then(() => end);
  }

  /** Whether a call may go to the tier now (moves an expired open breaker to half-open). */
  #admit(): boolean {
    if (this.#state === "closed") return true;
    if (this.#state === "open" && this.#clock.now() >= this.#retryAt) {
      this.#state = "half-open";
      return true;
    }
    this.#skipped++;
    return false;
  }

  async #call<T>(
    run: (signal: AbortSignal) => Promise<T>,
  ): Promise<{ ok: true; value: T } | { ok: false }> {
    if (!this.#admit()) return { ok: false };
    const controller = new AbortController();
    const timeoutError = new DOMException(
      `Remote call timed out after ${this.#timeout} ms`,
      "TimeoutError",
    );
    let timer: unknown;
    const deadline = new Promise<never>((_, reject) => {
      // Kept alive: a caller awaits this call (a hung remote must still end it).
      timer = this.#clock.setTimer(
        () => {
          controller.abort(timeoutError);
          reject(timeoutError);
        },
        this.#timeout,
        true,
      );
    });
    try {
      const pending = Promise.resolve().then(() => run(controller.signal));
      pending.catch(() => {}); // it may reject after the deadline won
      const value = await Promise.race([pending, deadline]);
      this.#success();
      return { ok: true, value };
    } catch (error) {
      this.#failure(error);
      return { ok: false };
    } finally {
      this.#clock.clearTimer(timer);
    }
  }

  #success(): void {
    this.#consecutive = 0;
    this.#state = "closed";
    this.#backoff = this.#backoffMin;
    if (this.#failing) {
      this.#failing = false;
      this.#warn(`@warp/cache: cache "${this.#name}": ${this.#tierName} tier recovered`);
    }
  }

  #failure(error: unknown): void {
    this.#errors++;
    this.#consecutive++;
    if (!this.#failing) {
      this.#failing = true;
      this.#warn(
        `@warp/cache: cache "${this.#name}": ${this.#tierName} tier failing (calls skip it until it recovers): ${
          describe(error)
        }`,
      );
    }
    if (this.#state === "half-open") {
      this.#backoff = Math.min(this.#backoff * 2, this.#backoffMax);
      this.#open();
    } else if (this.#state === "closed" && this.#consecutive >= this.#threshold) {
      this.#open();
    }
  }

  #open(): void {
    this.#state = "open";
    this.#retryAt = this.#clock.now() + Math.min(this.#backoff, this.#backoffMax);
  }
}

function describe(error: unknown): string {
  if (error instanceof Error) return `${error.name}: ${error.message}`;
  return String(error);
}

function positive(value: number, name: string): number {
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new RangeError(
      `Cannot guard remote tier: ${name} must be a finite, positive number: received ${
        String(value)
      }`,
    );
  }
  return value;
}
