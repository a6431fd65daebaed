// Behaviour of cache() with the memory backend. The same file runs against
// both engines: `WARP_CACHE_ENGINE=native` and `WARP_CACHE_ENGINE=ts` (scripts/test.ts).
import assert from "node:assert/strict";
import { Backend, cache, cacheContext, type CachedFunction, Strategy } from "../mod.ts";
import { memoryEngine } from "../src/store/engine.ts";
import { MAX_SHARED_BYTES, MIN_SHARED_BYTES } from "../src/native/_abi.ts";
import { handResumes, secondChance } from "./fixtures/sieve_scenarios.ts";

const engine = Deno.env.get("WARP_CACHE_ENGINE");
if (engine === "native" || engine === "ts") {
  Deno.test(`memoryEngine() is ${engine} as requested`, () => {
    assert.equal(memoryEngine(), engine);
  });
}

function counter<A extends unknown[], R>(
  f: (...args: A) => R,
): { fn: (...args: A) => R; calls: A[] } {
  const calls: A[] = [];
  return {
    fn: (...args: A): R => {
      calls.push(args);
      return f(...args);
    },
    calls,
  };
}

Deno.test("cache() counts hits and misses and reports cacheInfo()", () => {
  const { fn, calls } = counter((x: number) => x * x);
  const square = cache({ maxSize: 256 })(fn);
  assert.equal(square(3), 9);
  assert.equal(square(3), 9);
  assert.equal(calls.length, 1);
  assert.deepEqual(square.cacheInfo(), { hits: 1, misses: 1, maxSize: 256, currentSize: 1 });
  assert.equal("oversizeSkips" in square.cacheInfo(), false);
});

Deno.test("cache() defaults to maxSize 128 and keeps name and length", () => {
  function namedFunction(a: number, b: number): number {
    return a + b;
  }
  const c = cache()(namedFunction);
  assert.equal(c.name, "namedFunction");
  assert.equal(c.length, 2);
  assert.equal(c.cacheInfo().maxSize, 128);
});

Deno.test("cacheClear() removes every entry and resets the counters", () => {
  const { fn, calls } = counter((x: number) => x + 1);
  const c = cache()(fn);
  c(1);
  c(1);
  c(2);
  c.cacheClear();
  assert.deepEqual(c.cacheInfo(), { hits: 0, misses: 0, maxSize: 128, currentSize: 0 });
  assert.equal(c(1), 2);
  assert.equal(calls.length, 3);
  assert.deepEqual(c.cacheInfo(), { hits: 0, misses: 1, maxSize: 128, currentSize: 1 });
});

Deno.test("cache() keeps the identity of returned values", () => {
  const c = cache()((id: number) => ({ id }));
  const a = c(1);
  assert.equal(c(1), a);
  assert.notEqual(c(2), a);
});

Deno.test("cache() never caches a thrown exception and rethrows it as is", () => {
  const err = new Error("boom");
  let n = 0;
  const c = cache()((_x: number) => {
    n++;
    throw err;
  });
  assert.throws(() => c(1), (e) => e === err);
  assert.throws(() => c(1), (e) => e === err);
  assert.equal(n, 2);
  assert.deepEqual(c.cacheInfo(), { hits: 0, misses: 2, maxSize: 128, currentSize: 0 });
});

Deno.test("cache() evicts by SIEVE: a visited entry survives, the unvisited oldest goes", () => {
  const { fn, calls } = counter((x: number) => x);
  secondChance(cache({ maxSize: 3 })(fn), calls);
});

Deno.test("cache() SIEVE hand resumes where it stopped", () => {
  const { fn, calls } = counter((x: number) => x);
  handResumes(cache({ maxSize: 4, strategy: Strategy.Sieve })(fn), calls);
});

