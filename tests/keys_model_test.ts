// Differential fuzzing of cache() keys against a reference model of README "Keys".
import assert from "node:assert/strict";
import { cache } from "../mod.ts";
import { FakeServer, fakeTier } from "./fixtures/fake_tier.ts";

/** Seeded PRNG (mulberry32). */
function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const ids = new WeakMap<object, number>();
let nextId = 1;
function idOf(o: object): number {
  let i = ids.get(o);
  if (i === undefined) ids.set(o, i = nextId++);
  return i;
}

/** Reference key of README "Keys" (memory backend). */
export function ref(v: unknown): string {
  switch (typeof v) {
    case "number":
      return v !== v ? "n:NaN" : v === 0 ? "n:0" : "n:" + String(v);
    case "string":
      return "s:" + JSON.stringify(v);
    case "boolean":
      return "b:" + v;
    case "undefined":
      return "u";
    case "bigint":
      return "B:" + v;
    case "symbol":
      return Symbol.keyFor(v) !== undefined
        ? "S:" + Symbol.keyFor(v)
        : "I:" + idOf(v as unknown as object);
    case "function":
      return "I:" + idOf(v);
  }
  if (v === null) return "null";
  const o = v as object;
  if (Array.isArray(o)) {
    const parts: string[] = [];
    for (let i = 0; i < o.length; i++) parts.push(ref(o[i]));
    return "[" + parts.join(",") + "]";
  }
  const p = Object.getPrototypeOf(o);
  if (p === Object.prototype || p === null) {
    const keys = Object.keys(o).sort();
    return "{" + keys.map((k) =>
      JSON.stringify(k) + ":" + ref((o as Record<string, unknown>)[k])
    ).join(",") + "}";
  }
  if (o instanceof Date) return "D:" + (isNaN(o.getTime()) ? "NaN" : o.getTime());
  if (o instanceof Uint8Array) return "U:" + Array.from(o).join(".");
  if (o instanceof ArrayBuffer) return "A:" + Array.from(new Uint8Array(o)).join(".");
  return "I:" + idOf(o);
}
export function refArgs(args: unknown[]): string {
  return args.length + "(" + args.map(ref).join(";") + ")";
}

const STRS = [
  "",
  "a",
  "1",
  "b",
  "ab",
  "\ud800",
  "\ufffd",
  "é",
  "\u0100",
  "a".repeat(255),
  "a".repeat(256),
  "x\u0000",
  "__proto__",
  "constructor",
  "0",
  "-0",
  "NaN",
];
const NUMS = [
  0,
  -0,
  1,
  -1,
  1.5,
  NaN,
  Infinity,
  -Infinity,
  2 ** 31,
  -(2 ** 31),
  2 ** 31 - 1,
  2 ** 53,
  2 ** 53 + 2,
  2 ** 32,
  255,
  256,
  65535,
  65536,
  1e-300,
  -1.5,
];
const KEYS = [
  "a",
  "b",
  "c",
  "1",
  "2",
  "10",
  "__proto__",
  "constructor",
  "id",
  "kind",
  "\u0100",
  "ab",
  "d",
  "e",
  "f",
  "g",
  "h",
  "i",
  "j",
];
const shared = { obj: { x: 1 }, fn: () => 1, sym: Symbol("s"), map: new Map() };

