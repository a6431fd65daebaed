/**
 * ARC on the memory backend (`src/store/_arc.ts`, `rust/src/sieve/arc.rs`): scenarios on
 * the TypeScript store, the policy against a reference model (plain arrays restating
 * libCacheSim's `ARC.c`) under a random workload with deletes, TTLs, a stale window and
 * clears, both engines answering alike (with and without a byte budget), `maxSize:
 * Infinity`, and `cache({ strategy: "arc" })`. libCacheSim's miss counts:
 * tests/eviction_quality_test.ts.
 */

import assert from "node:assert/strict";
import { cache, Strategy } from "../mod.ts";
import { loadNative } from "../src/native/ffi.ts";
import { NativeMemoryStore } from "../src/store/native_store.ts";
import { type ByteStore, MISS } from "../src/store/store.ts";
import { TsSieveStore } from "../src/store/ts_store.ts";

const ARC = Strategy.Arc;

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

const key1 = (k: number): Uint8Array => new Uint8Array([k]);

function put(s: TsSieveStore, k: number, now = 0, ttl?: number): void {
  s.set(key1(k), 1, k, now, false, undefined, ttl);
  s.validate();
}

function hit(s: TsSieveStore, k: number, now = 0): boolean {
  const r = s.get(key1(k), 1, now);
  s.validate();
  return r !== MISS;
}

/** The keys of T1 and T2, each newest first, and the ghosts (B1's then B2's, newest first). */
function state(s: TsSieveStore): { t1: number[]; t2: number[]; ghosts: number[] } {
  const { entries, ghost } = s.policyState();
  const keys = (list: string): number[] =>
    entries.filter(([, l]) => l === list).map(([k]) => k.charCodeAt(0));
  return { t1: keys("T1"), t2: keys("T2"), ghosts: ghost.map((k) => k.charCodeAt(0)) };
}

const arc = (maxSize: number, ttl?: number, stale?: number): TsSieveStore =>
  new TsSieveStore({ maxSize, ttl, policy: ARC, stale });

Deno.test("ARC: new keys go to T1, a hit moves them to T2, a set is not an access", () => {
  const s = arc(4);
  for (const k of [1, 2, 3]) put(s, k);
  assert.deepEqual(state(s), { t1: [3, 2, 1], t2: [], ghosts: [] });
  assert.ok(hit(s, 1) && hit(s, 2));
  assert.deepEqual(state(s), { t1: [3], t2: [2, 1], ghosts: [] });
  assert.ok(hit(s, 1));
  put(s, 2);
  assert.deepEqual(state(s), { t1: [3], t2: [1, 2], ghosts: [] });
});

Deno.test("ARC: a key back from B1 goes to T2, and p decides REPLACE", () => {
  const s = arc(4);
  for (const k of [1, 2, 3, 4]) put(s, k);
  hit(s, 4);
  put(s, 5); // |T1| + |B1| = 3 < 4: REPLACE takes T1's oldest, 1, into B1
  assert.deepEqual(state(s), { t1: [5, 3, 2], t2: [4], ghosts: [1] });
  put(s, 6); // |T1| + |B1| = 4: B1 forgets 1, then REPLACE takes 2 into B1
  assert.deepEqual(state(s), { t1: [6, 5, 3], t2: [4], ghosts: [2] });
  put(s, 2); // from B1: p = 1; |T1| = 3 > 1: 3 into B1
  assert.deepEqual(state(s), { t1: [6, 5], t2: [2, 4], ghosts: [3] });
  put(s, 3); // from B1: p = 2; |T1| = 2 == p, not from B2: T2's oldest, 4, into B2
  assert.deepEqual(state(s), { t1: [6, 5], t2: [3, 2], ghosts: [4] });
  put(s, 4); // from B2: p = 1; |T1| = 2 > 1: 5 into B1
  assert.deepEqual(state(s), { t1: [6], t2: [4, 3, 2], ghosts: [5] });
  assert.equal(s.info().evictions, 5);
});

