/**
 * The TypeScript in-process store: the fallback of the memory backend where the native
 * library is not available (README, "Engines"), with the observable behaviour of the native store
 * (`rust/src/sieve.rs`): the same SIEVE (or LRU, MRU, FIFO, LFU) evictions, TTL boundaries
 * (the store's and entries' own), stale window and counters.
 *
 * @module
 */

import { FRESH, GONE, isPolicy, NIL, type Policy, SIEVE, SieveQueue } from "./_sieve_queue.ts";
import { hashBytes, unprobe } from "./_hash.ts";
import { CoarseClock } from "./_coarse_clock.ts";
import {
  ARGS_BIT,
  ArgsDecoder,
  argsOfKey,
  flat,
  flattenObject,
  hashArgs,
  hashObjectKey,
  hashOfKey,
  keyOfArgs,
  latinAt,
  objectOfKey,
  same,
  sameArgs,
  sameValues,
  ShapeToken,
} from "./_args_index.ts";
import { bytesToKeyString, encodeKey, type KeyWriter } from "../codec/key_codec.ts";
import {
  checkEntrySize,
  checkEntryTtl,
  checkMaxSize,
  checkMemoryMaxBytes,
  checkMs,
  checkTtl,
  describe,
} from "../options/_validate.ts";
import { stillValid, type TagClock, Tagged } from "./tagged.ts";
import {
  ABSENT,
  type ByteStore,
  hitOf,
  INVALID,
  type KeyBytes,
  MISS,
  promisedEntry,
  type Store,
  type StoreInfo,
  StoreView,
  type ViewOptions,
} from "./store.ts";

export type { Policy } from "./_sieve_queue.ts";

/** Options of {@linkcode TsSieveStore}. */
export interface TsSieveStoreOptions {
  /** Most entries kept: a positive integer, or `Infinity` for no bound. */
  maxSize: number;
  /** Age in ms since insertion at which an entry expires; `undefined`: never. */
  ttl?: number | undefined;
  /**
   * Eviction policy, numbered as `Strategy`: 0 SIEVE, 1 LRU, 2 MRU, 3 FIFO, 4 LFU,
   * 5 S3-FIFO, 6 W-TinyLFU, 7 ARC.
   *
   * @default {0}
   */
  policy?: Policy | undefined;
  /**
   * Stale window in ms after an entry's TTL: during it `get` keeps the entry (a miss) and
   * `peekStale` returns it. 0 or `undefined`: none.
   */
  stale?: number | undefined;
  /**
   * Byte budget: the sum of the entries' sizes (given to `set`) that eviction keeps the
   * store within, besides `maxSize`; `undefined`: none.
   */
  maxBytes?: number | undefined;
  /**
   * Whether keys arrive in the key codec's memory form, where a plain object of a numbered
   * shape is written by its shape number: a call of one such object is then looked up by
   * its values too (`getArgs`). `false` for keys in the shared form (a remote tier's), which
   * names the object's keys instead.
   *
   * @default {true}
   */
  memoryKeys?: boolean | undefined;
}

/** Slots of the hash table (a power of two) allocated up front, at most. */
const INITIAL_TABLE = 2048;
/** `#keys` of a slot whose key is two arguments, kept in `#pairs` (never an argument). */
const PAIR = Symbol("pair");
/** `#keys` of a slot whose key is three arguments, kept in `#triples` (never an argument). */
const TRIPLE = Symbol("triple");

/** Words of a byte key's prefix kept beside it (see `TsSieveStore#prefixes`): 16 bytes, as
 * long as a two-int key or a small object's. */
const PREFIX_WORDS = 4;

/** `key[0..len)` as a string of one char per byte: lossless, and compared with the bytes in
 * place by {@linkcode TsSieveStore}. */
function bytesToString(k: Uint8Array, len: number): string {
  return latinAt(k, 0, len);
}

/**
 * A pure TypeScript in-process {@linkcode Store}: keys are encoded bytes, values are kept
 * as they are (identity kept, no copy). Same observable behaviour as the native store:
 *
 * - `get` counts a hit or a miss; a hit sets the entry's visited bit (SIEVE) or moves it
 *   to the head (LRU, MRU) or up one frequency bucket (LFU). An entry's TTL is its own
 *   (`set`'s `ttl`) or else the store's; one whose age is `>= ttl` counts a miss, and is
 *   kept, unmarked, while its age is `< ttl + stale` (stale: `peekStale` returns it), else
 *   removed.
 * - `set` of a present key replaces its value, insertion time and TTL, keeping its place
 *   in the queue, its visited bit and its LFU count; a new key goes to the head (LFU: to
 *   the bucket of count 1), evicting one entry by the policy when the store is full.
 *
 * Index: an open-addressing hash table (linear probing, backward-shift deletion) of slot
 * numbers. The key of a call whose arguments are all primitives, or of a call of one plain
 * object of primitive values (memory form; and whose policy keeps its own order: SIEVE,
 * LRU, MRU, FIFO, LFU) is read back into its arguments (an object's: its shape's token and
 * its values), kept as they are and hashed from them (`_args_index.ts`), so that `cache()`
 * looks it up straight from the arguments
 * ({@linkcode TsSieveStore.prototype.getArgs | getArgs}); any other key is kept
 * as its bytes (one char per byte, its first 16 bytes also as words beside it), hashed and
 * compared in place: a lookup allocates nothing.
 *
 * @example Usage
 * ```ts
 * import assert from "node:assert/strict";
 * import { MISS } from "./store.ts";
 *
 * const store = new TsSieveStore({ maxSize: 2 });
 * const key = new TextEncoder().encode("a");
 * store.set(key, key.length, 42, 0);
 * assert.equal(store.get(key, key.length, 0), 42);
 * assert.equal(store.get(new Uint8Array([9]), 1, 0), MISS);
 * assert.deepEqual(store.info(), { hits: 1, misses: 1, maxSize: 2, currentSize: 1 });
 * ```
 */
