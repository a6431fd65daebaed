/**
 * The memory backend's byte budget, at the store level (`maxBytes` of `TsSieveStore` and
 * `NativeMemoryStore`, and the size given to `set`): eviction keeps the sum of the entries'
 * sizes within it, on both engines and with every strategy; an entry larger than the budget
 * is not stored and counts in `oversizeSkips`; `info()` reports `bytes` and `maxBytes`.
 */

import assert from "node:assert/strict";
import { Strategy } from "../src/options/options.ts";
import { loadNative } from "../src/native/ffi.ts";
import { NativeMemoryStore } from "../src/store/native_store.ts";
import { type ByteStore, MISS } from "../src/store/store.ts";
import { TsSieveStore } from "../src/store/ts_store.ts";

const native = (() => {
  try {
    return loadNative();
  } catch {
    return null;
  }
})();

const STRATEGIES = Object.values(Strategy).filter((v) => typeof v === "number") as Strategy[];

type Make = (maxSize: number, maxBytes: number, policy: Strategy, ttl?: number) => ByteStore;

const ENGINES: Array<[string, Make | null]> = [
  [
    "TypeScript",
    (maxSize, maxBytes, policy, ttl) => new TsSieveStore({ maxSize, maxBytes, policy, ttl }),
  ],
  [
    "native",
    native === null
      ? null
      : (maxSize, maxBytes, policy, ttl) =>
        new NativeMemoryStore(native, maxSize, ttl, policy, 0, maxBytes),
  ],
];

const k = (n: number): Uint8Array => new Uint8Array([n & 0xff, n >> 8]);

function put(s: ByteStore, n: number, size: number, now = 0): boolean {
  return s.set(k(n), 2, `v${n}`, now, false, undefined, undefined, size);
}

function has(s: ByteStore, n: number, now = 0): boolean {
  return s.peek(k(n), 2, now) !== MISS;
}

for (const [engine, make] of ENGINES) {
  Deno.test({
    name: `${engine} store: a byte budget keeps the sum of sizes within maxBytes`,
    ignore: make === null,
    fn: async (t) => {
      for (const policy of STRATEGIES) {
        await t.step(Strategy[policy], () => {
          const s = make!(1000, 100, policy);
          const sizes = new Map<number, number>();
          for (let n = 0; n < 300; n++) {
            const size = (n * 7) % 31;
            assert.equal(put(s, n, size), true);
            sizes.set(n, size);
            let sum = 0;
            for (const [m, z] of sizes) if (has(s, m)) sum += z;
            const info = s.info();
            assert.equal(info.bytes, sum, `after ${n}`);
            assert.ok(sum <= 100, `${sum} bytes after ${n}`);
            assert.equal(info.maxBytes, 100);
            assert.ok(has(s, n), `${n} was stored`);
          }
          assert.equal(s.info().oversizeSkips, 0);
          assert.ok((s.info().evictions ?? 0) > 100);
          s.close();
        });
      }
    },
  });

  Deno.test({
    name: `${engine} store: an entry larger than maxBytes is skipped and counted`,
    ignore: make === null,
    fn: () => {
      const s = make!(10, 100, Strategy.Sieve);
      put(s, 1, 40);
      put(s, 2, 40);
      assert.equal(put(s, 3, 101), false);
      assert.equal(has(s, 3), false);
      assert.equal(put(s, 1, 101), false, "a too large value for a present key");
      assert.equal(has(s, 1), false, "the old value of that key is not served either");
      assert.equal(has(s, 2), true, "nothing else was evicted");
      assert.deepEqual(
        [s.info().bytes, s.info().oversizeSkips, s.info().currentSize],
        [40, 2, 1],
      );
      assert.equal(put(s, 4, 100), true, "exactly maxBytes fits");
      assert.deepEqual([s.info().bytes, has(s, 2), has(s, 4)], [100, false, true]);
      s.clear();
      const info = s.info();
      assert.deepEqual([info.bytes, info.oversizeSkips, info.maxBytes], [0, 0, 100]);
      s.close();
    },
  });

  Deno.test({
    name: `${engine} store: replacing, deleting and expiring entries move the byte count`,
    ignore: make === null,
    fn: () => {
      const s = make!(10, 100, Strategy.Lru, 50);
      put(s, 1, 30, 0);
      put(s, 2, 30, 0);
      put(s, 3, 30, 0);
      assert.equal(s.info().bytes, 90);
      put(s, 2, 10, 1); // smaller: nothing evicted
      assert.deepEqual([s.info().bytes, s.info().currentSize], [70, 3]);
      put(s, 2, 60, 2); // larger: 1, the least recently used, makes room
      assert.deepEqual([s.info().bytes, has(s, 1, 2), has(s, 2, 2), has(s, 3, 2)], [
        90,
        false,
        true,
        true,
      ]);
      assert.equal(s.delete(k(3), 2), true);
      assert.equal(s.info().bytes, 60);
      assert.equal(s.get(k(2), 2, 62), MISS, "expired at 2 + 50");
      assert.equal(s.info().bytes, 0);
      put(s, 5, 0, 70);
      assert.deepEqual([s.info().bytes, has(s, 5, 70)], [0, true], "a size of 0 is stored");
      s.close();
    },
  });

  Deno.test({
    name: `${engine} store: LRU under a byte budget evicts the least recently used first`,
    ignore: make === null,
    fn: () => {
      const s = make!(100, 50, Strategy.Lru);
      for (let n = 0; n < 5; n++) put(s, n, 10); // 50 bytes, full
      assert.notEqual(s.get(k(0), 2, 0), MISS); // 0 is now the most recent
      put(s, 10, 25); // 1, 2, 3 (30 bytes) make room for 25
      assert.deepEqual([0, 1, 2, 3, 4, 10].map((n) => has(s, n)), [
        true,
        false,
        false,
        false,
        true,
        true,
      ]);
      assert.deepEqual([s.info().bytes, s.info().evictions], [45, 3]);
      s.close();
    },
  });

  Deno.test({
    name: `${engine} store: bad sizes and budgets are errors`,
    ignore: make === null,
    fn: () => {
      for (const bad of [0, -1, 1.5, NaN, Infinity]) {
        assert.throws(() => make!(10, bad, Strategy.Sieve), (e: unknown) => {
          assert.ok(e instanceof RangeError, String(e));
          assert.match((e as Error).message, /maxBytes must be a positive integer/);
          assert.match((e as Error).message, new RegExp(`received ${bad}`));
          return true;
        });
      }
      const s = make!(10, 100, Strategy.Sieve);
      for (const bad of [-1, NaN, Infinity, 2.5]) {
        assert.throws(() => put(s, 1, bad), (e: unknown) => {
          assert.ok(e instanceof RangeError, String(e));
          assert.match((e as Error).message, /size must be a non-negative integer/);
          return true;
        });
      }
      assert.deepEqual([s.info().bytes, s.info().currentSize], [0, 0]);
      s.close();
    },
  });
}

