import assert from "node:assert/strict";
import { encodeKey, KeyWriter } from "../src/codec/key_codec.ts";
import { FakeServer, fakeTier } from "./fixtures/fake_tier.ts";
import {
  ArgsDecoder,
  hashArgs,
  hashObjectKey,
  MAX_ARITY,
  MAX_OBJECT_KEYS,
  ShapeToken,
} from "../src/store/_args_index.ts";
import { ABSENT, INVALID, MISS, promisedEntry } from "../src/store/store.ts";
import { ProcessTagClock, Tagged } from "../src/call/tags.ts";
import { type Policy, TsSieveStore } from "../src/store/ts_store.ts";
import { Strategy } from "../src/options/options.ts";
import { cache } from "../mod.ts";
import type { KeyBytes } from "../src/store/store.ts";

/** The holder of `key`, as a store's `set` gets it. */
/** Runs `body` with `ArgsDecoder.prototype.decode` counted (`decoded()`), then restores it. */
function withDecodeCount(body: (decoded: () => number) => void): void {
  const decode = ArgsDecoder.prototype.decode;
  let count = 0;
  ArgsDecoder.prototype.decode = function (key: Uint8Array, len: number): number {
    count++;
    return decode.call(this, key, len);
  };
  try {
    body(() => count);
  } finally {
    ArgsDecoder.prototype.decode = decode;
  }
}

/** Whether a call of `args` is indexed by its values (`OBJECTS` alone, or primitives). */
function byValues(args: unknown[]): boolean {
  if (args.length === 1 && OBJECTS.includes(args[0] as Record<string, unknown>)) return true;
  return args.every((a) => a === null || typeof a !== "object");
}

/** Runs `body` with `cache()` on the TypeScript engine (`WARP_CACHE_ENGINE=ts`), then
 * restores the variable. */
async function onTsEngine(body: () => void | Promise<void>): Promise<void> {
  const prev = Deno.env.get("WARP_CACHE_ENGINE");
  Deno.env.set("WARP_CACHE_ENGINE", "ts");
  try {
    await body();
  } finally {
    if (prev === undefined) Deno.env.delete("WARP_CACHE_ENGINE");
    else Deno.env.set("WARP_CACHE_ENGINE", prev);
  }
}

function held(key: Uint8Array): KeyBytes {
  return { buf: key, len: key.length, pointer: () => undefined };
}

/** Primitive arguments of every decodable kind, with the edges of the key contract. */
const PRIMITIVES: unknown[] = [
  0,
  -0,
  1,
  -1,
  2 ** 31 - 1,
  -(2 ** 31),
  2 ** 31,
  1.5,
  -1e300,
  Infinity,
  -Infinity,
  NaN,
  "",
  "1",
  ...Array.from({ length: 12 }, (_, i) => "xyz".repeat(5).slice(0, i + 3)),
  "a".repeat(255),
  "b".repeat(256),
  "\u00ff\u0000",
  "\ud800",
  "\ufffd",
  "\u4e16".repeat(300),
  true,
  false,
  undefined,
  null,
];

/** Plain objects indexed by their values (one argument), with the edges of the contract. */
const OBJECTS: Array<Record<string, unknown>> = [
  { id: 1 },
  { id: "1" },
  { a: 1, b: "x" },
  { b: "y", a: 1 },
  { a: NaN, b: -0 },
  { a: 2.5, b: null, c: undefined, d: true, e: false, f: "\ud800", g: "\u4e16".repeat(300) },
  Object.assign(Object.create(null), { nul: 1 }),
  { 2: "two", 1: "one" },
  Object.fromEntries(Array.from({ length: MAX_OBJECT_KEYS }, (_, i) => [`k${i}`, i])),
];

/** Plain objects that stay keyed by their bytes: a value not a primitive, too many keys. */
const BYTE_OBJECTS: Array<Record<string, unknown>> = [
  { a: { n: 1 } },
  { a: [1] },
  { a: 1n },
  { a: Symbol.for("s") },
  Object.fromEntries(Array.from({ length: MAX_OBJECT_KEYS + 1 }, (_, i) => [`k${i}`, i])),
  {},
];

Deno.test("ArgsDecoder.decode reads back every primitive call the encoder writes", () => {
  const index = new ArgsDecoder();
  const calls: unknown[][] = [];
  for (const a of PRIMITIVES) {
    calls.push([a]);
    calls.push([a, 7, "x"]);
  }
  calls.push([1, 2, 3, 4]);
  for (const shared of [false, true]) {
    for (const args of calls) {
      const key = encodeKey(args, { shared });
      const n = index.decode(key, key.length);
      assert.equal(n, args.length, `${shared} ${String(args)}`);
      for (let i = 0; i < n; i++) {
        assert.ok(
          Object.is(index.values[i], args[i]) || (args[i] === 0 && index.values[i] === 0),
          `${String(args)} at ${i}`,
        );
      }
    }
  }
});

