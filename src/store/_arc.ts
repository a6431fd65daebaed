/**
 * ARC (Megiddo and Modha, "ARC: A Self-Tuning, Low Overhead Replacement Cache", FAST 2003),
 * as libCacheSim's `ARC` (`libCacheSim/cache/eviction/ARC.c`, PyPI `libcachesim` 0.3.5). A
 * line-for-line port of `rust/src/sieve/arc.rs`; see there for the algorithm, where
 * libCacheSim departs from the paper and what this does where libCacheSim's traces cannot
 * go (deletes, TTLs, a byte budget, no bound).
 *
 * @module
 */

import { type MultiQueuePolicy, NIL, SlotLists } from "./_multi_queue.ts";
import { unprobe } from "./_hash.ts";

/** Entries seen once lately (recency). */
const T1 = 0;
/** Entries seen at least twice lately (frequency). */
const T2 = 1;
/** Keys lately evicted from T1. */
const B1 = 0;
/** Keys lately evicted from T2. */
const B2 = 1;
/** Capacities from this one up are unbounded (the native store's slot limit). */
const UNBOUNDED = 0x7fffffff;

/**
 * ARC over the slots of a `SieveQueue`: LRU lists T1 (seen once) and T2 (seen twice or
 * more), ghost lists B1 and B2 of the keys lately evicted from them, and `p`, the target
 * size of T1, adapted by the keys found in the ghosts. Order ({@linkcode Arc.order}): T1
 * then T2, each newest first.
 */
export class Arc implements MultiQueuePolicy {
  readonly lists: SlotLists;
  readonly ghosts: ArcGhosts = new ArcGhosts();
  /** `c`, the store's capacity. */
  readonly capacity: number;
  /** Whether the capacity is bounded (else: no ghosts). */
  readonly bounded: boolean;
  /** Target size of T1, 0 to `c`. */
  p = 0;
  /** The ghost list (B1 or B2) that held the key that arrived, or NIL. */
  #arrivedFrom = NIL;
  /** The ghost list (B1 or B2) where the victim just chosen goes, or NIL. */
  #toGhost = NIL;

  /**
   * @param capacity Most entries of the store (`Infinity`: unbounded).
   * @param slots Slots allocated up front.
   */
  constructor(capacity: number, slots: number) {
    this.lists = new SlotLists(2, slots);
    this.capacity = capacity;
    this.bounded = capacity < UNBOUNDED;
  }

  arrive(key: string, hash: number): void {
    this.#arrivedFrom = NIL;
    const ghosts = this.ghosts;
    if (ghosts.size === 0) return;
    const list = ghosts.take(key, hash);
    if (list === NIL) return;
    // The lengths before the key left its list, as libCacheSim computes them.
    const b1 = ghosts.len[B1]!;
    const b2 = ghosts.len[B2]!;
    if (list === B1) this.p = Math.min(this.p + Math.max(b2 / (b1 + 1), 1), this.capacity);
    else this.p = Math.max(this.p - Math.max(b1 / (b2 + 1), 1), 0);
    this.#arrivedFrom = list;
  }

