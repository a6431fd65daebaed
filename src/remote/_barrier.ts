/**
 * The invalidation barrier of one cache with a remote tier: which values may still be
 * stored after invalidations (of keys, of everything, or of tags), so that an update made
 * anywhere is never undone by an older value.
 *
 * Two questions, two kinds of time:
 *
 * - **May a value computed (or read) since stamp `s` still be stored?** Answered in this
 *   process alone, with its own stamps: strictly increasing Unix-ms times (the wall clock,
 *   kept monotonic by at least 1 µs a stamp), taken when a computation or a remote read
 *   starts and when an invalidation is made here or received from the bus. Exact: a
 *   computation that started before an invalidation of its key, of everything, or of one
 *   of its tags is refused, whatever the clocks of other hosts say.
 * - **Is a value read from the remote storage older than an invalidation?** A remote
 *   value carries its birth (the stamp of the computation or `cacheSet` that made it, on
 *   its host's clock). It is a miss when born before the last clear (or a named tag's
 *   invalidation) known here, or before an invalidation of its key made here and not yet
 *   acknowledged by the storage. A time received from another host is clamped to this
 *   host's time of receipt, so a host whose clock runs ahead cannot hide the values of
 *   every other host for the length of its skew; a host whose clock runs behind by `d`
 *   may let values born up to `d` before its clear through (see the README on clock skew).
 *
 * Memory: one entry per key invalidated here, at most `cap` (10,000); past it the oldest
 * entries are dropped and the floor rises to their stamp, so computations that started
 * before it are refused as after a clear (never a stale value; a computation longer than
 * the time the last `cap` invalidations took then goes unstored).
 *
 * @module
 */

/** The default bound on keys remembered by a {@linkcode Barrier}. */
export const BARRIER_KEYS = 10_000;

/** The invalidation barrier of one cache (see the module doc). Keys are key strings
 * (`bytesToKeyString` of the encoded key). */
export class Barrier {
  readonly #wallClock: () => number;
  readonly #cap: number;
  #last = -Infinity;
  /** Computations that started at or before it may not store (clears, gaps, pruning). */
  #floor = -Infinity;
  /** Key -> stamp of its last invalidation here (made or received). */
  readonly #keys = new Map<string, number>();
  /** Tag -> stamp of its last invalidation here. */
  readonly #tags = new Map<string, number>();
  /** Remote values born before it are misses (the last clear known here). */
  #bornFloor = -Infinity;
  /** Tag -> remote values carrying it born before this are misses. */
  readonly #bornTags = new Map<string, number>();
  /** Key -> stamp of an invalidation made here that the storage has not acknowledged:
   * remote values of that key born before it are misses. */
  readonly #unsent = new Map<string, number>();
  /** Past `cap` unacknowledged keys, the oldest give way to this: remote values of any key
   * born before it are misses until a clear covering it is acknowledged. */
  #unsentFloor = -Infinity;

  /**
   * @param wallClock Unix ms.
   * @param cap Most keys remembered.
   */
  constructor(wallClock: () => number = Date.now, cap = BARRIER_KEYS) {
    this.#wallClock = wallClock;
    this.#cap = cap;
  }

  /** A new stamp: now, in Unix ms, greater than every stamp before it. */
  stamp(): number {
    const t = this.#wallClock();
    this.#last = t > this.#last ? t : this.#last + 0.001;
    return this.#last;
  }

