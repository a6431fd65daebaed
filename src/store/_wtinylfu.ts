/**
 * W-TinyLFU (Einziger, Friedman and Manes, "TinyLFU: A Highly Efficient Cache Admission
 * Policy", ACM ToS 2017) with the adaptive window of Caffeine (Ben Manes et al., "Adaptive
 * Software Cache Management", Middleware 2018), as Caffeine v3.2.4's `BoundedLocalCache`
 * does it. A line-for-line port of `rust/src/sieve/wtinylfu.rs`; see there for the
 * algorithm, its parameters and where it differs from Caffeine.
 *
 * @module
 */

import { FrequencySketch } from "./_frequency_sketch.ts";
import { type MultiQueuePolicy, NIL, SlotLists } from "./_multi_queue.ts";

/** The admission window: new entries, LRU. */
const WINDOW = 0;
/** The main space's probation segment: entries admitted from the window, LRU. */
const PROBATION = 1;
/** The main space's protected segment: entries hit in probation, LRU. */
const PROTECTED = 2;

/** Caffeine's `PERCENT_MAIN`: the main space's initial share of the capacity. */
const PERCENT_MAIN = 0.99;
/** Caffeine's `PERCENT_MAIN_PROTECTED`: the protected segment's share of the main space. */
const PERCENT_MAIN_PROTECTED = 0.8;
/** Caffeine's `HILL_CLIMBER_RESTART_THRESHOLD`: a hit-ratio change that restarts the step. */
const RESTART_THRESHOLD = 0.05;
/**
 * The first step of the hill climber, a share of the capacity: 2% where Caffeine's
 * `HILL_CLIMBER_STEP_PERCENT` is 6.25%, because at 1% of the keys the samples' hit ratios
 * vary by about half a point and 6.25% steps then walk the window away from its best size
 * (notes/eviction.md has the figures).
 */
const STEP_PERCENT = 0.02;
/** Caffeine's `HILL_CLIMBER_STEP_DECAY_RATE`. */
const STEP_DECAY_RATE = 0.98;
/** Caffeine's `ADMIT_HASHDOS_THRESHOLD`: a candidate this frequent may win by chance. */
const ADMIT_HASHDOS_THRESHOLD = 6;
/** Caffeine's `QUEUE_TRANSFER_THRESHOLD`: most entries moved between queues at once. */
const QUEUE_TRANSFER_THRESHOLD = 1000;
/** Capacities from this one up are unbounded (the native store's slot limit). */
const UNBOUNDED = 0x7fffffff;

/**
 * W-TinyLFU over the slots of a {@linkcode SieveQueue}: an LRU window, then a main space
 * of two LRU segments (probation, protected) guarded by a TinyLFU admission filter (a
 * {@linkcode FrequencySketch}), with a hill climber that moves capacity between the window
 * and the main space. Order ({@linkcode WTinyLfu.order}): window, probation, protected,
 * each most recently used first.
 */
export class WTinyLfu implements MultiQueuePolicy {
  readonly lists: SlotLists;
  /** The sketch hash of each slot's key. */
  hashes: Int32Array;
  /** Most entries of the store. */
  readonly maximum: number;
  /** Whether the store is bounded (else nothing is ever evicted or adapted). */
  readonly bounded: boolean;
  /** Capacity of the window. */
  windowMax = 0;
  /** Capacity of the protected segment. */
  protectedMax = 0;
  /** The sketch, made once the store is half full (as Caffeine). */
  sketch: FrequencySketch | null = null;
  /** The hill climber's state (Caffeine's names). */
  hitsInSample = 0;
  missesInSample = 0;
  previousHitRate = 0;
  stepSize = 0;
  adjustment = 0;
  /** xorshift32 state of the random admission of frequent candidates. */
  #random = 0;
  /** The first entry moved from the window to probation for the key that arrived. */
  #candidate = NIL;

  /**
   * @param capacity Most entries of the store (`Infinity`: unbounded).
   * @param slots Slots allocated up front.
   */
  constructor(capacity: number, slots: number) {
    this.lists = new SlotLists(3, slots);
    this.hashes = new Int32Array(slots);
    this.maximum = capacity;
    this.bounded = capacity < UNBOUNDED;
    this.clear();
  }

