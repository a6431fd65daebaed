import assert from "node:assert/strict";
import { loadNative } from "../src/native/ffi.ts";
import { NativeMemoryStore } from "../src/store/native_store.ts";
import { type ByteStore, MISS } from "../src/store/store.ts";
import { type Policy, TsSieveStore } from "../src/store/ts_store.ts";
import { SieveQueue } from "../src/store/_sieve_queue.ts";
import { hashBytes } from "../src/store/_hash.ts";
import { Strategy } from "../src/options/options.ts";

const { Sieve: SIEVE, Lru: LRU, Mru: MRU, Fifo: FIFO, Lfu: LFU } = Strategy;
const POLICIES: Array<[string, Policy]> = [
  ["SIEVE", SIEVE],
  ["LRU", LRU],
  ["MRU", MRU],
  ["FIFO", FIFO],
  ["LFU", LFU],
];
/** With the policies of queues of their own, modelled in `eviction_policies_test.ts`. */
const ALL_POLICIES: Array<[string, Policy]> = [
  ...POLICIES,
  ["S3-FIFO", Strategy.S3Fifo],
  ["W-TinyLFU", Strategy.WTinyLfu],
];

/** One-byte keys, as in the Rust tests of `rust/src/sieve.rs`. */
function put(s: TsSieveStore, k: number, now = 0): void {
  assert.equal(s.set(new Uint8Array([k]), 1, `v${k}`, now), true);
  s.validate();
}

function get(s: TsSieveStore, k: number, now = 0): unknown {
  const r = s.get(new Uint8Array([k]), 1, now);
  s.validate();
  return r;
}

function keys(s: TsSieveStore): number[] {
  return s.order().map(([key]) => key.charCodeAt(0));
}

const enc = (text: string): Uint8Array => new TextEncoder().encode(text);

Deno.test("TsSieveStore evicts the unvisited oldest entry first", () => {
  const s = new TsSieveStore({ maxSize: 3 });
  for (const k of [1, 2, 3]) put(s, k);
  put(s, 4);
  assert.deepEqual(keys(s), [4, 3, 2]);
  assert.equal(get(s, 1), MISS);
  assert.equal(get(s, 2), "v2");
});

Deno.test("TsSieveStore gives a visited entry a second chance", () => {
  const s = new TsSieveStore({ maxSize: 3 });
  for (const k of [1, 2, 3]) put(s, k);
  assert.equal(get(s, 1), "v1");
  assert.deepEqual(s.order()[2], ["\x01", true]);
  put(s, 4); // hand at 1: visited -> cleared, moves to 2, evicts 2
  assert.deepEqual(keys(s), [4, 3, 1]);
  assert.deepEqual(s.order()[2], ["\x01", false], "the bit of 1 was cleared");
});

Deno.test("TsSieveStore hand resumes where it stopped", () => {
  const s = new TsSieveStore({ maxSize: 4 });
  for (const k of [1, 2, 3, 4]) put(s, k);
  get(s, 1);
  get(s, 3);
  put(s, 5); // clears 1, evicts 2; hand now at 3
  assert.deepEqual(keys(s), [5, 4, 3, 1]);
  get(s, 1); // 1 visited again
  put(s, 6); // hand at 3: visited -> cleared; 4 unvisited -> evicted
  assert.deepEqual(keys(s), [6, 5, 3, 1]);
  put(s, 7); // hand at 5 (newer than 4): unvisited -> evicted
  assert.deepEqual(keys(s), [7, 6, 3, 1]);
  assert.deepEqual(s.order().map(([, v]) => v), [false, false, false, true]);
});

Deno.test("TsSieveStore hand wraps to the tail", () => {
  const s = new TsSieveStore({ maxSize: 2 });
  put(s, 1);
  put(s, 2);
  get(s, 1);
  get(s, 2);
  put(s, 3); // both visited: full round, wraps, evicts 1
  assert.deepEqual(keys(s), [3, 2]);
  assert.deepEqual(s.order(), [["\x03", false], ["\x02", false]]);
});

Deno.test("TsSieveStore keeps hot entries through a scan", () => {
  const s = new TsSieveStore({ maxSize: 4 });
  for (const k of [1, 2]) {
    put(s, k);
    get(s, k);
  }
  for (let k = 10; k < 40; k++) put(s, k); // one-hit wonders
  const order = keys(s);
  assert.ok(order.includes(1) && order.includes(2), `${order}`);
  assert.equal(order.length, 4);
});