Deno.test("ArgsDecoder.decode leaves other keys to the byte index", () => {
  const index = new ArgsDecoder();
  const others: Array<{ args: unknown[]; thisArg?: unknown }> = [
    { args: [] },
    { args: [1n] },
    { args: [{ a: { b: 1 } }] },
    { args: [[1]] },
    { args: [Symbol.for("s")] },
    { args: [1, 2, 3, 4, 5] },
    { args: [1], thisArg: 1 },
  ];
  for (const [i, { args, thisArg }] of others.entries()) {
    const key = encodeKey(args, thisArg === undefined ? {} : { thisArg });
    assert.equal(index.decode(key, key.length), -1, `case ${i}`);
  }
  assert.equal(MAX_ARITY, 4);
  // Truncated and padded keys.
  const key = encodeKey(["abc", 1]);
  for (let len = 0; len < key.length; len++) assert.equal(index.decode(key, len), -1);
  const padded = new Uint8Array(key.length + 1);
  padded.set(key);
  assert.equal(index.decode(padded, padded.length), -1);
});

Deno.test("ArgsDecoder.decode reads a plain object of a numbered shape back as its token and sorted values", () => {
  const index = new ArgsDecoder();
  for (const o of OBJECTS) {
    const key = encodeKey([o]);
    const n = index.decode(key, key.length);
    const names = Object.keys(o).sort();
    assert.equal(n, names.length + 1, JSON.stringify(o));
    assert.ok(index.values[0] instanceof ShapeToken);
    for (const [j, name] of names.entries()) {
      const want = o[name];
      const got = index.values[j + 1];
      assert.ok(Object.is(got, want) || (want === 0 && got === 0), `${name} of ${String(names)}`);
    }
    // Truncated and padded.
    for (let len = 0; len < key.length; len++) assert.equal(index.decode(key, len), -1);
    const padded = new Uint8Array(key.length + 1);
    padded.set(key);
    assert.equal(index.decode(padded, padded.length), -1);
  }
  // One shape, one token; keys listed in another order are the same shape.
  const k1 = encodeKey([{ a: 1, b: "x" }]);
  index.decode(k1, k1.length);
  const token = index.values[0];
  const k2 = encodeKey([{ b: "x", a: 1 }]);
  index.decode(k2, k2.length);
  assert.equal(index.values[0], token);
  for (const o of BYTE_OBJECTS) {
    const key = encodeKey([o]);
    assert.equal(index.decode(key, key.length), -1, String(Object.keys(o)));
  }
  // An object among other arguments, or a shape number that no key set has.
  const two = encodeKey([{ a: 1 }, 1]);
  assert.equal(index.decode(two, two.length), -1);
  const unknown = Uint8Array.from([...k1.subarray(0, 3), 0xff, 0xff, ...k1.subarray(5)]);
  assert.equal(index.decode(unknown, unknown.length), -1);
});

Deno.test("TsSieveStore finds an entry by its key bytes and by its arguments alike", () => {
  const policies: Policy[] = [
    Strategy.Sieve,
    Strategy.Lru,
    Strategy.Mru,
    Strategy.Fifo,
    Strategy.Lfu,
    Strategy.S3Fifo,
  ];
  for (const policy of policies) {
    const s = new TsSieveStore({ maxSize: 1000, policy });
    const calls: unknown[][] = PRIMITIVES.flatMap((a) => [[a], [a, "k"], [1, a]]);
    for (const o of [...OBJECTS, ...BYTE_OBJECTS]) calls.push([o], [o, 1]);
    // Equal keys (0 and -0) keep the value set last.
    const last = new Map<string, number>();
    for (const [i, args] of calls.entries()) {
      const key = encodeKey(args);
      s.set(key, key.length, i, 0);
      last.set(key.join(), i);
    }
    s.validate();
    for (const args of calls) {
      const key = encodeKey(args);
      const want = last.get(key.join());
      assert.equal(s.get(key, key.length, 0), want, `${policy} ${Deno.inspect(args)}`);
      const byArgs = s.getArgs(args, 0);
      // S3-FIFO keeps every key in the byte index; an object is found by its values alone.
      if (policy === Strategy.S3Fifo || !byValues(args)) {
        assert.equal(byArgs, MISS);
      } else {
        assert.equal(byArgs, want, `${policy} by args ${Deno.inspect(args)}`);
      }
    }
    // 1 and "1", true and "true", null and undefined are different keys.
    assert.equal(s.getArgs(["true"], 0), policy === Strategy.S3Fifo ? MISS : ABSENT);
    assert.equal(s.getArgs([1n], 0), MISS);
    for (const args of calls) {
      const key = encodeKey(args);
      s.delete(key, key.length);
      s.validate();
      assert.equal(
        s.getArgs(args, 0),
        policy === Strategy.S3Fifo || !byValues(args) ? MISS : ABSENT,
      );
    }
    assert.equal(s.info().currentSize, 0);
  }
});

