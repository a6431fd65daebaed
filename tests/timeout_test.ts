// The `timeout` option: a call of an async function that would wait longer than `timeout`
// ms rejects with a TimeoutError; the computation goes on and its result is stored.
import assert from "node:assert/strict";
import { cache } from "../mod.ts";
import { backends } from "./fixtures/backends.ts";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function isTimeout(e: unknown): boolean {
  assert.ok(e instanceof DOMException, String(e));
  assert.equal(e.name, "TimeoutError");
  assert.match(e.message, /did not settle within the cache's timeout of 30 ms/);
  return true;
}

Deno.test("timeout: callers give up, the computation goes on and is stored", async () => {
  await backends(async (label, options) => {
    let calls = 0;
    let release!: () => void;
    const gate = new Promise<void>((r) => release = r);
    const f = cache({ ...options, timeout: 30 })(async function slow(x: number): Promise<string> {
      calls++;
      await gate;
      return `v${x}`;
    });
    const first = f(1);
    const joined = f(1);
    await assert.rejects(first, isTimeout, label);
    await assert.rejects(joined, isTimeout, label);
    release();
    await sleep(10);
    assert.equal(await f(1), "v1", `${label}: stored when it resolved`);
    assert.equal(calls, 1);
    assert.deepEqual(
      [f.cacheInfo().hits, f.cacheInfo().misses],
      [2, 1],
      `${label}: the join and the last call are hits`,
    );
  });
});

Deno.test("timeout: a computation within it returns its value; a rejection is kept as is", async () => {
  await backends(async (label, options) => {
    const f = cache({ ...options, timeout: 30 })(async (x: number) => {
      await sleep(1);
      if (x < 0) throw new RangeError("negative");
      return x * 2;
    });
    assert.equal(await f(2), 4, label);
    await assert.rejects(f(-1), RangeError);
    // No timer is left behind (Deno's test sanitizer fails a test that leaks one).
  });
});

Deno.test("timeout: a function that returns no Promise is not bounded", () => {
  const f = cache({ timeout: 1 })((x: number) => {
    const end = performance.now() + 5;
    while (performance.now() < end) {
      // busy
    }
    return x;
  });
  assert.equal(f(3), 3);
});

Deno.test("timeout: bad values are errors naming the option", () => {
  for (const bad of [0, -1, NaN, Infinity]) {
    assert.throws(() => cache({ timeout: bad }), RangeError);
  }
  assert.throws(
    () => cache({ timeout: "5" as unknown as number }),
    /timeout must be a positive finite number of milliseconds: received "5"/,
  );
});
