import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import {
  decodeValue,
  decodeValueIn,
  encodeValue,
  isPromised,
  PROMISED_FLAG,
} from "../src/codec/value_codec.ts";
import * as v1 from "./fixtures/value_codec_v1.ts";

/** Encodes, copies the bytes out of the reused buffer as a store would, and decodes. */
function roundTrip(value: unknown, promised = false): unknown {
  const bytes = encodeValue(value, promised).slice();
  assert.equal(isPromised(bytes), promised);
  return decodeValue(bytes);
}

function tagOf(value: unknown): number {
  return encodeValue(value)[0]! & 0x7f;
}

function latin1(n: number): string {
  let s = "";
  for (let i = 0; i < n; i++) s += String.fromCharCode(32 + (i % 224));
  return s;
}

Deno.test("encodeValue() round-trips primitives exactly", async (t) => {
  await t.step("undefined, null, booleans", () => {
    for (const v of [undefined, null, true, false]) assert.equal(roundTrip(v), v);
    assert.deepEqual([undefined, null, false, true].map(tagOf), [0, 1, 2, 3]);
  });

  await t.step("numbers, including -0, NaN and infinities", () => {
    const numbers = [
      0,
      -0,
      NaN,
      Infinity,
      -Infinity,
      1,
      -1,
      0.1,
      Number.MAX_VALUE,
      Number.MIN_VALUE,
      Number.MAX_SAFE_INTEGER + 2,
      -1e-300,
    ];
    for (const n of numbers) {
      assert.ok(Object.is(roundTrip(n), n), `${n}`);
      assert.equal(tagOf(n), 4);
      assert.equal(encodeValue(n).length, 9);
    }
    assert.ok(Object.is(roundTrip(-0), -0));
  });

  await t.step("bigint goes through the binary item codec", () => {
    for (const b of [0n, -1n, 2n ** 200n, -(2n ** 64n), -0n]) assert.equal(roundTrip(b), b);
    assert.equal(tagOf(1n), 13);
  });
});

Deno.test("encodeValue() round-trips every string losslessly", async (t) => {
  await t.step("empty, short Latin-1, short non-Latin-1", () => {
    for (const s of ["", "a", "héllo wörld ÿ\u0080", "\u0000\u00ff", "日本語", "emoji 😀"]) {
      assert.equal(roundTrip(s), s);
    }
    assert.equal(tagOf(""), 5);
    assert.equal(tagOf("héllo"), 5);
    assert.equal(tagOf("日本語"), 6);
  });

  await t.step("lone surrogates do not collide with U+FFFD", () => {
    const a = encodeValue("\ud800").slice();
    const b = encodeValue("\ufffd").slice();
    assert.notDeepEqual(a, b);
    assert.equal(decodeValue(a), "\ud800");
    assert.equal(decodeValue(b), "\ufffd");
    const odd = [
      "\udc00",
      "x\ud800y",
      "\ud83d",
      "😀\ude00",
      "\ude00\ud83d",
      "a".repeat(100) + "\ud800",
    ];
    for (const s of odd) assert.equal(roundTrip(s), s);
    assert.equal(tagOf("\ud800"), 7);
  });

  await t.step("a leading byte order mark is kept", () => {
    for (const s of ["\ufeff", "\ufeffabc", "\ufeff" + "日本".repeat(20)]) {
      assert.equal(roundTrip(s), s);
    }
  });

  await t.step("long strings (> 64 KiB)", () => {
    const ascii = "abcdefgh".repeat(20_000);
    const mixed = "añ日😀".repeat(30_000);
    const lone = "ab\ud800".repeat(30_000);
    const wide = latin1(100_000);
    for (const s of [ascii, mixed, lone, wide]) {
      assert.ok(s.length > 65536);
      assert.equal(roundTrip(s), s);
    }
    assert.equal(tagOf(ascii), 6);
    assert.equal(tagOf(lone), 7);
  });

  await t.step("every Latin-1 code unit and lengths around the short-string limit", () => {
    for (let n = 0; n <= 40; n++) assert.equal(roundTrip(latin1(n)), latin1(n));
    let all = "";
    for (let c = 0; c < 256; c++) all += String.fromCharCode(c);
    assert.equal(roundTrip(all), all);
  });
});