Deno.test("TsSieveStore evicts entries indexed by arguments and by bytes alike", () => {
  const s = new TsSieveStore({ maxSize: 3 });
  const keys = [[1, 2], ["a"], [{ o: 1 }], [true, null, undefined], [2.5]].map((a) => encodeKey(a));
  for (const [i, k] of keys.entries()) {
    s.set(k, k.length, i, 0);
    s.validate();
  }
  assert.equal(s.info().currentSize, 3);
  assert.equal(s.getArgs([1, 2], 0), ABSENT, "the oldest was evicted");
  assert.equal(s.getArgs([true, null, undefined], 0), 3);
  assert.equal(s.get(keys[2]!, keys[2]!.length, 0), 2);
  s.clear();
  s.validate();
  assert.equal(s.getArgs([2.5], 0), ABSENT);
});

Deno.test("getArgs counts a hit and an absent key, and leaves an expired entry to get", () => {
  const s = new TsSieveStore({ maxSize: 10, ttl: 100 });
  const k = encodeKey(["x", 1]);
  s.set(k, k.length, "v", 0);
  assert.equal(s.getArgs(["x", 1], 50), "v");
  assert.equal(s.getArgs(["x", 2], 50), ABSENT, "absent: a miss counted");
  assert.equal(s.getArgs(["x", 1], 100), MISS, "expired");
  assert.deepEqual(s.info(), { hits: 1, misses: 1, maxSize: 10, currentSize: 1 });
  assert.equal(s.get(k, k.length, 100), MISS);
  assert.equal(s.info().currentSize, 0);
});

Deno.test("set of a key that getArgs found absent takes its arguments: found by bytes and by arguments", () => {
  const s = new TsSieveStore({ maxSize: 2 });
  const calls: unknown[][] = [[1, 2], ["a", -0], [NaN], [3, 4]];
  for (const [i, args] of calls.entries()) {
    assert.equal(s.getArgs(args, 0), ABSENT);
    const key = encodeKey(args);
    s.set(key, key.length, i, 0, false, undefined, undefined, undefined, { ...held(key), args });
    s.validate();
  }
  // Two were evicted; the last two are found both ways.
  for (const [i, args] of calls.entries()) {
    const key = encodeKey(args);
    const want = i < 2 ? MISS : i;
    assert.equal(s.get(key, key.length, 0), want, String(args));
    assert.equal(s.getArgs(args, 0), i < 2 ? ABSENT : i, String(args));
  }
  // The key stored by another route between the lookup and the insert is replaced, not
  // stored twice.
  assert.equal(s.getArgs([5, 6], 0), ABSENT);
  const key = encodeKey([5, 6]);
  s.set(key, key.length, "first", 0);
  s.set(key, key.length, "second", 0, false, undefined, undefined, undefined, {
    ...held(key),
    args: [5, 6],
  });
  s.validate();
  assert.equal(s.getArgs([5, 6], 0), "second", "another array: decoded, found, replaced");
  const args78 = [7, 8];
  assert.equal(s.getArgs(args78, 0), ABSENT);
  const key78 = encodeKey(args78);
  s.set(key78, key78.length, "a", 0);
  s.set(key78, key78.length, "b", 0, false, undefined, undefined, undefined, {
    ...held(key78),
    args: args78,
  });
  s.validate();
  assert.equal(s.info().currentSize, 2);
  assert.equal(s.getArgs(args78, 0), "b");
  // After a clear, the absent arguments are forgotten.
  const args9 = [9];
  assert.equal(s.getArgs(args9, 0), ABSENT);
  s.clear();
  const key9 = encodeKey(args9);
  s.set(key9, key9.length, 9, 0, false, undefined, undefined, undefined, {
    ...held(key9),
    args: args9,
  });
  s.validate();
  assert.equal(s.get(key9, key9.length, 0), 9);
});

