import assert from "node:assert/strict";
import { SieveCache, sieveCacheOrder, validateSieveCache } from "../src/store/sieve_cache.ts";
import { MISS } from "../src/store/store.ts";
import { TsSieveStore } from "../src/store/ts_store.ts";

function put(c: SieveCache<number, string>, k: number): void {
  assert.equal(c.set(k, `v${k}`), c);
  validateSieveCache(c);
}

function get(c: SieveCache<number, string>, k: number): string | undefined {
  const r = c.get(k);
  validateSieveCache(c);
  return r;
}

function keys(c: SieveCache<number, string>): number[] {
  return sieveCacheOrder(c).map(([k]) => k);
}

Deno.test("SieveCache evicts the unvisited oldest entry first", () => {
  const c = new SieveCache<number, string>({ maxSize: 3 });
  for (const k of [1, 2, 3]) put(c, k);
  put(c, 4);
  assert.deepEqual(keys(c), [4, 3, 2]);
  assert.equal(c.size, 3);
  assert.equal(c.get(1), undefined);
});

Deno.test("SieveCache gives a visited entry a second chance", () => {
  const c = new SieveCache<number, string>({ maxSize: 3 });
  for (const k of [1, 2, 3]) put(c, k);
  assert.equal(get(c, 1), "v1");
  put(c, 4);
  assert.deepEqual(sieveCacheOrder(c), [[4, false], [3, false], [1, false]]);
});

Deno.test("SieveCache hand resumes where it stopped and wraps", async (t) => {
  await t.step("resumes", () => {
    const c = new SieveCache<number, string>({ maxSize: 4 });
    for (const k of [1, 2, 3, 4]) put(c, k);
    get(c, 1);
    get(c, 3);
    put(c, 5);
    assert.deepEqual(keys(c), [5, 4, 3, 1]);
    get(c, 1);
    put(c, 6);
    assert.deepEqual(keys(c), [6, 5, 3, 1]);
    put(c, 7);
    assert.deepEqual(keys(c), [7, 6, 3, 1]);
  });
  await t.step("wraps", () => {
    const c = new SieveCache<number, string>({ maxSize: 2 });
    put(c, 1);
    put(c, 2);
    get(c, 1);
    get(c, 2);
    put(c, 3);
    assert.deepEqual(keys(c), [3, 2]);
  });
  await t.step("removing the hand's entry moves the hand", () => {
    const c = new SieveCache<number, string>({ maxSize: 3 });
    for (const k of [1, 2, 3]) put(c, k);
    get(c, 1);
    put(c, 4);
    assert.equal(c.delete(3), true);
    validateSieveCache(c);
    put(c, 5);
    put(c, 6);
    assert.deepEqual(keys(c), [6, 5, 1]);
  });
});

Deno.test("SieveCache keeps hot entries through a scan", () => {
  const c = new SieveCache<number, string>({ maxSize: 4 });
  for (const k of [1, 2]) {
    put(c, k);
    get(c, k);
  }
  for (let k = 10; k < 40; k++) put(c, k);
  assert.ok(c.has(1) && c.has(2), `${keys(c)}`);
  assert.equal(c.size, 4);
});

Deno.test("SieveCache compares keys with SameValueZero", () => {
  const c = new SieveCache<unknown, string>({ maxSize: 10 });
  c.set(NaN, "nan");
  assert.equal(c.get(NaN), "nan");
  c.set(-0, "zero");
  assert.equal(c.get(0), "zero");
  assert.ok(Object.is([...c.keys()][1], 0), "-0 is stored as 0, as Map does");
  c.set(1, "number").set("1", "string").set(1n, "bigint").set(true, "boolean");
  assert.deepEqual([1, "1", 1n, true].map((k) => c.get(k)), [
    "number",
    "string",
    "bigint",
    "boolean",
  ]);
  const a = { id: 1 }, b = { id: 1 };
  c.set(a, "a");
  assert.equal(c.get(a), "a");
  assert.equal(c.get(b), undefined, "objects by identity");
  c.set(undefined, "undefined").set(null, "null");
  assert.equal(c.get(undefined), "undefined");
  assert.equal(c.get(null), "null");
  assert.equal(c.size, 9);
  validateSieveCache(c);
});