Deno.test("encodeValue() round-trips Uint8Array", async (t) => {
  await t.step("empty, small, large, views", () => {
    const large = new Uint8Array(3 << 20).map((_, i) => i * 7);
    const view = new Uint8Array([9, 1, 2, 3, 9]).subarray(1, 4);
    for (const u of [new Uint8Array(0), new Uint8Array([1, 2, 255]), large, view]) {
      const back = roundTrip(u);
      assert.ok(back instanceof Uint8Array);
      assert.deepEqual(back, u);
      assert.equal((back as Uint8Array).byteOffset, 0);
    }
    assert.equal(tagOf(new Uint8Array(1)), 8);
  });

  await t.step("the decoded bytes are a copy", () => {
    const bytes = encodeValue(new Uint8Array([1, 2, 3])).slice();
    const back = decodeValue(bytes) as Uint8Array;
    bytes.fill(0);
    assert.deepEqual(back, new Uint8Array([1, 2, 3]));
    assert.notEqual(back.buffer, bytes.buffer);
  });
});

Deno.test("encodeValue() round-trips arrays", async (t) => {
  await t.step("flat arrays of primitives", () => {
    const arrays: unknown[][] = [
      [],
      [1, 2, 3],
      [undefined, null, true, false, -0, NaN, "", "a", "日本", "\ud800", "x".repeat(70_000)],
      [new Uint8Array([1, 2]), new Uint8Array(0), "z"],
      Array.from({ length: 10_000 }, (_, i) => i % 3 ? i : `s${i}`),
      [0, 127, 128, -1, 2 ** 31 - 1, -(2 ** 31), 2 ** 31, 0.5, Infinity, -Infinity],
    ];
    for (const a of arrays) {
      assert.equal(tagOf(a), 13);
      assert.deepStrictEqual(roundTrip(a), a);
    }
  });

  await t.step("holes, nesting and subclasses", () => {
    // deno-lint-ignore no-sparse-arrays
    const sparse = [1, , 3];
    class MyArray extends Array {}
    const sub = MyArray.from([1, 2]);
    const arrays: unknown[][] = [[[1], 2], [{ a: 1 }], sparse, [[1], 2n], [1n], [new Date(0)]];
    for (const a of [...arrays, sub]) {
      assert.equal(tagOf(a), 13);
      assert.deepStrictEqual(roundTrip(a), a === sub ? [1, 2] : a);
    }
    assert.ok(!(1 in (roundTrip(sparse) as unknown[])));
    assert.equal(Object.getPrototypeOf(roundTrip(sub)), Array.prototype);
  });

  await t.step("very sparse arrays cost their elements, not their length", () => {
    const huge: unknown[] = [];
    huge[1_000_000_000] = "last";
    huge[5] = { five: 5 };
    const bytes = encodeValue(huge).slice();
    assert.ok(bytes.length < 64, `${bytes.length} bytes`);
    const back = decodeValue(bytes) as unknown[];
    assert.equal(back.length, 1_000_000_001);
    assert.deepStrictEqual(Object.keys(back), ["5", "1000000000"]);
    assert.deepStrictEqual(back[5], { five: 5 });
    assert.equal(back[1_000_000_000], "last");
    // Holes at the start, the end, and runs in between.
    // deno-lint-ignore no-sparse-arrays
    const runs = [, , 1, , , , 2, ,];
    assert.deepStrictEqual(roundTrip(runs), runs);
    assert.equal((roundTrip(runs) as unknown[]).length, runs.length);
  });
});