Deno.test("set takes the hash of arguments found absent from a copy of them, also once the array holds others", () => {
  // cache() looks a call of one to three arguments up in an array that it fills again on
  // the next call (src/call/cache.ts, `lending`), and inserts with a copy made at the miss;
  // the store keeps the values it found absent apart from that array.
  withDecodeCount((decoded) => {
    const s = new TsSieveStore({ maxSize: 10 });
    const lent: unknown[] = [1, "a"];
    assert.equal(s.getArgs(lent, 0), ABSENT);
    const copy = lent.slice();
    const k = encodeKey(copy);
    s.set(k, k.length, "1a", 0, false, undefined, undefined, undefined, { ...held(k), args: copy });
    assert.equal(decoded(), 0, "the same arguments in another array: their hash taken");
    lent[0] = 2;
    lent[1] = "b";
    assert.equal(s.getArgs(lent, 0), ABSENT);
    const copy2 = lent.slice();
    // Another call fills the array before this one's insert.
    lent[0] = 3;
    lent[1] = "c";
    const k2 = encodeKey(copy2);
    s.set(k2, k2.length, "2b", 0, false, undefined, undefined, undefined, {
      ...held(k2),
      args: copy2,
    });
    assert.equal(decoded(), 0, "the values found absent, kept apart from the array");
    s.validate();
    assert.equal(s.getArgs([1, "a"], 0), "1a");
    assert.equal(s.getArgs([2, "b"], 0), "2b");
    assert.equal(s.getArgs([3, "c"], 0), ABSENT);
    assert.equal(s.info().currentSize, 2);
  });
});

Deno.test("cache() inserts a miss found absent by its arguments without decoding its key", () =>
  onTsEngine(() => {
    withDecodeCount((decoded) => {
      const f = cache({ maxSize: 2 })((a: number, b: number) => a * 10 + b);
      for (let i = 0; i < 5; i++) assert.equal(f(i, 1), i * 10 + 1);
      assert.equal(decoded(), 0);
      assert.equal(f(4, 1), 41);
      assert.deepEqual(f.cacheInfo(), { hits: 1, misses: 5, maxSize: 2, currentSize: 2 });
      // Found by its bytes too.
      assert.equal(f.cacheGet(3, 1), 31);
      assert.equal(f.cacheGet(2, 1), undefined, "evicted");
    });
  }));

Deno.test("getArgsTagged: the epoch kept beside an entry answers its hits; its tags are checked once the clock moves", async () => {
  const s = new TsSieveStore({ maxSize: 10 });
  const clock = new ProcessTagClock();
  let checks = 0;
  const invalidSince = clock.invalidSince.bind(clock);
  clock.invalidSince = (tags, at) => {
    checks++;
    return invalidSince(tags, at);
  };
  const put = (args: unknown[], value: unknown, promised = false): void => {
    const key = encodeKey(args);
    const v = new Tagged(promised ? promisedEntry(value) : value, ["t:" + args[0]], clock.epoch);
    s.set(key, key.length, v, 0);
  };
  put([1], "one");
  put([2], "two");
  put([3], 3, true);
  const plainKey = encodeKey([4]);
  s.set(plainKey, plainKey.length, "plain", 0);
  for (let i = 0; i < 3; i++) {
    assert.equal(s.getArgsTagged([1], 0, clock), "one");
    assert.equal(s.getArgsTagged([4], 0, clock), "plain", "an entry without tags");
  }
  const p = s.getArgsTagged([3], 0, clock);
  assert.ok(p instanceof Promise);
  assert.equal(s.getArgsTagged([3], 0, clock), p, "the one Promise of the entry, every hit");
  assert.equal(await p, 3, "an async result: its Promise");
  assert.equal(s.getArgsTagged([5], 0, clock), ABSENT);
  assert.equal(checks, 0, "the epoch beside each entry answered");
  clock.invalidate(["t:2"]);
  assert.equal(s.getArgsTagged([1], 0, clock), "one");
  assert.equal(checks, 1, "the clock moved: its tags checked once");
  assert.equal(s.getArgsTagged([1], 0, clock), "one");
  assert.equal(checks, 1, "its epoch moved forward");
  assert.equal(s.getArgsTagged([2], 0, clock), INVALID);
  assert.equal(s.getArgsTagged([4], 0, clock), "plain");
  // Replaced without tags at the same slot: not answered by its old epoch.
  const key1 = encodeKey([1]);
  s.set(key1, key1.length, "untagged", 0);
  assert.equal(s.getArgsTagged([1], 0, clock), "untagged");
  // Tagged again with another value: the hit is the new value.
  put([1], "one again");
  assert.equal(s.getArgsTagged([1], 0, clock), "one again");
  assert.deepEqual(s.info(), { hits: 14, misses: 1, maxSize: 10, currentSize: 4 });
  s.validate();
});

Deno.test("cache() keeps the key contract on the TypeScript store's argument index", () =>
  onTsEngine(() => {
    let calls = 0;
    const f = cache({ maxSize: 100 })((a: unknown, b?: unknown) => {
      calls++;
      return [a, b];
    });
    f(1);
    f("1");
    f(-0);
    f(0);
    f(NaN);
    f(NaN);
    f("\ud800");
    f("\ufffd");
    f(1, undefined);
    f(1);
    f(null);
    f(undefined);
    assert.equal(calls, 9);
    assert.equal(f.cacheInfo().hits, 3);
    assert.equal(f.cacheInfo().currentSize, 9);
    f.cacheDelete(-0);
    f(0);
    assert.equal(calls, 10);
    f.cacheSet(["set"], 5, 6);
    assert.deepEqual(f(5, 6), ["set"]);
  }));

