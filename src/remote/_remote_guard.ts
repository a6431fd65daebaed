/**
 * The guard the cache puts around a remote tier's storage and bus, one per cache `name`,
 * so that a remote that is down, slow or wrong never fails a call:
 *
 * - every call is bounded by `timeout` ms: past it the call counts as failed (its signal
 *   aborts; the tier may ignore it);
 * - failures (rejections and timeouts) are counted in `errors` and logged once per outage:
 *   one `console.warn` line when calls start failing, one when they succeed again;
 * - a circuit breaker opens after `failureThreshold` consecutive failures: calls then
 *   return "unavailable" at once without touching the tier, until a backoff (1 s, doubled
 *   per failed trial, at most 10 s) has passed; then one trial call goes through (others
 *   still get "unavailable"), and its success closes the breaker.
 *
 * Cost per call: calls started within one eighth of `timeout` of each other share one
 * timer and one `AbortController` (a call gets between 7/8 of `timeout` and `timeout`); an
 * error object is built only when a call times out.
 *
 * No method rejects: `get` resolves to `undefined` and the others to `false` when the
 * tier failed, timed out or was skipped.
 *
 * @module
 */

import type { BusListener, Invalidation, RemoteBus, RemoteStorage } from "./remote.ts";

/** Timers and clock of a {@linkcode GuardedTier}; tests inject fake ones. */
export interface GuardClock {
  /** Milliseconds, monotonic. */
  now(): number;
  /** Calls `fn` after `ms`; returns a handle for `clearTimer`. `keepAlive`: the timer
   * keeps the process alive (a caller awaits it), else it does not. */
  setTimer(fn: () => void, ms: number, keepAlive?: boolean): unknown;
  /** Cancels a timer set by `setTimer`. */
  clearTimer(handle: unknown): void;
  /** Makes a timer keep the process alive, or not (optional). */
  keepAlive?(handle: unknown, on: boolean): void;
}

/** The real clock: `performance.now()`, and timers that keep the process alive only while a
 * caller awaits them (calls under way; never the breaker's retries). */
export const realClock: GuardClock = {
  now: () => performance.now(),
  setTimer(fn: () => void, ms: number, keepAlive = false): unknown {
    const id = setTimeout(fn, ms);
    if (!keepAlive) Deno.unrefTimer(id);
    return id;
  },
  clearTimer: (handle: unknown): void => clearTimeout(handle as number),
  keepAlive(handle: unknown, on: boolean): void {
    if (on) Deno.refTimer(handle as number);
    else Deno.unrefTimer(handle as number);
  },
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
  /** Called when calls succeed again after failures (the breaker closed). */
  onRecover?: () => void;
}

/** The breaker's state: calls go through, none do, or one trial does. */
export type BreakerState = "closed" | "open" | "half-open";

/** What a failed or skipped call resolves to inside the guard. */
const FAILED: unique symbol = Symbol("failed");
type Failed = typeof FAILED;
const SKIPPED: Promise<Failed> = Promise.resolve(FAILED);

/** Calls started within one window share a deadline, a timer and an abort signal. */
class Window {
  readonly controller = new AbortController();
  /** Calls of this window still under way, each with what ends it as timed out. */
  readonly open = new Set<() => void>();
  timer: unknown = undefined;
  constructor(readonly start: number, readonly deadline: number) {}
}

/** The storage and bus of a remote tier, for one cache `name`, whose calls never reject. */
export class GuardedTier {
  readonly #storage: RemoteStorage;
  readonly #bus: RemoteBus | undefined;
  readonly #name: string;
  readonly #timeout: number;
  readonly #slice: number;
  readonly #threshold: number;
  readonly #backoffMin: number;
  readonly #backoffMax: number;
  readonly #tierName: string;
  readonly #clock: GuardClock;
  readonly #warn: (line: string) => void;
  readonly #onRecover: (() => void) | undefined;

  #errors = 0;
  #skipped = 0;
  #consecutive = 0;
  #failing = false;
  #state: BreakerState = "closed";
  #backoff: number;
  #retryAt = 0;
  #window: Window | undefined = undefined;