Deno.test("encodeValue() writes plain objects and arrays with the binary item codec", async (t) => {
  await t.step("trees of plain objects, arrays and JSON leaves", () => {
    const values: object[] = [
      {},
      [[]],
      { id: 7, name: "user7", active: true, score: 1.75, tags: ["a", "b"], none: null },
      [{ a: [1, [2, { b: "\ud800 lone" }]] }, "x"],
      { "\ufeffbom": "\ufeff", "": 0, 10: "ten", 2: "two" },
      Array.from({ length: 100 }, (_, i) => ({ i })),
    ];
    for (const v of values) {
      assert.equal(tagOf(v), 13, JSON.stringify(v));
      const back = roundTrip(v);
      assert.deepStrictEqual(back, v);
      assert.deepStrictEqual(Object.keys(back as object), Object.keys(v));
    }
  });

  await t.step("an array of records writes the names once", () => {
    const rows = (n: number): object[] =>
      Array.from({ length: n }, (_, i) => ({ id: i, name: `n${i % 10}`, active: true }));
    const one = encodeValue(rows(1)).length;
    const hundred = encodeValue(rows(100)).length;
    // Each further record: the shape index and three small values, no names.
    assert.ok(hundred - one <= 99 * 8, `${one} and ${hundred} bytes`);
    assert.deepStrictEqual(roundTrip(rows(100)), rows(100));
  });

  await t.step("what JSON would change comes back exactly", () => {
    const shared = { s: 1 };
    const cyclic: Record<string, unknown> = { a: 1 };
    cyclic.self = cyclic;
    const wide = Array.from({ length: 64 }, (_, i) => ({ i }));
    const values: object[] = [
      { z: -0 },
      { n: NaN },
      { n: Infinity },
      { u: undefined },
      [[undefined]],
      Object.assign(Object.create(null), { a: 1 }),
      [shared, shared],
      cyclic,
      wide,
      { d: new Date(0) },
      { m: new Map([[1, 2]]) },
      { b: 1n },
    ];
    for (const v of values) {
      assert.equal(tagOf(v), 13);
      assert.deepStrictEqual(roundTrip(v), v);
    }
    const back = roundTrip([shared, shared]) as object[];
    assert.equal(back[0], back[1], "a shared reference stays shared");
  });

  await t.step("what cannot be stored is still a TypeError", () => {
    assert.throws(() => encodeValue({ [Symbol("s")]: 1, a: 1 }), TypeError);
    assert.throws(() => encodeValue({ f: () => 1 }), TypeError);
    // A non-enumerable symbol key is not stored, and not refused.
    const hidden = Object.defineProperty({ a: 1 }, Symbol("h"), { value: 1 });
    assert.deepStrictEqual(roundTrip(hidden), { a: 1 });
  });

  await t.step("an own __proto__ key (JSON.parse of untrusted input) is kept", () => {
    // It used to be a TypeError (devalue refuses such keys), so a cached endpoint failed
    // on input like this although its function ran fine.
    for (const text of ['{"__proto__": {"admin": true}, "user": "bob"}', '{"__proto__": 1}']) {
      const v = JSON.parse(text);
      assert.equal(tagOf(v), 13);
      for (let i = 0; i < 40; i++) {
        // Past the decoder's threshold for building objects of a frequent shape too.
        const back = roundTrip(v) as Record<string, unknown>;
        assert.deepEqual(Object.keys(back), Object.keys(v));
        assert.equal(Object.getPrototypeOf(back), Object.prototype);
        assert.equal(back.admin, undefined, "the key never becomes the prototype");
        assert.deepStrictEqual(back, v);
      }
    }
    const v = JSON.parse('{"__proto__": {"__proto__": {"x": 1}}, "d": 1}');
    v.d = -0;
    v.m = new Map([[1, { __proto__: null, y: 2 }]]);
    const back = roundTrip(v) as Record<string, unknown>;
    assert.deepEqual(Object.keys(back), ["__proto__", "d", "m"]);
    assert.ok(Object.is(back.d, -0));
    assert.equal(Object.getPrototypeOf(back), Object.prototype);
    assert.deepEqual(Object.keys(back.__proto__ as object), ["__proto__"]);
    assert.deepStrictEqual(back, v);
    const bare = Object.create(null);
    Object.defineProperty(bare, "__proto__", { value: 5, enumerable: true, writable: true });
    const bareBack = roundTrip(bare) as Record<string, unknown>;
    assert.equal(Object.getPrototypeOf(bareBack), null);
    assert.deepStrictEqual(Object.keys(bareBack), ["__proto__"]);
    assert.equal(bareBack.__proto__, 5);
  });

  await t.step("keys that Object.prototype has are own properties, whatever it holds", () => {
    const v = { constructor: "c", toString: 1, hasOwnProperty: [2], valueOf: null };
    for (let i = 0; i < 40; i++) assert.deepStrictEqual(roundTrip(v), v);
    // An accessor added to Object.prototype does not see decoded values, on either path
    // (objects of a shape seen less and more than the decoder's threshold).
    const calls: unknown[] = [];
    Object.defineProperty(Object.prototype, "planted", {
      set(x: unknown): void {
        calls.push(x);
      },
      get(): unknown {
        return "inherited";
      },
      configurable: true,
    });
    try {
      for (let i = 0; i < 40; i++) {
        const back = roundTrip({ planted: i, other: 1 }) as Record<string, unknown>;
        assert.ok(Object.hasOwn(back, "planted"));
        assert.equal(back.planted, i);
      }
      assert.deepStrictEqual(calls, []);
    } finally {
      delete (Object.prototype as Record<string, unknown>).planted;
    }
  });

  await t.step("a getter is read once: what is stored is what it returned", () => {
    let reads = 0;
    const v = {
      get x(): number | undefined {
        return reads++ === 0 ? 1 : undefined;
      },
      list: [1, 2],
    };
    assert.deepEqual(roundTrip(v), { x: 1, list: [1, 2] });
    assert.equal(reads, 1);
    let n = 0;
    const arr = [{
      get y(): unknown {
        return n++ === 0 ? "first" : -0;
      },
    }];
    assert.deepStrictEqual(roundTrip(arr), [{ y: "first" }]);
    let m = 0;
    const elements = [1, 2];
    Object.defineProperty(elements, 1, {
      get(): number {
        return ++m;
      },
      enumerable: true,
    });
    assert.deepStrictEqual(roundTrip(elements), [1, 1]);
    assert.equal(m, 1, "an array element's getter is read once too");
  });

  await t.step("a JSON payload (tag 11) that is not an object or array is refused", () => {
    for (const text of ["1", '"s"', "null", "{", ""]) {
      const bytes = new Uint8Array([11, ...new TextEncoder().encode(text)]);
      assert.throws(() => decodeValue(bytes), RangeError, text);
    }
  });
});