Deno.test("cache() strategies lru, mru and fifo evict by their rule", () => {
  const survivors = (strategy: Strategy | "lru" | "mru" | "fifo"): number[] => {
    const { fn, calls } = counter((x: number) => x);
    const c = cache({ maxSize: 3, strategy })(fn);
    for (const k of [1, 2, 3]) c(k);
    c(1);
    c(4);
    const kept: number[] = [];
    for (const k of [1, 2, 3, 4]) {
      const n = calls.length;
      c.cacheInfo();
      // peek through a fresh call count: a hit leaves calls unchanged
      c(k);
      if (calls.length === n) kept.push(k);
      else break; // a miss inserts and evicts: stop probing
    }
    return kept;
  };
  assert.deepEqual(survivors("lru"), [1]); // 2 evicted first: probing 2 misses
  assert.deepEqual(survivors(Strategy.Mru), []); // 1 (most recent) evicted
  assert.deepEqual(survivors("fifo"), []); // 1 (first in) evicted
});

Deno.test("cache() with maxSize Infinity never evicts", () => {
  const c = cache({ maxSize: Infinity })((x: number) => x);
  for (let i = 0; i < 5000; i++) c(i);
  assert.deepEqual(c.cacheInfo(), {
    hits: 0,
    misses: 5000,
    maxSize: Infinity,
    currentSize: 5000,
  });
  for (let i = 0; i < 5000; i++) c(i);
  assert.equal(c.cacheInfo().hits, 5000);
});

Deno.test("cache() ttl: an entry is a miss once its age reaches ttl; hits do not extend it", () => {
  let now = 1000;
  const { fn, calls } = counter((x: number) => x * 2);
  const c = cache({ ttl: 100, clock: () => now })(fn);
  c(1);
  now = 1099;
  c(1);
  assert.equal(calls.length, 1, "fresh at age 99");
  now = 1100;
  c(1);
  assert.equal(calls.length, 2, "expired at age 100");
  assert.deepEqual(c.cacheInfo(), { hits: 1, misses: 2, maxSize: 128, currentSize: 1 });
  now = 1150;
  c(1); // hit at age 50
  now = 1200;
  c(1); // expired: insertion at 1100, hits did not extend it
  assert.equal(calls.length, 3);
});

Deno.test("cache() ttl with real time", async () => {
  const { fn, calls } = counter((x: number) => x);
  const c = cache({ ttl: 30 })(fn);
  c(1);
  c(1);
  assert.equal(calls.length, 1);
  await new Promise((r) => setTimeout(r, 60));
  c(1);
  assert.equal(calls.length, 2);
});

Deno.test("cache() async: concurrent calls share one computation and count as hits", async () => {
  let resolve!: (v: { v: number }) => void;
  let n = 0;
  const c = cache()((_x: number) => {
    n++;
    return new Promise<{ v: number }>((r) => (resolve = r));
  });
  const p1 = c(1);
  const p2 = c(1);
  const p3 = c(2);
  assert.equal(n, 2);
  assert.equal(p1, p2, "the same pending promise");
  resolve({ v: 2 });
  const v2 = await p3;
  assert.deepEqual(v2, { v: 2 });
  assert.deepEqual(c.cacheInfo(), { hits: 1, misses: 2, maxSize: 128, currentSize: 1 });
});

Deno.test("cache() async: a hit returns a Promise of the cached value (identity kept)", async () => {
  let n = 0;
  const c = cache()(async (x: number) => {
    n++;
    await new Promise((r) => setTimeout(r, 5));
    return { x };
  });
  const a = await c(7);
  const hit = c(7);
  assert.ok(hit instanceof Promise);
  assert.equal(await hit, a);
  assert.equal(n, 1);
  assert.deepEqual(c.cacheInfo(), { hits: 1, misses: 1, maxSize: 128, currentSize: 1 });
});

Deno.test("cache() async: a rejection is shared by the waiters and never cached", async () => {
  let n = 0;
  const err = new Error("nope");
  const c = cache()(async (_x: number) => {
    n++;
    await new Promise((r) => setTimeout(r, 5));
    throw err;
  });
  const results = await Promise.allSettled([c(1), c(1), c(1)]);
  assert.equal(n, 1);
  for (const r of results) {
    assert.equal(r.status, "rejected");
    assert.equal((r as PromiseRejectedResult).reason, err);
  }
  await assert.rejects(c(1), (e) => e === err);
  assert.equal(n, 2, "the next call computes again");
  assert.deepEqual(c.cacheInfo(), { hits: 2, misses: 2, maxSize: 128, currentSize: 0 });
});

