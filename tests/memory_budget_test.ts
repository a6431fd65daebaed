// maxBytes and sizeOf on the memory backend through cache(), on both engines
// (scripts/test.ts runs this file with each), for every strategy. The store level:
// tests/memory_bytes_test.ts.
import assert from "node:assert/strict";
import { cache, type CacheInfo, Strategy } from "../mod.ts";

const STRATEGIES = ["sieve", "lru", "mru", "fifo", "lfu", "s3fifo", "wtinylfu", "arc"] as const;

Deno.test("maxBytes: the entries' sizes stay within the budget; cacheInfo() reports bytes, maxBytes, oversizeSkips", () => {
  let calls = 0;
  const f = cache({ maxSize: 1000, maxBytes: 100 })((n: number) => {
    calls++;
    return "x".repeat(n); // 2 bytes a code unit by default
  });
  f(10); // 20 bytes
  f(15); // 30
  assert.deepEqual(f.cacheInfo(), {
    hits: 0,
    misses: 2,
    maxSize: 1000,
    currentSize: 2,
    bytes: 50,
    maxBytes: 100,
    oversizeSkips: 0,
  });
  f(20); // 40: 90 in all
  f(5); // 10: 100 in all, still within
  assert.equal(f.cacheInfo().bytes, 100);
  f(25); // 50: something must go
  const info = f.cacheInfo();
  assert.ok(info.bytes! <= 100, JSON.stringify(info));
  assert.ok(info.currentSize < 5);
  // An entry larger than the whole budget is returned, not stored, and counted.
  assert.equal(f(60).length, 60);
  assert.equal(f.cacheInfo().oversizeSkips, 1);
  assert.equal(f.cacheGet(60), undefined);
  const before = calls;
  f(60);
  assert.equal(calls, before + 1, "not stored: computed again");
});

Deno.test("maxBytes: every strategy keeps the sum within the budget", () => {
  for (const strategy of STRATEGIES) {
    const f = cache({ maxSize: 10_000, maxBytes: 1000, strategy })((k: number) =>
      new Uint8Array(1 + (k * 37) % 120)
    );
    let seed = 1;
    for (let i = 0; i < 3000; i++) {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      f(seed % 200);
      const info: CacheInfo = f.cacheInfo();
      assert.ok(info.bytes! <= 1000, `${strategy}: ${JSON.stringify(info)}`);
    }
    assert.ok(f.cacheInfo().currentSize > 5, strategy);
    f[Symbol.dispose]();
  }
  assert.equal(Strategy.WTinyLfu, 6);
});

Deno.test("sizeOf: sizes from the value and the arguments, rounded up; async values by their resolved value", async () => {
  const f = cache({
    maxBytes: 10,
    sizeOf: (value: { w: number }, _w: number, extra: number) => value.w + extra / 10,
  })((w: number, _extra: number) => ({ w }));
  f(3, 1); // 3.1 -> 4
  f(5, 0); // 5
  assert.equal(f.cacheInfo().bytes, 9);
  const g = cache({ maxBytes: 1000 })(async (n: number) => {
    await null;
    return "y".repeat(n);
  });
  assert.equal((await g(7)).length, 7);
  assert.equal(g.cacheInfo().bytes, 14);
  g.cacheSet("abc", 1);
  assert.equal(g.cacheInfo().bytes, 20);
});

Deno.test("maxBytes, sizeOf: bad values are errors naming the option and the value", () => {
  assert.throws(
    () => cache({ maxBytes: 0 }),
    /maxBytes must be a positive integer of bytes: received 0/,
  );
  assert.throws(() => cache({ maxBytes: 1.5 }), RangeError);
  assert.throws(() => cache({ maxBytes: "1mb" as unknown as number }), TypeError);
  assert.throws(() => cache({ sizeOf: () => 1 }), /sizeOf needs maxBytes/);
  assert.throws(() => cache({ maxBytes: 10, sizeOf: 5 as unknown as () => number }), TypeError);
  assert.throws(
    () => cache({ backend: "shared", maxBytes: 4096, sizeOf: () => 1 }),
    /sizeOf needs the memory backend/,
  );
  const bad = cache({ maxBytes: 10, sizeOf: () => Number.NaN })((k: number) => k);
  assert.throws(
    () => bad(1),
    /sizeOf must return a finite, non-negative number of bytes: received NaN/,
  );
  const wrong = cache({ maxBytes: 10, sizeOf: () => "2" as unknown as number })((k: number) => k);
  assert.throws(() => wrong(1), /sizeOf must return a number of bytes: received "2"/);
  class Point {
    constructor(readonly x: number) {}
  }
  const points = cache({ maxBytes: 100 })((x: number) => new Point(x));
  assert.throws(() => points(1), /give the sizeOf option/);
  const sized = cache({ maxBytes: 100, sizeOf: () => 8 })((x: number) => new Point(x));
  assert.equal(sized(1).x, 1);
  assert.equal(sized.cacheInfo().bytes, 8);
});
