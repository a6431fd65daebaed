// cacheContext(): the context of a computation (signal, setTtl, stale) inside a cached
// function, synchronous or async, also after an `await`, on both engines and backends.
import assert from "node:assert/strict";
import { cache, type CacheContext, cacheContext } from "../mod.ts";
import { backends } from "./fixtures/backends.ts";

function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void } {
  let resolve!: (v: T) => void;
  const promise = new Promise<T>((r) => resolve = r);
  return { promise, resolve };
}

Deno.test("cacheContext: undefined outside a cached computation, and on a hit", () => {
  assert.equal(cacheContext(), undefined);
  const seen: Array<CacheContext | undefined> = [];
  const f = cache()((x: number) => {
    seen.push(cacheContext());
    return x;
  });
  f(1);
  f(1);
  assert.equal(seen.length, 1, "a hit does not run the function");
  assert.ok(seen[0] !== undefined);
  assert.equal(cacheContext(), undefined, "none after the call");
});

Deno.test("cacheContext: the same context before and after an await, one per computation", async () => {
  await backends(async (label) => {
    const pairs: Array<[CacheContext | undefined, CacheContext | undefined]> = [];
    const f = cache()(async (x: number) => {
      const before = cacheContext();
      await new Promise((r) => setTimeout(r, 1));
      await null;
      pairs.push([before, cacheContext()]);
      return x;
    });
    await Promise.all([f(1), f(2), f(1)]);
    assert.equal(pairs.length, 2, `${label}: one computation per key`);
    for (const [before, after] of pairs) {
      assert.ok(before !== undefined, label);
      assert.equal(after, before, `${label}: the same context after the await`);
    }
    assert.notEqual(pairs[0]![0], pairs[1]![0], `${label}: a context per computation`);
  });
});

Deno.test("cacheContext: a plain function returning a Promise has it in callbacks from its first call", async () => {
  const got: Array<CacheContext | undefined> = [];
  const f = cache()((x: number) =>
    Promise.resolve(x).then((v) => {
      got.push(cacheContext());
      return v;
    })
  );
  assert.equal(await f(1), 1);
  assert.equal(await f(2), 2);
  assert.equal(got.length, 2);
  assert.ok(got.every((c) => c !== undefined));
});

Deno.test("cacheContext: nested computations each see their own, also after a nested throw", () => {
  const outerSeen: Array<CacheContext | undefined> = [];
  let innerCtx: CacheContext | undefined;
  const inner = cache()((x: number) => {
    innerCtx = cacheContext();
    if (x < 0) throw new RangeError("negative");
    return x;
  });
  const outer = cache()((x: number) => {
    outerSeen.push(cacheContext());
    inner(x);
    outerSeen.push(cacheContext());
    try {
      inner(-x - 1);
    } catch {
      // The inner computation threw: the outer one is current again.
    }
    outerSeen.push(cacheContext());
    return x;
  });
  outer(1);
  outer(2);
  assert.equal(outerSeen.length, 6);
  assert.ok(innerCtx !== undefined);
  for (const call of [0, 1]) {
    const [a, b, c] = outerSeen.slice(call * 3, call * 3 + 3);
    assert.ok(a !== undefined);
    assert.equal(b, a, "after a nested call");
    assert.equal(c, a, "after a nested throw");
    assert.notEqual(a, innerCtx);
  }
  assert.equal(cacheContext(), undefined);
});

Deno.test("cacheContext: signal is aborted by cacheDelete, cacheClear and dispose; callers still get the result", async () => {
  await backends(async (label, options) => {
    for (const how of ["cacheDelete", "cacheClear", "dispose"] as const) {
      const gate = deferred();
      let signal: AbortSignal | undefined;
      const f = cache({ ...options, name: `${options.name ?? "m"}-${how}` })(
        async (x: number) => {
          signal = cacheContext()!.signal;
          await gate.promise;
          return x * 10;
        },
      );
      const call = f(4);
      await null;
      assert.ok(signal !== undefined && !signal.aborted, `${label} ${how}: not aborted yet`);
      if (how === "cacheDelete") f.cacheDelete(4);
      else if (how === "cacheClear") f.cacheClear();
      else f[Symbol.dispose]();
      assert.equal(signal.aborted, true, `${label} ${how}: aborted`);
      assert.ok(signal.reason instanceof DOMException);
      assert.equal(signal.reason.name, "AbortError");
      assert.match(signal.reason.message, new RegExp(how === "dispose" ? "disposing" : how));
      gate.resolve();
      assert.equal(await call, 40, `${label} ${how}: the caller still gets its value`);
      if (how !== "dispose") {
        assert.equal(f.cacheGet(4), undefined, `${label} ${how}: the result is not stored`);
        f[Symbol.dispose]();
      }
    }
  });
});

