/**
 * The SIEVE queue shared by the TypeScript stores ({@linkcode TsSieveStore} and
 * {@linkcode SieveCache}): a slab of numbered slots linked from the newest entry (head) to
 * the oldest (tail), with visited bits, insertion times and the SIEVE hand. It knows
 * nothing of keys: each user keeps its own index from keys to slot numbers, and removes
 * the victim that {@linkcode SieveQueue.evict} returns from it.
 *
 * This is a line-for-line port of `rust/src/sieve.rs` (`SieveStore`), so that the
 * TypeScript fallback and the native store agree on every eviction: the same queue, the
 * same hand movements, the same LFU buckets, the same free-slot reuse (last freed, first
 * reused).
 *
 * LFU (least frequently used) follows Shah, Mitra and Matani, "An O(1) algorithm for
 * implementing the LFU cache eviction scheme" (2010): entries are grouped in buckets by
 * access count, the insertion counting as the first access; a hit moves the entry from the
 * bucket of count `f` to the newest end of the bucket of count `f + 1`; eviction takes the
 * entry that has been longest in the bucket of the lowest count. The buckets are runs of the
 * one queue, highest count at the head and newest first within a run, so the LFU victim is
 * the tail. Setting a present key keeps its count and place.
 *
 * S3-FIFO, W-TinyLFU and ARC keep their entries on queues of their own (`_s3fifo.ts`,
 * `_wtinylfu.ts`, `_arc.ts`): this queue then only hands out slots and keeps their TTLs.
 *
 * @module
 */

import { Strategy } from "../options/options.ts";
import { type MultiQueuePolicy, NIL } from "./_multi_queue.ts";
import { Arc } from "./_arc.ts";
import { S3Fifo } from "./_s3fifo.ts";
import { WTinyLfu } from "./_wtinylfu.ts";

export { NIL } from "./_multi_queue.ts";

/** Eviction policy: a `Strategy` number (`rust/src/sieve.rs`'s `Policy` has the same). */
export type Policy = Strategy;
/** SIEVE: a hit sets the visited bit; the hand evicts the first unvisited entry. */
export const SIEVE = Strategy.Sieve;
/** Least recently used: a hit moves the entry to the head; evict the tail. */
export const LRU = Strategy.Lru;
/** Most recently used: a hit moves the entry to the head; evict the head. */
export const MRU = Strategy.Mru;
/** First in, first out: hits move nothing; evict the tail. */
export const FIFO = Strategy.Fifo;
/**
 * Least frequently used: a hit moves the entry up one frequency bucket; evict the oldest
 * entry of the lowest bucket (the tail).
 */
export const LFU = Strategy.Lfu;
/** S3-FIFO, as libCacheSim's `S3FIFO` (`_s3fifo.ts`). */
export const S3FIFO = Strategy.S3Fifo;
/** W-TinyLFU with Caffeine's adaptive window (`_wtinylfu.ts`). */
export const WTINYLFU = Strategy.WTinyLfu;
/** ARC, as libCacheSim's `ARC` (`_arc.ts`). */
export const ARC = Strategy.Arc;

/** Whether `n` is a {@linkcode Policy} number. */
export function isPolicy(n: unknown): n is Policy {
  return typeof n === "number" && Object.hasOwn(Strategy, n);
}

/** Slots allocated up front, at most; the slab then grows to the capacity. */
const INITIAL_SLOTS = 1024;
/** Most slots a queue allocates at once when it outgrows `INITIAL_SLOTS`; a larger
 * capacity doubles its slab instead. */
const WHOLE_SLAB = 1 << 22;

/** {@linkcode SieveQueue.age}: younger than its TTL. */
export const FRESH = 0;
/** {@linkcode SieveQueue.age}: past its TTL, inside the stale window. */
export const STALE = 1;
/** {@linkcode SieveQueue.age}: past its TTL and stale window. */
export const GONE = 2;

/**
 * Slots linked from the newest (head) to the oldest (tail) entry, with SIEVE (or LRU,
 * MRU, FIFO, LFU) eviction and optional TTL. Time is given by the caller, in ms on any clock
 * that does not go backwards; an entry is expired when `now - insertedAt >= ttl`.
 *
 * Entries may have a TTL of their own ({@linkcode SieveQueue.stamp}), and a stale window
 * may follow each TTL: {@linkcode SieveQueue.age} says whether an entry is fresh
 * (`age < ttl`), stale (`ttl <= age < ttl + stale`) or gone, as `SieveStore` does in Rust.
 *
 * Fields are public for the two stores in this package (hot paths); nothing outside
 * `src/` may use this class.
 */