  /**
   * @param storage The storage to guard.
   * @param bus The bus to guard, if any.
   * @param name The cache's name (passed to every tier call, and named in log lines).
   * @param options Timeout, breaker and logging settings.
   * @throws {RangeError} If a duration or the threshold is not a positive number.
   */
  constructor(
    storage: RemoteStorage,
    bus: RemoteBus | undefined,
    name: string,
    options: GuardOptions,
  ) {
    this.#storage = storage;
    this.#bus = bus;
    this.#name = name;
    this.#timeout = positive(options.timeout, "remoteTimeout");
    this.#slice = this.#timeout / 8;
    this.#threshold = positive(options.failureThreshold ?? 3, "failureThreshold");
    this.#backoffMin = positive(options.backoffMin ?? 1000, "backoffMin");
    this.#backoffMax = positive(options.backoffMax ?? 10_000, "backoffMax");
    this.#backoff = this.#backoffMin;
    this.#tierName = options.tierName ?? "remote";
    this.#clock = options.clock ?? realClock;
    this.#warn = options.warn ?? ((line) => console.warn(line));
    this.#onRecover = options.onRecover;
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

  /** Ms until a call may reach the tier again (0: now). */
  get retryIn(): number {
    return this.#state === "open" ? Math.max(0, this.#retryAt - this.#clock.now()) : 0;
  }

  /** The bytes under `key`, or `undefined` (absent, or the tier unavailable). */
  get(key: Uint8Array): Promise<Uint8Array | undefined> {
    return this.#call((signal) => this.#storage.get(this.#name, key, signal)).then(orUndefined);
  }

  /** The bytes under `key`, `undefined` when absent, or `null` when the tier failed (or
   * is unavailable): for reads where a failure must not pass for an absent key. */
  read(key: Uint8Array): Promise<Uint8Array | undefined | null> {
    return this.#call((signal) => this.#storage.get(this.#name, key, signal)).then((r) =>
      r === FAILED ? null : r
    );
  }

