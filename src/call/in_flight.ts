/**
 * In-process single-flight: the computations under way of one cache, by key, so that
 * concurrent calls of one key share one computation; and the bounded view of a computation
 * that a call with `timeout` waits on, which leaves nothing behind when it times out.
 *
 * @module
 */

import type { Computation, TimedWaiter } from "./computation.ts";

/** FNV-1a over `buf[0..len)`, cut to 30 bits: the bucket of a key. (A small integer: a
 * `Map` keyed by a larger one boxes it, and took 3 times as long to set and delete.) */
export function hashKey(buf: Uint8Array, len: number): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < len; i++) h = Math.imul(h ^ buf[i]!, 0x01000193);
  return h >>> 2;
}

/** Whether the key of `c` is `buf[0..len)`. */
export function sameKey(c: Computation, buf: Uint8Array, len: number): boolean {
  if (c.len !== len) return false;
  const kb = c.buf;
  for (let i = 0; i < len; i++) if (kb[i] !== buf[i]) return false;
  return true;
}

/**
 * The computations under way of one cache, by their key bytes: buckets by a hash of the
 * bytes (a number: no key string is made for a computation), chained through
 * `Computation.next`, compared byte by byte. The first one under way while no other is
 * sits in a field of its own, out of the `Map`: calls awaited one after another each
 * add and take one computation, and a `Map` that gains and loses a key on every miss
 * rebuilds its table every few of them (that was 10% of an async miss).
 */
export class InFlight {
  readonly #buckets = new Map<number, Computation>();
  /** A computation under way outside the buckets, or `undefined`. */
  #one: Computation | undefined = undefined;
  #size = 0;

  /** Computations under way. */
  get size(): number {
    return this.#size;
  }

  /** The computation under way for the key `buf[0..len)`, if any. */
  find(buf: Uint8Array, len: number): Computation | undefined {
    return this.#found(hashKey(buf, len), buf, len);
  }

  #found(h: number, buf: Uint8Array, len: number): Computation | undefined {
    const one = this.#one;
    if (one !== undefined && one.hash === h && sameKey(one, buf, len)) return one;
    if (this.#buckets.size === 0) return undefined;
    let c = this.#buckets.get(h);
    while (c !== undefined && !sameKey(c, buf, len)) c = c.next;
    return c;
  }

  /** Makes `c` the computation of its key, joinable from now (replacing any other). */
  add(c: Computation): void {
    const h = c.hash = hashKey(c.buf, c.len);
    if (this.#size > 0) {
      const old = this.#found(h, c.buf, c.len);
      if (old !== undefined) this.take(old);
    }
    c.startedAt = 0;
    c.pending = true;
    this.#size++;
    if (this.#one === undefined) {
      c.next = undefined;
      this.#one = c;
      return;
    }
    c.next = this.#buckets.get(h);
    this.#buckets.set(h, c);
  }

  /** Removes `c` if it is still the computation of its key; returns whether it was (its
   * result may then be stored: it was not detached). */
  take(c: Computation): boolean {
    if (!c.pending) return false;
    c.pending = false;
    this.#size--;
    if (c === this.#one) {
      this.#one = undefined;
      return true;
    }
    const first = this.#buckets.get(c.hash)!;
    if (first === c) {
      if (c.next === undefined) this.#buckets.delete(c.hash);
      else this.#buckets.set(c.hash, c.next);
    } else {
      let p = first;
      while (p.next !== c) p = p.next!;
      p.next = c.next;
    }
    c.next = undefined;
    return true;
  }

  /** Every computation under way (a copy). */
  all(): Computation[] {
    const out: Computation[] = [];
    if (this.#one !== undefined) out.push(this.#one);
    for (let c of this.#buckets.values()) {
      for (; c !== undefined; c = c.next!) out.push(c);
    }
    return out;
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
