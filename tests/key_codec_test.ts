import assert from "node:assert/strict";
import {
  bytesToKeyString,
  encodeKey,
  KeyWriter,
  MAX_KEY_DEPTH,
  ShapeTable,
} from "../src/codec/key_codec.ts";

const hex = (b: Uint8Array): string =>
  Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");

Deno.test("encodeKey() numbers have one canonical encoding (SameValueZero)", () => {
  assert.equal(hex(encodeKey([0])), hex(encodeKey([-0])));
  assert.equal(hex(encodeKey([NaN])), hex(encodeKey([Number("x")])));
  assert.notEqual(hex(encodeKey([1])), hex(encodeKey([1.0000001])));
  assert.notEqual(hex(encodeKey([2 ** 31])), hex(encodeKey([-(2 ** 31)])));
  assert.equal(hex(encodeKey([2 ** 31 - 1])).length, hex(encodeKey([1])).length, "int32 tag");
});

Deno.test("encodeKey() strings are lossless, lone surrogates included", () => {
  const strings = ["", "a", "\u00ff", "\u0100", "\ud800", "\udc00", "\ufffd", "😀", "\ud83d"];
  const seen = new Set(strings.map((s) => hex(encodeKey([s]))));
  assert.equal(seen.size, strings.length);
  // Same text, same bytes; a one-byte and a two-byte string never collide.
  assert.equal(hex(encodeKey(["\u0100a"])), hex(encodeKey(["\u0100" + "a"])));
  assert.notEqual(hex(encodeKey(["\u0001\u0000"])), hex(encodeKey(["\u0001"])));
});

Deno.test("encodeKey() shapes never collide: length prefixes and tags", () => {
  const keys: unknown[][] = [
    [["a", "b"]],
    ["a", "b"],
    [["ab"]],
    [[["a"], "b"]],
    [{ a: "b" }],
    [["a", ["b"]]],
    [new Uint8Array([97, 98])],
    [new Uint8Array([97, 98]).buffer],
    ["ab"],
    [1n],
    ["1"],
    [new Date(0)],
    [0],
  ];
  const seen = new Set(keys.map((k) => hex(encodeKey(k))));
  assert.equal(seen.size, keys.length);
});

Deno.test("encodeKey() plain objects by sorted own enumerable keys", () => {
  assert.equal(hex(encodeKey([{ b: 1, a: 2 }])), hex(encodeKey([{ a: 2, b: 1 }])));
  const hidden = { a: 1 };
  Object.defineProperty(hidden, "h", { value: 2, enumerable: false });
  assert.equal(hex(encodeKey([hidden])), hex(encodeKey([{ a: 1 }])));
  assert.notEqual(hex(encodeKey([{ a: undefined }])), hex(encodeKey([{}])));
});

Deno.test("encodeKey() kinds go by what a value is, not by its prototype alone", () => {
  const eq = (a: unknown, b: unknown): boolean => hex(encodeKey([a])) === hex(encodeKey([b]));
  // An array whose prototype was replaced is still an array, never an object { 0, 1 }.
  const odd = Object.setPrototypeOf([1, 2], Object.prototype);
  assert.ok(eq(odd, [1, 2]));
  assert.ok(!eq(odd, { 0: 1, 1: 2 }));
  // A null-prototype object is a plain object.
  const bare = Object.assign(Object.create(null), { b: 2, a: 1 });
  assert.ok(eq(bare, { a: 1, b: 2 }));
  // A Date given Object.prototype is a plain object with no own keys, not a time.
  const date = Object.setPrototypeOf(new Date(5), Object.prototype);
  assert.ok(eq(date, {}));
  assert.ok(!eq(date, new Date(5)));
});

Deno.test("encodeKey() with thisArg differs from the same call without it", () => {
  const self = {};
  assert.notEqual(hex(encodeKey([1], { thisArg: self })), hex(encodeKey([1])));
  assert.equal(hex(encodeKey([1], { thisArg: self })), hex(encodeKey([1], { thisArg: self })));
});

Deno.test("encodeKey() shared: identity-keyed values are a TypeError naming position and type", () => {
  class Widget {}
  assert.throws(
    () => encodeKey([1, new Widget()], { shared: true }),
    (e: unknown) =>
      e instanceof TypeError && /argument 1/.test(e.message) && /Widget/.test(e.message),
  );
  assert.throws(() => encodeKey([() => 1], { shared: true }), /argument 0.*function/);
  assert.throws(() => encodeKey([Symbol("s")], { shared: true }), /argument 0.*Symbol\(s\)/);
  assert.throws(() => encodeKey([[new Map()]], { shared: true }), /argument 0 \(a Map\)/);
  class Item {}
  assert.throws(() => encodeKey([new Item()], { shared: true }), /argument 0 \(an Item\)/);
  assert.throws(() => encodeKey([new Error("x")], { shared: true }), /argument 0 \(an Error\)/);
  // Value-keyed types are fine.
  encodeKey([1, "s", [1, { a: new Date(1) }], new Uint8Array(3), 5n, null], { shared: true });
});