Deno.test("TsSieveStore.set() of a present key keeps its place and bit, refreshes its time", () => {
  const s = new TsSieveStore({ maxSize: 3, ttl: 10 });
  put(s, 1, 0);
  put(s, 2, 0);
  get(s, 1, 0);
  assert.equal(s.set(new Uint8Array([1]), 1, "new", 5), true);
  s.validate();
  assert.deepEqual(s.order(), [["\x02", false], ["\x01", true]]);
  assert.equal(s.info().currentSize, 2);
  assert.equal(get(s, 1, 14), "new");
  assert.equal(get(s, 1, 15), MISS);
  assert.equal(get(s, 2, 10), MISS);
  assert.equal(s.info().currentSize, 0);
});

Deno.test("TsSieveStore expires at the TTL boundary and frees the slot", () => {
  const s = new TsSieveStore({ maxSize: 2, ttl: 100 });
  const k = enc("k");
  s.set(k, 1, "v", 1000);
  assert.equal(s.get(k, 1, 1099.9), "v");
  assert.equal(s.get(k, 1, 1100), MISS);
  assert.equal(s.get(k, 1, 1100), MISS);
  s.validate();
  assert.deepEqual(s.info(), { hits: 1, misses: 2, maxSize: 2, currentSize: 0 });
  s.set(k, 1, "w", 1100);
  assert.equal(s.get(k, 1, 1100), "w");
});

Deno.test("TsSieveStore hits do not extend the TTL", () => {
  const s = new TsSieveStore({ maxSize: 2, ttl: 10 });
  const k = enc("k");
  s.set(k, 1, 1, 0);
  assert.equal(s.get(k, 1, 9), 1);
  assert.equal(s.get(k, 1, 10), MISS);
});

Deno.test("TsSieveStore without TTL never expires", () => {
  const s = new TsSieveStore({ maxSize: 2 });
  const k = enc("k");
  s.set(k, 1, 1, 0);
  assert.equal(s.get(k, 1, Number.MAX_VALUE), 1);
});

Deno.test("TsSieveStore.delete() and clear()", () => {
  const s = new TsSieveStore({ maxSize: 3 });
  const x = enc("x"), y = enc("y");
  s.set(x, 1, "x", 0);
  s.set(y, 1, "y", 0);
  assert.equal(s.delete(x, 1), true);
  assert.equal(s.delete(x, 1), false);
  s.validate();
  assert.equal(s.get(x, 1, 0), MISS);
  assert.equal(s.get(y, 1, 0), "y");
  assert.deepEqual(s.info(), { hits: 1, misses: 1, maxSize: 3, currentSize: 1 });
  s.clear();
  s.validate();
  assert.deepEqual(s.info(), { hits: 0, misses: 0, maxSize: 3, currentSize: 0 });
  assert.equal(s.get(y, 1, 0), MISS);
  assert.deepEqual(s.order(), []);
  // Usable after clear, with the same eviction.
  for (const k of [1, 2, 3, 4]) put(s, k);
  assert.deepEqual(keys(s), [4, 3, 2]);
});

Deno.test("TsSieveStore.delete() of an expired entry reports it present", () => {
  // As the native `remove`: delete does not look at the time.
  const s = new TsSieveStore({ maxSize: 2, ttl: 10 });
  s.set(enc("k"), 1, 1, 0);
  assert.equal(s.delete(enc("k"), 1), true);
  assert.equal(s.info().currentSize, 0);
});

Deno.test("TsSieveStore removing the hand's entry moves the hand", () => {
  const s = new TsSieveStore({ maxSize: 3 });
  for (const k of [1, 2, 3]) put(s, k);
  get(s, 1);
  put(s, 4); // evicts 2, hand at 3
  assert.deepEqual(keys(s), [4, 3, 1]);
  assert.equal(s.delete(new Uint8Array([3]), 1), true); // hand moves to 4
  s.validate();
  put(s, 5);
  assert.deepEqual(keys(s), [5, 4, 1]);
  put(s, 6); // hand at 4: unvisited -> evicted
  assert.deepEqual(keys(s), [6, 5, 1]);
  put(s, 7); // hand at 5 -> evicted
  assert.deepEqual(keys(s), [7, 6, 1]);
});