  add(slot: number): void {
    this.lists.pushHead(this.#arrivedFrom === NIL ? T1 : T2, slot);
    this.#arrivedFrom = NIL;
  }

  hit(slot: number): void {
    this.lists.moveToHead(T2, slot);
  }

  victim(): number {
    if (!this.bounded) {
      this.#toGhost = NIL;
      return this.#replace();
    }
    if (this.#arrivedFrom === NIL) {
      const lists = this.lists;
      const ghosts = this.ghosts;
      const t1 = lists.len[T1]!;
      const b1 = ghosts.len[B1]!;
      if (t1 + b1 >= this.capacity) {
        if (b1 === 0) {
          this.#toGhost = NIL;
          return lists.tail[T1]!;
        }
        ghosts.popOldest(B1);
      } else {
        const b2 = ghosts.len[B2]!;
        if (t1 + b1 + lists.len[T2]! + b2 >= 2 * this.capacity && b2 > 0) ghosts.popOldest(B2);
      }
    }
    const victim = this.#replace();
    this.#toGhost = this.lists.listOf[victim]!;
    return victim;
  }

  /** REPLACE: T1's oldest entry or T2's, by `p`. */
  #replace(): number {
    const lists = this.lists;
    const t1 = lists.len[T1]!;
    const p = this.p;
    if ((t1 > 0 && (t1 > p || (t1 === p && this.#arrivedFrom === B2))) || lists.len[T2] === 0) {
      return lists.tail[T1]!;
    }
    return lists.tail[T2]!;
  }

  evicted(key: string, hash: number): void {
    if (this.#toGhost !== NIL) this.ghosts.push(this.#toGhost, key, hash);
    this.#toGhost = NIL;
  }

  remove(slot: number): void {
    this.lists.unlink(slot);
  }

  clear(): void {
    this.lists.clear();
    this.ghosts.clear();
    this.p = 0;
    this.#arrivedFrom = NIL;
    this.#toGhost = NIL;
  }

  grow(n: number): void {
    this.lists.grow(n);
  }

  order(): number[] {
    return [...this.lists.order(T1), ...this.lists.order(T2)];
  }

  describe(slot: number): [string, number] {
    return [this.lists.listOf[slot] === T1 ? "T1" : "T2", 0];
  }

  /** B1's keys then B2's, each newest first. */
  ghostOrder(): string[] {
    return [...this.ghosts.order(B1), ...this.ghosts.order(B2)];
  }

  validate(fail: (what: string) => never): Set<number> {
    const live = this.lists.validate(fail);
    this.ghosts.validate(fail);
    if (!(this.p >= 0 && this.p <= this.capacity)) fail(`p ${this.p} outside 0..${this.capacity}`);
    const ghosts = this.ghosts.size;
    // |T1| + |T2| + |B1| + |B2| <= 2c in the paper; under a byte budget the store may hold
    // fewer entries than c while its ghosts still number up to 2c - 1.
    if (this.bounded ? ghosts >= 2 * this.capacity : ghosts !== 0) {
      fail(`${ghosts} ghosts for a capacity of ${this.capacity}`);
    }
    if (this.#arrivedFrom !== NIL || this.#toGhost !== NIL) fail("a pending arrival or ghost");
    return live;
  }
}

/**
 * ARC's ghost lists B1 and B2: keys (strings, with their hashes) without values, each list
 * from its newest key to its oldest, with one index over both (a new key costs one lookup):
 * an open-addressing table (linear probing, backward-shift deletion), as `GhostQueue`'s.
 * A key is in one list at most. Grows as keys come (up to 2c - 1 of them).
 */
export class ArcGhosts {
  /** Keys held in all. */
  size = 0;
  /** Keys held by list. */
  readonly len: [number, number] = [0, 0];
  /** Node numbers, NIL = empty; a power of two, at most half full. */
  #table = new Int32Array(16).fill(NIL);
  #mask = 15;
  /** By node: the key, its hash, its list and the links towards the newest and oldest. */
  #keys: string[] = [];
  #hashes = new Int32Array(8);
  #lists = new Uint8Array(8);
  #newer = new Int32Array(8);
  #older = new Int32Array(8);
  #free: number[] = [];
  #nodes = 0;
  #head: [number, number] = [NIL, NIL];
  #tail: [number, number] = [NIL, NIL];

  /** Removes `key` (of hash `hash`); returns the list that held it, or NIL. */
  take(key: string, hash: number): number {
    const node = this.#find(key, hash);
    if (node === NIL) return NIL;
    const list = this.#lists[node]!;
    this.#remove(node);
    return list;
  }

  /** Adds `key` (of hash `hash`), which no list holds, as the newest of `list`. */
  push(list: number, key: string, hash: number): void {
    let node = this.#free.pop();
    if (node === undefined) {
      node = this.#nodes++;
      if (node >= this.#hashes.length) this.#growNodes();
    }
    this.#keys[node] = key;
    this.#hashes[node] = hash;
    this.#lists[node] = list;
    const old = this.#head[list]!;
    this.#newer[node] = NIL;
    this.#older[node] = old;
    if (old === NIL) this.#tail[list] = node;
    else this.#newer[old] = node;
    this.#head[list] = node;
    this.len[list]!++;
    this.size++;
    if (this.size * 2 > this.#table.length) this.#growTable();
    this.#place(node, hash);
  }

  /** Forgets the oldest key of `list` (not empty). */
  popOldest(list: number): void {
    this.#remove(this.#tail[list]!);
  }

  /** Forgets every key. */
  clear(): void {
    this.#table = new Int32Array(16).fill(NIL);
    this.#mask = 15;
    this.#keys = [];
    this.#hashes = new Int32Array(8);
    this.#lists = new Uint8Array(8);
    this.#newer = new Int32Array(8);
    this.#older = new Int32Array(8);
    this.#free = [];
    this.#nodes = 0;
    this.#head = [NIL, NIL];
    this.#tail = [NIL, NIL];
    this.len[0] = this.len[1] = 0;
    this.size = 0;
  }

  /** The keys of `list` from the newest to the oldest, for tests. */
  order(list: number): string[] {
    const out: string[] = [];
    for (let n = this.#head[list]!; n !== NIL; n = this.#older[n]!) out.push(this.#keys[n]!);
    return out;
  }

  /** Checks the links, lengths and index; calls `fail` on the first violation. */
  validate(fail: (what: string) => never): void {
    let seen = 0;
    for (const list of [B1, B2]) {
      let prev = NIL;
      let n = 0;
      for (let node = this.#head[list]!; node !== NIL; node = this.#older[node]!) {
        if (this.#newer[node] !== prev) fail(`ghost ${node}: broken newer link`);
        if (this.#lists[node] !== list) fail(`ghost ${node} marked on another list`);
        if (this.#find(this.#keys[node]!, this.#hashes[node]!) !== node) {
          fail(`ghost ${node} not indexed`);
        }
        prev = node;
        if (++n > this.len[list]!) fail(`ghost list ${list} longer than its length`);
      }
      if (this.#tail[list] !== prev) fail(`ghost list ${list}: tail is not the last`);
      if (n !== this.len[list]) fail(`ghost list ${list} length`);
      seen += n;
    }
    let used = 0;
    for (const node of this.#table) if (node !== NIL) used++;
    if (used !== seen || seen !== this.size) fail(`ghost index holds ${used} of ${seen}`);
    if (seen + this.#free.length !== this.#nodes) fail("ghost slab leak");
  }

  #find(key: string, hash: number): number {
    const table = this.#table;
    const mask = this.#mask;
    for (let i = hash & mask;; i = (i + 1) & mask) {
      const node = table[i]!;
      if (node === NIL) return NIL;
      if (this.#hashes[node] === hash && this.#keys[node] === key) return node;
    }
  }

  #place(node: number, hash: number): void {
    const table = this.#table;
    const mask = this.#mask;
    let i = hash & mask;
    while (table[i] !== NIL) i = (i + 1) & mask;
    table[i] = node;
  }

  /** Takes `node` off its list and out of the table (backward-shift deletion). */
  #remove(node: number): void {
    const list = this.#lists[node]!;
    const newer = this.#newer[node]!;
    const older = this.#older[node]!;
    if (newer === NIL) this.#head[list] = older;
    else this.#older[newer] = older;
    if (older === NIL) this.#tail[list] = newer;
    else this.#newer[older] = newer;
    unprobe(this.#table, this.#mask, this.#hashes, node);
    this.#keys[node] = "";
    this.#free.push(node);
    this.len[list]!--;
    this.size--;
  }

  #growNodes(): void {
    const n = this.#hashes.length * 2;
    const grow = <T extends Int32Array | Uint8Array>(a: T, make: (n: number) => T): T => {
      const b = make(n);
      b.set(a);
      return b;
    };
    this.#hashes = grow(this.#hashes, (n) => new Int32Array(n));
    this.#lists = grow(this.#lists, (n) => new Uint8Array(n));
    this.#newer = grow(this.#newer, (n) => new Int32Array(n));
    this.#older = grow(this.#older, (n) => new Int32Array(n));
  }

  #growTable(): void {
    const old = this.#table;
    this.#table = new Int32Array(old.length * 2).fill(NIL);
    this.#mask = this.#table.length - 1;
    for (const node of old) if (node !== NIL) this.#place(node, this.#hashes[node]!);
  }
}