export class SieveQueue {
  /** Most entries kept (`Infinity`: unbounded). */
  readonly capacity: number;
  /** Eviction policy. */
  readonly policy: Policy;
  /** Whether entries expire. */
  readonly hasTtl: boolean;
  /** Age in ms at which an entry expires (`Infinity` without TTL). */
  readonly ttl: number;
  /** Stale window in ms after an entry's TTL (0: none). */
  readonly stale: number;
  /** Whether any entry may expire: the queue has a TTL, or `ttls` is in use. */
  expiring: boolean;
  /** The TTL of each slot's entry (its own, else the queue's; `Infinity`: never), once an
   * entry was given a TTL of its own; empty before (every entry has the queue's). */
  ttls: Float64Array = new Float64Array(0);
  /** Towards the head (newer entry), or {@linkcode NIL}; by slot. */
  newer: Int32Array;
  /** Towards the tail (older entry), or {@linkcode NIL}; by slot. */
  older: Int32Array;
  /** SIEVE visited bits (1 = visited); by slot. */
  visited: Uint8Array;
  /** Insertion times in ms, by slot, while entries may expire (`expiring`); empty before
   * (nothing reads them: 8 bytes an entry saved without a TTL). */
  insertedAt: Float64Array;
  /** LFU only (else empty): the bucket holding each entry, by slot. */
  bucketOf: Int32Array;
  /** LFU only (else empty): access count of each bucket, by bucket. */
  bucketCount: Float64Array;
  /** LFU only (else empty): newest entry (towards the head) of each bucket, by bucket. */
  bucketNewest: Int32Array;
  /** LFU only (else empty): oldest entry (towards the tail) of each bucket, by bucket. */
  bucketOldest: Int32Array;
  /** LFU: buckets ever handed out since creation or the last clear. */
  buckets = 0;
  /** LFU: freed buckets, reused last freed first. */
  freeBuckets: number[] = [];
  /** S3-FIFO, W-TinyLFU or ARC (else `null`): the policy that keeps the entries' order. */
  readonly ext: MultiQueuePolicy | null;
  /** Newest entry. */
  head: number = NIL;
  /** Oldest entry. */
  tail: number = NIL;
  /** Where the next SIEVE scan starts ({@linkcode NIL}: at the tail). */
  hand: number = NIL;
  /** Live entries. */
  size = 0;
  /** Slots ever handed out since creation or the last clear (the Rust `nodes.len()`). */
  slots = 0;
  /** Freed slots, reused last freed first. */
  free: number[] = [];
  /** Entries that {@linkcode SieveQueue.evict} removed; {@linkcode SieveQueue.clear} keeps
   * it (the owner resets it with its other counters). */
  evictions = 0;

  /**
   * @param capacity Most entries kept: a positive integer or `Infinity` (checked by the
   *   caller).
   * @param ttl Age in ms at which an entry expires, or `undefined` for never (checked by
   *   the caller).
   * @param policy Eviction policy.
   * @param stale Stale window in ms after each entry's TTL (0: none; checked by the caller).
   */
  constructor(capacity: number, ttl: number | undefined, policy: Policy, stale = 0) {
    this.capacity = capacity;
    this.policy = policy;
    this.hasTtl = ttl !== undefined;
    this.ttl = ttl ?? Infinity;
    this.stale = stale;
    this.expiring = this.hasTtl;
    const n = Math.min(capacity, INITIAL_SLOTS);
    this.newer = new Int32Array(n);
    this.older = new Int32Array(n);
    this.visited = new Uint8Array(n);
    this.insertedAt = new Float64Array(this.hasTtl ? n : 0);
    // A bucket per live entry at most, so the bucket arrays grow with the slot arrays.
    const b = policy === LFU ? n : 0;
    this.bucketOf = new Int32Array(b);
    this.bucketCount = new Float64Array(b);
    this.bucketNewest = new Int32Array(b);
    this.bucketOldest = new Int32Array(b);
    this.ext = policy === S3FIFO
      ? new S3Fifo(capacity, n)
      : policy === WTINYLFU
      ? new WTinyLfu(capacity, n)
      : policy === ARC
      ? new Arc(capacity, n)
      : null;
  }