  /** Stores `value` under `key` with `ttl` ms (or none); resolves to whether it did. */
  set(key: Uint8Array, value: Uint8Array, ttl: number | undefined): Promise<boolean> {
    return this.#call((signal) => this.#storage.set(this.#name, key, value, ttl, signal)).then(
      succeeded,
    );
  }

  /** Removes `key`; resolves to whether the call succeeded (not whether `key` was there). */
  delete(key: Uint8Array): Promise<boolean> {
    return this.#call((signal) => this.#storage.delete(this.#name, key, signal)).then(succeeded);
  }

  /** Removes every entry of the cache; resolves to whether it did. */
  clear(): Promise<boolean> {
    return this.#call((signal) => this.#storage.clear(this.#name, signal)).then(succeeded);
  }

  /** Publishes `message`; resolves to whether it did (`true` without a bus: nothing to
   * send). */
  publish(message: Invalidation): Promise<boolean> {
    const bus = this.#bus;
    if (bus === undefined) return Promise.resolve(true);
    return this.#call((signal) => bus.publish(this.#name, message, signal)).then(succeeded);
  }

  /**
   * Subscribes `listener` to the cache's invalidations. Resolves at once with the function
   * that ends the subscription; when subscribing fails (or the breaker is open), it tries
   * again at the breaker's next attempt time until it succeeds or that function is called,
   * and calls `listener.gap()` once it is in place (messages were missed meanwhile).
   * Without a bus, it does nothing.
   */
  subscribe(listener: BusListener): Promise<() => Promise<void>> {
    const bus = this.#bus;
    if (bus === undefined) return Promise.resolve(() => Promise.resolve());
    let ended = false;
    let missed = false;
    let unsubscribe: (() => Promise<void>) | undefined;
    let timer: unknown;
    const established = (stop: () => Promise<void>): void => {
      unsubscribe = stop;
      if (missed) listener.gap();
    };
    const attempt = async (): Promise<void> => {
      timer = undefined;
      if (ended || unsubscribe !== undefined) return;
      if (!this.#admit()) {
        missed = true;
        schedule();
        return;
      }
      let settled = false;
      let timedOut = false;
      const pending = Promise.resolve().then(() => bus.subscribe(this.#name, listener));
      // A subscription that lands after its timeout is kept, unless ended by then or
      // another attempt's is in place (one subscription: each message delivered once).
      pending.then(async (stop) => {
        if (ended) await stop().catch(() => {});
        else if (timedOut) {
          if (unsubscribe === undefined) established(stop);
          else await stop().catch(() => {});
        }
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
          missed = true;
          this.#failure(() => new Error(`subscribe timed out after ${this.#timeout} ms`));
          schedule();
          return;
        }
        this.#success();
        // An earlier attempt's subscription landed late while this one was under way.
        if (unsubscribe !== undefined) await outcome().catch(() => {});
        else established(outcome);
      } catch (error) {
        missed = true;
        if (!settled) this.#failure(() => error);
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

  /** The window of a call starting now: the current one while it has time left. */
  #currentWindow(): Window {
    const now = this.#clock.now();
    let w = this.#window;
    if (w === undefined || now - w.start >= this.#slice) {
      w = this.#window = new Window(now, now + this.#timeout);
      const window = w;
      w.timer = this.#clock.setTimer(() => this.#expire(window), this.#timeout, true);
    } else if (w.open.size === 0) {
      this.#clock.keepAlive?.(w.timer, true);
    }
    return w;
  }

  /** A window's deadline: its calls still under way time out. */
  #expire(w: Window): void {
    if (this.#window === w) this.#window = undefined;
    if (w.open.size === 0) return;
    w.controller.abort(timeoutError(this.#timeout));
    for (const end of [...w.open]) end();
  }

  #call<T>(run: (signal: AbortSignal) => Promise<T>): Promise<T | Failed> {
    if (!this.#admit()) return SKIPPED;
    const w = this.#currentWindow();
    return new Promise<T | Failed>((resolve) => {
      let pending: Promise<T>;
      try {
        pending = run(w.controller.signal);
        // A tier that answers a value instead of a Promise (against its contract).
        if (!(pending instanceof Promise)) pending = Promise.resolve(pending);
      } catch (error) {
        this.#failure(() => error);
        this.#release(w);
        resolve(FAILED);
        return;
      }
      const timedOut = (): void => {
        w.open.delete(timedOut);
        this.#failure(() => timeoutError(this.#timeout));
        resolve(FAILED);
      };
      w.open.add(timedOut);
      pending.then((value) => {
        if (!w.open.delete(timedOut)) return; // timed out already
        this.#release(w);
        this.#success();
        resolve(value);
      }, (error) => {
        if (!w.open.delete(timedOut)) return;
        this.#release(w);
        this.#failure(() => error);
        resolve(FAILED);
      });
    });
  }

  /** A call of `w` ended: once none is under way, its timer no longer keeps the process. */
  #release(w: Window): void {
    if (w.open.size > 0) return;
    if (this.#window === w) this.#clock.keepAlive?.(w.timer, false);
    else this.#clock.clearTimer(w.timer);
  }

  #success(): void {
    if (this.#consecutive === 0 && this.#state === "closed") return;
    this.#consecutive = 0;
    this.#state = "closed";
    this.#backoff = this.#backoffMin;
    if (this.#failing) {
      this.#failing = false;
      this.#warn(`@warp/cache: cache "${this.#name}": ${this.#tierName} tier recovered`);
      this.#onRecover?.();
    }
  }

  /** Counts a failure; `error` builds its cause only when it is logged. */
  #failure(error: () => unknown): void {
    this.#errors++;
    this.#consecutive++;
    if (!this.#failing) {
      this.#failing = true;
      this.#warn(
        `@warp/cache: cache "${this.#name}": ${this.#tierName} tier failing (calls skip it until it recovers): ${
          describe(error())
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

function orUndefined<T>(r: T | Failed): T | undefined {
  return r === FAILED ? undefined : r;
}

function succeeded(r: unknown): boolean {
  return r !== FAILED;
}

function timeoutError(ms: number): DOMException {
  return new DOMException(`Remote call timed out after ${ms} ms`, "TimeoutError");
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