Deno.test("encodeKey() cycles and excessive depth are TypeErrors", () => {
  const a: unknown[] = [];
  a.push([a]);
  assert.throws(() => encodeKey([a]), /cyclic.*argument 0/);
  let deep: unknown = 1;
  for (let i = 0; i < MAX_KEY_DEPTH + 5; i++) deep = [deep];
  assert.throws(() => encodeKey([0, deep]), /argument 1.*deeper/);
  let ok: unknown = 1;
  for (let i = 0; i < MAX_KEY_DEPTH - 1; i++) ok = [ok];
  encodeKey([ok]);
});

Deno.test("KeyWriter grows for long keys and reports the length", () => {
  const w = new KeyWriter(8);
  const s = "x".repeat(10_000);
  const len = w.call(undefined, false, [s, s]);
  assert.equal(len, 2 + 2 * (5 + 10_000)); // T_ARGS, arity byte, two strings
  assert.ok(w.buf.length >= len);
});

Deno.test("bytesToKeyString() is lossless and injective over bytes", () => {
  const bytes = new Uint8Array(10_000).map((_, i) => (i * 7) & 0xff);
  const s = bytesToKeyString(bytes, bytes.length);
  assert.equal(s.length, bytes.length);
  for (let i = 0; i < bytes.length; i += 997) assert.equal(s.charCodeAt(i), bytes[i]);
  assert.notEqual(
    bytesToKeyString(new Uint8Array([0x80]), 1),
    bytesToKeyString(new Uint8Array([0x81]), 1),
  );
});

Deno.test("encodeKey() shape cache: keys added or deleted are seen at once", () => {
  for (const shared of [false, true]) {
    const enc = (o: unknown): string => hex(encodeKey([o], { shared }));
    const o: Record<string, unknown> = { a: 1, b: 2 };
    const before = enc(o);
    assert.equal(before, enc({ b: 2, a: 1 }));
    o.c = 3;
    assert.equal(enc(o), enc({ a: 1, b: 2, c: 3 }));
    assert.notEqual(enc(o), before);
    delete o.a;
    assert.equal(enc(o), enc({ b: 2, c: 3 }));
    delete o.b;
    delete o.c;
    assert.equal(enc(o), enc({}));
    o.a = 1;
    o.b = 2;
    assert.equal(enc(o), before, "back to the first shape, listed in another order");
    // Same key names, listed in another order by another object: one key.
    assert.equal(enc({ b: 2, a: 1 }), enc({ a: 1, b: 2 }));
  }
});

Deno.test("encodeKey() shape cache: getters are read on every encode, once each", () => {
  for (const shared of [false, true]) {
    let reads = 0;
    const o = {
      get x(): number {
        return ++reads;
      },
      y: "y",
    };
    const first = hex(encodeKey([o], { shared }));
    assert.equal(reads, 1);
    const second = hex(encodeKey([o], { shared }));
    assert.equal(reads, 2);
    assert.notEqual(first, second);
    assert.equal(second, hex(encodeKey([{ x: 2, y: "y" }], { shared })));
  }
});

Deno.test("encodeKey() shape cache: a changed prototype is seen at once", () => {
  class Box {}
  const o: Record<string, unknown> = { a: 1 };
  const plain = hex(encodeKey([o]));
  Object.setPrototypeOf(o, Box.prototype);
  const boxed = hex(encodeKey([o]));
  assert.notEqual(boxed, plain, "a class instance is keyed by identity");
  assert.notEqual(boxed, hex(encodeKey([Object.setPrototypeOf({ a: 1 }, Box.prototype)])));
  assert.throws(() => encodeKey([o], { shared: true }), /argument 0 \(a Box\)/);
  Object.setPrototypeOf(o, null);
  assert.equal(hex(encodeKey([o])), plain, "a null-prototype object is a plain object");
  Object.setPrototypeOf(o, Object.prototype);
  assert.equal(hex(encodeKey([o])), plain);
});

