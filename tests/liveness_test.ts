// Liveness of computations in one process (both engines: scripts/test.ts runs this file
// with WARP_CACHE_ENGINE=native and =ts): a computation that never settles keeps nothing
// per call that timed out waiting for it, and is abandoned by the next call of its key
// once it is older than `flightTimeout`.
import assert from "node:assert/strict";
import { cache, cacheContext } from "../mod.ts";

const root = new URL("../", import.meta.url).pathname;

Deno.test("timeout: calls that time out on a computation that never settles leave nothing behind", async () => {
  // In a child with --expose-gc, so that the heap is measured after a full collection.
  const code = `
    import { cache } from "${new URL("../mod.ts", import.meta.url).href}";
    const never = cache({ timeout: 1 })((k: number) => new Promise<number>(() => {}));
    const gc = (globalThis as unknown as { gc(): void }).gc;
    async function batch(n: number): Promise<void> {
      const calls = [];
      for (let i = 0; i < n; i++) calls.push(never(1).catch((e) => e.name));
      const names = await Promise.all(calls);
      if (names.some((n) => n !== "TimeoutError")) throw new Error("not a TimeoutError");
    }
    await batch(2000); // warm up
    gc();
    const before = Deno.memoryUsage().heapUsed;
    for (let i = 0; i < 10; i++) await batch(2000);
    gc();
    const after = Deno.memoryUsage().heapUsed;
    console.log(JSON.stringify({ perCall: (after - before) / 20000 }));
  `;
  const dir = await Deno.makeTempDir({ prefix: "warp_liveness_" });
  try {
    const file = `${dir}/leak.ts`;
    await Deno.writeTextFile(file, code);
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", "--v8-flags=--expose-gc", file],
      cwd: root,
      stdout: "piped",
      stderr: "inherit",
    }).output();
    assert.equal(out.code, 0);
    const { perCall } = JSON.parse(new TextDecoder().decode(out.stdout));
    // Each timed-out call kept about 2.1 KB before; a few bytes of noise are allowed.
    assert.ok(perCall < 100, `each timed-out call kept ${perCall} bytes`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("flightTimeout: a computation older than flightTimeout is abandoned by the next call of its key", async () => {
  let calls = 0;
  let firstSignal: AbortSignal | undefined;
  const f = cache({ flightTimeout: 100 })(async (k: number): Promise<number> => {
    calls++;
    if (calls === 1) {
      firstSignal = cacheContext()!.signal;
      return await new Promise<number>(() => {});
    }
    return k * 2;
  });
  void f(21);
  await Promise.resolve();
  // Within flightTimeout, a call joins the computation under way.
  const joined = f(21);
  assert.equal(calls, 1);
  assert.equal(f.cacheInfo().hits, 1);
  void joined;
  await new Promise((r) => setTimeout(r, 300));
  assert.equal(await f(21), 42, "the next call computed the key again");
  assert.equal(calls, 2);
  assert.equal(firstSignal?.aborted, true, "the abandoned computation's signal aborted");
  assert.equal(await f(21), 42);
  assert.equal(calls, 2, "its result was stored");
});

Deno.test("flightTimeout: Infinity never abandons; bad values are errors at decoration", async () => {
  assert.throws(() => cache({ flightTimeout: 0 }), RangeError);
  assert.throws(
    () => cache({ flightTimeout: -5 }),
    /flightTimeout must be a positive number of milliseconds or Infinity: received -5/,
  );
  assert.throws(() => cache({ flightTimeout: NaN }), RangeError);
  assert.throws(() => cache({ flightTimeout: "30s" as unknown as number }), TypeError);
  let calls = 0;
  let release = (_: number): void => {};
  const f = cache({ flightTimeout: Infinity })((_k: number): Promise<number> => {
    calls++;
    return new Promise<number>((r) => release = r);
  });
  const first = f(1);
  await new Promise((r) => setTimeout(r, 50));
  const second = f(1);
  assert.equal(calls, 1);
  release(7);
  assert.deepEqual(await Promise.all([first, second]), [7, 7]);
});