  /** Whether the entry at `slot` is expired at `now` (ms), by the queue's TTL alone (for
   * users that give no entry a TTL of its own and have no stale window). */
  expired(slot: number, now: number): boolean {
    return this.hasTtl && now - this.insertedAt[slot]! >= this.ttl;
  }

  /** Where the entry at `slot` stands at `now`: {@linkcode FRESH}, {@linkcode STALE} or
   * {@linkcode GONE}. */
  age(slot: number, now: number): number {
    if (!this.expiring) return FRESH;
    const ttl = this.ttls.length === 0 ? this.ttl : this.ttls[slot]!;
    if (ttl === Infinity) return FRESH;
    const age = now - this.insertedAt[slot]!;
    return age < ttl ? FRESH : age < ttl + this.stale ? STALE : GONE;
  }

  /**
   * Records the insertion of the entry at `slot` at `now`, with its own TTL `ownTtl`
   * (`undefined`: the queue's). The first own TTL starts the `ttls` array.
   */
  stamp(slot: number, now: number, ownTtl: number | undefined): void {
    if (ownTtl !== undefined && this.ttls.length === 0) {
      this.ttls = new Float64Array(this.newer.length).fill(this.ttl);
      // The entries before have the queue's TTL: never, when the times were not kept.
      if (this.insertedAt.length === 0) this.insertedAt = new Float64Array(this.newer.length);
      this.expiring = true;
    }
    if (this.expiring) this.insertedAt[slot] = now;
    if (this.ttls.length !== 0) this.ttls[slot] = ownTtl ?? this.ttl;
  }

  /**
   * Records a hit on `slot`: SIEVE sets its visited bit, LRU and MRU move it to the head,
   * LFU moves it up one frequency bucket, S3-FIFO and W-TinyLFU tell their policy.
   */
  hit(slot: number): void {
    const policy = this.policy;
    if (policy === SIEVE) {
      this.visited[slot] = 1;
    } else if (policy === LFU) {
      this.#lfuHit(slot);
    } else if (policy > LFU) {
      this.ext!.hit(slot);
    } else if (policy !== FIFO && this.head !== slot) {
      this.#unlink(slot);
      this.#pushHead(slot);
    }
  }

  /**
   * Takes a slot for a new entry inserted at `now` and puts it at the head (LFU: at the
   * newest end of the bucket of count 1; S3-FIFO, W-TinyLFU: where their policy says, after
   * its `arrive`). The caller must first make room with {@linkcode SieveQueue.evict} when
   * `size >= capacity`.
   *
   * @param hash The key's hash (W-TinyLFU's sketch; unused by the other policies).
   */
  add(now: number, hash = 0): number {
    let slot = this.free.pop();
    if (slot === undefined) {
      slot = this.slots++;
      if (slot >= this.newer.length) this.#grow();
    }
    if (this.expiring) this.insertedAt[slot] = now;
    this.visited[slot] = 0;
    const ext = this.ext;
    if (ext !== null) ext.add(slot, hash);
    else if (this.policy === LFU) this.#lfuPush(slot);
    else this.#pushHead(slot);
    this.size++;
    return slot;
  }

  /**
   * Removes one entry by the policy and frees its slot, which it returns ({@linkcode NIL}
   * when empty). The caller removes that slot from its index.
   */
  evict(): number {
    if (this.size === 0) return NIL;
    const policy = this.policy;
    const victim = policy === SIEVE
      ? this.#sieveVictim()
      : policy === MRU
      ? this.head
      : this.ext === null
      ? this.tail
      : this.ext.victim();
    this.remove(victim);
    this.evictions++;
    return victim;
  }

  /** Removes the entry at `slot` from the queue and frees the slot. */
  remove(slot: number): void {
    if (this.ext !== null) {
      this.ext.remove(slot);
    } else {
      if (this.hand === slot) this.hand = this.newer[slot]!;
      if (this.policy === LFU) this.#lfuDetach(slot);
      this.#unlink(slot);
    }
    this.free.push(slot);
    this.size--;
  }