  /**
   * Whether a value computed (or read remotely) by an operation that started at stamp
   * `since` may be stored: no invalidation of `key` (a key string, computed only when
   * needed), of everything, or of one of `tags` came after it started.
   */
  mayStore(key: () => string, since: number, tags?: readonly string[]): boolean {
    if (since <= this.#floor) return false;
    if (this.#keys.size > 0) {
      const at = this.#keys.get(key());
      if (at !== undefined && since <= at) return false;
    }
    if (tags !== undefined && this.#tags.size > 0) {
      for (const tag of tags) {
        const at = this.#tags.get(tag);
        if (at !== undefined && since <= at) return false;
      }
    }
    return true;
  }

  /** Whether a remote value of `key` born at `born` (its writer's clock) with `tags` is
   * newer than every invalidation known here that applies to it. */
  admits(key: () => string, born: number, tags: readonly string[]): boolean {
    if (born < this.#bornFloor || born < this.#unsentFloor) return false;
    if (this.#unsent.size > 0) {
      const at = this.#unsent.get(key());
      if (at !== undefined && born < at) return false;
    }
    if (tags.length > 0 && this.#bornTags.size > 0) {
      for (const tag of tags) {
        const at = this.#bornTags.get(tag);
        if (at !== undefined && born < at) return false;
      }
    }
    return true;
  }

  /** An invalidation of `key` made here (`cacheSet`, `cacheDelete`): returns its stamp;
   * remote values of `key` born before it are misses until {@linkcode Barrier.sent}. */
  invalidateKey(key: string): number {
    const s = this.#recordKey(key);
    this.#unsent.delete(key); // re-inserted last: the map stays in stamp order
    this.#unsent.set(key, s);
    while (this.#unsent.size > this.#cap) {
      const [old, at] = this.#unsent.entries().next().value!;
      this.#unsent.delete(old);
      if (at > this.#unsentFloor) this.#unsentFloor = at;
    }
    return s;
  }

  /** The storage acknowledged the invalidation of `key` made at stamp `at`. */
  sent(key: string, at: number): void {
    if (this.#unsent.get(key) === at) this.#unsent.delete(key);
  }

  /** Every invalidation of keys made here up to now was acknowledged (a clear went
   * through, which covers them). */
  allSent(before: number): void {
    for (const [key, at] of this.#unsent) if (at <= before) this.#unsent.delete(key);
    if (this.#unsentFloor <= before) this.#unsentFloor = -Infinity;
  }

  /** An invalidation of `key` received from another instance. */
  receivedKey(key: string): void {
    this.#recordKey(key);
  }

  /**
   * A clear, made here (`at` undefined) or received with its publisher's stamp `at`:
   * nothing started before it stores, and remote values born before it are misses.
   * Returns its stamp here.
   */
  clear(at?: number): number {
    const s = this.stamp();
    this.#floor = s;
    this.#keys.clear();
    this.#tags.clear();
    const born = at === undefined ? s : Math.min(at, s);
    if (born > this.#bornFloor) this.#bornFloor = born;
    return s;
  }

  /** Messages may have been missed (a bus reconnection): nothing started before now
   * stores. Remote values are not affected (the storage was not changed by this). */
  gap(): void {
    this.#floor = this.stamp();
    this.#keys.clear();
    this.#tags.clear();
  }

  /**
   * An invalidation of `tags`, made here (`at` undefined) or received with its
   * publisher's stamp `at`: no computation that started before it stores an entry
   * carrying one of them, and remote values carrying one of them born before it are
   * misses. Returns its stamp here.
   */
  invalidateTags(tags: readonly string[], at?: number): number {
    const s = this.stamp();
    const born = at === undefined ? s : Math.min(at, s);
    for (const tag of tags) {
      this.#tags.delete(tag);
      this.#tags.set(tag, s);
      if (!((this.#bornTags.get(tag) ?? -Infinity) >= born)) {
        this.#bornTags.delete(tag);
        this.#bornTags.set(tag, born);
      }
    }
    this.#prune(this.#tags);
    // Past the cap, the oldest tag times give way to a floor on every remote value.
    while (this.#bornTags.size > this.#cap) {
      const [tag, at] = this.#bornTags.entries().next().value!;
      this.#bornTags.delete(tag);
      if (at > this.#bornFloor) this.#bornFloor = at;
    }
    return s;
  }

  /**
   * The time of `tag`'s last invalidation, read from the storage (`at`: its publisher's
   * clock, clamped to now here): remote values carrying it born before are misses. Unlike
   * {@linkcode Barrier.invalidateTags}, computations under way here are not refused: the
   * invalidation is an old one.
   */
  learnTag(tag: string, at: number): void {
    const born = Math.min(at, this.#wallClock());
    if ((this.#bornTags.get(tag) ?? -Infinity) >= born) return;
    this.#bornTags.delete(tag);
    this.#bornTags.set(tag, born);
    while (this.#bornTags.size > this.#cap) {
      const [t, old] = this.#bornTags.entries().next().value!;
      this.#bornTags.delete(t);
      if (old > this.#bornFloor) this.#bornFloor = old;
    }
  }

  /** Keys remembered now (for tests and the bound). */
  get size(): number {
    return this.#keys.size;
  }

  #recordKey(key: string): number {
    const s = this.stamp();
    this.#keys.delete(key); // re-inserted last: the map stays in stamp order
    this.#keys.set(key, s);
    this.#prune(this.#keys);
    return s;
  }

  /** Drops the oldest entries past the cap, raising the floor to their stamps. */
  #prune(map: Map<string, number>): void {
    while (map.size > this.#cap) {
      const [key, at] = map.entries().next().value!;
      map.delete(key);
      if (at > this.#floor) this.#floor = at;
    }
  }
}