Deno.test("ARC: a scan through a full T1 leaves no ghost; T2 survives it", () => {
  const s = arc(3);
  put(s, 1);
  hit(s, 1);
  for (let k = 2; k < 40; k++) put(s, k);
  assert.deepEqual(state(s).t2, [1]);
  assert.ok(hit(s, 1));
  const fresh = arc(3);
  for (let k = 1; k < 40; k++) put(fresh, k);
  assert.deepEqual(state(fresh), { t1: [39, 38, 37], t2: [], ghosts: [] });
});

Deno.test("ARC: deletes and expiry leave no ghost; a stale lookup moves nothing; clear forgets", () => {
  const s = arc(2, 10, 5);
  put(s, 1);
  hit(s, 1);
  put(s, 2);
  put(s, 3); // 2 into B1
  put(s, 2, 1); // back: p = 1; |T1| = 1 == p: 1 into B2
  assert.deepEqual(state(s), { t1: [3], t2: [2], ghosts: [1] });
  assert.equal(s.delete(key1(3), 1), true);
  assert.equal(s.get(key1(2), 1, 12), MISS); // stale
  assert.deepEqual(state(s), { t1: [], t2: [2], ghosts: [1] });
  assert.equal(s.get(key1(2), 1, 16), MISS); // gone
  assert.deepEqual(state(s), { t1: [], t2: [], ghosts: [1] });
  put(s, 1, 20); // from B2, not full: no eviction
  assert.deepEqual(state(s), { t1: [], t2: [1], ghosts: [] });
  put(s, 5, 20);
  put(s, 6, 20); // |T1| + |B1| = 1 < 2: REPLACE, |T1| = 1 > p = 0: 5 into B1
  assert.deepEqual(state(s), { t1: [6], t2: [1], ghosts: [5] });
  s.clear();
  put(s, 5);
  assert.deepEqual(state(s), { t1: [5], t2: [], ghosts: [] }, "the ghost was forgotten");
});

type Entry = [key: number, at: number, ttl: number];

/** ARC restated from libCacheSim's `ARC.c` over plain arrays (index 0 = newest). */
class Model {
  p = 0;
  t1: Entry[] = [];
  t2: Entry[] = [];
  b1: number[] = [];
  b2: number[] = [];
  evictions = 0;
  constructor(readonly c: number) {}

  find(k: number): [Entry[], number] | undefined {
    for (const list of [this.t1, this.t2]) {
      const i = list.findIndex((e) => e[0] === k);
      if (i >= 0) return [list, i];
    }
    return undefined;
  }

  take(k: number): Entry | undefined {
    const at = this.find(k);
    return at && at[0].splice(at[1], 1)[0];
  }

  hit(k: number): void {
    this.t2.unshift(this.take(k)!);
  }

  replace(from: "b1" | "b2" | null): void {
    const t1 = this.t1.length;
    if ((t1 > 0 && (t1 > this.p || (t1 === this.p && from === "b2"))) || this.t2.length === 0) {
      this.b1.unshift(this.t1.pop()![0]);
    } else {
      this.b2.unshift(this.t2.pop()![0]);
    }
  }

  evict(from: "b1" | "b2" | null): void {
    this.evictions++;
    if (from !== null) return this.replace(from);
    if (this.t1.length + this.b1.length >= this.c) {
      if (this.b1.length > 0) {
        this.b1.pop();
        this.replace(null);
      } else this.t1.pop();
      return;
    }
    const all = this.t1.length + this.t2.length + this.b1.length + this.b2.length;
    if (all >= 2 * this.c) this.b2.pop();
    this.replace(null);
  }

  insert(k: number, now: number, ttl: number): void {
    const at = this.find(k);
    if (at) {
      at[0][at[1]] = [k, now, ttl];
      return;
    }
    const [b1, b2] = [this.b1.length, this.b2.length];
    let from: "b1" | "b2" | null = null;
    if (this.b1.includes(k)) {
      this.b1.splice(this.b1.indexOf(k), 1);
      this.p = Math.min(this.p + Math.max(b2 / b1, 1), this.c);
      from = "b1";
    } else if (this.b2.includes(k)) {
      this.b2.splice(this.b2.indexOf(k), 1);
      this.p = Math.max(this.p - Math.max(b1 / b2, 1), 0);
      from = "b2";
    }
    if (this.t1.length + this.t2.length >= this.c) this.evict(from);
    (from === null ? this.t1 : this.t2).unshift([k, now, ttl]);
  }