Deno.test("cache() async: a non-async function returning a promise is cached by value", async () => {
  let n = 0;
  const c = cache()((x: number) => {
    n++;
    return Promise.resolve(x + 1);
  });
  assert.equal(await c(1), 2);
  assert.equal(await c(1), 2);
  assert.equal(n, 1);
});

Deno.test("cache() async: every hit returns the entry's one Promise, V8's own and untouched", async () => {
  const c = cache()(async (x: number) => await Promise.resolve({ x }));
  const first = await c(1);
  const hit = c(1);
  assert.ok(hit instanceof Promise);
  assert.equal(c(1), hit, "one Promise per entry, not one per hit");
  // A property on the Promise would make each `await` of a hit look its constructor up.
  assert.deepEqual(Reflect.ownKeys(hit), []);
  assert.equal(Object.getPrototypeOf(hit), Promise.prototype);
  assert.equal(await hit, first);
  assert.equal(c.cacheGet(1), first, "cacheGet reads the resolved value");
});

Deno.test("cache() async: cacheClear() while pending stores nothing from the old call", async () => {
  let resolve!: (v: number) => void;
  const c = cache()((_x: number) => new Promise<number>((r) => (resolve = r)));
  const p = c(1);
  c.cacheClear();
  resolve(5);
  assert.equal(await p, 5);
  assert.equal(c.cacheInfo().currentSize, 0);
});

Deno.test("cache() as a method decorator keys on this and keeps the name", async () => {
  class Users {
    lookups = 0;
    constructor(readonly prefix: string) {}
    @cache({ maxSize: 128, ttl: 60_000 })
    async find(id: number): Promise<string> {
      this.lookups++;
      await Promise.resolve();
      return `${this.prefix}${id}`;
    }
    @cache()
    label(id: number): string {
      this.lookups++;
      return `${this.prefix}:${id}`;
    }
  }
  const a = new Users("a");
  const b = new Users("b");
  assert.equal(await a.find(1), "a1");
  assert.equal(await a.find(1), "a1");
  assert.equal(await b.find(1), "b1");
  assert.equal(a.lookups, 1);
  assert.equal(b.lookups, 1);
  assert.equal(a.label(2), "a:2");
  assert.equal(b.label(2), "b:2");
  assert.equal(a.label(2), "a:2");
  assert.equal(a.find.name, "find");
  assert.equal(Users.prototype.label.name, "label");
  const info = (a.find as unknown as { cacheInfo(): unknown }).cacheInfo();
  assert.deepEqual(info, { hits: 1, misses: 2, maxSize: 128, currentSize: 2 });
});

Deno.test("cache() as a decorator on a non-method is a TypeError", () => {
  const onField = cache() as unknown as (v: undefined, c: ClassFieldDecoratorContext) => void;
  assert.throws(
    () => {
      class X {
        @onField
        field = 1;
      }
      new X();
    },
    (e: unknown) => e instanceof TypeError && /only methods can be cached/.test(e.message),
  );
});

Deno.test("cache() keys: types, SameValueZero, arity, arrays, objects, dates, bytes", () => {
  const seen: unknown[][] = [];
  const c = cache({ maxSize: 1000 })((...args: unknown[]) => {
    seen.push(args);
    return seen.length;
  });
  const distinct: unknown[][] = [
    [1],
    ["1"],
    [1n],
    [true],
    [1, undefined],
    [[1]],
    [null],
    [undefined],
    [],
    [{ a: 1 }],
    [[["a", 1]]],
    ["\ud800"],
    ["\ufffd"],
    [new Date(5)],
    [5],
    [new Uint8Array([1, 2])],
    [new Uint8Array([1, 2]).buffer],
    [[1, 2]],
    ["ab"],
    ["a", "b"],
    [["a", "b"]],
    [2 ** 40],
    [1.5],
    [NaN],
    [-1],
    ["é"],
    ["\u0100"],
    [{ a: "1" }],
    [{ a: [1] }],
    [{}],
  ];
  const results = distinct.map((args) => c(...args));
  assert.equal(new Set(results).size, distinct.length, "every key is distinct");
  assert.equal(c.cacheInfo().misses, distinct.length);
  const same: [unknown[], unknown[]][] = [
    [[0], [-0]],
    [[NaN], [0 / 0]],
    [[{ a: 1, b: 2 }], [{ b: 2, a: 1 }]],
    [[[1, [2, { x: 3 }]]], [[1, [2, { x: 3 }]]]],
    [[new Date(5)], [new Date(5)]],
    [[new Uint8Array([1, 2])], [new Uint8Array([1, 2])]],
    [[10n ** 30n], [10n ** 30n]],
    [[Object.assign(Object.create(null), { k: 1 })], [{ k: 1 }]],
  ];
  for (const [a, b] of same) {
    assert.equal(c(...a), c(...b), `${Deno.inspect(a)} and ${Deno.inspect(b)} are one key`);
  }
});