Deno.test("decodeValue() reads what the previous codec wrote (tags 9, 10, 11)", () => {
  const shared = { s: 1 };
  const cyclic: Record<string, unknown> = { a: 1 };
  cyclic.self = cyclic;
  const values: unknown[] = [
    [1, "a", null, undefined, -0, NaN, new Uint8Array([1])],
    { id: 7, name: "user7", active: true, score: 1.75, tags: ["a", "b"] },
    [{ a: [1, [2, { b: "\ud800 lone" }]] }, "x"],
    JSON.parse('{"__proto__": {"admin": true}, "user": "bob"}'),
    { m: new Map<unknown, unknown>([["k", new Set([1])]]), d: new Date(5), b: -(2n ** 70n) },
    [shared, shared, cyclic],
    Object.assign(Object.create(null), { n: 1 }),
    { t: new Float64Array([1, -0, NaN]), r: /x+/g, u: new URL("https://x.test/") },
  ];
  const seen = new Set<number>();
  for (const v of values) {
    const bytes = v1.encodeValue(v).slice();
    seen.add(bytes[0]! & 0x7f);
    const back = decodeValue(bytes);
    assert.ok(isDeepStrictEqual(back, v), Deno.inspect(v));
    assert.ok(isDeepStrictEqual(back, v1.decodeValue(bytes)));
    const promised = v1.encodeValue(v, true).slice();
    assert.equal(isPromised(promised), true);
    assert.ok(isDeepStrictEqual(decodeValue(promised), v));
  }
  assert.deepStrictEqual([...seen].sort((a, b) => a - b), [9, 10, 11]);
});

Deno.test("decodeValue() refuses corrupt binary items with RangeError, never another error", () => {
  const cyclic: Record<string, unknown> = { x: "é日😀\ud800" };
  cyclic.c = cyclic;
  const values: unknown[] = [
    { id: 1, name: "n", tags: ["a", "b"], nested: { m: new Map([[1, new Set([2])]]) } },
    // deno-lint-ignore no-sparse-arrays
    [1, , 3, { d: new Date(1), big: -123n, re: /a/g, u: new URL("https://x.test/") }],
    { t: new Int16Array([1, 2]), v: new DataView(new ArrayBuffer(4)), b: new ArrayBuffer(3) },
    cyclic,
  ];
  for (const v of values) {
    const bytes = encodeValue(v).slice();
    // Every strict prefix: the items are self-delimiting, so none is complete.
    for (let cut = 0; cut < bytes.length; cut++) {
      assert.throws(() => decodeValue(bytes.subarray(0, cut)), RangeError, `cut at ${cut}`);
    }
    // Trailing bytes are refused too.
    assert.throws(() => decodeValue(new Uint8Array([...bytes, 0])), RangeError);
    // Any byte changed: a RangeError or some value, never another exception or a hang.
    for (let i = 1; i < bytes.length; i++) {
      for (const delta of [1, 0x80, 0xff]) {
        const bad = bytes.slice();
        bad[i] = (bad[i]! + delta) & 0xff;
        try {
          decodeValue(bad);
        } catch (e) {
          assert.ok(e instanceof RangeError, `byte ${i} + ${delta}: ${e}`);
        }
      }
    }
  }
  // Unknown flags (a later version's) are refused.
  const ok = encodeValue([1]).slice();
  ok[1] = 0x80;
  assert.throws(() => decodeValue(ok), RangeError);
});