  arrive(_key: string, hash: number): void {
    if (!this.bounded) return;
    const lists = this.lists;
    const size = lists.len[WINDOW]! + lists.len[PROBATION]! + lists.len[PROTECTED]! + 1;
    if (this.sketch === null && size >= Math.floor(this.maximum / 2)) {
      this.sketch = new FrequencySketch(this.maximum);
    }
    this.sketch?.increment(hash);
    this.missesInSample++;
    // The window's overflow, the newcomer counted, moves to probation (Caffeine's
    // evictFromWindow); the first one moved is the candidate for admission.
    let window = lists.len[WINDOW]! + 1;
    let candidate = NIL;
    while (window > this.windowMax) {
      const t = lists.tail[WINDOW]!;
      if (t === NIL) break;
      lists.moveToHead(PROBATION, t);
      if (candidate === NIL) candidate = t;
      window--;
    }
    this.#candidate = candidate;
  }

  add(slot: number, hash: number): void {
    // The candidate serves the eviction made for this key, if any: never a later one (it
    // may be deleted or evicted by then).
    this.#candidate = NIL;
    this.hashes[slot] = hash;
    this.lists.pushHead(WINDOW, slot);
    if (this.bounded) this.#climb();
  }

  hit(slot: number): void {
    const lists = this.lists;
    if (!this.bounded) {
      lists.moveToHead(WINDOW, slot);
      return;
    }
    this.sketch?.increment(this.hashes[slot]!);
    const list = lists.listOf[slot]!;
    if (list === PROBATION && this.protectedMax >= 1) lists.moveToHead(PROTECTED, slot);
    else lists.moveToHead(list, slot);
    this.hitsInSample++;
    this.#climb();
  }

  /**
   * Caffeine's evictFromMain for one eviction: the candidate (moved from the window for the
   * newcomer, else the window's LRU entry) against the victim (probation's LRU entry, else
   * protected's): the less frequent goes, the candidate on a tie.
   */
  victim(): number {
    const lists = this.lists;
    let candidate = this.#candidate;
    this.#candidate = NIL;
    if (candidate === NIL) candidate = lists.tail[WINDOW]!;
    let victim = lists.tail[PROBATION]!;
    if (victim === NIL) {
      if (candidate !== NIL) return candidate;
      victim = lists.tail[PROTECTED]!;
    }
    if (candidate === NIL || candidate === victim) return victim;
    return this.#admit(this.hashes[candidate]!, this.hashes[victim]!) ? victim : candidate;
  }

  evicted(): void {}

  remove(slot: number): void {
    this.lists.unlink(slot);
  }

  clear(): void {
    this.lists.clear();
    const max = this.maximum;
    this.windowMax = this.bounded ? max - Math.trunc(PERCENT_MAIN * max) : Infinity;
    this.protectedMax = this.bounded
      ? Math.trunc(PERCENT_MAIN_PROTECTED * (max - this.windowMax))
      : 0;
    this.sketch = null;
    this.hitsInSample = 0;
    this.missesInSample = 0;
    this.previousHitRate = 0;
    this.stepSize = this.bounded ? -STEP_PERCENT * max : 0;
    this.adjustment = 0;
    this.#random = 0x9e3779b9 | 0;
    this.#candidate = NIL;
  }

  grow(n: number): void {
    this.lists.grow(n);
    const hashes = new Int32Array(n);
    hashes.set(this.hashes.subarray(0, n));
    this.hashes = hashes;
  }

  order(): number[] {
    const l = this.lists;
    return [...l.order(WINDOW), ...l.order(PROBATION), ...l.order(PROTECTED)];
  }

  describe(slot: number): [string, number] {
    const list = this.lists.listOf[slot];
    return [list === WINDOW ? "window" : list === PROBATION ? "probation" : "protected", 0];
  }

  ghostOrder(): string[] {
    return [];
  }

