// staleWhileRevalidate: the stale window after the TTL, one background refresh per key,
// failed refreshes keeping the stale value, and timeouts answered by it; with an injected
// clock for every window boundary, on both engines and both backends.
import assert from "node:assert/strict";
import { cache, cacheContext } from "../mod.ts";
import { backends } from "./fixtures/backends.ts";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** Lets queued microtasks and timers of 0 ms run (a background refresh starts in one). */
const settle = () => sleep(0);

Deno.test("staleWhileRevalidate: checked at decoration", () => {
  assert.throws(() => cache({ staleWhileRevalidate: 100 }), (e: unknown) => {
    assert.ok(e instanceof TypeError);
    assert.match(e.message, /staleWhileRevalidate needs ttl.*received 100/);
    return true;
  });
  for (const bad of [0, -5, NaN, Infinity]) {
    assert.throws(() => cache({ ttl: 10, staleWhileRevalidate: bad }), (e: unknown) => {
      assert.ok(e instanceof RangeError);
      assert.match(e.message, new RegExp(`staleWhileRevalidate must be a positive finite.*${bad}`));
      return true;
    });
  }
  assert.throws(
    () => cache({ ttl: 10, staleWhileRevalidate: "1s" as unknown as number }),
    /staleWhileRevalidate must be a positive finite number of milliseconds: received "1s"/,
  );
});

Deno.test("staleWhileRevalidate: every window boundary, sync function", async () => {
  await backends(async (label, options) => {
    let now = 1_000_000;
    let calls = 0;
    const f = cache({ ...options, ttl: 100, staleWhileRevalidate: 50, clock: () => now })(
      (x: number) => `${x}:${++calls}`,
    );
    const t0 = now;
    assert.equal(f(1), "1:1");
    now = t0 + 99;
    assert.equal(f(1), "1:1", `${label}: fresh at ttl - 1`);
    await settle();
    assert.equal(calls, 1, `${label}: no refresh while fresh`);

    now = t0 + 100;
    assert.equal(f(1), "1:1", `${label}: stale at ttl, returned at once`);
    assert.equal(calls, 1, `${label}: the refresh runs in the background, not in the call`);
    await settle();
    assert.equal(calls, 2, `${label}: one refresh`);
    assert.equal(f(1), "1:2", `${label}: the refreshed value, fresh`);
    let info = f.cacheInfo();
    assert.deepEqual(
      [info.hits, info.misses, info.staleHits, info.refreshes],
      [3, 1, 1, 1],
      `${label}: the stale call is a hit and a stale hit`,
    );

    // The refreshed entry was inserted at t0 + 100.
    now = t0 + 100 + 149;
    assert.equal(f(1), "1:2", `${label}: stale at ttl + window - 1`);
    await settle();
    assert.equal(calls, 3);
    now = t0 + 249 + 150;
    assert.equal(f(1), "1:4", `${label}: gone at ttl + window: a miss computed in the call`);
    await settle();
    assert.equal(calls, 4, `${label}: no refresh for a miss`);
    info = f.cacheInfo();
    assert.deepEqual([info.staleHits, info.refreshes, info.misses], [2, 2, 2], label);
    f[Symbol.dispose]();
  });
});

Deno.test("staleWhileRevalidate: one refresh per key; calls during it get the stale value", async () => {
  await backends(async (label, options) => {
    let now = 2_000_000;
    let calls = 0;
    let release!: () => void;
    let gate = Promise.resolve();
    const f = cache({ ...options, ttl: 10, staleWhileRevalidate: 1000, clock: () => now })(
      async (x: number) => {
        const n = ++calls;
        await gate;
        return x * 100 + n;
      },
    );
    assert.equal(await f(1), 101);
    gate = new Promise<void>((r) => release = r);
    now += 20;
    const results = await Promise.all([f(1), f(1), f(1)]);
    await settle();
    assert.deepEqual(results, [101, 101, 101], label);
    assert.equal(await f(1), 101, `${label}: still stale while the refresh runs`);
    assert.equal(calls, 2, `${label}: one refresh`);
    release();
    await sleep(5);
    assert.equal(await f(1), 102, `${label}: refreshed`);
    const info = f.cacheInfo();
    assert.deepEqual([info.staleHits, info.refreshes], [4, 1], label);
    f[Symbol.dispose]();
  });
});