Deno.test("a store without maxBytes reports no byte counts", () => {
  const s = new TsSieveStore({ maxSize: 4 });
  put(s, 1, 10_000);
  assert.deepEqual(s.info(), { hits: 0, misses: 0, maxSize: 4, currentSize: 1 });
});

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

Deno.test({
  name: "both engines evict alike under a byte budget, with every strategy",
  ignore: native === null,
  fn: async (t) => {
    for (const policy of STRATEGIES) {
      await t.step(Strategy[policy], () => {
        const next = prng(0xb17e5 + policy);
        const stores: ByteStore[] = [
          new TsSieveStore({ maxSize: 60, maxBytes: 2000, policy, ttl: 400 }),
          new NativeMemoryStore(native!, 60, 400, policy, 0, 2000),
        ];
        const trace: unknown[][] = [[], []];
        for (let now = 0; now < 20_000; now++) {
          const n = Math.min(next() % 200, next() % 200);
          const op = next() % 10;
          const size = next() % 8 === 0 ? next() % 2200 : next() % 120;
          stores.forEach((s, i) => {
            if (op === 0) trace[i]!.push(s.delete(k(n), 2));
            else if (op < 4) {
              trace[i]!.push(s.set(k(n), 2, now, now, false, undefined, undefined, size));
            } else trace[i]!.push(s.get(k(n), 2, now));
            const info = s.info();
            if (!(info.bytes! <= 2000)) throw new Error(`${info.bytes} bytes at ${now}`);
          });
        }
        assert.deepEqual(trace[0], trace[1]);
        assert.deepEqual(stores[0]!.info(), stores[1]!.info());
        assert.ok(stores[0]!.info().oversizeSkips! > 50);
        (stores[0] as TsSieveStore).validate();
        stores.forEach((s) => s.close());
      });
    }
  },
});

Deno.test("W-TinyLFU under a byte budget: an eviction never picks a deleted entry", () => {
  // The byte budget evicts without a new key: the candidate of an earlier insert (1, moved
  // to probation by 2's insert, which evicted nothing) must not be picked once deleted.
  const s = new TsSieveStore({ maxSize: 10, policy: Strategy.WTinyLfu, maxBytes: 10 });
  put(s, 1, 5);
  put(s, 2, 5);
  assert.equal(s.delete(k(1), 2), true);
  put(s, 3, 10); // evicts 2, the only entry
  s.validate();
  assert.deepEqual([has(s, 2), has(s, 3), s.info().bytes], [false, true, 10]);
});