Deno.test("ShapeTable is bounded and keeps each key set's encoding for good", () => {
  const table = new ShapeTable(4, 8);
  for (const shared of [false, true]) {
    const w = new KeyWriter(64, shared, table);
    const enc = (o: unknown): string => {
      const len = w.call(undefined, false, [o]);
      return hex(w.buf.subarray(0, len));
    };
    const objectOf = (i: number): Record<string, number> => ({ [`k${i}`]: i, z: 0 });
    // 40 key sets through a cache of 4 shapes and 8 shape numbers.
    const first = Array.from({ length: 40 }, (_, i) => enc(objectOf(i)));
    assert.ok(table.cached <= 4, `${table.cached} shapes cached`);
    assert.equal(table.numbered, 8);
    assert.equal(new Set(first).size, 40, "40 key sets, 40 keys");
    // The same objects again, in another order: the same bytes, numbered or not.
    for (let i = 39; i >= 0; i--) assert.equal(enc(objectOf(i)), first[i], `key set ${i}`);
    // And as a fresh encoder of the process's table would see them: the same equality.
    for (let i = 0; i < 40; i++) {
      assert.equal(enc({ z: 0, [`k${i}`]: i }), first[i], `key set ${i}, listed otherwise`);
    }
  }
});

Deno.test("encodeKey() memory and shared forms agree on which keys are equal", () => {
  const keys: unknown[][] = [
    [{ a: 1, b: "x" }],
    [{ b: "x", a: 1 }],
    [{ a: 1, b: "x", c: undefined }],
    [{ a: "1", b: "x" }],
    [["a", 1]],
    ["a".repeat(255)],
    ["a".repeat(256)],
    ["\u0100".repeat(255)],
    ["\u0100".repeat(256)],
    [{ ["k".repeat(300)]: 1 }],
    [{ nested: { a: [1, { b: 2 }] } }],
    [{ nested: { a: [1, { b: 3 }] } }],
  ];
  for (const a of keys) {
    for (const b of keys) {
      const memory = hex(encodeKey(a)) === hex(encodeKey(b));
      const shared = hex(encodeKey(a, { shared: true })) === hex(encodeKey(b, { shared: true }));
      assert.equal(memory, shared, `${Deno.inspect(a)} / ${Deno.inspect(b)}`);
    }
  }
});

Deno.test("KeyWriter: a getter that encodes another key does not disturb the outer key", () => {
  for (const shared of [false, true]) {
    const outer = new KeyWriter(64, shared);
    let inner = "";
    const o = {
      a: "before",
      get g(): number {
        // A nested encode, as a cached function called by the getter does it; one that
        // throws and is caught must not leave its state behind either.
        const w = new KeyWriter(8, shared);
        const len = w.call(undefined, false, [{ x: "y".repeat(100) }]);
        inner = hex(w.buf.subarray(0, len));
        const cyclic: unknown[] = [];
        cyclic.push(cyclic);
        assert.throws(() => new KeyWriter(8, shared).call(undefined, false, [1, cyclic]));
        return 1;
      },
      z: [1, 2],
    };
    const len = outer.call(undefined, false, [o, "after"]);
    const expected = encodeKey([{ a: "before", g: 1, z: [1, 2] }, "after"], { shared });
    assert.equal(hex(outer.buf.subarray(0, len)), hex(expected));
    assert.equal(inner, hex(encodeKey([{ x: "y".repeat(100) }], { shared })));
  }
});

Deno.test("KeyWriter: an encode that threw leaves nothing behind for the next one", () => {
  for (const shared of [false, true]) {
    const w = new KeyWriter(16, shared);
    const inner = { deep: [1, 2] };
    const cyclic: Record<string, unknown> = { inner };
    cyclic.self = cyclic;
    // The throw happens with `cyclic` and `inner`'s parents on the stack of ancestors.
    assert.throws(() => w.call(undefined, false, [cyclic]), /cyclic/);
    // Objects that were on it then are no ancestors of the next key.
    const len = w.call(undefined, false, [{ a: cyclic.inner, b: inner }, inner]);
    assert.equal(
      hex(w.buf.subarray(0, len)),
      hex(encodeKey([{ a: { deep: [1, 2] }, b: { deep: [1, 2] } }, { deep: [1, 2] }], { shared })),
    );
  }
});

