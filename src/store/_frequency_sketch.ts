/**
 * The frequency sketch of W-TinyLFU: Caffeine's `FrequencySketch` (Ben Manes, Caffeine
 * v3.2.4, `caffeine/src/main/java/com/github/benmanes/caffeine/cache/FrequencySketch.java`),
 * a count-min sketch of 4-bit counters, four per key, all in one 64-byte block, halved (the
 * TinyLFU "reset") every 10 increments per entry of the cache; in front of it, the TinyLFU
 * doorkeeper, as Caffeine's simulator has it (`PeriodicResetCountMin4` with
 * `periodic.doorkeeper`): a Bloom filter that takes a key's first access in each period, so
 * that only repeated accesses reach the counters, cleared at each reset. A port of
 * `rust/src/sieve/sketch.rs`, computing the same counters from the same 32-bit key hash
 * (Java `int` arithmetic throughout).
 *
 * @module
 */

/** Caffeine's `spread`: a supplemental hash of the key's hash. */
function spread(x: number): number {
  x ^= x >>> 17;
  x = Math.imul(x, 0xed5ad4bb);
  x ^= x >>> 11;
  x = Math.imul(x, 0xac4c1b51);
  x ^= x >>> 15;
  return x;
}

/** Caffeine's `rehash`: another round, for the counter indexes. */
function rehash(x: number): number {
  x = Math.imul(x, 0x31848bab);
  x ^= x >>> 14;
  return x;
}

/** The doorkeeper's hash of a key's hash (the simulator's `BloomFilter.spread`). */
function doorSpread(x: number): number {
  x = Math.imul((x >>> 16) ^ x, 0x45d9f3b);
  x = Math.imul((x >>> 16) ^ x, 0x45d9f3b);
  return (x >>> 16) ^ x;
}

/** Seeds of the doorkeeper's four bits (the low halves of the simulator's). */
const DOOR_SEEDS = [0x97cb3127, 0x6fbe98f3, 0x2f90404f, 0x84222325] as const;

/** Bits of the doorkeeper per expected insertion: `-ln(0.01) / ln(2)^2`, a 1% false
 * positive rate (written out, so that both engines size it alike). */
const DOOR_BITS_PER_KEY = 9.585058377367439;

/** Expected insertions into the doorkeeper per entry of the cache (the simulator's). */
const DOOR_INSERTIONS = 3;

function popcount(x: number): number {
  x = x - ((x >>> 1) & 0x55555555);
  x = (x & 0x33333333) + ((x >>> 2) & 0x33333333);
  return Math.imul((x + (x >>> 4)) & 0x0f0f0f0f, 0x01010101) >>> 24;
}

/** Largest `sampleSize` (Java's `Integer.MAX_VALUE`). */
const MAX_INT = 0x7fffffff;

/** The smallest power of two `>= n`, at least `min`. */
function powerOfTwo(n: number, min: number): number {
  let p = min;
  while (p < n) p *= 2;
  return p;
}

/**
 * Caffeine's frequency sketch with a doorkeeper. Caffeine's 64-bit words are two 32-bit
 * words here (the low half first): the counter `j` (0-15) of word `i` is the nibble
 * `j & 7` of `table[2 * i + (j >> 3)]`.
 */
export class FrequencySketch {
  /** Counters, 8 nibbles a word. */
  readonly table: Uint32Array;
  /** The doorkeeper's bits. */
  readonly door: Uint32Array;
  /** Increments of the counters between two resets: 10 per entry of the cache. */
  readonly sampleSize: number;
  readonly #blockMask: number;
  readonly #doorShift: number;
  /** Increments of the counters since the last reset (a Java `int`). */
  size = 0;

  /** @param maximumSize Entries of the cache (positive). */
  constructor(maximumSize: number) {
    const maximum = Math.min(maximumSize, MAX_INT >>> 1);
    const words = powerOfTwo(maximum, 8);
    this.table = new Uint32Array(words * 2);
    // Caffeine's int product wraps past 2^31 - 1; here it stops there.
    this.sampleSize = Math.min(10 * maximum, MAX_INT);
    this.#blockMask = (words >>> 3) - 1;
    const bits = Math.min(
      Math.trunc(DOOR_INSERTIONS * maximum * DOOR_BITS_PER_KEY),
      MAX_INT,
    );
    const doorWords = powerOfTwo(bits >>> 5, 2);
    this.door = new Uint32Array(doorWords);
    this.#doorShift = 32 - Math.log2(doorWords);
  }

  /** The estimated count (0 to 15) of the key of hash `hash`: its counters' minimum, plus
   * one when the doorkeeper holds it. */
  frequency(hash: number): number {
    const blockHash = spread(hash);
    const counterHash = rehash(blockHash);
    const block = (blockHash & this.#blockMask) << 3;
    const table = this.table;
    let min = 15;
    for (let i = 0; i < 4; i++) {
      const h = counterHash >>> (i << 3);
      const index = (h >> 1) & 15;
      const word = 2 * (block + (h & 1) + (i << 1)) + (index >> 3);
      const count = (table[word]! >>> ((index & 7) << 2)) & 15;
      if (count < min) min = count;
    }
    if (min < 15 && this.#door(hash, false)) min++;
    return min;
  }

  /** Counts one more access to the key of hash `hash`: the doorkeeper takes the first in
   * each period, the counters (which stop at 15) the others; every `sampleSize`
   * increments of the counters, {@linkcode FrequencySketch.reset}. */
  increment(hash: number): void {
    if (!this.#door(hash, true)) return;
    const blockHash = spread(hash);
    const counterHash = rehash(blockHash);
    const block = (blockHash & this.#blockMask) << 3;
    const table = this.table;
    let added = false;
    for (let i = 0; i < 4; i++) {
      const h = counterHash >>> (i << 3);
      const index = (h >> 1) & 15;
      const word = 2 * (block + (h & 1) + (i << 1)) + (index >> 3);
      const shift = (index & 7) << 2;
      if (((table[word]! >>> shift) & 15) !== 15) {
        table[word] = table[word]! + (1 << shift);
        added = true;
      }
    }
    if (added) {
      this.size = (this.size + 1) | 0;
      if (this.size === this.sampleSize) this.reset();
    }
  }

  /** Halves every counter (TinyLFU's reset), and the increment count with them; empties
   * the doorkeeper. */
  reset(): void {
    const table = this.table;
    let count = 0;
    for (let i = 0; i < table.length; i++) {
      count += popcount(table[i]! & 0x11111111);
      table[i] = (table[i]! >>> 1) & 0x77777777;
    }
    this.size = ((this.size - (count >>> 2)) >>> 1) | 0;
    this.door.fill(0);
  }

  /** Whether the doorkeeper holds the key of hash `hash` (`set` false), or sets its bits
   * and says whether they were all set already (`set` true). */
  #door(hash: number, set: boolean): boolean {
    const door = this.door;
    const item = doorSpread(hash);
    let present = true;
    for (let i = 0; i < 4; i++) {
      const seed = DOOR_SEEDS[i]!;
      let h = Math.imul(item + seed, seed);
      h ^= h >>> 15;
      const index = h >>> this.#doorShift;
      const bit = 1 << (h & 31);
      if ((door[index]! & bit) === 0) {
        if (!set) return false;
        door[index] = door[index]! | bit;
        present = false;
      }
    }
    return present;
  }
}