  state(): { t1: number[]; t2: number[]; ghosts: number[] } {
    return {
      t1: this.t1.map((e) => e[0]),
      t2: this.t2.map((e) => e[0]),
      ghosts: [...this.b1, ...this.b2],
    };
  }
}

Deno.test("ARC matches a reference model under a random workload with TTLs, deletes and clears", () => {
  for (const [seed, c, keys] of [[0x2545f491, 12, 40], [0x9e3779b9, 5, 16], [0xc0ffee, 1, 6]]) {
    const next = prng(seed!);
    const s = arc(c!, 400, 20);
    let m = new Model(c!);
    let hits = 0, stale = 0, expired = 0, evictions = 0;
    for (let t = 0; t < 20_000; t++) {
      if (t % 7000 === 6999) {
        s.clear();
        evictions += m.evictions;
        m = new Model(c!);
      }
      const k = Math.min(next() % keys!, next() % keys!);
      const op = next() % 20;
      if (op === 0) {
        assert.equal(s.delete(key1(k), 1), m.take(k) !== undefined, `step ${t}`);
      } else if (op < 7) {
        const own = next() % 5 === 0 ? (next() % 100) + 1 : undefined;
        s.set(key1(k), 1, k, t, false, undefined, own);
        m.insert(k, t, own ?? 400);
      } else {
        const r = s.get(key1(k), 1, t);
        const at = m.find(k);
        const e = at && at[0][at[1]]!;
        if (e === undefined) assert.equal(r, MISS, `step ${t}`);
        else if (t - e[1] >= e[2] + 20) {
          assert.equal(r, MISS, `step ${t}`);
          m.take(k);
          expired++;
        } else if (t - e[1] >= e[2]) {
          assert.equal(r, MISS, `step ${t}`);
          stale++;
        } else {
          assert.equal(r, k, `step ${t}`);
          m.hit(k);
          hits++;
        }
      }
      assert.deepEqual(state(s), m.state(), `step ${t}`);
      if (t % 97 === 0) s.validate();
    }
    s.validate();
    assert.equal(s.info().evictions, m.evictions, "evictions since the last clear");
    evictions += m.evictions;
    assert.ok(hits > 2000 && stale > 5 && evictions > 2000, `${hits} ${stale} ${evictions}`);
    assert.ok(c === 1 || expired > 5, `${expired} expired`);
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
  name: "ARC answers alike on both engines: TTLs, stale window, deletes, clears, counters",
  ignore: native === null,
  fn: () => {
    const next = prng(0xa4c7);
    const stores: ByteStore[] = [
      new TsSieveStore({ maxSize: 150, ttl: 3000, policy: ARC, stale: 500 }),
      new NativeMemoryStore(native!, 150, 3000, ARC, 500),
    ];
    const buf = new Uint8Array(4);
    const view = new DataView(buf.buffer);
    const trace: unknown[][] = [[], []];
    let evictions = 0;
    for (let t = 0; t < 60_000; t++) {
      // A working set that drifts: ARC's ghosts and p at work.
      view.setUint32(0, Math.min(next() % 400, next() % 400) + (t >> 10) * 8, true);
      const op = next() % 16;
      const own = next() % 5 === 0 ? (next() % 6000) + 1 : undefined;
      if (t % 20_000 === 19_999) evictions += stores[0]!.info().evictions ?? 0;
      stores.forEach((s, i) => {
        if (t % 20_000 === 19_999) s.clear();
        if (op === 0) trace[i]!.push(s.delete(buf, 4));
        else if (op < 6) s.set(buf, 4, t, t, false, undefined, own);
        else if (op === 15) trace[i]!.push(s.peekStale(buf, 4, t));
        else trace[i]!.push(s.get(buf, 4, t));
      });
      if (t % 1000 === 0) assert.deepEqual(stores[0]!.info(), stores[1]!.info(), `step ${t}`);
    }
    assert.deepEqual(trace[0], trace[1]);
    assert.deepEqual(stores[0]!.info(), stores[1]!.info());
    (stores[0] as TsSieveStore).validate();
    evictions += stores[0]!.info().evictions ?? 0;
    assert.ok(evictions > 5000, `${evictions} evictions`);
    stores.forEach((s) => s.close());
  },
});

Deno.test({
  name: "ARC answers alike on both engines under a byte budget, bounded or not",
  ignore: native === null,
  fn: async (t) => {
    for (const maxSize of [60, Infinity]) {
      await t.step(`maxSize ${maxSize}`, () => {
        const next = prng(maxSize === Infinity ? 0xb17e6 : 0xb17e5);
        const stores: ByteStore[] = [
          new TsSieveStore({ maxSize, maxBytes: 2000, policy: ARC, ttl: 400 }),
          new NativeMemoryStore(native!, maxSize, 400, ARC, 0, 2000),
        ];
        const key = (n: number): Uint8Array => new Uint8Array([n & 0xff, n >> 8]);
        const trace: unknown[][] = [[], []];
        for (let now = 0; now < 20_000; now++) {
          const n = Math.min(next() % 200, next() % 200);
          const op = next() % 10;
          const size = next() % 8 === 0 ? next() % 2200 : next() % 120;
          stores.forEach((s, i) => {
            if (op === 0) trace[i]!.push(s.delete(key(n), 2));
            else if (op < 4) {
              trace[i]!.push(s.set(key(n), 2, now, now, false, undefined, undefined, size));
            } else trace[i]!.push(s.get(key(n), 2, now));
            if (!(s.info().bytes! <= 2000)) throw new Error(`${s.info().bytes} bytes at ${now}`);
          });
        }
        assert.deepEqual(trace[0], trace[1]);
        assert.deepEqual(stores[0]!.info(), stores[1]!.info());
        assert.ok(stores[0]!.info().evictions! > 1500, `${stores[0]!.info().evictions} evictions`);
        const ts = stores[0] as TsSieveStore;
        ts.validate();
        if (maxSize === Infinity) assert.deepEqual(ts.policyState().ghost, [], "no ghosts");
        stores.forEach((s) => s.close());
      });
    }
  },
});

Deno.test("ARC with maxSize Infinity keeps every entry and no ghost; a byte budget evicts T1 first", () => {
  const s = new TsSieveStore({ maxSize: Infinity, policy: ARC, maxBytes: 100 });
  for (let k = 0; k < 10; k++) s.set(key1(k), 1, k, 0, false, undefined, undefined, 10);
  hit(s, 0);
  hit(s, 1);
  s.set(key1(20), 1, 20, 0, false, undefined, undefined, 30); // 30 bytes: 3 leave T1
  assert.deepEqual(state(s), { t1: [20, 9, 8, 7, 6, 5], t2: [1, 0], ghosts: [] });
  s.set(key1(21), 1, 21, 0, false, undefined, undefined, 90); // all of T1, then T2's oldest
  assert.deepEqual(state(s), { t1: [21], t2: [1], ghosts: [] });
  assert.equal(s.info().evictions, 10);
});

Deno.test('cache() strategy arc: Strategy.Arc is 7, its name is "arc"', () => {
  assert.equal(Strategy.Arc, 7);
  for (const strategy of [Strategy.Arc, "arc"] as const) {
    const c = cache({ strategy, maxSize: 2 })((x: number) => x);
    assert.equal(c(1), 1);
    assert.equal(c(1), 1);
    assert.equal(c.cacheInfo().hits, 1);
  }
});

Deno.test("cache() strategy arc keeps the keys seen twice through a scan, and adapts to a shift", () => {
  let calls = 0;
  const f = cache({ maxSize: 100, strategy: "arc" })((x: number) => {
    calls++;
    return x;
  });
  for (let round = 0; round < 2; round++) for (let k = 0; k < 50; k++) f(k);
  for (let k = 1000; k < 3000; k++) f(k); // a scan of 2,000 keys seen once
  let before = calls;
  for (let k = 0; k < 50; k++) f(k);
  assert.equal(calls, before, "T2 kept all 50");
  // A new working set, seen twice: it takes T2's place.
  for (let round = 0; round < 3; round++) for (let k = 5000; k < 5080; k++) f(k);
  before = calls;
  for (let k = 5000; k < 5080; k++) f(k);
  assert.equal(calls, before, "the new set is held");
  assert.equal(f.cacheInfo().currentSize, 100);
});