export class TsSieveStore implements ByteStore {
  #queue: SieveQueue;
  #maxSize: number;
  /** Whether entries expire (a TTL was given). */
  readonly ttlOn: boolean;
  /** Reads byte keys back into arguments, or `null`: every key is a byte key (S3-FIFO,
   * W-TinyLFU, ARC: their ghosts and sketch hash the key's bytes). */
  #args: ArgsDecoder | null;
  /** Slot numbers, `NIL` = empty; length a power of two, at most half full. */
  #table: Int32Array;
  #mask: number;
  /** By slot: the key (its bytes, one char per byte, or its arguments as `keyOfArgs`
   * keeps them, or `PAIR` / `TRIPLE` for a key of two / three arguments), and the value. */
  #keys: unknown[] = [];
  /** The two arguments of a key of two (`PAIR` in `#keys`) at `2 * slot` and `2 * slot + 1`:
   * side by side, a lookup reads them from one place, not through an array of their own. */
  #pairs: unknown[] = [];
  /** The three arguments of a key of three (`TRIPLE` in `#keys`) at `3 * slot` on, as
   * `#pairs` keeps two: calls of three primitives, and plain objects of two keys (a token and
   * two values), which a Zipf stream looked up 7-9% faster so than in arrays of their own. */
  #triples: unknown[] = [];
  #values: unknown[] = [];
  /** By slot: the key's hash (`ARGS_BIT` set for a key of arguments); sized as the queue's
   * slab. */
  #hashes: Int32Array = new Int32Array(0);
  /** By slot: the first {@linkcode PREFIX_WORDS} whole 4-byte words of a byte key, little-
   * endian, which a lookup compares before the rest one char at a time (reading a string's
   * char costs several times a typed array's element). Empty until the first byte key. */
  #prefixes: Int32Array = new Int32Array(0);
  /** By slot: the tag epoch of an entry stored with tags (a `Tagged`), as its last hit
   * found it valid; -1 for one without. Empty until the first entry with tags. */
  #epochs: Float64Array = new Float64Array(0);
  /** Beside `#epochs`: a tagged entry's value as a hit returns it, so that a hit at the
   * clock's epoch reads neither its wrapper nor its form. */
  #tagHits: unknown[] = [];
  /** Changes of the hash table (an entry placed or unindexed, the table reset). */
  #changes = 0;
  /**
   * The arguments of the last call that {@linkcode TsSieveStore.prototype.getArgs | getArgs}
   * found absent, their hash and `#changes` then: the insert of that call's key (its
   * {@linkcode KeyBytes.args} hold the same arguments) takes its hash from here, not from
   * decoding and hashing its bytes again, and skips the probe while the table has not
   * changed since. Matched by content: the array may be one that `cache()` lends each call
   * and fills again (`src/call/cache.ts`), and the insert's arguments a copy of it. Its
   * first four values as found absent are kept apart (`#absent0`..`#absent3`): a lookup
   * that records nothing (a hit, an expired entry) fills the lent array with values whose
   * hash is not `#absentHash`, and the insert then takes nothing from here.
   */
  #absentArgs: unknown[] | undefined = undefined;
  #absent0: unknown = undefined;
  #absent1: unknown = undefined;
  #absent2: unknown = undefined;
  #absent3: unknown = undefined;
  #absentHash = 0;
  #absentAt = -1;
  /** The plain object whose call `getArgs` found absent last, by its values (kept in
   * `#absentArgs`), until {@linkcode TsSieveStore.prototype.writeAbsentKey} writes its key. */
  #absentObject: unknown = undefined;
  /** The key's bytes that `writeAbsentKey` wrote for `#absentArgs` (`[0, #absentKeyLen)`;
   * -1: none): the insert that gets them takes those values without decoding its key. */
  #absentKey = new Uint8Array(64);
  #absentKeyLen = -1;
  /** Whether a call of one plain object is looked up by its values (`memoryKeys`). */
  readonly #objects: boolean;
  #hits = 0;
  #misses = 0;
  #staleHits = 0;
  #refreshes = 0;
  /** The byte budget (`undefined`: none), the entries' sizes by slot, their sum, and the
   * entries not stored for being larger than the budget. */
  #maxBytes: number | undefined;
  #sizes: number[] = [];
  #bytes = 0;
  #oversizeSkips = 0;
  /**
   * Set while the queue and the index are being changed together. A throw in between (a
   * stack overflow in the caller's recursion can strike at any call) leaves it set, and the
   * next operation empties the store (see `#repair`) instead of reading a half-done change.
   */
  #busy = false;