Deno.test("cache() keys: other objects, functions and symbols by identity", () => {
  class Point {
    constructor(readonly x: number) {}
  }
  let n = 0;
  const c = cache()((_v: unknown) => ++n);
  const p = new Point(1);
  assert.equal(c(p), c(p));
  assert.notEqual(c(new Point(1)), c(p));
  const f = (): void => {};
  assert.equal(c(f), c(f));
  const s = Symbol("s");
  assert.equal(c(s), c(s));
  assert.notEqual(c(Symbol("s")), c(s));
  assert.equal(c(Symbol.for("reg")), c(Symbol.for("reg")));
  const m = new Map([[1, 2]]);
  assert.equal(c(m), c(m));
  assert.notEqual(c(new Map([[1, 2]])), c(m));
});

Deno.test("cache() keys: a call is cached at every key length from 0 to 300 bytes", () => {
  // A string of n units keys as n + 4 bytes here (lengths 0-300 cover the native store's
  // inline keys, up to 22 bytes, its boxed ones, and 255, a length its miss record once
  // took for its own "none").
  let calls = 0;
  const f = cache({ maxSize: 1000 })((s: string): number => {
    calls++;
    return s.length;
  });
  for (let n = 0; n <= 300; n++) {
    const s = "x".repeat(n);
    assert.equal(f(s), n);
    assert.equal(f(s), n, `the hit of a string of ${n} units`);
  }
  assert.equal(calls, 301);
  assert.equal(f.cacheInfo().hits, 301);
});

Deno.test("cache() keys: a cyclic argument is a TypeError, not a stack overflow", () => {
  const c = cache()((_v: unknown) => 1);
  const a: unknown[] = [];
  a.push(a);
  assert.throws(() => c(a), TypeError);
  const o: Record<string, unknown> = {};
  o.self = { o };
  assert.throws(() => c(o), /cyclic/);
  const shared = { v: 1 };
  assert.equal(c([shared, shared]), 1, "a repeated (acyclic) reference is fine");
});

Deno.test("cache() keys: the key option maps arguments to the key", () => {
  let n = 0;
  const c = cache({ key: (user: { id: number; name: string }) => user.id })(
    (user: { id: number; name: string }) => `${user.name}#${++n}`,
  );
  assert.equal(c({ id: 1, name: "a" }), "a#1");
  assert.equal(c({ id: 1, name: "b" }), "a#1");
  assert.equal(c({ id: 2, name: "b" }), "b#2");
});

Deno.test("cache() reentrancy: recursion gets correct values and counts", () => {
  const fib: CachedFunction<(n: number) => number> = cache({ maxSize: 1000 })(
    (n: number): number => n < 2 ? n : fib(n - 1) + fib(n - 2),
  );
  assert.equal(fib(30), 832040);
  assert.deepEqual(fib.cacheInfo(), { hits: 28, misses: 31, maxSize: 1000, currentSize: 31 });
  assert.equal(fib(30), 832040);
  assert.equal(fib.cacheInfo().hits, 29);
});

