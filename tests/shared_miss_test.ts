// The miss path of a shared cache (issue "Fastest on every row"): a miss makes two library
// calls (a lookup that claims the key's flight when it misses, and the owner's set, which
// ends the flight), and the owner stores only while its flight is still its own, checked
// by the library under the write lock.
import assert from "node:assert/strict";
import { cache } from "../mod.ts";
import { loadNative } from "../src/native/ffi.ts";

async function withDir(fn: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp-shared-miss-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Counts the calls of every `warp_shm_*` symbol of the library while `body` runs. */
function counting(body: () => void): Record<string, number> {
  const lib = loadNative()! as unknown as Record<string, unknown>;
  const calls: Record<string, number> = {};
  const saved = new Map<string, unknown>();
  for (const name of Object.keys(lib)) {
    const f = lib[name];
    const writable = Object.getOwnPropertyDescriptor(lib, name)?.writable === true;
    // (The nonblocking flight dispatcher's symbol is read-only; no miss calls it.)
    if (!name.startsWith("warp_shm_") || typeof f !== "function" || !writable) continue;
    saved.set(name, f);
    lib[name] = (...args: unknown[]): unknown => {
      calls[name] = (calls[name] ?? 0) + 1;
      return (f as (...a: unknown[]) => unknown)(...args);
    };
  }
  try {
    body();
  } finally {
    for (const [name, f] of saved) lib[name] = f;
  }
  return calls;
}

Deno.test("cache() shared: a miss makes two library calls, a hit one", async () => {
  await withDir((dir) => {
    let computed = 0;
    const f = cache({ backend: "shared", dir, name: "calls", maxSize: 16 })((x: number) => {
      computed++;
      return x * 2;
    });
    f(0); // the first call sets the function's form up (sync or async)
    const miss = counting(() => assert.equal(f(1), 2));
    assert.equal(computed, 2);
    const total = (c: Record<string, number>): number =>
      Object.values(c).reduce((s, n) => s + n, 0);
    assert.equal(total(miss), 2, `calls of a miss: ${JSON.stringify(miss)}`);
    const hit = counting(() => assert.equal(f(1), 2));
    assert.equal(total(hit), 1, `calls of a hit: ${JSON.stringify(hit)}`);
    assert.equal(computed, 2);
    const info = f.cacheInfo();
    assert.deepEqual([info.hits, info.misses, info.currentSize], [1, 2, 2]);
    f[Symbol.dispose]();
  });
});

Deno.test("cache() shared: a cacheDelete while the result is being stored wins: the result is not stored", async () => {
  await withDir((dir) => {
    const opts = { backend: "shared", dir, name: "race", maxSize: 16 } as const;
    // Another cache of the same name (another handle on the file, as another process has).
    const other = cache(opts)((_x: number): unknown => "other");
    let deletes = 0;
    const f = cache(opts)((x: number): unknown => ({
      x,
      // Read by the value codec as it serializes the result, after the computation
      // returned and before the library stores it: key 1's first read deletes key 1.
      get late(): number {
        if (x === 1 && deletes++ === 0) assert.equal(other.cacheDelete(x), false);
        return 1;
      },
    }));
    f(0); // (the first call)
    assert.deepEqual(f(1), { x: 1, late: 1 });
    assert.equal(deletes > 0, true, "the value codec read the getter");
    assert.equal(other.cacheGet(1), undefined, "not stored after the delete");
    assert.equal(f.cacheInfo().currentSize, 1, "key 0 alone");
    // Without a delete meanwhile, the result is stored.
    assert.deepEqual(f(2), { x: 2, late: 1 });
    assert.deepEqual(other.cacheGet(2), { x: 2, late: 1 });
    f[Symbol.dispose]();
    other[Symbol.dispose]();
  });
});
