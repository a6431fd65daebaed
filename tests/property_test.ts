// Property tests (issue #6) with fast-check: the key codec is injective under the README's key rules
// (keys equal by §3 give equal bytes, different keys different bytes) and the value codec
// round-trips every value it accepts.
import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import fc from "npm:fast-check@3";
import { encodeKey } from "../src/codec/key_codec.ts";
import { decodeValue, decodeValueIn, encodeValue } from "../src/codec/value_codec.ts";
import * as v1 from "./fixtures/value_codec_v1.ts";

const RUNS = Number(Deno.env.get("WARP_PROPERTY_RUNS") ?? 2000);

/** Keys (README, "Keys") for the shared backend (no identity keys). */
const keyArb: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  leaf: fc.oneof(
    fc.integer(),
    fc.double(),
    fc.constantFrom(0, -0, NaN, Infinity, -Infinity),
    fc.string(),
    fc.fullUnicodeString(),
    fc.string({ unit: "binary" }),
    fc.bigInt(),
    fc.boolean(),
    fc.constant(null),
    fc.constant(undefined),
    fc.date({ noInvalidDate: true }),
    fc.uint8Array({ maxLength: 8 }),
  ),
  node: fc.oneof(
    { depthSize: "small" },
    tie("leaf"),
    fc.array(tie("node"), { maxLength: 4 }),
    fc.dictionary(fc.string({ maxLength: 4 }), tie("node"), { maxKeys: 4 }),
  ),
})).node;

/** Equality of two keys under the README's key rules (SameValueZero, type-aware, objects by sorted keys). */
function keyEqual(a: unknown, b: unknown): boolean {
  if (typeof a !== typeof b) return false;
  if (typeof a === "number") return a === b || (Number.isNaN(a) && Number.isNaN(b as number));
  if (a === null || b === null || typeof a !== "object") return a === b;
  if (a instanceof Date) return b instanceof Date && a.getTime() === b.getTime();
  if (a instanceof Uint8Array) {
    return b instanceof Uint8Array && a.length === b.length && a.every((x, i) => x === b[i]);
  }
  if (Array.isArray(a)) {
    return Array.isArray(b) && a.length === b.length && a.every((x, i) => keyEqual(x, b[i]));
  }
  if (Array.isArray(b) || b instanceof Date || b instanceof Uint8Array) return false;
  const ka = Object.keys(a).sort();
  const kb = Object.keys(b as object).sort();
  return ka.length === kb.length &&
    ka.every((k, i) =>
      k === kb[i] &&
      keyEqual((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])
    );
}

function bytes(args: unknown[], shared = true): string {
  const b = encodeKey(args, { shared });
  return Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
}