function gen(r: () => number, depth: number): unknown {
  const pick = <T>(a: T[]): T => a[Math.floor(r() * a.length)]!;
  const k = Math.floor(r() * (depth > 2 ? 9 : 16));
  switch (k) {
    case 0:
    case 1:
      return pick(NUMS);
    case 2:
      return Math.floor(r() * 10) - 3;
    case 3:
    case 4:
      return pick(STRS);
    case 5:
      return pick([true, false, null, undefined]);
    case 6:
      return pick([0n, 1n, -1n, 2n ** 64n, 255n]);
    case 7:
      return new Date(pick([0, 1, -1, 1.5, NaN, 86400000]));
    case 8:
      return pick([
        new Uint8Array([]),
        new Uint8Array([1]),
        new Uint8Array([1, 2]),
        new Uint8Array([1, 2, 3]).subarray(1),
        new Uint8Array([1, 2]).buffer,
        new Uint8Array([2, 3]).buffer.slice(1),
        shared.obj,
        shared.fn,
        shared.sym,
        Symbol.for("g"),
        shared.map,
        new Int8Array([1]),
        [1],
      ]);
    case 9:
    case 10:
    case 11: {
      const n = Math.floor(r() * 4);
      const a: unknown[] = [];
      for (let i = 0; i < n; i++) a.push(gen(r, depth + 1));
      return a;
    }
    default: {
      const n = Math.floor(r() * 10);
      const o: Record<string, unknown> = r() < 0.2 ? Object.create(null) : {};
      const keys: string[] = [];
      for (let i = 0; i < n; i++) keys.push(pick(KEYS));
      for (const key of keys) {
        if (key === "__proto__" && Object.getPrototypeOf(o) !== null) {
          Object.defineProperty(o, key, {
            value: gen(r, depth + 1),
            enumerable: true,
            configurable: true,
            writable: true,
          });
        } else o[key] = gen(r, depth + 1);
      }
      return o;
    }
  }
}

let PRIM = false;
let VALUE_KEYS = false;
function genPrim(r: () => number): unknown {
  const pick = <T>(a: T[]): T => a[Math.floor(r() * a.length)]!;
  const k = Math.floor(r() * 10);
  if (k < 3) return Math.floor(r() * 4) - 1;
  if (k < 5) return pick(["0", "1", "a", "", "\ud800", "\ufffd"]);
  if (k < 6) return pick([true, false, null, undefined, -0, NaN, 0.5, 2 ** 31, 1n]);
  if (k < 10) {
    const n = 1 + Math.floor(r() * 9);
    const o: Record<string, unknown> = r() < 0.2 ? Object.create(null) : {};
    for (let i = 0; i < n; i++) {
      o[pick(["a", "b", "c", "1", "2", "id", "kind"])] = r() < 0.9
        ? Math.floor(r() * 3)
        : pick(["0", "1", null, undefined, -0, NaN, 1n, [0], {}]);
    }
    return o;
  }
  return 0;
}
function genArgs(r: () => number, arity: number | undefined): unknown[] {
  const n = arity ?? Math.floor(r() * 6);
  const a: unknown[] = [];
  for (let i = 0; i < n; i++) a.push(PRIM ? genPrim(r) : r() < 0.5 ? gen(r, 0) : gen(r, 3));
  return a;
}

function run(
  seed: number,
  arity: number | undefined,
  steps: number,
  opts: Record<string, unknown>,
): number {
  const r = rng(seed);
  const computedFor: string[] = [];
  const seen = new Map<string, number>();
  const body = (...args: unknown[]): number => {
    computedFor.push(refArgs(args));
    return computedFor.length - 1;
  };
  let f: (...args: unknown[]) => unknown;
  const c = cache({ maxSize: Infinity, ...opts });
  if (arity === 1) {
    f = c(function (_x: unknown): number {
      return body(...arguments);
    });
  } else if (arity === 2) {
    f = c(function (_x: unknown, _y: unknown): number {
      return body(...arguments);
    });
  } else if (arity === 3) {
    f = c(function (_x: unknown, _y: unknown, _z: unknown): number {
      return body(...arguments);
    });
  } else f = c((...args: unknown[]) => body(...args));
  const pool: unknown[][] = [];
  for (let s = 0; s < steps; s++) {
    // Re-use earlier argument lists (by value: fresh copies) to get hits.
    let args: unknown[];
    if (pool.length > 0 && r() < 0.4) {
      args = structuredCloneArgs(pool[Math.floor(r() * pool.length)]!);
    } else {
      args = genArgs(r, arguments.length > 0 && r() < 0.9 ? arity : undefined);
      pool.push(args);
    }
    const want = refArgs(args);
    if (VALUE_KEYS && (want.includes("I:") || want.includes("S:"))) {
      assert.throws(
        () => f(...args),
        TypeError,
        `seed ${seed} step ${s}: ${want} should be a TypeError`,
      );
      continue;
    }
    const got = f(...args) as number;
    const gotKey = computedFor[got]!;
    assert.equal(
      gotKey,
      want,
      `seed ${seed} step ${s}: call ${want} got the value computed for ${gotKey}`,
    );
    const before = seen.get(want);
    if (before !== undefined) {
      assert.equal(got, before, `seed ${seed} step ${s}: equal key ${want} missed`);
    } else seen.set(want, got);
  }
  return (f as unknown as { cacheInfo(): { hits: number } }).cacheInfo().hits;
}

