// Values changed by their own getters while the value codec walks them. The codec
// writes a container's count first; if the items it then writes disagree with that count,
// the bytes do not decode (or, nested, decode into another value). The contract: either a
// TypeError at encode ("... changed while it was written"), or bytes that decode to what was
// written.
import assert from "node:assert/strict";
import { decodeValue, encodeValue } from "../src/codec/value_codec.ts";
import { cache } from "../mod.ts";

/** Encodes `v`: a TypeError is fine; otherwise the bytes must decode. */
function roundTripsOrRefuses(v: unknown): void {
  let bytes: Uint8Array;
  try {
    bytes = encodeValue(v).slice();
  } catch (e) {
    assert.ok(e instanceof TypeError, `expected a TypeError, got ${e}`);
    return;
  }
  decodeValue(bytes); // must not throw: what was stored must read back
}

Deno.test("value codec: a Map that a getter of one of its values grows is refused or round-trips", () => {
  const m = new Map<string, unknown>();
  m.set("a", {
    get x() {
      m.set("b", 2);
      return 1;
    },
  });
  roundTripsOrRefuses(m);
});

Deno.test("value codec: a Set that a getter of one of its items grows is refused or round-trips", () => {
  const s = new Set<unknown>();
  s.add({
    get x() {
      s.add("late");
      return 1;
    },
  });
  roundTripsOrRefuses(s);
});

Deno.test("value codec: a holey array that a getter of an element grows is refused or round-trips", () => {
  const a: unknown[] = [];
  Object.defineProperty(a, 0, {
    get(): number {
      a[2] = "late";
      return 1;
    },
    enumerable: true,
    configurable: true,
  });
  a.length = 2; // a[1] is a hole
  roundTripsOrRefuses(a);
});

Deno.test("value codec: a Set that a getter of one of its items shrinks is refused or round-trips", () => {
  const s = new Set<unknown>();
  s.add({
    get x() {
      s.delete("soon gone");
      return 1;
    },
  });
  s.add("soon gone");
  // Nested: the item missing from the Set's count is taken from its sibling.
  roundTripsOrRefuses([s, "sibling"]);
});

Deno.test("value codec: a holey array that a getter of an element shrinks is refused or round-trips", () => {
  const a: unknown[] = [];
  a[1] = "x";
  Object.defineProperty(a, 0, {
    get(): number {
      return 1;
    },
    enumerable: true,
    configurable: true,
  });
  a[3] = {
    get y() {
      a.length = 3;
      return 2;
    },
  };
  a[5] = "after";
  roundTripsOrRefuses(a);
});

Deno.test("value codec: changes by getters leave an unchanged Map, Set and holey array as they were", () => {
  const m = new Map<unknown, unknown>([["a", 1], [{ b: 2 }, new Set([1, "1", [, 3]])]]);
  const back = decodeValue(encodeValue(m).slice());
  assert.deepEqual(back, m);
});

Deno.test("value codec: counts that disagree with the items written never decode into another value", () => {
  // A Set that loses two items while written, beside a Map that gains one entry (two
  // items): the bytes balance, and decode today into another value than the one written.
  const s = new Set<unknown>();
  s.add({
    get x() {
      s.delete("gone 1");
      s.delete("gone 2");
      return 1;
    },
  });
  s.add("gone 1");
  s.add("gone 2");
  const m = new Map<unknown, unknown>();
  m.set("a", {
    get y() {
      m.set("b", 2);
      return 1;
    },
  });
  const value = [s, m];
  let bytes: Uint8Array;
  try {
    bytes = encodeValue(value).slice();
  } catch (e) {
    assert.ok(e instanceof TypeError);
    return;
  }
  const back = decodeValue(bytes);
  // What was read while writing: [Set { { x: 1 } }, Map { a => { y: 1 }, b => 2 }].
  assert.deepEqual(back, [
    new Set([{ x: 1 }]),
    new Map<unknown, unknown>([["a", { y: 1 }], ["b", 2]]),
  ]);
});

Deno.test("value codec: a shared cache's hit returns the value its miss returned, even when getters changed it", () => {
  const dir = Deno.makeTempDirSync({ prefix: "warp-value-mutation-" });
  try {
    const make = (): unknown[] => {
      const s = new Set<unknown>();
      s.add({
        get x() {
          s.delete("gone 1");
          s.delete("gone 2");
          return 1;
        },
      });
      s.add("gone 1");
      s.add("gone 2");
      const m = new Map<unknown, unknown>();
      m.set("a", {
        get y() {
          m.set("b", 2);
          return 1;
        },
      });
      return [s, m];
    };
    const f = cache({ backend: "shared", dir, name: "mutated" })((_id: number) => make());
    let first: unknown;
    try {
      first = f(1);
    } catch (e) {
      assert.ok(e instanceof TypeError); // refused: nothing stored, fine
      return;
    }
    const hit = f(1);
    assert.equal(f.cacheInfo().hits, 1);
    assert.deepEqual(hit, first);
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
});