Deno.test("SieveCache Map-like methods", async (t) => {
  await t.step("set() returns the cache, replaces a value in place", () => {
    const c = new SieveCache<string, number>({ maxSize: 3 });
    c.set("a", 1).set("b", 2).set("a", 3);
    assert.equal(c.size, 2);
    assert.deepEqual([...c], [["a", 3], ["b", 2]]);
  });
  await t.step("a stored undefined is present", () => {
    const c = new SieveCache<string, undefined>({ maxSize: 3 });
    c.set("u", undefined);
    assert.equal(c.has("u"), true);
    assert.equal(c.get("u"), undefined);
    assert.equal(c.has("x"), false);
  });
  await t.step("has() and peek() do not mark visited; get() does", () => {
    const c = new SieveCache<string, number>({ maxSize: 2 });
    c.set("a", 1).set("b", 2);
    assert.equal(c.has("a"), true);
    assert.equal(c.peek("a"), 1);
    assert.deepEqual(sieveCacheOrder(c), [["b", false], ["a", false]]);
    c.set("c", 3); // "a" unvisited: evicted
    assert.deepEqual([...c.keys()], ["b", "c"]);
    c.get("b");
    assert.deepEqual(sieveCacheOrder(c), [["c", false], ["b", true]]);
  });
  await t.step("delete() and clear()", () => {
    const c = new SieveCache<string, number>({ maxSize: 3 });
    c.set("a", 1).set("b", 2);
    assert.equal(c.delete("a"), true);
    assert.equal(c.delete("a"), false);
    assert.equal(c.size, 1);
    c.clear();
    validateSieveCache(c);
    assert.equal(c.size, 0);
    assert.deepEqual([...c], []);
    c.set("x", 1).set("y", 2).set("z", 3).set("w", 4);
    assert.deepEqual([...c.keys()], ["y", "z", "w"]);
  });
  await t.step("iteration is oldest first and skips entries removed meanwhile", () => {
    const c = new SieveCache<number, string>({ maxSize: 10 });
    for (const k of [1, 2, 3, 4]) c.set(k, `v${k}`);
    assert.deepEqual([...c.values()], ["v1", "v2", "v3", "v4"]);
    const seen: number[] = [];
    for (const [k] of c) {
      seen.push(k);
      if (k === 1) c.delete(3);
    }
    assert.deepEqual(seen, [1, 2, 4]);
    const calls: Array<[string, number]> = [];
    const self = { tag: "this" };
    c.forEach(function (this: unknown, v, k, cache): void {
      assert.equal(this, self);
      assert.equal(cache, c);
      calls.push([v, k]);
    }, self);
    assert.deepEqual(calls, [["v1", 1], ["v2", 2], ["v4", 4]]);
    assert.equal(Object.prototype.toString.call(c), "[object SieveCache]");
  });
  await t.step("maxSize Infinity never evicts", () => {
    const c = new SieveCache<number, number>({ maxSize: Infinity });
    for (let i = 0; i < 3000; i++) c.set(i, i);
    validateSieveCache(c);
    assert.equal(c.size, 3000);
    assert.equal(c.maxSize, Infinity);
    assert.equal(c.get(0), 0);
  });
  await t.step("evicted values are released", () => {
    const c = new SieveCache<number, object>({ maxSize: 1 });
    c.set(1, {});
    c.set(2, {});
    validateSieveCache(c); // checks that free slots hold no key nor value
    assert.deepEqual([...c.keys()], [2]);
  });
});

Deno.test("SieveCache ttl with an injected clock", async (t) => {
  let now = 1000;
  const clock = (): number => now;
  await t.step("expires at the boundary; hits do not extend it", () => {
    now = 1000;
    const c = new SieveCache<string, number>({ maxSize: 4, ttl: 100, clock });
    c.set("k", 1);
    now = 1099.9;
    assert.equal(c.get("k"), 1);
    now = 1100;
    assert.equal(c.get("k"), undefined);
    assert.equal(c.size, 0, "the expired entry was removed");
    validateSieveCache(c);
  });
  await t.step("set() of a present key refreshes its time", () => {
    now = 0;
    const c = new SieveCache<string, number>({ maxSize: 4, ttl: 10, clock });
    c.set("a", 1);
    now = 5;
    c.set("a", 2);
    now = 14;
    assert.equal(c.get("a"), 2);
    now = 15;
    assert.equal(c.get("a"), undefined);
  });
  await t.step("has(), peek(), delete() and iteration see expired entries as absent", () => {
    now = 0;
    const c = new SieveCache<string, number>({ maxSize: 4, ttl: 10, clock });
    c.set("a", 1).set("b", 2).set("c", 3);
    now = 5;
    c.set("d", 4);
    now = 10;
    assert.equal(c.size, 4, "size counts expired entries not yet removed");
    assert.deepEqual([...c], [["d", 4]]);
    assert.equal(c.has("a"), false);
    assert.equal(c.peek("b"), undefined);
    assert.equal(c.delete("c"), false);
    assert.equal(c.size, 1);
    assert.equal(c.has("d"), true);
    validateSieveCache(c);
  });
  await t.step("the clock is called only when ttl is set", () => {
    let calls = 0;
    const c = new SieveCache<string, number>({
      maxSize: 2,
      clock: () => {
        calls++;
        return 0;
      },
    });
    c.set("a", 1).get("a");
    c.has("a");
    [...c];
    assert.equal(calls, 0);
  });
  await t.step("the default clock is performance.now", () => {
    const c = new SieveCache<string, number>({ maxSize: 2, ttl: 60_000 });
    c.set("a", 1);
    assert.equal(c.get("a"), 1);
  });
});