Deno.test("KeyWriter: each argument is read once, by the flat path as by the walk", () => {
  // A hand-made argument list whose element answers a number, then an object: the key is
  // the one of what was read, once.
  for (const shared of [false, true]) {
    let reads = 0;
    const args = [1, "s"];
    Object.defineProperty(args, 0, {
      get(): unknown {
        return ++reads === 1 ? 5 : { late: "x".repeat(300) };
      },
    });
    const w = new KeyWriter(8, shared);
    const len = w.call(undefined, false, args);
    assert.equal(reads, 1);
    assert.equal(hex(w.buf.subarray(0, len)), hex(encodeKey([5, "s"], { shared })));
  }
});

Deno.test("KeyWriter flat path: objects of the last shape give the walk's bytes", () => {
  const w = new KeyWriter(8, false);
  const key = (...args: unknown[]): string => {
    const len = w.call(undefined, false, args);
    return hex(w.buf.subarray(0, len));
  };
  const inner = { deep: [1, 2] };
  const values: unknown[] = [
    1,
    -0,
    2 ** 40,
    1.5,
    NaN,
    "s",
    "\u{1f600}",
    "x".repeat(300),
    true,
    null,
    undefined,
    1n,
    inner,
    [inner],
  ];
  for (const v of values) {
    // The first call walks (and makes the shape the last one); the next takes the flat
    // path; the keys listed in another order take the walk again.
    const walked = key({ a: v, b: 2 }, 7);
    assert.equal(key({ a: v, b: 2 }, 7), walked, `flat path, a = ${String(v)}`);
    assert.equal(key({ b: 2, a: v }, 7), walked, `other order, a = ${String(v)}`);
    assert.equal(key({ b: 2, a: v }, 7), walked, `flat path, reordered, a = ${String(v)}`);
    assert.equal(key(7, { a: v, b: 2 }) === walked, false);
  }
  // Two objects (the second is flat too), and an argument the flat path does not take after
  // one it did: the walk writes it.
  const two = key({ a: 1, b: 2 }, { a: 3, b: 4 }, 2.5, { a: 5, c: 6 });
  assert.equal(two, key({ b: 2, a: 1 }, { b: 4, a: 3 }, 2.5, { c: 6, a: 5 }));
  assert.notEqual(two, key({ a: 1, b: 2 }, { a: 3, b: 4 }, 2.5, { a: 5, c: 7 }));
});

Deno.test("KeyWriter flat path: getters once each, deleted keys, cycles, inherited keys", () => {
  const w = new KeyWriter(8, false);
  const key = (...args: unknown[]): string => {
    const len = w.call(undefined, false, args);
    return hex(w.buf.subarray(0, len));
  };
  key({ a: 1, b: 2, c: 3 });
  // A getter that deletes a later key: for-in no longer lists it, and the key leaves it out.
  let reads = 0;
  const o: Record<string, unknown> = {
    get a(): number {
      reads++;
      delete o.b;
      return 1;
    },
    b: 2,
    c: 3,
  };
  assert.equal(key(o), key({ a: 1, c: 3 }));
  assert.equal(reads, 1, "each getter read once");
  // The same for keys not listed sorted, and a nested key inside a getter: it takes the
  // scratch list past the outer one's values.
  key({ c: 3, a: 1, b: 2 });
  reads = 0;
  const inner = new KeyWriter(8, false);
  const r: Record<string, unknown> = {
    c: 3,
    get a(): number {
      reads++;
      delete r.b;
      inner.call(undefined, false, [{ c: 30, a: 10, b: 20 }]);
      return 1;
    },
    b: 2,
  };
  assert.equal(key(r), key({ a: 1, c: 3 }));
  assert.equal(reads, 1);
  assert.equal(
    hex(inner.buf.subarray(0, inner.pos)),
    hex(encodeKey([{ a: 10, b: 20, c: 30 }])),
  );
  // A cycle through the flat path is refused.
  key({ a: 1, self: 2 });
  const cyclic: Record<string, unknown> = { a: 1, self: null };
  cyclic.self = cyclic;
  assert.throws(() => key(cyclic), /cyclic value in argument 0/);
  // An enumerable key inherited from Object.prototype is not one of the object's keys.
  key({ a: 1, b: 2 });
  const proto = Object.prototype as Record<string, unknown>;
  try {
    Object.defineProperty(proto, "b", { value: 9, enumerable: true, configurable: true });
    assert.equal(key({ a: 1 }), hex(encodeKey([{ a: 1 }])));
    assert.notEqual(key({ a: 1 }), key({ a: 1, b: 9 }));
  } finally {
    delete proto.b;
  }
  // A null-prototype object takes the flat path too.
  const bare = Object.assign(Object.create(null), { a: 1, b: 2 });
  assert.equal(key(bare), key({ b: 2, a: 1 }));
});