Deno.test("TsSieveStore's argument index agrees with a model under random sets, deletes and evictions", () => {
  let seed = 12345;
  const random = (n: number): number => {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    return (seed >>> 8) % n;
  };
  const domain: unknown[] = [0, 1, "1", "a", NaN, true, null, undefined, 2.5];
  // Objects, alone (by their values) or among other arguments (by their bytes).
  domain.push({ a: 1 }, { a: "1" }, { b: 2, a: 1 }, { a: 1, b: 2 }, { a: { b: 1 } });
  for (const policy of [Strategy.Sieve, Strategy.Lru, Strategy.Lfu]) {
    const s = new TsSieveStore({ maxSize: 20, policy });
    const model = new Map<string, number>();
    for (let step = 0; step < 3000; step++) {
      const n = 1 + random(3);
      const args = Array.from({ length: n }, () => domain[random(domain.length)]);
      const key = encodeKey(args);
      const id = key.join();
      const op = random(4);
      if (op === 0) {
        assert.equal(s.delete(key, key.length), model.delete(id));
      } else if (op === 1) {
        s.set(key, key.length, step, 0);
        model.set(id, step);
      } else {
        const got = op === 2 ? s.get(key, key.length, 0) : s.getArgs(args, 0);
        if (got !== MISS && got !== ABSENT) assert.equal(got, model.get(id), `step ${step}`);
        else if (op === 2) model.delete(id); // evicted
      }
      s.validate();
      // Evictions drop entries from the model as the store reports them gone.
      if (model.size > s.info().currentSize) {
        for (const k of [...model.keys()]) {
          const bytes = new Uint8Array(k.split(",").map(Number));
          if (s.peek(bytes, bytes.length, 0) === MISS) model.delete(k);
        }
      }
      assert.equal(model.size, s.info().currentSize, `step ${step}`);
    }
  }
});

/** Checks that the calls `a` and `b`, whose keys have one hash, each find their own entry
 * (by arguments and by bytes), under the policies indexed by arguments. */
function assertApart(a: unknown[], b: unknown[]): void {
  for (const policy of [Strategy.Sieve, Strategy.Lru, Strategy.Lfu] as Policy[]) {
    const s = new TsSieveStore({ maxSize: 8, policy });
    const ka = encodeKey(a);
    const kb = encodeKey(b);
    s.set(ka, ka.length, "a", 0);
    assert.equal(s.getArgs(b, 0), ABSENT);
    s.set(kb, kb.length, "b", 0);
    s.validate();
    assert.equal(s.getArgs(a, 0), "a");
    assert.equal(s.getArgs(b, 0), "b");
    assert.equal(s.get(ka, ka.length, 0), "a");
    assert.equal(s.get(kb, kb.length, 0), "b");
    assert.equal(s.delete(ka, ka.length), true);
    s.validate();
    assert.equal(s.getArgs(a, 0), ABSENT);
    assert.equal(s.getArgs(b, 0), "b");
    // A slot freed by one key and taken by the other answers only the other.
    for (const [gone, next] of [[b, a], [a, b]]) {
      const s2 = new TsSieveStore({ maxSize: 1, policy });
      const kg = encodeKey(gone!);
      const kn = encodeKey(next!);
      s2.set(kg, kg.length, "gone", 0);
      s2.set(kn, kn.length, "next", 0);
      assert.equal(s2.getArgs(gone!, 0), ABSENT);
      assert.equal(s2.getArgs(next!, 0), "next");
      s2.validate();
    }
  }
}

Deno.test("TsSieveStore tells keys of arguments of one hash apart, of one arity or two", async (t) => {
  // Birthday searches over `hashArgs`: two keys with the same hash must still each find
  // their own entry (a key of two arguments is kept apart from its array, side by side
  // with the other keys of two).
  // The first two keys made by `make` and `other` (an index each) with one hash, distinct.
  const collide = (make: (i: number) => unknown[], other: (i: number) => unknown[]) => {
    const seen = new Map<number, unknown[]>();
    for (let i = 0;; i++) {
      for (const args of [make(i), other(i)]) {
        const h = hashArgs(args, args.length);
        const prior = seen.get(h);
        if (prior !== undefined && String(prior) + prior.length !== String(args) + args.length) {
          return [prior, args];
        }
        seen.set(h, args);
      }
    }
  };
  const cases: Array<[string, unknown[][]]> = [
    ["one argument and two", collide((i) => [i], (i) => [i, -i - 1])],
    ["two and two, differing in the first", collide((i) => [i, 7], (i) => [-i - 1, 7])],
    ["two and two, differing in the second", collide((i) => [7, i], (i) => [7, -i - 1])],
    ["two and three", collide((i) => [i, 3], (i) => [i, 3, 3])],
    // Keys of three are kept side by side too, apart from the others.
    ["three and three, differing in the first", collide((i) => [i, 7, 8], (i) => [-i - 1, 7, 8])],
    ["three and three, differing in the second", collide((i) => [7, i, 8], (i) => [7, -i - 1, 8])],
    ["three and three, differing in the third", collide((i) => [7, 8, i], (i) => [7, 8, -i - 1])],
    ["three and four", collide((i) => [i, 3, 3], (i) => [i, 3, 3, 3])],
  ];
  for (const [name, [a, b]] of cases) {
    await t.step(name, () => {
      assert.equal(hashArgs(a!, a!.length), hashArgs(b!, b!.length));
      assert.notDeepEqual(a, b);
      assertApart(a!, b!);
    });
  }
});