  /** Removes every entry and forgets every slot. */
  clear(): void {
    this.head = NIL;
    this.tail = NIL;
    this.hand = NIL;
    this.size = 0;
    this.slots = 0;
    this.free = [];
    this.buckets = 0;
    this.freeBuckets = [];
    this.ttls = new Float64Array(0);
    this.expiring = this.hasTtl;
    if (!this.hasTtl) this.insertedAt = new Float64Array(0);
    this.ext?.clear();
    if (this.newer.length > INITIAL_SLOTS) {
      const n = Math.min(this.capacity, INITIAL_SLOTS);
      this.newer = new Int32Array(n);
      this.older = new Int32Array(n);
      this.visited = new Uint8Array(n);
      this.insertedAt = new Float64Array(this.hasTtl ? n : 0);
      const b = this.policy === LFU ? n : 0;
      this.bucketOf = new Int32Array(b);
      this.bucketCount = new Float64Array(b);
      this.bucketNewest = new Int32Array(b);
      this.bucketOldest = new Int32Array(b);
      this.ext?.grow(n);
    }
  }

  /**
   * Live slots from the head (newest) to the tail (oldest). Under LFU, from the highest
   * count to the lowest and, within a count, newest in the bucket first: the tail is the
   * next victim. S3-FIFO and W-TinyLFU: in their own order (`_s3fifo.ts`, `_wtinylfu.ts`).
   */
  order(): number[] {
    if (this.ext !== null) return this.ext.order();
    const out: number[] = [];
    for (let slot = this.head; slot !== NIL; slot = this.older[slot]!) out.push(slot);
    return out;
  }

  /** Access count of the entry at `slot` under LFU (0 under the other policies). */
  count(slot: number): number {
    return this.policy === LFU ? this.bucketCount[this.bucketOf[slot]!]! : 0;
  }

  /**
   * Checks the invariants: the queue links both ways, the hand is on it, its length is
   * `size`, free and live slots partition the slab, and `isIndexed` holds for each live
   * slot; under LFU, the buckets are runs of the queue with counts decreasing strictly
   * towards the tail, and free and live buckets partition the bucket slab. Throws an
   * `Error` on the first violation (tests only).
   */
  validate(isIndexed: (slot: number) => boolean): void {
    const fail = (what: string): never => {
      throw new Error(`SieveQueue invariant violated: ${what}`);
    };
    if (this.ext !== null) {
      this.#validateExt(this.ext, isIndexed, fail);
      return;
    }
    const live = new Set<number>();
    let prev = NIL;
    let handSeen = this.hand === NIL;
    for (let slot = this.head; slot !== NIL; slot = this.older[slot]!) {
      if (slot < 0 || slot >= this.slots) fail(`slot ${slot} out of the slab`);
      if (live.has(slot)) fail(`slot ${slot} twice on the queue`);
      if (this.newer[slot] !== prev) fail(`broken newer link at slot ${slot}`);
      if (!isIndexed(slot)) fail(`slot ${slot} on the queue but not indexed`);
      if (slot === this.hand) handSeen = true;
      live.add(slot);
      prev = slot;
      if (live.size > this.size) fail("queue longer than size");
    }
    if (this.tail !== prev) fail("tail is not the last entry");
    if (live.size !== this.size) fail("queue length differs from size");
    if (!handSeen) fail("hand is not on the queue");
    this.#validateCommon(live, fail);
    if (this.policy === LFU) this.#validateBuckets(fail);
    else if (this.bucketOf.length !== 0 || this.buckets !== 0) fail("buckets outside LFU");
  }