Deno.test("cache() reentrancy: nested cached functions with long keys do not clobber", () => {
  const inner = cache()((s: string, depth: number): string => `${s.length}:${depth}`);
  const outer = cache()((s: string): string => {
    const a = inner(s + "x".repeat(300), 1);
    const b = inner(s.toUpperCase() + "é".repeat(2), 2);
    return `${s}|${a}|${b}`;
  });
  const long = "k".repeat(1000);
  assert.equal(outer(long), `${long}|1300:1|1002:2`);
  assert.equal(outer(long), `${long}|1300:1|1002:2`);
  assert.equal(outer("ab"), "ab|302:1|4:2");
  assert.deepEqual(outer.cacheInfo(), { hits: 1, misses: 2, maxSize: 128, currentSize: 2 });
  assert.deepEqual(inner.cacheInfo(), { hits: 0, misses: 4, maxSize: 128, currentSize: 4 });
});

Deno.test("cache() reentrancy: a key getter that calls a cached function", () => {
  const inner = cache()((x: number) => x * 10);
  const outer = cache()((o: { v: number }) => o.v + 1);
  const arg = {
    get v(): number {
      return inner(4);
    },
  };
  assert.equal(outer(arg), 41);
  assert.equal(outer({ v: 40 }), 41, "the getter's value was part of the key");
});

Deno.test("cache() rejects bad options at decoration time, naming option and value", async (t) => {
  const cases: [unknown, ErrorConstructor | RangeErrorConstructor, RegExp][] = [
    [{ maxSize: 0 }, RangeError, /maxSize.*received 0/],
    [{ maxSize: -1 }, RangeError, /maxSize.*received -1/],
    [{ maxSize: 1.5 }, RangeError, /maxSize.*received 1\.5/],
    [{ maxSize: NaN }, RangeError, /maxSize.*received NaN/],
    [{ maxSize: "10" }, TypeError, /maxSize.*received "10"/],
    [{ ttl: 0 }, RangeError, /ttl.*received 0/],
    [{ ttl: -5 }, RangeError, /ttl.*received -5/],
    [{ ttl: NaN }, RangeError, /ttl.*received NaN/],
    [{ ttl: Infinity }, RangeError, /ttl.*received Infinity/],
    [{ ttl: "1s" }, TypeError, /ttl.*received "1s"/],
    [{ backend: "disk" }, TypeError, /backend.*received "disk"/],
    [{ backend: 7 }, TypeError, /backend.*received 7/],
    [{ strategy: "random" }, TypeError, /strategy.*received "random"/],
    [{ strategy: "s3-fifo" }, TypeError, /strategy must be one of .*"s3fifo".*received "s3-fifo"/],
    [
      { strategy: "tinylfu" },
      TypeError,
      /strategy must be one of .*"wtinylfu".*received "tinylfu"/,
    ],
    [{ strategy: 8 }, TypeError, /strategy.*received 8/],
    [{ key: 5 }, TypeError, /key.*received 5/],
    [{ name: "" }, TypeError, /name.*received ""/],
    [{ maxKeySize: 0 }, RangeError, /maxKeySize.*received 0/],
    [{ maxValueSize: -1 }, RangeError, /maxValueSize.*received -1/],
    [{ maxValueSize: "big" }, TypeError, /maxValueSize.*received "big"/],
    [
      { backend: "shared", maxBytes: MIN_SHARED_BYTES - 1 },
      RangeError,
      new RegExp(
        `maxBytes must be an integer from ${MIN_SHARED_BYTES} to .*received ${
          MIN_SHARED_BYTES - 1
        }`,
      ),
    ],
    [
      { backend: "shared", maxBytes: MAX_SHARED_BYTES + 1 },
      RangeError,
      new RegExp(`maxBytes.*received ${MAX_SHARED_BYTES + 1}`),
    ],
    [{ maxBytes: 0 }, RangeError, /maxBytes must be a positive integer of bytes: received 0/],
    [{ maxBytes: 1000.5 }, RangeError, /maxBytes.*received 1000\.5/],
    [{ maxBytes: "16m" }, TypeError, /maxBytes must be a number.*received "16m"/],
    [{ backend: "shared", maxSize: Infinity }, RangeError, /maxSize.*received Infinity/],
  ];
  for (const [options, Kind, message] of cases) {
    await t.step(Deno.inspect(options), () => {
      assert.throws(() => cache(options as never), (e: unknown) => {
        assert.ok(e instanceof Kind, `${Deno.inspect(e)} is a ${Kind.name}`);
        assert.match((e as Error).message, message);
        return true;
      });
    });
  }
});