Deno.test("getArgs by an object's values: getters read once on a hit, a getter that throws, a nested lookup, inherited keys", () => {
  const s = new TsSieveStore({ maxSize: 10 });
  const k = encodeKey([{ a: 1, b: 2 }]);
  s.set(k, k.length, "ab", 0);
  let reads = 0;
  const withGetter = {
    a: 1,
    get b(): number {
      reads++;
      return 2;
    },
  };
  assert.equal(s.getArgs([withGetter], 0), "ab");
  assert.equal(reads, 1, "read once on a hit");
  const throwing = {
    a: 1,
    get b(): number {
      throw new Error("boom");
    },
  };
  assert.throws(() => s.getArgs([throwing], 0), /boom/);
  assert.equal(s.getArgs([{ a: 1, b: 2 }], 0), "ab", "by values again after a getter threw");
  // A getter that looks an object up meanwhile: that one is left to its bytes.
  let inner: unknown;
  const nested = {
    a: 1,
    get b(): number {
      inner = s.getArgs([{ a: 1, b: 2 }], 0);
      return 2;
    },
  };
  assert.equal(s.getArgs([nested], 0), "ab");
  assert.equal(inner, MISS);
  // An enumerable key inherited from Object.prototype is not one of the object's keys.
  Object.defineProperty(Object.prototype, "zz", { value: 1, enumerable: true, configurable: true });
  try {
    assert.deepEqual(encodeKey([{ a: 1, b: 2 }]), k);
    assert.equal(s.getArgs([{ a: 1, b: 2 }], 0), "ab");
    assert.equal(s.getArgs([{ a: 1, b: 2, c: 3 }], 0), ABSENT, "a key more: another key");
  } finally {
    delete (Object.prototype as Record<string, unknown>).zz;
  }
  // An inherited key that the last shape lists: `{ a: 1 }` with `zz` inherited reads as
  // `{ a: 1, zz: 1 }` to `for-in`, and must still be the key `{ a: 1 }`.
  const kz = encodeKey([{ a: 1, zz: 1 }]);
  s.set(kz, kz.length, "azz", 0);
  assert.equal(s.getArgs([{ a: 1, zz: 1 }], 0), "azz", "the last shape is now { a, zz }");
  Object.defineProperty(Object.prototype, "zz", { value: 1, enumerable: true, configurable: true });
  try {
    assert.equal(s.getArgs([{ a: 1 }], 0), ABSENT, "not the entry of { a: 1, zz: 1 }");
  } finally {
    delete (Object.prototype as Record<string, unknown>).zz;
  }
  // Hits: the getter's, after the throw, the nested lookup's outer one, with `zz`, `{ a, zz }`.
  assert.deepEqual(s.info(), { hits: 5, misses: 2, maxSize: 10, currentSize: 2 });
  s.validate();
});

Deno.test("getArgs by an object's values: keys listed out of sorted order, compared with the last shape's", () => {
  const s = new TsSieveStore({ maxSize: 10 });
  const stored: Array<[Record<string, number>, string]> = [
    [{ a: 1, b: 2, c: 3 }, "a1b2c3"],
    [{ a: 3, b: 2, c: 1 }, "a3b2c1"],
    [{ a: 2, b: 3, c: 1 }, "a2b3c1"],
  ];
  for (const [o, v] of stored) {
    const k = encodeKey([o]);
    s.set(k, k.length, v, 0);
  }
  // Objects of one listing in a row: each after the first is read against the last shape.
  for (let i = 0; i < 3; i++) {
    assert.equal(s.getArgs([{ c: 3, a: 1, b: 2 }], 0), "a1b2c3");
    assert.equal(s.getArgs([{ c: 1, a: 3, b: 2 }], 0), "a3b2c1");
    assert.equal(s.getArgs([{ c: 1, a: 2, b: 3 }], 0), "a2b3c1");
    assert.equal(s.getArgs([{ c: 2, a: 1, b: 3 }], 0), ABSENT);
  }
  s.validate();
});

