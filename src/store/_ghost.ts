/**
 * S3-FIFO's ghost queue: the keys recently evicted from the small queue, without values,
 * in FIFO order with a capacity (as libCacheSim's `FIFO-ghost`). A port of
 * `rust/src/sieve/ghost.rs`.
 *
 * @module
 */

import { NIL } from "./_multi_queue.ts";

/** A FIFO of keys (strings) with a capacity; a key is at most once in it. */
export class GhostQueue {
  /** Most keys kept (0: none). */
  readonly capacity: number;
  #index = new Map<string, number>();
  #keys: string[] = [];
  #newer: number[] = [];
  #older: number[] = [];
  #free: number[] = [];
  #head = NIL;
  #tail = NIL;

  /** @param capacity Most keys kept: a non-negative integer or `Infinity`. */
  constructor(capacity: number) {
    this.capacity = capacity;
  }

  /** Keys held. */
  get size(): number {
    return this.#index.size;
  }

  /** Removes `key`; returns whether it was there. */
  delete(key: string): boolean {
    const node = this.#index.get(key);
    if (node === undefined) return false;
    this.#index.delete(key);
    this.#unlink(node);
    return true;
  }

  /** Adds `key` as the newest, dropping the oldest when full; a present key stays where it
   * is (libCacheSim's ghost counts it as a hit and moves nothing). */
  add(key: string): void {
    if (this.capacity === 0 || this.#index.has(key)) return;
    if (this.#index.size >= this.capacity) {
      const oldest = this.#tail;
      this.#index.delete(this.#keys[oldest]!);
      this.#unlink(oldest);
    }
    const node = this.#free.pop() ?? this.#keys.length;
    this.#keys[node] = key;
    this.#newer[node] = NIL;
    this.#older[node] = this.#head;
    if (this.#head === NIL) this.#tail = node;
    else this.#newer[this.#head] = node;
    this.#head = node;
    this.#index.set(key, node);
  }

  /** Forgets every key. */
  clear(): void {
    this.#index.clear();
    this.#keys = [];
    this.#newer = [];
    this.#older = [];
    this.#free = [];
    this.#head = NIL;
    this.#tail = NIL;
  }

  /** Keys from the newest to the oldest, for tests. */
  order(): string[] {
    const out: string[] = [];
    for (let n = this.#head; n !== NIL; n = this.#older[n]!) out.push(this.#keys[n]!);
    return out;
  }

  #unlink(node: number): void {
    const newer = this.#newer[node]!;
    const older = this.#older[node]!;
    if (newer === NIL) this.#head = older;
    else this.#older[newer] = older;
    if (older === NIL) this.#tail = newer;
    else this.#newer[older] = newer;
    this.#keys[node] = "";
    this.#free.push(node);
  }
}