Deno.test("TsSieveStore LRU, MRU and FIFO orders", async (t) => {
  const run = (policy: Policy): number[] => {
    const s = new TsSieveStore({ maxSize: 3, policy });
    for (const k of [1, 2, 3]) put(s, k);
    get(s, 1);
    put(s, 4);
    return keys(s);
  };
  await t.step("LRU: a hit moves to the head, the tail is evicted", () => {
    assert.deepEqual(run(LRU), [4, 1, 3]);
  });
  await t.step("MRU: a hit moves to the head, the head is evicted", () => {
    assert.deepEqual(run(MRU), [4, 3, 2]);
  });
  await t.step("FIFO: hits move nothing, the tail is evicted", () => {
    assert.deepEqual(run(FIFO), [4, 3, 2]);
  });
  await t.step("SIEVE", () => {
    assert.deepEqual(run(SIEVE), [4, 3, 1]);
  });
  await t.step("LFU: 1 has count 2, the oldest of count 1 is evicted", () => {
    assert.deepEqual(run(LFU), [1, 4, 3]);
  });
  await t.step("LRU order follows the hits", () => {
    const s = new TsSieveStore({ maxSize: 4, policy: LRU });
    for (const k of [1, 2, 3, 4]) put(s, k);
    get(s, 2);
    get(s, 4);
    get(s, 1);
    assert.deepEqual(keys(s), [1, 4, 2, 3]);
    put(s, 5);
    put(s, 6);
    assert.deepEqual(keys(s), [6, 5, 1, 4]);
    assert.ok(s.order().every(([, visited]) => !visited));
  });
});

// LFU: the same scenarios and expected orders as the Rust tests `lfu_*` of
// rust/src/sieve.rs. The order runs from the highest count to the lowest and, within a
// count, from the newest in its bucket to the oldest: the last key is the next victim.

Deno.test("TsSieveStore LFU evicts the least frequently used", () => {
  const s = new TsSieveStore({ maxSize: 3, policy: LFU });
  for (const k of [1, 2, 3]) put(s, k);
  assert.deepEqual(keys(s), [3, 2, 1]);
  get(s, 1);
  get(s, 1);
  get(s, 2);
  assert.deepEqual(keys(s), [1, 2, 3]); // counts 3, 2, 1
  put(s, 4); // 3 is the only entry of count 1
  assert.deepEqual(keys(s), [1, 2, 4]);
  assert.equal(get(s, 3), MISS);
  assert.deepEqual(keys(s), [1, 2, 4], "a miss changes nothing");
  put(s, 5); // the new entry 4 (count 1) goes first
  assert.deepEqual(keys(s), [1, 2, 5]);
  assert.ok(s.order().every(([, visited]) => !visited));
});

Deno.test("TsSieveStore LFU ties go to the oldest in the bucket", () => {
  const s = new TsSieveStore({ maxSize: 3, policy: LFU });
  for (const k of [1, 2, 3]) put(s, k);
  put(s, 4); // all count 1: the oldest, 1, goes
  assert.deepEqual(keys(s), [4, 3, 2]);
  // Age in the bucket, not since insertion: 3 reaches count 2 first, then 2, then 4.
  get(s, 3);
  get(s, 2);
  get(s, 4);
  assert.deepEqual(keys(s), [4, 2, 3]);
  put(s, 5); // evicts 3
  assert.deepEqual(keys(s), [4, 2, 5]);
  put(s, 6); // evicts 5 (count 1) before any entry of count 2
  assert.deepEqual(keys(s), [4, 2, 6]);
  get(s, 6); // joins count 2 as its newest
  assert.deepEqual(keys(s), [6, 4, 2]);
  put(s, 7); // evicts 2, the longest at count 2
  assert.deepEqual(keys(s), [6, 4, 7]);
});

Deno.test("TsSieveStore LFU hit opens a bucket between counts", () => {
  const s = new TsSieveStore({ maxSize: 3, policy: LFU });
  put(s, 1);
  get(s, 1);
  get(s, 1); // alone in its bucket: the bucket itself moves up
  put(s, 2);
  put(s, 3);
  assert.deepEqual(keys(s), [1, 3, 2]); // counts 3, 1, 1
  get(s, 3); // new bucket of count 2, between 3 and 1
  assert.deepEqual(keys(s), [1, 3, 2]);
  get(s, 2); // joins count 2 as its newest
  assert.deepEqual(keys(s), [1, 2, 3]);
  put(s, 4); // evicts 3
  assert.deepEqual(keys(s), [1, 2, 4]);
  get(s, 4);
  assert.deepEqual(keys(s), [1, 4, 2]);
  put(s, 5); // evicts 2
  assert.deepEqual(keys(s), [1, 4, 5]);
  get(s, 4); // leaves count 2 empty, joins 1 at count 3 as its newest
  assert.deepEqual(keys(s), [4, 1, 5]);
});

