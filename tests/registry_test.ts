// caches() and clearAll(): every live cache of the process with its info, weakly held.
import assert from "node:assert/strict";
import { cache, caches, clearAll, SieveCache } from "../mod.ts";
import { memoryEngine } from "../src/store/engine.ts";

const ffi = (await Deno.permissions.query({ name: "ffi" })).state === "granted";
const run = (await Deno.permissions.query({ name: "run" })).state === "granted";

Deno.test("caches() lists each live cache with its name, backend, strategy and info", async () => {
  const square = cache({ maxSize: 8, strategy: "lru" })(function square(x: number): number {
    return x * x;
  });
  square(2);
  square(2);
  const listing = caches().find((c) => c.name === "square");
  assert.deepEqual(listing, {
    name: "square",
    backend: "memory",
    strategy: "lru",
    engine: memoryEngine(),
    info: { hits: 1, misses: 1, maxSize: 8, currentSize: 1 },
    evictions: 0,
  });
  if (ffi) {
    const dir = await Deno.makeTempDir({ prefix: "warp_registry_" });
    try {
      const shared = cache({ backend: "shared", dir, name: "listed" })((x: number) => x);
      shared(1);
      const s = caches().find((c) => c.name === "listed");
      assert.equal(s?.backend, "shared");
      assert.equal(s?.strategy, "sieve");
      assert.equal(s?.engine, "shared");
      assert.equal(s?.dir, dir, "a shared cache names the directory of its file");
      assert.equal(s?.info.misses, 1);
      shared[Symbol.dispose]();
      assert.equal(caches().find((c) => c.name === "listed"), undefined, "disposed: gone");
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
  square[Symbol.dispose]();
  assert.equal(caches().find((c) => c.name === "square"), undefined);
});

Deno.test("caches() names an anonymous function by where it was decorated", () => {
  const anon = cache({ strategy: "lfu" })((x: number) => x + 1);
  anon(1);
  const mine = caches().filter((c) => c.name.startsWith("(anonymous)"));
  const listed = mine.find((c) => /registry_test\.ts:\d+:\d+$/.test(c.name));
  assert.ok(listed, JSON.stringify(caches().map((c) => c.name)));
  assert.match(listed.name, /^\(anonymous\) file:\/\/.*registry_test\.ts:\d+:\d+$/);
  assert.equal(listed.backend, "memory");
  assert.equal(listed.strategy, "lfu");
  assert.equal(listed.info.misses, 1);
  anon[Symbol.dispose]();
});

Deno.test("clearAll() clears every live cache and says how many", () => {
  const a = cache()(function clearA(x: number): number {
    return x;
  });
  const b = cache({ ttl: 1000 })(function clearB(x: number): number[] {
    return [x];
  });
  a(1);
  b(1);
  b(2);
  const n = clearAll();
  assert.ok(n >= 2, `${n} caches cleared`);
  assert.deepEqual(a.cacheInfo(), { hits: 0, misses: 0, maxSize: 128, currentSize: 0 });
  assert.equal(b.cacheInfo().currentSize, 0);
  a[Symbol.dispose]();
  b[Symbol.dispose]();
});

Deno.test("caches() lists each SieveCache with its name and counters; disposed, it leaves", () => {
  const sieve = new SieveCache<string, number>({ maxSize: 2, name: "sieveListed" });
  sieve.set("a", 1).set("b", 2);
  sieve.get("a");
  sieve.get("z");
  sieve.set("c", 3); // full: "b" is evicted ("a" was visited)
  assert.deepEqual(caches().find((c) => c.name === "sieveListed"), {
    name: "sieveListed",
    backend: "memory",
    strategy: "sieve",
    info: { hits: 1, misses: 1, maxSize: 2, currentSize: 2 },
    evictions: 1,
  });
  assert.deepEqual(sieve.info(), {
    hits: 1,
    misses: 1,
    evictions: 1,
    maxSize: 2,
    currentSize: 2,
  });
  const unnamed = new SieveCache<number, number>({ maxSize: 4 });
  assert.ok(caches().some((c) => c.name === "SieveCache"), "default name");
  assert.ok(clearAll() >= 2);
  assert.deepEqual(sieve.info(), {
    hits: 0,
    misses: 0,
    evictions: 0,
    maxSize: 2,
    currentSize: 0,
  }, "clearAll() clears a SieveCache and its counters");
  sieve[Symbol.dispose]();
  unnamed[Symbol.dispose]();
  assert.equal(caches().find((c) => c.name === "sieveListed"), undefined, "disposed: gone");
  assert.throws(
    () => new SieveCache({ maxSize: 2, name: 7 as unknown as string }),
    (e: Error) => e instanceof TypeError && /name must be a string: received 7/.test(e.message),
  );
});

Deno.test("caches() counts the evictions of every backend; a clear resets them", async () => {
  const f = cache({ maxSize: 4 })(function evictingMemory(x: number): number {
    return x;
  });
  for (let i = 0; i < 10; i++) f(i);
  const mem = caches().find((c) => c.name === "evictingMemory");
  assert.equal(mem?.evictions, 6, "10 keys into 4 slots: 6 evicted");
  assert.equal(mem?.info.currentSize, 4);
  f.cacheClear();
  assert.equal(caches().find((c) => c.name === "evictingMemory")?.evictions, 0);
  f[Symbol.dispose]();
  if (ffi) {
    const dir = await Deno.makeTempDir({ prefix: "warp_registry_" });
    try {
      const shared = cache({ backend: "shared", dir, name: "evictingShared", maxSize: 4 })(
        (x: number) => x,
      );
      for (let i = 0; i < 10; i++) shared(i);
      const s = caches().find((c) => c.name === "evictingShared");
      assert.equal(s?.evictions, 6);
      assert.equal(s?.info.currentSize, 4);
      shared[Symbol.dispose]();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test({
  name: "caches() does not keep a cache alive whose function was dropped",
  ignore: !run,
  fn: async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--v8-flags=--expose-gc",
        new URL("./fixtures/registry_gc.ts", import.meta.url).pathname,
      ],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    assert.ok(out.success);
    const r = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.equal(r.made, 32);
    assert.deepEqual(
      r.left,
      ["kept", "keptSieve"],
      "the 20 dropped caches and the 10 dropped SieveCaches left the registry",
    );
    assert.equal(r.keptWorks, true);
  },
});