  validate(fail: (what: string) => never): Set<number> {
    const live = this.lists.validate(fail);
    if (this.bounded) {
      if (!(this.windowMax >= 1)) fail(`window maximum ${this.windowMax}`);
      if (!(this.protectedMax >= 0)) fail(`protected maximum ${this.protectedMax}`);
      if (this.windowMax + this.protectedMax > this.maximum) fail("window + protected > max");
    }
    return live;
  }

  /** Caffeine's admit: whether the candidate replaces the victim. */
  #admit(candidateHash: number, victimHash: number): boolean {
    const sketch = this.sketch;
    if (sketch === null) return false;
    const candidateFreq = sketch.frequency(candidateHash);
    const victimFreq = sketch.frequency(victimHash);
    if (candidateFreq > victimFreq) return true;
    if (candidateFreq < ADMIT_HASHDOS_THRESHOLD) return false;
    // A hot candidate against a hot victim wins one time in 128, so that keys whose hash
    // collides with a hot key's cannot keep every newcomer out.
    let x = this.#random;
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    this.#random = x;
    return (x & 127) === 0;
  }

  /** Caffeine's climb, run after every access (Caffeine: after every maintenance). */
  #climb(): void {
    this.#determineAdjustment();
    this.#demoteFromProtected();
    if (this.adjustment > 0) this.#increaseWindow();
    else if (this.adjustment < 0) this.#decreaseWindow();
  }

  #determineAdjustment(): void {
    const sketch = this.sketch;
    if (sketch === null) {
      this.previousHitRate = 0;
      this.missesInSample = 0;
      this.hitsInSample = 0;
      return;
    }
    const requests = this.hitsInSample + this.missesInSample;
    if (requests < sketch.sampleSize) return;
    const hitRate = this.hitsInSample / requests;
    const change = hitRate - this.previousHitRate;
    const amount = change >= 0 ? this.stepSize : -this.stepSize;
    this.stepSize = Math.abs(change) >= RESTART_THRESHOLD
      ? STEP_PERCENT * this.maximum * (amount >= 0 ? 1 : -1)
      : STEP_DECAY_RATE * amount;
    this.previousHitRate = hitRate;
    this.adjustment = Math.trunc(amount);
    this.missesInSample = 0;
    this.hitsInSample = 0;
  }

  /** Moves protected's LRU entries to probation while protected is over its maximum. */
  #demoteFromProtected(): void {
    const lists = this.lists;
    for (let i = 0; i < QUEUE_TRANSFER_THRESHOLD; i++) {
      if (lists.len[PROTECTED]! <= this.protectedMax) break;
      lists.moveToHead(PROBATION, lists.tail[PROTECTED]!);
    }
  }

  /** Grows the window by the adjustment, taken from the protected segment's maximum. */
  #increaseWindow(): void {
    if (this.protectedMax === 0) return;
    const lists = this.lists;
    let quota = Math.min(this.adjustment, this.protectedMax);
    this.protectedMax -= quota;
    this.windowMax += quota;
    this.#demoteFromProtected();
    for (let i = 0; i < QUEUE_TRANSFER_THRESHOLD && quota >= 1; i++) {
      let candidate = lists.tail[PROBATION]!;
      if (candidate === NIL) candidate = lists.tail[PROTECTED]!;
      if (candidate === NIL) break;
      quota--;
      lists.moveToHead(WINDOW, candidate);
    }
    this.protectedMax += quota;
    this.windowMax -= quota;
    this.adjustment = quota;
  }

  /** Shrinks the window by the adjustment (to 1 at least), growing the protected maximum. */
  #decreaseWindow(): void {
    if (this.windowMax <= 1) return;
    const lists = this.lists;
    let quota = Math.min(-this.adjustment, Math.max(0, this.windowMax - 1));
    this.protectedMax += quota;
    this.windowMax -= quota;
    for (let i = 0; i < QUEUE_TRANSFER_THRESHOLD && quota >= 1; i++) {
      const candidate = lists.tail[WINDOW]!;
      if (candidate === NIL) break;
      quota--;
      lists.moveToHead(PROBATION, candidate);
    }
    this.protectedMax -= quota;
    this.windowMax += quota;
    this.adjustment = -quota;
  }
}