Deno.test("TsSieveStore tells keys of objects of one hash apart, and from keys of arguments", async (t) => {
  const index = new ArgsDecoder();
  /** The hash of a call of `args`, as the store indexes it by values. */
  const hashOf = (args: unknown[]): number => {
    const key = encodeKey(args);
    const n = index.decode(key, key.length);
    return index.values[0] instanceof ShapeToken
      ? hashObjectKey(index.values, n)
      : hashArgs(index.values, n);
  };
  const collide = (make: (i: number) => unknown[], other: (i: number) => unknown[]) => {
    const seen = new Map<number, unknown[]>();
    for (let i = 0;; i++) {
      for (const args of [make(i), other(i)]) {
        const h = hashOf(args);
        const prior = seen.get(h);
        if (prior !== undefined && JSON.stringify(prior) !== JSON.stringify(args)) {
          return [prior, args];
        }
        seen.set(h, args);
      }
    }
  };
  const cases: Array<[string, unknown[][]]> = [
    ["objects of one key (kept as a pair)", collide((i) => [{ a: i }], (i) => [{ a: -i - 1 }])],
    ["objects of two keys", collide((i) => [{ a: i, b: 7 }], (i) => [{ a: 7, b: -i - 1 }])],
    [
      "objects of two keys, differing in the second (kept as a triple)",
      collide((i) => [{ a: 7, b: i }], (i) => [{ a: 7, b: -i - 1 }]),
    ],
    [
      "an object of two keys and three arguments",
      collide((i) => [{ a: i, b: 7 }], (i) => [-i - 1, 7, 8]),
    ],
    ["an object and two arguments", collide((i) => [{ a: i }], (i) => [-i - 1, 7])],
    ["objects of two shapes", collide((i) => [{ a: i, b: 1 }], (i) => [{ a: -i - 1, c: 1 }])],
  ];
  for (const [name, [a, b]] of cases) {
    await t.step(name, () => {
      assert.equal(hashOf(a!), hashOf(b!));
      assertApart(a!, b!);
    });
  }
});

Deno.test("cache() on the TypeScript store looks an object argument up by its values", () =>
  onTsEngine(() => {
    withDecodeCount((decoded) => {
      let calls = 0;
      const f = cache({ maxSize: 100 })((o: Record<string, unknown>) => {
        calls++;
        return JSON.stringify(o);
      });
      assert.equal(f({ a: 1, b: "x" }), '{"a":1,"b":"x"}');
      assert.equal(decoded(), 0, "the insert takes the values its lookup read: no decode");
      assert.equal(f({ b: "x", a: 1 }), '{"a":1,"b":"x"}', "the same key in another order");
      assert.equal(decoded(), 0, "a hit by values decodes nothing");
      assert.equal(f({ a: "1", b: "x" }), '{"a":"1","b":"x"}', "1 and '1' differ");
      assert.equal(f({ a: -0 }), '{"a":0}');
      assert.equal(f({ a: 0 }), '{"a":0}', "0 and -0 are one key");
      assert.equal(decoded(), 0);
      assert.equal(f({ a: { n: 1 } }), '{"a":{"n":1}}', "a nested object: by its bytes");
      assert.equal(f({ a: { n: 1 } }), '{"a":{"n":1}}');
      assert.equal(calls, 4);
      assert.deepEqual(f.cacheInfo(), { hits: 3, misses: 4, maxSize: 100, currentSize: 4 });
      // The entry controls reach the entries found by values, by their bytes.
      assert.equal(f.cacheGet({ b: "x", a: 1 }), '{"a":1,"b":"x"}');
      f.cacheSet("set", { a: 2 });
      assert.equal(f({ a: 2 }), "set");
      assert.equal(f.cacheDelete({ a: 1, b: "x" }), true);
      assert.equal(f({ a: 1, b: "x" }), '{"a":1,"b":"x"}');
      assert.equal(calls, 5);
    });
  }));

Deno.test("KeyWriter.shapedCall writes the bytes of a call of the object, from its values", () => {
  const index = new ArgsDecoder();
  const w = new KeyWriter(4, false);
  for (const o of OBJECTS) {
    const key = encodeKey([o]);
    const n = index.decode(key, key.length);
    const values = index.values.slice(0, n);
    const len = w.shapedCall((values[0] as ShapeToken).number, values);
    assert.deepEqual(w.buf.slice(0, len), key, JSON.stringify(o));
  }
  assert.throws(() => new KeyWriter(64, true).shapedCall(0, []), /shared form/);
});