Deno.test("SieveQueue LFU keeps one bucket per count, in count order", () => {
  const q = new SieveQueue(3, undefined, LFU);
  const counts = (): number[][] => q.order().map((slot) => [slot, q.count(slot)]);
  const a = q.add(0);
  q.hit(a);
  q.hit(a);
  const b = q.add(0);
  const c = q.add(0);
  assert.deepEqual(counts(), [[a, 3], [c, 1], [b, 1]]);
  q.hit(c);
  assert.deepEqual(counts(), [[a, 3], [c, 2], [b, 1]]);
  q.hit(b);
  assert.deepEqual(counts(), [[a, 3], [b, 2], [c, 2]]);
  assert.equal(q.evict(), c);
  const d = q.add(0);
  q.hit(d);
  assert.deepEqual(counts(), [[a, 3], [d, 2], [b, 2]]);
  assert.equal(q.evict(), b);
  q.hit(d);
  assert.deepEqual(counts(), [[d, 3], [a, 3]]);
  assert.equal(q.freeBuckets.length + 1, q.buckets, "one live bucket, the others free");
  q.validate(() => true);
  q.clear();
  assert.deepEqual([q.buckets, q.freeBuckets], [0, []]);
  q.validate(() => true);
});

Deno.test("TsSieveStore LFU re-set keeps count and place, refreshes the time", () => {
  const s = new TsSieveStore({ maxSize: 2, ttl: 10, policy: LFU });
  put(s, 1, 0);
  put(s, 2, 0);
  get(s, 2, 0);
  get(s, 2, 0);
  for (const t of [1, 2, 3]) put(s, 1, t); // re-sets do not count as accesses
  put(s, 2, 5); // nor do they reset the count
  assert.deepEqual(keys(s), [2, 1]);
  put(s, 3, 5); // evicts 1
  assert.deepEqual(keys(s), [2, 3]);
  assert.equal(get(s, 2, 14.9), "v2");
  assert.equal(get(s, 2, 15), MISS, "the re-set refreshed the time");
});

Deno.test("TsSieveStore LFU delete, expiry and clear leave the buckets", () => {
  const s = new TsSieveStore({ maxSize: 3, ttl: 10, policy: LFU });
  put(s, 1, 0);
  get(s, 1, 1);
  get(s, 1, 2);
  put(s, 2, 5);
  put(s, 3, 5);
  assert.deepEqual(keys(s), [1, 3, 2]);
  assert.equal(get(s, 1, 10), MISS); // expired, with count 3
  assert.deepEqual(keys(s), [3, 2]);
  put(s, 4, 10);
  assert.equal(s.delete(new Uint8Array([3]), 1), true);
  s.validate();
  assert.deepEqual(keys(s), [4, 2]);
  get(s, 2, 11);
  put(s, 5, 11);
  put(s, 6, 11); // full: evicts 4, the oldest of count 1
  assert.deepEqual(keys(s), [2, 6, 5]);
  s.clear();
  s.validate();
  for (const k of [7, 8, 9, 10]) put(s, k);
  assert.deepEqual(keys(s), [10, 9, 8]);
});

Deno.test("TsSieveStore.countJoin() turns the last miss into a hit", () => {
  const s = new TsSieveStore({ maxSize: 2 });
  assert.equal(s.get(enc("a"), 1, 0), MISS);
  assert.equal(s.get(enc("b"), 1, 0), MISS);
  s.countJoin();
  assert.deepEqual(s.info(), { hits: 1, misses: 1, maxSize: 2, currentSize: 0 });
  s.clear();
  s.countJoin(); // no miss to turn: counters stay non-negative
  assert.deepEqual(s.info(), { hits: 0, misses: 0, maxSize: 2, currentSize: 0 });
});

