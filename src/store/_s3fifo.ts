/**
 * S3-FIFO (Yang et al., "FIFO queues are all you need for cache eviction", SOSP 2023), as
 * libCacheSim's current `S3FIFO` (`libCacheSim/cache/eviction/S3FIFO.c`, PyPI
 * `libcachesim` 0.3.5), not the paper's first version (`S3FIFOv0.c`). A line-for-line port
 * of `rust/src/sieve/s3fifo.rs`; see there for the algorithm and its parameters.
 *
 * @module
 */

import { GhostQueue } from "./_ghost.ts";
import { type MultiQueuePolicy, NIL, SlotLists } from "./_multi_queue.ts";

/** The small queue: new entries, FIFO. */
const SMALL = 0;
/** The main queue: entries seen twice, FIFO with a 2-bit clock. */
const MAIN = 1;
/** libCacheSim's `small-size-ratio`. */
export const SMALL_RATIO = 0.1;
/** libCacheSim's `ghost-size-ratio`. */
export const GHOST_RATIO = 0.9;
/** libCacheSim's `move-to-main-threshold`: hits in the small queue that earn the main. */
export const MOVE_TO_MAIN = 2;
/** Capacities from this one up are unbounded (the native store's slot limit). */
const UNBOUNDED = 0x7fffffff;
/** Largest access count kept (2 bits). */
const MAX_FREQ = 3;

/**
 * S3-FIFO over the slots of a `SieveQueue`: a small FIFO (10% of the capacity,
 * at least 1 entry), a main FIFO with a 2-bit access count per entry, and a ghost FIFO of
 * the keys recently evicted from the small queue (90% of the capacity). Order
 * ({@linkcode S3Fifo.order}): the small queue then the main one, each newest first.
 */
export class S3Fifo implements MultiQueuePolicy {
  readonly lists: SlotLists;
  /** Access count (0 to 3) by slot. */
  freq: Uint8Array;
  /** Capacity of the small queue. */
  readonly smallMax: number;
  /** Capacity of the main queue. */
  readonly mainMax: number;
  /** Keys evicted from the small queue. */
  readonly ghost: GhostQueue;
  /** Whether anything was evicted since creation or the last clear. */
  hasEvicted = false;
  /** Whether the key that arrived was in the ghost (it goes to the main queue). */
  #toMain = false;
  /** Whether the last victim came from the small queue (its key goes to the ghost). */
  #toGhost = false;

  /**
   * @param capacity Most entries of the store (`Infinity`: unbounded).
   * @param slots Slots allocated up front.
   */
  constructor(capacity: number, slots: number) {
    this.lists = new SlotLists(2, slots);
    this.freq = new Uint8Array(slots);
    // Unbounded: every entry stays in the small queue and the ghost keeps nothing.
    const bounded = capacity < UNBOUNDED;
    this.smallMax = bounded ? Math.max(1, Math.trunc(capacity * SMALL_RATIO)) : capacity;
    this.mainMax = bounded ? capacity - this.smallMax : 0;
    this.ghost = new GhostQueue(bounded ? Math.trunc(capacity * GHOST_RATIO) : 0);
  }

  arrive(key: string, hash: number): void {
    this.#toMain = this.ghost.delete(key, hash);
  }

  add(slot: number): void {
    const lists = this.lists;
    const main = this.#toMain || (!this.hasEvicted && lists.len[SMALL]! >= this.smallMax);
    this.#toMain = false;
    lists.pushHead(main ? MAIN : SMALL, slot);
    this.freq[slot] = 0;
  }

  hit(slot: number): void {
    const f = this.freq[slot]!;
    if (f < MAX_FREQ) this.freq[slot] = f + 1;
  }

  victim(): number {
    const lists = this.lists;
    const freq = this.freq;
    this.hasEvicted = true;
    for (;;) {
      if (lists.len[MAIN]! > this.mainMax || lists.len[SMALL] === 0) {
        // Main: a 2-bit clock; an entry with accesses goes round again with one less.
        for (;;) {
          const t = lists.tail[MAIN]!;
          const f = freq[t]!;
          if (f === 0) {
            this.#toGhost = false;
            return t;
          }
          lists.moveToHead(MAIN, t);
          freq[t] = f - 1;
        }
      }
      // Small: an entry hit often enough moves to the main queue, else it is the victim.
      while (lists.len[SMALL]! > 0) {
        const t = lists.tail[SMALL]!;
        if (freq[t]! < MOVE_TO_MAIN) {
          this.#toGhost = true;
          return t;
        }
        lists.unlink(t);
        lists.pushHead(MAIN, t);
        freq[t] = 0;
      }
      // Every small entry moved to the main queue: evict again, from the main queue.
    }
  }

  evicted(key: string, hash: number): void {
    if (this.#toGhost) this.ghost.add(key, hash);
    this.#toGhost = false;
  }

  remove(slot: number): void {
    this.lists.unlink(slot);
  }

  clear(): void {
    this.lists.clear();
    this.ghost.clear();
    this.hasEvicted = false;
    this.#toMain = false;
    this.#toGhost = false;
  }

  grow(n: number): void {
    this.lists.grow(n);
    const freq = new Uint8Array(n);
    freq.set(this.freq.subarray(0, n));
    this.freq = freq;
  }

  order(): number[] {
    return [...this.lists.order(SMALL), ...this.lists.order(MAIN)];
  }

  describe(slot: number): [string, number] {
    return [this.lists.listOf[slot] === SMALL ? "small" : "main", this.freq[slot]!];
  }

  ghostOrder(): string[] {
    return this.ghost.order();
  }

  validate(fail: (what: string) => never): Set<number> {
    const live = this.lists.validate(fail);
    for (const s of live) if (this.freq[s]! > MAX_FREQ) fail(`slot ${s} count ${this.freq[s]}`);
    if (this.ghost.size > this.ghost.capacity) fail("ghost over its capacity");
    if (this.lists.head[SMALL] === NIL && this.lists.len[SMALL] !== 0) fail("small length");
    return live;
  }
}