Deno.test("cacheContext: signal read after the detach is aborted; cacheSet and completion do not abort", async () => {
  const gate = deferred();
  let ctx: CacheContext | undefined;
  const f = cache()(async (x: number) => {
    ctx = cacheContext();
    await gate.promise;
    return x;
  });
  const call = f(1);
  f.cacheDelete(1);
  assert.equal(ctx!.signal.aborted, true, "a signal first read after the detach");
  gate.resolve();
  await call;

  const gate2 = deferred();
  let signal2: AbortSignal | undefined;
  const g = cache()(async (x: number) => {
    signal2 = cacheContext()!.signal;
    await gate2.promise;
    return x;
  });
  const call2 = g(1);
  g.cacheSet(5, 1);
  gate2.resolve();
  assert.equal(await call2, 1);
  assert.equal(signal2!.aborted, false);
  assert.equal(await g(1), 5, "cacheSet's value stays");
});

Deno.test("setTtl: an entry's own TTL replaces the cache's, longer or shorter, on every backend", async () => {
  // deno-lint-ignore require-await
  await backends(async (label, options) => {
    let now = 1_000_000;
    let calls = 0;
    const ttls = new Map<number, number>([[1, 10], [2, 500], [3, Infinity]]);
    const f = cache({ ...options, ttl: 100, clock: () => now })((x: number) => {
      calls++;
      const own = ttls.get(x);
      if (own !== undefined) cacheContext()!.setTtl(own);
      return x * 2;
    });
    for (const x of [1, 2, 3, 4]) f(x);
    assert.equal(calls, 4);
    now += 9;
    for (const x of [1, 2, 3, 4]) f(x);
    assert.equal(calls, 4, `${label}: all fresh at 9 ms`);
    now += 1; // 10 ms: key 1's own TTL ends
    f(1);
    assert.equal(calls, 5, `${label}: own TTL of 10 ms`);
    now += 90; // 100 ms: the cache's TTL ends for key 4 (and key 1's new entry is 90 ms old)
    f(4);
    f(2);
    f(3);
    assert.equal(calls, 6, `${label}: key 4 expired at the cache's TTL, keys 2 and 3 live on`);
    now += 400; // 500 ms
    f(2);
    f(3);
    assert.equal(calls, 7, `${label}: own TTL of 500 ms ends; Infinity never does`);
    now += 1e9;
    f(3);
    assert.equal(calls, 7, `${label}: Infinity`);
    f[Symbol.dispose]();
  });
});

Deno.test("setTtl: works on a cache without ttl, after an await, and 0 stores nothing", async () => {
  await backends(async (label, options) => {
    let now = 5_000;
    let calls = 0;
    const f = cache({ ...options, clock: () => now })(async (x: number) => {
      calls++;
      await null;
      cacheContext()!.setTtl(x);
      return x;
    });
    await f(50);
    await f(0);
    await f(50);
    assert.equal(calls, 2, `${label}: a hit before its own TTL`);
    await f(0);
    assert.equal(calls, 3, `${label}: setTtl(0): returned, not stored`);
    now += 50;
    await f(50);
    assert.equal(calls, 4, `${label}: expired at its own TTL on a cache without ttl`);
    f[Symbol.dispose]();
  });
});

Deno.test("setTtl: the value is checked; a call after the result was stored does nothing", () => {
  let kept: CacheContext | undefined;
  let now = 0;
  let calls = 0;
  const f = cache({ ttl: 100, clock: () => now })((x: unknown) => {
    calls++;
    kept = cacheContext();
    if (x !== undefined) kept!.setTtl(x as number);
    return 1;
  });
  assert.throws(() => f("5"), (e: unknown) => {
    assert.ok(e instanceof TypeError);
    assert.match(e.message, /setTtl takes milliseconds \(a number\): received "5"/);
    return true;
  });
  for (const bad of [-1, NaN]) {
    assert.throws(() => f(bad), (e: unknown) => {
      assert.ok(e instanceof RangeError);
      assert.match(e.message, new RegExp(`setTtl takes 0, a positive number.*received ${bad}`));
      return true;
    });
  }
  f(undefined);
  kept!.setTtl(1); // after the result was stored: no effect
  now = 50;
  f(undefined);
  assert.equal(calls, 4, "still fresh at 50 ms: the late setTtl did nothing");
});

Deno.test("cacheContext: stale is undefined for a miss", async () => {
  let stale: unknown = "unset";
  // deno-lint-ignore require-await
  const f = cache({ ttl: 1000 })(async () => {
    stale = cacheContext()!.stale;
    return 1;
  });
  await f();
  assert.equal(stale, undefined);
});