function structuredCloneArgs(a: unknown[]): unknown[] {
  return a.map(cloneKey);
}
function cloneKey(v: unknown): unknown {
  if (typeof v !== "object" || v === null) return v;
  if (Array.isArray(v)) return v.map(cloneKey);
  const p = Object.getPrototypeOf(v);
  if (p === Object.prototype || p === null) {
    const o: Record<string, unknown> = Object.create(p);
    // reversed insertion order to vary property order
    for (const k of Object.keys(v).reverse()) {
      Object.defineProperty(o, k, {
        value: cloneKey((v as Record<string, unknown>)[k]),
        enumerable: true,
        configurable: true,
        writable: true,
      });
    }
    return o;
  }
  if (v instanceof Date) return new Date(v.getTime());
  if (v instanceof Uint8Array) return v.slice();
  if (v instanceof ArrayBuffer) return v.slice(0);
  return v;
}

for (const arity of [undefined, 1, 2, 3]) {
  for (const strategy of ["sieve", "lru", "s3fifo"]) {
    for (const prim of [false, true]) {
      Deno.test(`keys model: cache() keys agree with README model (arity ${arity}, ${strategy}, ${prim ? "primitives" : "mixed"})`, () => {
        PRIM = prim;
        let hits = 0;
        for (let seed = 1; seed <= 30; seed++) {
          hits += run(seed * 7919 + (arity ?? 0), arity, 300, { strategy });
        }
        assert.ok(hits > 500, `hits ${hits}`);
      });
    }
  }
}

const dir = Deno.makeTempDirSync({ prefix: "warp-keys-model-" });
let n = 0;
for (const arity of [undefined, 1, 2, 3]) {
  for (const prim of [false, true]) {
    Deno.test(`keys model: shared backend keys agree with README model (arity ${arity}, ${prim ? "primitives" : "mixed"})`, () => {
      PRIM = prim;
      VALUE_KEYS = true;
      try {
        let hits = 0;
        for (let seed = 1; seed <= 10; seed++) {
          hits += run(seed * 104729 + (arity ?? 0), arity, 300, {
            backend: "shared",
            dir,
            name: `fz${n++}`,
            maxSize: 100000,
            maxKeySize: 1 << 20,
            maxBytes: 1 << 26,
          });
        }
        assert.ok(hits > 100, `hits ${hits}`);
      } finally {
        VALUE_KEYS = false;
      }
    });
    Deno.test(`keys model: memory cache with a remote tier keys agree with README model (arity ${arity}, ${prim ? "primitives" : "mixed"})`, () => {
      PRIM = prim;
      VALUE_KEYS = true;
      try {
        let hits = 0;
        for (let seed = 1; seed <= 10; seed++) {
          hits += run(seed * 7 + (arity ?? 0), arity, 300, {
            remote: fakeTier(new FakeServer()),
            name: `rfz${n++}`,
          });
        }
        assert.ok(hits > 100, `hits ${hits}`);
      } finally {
        VALUE_KEYS = false;
      }
    });
  }
}

Deno.test("keys model: clean up the shared files", () => {
  Deno.removeSync(dir, { recursive: true });
});