Deno.test("TsSieveStore keys are the bytes key[0..len) of a reused buffer", async (t) => {
  await t.step("later changes to the buffer do not change a stored key", () => {
    const s = new TsSieveStore({ maxSize: 8 });
    const buf = new Uint8Array(64);
    buf.set([1, 2, 3]);
    s.set(buf, 3, "a", 0);
    buf.set([9, 9, 9, 9]);
    assert.equal(s.get(buf, 3, 0), MISS);
    buf.set([1, 2, 3]);
    assert.equal(s.get(buf, 3, 0), "a");
    assert.equal(s.get(buf, 2, 0), MISS, "a prefix is another key");
    assert.equal(s.get(buf, 4, 0), MISS, "a longer key is another key");
  });
  await t.step("every byte value is distinct, 0x80-0x9f included", () => {
    const s = new TsSieveStore({ maxSize: Infinity });
    for (let b = 0; b < 256; b++) s.set(new Uint8Array([b]), 1, b, 0);
    for (let b = 0; b < 256; b++) s.set(new Uint8Array([b, 0]), 2, -b, 0);
    s.validate();
    assert.equal(s.info().currentSize, 512);
    for (let b = 0; b < 256; b++) {
      assert.equal(s.get(new Uint8Array([b]), 1, 0), b);
      assert.equal(s.get(new Uint8Array([b, 0]), 2, 0), -b);
    }
    assert.equal(s.order()[0]![0], "\xff\x00");
  });
  await t.step("every length from 0 to 40: prefixes are distinct keys", () => {
    const s = new TsSieveStore({ maxSize: 64 });
    const bytes = new Uint8Array(40).map((_, i) => 0x7f + i * 3);
    for (let len = 0; len <= 40; len++) s.set(bytes, len, len, 0);
    s.validate();
    assert.equal(s.info().currentSize, 41);
    for (let len = 0; len <= 40; len++) assert.equal(s.get(bytes.slice(), len, 0), len);
    assert.deepEqual(
      s.order().map(([key]) => key),
      Array.from({ length: 41 }, (_, i) => String.fromCharCode(...bytes.subarray(0, 40 - i))),
    );
  });
  await t.step("empty and long keys", () => {
    const s = new TsSieveStore({ maxSize: 4 });
    const long = new Uint8Array(1000).map((_, i) => i * 7);
    s.set(long, 1000, "long", 0);
    s.set(long, 0, "empty", 0);
    const copy = long.slice();
    copy[999] = copy[999]! ^ 1;
    assert.equal(s.get(copy, 1000, 0), MISS);
    assert.equal(s.get(long.slice(), 1000, 0), "long");
    assert.equal(s.get(new Uint8Array(0), 0, 0), "empty");
  });
});

Deno.test("TsSieveStore keeps values as they are (identity, undefined)", () => {
  const s = new TsSieveStore({ maxSize: 2 });
  const obj = { a: 1 };
  s.set(enc("o"), 1, obj, 0);
  s.set(enc("u"), 1, undefined, 0);
  assert.equal(s.get(enc("o"), 1, 0), obj);
  assert.equal(s.get(enc("u"), 1, 0), undefined);
  assert.equal(s.info().hits, 2);
});

Deno.test("TsSieveStore.set() with promised keeps a Promise of the value", async () => {
  const s = new TsSieveStore({ maxSize: 2 });
  const obj = { a: 1 };
  s.set(enc("p"), 1, obj, 0, true);
  const hit = s.get(enc("p"), 1, 0);
  assert.ok(hit instanceof Promise);
  assert.equal(await hit, obj);
  assert.equal(s.get(enc("p"), 1, 0), hit, "the same Promise on every hit");
  s.set(enc("p"), 1, 2, 0, false);
  assert.equal(s.get(enc("p"), 1, 0), 2);
});

Deno.test("TsSieveStore with maxSize Infinity grows past its first allocation", () => {
  const s = new TsSieveStore({ maxSize: Infinity });
  const key = new Uint8Array(4);
  const view = new DataView(key.buffer);
  for (let i = 0; i < 5000; i++) {
    view.setUint32(0, i);
    s.set(key, 4, i, 0);
  }
  s.validate();
  assert.deepEqual(s.info(), { hits: 0, misses: 0, maxSize: Infinity, currentSize: 5000 });
  for (let i = 0; i < 5000; i += 7) {
    view.setUint32(0, i);
    assert.equal(s.get(key, 4, 0), i);
  }
  for (let i = 0; i < 5000; i += 2) {
    view.setUint32(0, i);
    assert.equal(s.delete(key, 4), true);
  }
  s.validate();
  assert.equal(s.info().currentSize, 2500);
  s.clear();
  s.validate();
  assert.equal(s.info().currentSize, 0);
});