  /** S3-FIFO, W-TinyLFU: the policy's queues hold exactly the live slots. */
  #validateExt(
    ext: MultiQueuePolicy,
    isIndexed: (slot: number) => boolean,
    fail: (what: string) => never,
  ): void {
    const live = ext.validate(fail);
    for (const slot of live) {
      if (slot < 0 || slot >= this.slots) fail(`slot ${slot} out of the slab`);
      if (!isIndexed(slot)) fail(`slot ${slot} on a queue but not indexed`);
    }
    if (live.size !== this.size) fail("queue length differs from size");
    if (this.head !== NIL || this.tail !== NIL || this.hand !== NIL) fail("the own queue is used");
    this.#validateCommon(live, fail);
    if (this.bucketOf.length !== 0 || this.buckets !== 0) fail("buckets outside LFU");
  }

  #validateCommon(live: Set<number>, fail: (what: string) => never): void {
    if (this.size > this.capacity) fail("more entries than capacity");
    if (this.size + this.free.length !== this.slots) fail("slab leak");
    for (const slot of this.free) if (live.has(slot)) fail(`free slot ${slot} is live`);
    if (this.policy !== SIEVE && this.hand !== NIL) fail("hand moved outside SIEVE");
    if (this.expiring !== (this.hasTtl || this.ttls.length !== 0)) fail("expiring out of step");
    if (this.ttls.length !== 0 && this.ttls.length !== this.newer.length) fail("ttls size");
    if (this.expiring && this.insertedAt.length !== this.newer.length) fail("insertedAt size");
    for (const slot of live) {
      const ttl = this.ttls.length === 0 ? this.ttl : this.ttls[slot]!;
      if (!(ttl > 0)) fail(`slot ${slot} has TTL ${ttl}`);
    }
  }

  #validateBuckets(fail: (what: string) => never): void {
    const live = new Set<number>();
    let lastCount = Infinity;
    let run = NIL;
    let prev = NIL;
    for (let slot = this.head; slot !== NIL; slot = this.older[slot]!) {
      const b = this.bucketOf[slot]!;
      if (b < 0 || b >= this.buckets) fail(`slot ${slot} in no bucket`);
      if (b !== run) {
        if (this.bucketNewest[b] !== slot) fail(`bucket ${b} does not start at its newest`);
        const count = this.bucketCount[b]!;
        if (!(count >= 1 && count < lastCount)) {
          fail(`bucket counts not decreasing towards the tail at slot ${slot}`);
        }
        if (run !== NIL && this.bucketOldest[run] !== prev) fail(`bucket ${run} ends early`);
        if (live.has(b)) fail(`bucket ${b} is not one run`);
        live.add(b);
        lastCount = count;
        run = b;
      }
      prev = slot;
    }
    if (run !== NIL && this.bucketOldest[run] !== prev) fail("last bucket ends early");
    const free = new Set<number>();
    for (const b of this.freeBuckets) {
      if (live.has(b) || free.has(b)) fail(`free bucket ${b} is live or twice free`);
      free.add(b);
    }
    if (live.size + free.size !== this.buckets) fail("bucket slab leak");
  }

  /**
   * The SIEVE hand scan: from the hand (or the tail) towards the head, clearing visited
   * bits, wrapping to the tail; stops at the first unvisited entry, which it returns.
   */
  #sieveVictim(): number {
    const visited = this.visited;
    const newer = this.newer;
    let slot = this.hand === NIL ? this.tail : this.hand;
    while (visited[slot] === 1) {
      visited[slot] = 0;
      const next = newer[slot]!;
      slot = next === NIL ? this.tail : next;
    }
    // The hand stays where the scan stopped: just past the victim, towards the head.
    this.hand = newer[slot]!;
    return slot;
  }

  /**
   * LFU: puts the new entry `slot` (count 1) at the newest end of the bucket of count 1,
   * which, when it exists, is the lowest bucket and so holds the tail; else at the tail,
   * in a new bucket.
   */
  #lfuPush(slot: number): void {
    const tail = this.tail;
    if (tail !== NIL) {
      const b = this.bucketOf[tail]!;
      if (this.bucketCount[b] === 1) {
        const below = this.bucketNewest[b]!;
        this.bucketNewest[b] = slot;
        this.bucketOf[slot] = b;
        this.#linkNewerThan(slot, below);
        return;
      }
    }
    this.#pushTail(slot);
    this.bucketOf[slot] = this.#newBucket(1, slot);
  }

  /**
   * LFU: moves `slot` from its bucket (count `f`) to the newest end of the bucket of count
   * `f + 1`, which, when it exists, is the next run towards the head; else a new bucket
   * just above the old one (or the old one itself, when `slot` was alone in it).
   */
  #lfuHit(slot: number): void {
    const bucketOf = this.bucketOf;
    const bucketNewest = this.bucketNewest;
    const b = bucketOf[slot]!;
    const count = this.bucketCount[b]!;
    const newest = bucketNewest[b]!;
    const above = this.newer[newest]!;
    const next = above === NIL ? NIL : bucketOf[above]!;
    if (next !== NIL && this.bucketCount[next] === count + 1) {
      this.#lfuDetach(slot);
      const below = bucketNewest[next]!;
      bucketNewest[next] = slot;
      bucketOf[slot] = next;
      this.#moveNewerThan(slot, below);
    } else if (newest === slot && this.bucketOldest[b] === slot) {
      // Alone in its bucket, with no bucket of count f + 1: the bucket moves up.
      this.bucketCount[b] = count + 1;
    } else {
      this.#lfuDetach(slot);
      const below = bucketNewest[b]!;
      bucketOf[slot] = this.#newBucket(count + 1, slot);
      this.#moveNewerThan(slot, below);
    }
  }

  /**
   * LFU: takes `slot` out of its bucket (not off the queue), freeing the bucket when it
   * empties. Runs before the queue links of `slot` change.
   */
  #lfuDetach(slot: number): void {
    const b = this.bucketOf[slot]!;
    this.bucketOf[slot] = NIL;
    const newest = this.bucketNewest[b] === slot;
    const oldest = this.bucketOldest[b] === slot;
    if (newest && oldest) this.freeBuckets.push(b);
    else if (newest) this.bucketNewest[b] = this.older[slot]!;
    else if (oldest) this.bucketOldest[b] = this.newer[slot]!;
  }

  #newBucket(count: number, slot: number): number {
    const b = this.freeBuckets.pop() ?? this.buckets++;
    this.bucketCount[b] = count;
    this.bucketNewest[b] = slot;
    this.bucketOldest[b] = slot;
    return b;
  }

  /** Moves the queued `slot` to just towards the head from `below` (another queued slot). */
  #moveNewerThan(slot: number, below: number): void {
    if (this.older[slot] !== below) {
      this.#unlink(slot);
      this.#linkNewerThan(slot, below);
    }
  }

  /** Links the unlinked `slot` just towards the head from the queued `below`. */
  #linkNewerThan(slot: number, below: number): void {
    const above = this.newer[below]!;
    this.newer[slot] = above;
    this.older[slot] = below;
    this.newer[below] = slot;
    if (above === NIL) this.head = slot;
    else this.older[above] = slot;
  }

  /** Links the unlinked `slot` at the tail. */
  #pushTail(slot: number): void {
    const oldTail = this.tail;
    this.newer[slot] = oldTail;
    this.older[slot] = NIL;
    if (oldTail === NIL) this.head = slot;
    else this.older[oldTail] = slot;
    this.tail = slot;
  }

  #unlink(slot: number): void {
    const newer = this.newer[slot]!;
    const older = this.older[slot]!;
    if (newer === NIL) this.head = older;
    else this.older[newer] = older;
    if (older === NIL) this.tail = newer;
    else this.newer[older] = newer;
    this.newer[slot] = NIL;
    this.older[slot] = NIL;
  }

  #pushHead(slot: number): void {
    const oldHead = this.head;
    this.newer[slot] = NIL;
    this.older[slot] = oldHead;
    if (oldHead === NIL) this.tail = slot;
    else this.newer[oldHead] = slot;
    this.head = slot;
  }

  #grow(): void {
    // Past the first slots, a bounded queue takes its whole capacity at once (up to
    // `WHOLE_SLAB` slots): the pages of a zeroed typed array are only resident once written,
    // and no half-size copies are left behind in the allocator on the way up.
    const n = this.capacity <= WHOLE_SLAB
      ? this.capacity
      : Math.min(this.capacity, this.newer.length * 2);
    const newer = new Int32Array(n);
    newer.set(this.newer);
    this.newer = newer;
    const older = new Int32Array(n);
    older.set(this.older);
    this.older = older;
    const visited = new Uint8Array(n);
    visited.set(this.visited);
    this.visited = visited;
    if (this.insertedAt.length !== 0) {
      const insertedAt = new Float64Array(n);
      insertedAt.set(this.insertedAt);
      this.insertedAt = insertedAt;
    }
    if (this.ttls.length !== 0) {
      const ttls = new Float64Array(n).fill(this.ttl);
      ttls.set(this.ttls);
      this.ttls = ttls;
    }
    if (this.policy === LFU) {
      const bucketOf = new Int32Array(n);
      bucketOf.set(this.bucketOf);
      this.bucketOf = bucketOf;
      const bucketCount = new Float64Array(n);
      bucketCount.set(this.bucketCount);
      this.bucketCount = bucketCount;
      const bucketNewest = new Int32Array(n);
      bucketNewest.set(this.bucketNewest);
      this.bucketNewest = bucketNewest;
      const bucketOldest = new Int32Array(n);
      bucketOldest.set(this.bucketOldest);
      this.bucketOldest = bucketOldest;
    }
    this.ext?.grow(n);
  }
}
