/**
 * In-process single-flight: the computations under way of one cache, by key, so that
 * concurrent calls of one key share one computation; and the bounded view of a computation
 * that a call with `timeout` waits on, which leaves nothing behind when it times out.
 *
 * @module
 */

import type { Computation, TimedWaiter } from "./computation.ts";

/** The computations under way of one cache, by their key string. */
export class InFlight {
  readonly #pending = new Map<string, Computation>();

  /** Computations under way. */
  get size(): number {
    return this.#pending.size;
  }

  /** The computation under way for `pkey`, if any. */
  get(pkey: string): Computation | undefined {
    return this.#pending.get(pkey);
  }

  /** Makes `c` the computation of `pkey`, joinable from now. */
  add(pkey: string, c: Computation): void {
    c.startedAt = performance.now();
    this.#pending.set(pkey, c);
  }

  /** Removes `c` if it is still the computation of `pkey`; returns whether it was (its
   * result may then be stored: it was not detached). */
  take(pkey: string, c: Computation): boolean {
    if (this.#pending.get(pkey) !== c) return false;
    this.#pending.delete(pkey);
    return true;
  }

  /** Removes the computation of `pkey` and returns it (its result will not be stored). */
  detach(pkey: string): Computation | undefined {
    const c = this.#pending.get(pkey);
    if (c !== undefined) this.#pending.delete(pkey);
    return c;
  }

  /** The keys of every computation under way (a copy). */
  keys(): string[] {
    return [...this.#pending.keys()];
  }
}

/**
 * A call's view of `c.joined`, bounded by `ms`: it settles as the computation does, or after
 * `ms` by `onTimeout` (which resolves or rejects it). The computation refers to the waiter
 * only until one of the two happens, so a computation that never settles keeps nothing per
 * timed-out call.
 */
export function boundedJoin(
  c: Computation,
  ms: number,
  onTimeout: (resolve: (value: unknown) => void, reject: (reason: unknown) => void) => void,
): Promise<unknown> {
  let waiters = c.waiters;
  if (waiters === undefined) waiters = c.waiters = watch(c.joined!);
  const set = waiters;
  return new Promise((resolve, reject) => {
    const w = { resolve, reject } as TimedWaiter;
    w.timer = setTimeout(() => {
      set.delete(w);
      onTimeout(resolve, reject);
    }, ms);
    set.add(w);
  });
}

/** A set of waiters that `joined` settles when it does (one pair of handlers for all). */
function watch(joined: Promise<unknown>): Set<TimedWaiter> {
  const set = new Set<TimedWaiter>();
  joined.then((value) => {
    for (const w of set) {
      clearTimeout(w.timer);
      w.resolve(value);
    }
    set.clear();
  }, (reason) => {
    for (const w of set) {
      clearTimeout(w.timer);
      w.reject(reason);
    }
    set.clear();
  });
  return set;
}