Deno.test("set takes an object's values from its lookup only with the key written from them", () =>
  withDecodeCount((decoded) => {
    const s = new TsSieveStore({ maxSize: 10 });
    const o = { a: 1, b: "x" };
    const args: unknown[] = [o];
    const w = new KeyWriter(4, false);
    assert.equal(s.getArgs(args, 0), ABSENT);
    assert.equal(s.writeAbsentKey(args, w), true);
    assert.deepEqual(w.buf.slice(0, w.len), encodeKey([o]));
    // The function changed the object and its call failed, so nothing was inserted; the
    // next insert that names it has other bytes (a cache keyed by `key`, a `cacheSet`).
    o.b = "y";
    const other = encodeKey([o]);
    s.set(other, other.length, "ay", 0, false, undefined, undefined, undefined, {
      ...held(other),
      args,
    });
    assert.equal(decoded(), 1, "other bytes: the key decoded");
    assert.equal(s.getArgs([{ a: 1, b: "y" }], 0), "ay");
    assert.equal(s.getArgs([{ a: 1, b: "x" }], 0), ABSENT);
    // Now the key written from the values read: they are taken, with no decode.
    assert.equal(s.writeAbsentKey([{ a: 1, b: "x" }], w), false, "another object");
    const lookedUp = [{ a: 1, b: "x" }];
    assert.equal(s.getArgs(lookedUp, 0), ABSENT);
    assert.equal(s.writeAbsentKey(lookedUp, w), true);
    const written = w.buf.slice(0, w.len);
    s.set(written, written.length, "ax", 0, false, undefined, undefined, undefined, {
      ...held(written),
      args: lookedUp,
    });
    assert.equal(decoded(), 1, "the written key: no decode");
    assert.equal(s.getArgs([{ b: "x", a: 1 }], 0), "ax");
    assert.equal(s.get(written, written.length, 0), "ax");
    // A key written, then another call found absent before the insert: the written bytes no
    // longer belong to the values kept, so the insert decodes them.
    const third = [{ a: 2, b: "z" }];
    assert.equal(s.getArgs(third, 0), ABSENT);
    assert.equal(s.writeAbsentKey(third, w), true);
    const thirdKey = w.buf.slice(0, w.len);
    assert.equal(s.getArgs([5, 6], 0), ABSENT);
    const before = decoded();
    s.set(thirdKey, thirdKey.length, "az", 0, false, undefined, undefined, undefined, {
      ...held(thirdKey),
      args: third,
    });
    assert.equal(decoded(), before + 1, "bytes written for other values than those kept: decoded");
    assert.equal(s.getArgs([{ a: 2, b: "z" }], 0), "az");
    assert.equal(s.getArgs([5, 6], 0), ABSENT, "not stored under the call found absent last");
    s.validate();
  }));

Deno.test("TsSieveStore with keys in the shared form leaves objects to their bytes", () => {
  const s = new TsSieveStore({ maxSize: 10, memoryKeys: false });
  const o = { a: 1, b: "x" };
  const key = encodeKey([o], { shared: true });
  s.set(key, key.length, "ab", 0);
  assert.equal(s.getArgs([o], 0), MISS, "not looked up by values");
  assert.equal(s.get(key, key.length, 0), "ab");
  assert.equal(s.getArgs([1, "x"], 0), ABSENT, "primitives still are");
  s.validate();
});

Deno.test("cache() on the TypeScript store reads an object argument once on a miss and once on a hit", () =>
  onTsEngine(() => {
    let reads = 0;
    const arg = (v: number) => ({
      a: "k",
      get b(): number {
        reads++;
        return v;
      },
    });
    const f = cache({ maxSize: 10 })((o: { a: string; b: number }) => `${o.a}${o.b}`);
    assert.equal(f(arg(1)), "k1");
    assert.equal(reads, 2, "once for the key, once by the function");
    assert.equal(f(arg(1)), "k1");
    assert.equal(reads, 3, "a hit: once");
    assert.equal(f({ b: 1, a: "k" }), "k1", "the key of the values read");
    assert.deepEqual(f.cacheInfo(), { hits: 2, misses: 1, maxSize: 10, currentSize: 1 });
  }));

Deno.test("cache() with a remote tier on the TypeScript store hits an object argument locally", () =>
  onTsEngine(async () => {
    let calls = 0;
    const f = cache({ name: "ts-objects", remote: fakeTier(new FakeServer()) })(
      async (o: { a: number; b: string }) => {
        calls++;
        await null;
        return `${o.a}${o.b}`;
      },
    );
    assert.equal(await f({ a: 1, b: "x" }), "1x");
    assert.equal(await f({ b: "x", a: 1 }), "1x");
    assert.equal(calls, 1);
    const info = f.cacheInfo();
    assert.equal(info.hits, 1, "the second call: a hit of the local tier");
    assert.equal(info.remoteHits, 0);
    f[Symbol.dispose]();
  }));