Deno.test("cache() accepts enum and string forms of backend and strategy", () => {
  for (const backend of [Backend.Memory, "memory"] as const) {
    for (const strategy of [Strategy.Sieve, "sieve", Strategy.Lru, "fifo", "mru"] as const) {
      const c = cache({ backend, strategy, maxSize: 2 })((x: number) => x);
      assert.equal(c(1), 1);
      assert.equal(c(1), 1);
      assert.equal(c.cacheInfo().hits, 1);
    }
  }
});

Deno.test("Strategy numbers S3Fifo and WTinyLfu, and their string forms", () => {
  assert.equal(Strategy.S3Fifo, 5);
  assert.equal(Strategy.WTinyLfu, 6);
  for (const strategy of [Strategy.S3Fifo, "s3fifo", Strategy.WTinyLfu, "wtinylfu"] as const) {
    const c = cache({ strategy, maxSize: 2 })((x: number) => x);
    assert.equal(c(1), 1);
    assert.equal(c(1), 1);
    assert.equal(c.cacheInfo().hits, 1);
  }
});

Deno.test("cache() strategy s3fifo sends one-hit wonders out through the small queue", () => {
  // maxSize 20: a small queue of 2, a main queue of 18. Until the first eviction, keys
  // fill the small queue, then the main one.
  const { fn, calls } = counter((x: number) => x);
  const f = cache({ maxSize: 20, strategy: "s3fifo" })(fn);
  for (let k = 1; k <= 20; k++) f(k);
  f(1);
  f(1); // 1, in the small queue, is hit twice: it will move to the main queue
  // One-hit wonders: the first evicts 2 (small, never hit) and moves 1 to the main queue,
  // which overflows by one: the next evicts 3 (main's oldest, never hit); from then on they
  // only push each other out of the small queue.
  for (let k = 100; k < 140; k++) f(k);
  const before = calls.length;
  for (let k = 4; k <= 20; k++) f(k);
  f(1);
  assert.equal(calls.length, before, "the main queue's entries survived the one-hit wonders");
  f(2);
  f(3);
  assert.equal(calls.length, before + 2, "2 and 3 were evicted");
});

Deno.test("cache() strategy wtinylfu keeps frequent keys through a scan", () => {
  const { fn, calls } = counter((x: number) => x);
  const f = cache({ maxSize: 100, strategy: Strategy.WTinyLfu })(fn);
  for (let round = 0; round < 5; round++) for (let k = 0; k < 50; k++) f(k);
  for (let k = 1000; k < 3000; k++) f(k); // a scan of 2,000 keys seen once
  const before = calls.length;
  for (let k = 0; k < 50; k++) f(k);
  assert.ok(calls.length - before <= 5, `${calls.length - before} of 50 frequent keys lost`);
  assert.equal(f.cacheInfo().currentSize, 100);
});

Deno.test("cache() every strategy keeps the TTL, own TTL, delete and clear rules", async (t) => {
  const strategies = ["sieve", "lru", "mru", "fifo", "lfu", "s3fifo", "wtinylfu", "arc"] as const;
  for (const strategy of strategies) {
    await t.step(strategy, () => {
      let now = 1000;
      const { fn, calls } = counter((x: number) => {
        if (x >= 100) cacheContext()!.setTtl(x >= 200 ? Infinity : 10);
        return x * 2;
      });
      const f = cache({ maxSize: 30, ttl: 100, strategy, clock: () => now })(fn);
      for (const x of [1, 2, 100, 200]) f(x);
      now = 1009;
      for (const x of [1, 2, 100, 200]) f(x);
      assert.equal(calls.length, 4, "all fresh");
      now = 1010;
      f(100);
      assert.equal(calls.length, 5, "its own TTL of 10 ms is over");
      now = 1099;
      f(1);
      now = 1100;
      f(1);
      assert.equal(calls.length, 6, "the cache's TTL of 100 ms is over; hits did not extend it");
      now = 1_000_000;
      f(200);
      assert.equal(calls.length, 6, "an own TTL of Infinity never ends");
      assert.equal(f.cacheDelete(2), true);
      assert.equal(f.cacheDelete(2), false);
      assert.equal(f.cacheGet(200), 400);
      const info = f.cacheInfo();
      assert.deepEqual([info.hits, info.misses, info.maxSize], [6, 6, 30]);
      f.cacheClear();
      assert.deepEqual(f.cacheInfo(), { hits: 0, misses: 0, maxSize: 30, currentSize: 0 });
      f(1);
      assert.equal(calls.length, 7);
    });
    await t.step(`${strategy}, maxSize Infinity`, () => {
      const c = cache({ maxSize: Infinity, strategy })((x: number) => x);
      for (let i = 0; i < 5000; i++) c(i);
      for (let i = 0; i < 5000; i++) c(i);
      assert.deepEqual(c.cacheInfo(), {
        hits: 5000,
        misses: 5000,
        maxSize: Infinity,
        currentSize: 5000,
      });
    });
    await t.step(`${strategy}, full`, () => {
      const c = cache({ maxSize: 40, strategy })((x: number) => x);
      for (let i = 0; i < 1000; i++) c(i % 97);
      assert.equal(c.cacheInfo().currentSize, 40);
      assert.equal(c.cacheInfo().hits + c.cacheInfo().misses, 1000);
    });
  }
});