Deno.test("decodeValueIn() uses the decoder's shape cache without mixing shapes up", () => {
  // Many shapes, more than the decoder's 256 cache slots, several times over: each object
  // comes back with its own keys, whatever clashes in the cache.
  const buf = new Uint8Array(1 << 12);
  const view = new DataView(buf.buffer);
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 600; i++) {
      const v = { [`k${i}`]: i, [`k${(i * 7) % 600}x`]: [i], same: "s" };
      const bytes = encodeValue(v);
      buf.set(bytes);
      assert.deepStrictEqual(decodeValueIn(buf, bytes.length, view), v);
      assert.deepStrictEqual(decodeValue(bytes.slice()), v);
    }
  }
});

Deno.test("encodeValue() round-trips structured values with their types", async (t) => {
  await t.step("nested objects and arrays", () => {
    const v = {
      a: 1,
      b: "two",
      c: [1, [2, [3, { d: null, e: undefined }]]],
      "\ud800key": "\udc00value",
      "": { deep: { deeper: { deepest: [true, false, -0] } } },
    };
    assert.deepEqual(roundTrip(v), v);
  });

  await t.step("Map, Set, Date, bigint, RegExp", () => {
    const v = {
      map: new Map<unknown, unknown>([["a", 1], [2, { b: 3 }], ["\ud800", new Set(["\udfff"])]]),
      set: new Set<unknown>([1, "a", { x: 1 }, [2]]),
      date: new Date(1_700_000_000_123),
      big: 123_456_789_012_345_678_901_234_567_890n,
      re: /a\ud800+b/giu,
    };
    const back = roundTrip(v) as typeof v;
    assert.deepEqual(back, v);
    assert.ok(back.map instanceof Map);
    assert.ok(back.set instanceof Set);
    assert.ok(back.date instanceof Date);
    assert.equal(typeof back.big, "bigint");
    assert.ok(back.re instanceof RegExp);
    for (const top of [v.map, v.set, v.date, v.re]) assert.deepEqual(roundTrip(top), top);
  });

  await t.step("an invalid Date stays invalid", () => {
    const back = roundTrip(new Date(NaN));
    assert.ok(back instanceof Date);
    assert.ok(Number.isNaN(back.getTime()));
  });

  await t.step("typed arrays, ArrayBuffer and DataView", () => {
    const values = [
      new Int8Array([-1, 2]),
      new Uint8ClampedArray([0, 255]),
      new Int16Array([-300, 300]),
      new Uint16Array([65535]),
      new Int32Array([-(2 ** 31)]),
      new Uint32Array([2 ** 32 - 1]),
      new Float32Array([1.5, -0, NaN]),
      new Float64Array([Math.PI, -0, NaN, Infinity]),
      new BigInt64Array([-(2n ** 63n)]),
      new BigUint64Array([2n ** 64n - 1n]),
      new Float64Array(new ArrayBuffer(64), 8, 3),
      new Uint8Array([1, 2, 3]).buffer,
      new DataView(new Uint8Array([1, 2, 3, 4]).buffer, 1, 2),
    ];
    for (const v of values) {
      const back = roundTrip({ v }) as { v: unknown };
      assert.deepEqual(back.v, v);
      assert.equal(Object.getPrototypeOf(back.v), Object.getPrototypeOf(v));
    }
  });

  await t.step("null-prototype objects keep their null prototype", () => {
    const np = Object.assign(Object.create(null), { a: 1, nested: { b: 2 } });
    const back = roundTrip({ np }) as { np: object };
    assert.deepEqual(back.np, np);
    assert.equal(Object.getPrototypeOf(back.np), null);
    assert.equal(Object.getPrototypeOf(roundTrip(np)), null);
  });

  await t.step("cycles and shared references are kept", () => {
    const shared = { s: 1 };
    const cyclic: Record<string, unknown> = { shared, again: shared };
    cyclic.self = cyclic;
    const back = roundTrip(cyclic) as Record<string, unknown>;
    assert.equal(back.self, back);
    assert.equal(back.shared, back.again);
    assert.notEqual(back.shared, shared);
  });

  await t.step("boxed primitives and URL", () => {
    const v = [new Number(1), new String("s"), new Boolean(false), new URL("https://x.test/a?b")];
    assert.deepEqual(roundTrip(v), v);
  });

  await t.step("large structured values", () => {
    const v = { rows: Array.from({ length: 20_000 }, (_, i) => ({ i, s: `row ${i} 日本` })) };
    assert.deepEqual(roundTrip(v), v);
  });
});