Deno.test("SieveCache rejects bad options", () => {
  const prefix = "Cannot create SieveCache: ";
  const cases: Array<[unknown, ErrorConstructor, string]> = [
    [{ maxSize: 0 }, RangeError, "maxSize must be a positive integer or Infinity: received 0"],
    [{ maxSize: -5 }, RangeError, "maxSize must be a positive integer or Infinity: received -5"],
    [{ maxSize: 2.5 }, RangeError, "maxSize must be a positive integer or Infinity: received 2.5"],
    [{ maxSize: NaN }, RangeError, "maxSize must be a positive integer or Infinity: received NaN"],
    [
      { maxSize: -Infinity },
      RangeError,
      "maxSize must be a positive integer or Infinity: received -Infinity",
    ],
    [{ maxSize: "10" }, TypeError, `maxSize must be a positive integer or Infinity: received "10"`],
    [{}, TypeError, "maxSize must be a positive integer or Infinity: received undefined"],
    [
      { maxSize: 1, ttl: 0 },
      RangeError,
      "ttl must be a positive finite number of milliseconds: received 0",
    ],
    [
      { maxSize: 1, ttl: -1 },
      RangeError,
      "ttl must be a positive finite number of milliseconds: received -1",
    ],
    [
      { maxSize: 1, ttl: NaN },
      RangeError,
      "ttl must be a positive finite number of milliseconds: received NaN",
    ],
    [
      { maxSize: 1, ttl: Infinity },
      RangeError,
      "ttl must be a positive finite number of milliseconds: received Infinity",
    ],
    [
      { maxSize: 1, ttl: "1s" },
      TypeError,
      `ttl must be a positive finite number of milliseconds: received "1s"`,
    ],
    [
      { maxSize: 1, ttl: Symbol("t") },
      TypeError,
      "ttl must be a positive finite number of milliseconds: received Symbol(t)",
    ],
    [{ maxSize: 1, clock: 5 }, TypeError, "clock must be a function: received 5"],
    [null, TypeError, "options must be an object: received null"],
  ];
  for (const [options, type, message] of cases) {
    assert.throws(() => new SieveCache(options as never), (e: unknown) => {
      assert.ok(e instanceof type, `${message}: ${e}`);
      assert.equal((e as Error).message, prefix + message);
      return true;
    });
  }
  // Accepted edge values.
  assert.equal(new SieveCache({ maxSize: 1, ttl: undefined, clock: undefined }).maxSize, 1);
  assert.equal(new SieveCache({ maxSize: 2 ** 40, ttl: 0.5 }).maxSize, 2 ** 40);
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

Deno.test("SieveCache evicts exactly as TsSieveStore under a random workload", () => {
  // TsSieveStore is checked against a reference model in ts_store_test.ts.
  const next = prng(0x2545f491);
  let now = 0;
  const cache = new SieveCache<number, number>({ maxSize: 16, ttl: 50, clock: () => now });
  const store = new TsSieveStore({ maxSize: 16, ttl: 50 });
  const buf = new Uint8Array(1);
  for (let t = 0; t < 20_000; t++) {
    now = t;
    const k = next() % 40;
    buf[0] = k;
    const op = next() % 10;
    if (op === 0) {
      cache.delete(k);
      store.delete(buf, 1);
    } else if (op < 5) {
      cache.set(k, t);
      store.set(buf, 1, t, now);
    } else {
      const expected = store.get(buf, 1, now);
      assert.equal(cache.get(k), expected === MISS ? undefined : expected, `step ${t}`);
    }
    validateSieveCache(cache);
    const order = store.order().map(([key, visited]) => [key.charCodeAt(0), visited]);
    assert.deepEqual(sieveCacheOrder(cache), order, `step ${t}`);
  }
  assert.ok(cache.size > 0);
});