Deno.test("cache() strategy lfu evicts the least frequently used", async (t) => {
  await t.step("the lowest count goes first", () => {
    const { fn, calls } = counter((x: number) => x * 10);
    const f = cache({ maxSize: 3, strategy: "lfu" })(fn);
    for (const x of [1, 2, 3, 1, 1, 2]) f(x); // counts: 1 -> 3, 2 -> 2, 3 -> 1
    assert.equal(calls.length, 3);
    assert.equal(f(4), 40); // full: 3 is the least frequently used
    assert.equal(f(1), 10);
    assert.equal(f(2), 20);
    assert.equal(calls.length, 4, "1 and 2 were kept");
    assert.equal(f(3), 30); // 3 was evicted; now 4 (count 1) goes
    assert.equal(calls.length, 5);
    assert.equal(f(4), 40);
    assert.deepEqual(calls.map(([x]) => x), [1, 2, 3, 4, 3, 4]);
    assert.deepEqual(f.cacheInfo(), { hits: 5, misses: 6, maxSize: 3, currentSize: 3 });
  });
  await t.step("ties go to the entry longest at its count", () => {
    const { fn, calls } = counter((x: number) => x);
    const f = cache({ maxSize: 3, strategy: Strategy.Lfu })(fn);
    for (const x of [1, 2, 3, 3, 2, 1]) f(x); // all reach count 2: 3 first, then 2, then 1
    f(4); // no entry has count 1: evicts 3, the longest at count 2
    f(4); // 4 reaches count 2
    f(5); // evicts 2, now the longest at count 2
    f(1);
    assert.deepEqual(calls.map(([x]) => x), [1, 2, 3, 4, 5]);
    f(2);
    f(3);
    assert.deepEqual(calls.map(([x]) => x), [1, 2, 3, 4, 5, 2, 3]);
  });
});

Deno.test({
  name: "cache() keys: an identity-keyed argument is not kept alive by the cache",
  ignore: Deno.permissions.querySync({ name: "run" }).state !== "granted",
  async fn(): Promise<void> {
    const script = new URL("./fixtures/identity_gc.ts", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--v8-flags=--expose-gc", script],
      stdin: "null",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    const result = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.deepEqual(result, { alive: 0, hits: 100, currentSize: 100, pairHits: 100 });
  },
});

Deno.test("cache() memory backend works inside a Worker, on the same engine", async () => {
  const worker = new Worker(new URL("./fixtures/memory_worker.ts", import.meta.url), {
    type: "module",
  });
  const result = await new Promise<unknown>((resolve, reject) => {
    worker.onmessage = (e: MessageEvent): void => resolve(e.data);
    worker.onerror = (e: ErrorEvent): void => {
      e.preventDefault();
      reject(new Error(e.message));
    };
  });
  worker.terminate();
  assert.deepEqual(result, {
    engine: memoryEngine(),
    identity: true,
    calls: 5,
    info: { hits: 1, misses: 5, maxSize: 4, currentSize: 4 },
  });
});