Deno.test("encodeValue() sets the promised flag", () => {
  const values = [undefined, null, true, 1, "s", "日本語です", "\ud800", new Uint8Array(2), [1], {
    a: 1,
  }];
  for (const v of values) {
    assert.equal(isPromised(encodeValue(v, true)), true);
    assert.equal(isPromised(encodeValue(v, false)), false);
    assert.equal(isPromised(encodeValue(v)), false);
    assert.deepEqual(roundTrip(v, true), v);
  }
  assert.equal(encodeValue(null, true)[0], PROMISED_FLAG | 1);
  assert.equal(isPromised(new Uint8Array(0)), false);
});

Deno.test("encodeValue() makes copies, not aliases", async (t) => {
  await t.step("mutating the original after encoding changes nothing", () => {
    const original = { list: [1, 2], map: new Map([["k", { v: 1 }]]), bytes: new Uint8Array([1]) };
    const bytes = encodeValue(original).slice();
    original.list.push(3);
    original.map.get("k")!.v = 2;
    original.bytes[0] = 9;
    assert.deepEqual(decodeValue(bytes), {
      list: [1, 2],
      map: new Map([["k", { v: 1 }]]),
      bytes: new Uint8Array([1]),
    });
  });

  await t.step("mutating a decoded value changes nothing", () => {
    for (const original of [[1, 2], { a: [1] }, new Uint8Array([1, 2])]) {
      const bytes = encodeValue(original).slice();
      const first = decodeValue(bytes) as Record<number | string, unknown>;
      first[0] = 99;
      (first as { a?: unknown }).a = "changed";
      assert.deepEqual(decodeValue(bytes), original);
      assert.notEqual(decodeValue(bytes), decodeValue(bytes));
    }
  });

  await t.step("decoding does not alias the input buffer", () => {
    const buffer = new Uint8Array(1 << 16);
    for (const v of [new Uint8Array([5, 6]), [new Uint8Array([7])], "a string", { o: [1] }]) {
      const encoded = encodeValue(v);
      buffer.set(encoded);
      const view = buffer.subarray(0, encoded.length);
      const back = decodeValue(view);
      buffer.fill(0);
      assert.deepEqual(back, v);
    }
  });

  await t.step("the result of encodeValue is reused by the next call", () => {
    const first = encodeValue("first value");
    const kept = first.slice();
    encodeValue("other value");
    assert.notDeepEqual(first, kept);
    assert.equal(decodeValue(kept), "first value");
  });

  await t.step("a reentrant call does not clobber the outer encoding", () => {
    let inner: Uint8Array | undefined;
    const v = {
      a: "before",
      get g(): number {
        inner = encodeValue("inner value that is rather long", true).slice();
        return 1;
      },
      z: "after",
    };
    const bytes = encodeValue(v).slice();
    assert.deepEqual(decodeValue(bytes), { a: "before", g: 1, z: "after" });
    assert.equal(decodeValue(inner!), "inner value that is rather long");

    const arr = ["x", "y"];
    Object.defineProperty(arr, 1, {
      get(): string {
        encodeValue("clobber clobber clobber clobber");
        return "y";
      },
    });
    assert.deepEqual(decodeValue(encodeValue(arr).slice()), ["x", "y"]);
  });
});

