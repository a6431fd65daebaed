// caches() and clearAll(): every live cache of the process with its info, weakly held.
import assert from "node:assert/strict";
import { Backend, cache, caches, clearAll, Strategy } from "../mod.ts";

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
    backend: Backend.Memory,
    strategy: Strategy.Lru,
    info: { hits: 1, misses: 1, maxSize: 8, currentSize: 1 },
  });
  if (ffi) {
    const dir = await Deno.makeTempDir({ prefix: "warp_registry_" });
    try {
      const shared = cache({ backend: "shared", dir, name: "listed" })((x: number) => x);
      shared(1);
      const s = caches().find((c) => c.name === "listed");
      assert.equal(s?.backend, Backend.Shared);
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
    assert.equal(r.made, 21);
    assert.deepEqual(r.left, ["kept"], "the 20 dropped caches left the registry");
    assert.equal(r.keptWorks, true);
  },
});