Deno.test("staleWhileRevalidate: a failed refresh keeps the stale value until the window ends", async () => {
  await backends(async (label, options) => {
    let now = 3_000_000;
    let fail = false;
    let calls = 0;
    const f = cache({ ...options, ttl: 10, staleWhileRevalidate: 100, clock: () => now })(
      async (x: number) => {
        calls++;
        await null;
        if (fail) throw new Error("upstream down");
        return x + calls;
      },
    );
    const t0 = now;
    assert.equal(await f(1), 2);
    fail = true;
    now = t0 + 50;
    assert.equal(await f(1), 2, `${label}: stale`);
    await sleep(2);
    assert.equal(calls, 2, `${label}: the refresh ran and failed`);
    assert.equal(await f(1), 2, `${label}: still stale after the failure`);
    await sleep(2);
    assert.equal(calls, 3, `${label}: a new refresh after a failed one`);
    now = t0 + 110;
    await assert.rejects(
      f(1),
      /upstream down/,
      `${label}: past the window the error reaches the caller`,
    );
    assert.equal(f.cacheInfo().refreshes, 2);
    f[Symbol.dispose]();
  });
});

Deno.test("staleWhileRevalidate: the refresh sees the stale value in its context", async () => {
  let now = 0;
  const seen: unknown[] = [];
  // deno-lint-ignore require-await
  const f = cache({ ttl: 10, staleWhileRevalidate: 100, clock: () => now })(async () => {
    seen.push(cacheContext()?.stale);
    return seen.length;
  });
  assert.equal(await f(), 1);
  now = 15;
  assert.equal(await f(), 1);
  await sleep(2);
  assert.deepEqual(seen, [undefined, 1]);
  assert.equal(await f(), 2);
});

Deno.test("staleWhileRevalidate: a refresh detached by cacheDelete is not stored", async () => {
  let now = 0;
  let release!: () => void;
  let gate = Promise.resolve();
  let calls = 0;
  const f = cache({ ttl: 10, staleWhileRevalidate: 100, clock: () => now })(async () => {
    calls++;
    await gate;
    return calls;
  });
  assert.equal(await f(), 1);
  gate = new Promise<void>((r) => release = r);
  now = 20;
  assert.equal(await f(), 1, "stale");
  await settle();
  assert.equal(f.cacheDelete(), true);
  release();
  await sleep(2);
  assert.equal(f.cacheGet(), undefined, "the detached refresh stored nothing");
  assert.equal(await f(), 3, "a new computation");
});

Deno.test("timeout: a caller that waits past it for a refresh gets the stale value", async () => {
  await backends(async (label, options) => {
    let now = 4_000_000;
    let release!: () => void;
    let gate = Promise.resolve();
    let calls = 0;
    const f = cache({
      ...options,
      ttl: 10,
      staleWhileRevalidate: 100,
      timeout: 20,
      clock: () => now,
    })(async () => {
      calls++;
      await gate;
      return calls;
    });
    assert.equal(await f(), 1);
    gate = new Promise<void>((r) => release = r);
    now += 50;
    assert.equal(await f(), 1, `${label}: stale, refresh started`);
    await settle();
    now += 100; // past the window: the entry is gone, the refresh goes on
    assert.equal(await f(), 1, `${label}: joined the refresh, timed out, got its stale value`);
    const info = f.cacheInfo();
    assert.deepEqual([info.staleHits, info.refreshes, calls], [2, 1, 2], label);
    release();
    await sleep(5);
    assert.equal(await f(), 2, `${label}: the refresh's result was stored`);
    f[Symbol.dispose]();
  });
});

Deno.test("cacheInfo: staleHits and refreshes only where staleWhileRevalidate or timeout is set", () => {
  assert.deepEqual(Object.keys(cache()((x: number) => x).cacheInfo()).sort(), [
    "currentSize",
    "hits",
    "maxSize",
    "misses",
  ]);
  const f = cache({ ttl: 5, staleWhileRevalidate: 5 })((x: number) => x);
  f(1);
  assert.deepEqual(f.cacheInfo(), {
    hits: 0,
    misses: 1,
    maxSize: 128,
    currentSize: 1,
    staleHits: 0,
    refreshes: 0,
  });
  assert.equal(cache({ timeout: 5 })(() => Promise.resolve(1)).cacheInfo().staleHits, 0);
});