Deno.test("TsSieveStore rejects bad options", () => {
  const bad: Array<[unknown, ErrorConstructor, RegExp]> = [
    [{ maxSize: 0 }, RangeError, /maxSize must be a positive integer or Infinity: received 0/],
    [{ maxSize: 1.5 }, RangeError, /maxSize.*received 1\.5/],
    [{ maxSize: -1 }, RangeError, /maxSize.*received -1/],
    [{ maxSize: NaN }, RangeError, /maxSize.*received NaN/],
    [{ maxSize: "3" }, TypeError, /maxSize.*received "3"/],
    [{ maxSize: 3, ttl: 0 }, RangeError, /ttl.*received 0/],
    [{ maxSize: 3, ttl: Infinity }, RangeError, /ttl.*received Infinity/],
    [{ maxSize: 3, ttl: 10n }, TypeError, /ttl.*received 10n/],
    [{ maxSize: 3, policy: 8 }, RangeError, /policy must be an integer from 0 to 7: received 8/],
  ];
  for (const [options, type, message] of bad) {
    assert.throws(
      () => new TsSieveStore(options as never),
      (e: unknown) => e instanceof type && message.test((e as Error).message),
      JSON.stringify(options, (_, v) => typeof v === "bigint" ? `${v}n` : v),
    );
  }
  assert.equal(new TsSieveStore({ maxSize: 3, ttl: undefined }).info().maxSize, 3);
});

Deno.test("TsSieveStore.close() is a no-op", () => {
  const s = new TsSieveStore({ maxSize: 2 });
  s.set(enc("a"), 1, 1, 0);
  s.close();
  s.close();
  assert.equal(s.get(enc("a"), 1, 0), 1);
});

// ---------------------------------------------------------------------------------------
// Randomized: TsSieveStore against a plain reference model of rust/src/sieve.rs.

interface ModelEntry {
  key: number;
  value: unknown;
  at: number;
  /** The entry's TTL: its own, else the store's (`Infinity`: none). */
  ttl: number;
  visited: boolean;
  /** LFU: accesses, the insertion included. */
  count: number;
  /** LFU: when the entry reached its count (a logical clock). */
  since: number;
}

/**
 * SIEVE/LRU/MRU/FIFO over an array, head first, and LFU as the paper states it (counts and
 * the time each entry reached its count, sorted on demand): obviously right, slow.
 */
class Model {
  entries: ModelEntry[] = [];
  hand: ModelEntry | null = null;
  hits = 0;
  misses = 0;
  evictions = 0;
  tick = 0;
  constructor(
    readonly capacity: number,
    readonly ttl: number | undefined,
    readonly policy: Policy,
    readonly stale = 0,
  ) {}

  #remove(e: ModelEntry): void {
    const i = this.entries.indexOf(e);
    if (this.hand === e) this.hand = i > 0 ? this.entries[i - 1]! : null;
    this.entries.splice(i, 1);
  }

  get(key: number, now: number): unknown {
    const e = this.entries.find((x) => x.key === key);
    if (!e) {
      this.misses++;
      return MISS;
    }
    if (now - e.at >= e.ttl) {
      // Stale (kept, unmarked) until the window ends, then removed.
      if (now - e.at >= e.ttl + this.stale) this.#remove(e);
      this.misses++;
      return MISS;
    }
    this.hits++;
    e.count++;
    e.since = this.tick++;
    if (this.policy === SIEVE) e.visited = true;
    else if (this.policy === LRU || this.policy === MRU) {
      this.entries.splice(this.entries.indexOf(e), 1);
      this.entries.unshift(e);
    }
    return e.value;
  }

  set(key: number, value: unknown, now: number, ownTtl?: number): void {
    const ttl = ownTtl ?? this.ttl ?? Infinity;
    const e = this.entries.find((x) => x.key === key);
    if (e) {
      e.at = now;
      e.ttl = ttl;
      e.value = value;
      return;
    }
    if (this.entries.length >= this.capacity) this.#evict();
    this.entries.unshift({
      key,
      value,
      at: now,
      ttl,
      visited: false,
      count: 1,
      since: this.tick++,
    });
  }

  /** The value while fresh (`stale` false) or fresh or stale (`stale` true). */
  peek(key: number, now: number, stale: boolean): unknown {
    const e = this.entries.find((x) => x.key === key);
    if (!e || now - e.at >= e.ttl + (stale ? this.stale : 0)) return MISS;
    return e.value;
  }

  /** Entries in the store's queue order: for LFU, by count then by time at that count. */
  order(): ModelEntry[] {
    if (this.policy !== LFU) return this.entries;
    return this.entries.toSorted((a, b) => b.count - a.count || b.since - a.since);
  }

  #evict(): void {
    const n = this.entries.length;
    let victim: ModelEntry;
    if (this.policy === SIEVE) {
      let i = this.hand ? this.entries.indexOf(this.hand) : n - 1;
      while (this.entries[i]!.visited) {
        this.entries[i]!.visited = false;
        i = i === 0 ? n - 1 : i - 1;
      }
      victim = this.entries[i]!;
      this.hand = i > 0 ? this.entries[i - 1]! : null;
    } else if (this.policy === LFU) {
      victim = this.order()[n - 1]!;
    } else {
      victim = this.entries[this.policy === MRU ? 0 : n - 1]!;
    }
    this.#remove(victim);
    this.evictions++;
  }

  delete(key: number): boolean {
    const e = this.entries.find((x) => x.key === key);
    if (e) this.#remove(e);
    return e !== undefined;
  }

  clear(): void {
    this.entries = [];
    this.hand = null;
    this.hits = 0;
    this.misses = 0;
    this.evictions = 0;
  }
}

