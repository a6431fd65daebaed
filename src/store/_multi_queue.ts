/**
 * What the eviction policies made of several queues (S3-FIFO, W-TinyLFU) share: doubly
 * linked lists over slot numbers ({@linkcode SlotLists}), and the interface through which
 * {@linkcode SieveQueue} drives them ({@linkcode MultiQueuePolicy}). A line-for-line port
 * of `rust/src/sieve/lists.rs`.
 *
 * @module
 */

/** No slot: the end of a list. */
export const NIL = -1;

/**
 * Up to three doubly linked lists over slot numbers, each from its newest entry (head) to
 * its oldest (tail); a slot is on one list at a time.
 */
export class SlotLists {
  /** Towards the head (newer entry), or {@linkcode NIL}; by slot. */
  newer: Int32Array;
  /** Towards the tail (older entry), or {@linkcode NIL}; by slot. */
  older: Int32Array;
  /** The list each linked slot is on; by slot. */
  listOf: Uint8Array;
  /** Newest slot of each list. */
  readonly head: Int32Array;
  /** Oldest slot of each list. */
  readonly tail: Int32Array;
  /** Length of each list. */
  readonly len: number[];

  /**
   * @param lists How many lists (1 to 3).
   * @param slots Slots allocated up front ({@linkcode SlotLists.grow} adds more).
   */
  constructor(readonly lists: number, slots: number) {
    this.newer = new Int32Array(slots);
    this.older = new Int32Array(slots);
    this.listOf = new Uint8Array(slots);
    this.head = new Int32Array(lists).fill(NIL);
    this.tail = new Int32Array(lists).fill(NIL);
    this.len = new Array<number>(lists).fill(0);
  }

  /** Resizes the slot arrays to `n` slots, keeping the links of the first `n`. */
  grow(n: number): void {
    const newer = new Int32Array(n);
    newer.set(this.newer.subarray(0, n));
    this.newer = newer;
    const older = new Int32Array(n);
    older.set(this.older.subarray(0, n));
    this.older = older;
    const listOf = new Uint8Array(n);
    listOf.set(this.listOf.subarray(0, n));
    this.listOf = listOf;
  }

  /** Empties every list (the slot arrays keep their size). */
  clear(): void {
    this.head.fill(NIL);
    this.tail.fill(NIL);
    this.len.fill(0);
  }

  /** Links the unlinked `slot` at the head of `list`. */
  pushHead(list: number, slot: number): void {
    const old = this.head[list]!;
    this.newer[slot] = NIL;
    this.older[slot] = old;
    if (old === NIL) this.tail[list] = slot;
    else this.newer[old] = slot;
    this.head[list] = slot;
    this.listOf[slot] = list;
    this.len[list]!++;
  }

  /** Takes the linked `slot` off its list. */
  unlink(slot: number): void {
    const list = this.listOf[slot]!;
    const newer = this.newer[slot]!;
    const older = this.older[slot]!;
    if (newer === NIL) this.head[list] = older;
    else this.older[newer] = older;
    if (older === NIL) this.tail[list] = newer;
    else this.newer[older] = newer;
    this.len[list]!--;
  }

  /** Moves the linked `slot` to the head of `list` (its own or another). */
  moveToHead(list: number, slot: number): void {
    if (this.head[list] === slot) return;
    this.unlink(slot);
    this.pushHead(list, slot);
  }

  /** The slots of `list`, head (newest) first. */
  order(list: number): number[] {
    const out: number[] = [];
    for (let s = this.head[list]!; s !== NIL; s = this.older[s]!) out.push(s);
    return out;
  }

  /**
   * Checks that each list links both ways, has its length and holds only slots marked as
   * its own; returns every linked slot. Calls `fail` on the first violation.
   */
  validate(fail: (what: string) => never): Set<number> {
    const seen = new Set<number>();
    for (let list = 0; list < this.lists; list++) {
      let prev = NIL;
      let n = 0;
      for (let s = this.head[list]!; s !== NIL; s = this.older[s]!) {
        if (seen.has(s)) fail(`slot ${s} linked twice`);
        if (this.newer[s] !== prev) fail(`broken newer link at slot ${s}`);
        if (this.listOf[s] !== list) fail(`slot ${s} on list ${list} marked ${this.listOf[s]}`);
        seen.add(s);
        prev = s;
        if (++n > this.len[list]!) fail(`list ${list} longer than its length`);
      }
      if (this.tail[list] !== prev) fail(`list ${list}: tail is not the last entry`);
      if (n !== this.len[list]) fail(`list ${list} has ${n} entries, length ${this.len[list]}`);
    }
    return seen;
  }
}

/**
 * An eviction policy that keeps its entries on queues of its own ({@linkcode SlotLists}),
 * driven by {@linkcode SieveQueue}, which still owns the slots, TTLs and counts. A new key
 * goes through {@linkcode MultiQueuePolicy.arrive}, then (when the store is full)
 * {@linkcode MultiQueuePolicy.victim}, the removal of that victim and
 * {@linkcode MultiQueuePolicy.evicted}, then {@linkcode MultiQueuePolicy.add}.
 */
export interface MultiQueuePolicy {
  /** A new key (`key`: its bytes as one char each; `hash`: `hashBytes` of them) is about
   * to be added, before any eviction made for it. */
  arrive(key: string, hash: number): void;
  /** Links the new entry at `slot` (whose key last arrived). */
  add(slot: number, hash: number): void;
  /** Records a hit on `slot`. */
  hit(slot: number): void;
  /** Chooses the entry to evict (still linked; the caller removes it). */
  victim(): number;
  /** The key (and its hash) of the victim just removed. */
  evicted(key: string, hash: number): void;
  /** Takes `slot` off its queue (eviction, delete, expiry). */
  remove(slot: number): void;
  /** Forgets every entry and all history. */
  clear(): void;
  /** Resizes the slot arrays to `n` slots, keeping the first `n`. */
  grow(n: number): void;
  /** Live slots, in the policy's order (see each policy). */
  order(): number[];
  /** Checks the policy's invariants; returns its linked slots. */
  validate(fail: (what: string) => never): Set<number>;
  /** The queue of `slot` and its access count (0 where the policy keeps none), for tests. */
  describe(slot: number): [string, number];
  /** S3-FIFO's ghost keys, newest first (none for W-TinyLFU), for tests. */
  ghostOrder(): string[];
}