Deno.test("encodeKey() memory form is injective too (short strings, shape numbers)", () => {
  fc.assert(
    fc.property(fc.array(keyArb, { maxLength: 3 }), fc.array(keyArb, { maxLength: 3 }), (a, b) => {
      const equal = a.length === b.length && a.every((x, i) => keyEqual(x, b[i]));
      assert.equal(bytes(a, false) === bytes(b, false), equal, `${String(a)} vs ${String(b)}`);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("encodeKey() is injective: equal bytes exactly for keys equal under the README's key rules", () => {
  fc.assert(
    fc.property(fc.array(keyArb, { maxLength: 3 }), fc.array(keyArb, { maxLength: 3 }), (a, b) => {
      const equal = a.length === b.length && a.every((x, i) => keyEqual(x, b[i]));
      assert.equal(bytes(a) === bytes(b), equal, `${String(a)} vs ${String(b)}`);
    }),
    { numRuns: RUNS },
  );
  // Pairs that random generation rarely produces: near-collisions built on purpose.
  fc.assert(
    fc.property(fc.array(keyArb, { maxLength: 3 }), (a) => {
      const shuffled = a.map((x) =>
        x !== null && typeof x === "object" && !Array.isArray(x) && !(x instanceof Date) &&
          !(x instanceof Uint8Array)
          ? Object.fromEntries(Object.entries(x).reverse())
          : x
      );
      assert.equal(bytes(a), bytes(shuffled), "object key order must not matter");
      assert.notEqual(bytes(a), bytes([...a, undefined]), "arity counts");
      assert.notEqual(bytes([a]), bytes(a), "an array argument is not the argument list");
    }),
    { numRuns: RUNS },
  );
});

/** Values the shared backend stores. */
const valueArb: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  leaf: fc.oneof(
    fc.integer(),
    fc.double(),
    fc.string(),
    fc.fullUnicodeString(),
    fc.string({ unit: "binary" }),
    fc.bigInt(),
    fc.boolean(),
    fc.constant(null),
    fc.constant(undefined),
    fc.date({ noInvalidDate: true }),
    fc.uint8Array({ maxLength: 16 }),
    fc.float64Array({ maxLength: 4 }),
    fc.int32Array({ maxLength: 4 }),
  ),
  node: fc.oneof(
    { depthSize: "small" },
    tie("leaf"),
    fc.array(tie("node"), { maxLength: 5 }),
    fc.dictionary(fc.string({ maxLength: 5 }), tie("node"), { maxKeys: 4 }),
    fc.array(tie("leaf"), { maxLength: 4 }).map((xs) => new Set(xs)),
    fc.array(fc.tuple(tie("leaf"), tie("leaf")), { maxLength: 3 }).map((xs) => new Map(xs)),
  ),
})).node;

Deno.test("encodeValue() / decodeValue() round-trip every generated value", () => {
  fc.assert(
    fc.property(valueArb, fc.boolean(), (v, promised) => {
      const out = decodeValue(encodeValue(v, promised));
      assert.ok(isDeepStrictEqual(out, v), `${String(v)} came back as ${String(out)}`);
    }),
    { numRuns: RUNS },
  );
});

Deno.test("decodeValueIn() (the shared hit path) agrees with decodeValue() on a reused buffer", () => {
  // One buffer for every run, as a shared store reuses its output buffer: bytes left from a
  // longer earlier value must not leak into a shorter one.
  const buf = new Uint8Array(1 << 16);
  const view = new DataView(buf.buffer);
  fc.assert(
    fc.property(valueArb, fc.boolean(), fc.integer({ min: 0, max: 255 }), (v, promised, junk) => {
      const bytes = encodeValue(v, promised);
      fc.pre(bytes.length <= buf.length);
      buf.fill(junk);
      buf.set(bytes);
      const out = decodeValueIn(buf, bytes.length, view);
      assert.ok(isDeepStrictEqual(out, v), `${String(v)} came back as ${String(out)}`);
      assert.ok(isDeepStrictEqual(out, decodeValue(bytes)));
    }),
    { numRuns: RUNS },
  );
});

/** Values with everything the README says round-trips, and some that cannot be stored. */
const richArb: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  leaf: fc.oneof(
    fc.integer(),
    fc.integer({ min: -200, max: 200 }),
    fc.double(),
    fc.constantFrom(0, -0, NaN, Infinity, -Infinity, 127, 128, 2 ** 31, -(2 ** 31)),
    fc.string(),
    fc.fullUnicodeString(),
    fc.string({ unit: "binary" }),
    fc.string({ minLength: 250, maxLength: 300 }),
    fc.bigInt(),
    fc.boolean(),
    fc.constant(null),
    fc.constant(undefined),
    fc.date(),
    fc.uint8Array({ maxLength: 16 }),
    fc.float64Array({ maxLength: 4 }),
    fc.int16Array({ maxLength: 4 }),
    fc.bigInt64Array({ maxLength: 2 }),
    fc.constantFrom(
      /a+b/giu,
      new URL("https://x.test/p?q=1"),
      new URLSearchParams("a=1&b=2"),
      new ArrayBuffer(3),
      new DataView(new ArrayBuffer(2)),
    ),
    fc.oneof(fc.integer(), fc.string(), fc.boolean()).map((x) => Object(x)),
  ),
  node: fc.oneof(
    { depthSize: "small" },
    tie("leaf"),
    fc.array(tie("node"), { maxLength: 5 }),
    fc.sparseArray(tie("node"), { maxLength: 8 }),
    fc.dictionary(fc.string({ maxLength: 5 }), tie("node"), { maxKeys: 4 }),
    fc.dictionary(fc.string({ maxLength: 5 }), tie("node"), { maxKeys: 3 }).map((o) =>
      Object.assign(Object.create(null), o)
    ),
    fc.array(tie("node"), { maxLength: 4 }).map((xs) => new Set(xs)),
    fc.array(fc.tuple(tie("node"), tie("node")), { maxLength: 3 }).map((xs) => new Map(xs)),
    // The same object twice, and an object that contains itself.
    tie("node").map((x) => [x, x]),
    fc.dictionary(fc.string({ maxLength: 3 }), tie("leaf"), { maxKeys: 2 }).map((o) => {
      const c: Record<string, unknown> = { ...o };
      c.self = c;
      return c;
    }),
    // Records of one shape, as an API response holds them.
    fc.array(fc.record({ id: fc.integer(), name: fc.string(), tags: fc.array(fc.string()) }), {
      maxLength: 5,
    }),
  ),
})).node;

/** Things that cannot be stored, to mix in. */
const badArb: fc.Arbitrary<unknown> = fc.constantFrom(
  () => 1,
  Symbol("s"),
  new WeakMap(),
  Promise.resolve(1),
  new (class Point {})(),
  new Error("e"),
  { [Symbol("k")]: 1 },
);

Deno.test("encodeValue() round-trips what the previous codec round-tripped, alike", () => {
  fc.assert(
    fc.property(richArb, fc.boolean(), (v, promised) => {
      const now = decodeValue(encodeValue(v, promised).slice());
      const before = v1.decodeValue(v1.encodeValue(v, promised).slice());
      assert.ok(isDeepStrictEqual(now, v), `${Deno.inspect(v)} came back as ${Deno.inspect(now)}`);
      assert.ok(isDeepStrictEqual(now, before), Deno.inspect(v));
      // What the previous codec wrote reads back as it did.
      assert.ok(isDeepStrictEqual(decodeValue(v1.encodeValue(v, promised).slice()), v));
    }),
    { numRuns: RUNS },
  );
});

Deno.test("encodeValue() refuses what the previous codec refused, and only that", () => {
  fc.assert(
    fc.property(richArb, badArb, fc.nat(3), (v, bad, where) => {
      const value = [v, { nested: bad }, bad, new Map([[1, bad]])][where];
      const outcome = (encode: (x: unknown) => Uint8Array): string => {
        try {
          encode(value);
          return "stored";
        } catch (e) {
          return e instanceof TypeError ? "TypeError" : `other: ${e}`;
        }
      };
      assert.equal(outcome(encodeValue), outcome(v1.encodeValue), Deno.inspect(value));
    }),
    { numRuns: RUNS },
  );
});