/** xorshift32 with a fixed seed: reproducible. */
function prng(seed: number): () => number {
  let x = seed >>> 0;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>>= 0);
  };
}

function encodeKey(buf: Uint8Array, k: number): number {
  // Variable length (1-3 bytes), so that lengths and prefixes matter too.
  if (k < 200) {
    buf[0] = k;
    return 1;
  }
  buf[0] = 255;
  buf[1] = k & 0xff;
  buf[2] = k >> 8;
  return k < 400 ? 2 : 3;
}

/** An own TTL for a quarter of the sets (`Infinity` or 1 to `2 * ttl` ms), else none. */
function ownTtl(next: () => number, ttl: number): number | undefined {
  const r = next() % 8;
  return r === 0 ? Infinity : r === 1 ? 1 + (next() % (2 * ttl)) : undefined;
}

function runRandom(
  policy: Policy,
  capacity: number,
  keySpace: number,
  steps: number,
  compareEvery: number,
  ttl: number | undefined,
  stale = 0,
): void {
  const next = prng(0x9e3779b9 ^ policy);
  const store = new TsSieveStore({ maxSize: capacity, ttl, policy, stale });
  const model = new Model(capacity, ttl, policy, stale);
  const buf = new Uint8Array(16);
  for (let t = 0; t < steps; t++) {
    const k = next() % keySpace;
    const len = encodeKey(buf, k);
    const op = next() % 100;
    if (op < 10) {
      assert.equal(store.delete(buf, len), model.delete(k), `step ${t}: delete ${k}`);
    } else if (op < 45) {
      const own = stale > 0 || ttl === undefined ? ownTtl(next, ttl ?? 50) : undefined;
      store.set(buf, len, t, t, false, undefined, own);
      model.set(k, t, t, own);
    } else if (op < 52) {
      const stale = op < 48;
      const got = stale ? store.peekStale(buf, len, t) : store.peek(buf, len, t);
      assert.equal(got, model.peek(k, t, stale), `step ${t}: peek ${k}`);
    } else if (op < 99) {
      assert.equal(store.get(buf, len, t), model.get(k, t), `step ${t}: get ${k}`);
      if (op === 98 && model.misses > 0) {
        store.countJoin();
        model.misses--;
        model.hits++;
      }
    } else if (next() % 20 === 0) {
      store.clear();
      model.clear();
    }
    if (t % compareEvery === 0) {
      store.validate();
      const expected = model.order().map((e): [string, boolean] => {
        const n = encodeKey(buf, e.key);
        return [String.fromCharCode(...buf.subarray(0, n)), e.visited];
      });
      assert.deepEqual(store.order(), expected, `step ${t}: order`);
      assert.deepEqual(store.info(), {
        hits: model.hits,
        misses: model.misses,
        maxSize: capacity,
        currentSize: model.entries.length,
        // Left out while 0, as staleHits.
        ...(model.evictions > 0 ? { evictions: model.evictions } : {}),
      });
    }
  }
  store.validate();
}

Deno.test("TsSieveStore matches a reference model under a random workload", async (t) => {
  for (const [name, policy] of POLICIES) {
    await t.step(`${name}, small`, () => runRandom(policy, 16, 40, 20_000, 1, 50));
    await t.step(`${name}, past the first allocation`, () => {
      runRandom(policy, 1500, 3000, 30_000, 1000, 20_000);
    });
    await t.step(`${name}, own TTLs and a stale window`, () => {
      runRandom(policy, 16, 40, 20_000, 1, 50, 30);
    });
    await t.step(`${name}, own TTLs on a store without TTL`, () => {
      runRandom(policy, 16, 40, 20_000, 1, undefined, 30);
    });
    await t.step(`${name}, own TTLs past the first allocation`, () => {
      runRandom(policy, 1500, 3000, 30_000, 1000, 20_000, 5_000);
    });
  }
});

const native = (() => {
  try {
    return loadNative();
  } catch {
    return null;
  }
})();

