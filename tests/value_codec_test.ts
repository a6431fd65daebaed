import assert from "node:assert/strict";
import { decodeValue, encodeValue, isPromised, PROMISED_FLAG } from "../src/codec/value_codec.ts";

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

  await t.step("bigint goes through the structured path", () => {
    for (const b of [0n, -1n, 2n ** 200n, -(2n ** 64n)]) assert.equal(roundTrip(b), b);
    assert.equal(tagOf(1n), 10);
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

Deno.test("encodeValue() round-trips flat arrays of primitives", async (t) => {
  await t.step("mixed elements take the array tag", () => {
    const arrays: unknown[][] = [
      [],
      [1, 2, 3],
      [undefined, null, true, false, -0, NaN, "", "a", "日本", "\ud800", "x".repeat(70_000)],
      [new Uint8Array([1, 2]), new Uint8Array(0), "z"],
      Array.from({ length: 10_000 }, (_, i) => i % 3 ? i : `s${i}`),
    ];
    for (const a of arrays) {
      assert.equal(tagOf(a), 9);
      assert.deepEqual(roundTrip(a), a);
    }
  });

  await t.step("holes, nesting and subclasses go through the JSON or structured path", () => {
    // deno-lint-ignore no-sparse-arrays
    const sparse = [1, , 3];
    class MyArray extends Array {}
    const sub = MyArray.from([1, 2]);
    for (const a of [[[1], 2], [{ a: 1 }]]) {
      assert.equal(tagOf(a), 11);
      assert.deepEqual(roundTrip(a), a);
    }
    for (const a of [sparse, [[1], 2n], [1n], [new Date(0)]]) {
      assert.equal(tagOf(a), 10);
      assert.deepEqual(roundTrip(a), a);
    }
    assert.ok(!(1 in (roundTrip(sparse) as unknown[])));
    assert.equal(tagOf(sub), 10);
    assert.deepEqual(roundTrip(sub), [1, 2]);
  });
});

Deno.test("encodeValue() takes JSON only for values that JSON gives back exactly", async (t) => {
  await t.step("small trees of plain objects, arrays and JSON leaves: tag 11", () => {
    const values: object[] = [
      {},
      [[]],
      { id: 7, name: "user7", active: true, score: 1.75, tags: ["a", "b"], none: null },
      [{ a: [1, [2, { b: "\ud800 lone" }]] }, "x"],
      { "\ufeffbom": "\ufeff", "": 0, 10: "ten", 2: "two" },
    ];
    for (const v of values) {
      assert.equal(tagOf(v), 11, JSON.stringify(v));
      const back = roundTrip(v);
      assert.deepStrictEqual(back, v);
      assert.deepStrictEqual(Object.keys(back as object), Object.keys(v));
    }
  });

  await t.step("anything JSON would change goes to devalue: tag 10", () => {
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
      assert.equal(tagOf(v), 10);
      assert.deepStrictEqual(roundTrip(v), v);
    }
    const back = roundTrip([shared, shared]) as object[];
    assert.equal(back[0], back[1], "a shared reference stays shared");
    assert.equal(tagOf(wide.slice(1)), 11, "63 objects + the array: within the limit");
  });

  await t.step("what devalue refuses is still a TypeError", () => {
    assert.throws(() => encodeValue({ [Symbol("s")]: 1, a: 1 }), TypeError);
    assert.throws(() => encodeValue({ f: () => 1 }), TypeError);
  });

  await t.step(
    "an own __proto__ key (JSON.parse of untrusted input) is kept, on both paths",
    () => {
      // It used to be a TypeError (devalue refuses such keys), so a cached endpoint failed
      // on input like this although its function ran fine.
      for (const text of ['{"__proto__": {"admin": true}, "user": "bob"}', '{"__proto__": 1}']) {
        const v = JSON.parse(text);
        assert.equal(tagOf(v), 11);
        const back = roundTrip(v) as Record<string, unknown>;
        assert.deepEqual(Object.keys(back), Object.keys(v));
        assert.equal(Object.getPrototypeOf(back), Object.prototype);
        assert.equal(back.admin, undefined, "the key never becomes the prototype");
        assert.deepStrictEqual(back, v);
      }
      // With something JSON cannot keep (-0, a Map, nested), devalue takes it.
      const v = JSON.parse('{"__proto__": {"__proto__": {"x": 1}}, "d": 1}');
      v.d = -0;
      v.m = new Map([[1, { __proto__: null, y: 2 }]]);
      assert.equal(tagOf(v), 10);
      const back = roundTrip(v) as Record<string, unknown>;
      assert.deepEqual(Object.keys(back), ["__proto__", "d", "m"]);
      assert.ok(Object.is(back.d, -0));
      assert.equal(Object.getPrototypeOf(back), Object.prototype);
      assert.deepEqual(Object.keys(back.__proto__ as object), ["__proto__"]);
      assert.deepStrictEqual(back, v);
    },
  );

  await t.step("a getter is read once: what is stored is what it returned", () => {
    // The JSON path used to check the value in one walk and let JSON.stringify read it
    // again: a getter returning 1 then undefined was stored as {}.
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
  });

  await t.step("a JSON payload that is not an object or array is refused on decode", () => {
    for (const text of ["1", '"s"', "null", "{", ""]) {
      const bytes = new Uint8Array([11, ...new TextEncoder().encode(text)]);
      assert.throws(() => decodeValue(bytes), RangeError, text);
    }
  });
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