Deno.test("encodeValue() throws TypeError for values it cannot store", async (t) => {
  class Point {
    constructor(public x: number) {}
    norm(): number {
      return Math.abs(this.x);
    }
  }
  const cases: [string, unknown, RegExp][] = [
    ["function", () => 1, /unsupported function at top level/],
    ["nested function", { a: { f(): void {} } }, /unsupported function at value\.a\.f/],
    ["symbol", Symbol("s"), /unsupported symbol/],
    ["symbol in an array", [1, Symbol("s")], /unsupported symbol at value\[1\]/],
    ["symbol keys", { [Symbol("k")]: 1 }, /object with symbol keys/],
    ["Promise", { p: Promise.resolve(1) }, /Promise or thenable at value\.p/],
    ["thenable", { then(): void {} }, /unsupported/],
    ["WeakMap", { m: new WeakMap() }, /unsupported WeakMap at value\.m/],
    ["WeakSet", new WeakSet(), /unsupported WeakSet/],
    ["WeakRef", new WeakRef({}), /unsupported WeakRef/],
    ["class instance", { p: new Point(1) }, /class instance \(Point\) at value\.p/],
    ["Error", new Error("e"), /unsupported Error/],
    ["custom prototype", Object.create({ inherited: 1 }), /unsupported/],
    ["Map value", new Map([["k", () => 1]]), /unsupported function/],
    ["Set value", new Set([Symbol("s")]), /unsupported symbol/],
  ];
  for (const [name, value, message] of cases) {
    await t.step(name, () => {
      assert.throws(() => encodeValue(value), (e: unknown) => {
        assert.ok(e instanceof TypeError, `${name}: ${e}`);
        assert.match(e.message, /^Cannot serialize value: /);
        assert.match(e.message, message);
        return true;
      });
    });
  }

  await t.step("too deeply nested", () => {
    let deep: unknown = 1;
    for (let i = 0; i < 200_000; i++) deep = { deep };
    assert.throws(() => encodeValue(deep), TypeError);
  });

  await t.step("encoding still works after a failure", () => {
    assert.throws(() => encodeValue([1, "a", () => 1]), TypeError);
    assert.deepEqual(roundTrip([1, "a"]), [1, "a"]);
    assert.deepEqual(roundTrip({ ok: true }), { ok: true });
  });
});

Deno.test("decodeValue() rejects malformed bytes with RangeError", () => {
  const bad = [
    new Uint8Array(0),
    new Uint8Array([4, 0, 0]), // truncated number
    new Uint8Array([7, 0]), // odd UTF-16 payload
    new Uint8Array([9, 2, 0, 0, 0, 4]), // truncated array
    new Uint8Array([9, 1, 0, 0, 0, 5, 9, 0, 0, 0]), // string longer than the input
    new Uint8Array([9, 1, 0, 0, 0, 10, 0, 0, 0, 0]), // structured tag inside an array
    new Uint8Array([0x7f]),
    new Uint8Array([10, 0x5b]), // structured: "[" alone
    new Uint8Array([10, ...new TextEncoder().encode('[{"a":7}]')]), // dangling index
  ];
  for (const bytes of bad) assert.throws(() => decodeValue(bytes), RangeError, `${bytes}`);
});

Deno.test("encodeValue() gives each encode's own bytes, for equal lengths and after the buffer grew", () => {
  // Two values of the same encoded length, one after the other: the second encode's bytes are
  // its own (the first's view, if kept, shows them too: valid until the next call).
  const a = encodeValue({ id: 1, name: "ann" });
  const aLength = a.length;
  assert.deepEqual(decodeValue(a), { id: 1, name: "ann" });
  const b = encodeValue({ id: 2, name: "bob" });
  assert.equal(b.length, aLength);
  assert.deepEqual(decodeValue(b), { id: 2, name: "bob" });
  // A value larger than the module buffer makes it grow; later encodes of the earlier length
  // write into, and view, the new buffer.
  const big = "x".repeat(5000);
  assert.equal(decodeValue(encodeValue(big)), big);
  for (const v of [{ id: 3, name: "cy" + "d" }, { id: 4, name: "dan" }, 7, "seven"]) {
    assert.deepEqual(decodeValue(encodeValue(v)), v);
  }
  // And the promised flag is the latest encode's.
  assert.equal(isPromised(encodeValue({ id: 5, name: "eve" }, true)), true);
  assert.equal(isPromised(encodeValue({ id: 6, name: "fay" }, false)), false);
});
