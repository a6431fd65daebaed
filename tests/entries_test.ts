// Entries one by one: cacheGet, cacheSet, cacheDelete and [Symbol.dispose] on cached
// functions, memory (both engines: `deno task test` runs this file twice) and shared, sync
// and async, methods too; SieveCache's [Symbol.dispose].
import assert from "node:assert/strict";
import { cache, type CacheOptions, SieveCache } from "../mod.ts";
import { memoryEngine } from "../src/store/engine.ts";

const engine = memoryEngine();
const ffi = (await Deno.permissions.query({ name: "ffi" })).state === "granted";

/** The backends to run each test on: memory always, shared when the library loads. */
async function backends(
  body: (label: string, options: CacheOptions) => void | Promise<void>,
): Promise<void> {
  await body(`memory (${engine})`, { backend: "memory" });
  if (!ffi) return;
  const dir = await Deno.makeTempDir({ prefix: "warp_entries_" });
  try {
    await body("shared", { backend: "shared", dir, name: `e-${crypto.randomUUID()}` });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

Deno.test("cacheGet() reads an entry without calling, counting or marking it", async () => {
  await backends((label, options) => {
    let calls = 0;
    const f = cache({ ...options, maxSize: 2 })((x: number) => {
      calls++;
      return { x };
    });
    assert.equal(f.cacheGet(1), undefined, label);
    f(1);
    f(2);
    assert.deepEqual(f.cacheGet(1), { x: 1 }, label);
    assert.deepEqual(f.cacheInfo(), { ...f.cacheInfo(), hits: 0, misses: 2 }, label);
    assert.equal(calls, 2);
    // 1 was only read through cacheGet: not visited, so SIEVE evicts it first.
    f(3);
    assert.equal(f.cacheGet(1), undefined, `${label}: 1 was evicted`);
    assert.deepEqual(f.cacheGet(2), { x: 2 }, label);
  });
});

Deno.test("cacheGet() on the memory backend returns the very value", () => {
  const value = { big: true };
  const f = cache()((_x: number) => value);
  f(1);
  assert.equal(f.cacheGet(1), value);
});

Deno.test("cacheGet() of an expired entry is undefined", async () => {
  let now = Date.now();
  await backends((label, options) => {
    const f = cache({ ...options, ttl: 100, clock: () => now })((x: number) => x * 2);
    f(1);
    now += 99;
    assert.equal(f.cacheGet(1), 2, label);
    now += 1;
    assert.equal(f.cacheGet(1), undefined, label);
  });
});

Deno.test("cacheSet() stores a value that later calls hit, inserted now", async () => {
  let now = Date.now();
  await backends((label, options) => {
    let calls = 0;
    const f = cache({ ...options, ttl: 100, clock: () => now })((x: number) => {
      calls++;
      return `computed ${x}`;
    });
    f.cacheSet("primed", 1);
    assert.equal(f(1), "primed", label);
    assert.equal(calls, 0);
    f(2);
    now += 50;
    f.cacheSet("replaced", 2); // a new insertion time
    now += 60;
    assert.equal(f(2), "replaced", `${label}: 110 ms after the call, 60 after the set`);
    assert.equal(calls, 1);
    now += 40;
    assert.equal(f(2), "computed 2", `${label}: expired 100 ms after the set`);
  });
});

Deno.test("cacheSet() on an async function: hits return a Promise of the value", async () => {
  await backends(async (label, options) => {
    let calls = 0;
    const f = cache(options)(async (x: number) => {
      calls++;
      await Promise.resolve();
      return { x };
    });
    f.cacheSet({ x: -1 }, 1);
    const hit = f(1);
    assert.ok(hit instanceof Promise, label);
    assert.deepEqual(await hit, { x: -1 });
    assert.deepEqual(f.cacheGet(1), { x: -1 }, `${label}: cacheGet gives the resolved value`);
    assert.equal(calls, 0);
    // A Promise given to cacheSet is stored by its resolved value.
    f.cacheSet(Promise.resolve({ x: -2 }) as unknown as { x: number }, 2);
    assert.deepEqual(await f(2), { x: -2 }, label);
    assert.equal(calls, 0);
  });
});

Deno.test("cacheSet() of a pending Promise over an entry: calls made meanwhile join it", async () => {
  await backends(async (label, options) => {
    let calls = 0;
    const f = cache(options)(async (x: number) => {
      calls++;
      await Promise.resolve();
      return `computed ${x} #${calls}`;
    });
    assert.equal(await f(1), "computed 1 #1");
    const next = Promise.withResolvers<string>();
    f.cacheSet(next.promise as unknown as string, 1);
    const meanwhile = f(1);
    assert.ok(meanwhile instanceof Promise, label);
    next.resolve("set by hand");
    assert.equal(await meanwhile, "set by hand", `${label}: the old entry is not served`);
    assert.equal(await f(1), "set by hand", label);
    assert.equal(calls, 1, `${label}: nothing computed again`);
    // A Promise that rejects leaves the key absent: the next call computes.
    const failing = Promise.withResolvers<string>();
    f.cacheSet(failing.promise as unknown as string, 1);
    const joined = f(1);
    failing.reject(new Error("no value"));
    await assert.rejects(joined, /no value/, label);
    assert.equal(await f(1), "computed 1 #2", label);
    assert.equal(calls, 2, label);
    f[Symbol.dispose]();
  });
});

Deno.test("cacheSet() during a computation: the computation's result is not stored", async () => {
  await backends(async (label, options) => {
    let release!: () => void;
    const gate = new Promise<void>((r) => release = r);
    let calls = 0;
    const f = cache(options)(async (x: number) => {
      calls++;
      await gate;
      return `slow ${x}`;
    });
    const pending = f(1);
    f.cacheSet("set by hand", 1);
    release();
    assert.equal(await pending, "slow 1", `${label}: the caller still gets its result`);
    assert.equal(await f(1), "set by hand", label);
    assert.equal(calls, 1);
  });
});

Deno.test("cacheDelete() removes one entry and says whether there was one", async () => {
  await backends((label, options) => {
    let calls = 0;
    const f = cache(options)((a: number, b: string) => {
      calls++;
      return `${a}${b}`;
    });
    f(1, "x");
    f(2, "y");
    assert.equal(f.cacheDelete(1, "x"), true, label);
    assert.equal(f.cacheDelete(1, "x"), false, label);
    assert.equal(f.cacheGet(1, "x"), undefined);
    assert.equal(f.cacheGet(2, "y"), "2y", `${label}: the other entry stays`);
    f(1, "x");
    assert.equal(calls, 3, `${label}: recomputed after the delete`);
    assert.equal(f.cacheInfo().currentSize, 2);
  });
});

Deno.test("cacheDelete() during a computation: it settles, nothing is stored, the next call computes", async () => {
  await backends(async (label, options) => {
    let release!: () => void;
    let gate = new Promise<void>((r) => release = r);
    let calls = 0;
    const f = cache(options)(async (x: number) => {
      calls++;
      await gate;
      return `v${x}#${calls}`;
    });
    const first = f(1);
    assert.equal(f.cacheDelete(1), false, `${label}: nothing stored yet`);
    const second = f(1); // not joined to the detached computation
    release();
    assert.equal(await first, "v1#2");
    assert.equal(await second, "v1#2");
    assert.equal(calls, 2, label);
    gate = Promise.resolve();
    assert.equal(await f(1), "v1#2", `${label}: the second computation was stored`);
    assert.equal(calls, 2);
  });
});

Deno.test("cacheGet/cacheSet/cacheDelete use the key option", async () => {
  await backends((label, options) => {
    const f = cache({ ...options, key: (user: { id: number }) => user.id })(
      (user: { id: number; name: string }) => user.name.toUpperCase(),
    );
    f({ id: 1, name: "ada" });
    assert.equal(f.cacheGet({ id: 1, name: "other" }), "ADA", label);
    f.cacheSet("SET", { id: 2, name: "x" });
    assert.equal(f({ id: 2, name: "bob" }), "SET");
    assert.equal(f.cacheDelete({ id: 1, name: "" }), true);
  });
});

Deno.test("entry controls on a decorated method take the instance as this", () => {
  class Users {
    calls = 0;
    @cache({ maxSize: 16 })
    find(id: number): string {
      this.calls++;
      return `user ${id}`;
    }
  }
  const a = new Users();
  const b = new Users();
  a.find(1);
  const find = a.find as unknown as {
    cacheGet: (this: unknown, id: number) => unknown;
    cacheSet: (this: unknown, v: string, id: number) => void;
    cacheDelete: (this: unknown, id: number) => boolean;
  };
  assert.equal(find.cacheGet.call(a, 1), "user 1");
  assert.equal(find.cacheGet.call(b, 1), undefined, "b's entry is another key");
  find.cacheSet.call(b, "primed", 1);
  assert.equal(b.find(1), "primed");
  assert.equal(b.calls, 0);
  assert.equal(find.cacheDelete.call(a, 1), true);
  a.find(1);
  assert.equal(a.calls, 2);
});

Deno.test("[Symbol.dispose]() releases the cache; later calls throw", async () => {
  await backends(async (label, options) => {
    const f = cache(options)((x: number) => x + 1);
    f(1);
    {
      using g = cache(options)((x: number) => Promise.resolve(x));
      await g(1);
    }
    f[Symbol.dispose]();
    f[Symbol.dispose](); // idempotent
    for (
      const use of [() => f(1), () => f.cacheGet(1), () => f.cacheInfo(), () => f.cacheSet(1, 1)]
    ) {
      assert.throws(use, /after it was disposed/, label);
    }
  });
});

Deno.test("[Symbol.dispose]() keeps a shared file and its entries for others", {
  ignore: !ffi,
}, async () => {
  const dir = await Deno.makeTempDir({ prefix: "warp_entries_" });
  try {
    const a = cache({ backend: "shared", dir, name: "kept" })((x: number) => `a${x}`);
    a(1);
    a[Symbol.dispose]();
    const b = cache({ backend: "shared", dir, name: "kept" })((x: number) => `b${x}`);
    assert.equal(b(1), "a1");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("SieveCache [Symbol.dispose]() empties it; later calls throw", () => {
  const c = new SieveCache<string, number>({ maxSize: 4 });
  c.set("a", 1);
  {
    using d = new SieveCache<string, number>({ maxSize: 2 });
    d.set("x", 1);
  }
  c[Symbol.dispose]();
  assert.throws(() => c.get("a"), /after it was disposed/);
  assert.throws(() => c.set("b", 2), /after it was disposed/);
  c[Symbol.dispose]();
});