Deno.test({
  name: "TsSieveStore answers exactly as the native store under a random workload",
  ignore: native === null,
  fn: async (t) => {
    // With a TTL and uniform keys; then without TTL and with keys skewed towards the small
    // ones, so that LFU counts grow and evictions, not expiry, decide what stays.
    // Then with own TTLs and a stale window, on a store with and without TTL.
    type Case = [string, number | undefined, number, (next: () => number) => number];
    const cases: Case[] = [
      ["", 50, 0, (next) => next() % 40],
      [", no ttl, skewed keys", undefined, 0, (next) => Math.min(next() % 40, next() % 40)],
      [", own ttls, stale window", 50, 30, (next) => next() % 40],
      [", no ttl, own ttls, stale window", undefined, 30, (next) => next() % 40],
    ];
    for (const [name, policy] of ALL_POLICIES) {
      for (const [label, ttl, stale, pick] of cases) {
        await t.step(name + label, () => {
          const next = prng(0x51ed27 + policy);
          const stores: ByteStore[] = [
            new TsSieveStore({ maxSize: 16, ttl, policy: policy, stale }),
            new NativeMemoryStore(native!, 16, ttl, policy, stale),
          ];
          const buf = new Uint8Array(16);
          const trace: unknown[][] = [[], []];
          for (let t = 0; t < 20_000; t++) {
            const k = pick(next);
            const len = encodeKey(buf, k);
            const op = next() % 12;
            const own = stale > 0 ? ownTtl(next, ttl ?? 50) : undefined;
            stores.forEach((s, i) => {
              if (op === 0) trace[i]!.push(s.delete(buf, len));
              else if (op < 5) s.set(buf, len, t, t, false, undefined, own);
              else if (op === 10) trace[i]!.push(s.peekStale(buf, len, t));
              else if (op === 11) trace[i]!.push(s.peek(buf, len, t));
              else trace[i]!.push(s.get(buf, len, t));
            });
          }
          assert.deepEqual(trace[0], trace[1]);
          assert.deepEqual(stores[0]!.info(), stores[1]!.info());
          stores.forEach((s) => s.close());
        });
      }
    }
  },
});

/**
 * Two keys of `len` bytes (first byte 0xee: never a key of arguments) with the same
 * `hashBytes` hash, equal but for bytes `from..len` (a birthday search over those bytes).
 */
function collidingKeys(len: number, from: number): [Uint8Array, Uint8Array] {
  const seen = new Map<number, Uint8Array>();
  const base = new Uint8Array(len).fill(7);
  base[0] = 0xee;
  for (let i = 0;; i++) {
    const k = base.slice();
    // A counter in the varying bytes: distinct keys, each equal to `base` elsewhere.
    for (let j = from, x = i; j < len; j++, x = Math.floor(x / 256)) k[j] = x & 255;
    const h = hashBytes(k, len);
    const other = seen.get(h);
    if (other !== undefined) return [other, k];
    seen.set(h, k);
  }
}

Deno.test("TsSieveStore tells byte keys of one hash apart by every byte", async (t) => {
  // A lookup compares a byte key's first 16 bytes as words (kept beside it), then the rest
  // one char at a time: keys that differ only in one part or the other, and a key too
  // short for a word, must each find their own entry.
  const cases: Array<[string, number, number]> = [
    ["3 bytes (no whole word)", 3, 1],
    ["16 bytes differing in the words", 16, 1],
    ["20 bytes differing in the words", 20, 12],
    ["20 bytes differing after the words", 20, 16],
    ["15 bytes differing after the whole words", 15, 12],
  ];
  for (const [name, len, from] of cases) {
    await t.step(name, () => {
      const [a, b] = collidingKeys(len, from);
      assert.equal(hashBytes(a, len), hashBytes(b, len));
      assert.notDeepEqual(a, b);
      assert.deepEqual(a.subarray(0, from), b.subarray(0, from));
      for (const [, policy] of ALL_POLICIES) {
        const s = new TsSieveStore({ maxSize: 8, policy });
        assert.equal(s.set(a, len, "a", 0), true);
        assert.equal(s.get(b, len, 0), MISS);
        assert.equal(s.set(b, len, "b", 0), true);
        assert.equal(s.get(a, len, 0), "a");
        assert.equal(s.get(b, len, 0), "b");
        assert.equal(s.info().currentSize, 2);
        assert.equal(s.delete(a, len), true);
        assert.equal(s.get(b, len, 0), "b");
        assert.equal(s.get(a, len, 0), MISS);
        s.validate();
      }
    });
  }
});
