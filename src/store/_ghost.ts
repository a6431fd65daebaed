/**
 * S3-FIFO's ghost queue: the keys recently evicted from the small queue, without values,
 * in FIFO order with a capacity (as libCacheSim's `FIFO-ghost`). A port of
 * `rust/src/sieve/ghost.rs`.
 *
 * The index is an open-addressing table (linear probing, backward-shift deletion) over the
 * keys' hashes, compared by their strings, as {@linkcode TsSieveStore}'s own: a `Map` of
 * strings measured 1 µs an update under this churn, the table a tenth of that.
 *
 * @module
 */

import { NIL } from "./_multi_queue.ts";
import { unprobe } from "./_hash.ts";

/** A FIFO of keys (strings, with their hashes) with a capacity; a key is in it once. */
export class GhostQueue {
  /** Most keys kept (0: none). */
  readonly capacity: number;
  /** Keys held. */
  size = 0;
  /** Node numbers, NIL = empty; a power of two, at most half full. */
  #table: Int32Array;
  #mask: number;
  /** By node: the key, its hash, the links towards the newest and the oldest. */
  #keys: string[] = [];
  #hashes: Int32Array;
  #newer: Int32Array;
  #older: Int32Array;
  #free: number[] = [];
  #nodes = 0;
  #head = NIL;
  #tail = NIL;

  /** @param capacity Most keys kept: a non-negative integer. */
  constructor(capacity: number) {
    this.capacity = capacity;
    let n = 2;
    while (n < 2 * capacity) n *= 2;
    this.#table = new Int32Array(capacity === 0 ? 0 : n).fill(NIL);
    this.#mask = n - 1;
    this.#hashes = new Int32Array(capacity);
    this.#newer = new Int32Array(capacity);
    this.#older = new Int32Array(capacity);
  }

  /** Removes `key` (of hash `hash`); returns whether it was there. */
  delete(key: string, hash: number): boolean {
    if (this.size === 0) return false;
    const node = this.#find(key, hash);
    if (node === NIL) return false;
    this.#remove(node);
    return true;
  }

  /** Adds `key` (of hash `hash`) as the newest, dropping the oldest when full; a present
   * key stays where it is (libCacheSim's ghost counts it as a hit and moves nothing). */
  add(key: string, hash: number): void {
    if (this.capacity === 0 || this.#find(key, hash) !== NIL) return;
    if (this.size >= this.capacity) this.#remove(this.#tail);
    const node = this.#free.pop() ?? this.#nodes++;
    this.#keys[node] = key;
    this.#hashes[node] = hash;
    this.#newer[node] = NIL;
    this.#older[node] = this.#head;
    if (this.#head === NIL) this.#tail = node;
    else this.#newer[this.#head] = node;
    this.#head = node;
    const table = this.#table;
    let i = hash & this.#mask;
    while (table[i] !== NIL) i = (i + 1) & this.#mask;
    table[i] = node;
    this.size++;
  }

  /** Forgets every key. */
  clear(): void {
    this.#table.fill(NIL);
    this.#keys = [];
    this.#free = [];
    this.#nodes = 0;
    this.#head = NIL;
    this.#tail = NIL;
    this.size = 0;
  }

  /** Keys from the newest to the oldest, for tests. */
  order(): string[] {
    const out: string[] = [];
    for (let n = this.#head; n !== NIL; n = this.#older[n]!) out.push(this.#keys[n]!);
    return out;
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

  /** Takes `node` off the queue and out of the table (backward-shift deletion). */
  #remove(node: number): void {
    const newer = this.#newer[node]!;
    const older = this.#older[node]!;
    if (newer === NIL) this.#head = older;
    else this.#older[newer] = older;
    if (older === NIL) this.#tail = newer;
    else this.#newer[older] = newer;
    unprobe(this.#table, this.#mask, this.#hashes, node);
    this.#keys[node] = "";
    this.#free.push(node);
    this.size--;
  }
}