  /**
   * Creates an empty store.
   *
   * @param options Size bound, TTL and eviction policy.
   * @throws {TypeError} If `maxSize` or `ttl` is not a number.
   * @throws {RangeError} If `maxSize` is not a positive integer nor `Infinity`, `ttl` is
   *   not a positive finite number, `stale` is not 0 nor a positive finite number,
   *   `policy` is not an integer from 0 to 7, or `maxBytes` is not a positive integer.
   */
  constructor(options: TsSieveStoreOptions) {
    const maxSize = checkMaxSize("TsSieveStore", options.maxSize);
    const ttl = checkTtl("TsSieveStore", options.ttl);
    const stale = options.stale === 0 ? 0 : checkMs("TsSieveStore", "stale", options.stale) ?? 0;
    const policy = options.policy ?? 0;
    if (!isPolicy(policy)) {
      throw new RangeError(
        `Cannot create TsSieveStore: policy must be an integer from 0 to 7: received ${
          describe(policy)
        }`,
      );
    }
    this.#maxSize = maxSize;
    this.#maxBytes = checkMemoryMaxBytes("TsSieveStore", options.maxBytes);
    this.#queue = new SieveQueue(maxSize, ttl, policy, stale);
    this.#args = this.#queue.ext === null ? new ArgsDecoder() : null;
    this.#objects = options.memoryKeys ?? true;
    this.ttlOn = ttl !== undefined;
    this.#table = new Int32Array(0);
    this.#mask = 0;
    this.#resetTable();
  }

  /**
   * Returns the value stored under `key[0..len)` if present and fresh at `now`, else
   * {@linkcode MISS}; counts a hit or a miss.
   *
   * @param key Buffer holding the encoded key (read before returning).
   * @param len Length of the key in `key`.
   * @param now Current time in ms on the cache's clock.
   * @returns The stored value, or {@linkcode MISS}.
   */
  get(key: Uint8Array, len: number, now: number): unknown {
    if (this.#busy) this.#repair();
    const slot = this.#slotOf(key, len);
    if (slot === NIL) {
      this.#misses++;
      return MISS;
    }
    const queue = this.#queue;
    if (queue.expiring) {
      const age = queue.age(slot, now);
      if (age !== FRESH) {
        if (age === GONE) {
          this.#busy = true;
          this.#removeSlot(slot);
          this.#busy = false;
        }
        this.#misses++;
        return MISS;
      }
    }
    this.#hits++;
    if (queue.policy === SIEVE) {
      queue.visited[slot] = 1;
    } else {
      this.#busy = true;
      queue.hit(slot);
      this.#busy = false;
    }
    return hitOf(this.#values[slot]);
  }

  /**
   * {@linkcode TsSieveStore.prototype.get | get} by the arguments of a call (no `this`)
   * rather than its encoded key: the value stored under them if present and fresh at `now`
   * (a hit counted); {@linkcode ABSENT} when they are indexed by arguments and absent (a
   * miss counted); else {@linkcode MISS} with nothing counted or changed (arguments indexed
   * by bytes, or an entry not fresh), and the caller then looks the encoded key up with
   * `get`.
   *
   * @param args The call's arguments.
   * @param now Current time in ms on the cache's clock.
   * @returns The stored value, {@linkcode ABSENT} or {@linkcode MISS}.
   */
  getArgs(args: unknown[], now: number): unknown {
    const slot = this.#hitArgs(args, now);
    return slot >= 0 ? hitOf(this.#values[slot]) : slot === NIL ? ABSENT : MISS;
  }

  /**
   * {@linkcode TsSieveStore.prototype.getArgs | getArgs} for a cache whose entries may
   * carry tags, checked against `clock` (README, "Tags"): an entry whose epoch (kept beside
   * it) is the clock's epoch is a hit at the cost of one more compare; one checked against
   * an older epoch is a hit when none of its tags was invalidated since (its epoch moves
   * forward), else {@linkcode INVALID} (its hit is counted: the caller counts it as a miss
   * and drops it).
   *
   * @param args The call's arguments.
   * @param now Current time in ms on the cache's clock.
   * @param clock The clock of tag invalidations.
   * @returns The stored value, {@linkcode ABSENT}, {@linkcode MISS} or {@linkcode INVALID}.
   */
  getArgsTagged(args: unknown[], now: number, clock: TagClock): unknown {
    const slot = this.#hitArgs(args, now);
    if (slot < 0) return slot === NIL ? ABSENT : MISS;
    return this.#epochs[slot] === clock.epoch ? this.#tagHits[slot] : this.#recheck(slot, clock);
  }

  /**
   * Writes into `w` the key of the call of `args` that `getArgs` (or `getArgsTagged`) has
   * just found absent, when it read that call's one plain object by its values: the bytes
   * that encoding the call writes, from the values read then, so that a miss reads the
   * object once. Returns `false`, writing nothing, for any other call.
   *
   * @param args The call's arguments.
   * @param w The writer to write the key into (memory form).
   * @returns Whether the key was written.
   */
  writeAbsentKey(args: unknown[], w: KeyWriter): boolean {
    const o = this.#absentObject;
    const key = this.#absentArgs;
    if (o === undefined || key === undefined || args.length !== 1 || args[0] !== o) return false;
    this.#absentObject = undefined;
    const len = w.shapedCall((key[0] as ShapeToken).number, key);
    let copy = this.#absentKey;
    if (copy.length < len) copy = this.#absentKey = new Uint8Array(2 * len);
    const buf = w.buf;
    for (let i = 0; i < len; i++) copy[i] = buf[i]!;
    this.#absentKeyLen = len;
    return true;
  }

  /** A tagged hit by arguments on the entry at `slot`, checked at an older epoch than the
   * clock's: its hit form, with its epoch moved forward, or `INVALID`. Apart from
   * `getArgsTagged`, whose chain V8 inlines only while it stays small. */
  #recheck(slot: number, clock: TagClock): unknown {
    const v = this.#values[slot];
    if (!(v instanceof Tagged)) return hitOf(v);
    if (!stillValid(v, clock)) return INVALID;
    this.#epochs[slot] = v.at;
    return hitOf(v.v);
  }

  /** The slot of a hit by arguments (counted and marked), else `NIL` for an absent key (a
   * miss counted) or -2 for arguments not indexed so or an entry not fresh. */
  #hitArgs(args: unknown[], now: number): number {
    if (this.#args === null || this.#busy) return -2;
    const n = args.length;
    const hash = hashArgs(args, n);
    if (hash < 0) return this.#hitObject(args, now);
    const slot = this.#findArgs(args, n, hash);
    if (slot === NIL) return this.#absent(args, hash);
    const queue = this.#queue;
    if (queue.expiring || queue.policy !== SIEVE) return this.#hitOther(slot, now);
    this.#hits++;
    queue.visited[slot] = 1;
    return slot;
  }

  /** `#hitArgs` of a call of one plain object, by its values (`flattenObject`): a slot,
   * `NIL` or -2 as there. */
  #hitObject(args: unknown[], now: number): number {
    if (!this.#objects || args.length !== 1) return -2;
    const n = flattenObject(args[0]);
    if (n < 0) return -2;
    const hash = hashObjectKey(flat, n);
    const slot = this.#findArgs(flat, n, hash);
    if (slot === NIL) {
      this.#absent(flat.slice(0, n), hash);
      this.#absentObject = args[0];
      return NIL;
    }
    return this.#hitOther(slot, now);
  }

  // `#hitArgs` keeps a SIEVE hit without TTL inline and the rest in the methods below:
  // V8 inlines at most 920 bytes of bytecode into one function, and a hit's whole chain (the
  // cached function down to the hash) was over it, so that which parts were inlined
  // depended on what was optimized first (notes/native_hit.md).

  /** Whether `values[0..n)` are the arguments last found absent, as they were then (see
   * `#absentArgs`; more than four are a plain object's, in a copy never filled again). */
  #matchesAbsent(values: readonly unknown[], n: number): boolean {
    const absent = this.#absentArgs!;
    if (absent.length !== n) return false;
    if (n > 4) return sameValues(values, absent, n);
    return same(values[0], this.#absent0) && (n < 2 || same(values[1], this.#absent1)) &&
      (n < 3 || same(values[2], this.#absent2)) && (n < 4 || same(values[3], this.#absent3));
  }

  /** Counts the miss of arguments found absent and keeps them for the insert that follows
   * (`NIL`). */
  #absent(args: unknown[], hash: number): number {
    this.#misses++;
    this.#absentObject = undefined;
    this.#absentKeyLen = -1;
    this.#absentArgs = args;
    const n = args.length;
    this.#absent0 = args[0];
    this.#absent1 = n > 1 ? args[1] : undefined;
    this.#absent2 = n > 2 ? args[2] : undefined;
    this.#absent3 = n > 3 ? args[3] : undefined;
    this.#absentHash = hash;
    this.#absentAt = this.#changes;
    return NIL;
  }

  /** A hit by arguments on `slot` (`#hitArgs` keeps a SIEVE hit without TTL inline; an
   * object's hit takes every case here): the slot (counted and marked), or -2 for an entry
   * not fresh. */
  #hitOther(slot: number, now: number): number {
    const queue = this.#queue;
    if (queue.expiring && queue.age(slot, now) !== FRESH) return -2;
    this.#hits++;
    if (queue.policy === SIEVE) {
      queue.visited[slot] = 1;
    } else {
      this.#busy = true;
      queue.hit(slot);
      this.#busy = false;
    }
    return slot;
  }

  /** The slot of `key[0..len)`, or `NIL`. */
  #slotOf(key: Uint8Array, len: number): number {
    const args = this.#args;
    if (args !== null) {
      const n = args.decode(key, len);
      if (n > 0) return this.#findArgs(args.values, n, hashOfKey(args.values, n));
    }
    return this.#find(key, len, hashBytes(key, len));
  }

  /**
   * Stores `value` under `key[0..len)` at time `now`, evicting one entry by the policy
   * when the store is full and the key is new.
   *
   * Under a byte budget (`maxBytes`), entries are first evicted by the policy until the
   * entry's `size` fits beside the others (the entry replaced, when fresh or stale, does not
   * count; it may be evicted itself, and is then stored anew). An entry larger than the
   * budget is not stored, counts in `oversizeSkips`, and removes the key's present entry.
   *
   * @param key Buffer holding the encoded key (copied before returning).
   * @param len Length of the key in `key`.
   * @param value Value to keep (as is).
   * @param now Current time in ms on the cache's clock.
   * @param promised Whether `value` is the resolution of a Promise: later hits then return
   *   `Promise.resolve(value)` (one Promise, kept).
   * @param _ptr Unused (the native store's key address).
   * @param ttl The entry's own TTL in ms (positive, `Infinity` for never), replacing the
   *   store's; `undefined`: the store's.
   * @param size The entry's size in bytes under a byte budget (`undefined`: 0); unused
   *   without one.
   * @param owner The key's holder: its `args`, when they are those of the call that
   *   `getArgs` last found absent, spare decoding the key (see `#absentArgs`).
   * @returns Whether the entry was stored: always, but for an entry larger than `maxBytes`.
   * @throws {RangeError} If `ttl` is 0, negative or `NaN`, or `size` is not a non-negative
   *   integer (under a byte budget).
   */
  set(
    key: Uint8Array,
    len: number,
    value: unknown,
    now: number,
    promised = false,
    _ptr?: Deno.PointerValue,
    ttl?: number,
    size?: number,
    owner?: KeyBytes,
  ): boolean {
    if (this.#busy) this.#repair();
    if (ttl !== undefined) checkEntryTtl("TsSieveStore", ttl);
    const maxBytes = this.#maxBytes;
    let bytes = 0;
    if (maxBytes !== undefined) {
      bytes = checkEntrySize("TsSieveStore", size);
      if (bytes > maxBytes) return this.#skipOversize(key, len);
    }
    if (promised) value = promisedEntry(value);
    // The key of a call found absent by its arguments: those arguments and their hash, and
    // no probe while the table is as that lookup left it. The holder's arguments are that
    // call's when they equal them; else the key is decoded, and may still be its key (a
    // plain object's, found absent by the values the lookup read). Any other key is hashed
    // and probed anew.
    let values: unknown[];
    let n: number;
    let hash: number;
    let slot: number;
    const absent = this.#absentArgs;
    const owned = owner?.args;
    let takesAbsent = absent !== undefined && owned !== undefined &&
      this.#matchesAbsent(owned, owned.length);
    if (takesAbsent) {
      values = owned!;
      n = owned!.length;
    } else if (absent !== undefined && this.#sameAbsentKey(key, len)) {
      // A plain object's key, written from the values its lookup read.
      takesAbsent = true;
      values = absent;
      n = absent.length;
    } else {
      const args = this.#args;
      n = args === null ? -1 : args.decode(key, len);
      values = n > 0 ? args!.values : [];
      takesAbsent = n > 0 && absent !== undefined && this.#matchesAbsent(values, n);
      // The values as that lookup read them (the user's strings, not decoded copies), while
      // the array holds them still.
      if (takesAbsent && sameValues(absent!, values, n)) values = absent!;
    }
    if (takesAbsent) {
      this.#absentArgs = undefined;
      hash = this.#absentHash;
      slot = this.#absentAt === this.#changes ? NIL : this.#findArgs(values, n, hash);
    } else {
      hash = n > 0 ? hashOfKey(values, n) : hashBytes(key, len);
      slot = n > 0 ? this.#findArgs(values, n, hash) : this.#find(key, len, hash);
    }
    const queue = this.#queue;
    if (maxBytes !== undefined) slot = this.#makeRoom(slot, bytes, maxBytes, now);
    if (slot !== NIL) {
      queue.stamp(slot, now, ttl);
      this.#values[slot] = value;
      this.#keepEpoch(slot, value);
      if (maxBytes !== undefined) {
        this.#bytes += bytes - this.#sizes[slot]!;
        this.#sizes[slot] = bytes;
      }
      return true;
    }
    const keyString = n > 0 ? "" : bytesToString(key, len);
    this.#busy = true;
    const ext = queue.ext;
    if (ext !== null) ext.arrive(keyString, hash);
    if (queue.size >= queue.capacity) {
      const victim = queue.evict();
      if (ext !== null) ext.evicted(this.#keys[victim] as string, this.#hashes[victim]!);
      this.#unindex(victim);
      this.#dropValue(victim);
    }
    slot = queue.add(now, hash);
    if (maxBytes !== undefined) {
      this.#sizes[slot] = bytes;
      this.#bytes += bytes;
    }
    queue.stamp(slot, now, ttl);
    this.#values[slot] = value;
    if (n === 2) {
      const pairs = this.#pairs;
      // Filled up to the slot first: a write far past the end would make V8 keep the array
      // as a dictionary (a cache whose first keys were of another arity).
      while (pairs.length < 2 * slot) pairs.push(undefined);
      this.#keys[slot] = PAIR;
      pairs[2 * slot] = values[0];
      pairs[2 * slot + 1] = values[1];
    } else if (n === 3) {
      const triples = this.#triples;
      while (triples.length < 3 * slot) triples.push(undefined);
      this.#keys[slot] = TRIPLE;
      triples[3 * slot] = values[0];
      triples[3 * slot + 1] = values[1];
      triples[3 * slot + 2] = values[2];
    } else {
      this.#keys[slot] = n > 0 ? keyOfArgs(values, n) : keyString;
    }
    if (n <= 0) this.#keepPrefix(slot, key, len);
    let hashes = this.#hashes;
    if (slot >= hashes.length) {
      const grown = new Int32Array(Math.max(queue.newer.length, slot + 1));
      grown.set(hashes);
      hashes = this.#hashes = grown;
    }
    hashes[slot] = hash;
    this.#keepEpoch(slot, value);
    if (queue.size * 2 > this.#table.length) this.#growTable();
    this.#place(slot, hash);
    this.#busy = false;
    return true;
  }

  /** Whether `key[0..len)` is the key `writeAbsentKey` wrote last (for `#absentArgs`). */
  #sameAbsentKey(key: Uint8Array, len: number): boolean {
    if (len !== this.#absentKeyLen) return false;
    const copy = this.#absentKey;
    // From the end: keys of one shape differ in their values, after the shape.
    let i = len;
    while (i > 0 && key[i - 1] === copy[i - 1]) i--;
    return i === 0;
  }

  /** Keeps the word prefix of the byte key `key[0..len)` stored at `slot` (see `#prefixes`). */
  #keepPrefix(slot: number, key: Uint8Array, len: number): void {
    let prefixes = this.#prefixes;
    if ((slot + 1) * PREFIX_WORDS > prefixes.length) {
      const grown = new Int32Array(Math.max(this.#queue.newer.length, slot + 1) * PREFIX_WORDS);
      grown.set(prefixes);
      prefixes = this.#prefixes = grown;
    }
    const whole = Math.min(len, 4 * PREFIX_WORDS) & ~3;
    for (let j = 0, w = slot * PREFIX_WORDS; j < whole; j += 4, w++) {
      prefixes[w] = key[j]! | (key[j + 1]! << 8) | (key[j + 2]! << 16) | (key[j + 3]! << 24);
    }
  }

  /** Keeps the tag epoch of the entry `value` stored at `slot` beside it (see
   * `getArgsTagged`). */
  #keepEpoch(slot: number, value: unknown): void {
    let epochs = this.#epochs;
    if (!(value instanceof Tagged)) {
      if (slot < epochs.length) {
        epochs[slot] = -1;
        this.#tagHits[slot] = undefined;
      }
      return;
    }
    if (slot >= epochs.length) {
      const grown = new Float64Array(Math.max(this.#queue.newer.length, slot + 1)).fill(-1);
      grown.set(epochs);
      epochs = this.#epochs = grown;
    }
    epochs[slot] = value.at;
    this.#tagHits[slot] = hitOf(value.v);
  }

  /** Forgets the value of a freed `slot`, and takes its size off the byte count. */
  #dropValue(slot: number): void {
    this.#values[slot] = undefined;
    if (slot < this.#tagHits.length) this.#tagHits[slot] = undefined;
    this.#freeBytes(slot);
  }

  /**
   * Evicts by the policy until an entry of `size` bytes fits within `maxBytes` beside the
   * others; `slot` is the key's present entry (or `NIL`), whose size does not count while
   * it is fresh or stale (as the native store, which sees no gone entry there). Returns
   * `slot`, or `NIL` when it was evicted itself.
   */
  #makeRoom(slot: number, size: number, maxBytes: number, now: number): number {
    const queue = this.#queue;
    const sizes = this.#sizes;
    const ext = queue.ext;
    let own = slot !== NIL && queue.age(slot, now) !== GONE ? slot : NIL;
    this.#busy = true;
    while (this.#bytes - (own === NIL ? 0 : sizes[own]!) + size > maxBytes) {
      const victim = queue.evict();
      if (victim === NIL) break;
      if (ext !== null) ext.evicted(this.#keys[victim] as string, this.#hashes[victim]!);
      this.#unindex(victim);
      this.#dropValue(victim);
      if (victim === slot) slot = own = NIL;
    }
    this.#busy = false;
    return slot;
  }

  /** Counts an entry larger than the byte budget, and removes the key's present entry. */
  #skipOversize(key: Uint8Array, len: number): false {
    this.#oversizeSkips++;
    const slot = this.#slotOf(key, len);
    if (slot !== NIL) {
      this.#busy = true;
      this.#removeSlot(slot);
      this.#busy = false;
    }
    return false;
  }

  /** Takes the size of the freed `slot` off the byte count. */
  #freeBytes(slot: number): void {
    if (this.#maxBytes === undefined) return;
    this.#bytes -= this.#sizes[slot]!;
    this.#sizes[slot] = 0;
  }

  /**
   * The value under `key[0..len)` if present and fresh at `now` (an async result's
   * resolved value), else {@linkcode MISS}, without counting or marking anything; an
   * expired entry is left in place.
   *
   * @param key Buffer holding the encoded key.
   * @param len Length of the key in `key`.
   * @param now Current time in ms on the cache's clock.
   * @returns The stored value, or {@linkcode MISS}.
   */
  peek(key: Uint8Array, len: number, now: number): unknown {
    if (this.#busy) this.#repair();
    const slot = this.#slotOf(key, len);
    if (slot === NIL || this.#queue.age(slot, now) !== FRESH) return MISS;
    return this.#values[slot];
  }

  /**
   * Removes `key[0..len)`.
   *
   * @param key Buffer holding the encoded key.
   * @param len Length of the key in `key`.
   * @returns Whether the key was present (even if expired).
   */
  delete(key: Uint8Array, len: number): boolean {
    if (this.#busy) this.#repair();
    const slot = this.#slotOf(key, len);
    if (slot === NIL) return false;
    this.#busy = true;
    this.#removeSlot(slot);
    this.#busy = false;
    return true;
  }

  /**
   * The {@linkcode Store} of this store: keys by their bytes, and time from `clock` when one
   * is injected (read by every operation that needs the time), else `performance.now()`,
   * read only with a TTL, and for lookups at most once a millisecond (`_coarse_clock.ts`).
   *
   * @param clock Time source in ms.
   * @returns The store as `cache()` uses it.
   */
  keyed(clock?: () => number): Store {
    return new StoreView(this, this.ttlOn, clock, VIEW);
  }

  /**
   * Turns the miss counted by the last {@linkcode TsSieveStore.prototype.get | get()} into
   * a hit (a call that joined a pending computation). Does nothing when no miss is counted
   * (the counters were cleared in between).
   */
  countJoin(): void {
    if (this.#misses > 0) {
      this.#misses--;
      this.#hits++;
    }
  }

  /** Turns the miss counted by the last `get()` into a hit and a stale hit. */
  countStaleHit(joined = false): void {
    if (!joined) this.countJoin();
    this.#staleHits++;
  }

  /** Counts a background refresh. */
  countRefresh(): void {
    this.#refreshes++;
  }

  /**
   * The value under `key[0..len)` while fresh or stale at `now` (an async result's resolved
   * value), else {@linkcode MISS}, without counting, marking or removing anything.
   *
   * @param key Buffer holding the encoded key.
   * @param len Length of the key in `key`.
   * @param now Current time in ms on the cache's clock.
   * @returns The stored value, or {@linkcode MISS}.
   */
  peekStale(key: Uint8Array, len: number, now: number): unknown {
    if (this.#busy) this.#repair();
    const slot = this.#slotOf(key, len);
    if (slot === NIL || this.#queue.age(slot, now) === GONE) return MISS;
    return this.#values[slot];
  }

  /** Removes every entry and resets the counters. */
  clear(): void {
    this.#hits = 0;
    this.#misses = 0;
    this.#staleHits = 0;
    this.#refreshes = 0;
    this.#oversizeSkips = 0;
    this.#queue.evictions = 0;
    this.#repair();
  }

  /** Empties the store, keeping the counters; `#busy` is cleared last, so a repair cut
   * short is done again by the next operation. */
  #repair(): void {
    this.#queue.clear();
    this.#keys = [];
    this.#pairs = [];
    this.#triples = [];
    this.#hashes = new Int32Array(0);
    this.#prefixes = new Int32Array(0);
    this.#epochs = new Float64Array(0);
    this.#tagHits = [];
    this.#values = [];
    this.#sizes = [];
    this.#bytes = 0;
    this.#resetTable();
    this.#busy = false;
  }

  /**
   * Returns the counters and sizes.
   *
   * @returns Hits, misses, `maxSize` as given and the number of entries held.
   */
  info(): StoreInfo {
    if (this.#busy) this.#repair();
    const info: StoreInfo = {
      hits: this.#hits,
      misses: this.#misses,
      maxSize: this.#maxSize,
      currentSize: this.#queue.size,
    };
    if (this.#queue.evictions > 0) info.evictions = this.#queue.evictions;
    if (this.#staleHits > 0 || this.#refreshes > 0) {
      info.staleHits = this.#staleHits;
      info.refreshes = this.#refreshes;
    }
    if (this.#maxBytes !== undefined) {
      info.bytes = this.#bytes;
      info.maxBytes = this.#maxBytes;
      info.oversizeSkips = this.#oversizeSkips;
    }
    return info;
  }

  /** Does nothing: the store holds no native resource. */
  close(): void {}

  /**
   * Keys (one char per byte) from the head (newest) to the tail (oldest), with their
   * visited bits: the SIEVE state, for tests.
   *
   * @returns `[key, visited]` pairs, newest first.
   */
  order(): Array<[string, boolean]> {
    if (this.#busy) this.#repair();
    const queue = this.#queue;
    return queue.order().map((slot) => [this.#keyString(slot), queue.visited[slot] === 1]);
  }

  /**
   * S3-FIFO and W-TinyLFU, for tests: each entry's key (one char per byte), queue
   * (`"small"`, `"main"`; `"window"`, `"probation"`, `"protected"`) and access count (S3-FIFO),
   * in the policy's order (see `_s3fifo.ts`, `_wtinylfu.ts`), and S3-FIFO's ghost keys, newest
   * first. Empty for the other policies.
   *
   * @returns The entries and the ghost.
   */
  policyState(): { entries: Array<[string, string, number]>; ghost: string[] } {
    if (this.#busy) this.#repair();
    const ext = this.#queue.ext;
    if (ext === null) return { entries: [], ghost: [] };
    const entries = ext.order().map((slot): [string, string, number] => [
      this.#keyString(slot),
      ...ext.describe(slot),
    ]);
    return { entries, ghost: ext.ghostOrder() };
  }

  /**
   * Checks the invariants of the queue and of the index, for tests.
   *
   * @throws {Error} On the first violation found.
   */
  validate(): void {
    if (this.#busy) this.#repair();
    const queue = this.#queue;
    queue.validate((slot) => {
      const key = this.#keys[slot];
      const hash = this.#hashes[slot]!;
      if ((hash & ARGS_BIT) !== 0) {
        const args = this.#argsAt(slot);
        return this.#args !== null && hashOfKey(args, args.length) === hash &&
          this.#findArgs(args, args.length, hash) === slot;
      }
      if (typeof key !== "string") return false;
      const bytes = Uint8Array.from(key, (c) => c.charCodeAt(0));
      return hash === hashBytes(bytes, bytes.length) &&
        this.#find(bytes, bytes.length, hash) === slot;
    });
    let used = 0;
    for (let i = 0; i < this.#table.length; i++) if (this.#table[i] !== NIL) used++;
    if (used !== queue.size) {
      throw new Error(`TsSieveStore invariant violated: ${used} indexed, ${queue.size} live`);
    }
    for (const slot of queue.free) {
      if (this.#values[slot] !== undefined) {
        throw new Error(`TsSieveStore invariant violated: free slot ${slot} keeps a value`);
      }
    }
    if (this.#maxBytes !== undefined) {
      let sum = 0;
      for (const slot of queue.order()) sum += this.#sizes[slot]!;
      if (sum !== this.#bytes || this.#bytes > this.#maxBytes) {
        throw new Error(
          `TsSieveStore invariant violated: ${this.#bytes} bytes counted, ${sum} held, budget ${this.#maxBytes}`,
        );
      }
    }
  }

  /** The key at `slot` as one char per byte (for tests). */
  #keyString(slot: number): string {
    const key = this.#keys[slot];
    if ((this.#hashes[slot]! & ARGS_BIT) === 0) return key as string;
    const args = this.#argsAt(slot);
    const bytes = encodeKey(args[0] instanceof ShapeToken ? [objectOfKey(args)] : args);
    return bytesToKeyString(bytes, bytes.length);
  }

  /** The arguments of the key of arguments at `slot`. */
  #argsAt(slot: number): unknown[] {
    const key = this.#keys[slot];
    if (key === TRIPLE) {
      const t = this.#triples;
      return [t[3 * slot], t[3 * slot + 1], t[3 * slot + 2]];
    }
    return key === PAIR ? [this.#pairs[2 * slot], this.#pairs[2 * slot + 1]] : argsOfKey(key);
  }

  /** The slot of the key of `n` arguments `args[0..n)` whose hash is `hash`, or `NIL`. */
  #findArgs(args: ArrayLike<unknown>, n: number, hash: number): number {
    const table = this.#table;
    const mask = this.#mask;
    const keys = this.#keys;
    const hashes = this.#hashes;
    if (n === 2) {
      const pairs = this.#pairs;
      const a = args[0];
      const b = args[1];
      for (let i = hash & mask;; i = (i + 1) & mask) {
        const slot = table[i]!;
        if (slot === NIL) return NIL;
        if (
          hashes[slot] === hash && keys[slot] === PAIR && same(pairs[2 * slot], a) &&
          same(pairs[2 * slot + 1], b)
        ) return slot;
      }
    }
    if (n === 3) return this.#findTriple(args, hash);
    for (let i = hash & mask;; i = (i + 1) & mask) {
      const slot = table[i]!;
      if (slot === NIL) return NIL;
      if (hashes[slot] === hash && sameArgs(keys[slot], args, n)) return slot;
    }
  }

  /** `#findArgs` of three arguments (kept in `#triples`), apart from it: the two-argument
   * hit's chain stays small enough for V8 to inline whole (see `#hitArgs`). */
  #findTriple(args: ArrayLike<unknown>, hash: number): number {
    const table = this.#table;
    const mask = this.#mask;
    const keys = this.#keys;
    const hashes = this.#hashes;
    const triples = this.#triples;
    const a = args[0];
    const b = args[1];
    const c = args[2];
    for (let i = hash & mask;; i = (i + 1) & mask) {
      const slot = table[i]!;
      if (slot === NIL) return NIL;
      if (
        hashes[slot] === hash && keys[slot] === TRIPLE && same(triples[3 * slot], a) &&
        same(triples[3 * slot + 1], b) && same(triples[3 * slot + 2], c)
      ) return slot;
    }
  }

  #find(key: Uint8Array, len: number, hash: number): number {
    const table = this.#table;
    const mask = this.#mask;
    const keys = this.#keys;
    const hashes = this.#hashes;
    for (let i = hash & mask;; i = (i + 1) & mask) {
      const slot = table[i]!;
      if (slot === NIL) return NIL;
      if (hashes[slot] === hash) {
        const stored = keys[slot] as string;
        if (stored.length === len && this.#samePrefix(slot, key, len)) {
          let j = Math.min(len, 4 * PREFIX_WORDS) & ~3;
          while (j < len && stored.charCodeAt(j) === key[j]) j++;
          if (j === len) return slot;
        }
      }
    }
  }

  /** Whether the byte key at `slot`, of `len` bytes, starts with the whole words of
   * `key[0..len)` that `#prefixes` keeps. */
  #samePrefix(slot: number, key: Uint8Array, len: number): boolean {
    const prefixes = this.#prefixes;
    const whole = Math.min(len, 4 * PREFIX_WORDS) & ~3;
    for (let j = 0, w = slot * PREFIX_WORDS; j < whole; j += 4, w++) {
      const word = key[j]! | (key[j + 1]! << 8) | (key[j + 2]! << 16) | (key[j + 3]! << 24);
      if (word !== prefixes[w]) return false;
    }
    return true;
  }

  #place(slot: number, hash: number): void {
    const table = this.#table;
    const mask = this.#mask;
    let i = hash & mask;
    while (table[i] !== NIL) i = (i + 1) & mask;
    table[i] = slot;
    this.#changes++;
  }

  /** Removes `slot` from the index, and lets its key go. */
  #unindex(slot: number): void {
    this.#unindexBytes(slot);
    const key = this.#keys[slot];
    if (key === PAIR) this.#pairs[2 * slot] = this.#pairs[2 * slot + 1] = undefined;
    else if (key === TRIPLE) {
      this.#triples[3 * slot] =
        this.#triples[3 * slot + 1] =
        this.#triples[3 * slot + 2] =
          undefined;
    }
    this.#keys[slot] = undefined;
  }

  /** Removes `slot` from the hash table (backward-shift deletion keeps probes unbroken). */
  #unindexBytes(slot: number): void {
    unprobe(this.#table, this.#mask, this.#hashes, slot);
    this.#changes++;
  }

  #removeSlot(slot: number): void {
    this.#unindex(slot);
    this.#queue.remove(slot);
    this.#dropValue(slot);
  }

  #resetTable(): void {
    let n = 2;
    const want = 2 * Math.min(this.#maxSize, INITIAL_TABLE / 2);
    while (n < want) n *= 2;
    this.#table = new Int32Array(n).fill(NIL);
    this.#mask = n - 1;
    this.#changes++;
    this.#absentArgs = undefined;
  }

  #growTable(): void {
    const old = this.#table;
    this.#table = new Int32Array(old.length * 2).fill(NIL);
    this.#mask = this.#table.length - 1;
    for (let i = 0; i < old.length; i++) {
      const slot = old[i]!;
      if (slot !== NIL) this.#place(slot, this.#hashes[slot]!);
    }
  }
}

/** The time of the stores without an injected clock: monotonic time in ms, read exactly
 * for inserts and peeks and at most once a millisecond for lookups (`_coarse_clock.ts`). */
const TIME = new CoarseClock();

/** How {@linkcode StoreView} drives this store. */
const VIEW: ViewOptions = {
  defaultTime: () => TIME.exact(),
  lookupTime: () => TIME.lookup(),
  pointerGets: false,
  pointerSets: false,
  stampAlways: false,
};
