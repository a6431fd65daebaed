// The in-process call path under feature combinations (memory backend, both engines: run with
// WARP_CACHE_ENGINE=native and WARP_CACHE_ENGINE=ts). Each test combines features whose
// interplay the other suites do not cover.
import assert from "node:assert/strict";
import { cache, cacheContext, invalidateTags } from "../mod.ts";

let unique = 0;
/** A tag no other test uses. */
const tag = (name: string): string => `${name}#rt${++unique}`;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const settle = () => sleep(0);
import { until } from "./fixtures/until.ts";

Deno.test("call path: cacheSet on a tagged cache does not lend its tags to another cache's cacheSet", () => {
  const t = tag("pool");
  const tagged = cache({ tags: () => [t] })((k: number) => k);
  let loads = 0;
  const plain = cache()((k: string) => {
    loads++;
    return k.length;
  });
  tagged.cacheSet(1, 1); // holds a key, tags it, gives it back
  plain.cacheSet(42, "x"); // no tags option: its entry carries no tag
  invalidateTags(t);
  assert.equal(plain.cacheGet("x"), 42, "an entry of a cache without tags is not invalidated");
  assert.equal(plain("x"), 42);
  assert.equal(loads, 0);
});

Deno.test("call path: cacheSet on a tagged cache does not lend its tags to another cache's miss", () => {
  const t = tag("pool-miss");
  const tagged = cache({ tags: () => [t] })((k: number) => k);
  let loads = 0;
  const plain = cache()((k: number) => {
    loads++;
    return k * 10;
  });
  tagged.cacheSet(1, 1);
  assert.equal(plain(7), 70); // a miss: its key holder comes from the pool
  invalidateTags(t);
  assert.equal(plain(7), 70);
  assert.equal(loads, 1, "the entry of a cache without tags is a hit after invalidateTags");
  assert.deepEqual(
    { hits: plain.cacheInfo().hits, misses: plain.cacheInfo().misses },
    { hits: 1, misses: 1 },
  );
});

Deno.test("call path: timeout never answers with a stale value whose tags were invalidated", async () => {
  const t = tag("timeout-stale");
  let now = 0;
  let loads = 0;
  let release = (): void => {};
  const f = cache({
    ttl: 100,
    staleWhileRevalidate: 100,
    timeout: 20,
    tags: () => [t],
    clock: () => now,
  })(async (k: number): Promise<string> => {
    loads++;
    if (loads === 2) await new Promise<void>((r) => release = r); // the refresh hangs
    return `v${loads}:${k}`;
  });
  assert.equal(await f(1), "v1:1");
  now = 150; // stale
  assert.equal(await f(1), "v1:1", "the stale value, and a refresh starts");
  await settle();
  assert.equal(loads, 2, "the refresh runs");
  invalidateTags(t); // the stale entry may no longer be served
  // A call now must not get "v1:1": the entry is invalidated. It joins the refresh and,
  // past the timeout, gets... the refresh's stale value.
  const r = await f(1).then((v) => v, (e: Error) => e.name);
  release();
  assert.notEqual(r, "v1:1", "an invalidated value was served after a timeout");
});

Deno.test("call path: a call made after invalidateTags does not join a computation that started before it", async () => {
  const t = tag("join-after-invalidate");
  let loads = 0;
  let release = (): void => {};
  const f = cache({ tags: () => [t] })(async (k: number): Promise<string> => {
    const n = ++loads;
    if (n === 1) await new Promise<void>((r) => release = r);
    return `v${n}:${k}`;
  });
  const before = f(1);
  await settle();
  invalidateTags(t); // the data the first computation read is now out of date
  const after = f(1); // README: "its result is a miss for later calls"
  release();
  assert.equal(await before, "v1:1", "its callers still get its value");
  assert.equal(
    await after,
    "v2:1",
    "a later call got the result of a computation invalidated under it",
  );
});

Deno.test("call path: a computation that rejects after dispose rejects its callers with its own error (staleIfError)", async () => {
  let fail = (_e: Error): void => {};
  const f = cache({ ttl: 100, staleIfError: 100 })(async (_k: number): Promise<number> => {
    return await new Promise<number>((_, rej) => fail = rej);
  });
  const pending = f(1);
  await settle();
  f[Symbol.dispose]();
  fail(new Error("origin down"));
  await assert.rejects(pending, /origin down/);
});

Deno.test("call path: a synchronous computation that sets its own key does not store over the value set", () => {
  let loads = 0;
  const f = cache()((k: number): number => {
    loads++;
    f.cacheSet(99, k); // e.g. a batch load that primes the keys it read, this one included
    return 5;
  });
  assert.equal(f(1), 5);
  // README: "During a computation: cacheDelete and cacheSet of its key ... detach it: ...
  // its result is not stored ... (after cacheSet, the next call hits the value set)".
  assert.equal(f.cacheGet(1), 99);
  assert.equal(loads, 1);
});

Deno.test("call path: a synchronous computation that clears its cache does not store its result", () => {
  let loads = 0;
  const f = cache()((k: number): number => {
    loads++;
    if (k === 1) f.cacheClear();
    return k * 10;
  });
  assert.equal(f(1), 10);
  assert.equal(
    f.cacheInfo().currentSize,
    0,
    "cacheClear() during a pending call: its result is not stored",
  );
});

Deno.test("call path: a key recomputed after its entry expired is stored where its next call finds it", async () => {
  // No injected clock and no key option: calls of two numbers are lent one array.
  let loads = 0;
  const f = cache({ ttl: 1 })((a: number, b: number): number => {
    loads++;
    if (a === 0) throw new Error("no result for 0"); // found absent, never stored
    if (loads > 1) cacheContext()!.setTtl(60_000); // the recomputed entry stays fresh
    return a * 100 + b;
  });
  assert.equal(f(3, 4), 304);
  await until("the entry expired", () => f.cacheGet(3, 4) === undefined);
  assert.throws(() => f(0, 1), /no result/); // a key found absent whose result is not stored
  assert.equal(f(3, 4), 304); // recomputed: its expired entry goes, a new one is stored
  assert.equal(loads, 3);
  assert.equal(f.cacheInfo().currentSize, 1);
  assert.equal(f(3, 4), 304);
  assert.equal(loads, 3, "the entry just stored is a hit");
});

Deno.test("call path: a refresh stores over its stale entry, not beside it", async () => {
  let loads = 0;
  const f = cache({ ttl: 1, staleWhileRevalidate: 60_000 })((a: number, b: number): number => {
    loads++;
    if (a === 0) throw new Error("no result for 0");
    if (loads > 1) cacheContext()!.setTtl(60_000); // the refreshed entry stays fresh
    return a * 100 + b + 1000 * loads;
  });
  const first = f(3, 4);
  await until("the entry is stale", () => f.cacheGet(3, 4) === undefined);
  assert.throws(() => f(0, 1), /no result/);
  assert.equal(f(3, 4), first, "the stale value; a refresh starts");
  await until("the refresh ran", () => loads === 3);
  await settle();
  assert.equal(f.cacheInfo().currentSize, 1, "one entry for (3, 4)");
  const refreshed = f.cacheGet(3, 4);
  assert.equal(refreshed, 3304, "the refreshed value is stored");
  assert.equal(f(3, 4), 3304, "and is a hit");
  assert.equal(loads, 3);
});

Deno.test("call path: a failed background refresh answered by staleIfError counts no stale hit nobody got", async () => {
  let now = 0;
  let loads = 0;
  const f = cache({ ttl: 100, staleWhileRevalidate: 500, staleIfError: 500, clock: () => now })(
    async (k: number): Promise<number> => {
      loads++;
      await null;
      if (loads > 1) throw new Error("origin down");
      return k;
    },
  );
  assert.equal(await f(1), 1);
  now = 150;
  assert.equal(await f(1), 1, "one stale answer; a refresh starts and fails");
  await until("the refresh ran", () => loads === 2);
  await settle();
  const info = f.cacheInfo();
  // One call got a stale value; the refresh's failure reached no caller.
  assert.deepEqual(
    { hits: info.hits, misses: info.misses, staleHits: info.staleHits, refreshes: info.refreshes },
    { hits: 1, misses: 1, staleHits: 1, refreshes: 1 },
  );
});

Deno.test("call path: a background refresh that never settles does not hold its key past flightTimeout", async () => {
  let now = 0;
  let loads = 0;
  const f = cache({
    ttl: 100,
    staleWhileRevalidate: 1_000_000,
    flightTimeout: 20,
    clock: () => now,
  })(async (k: number): Promise<number> => {
    loads++;
    if (loads === 2) return await new Promise<number>(() => {}); // the refresh hangs
    return k * 10 + loads;
  });
  assert.equal(await f(1), 11);
  now = 150; // stale: the refresh starts (and hangs)
  assert.equal(await f(1), 11);
  await until("the refresh ran", () => loads === 2);
  assert.equal(await f(1), 11, "a call that finds the refresh under way");
  await sleep(100); // more than flightTimeout since that call joined it
  assert.equal(await f(1), 11, "still stale");
  await settle();
  // README: "a computation that never settles therefore never holds its key"
  assert.equal(loads, 3, "a new refresh replaced the hung one");
});

Deno.test("call path: a key recomputed after its tag was invalidated is stored where its next call finds it", () => {
  const t = tag("absent-args");
  let loads = 0;
  const f = cache({ tags: (a: number) => (a === 3 ? [t] : []) })((a: number, b: number): number => {
    loads++;
    if (a === 0) throw new Error("no result for 0"); // found absent, never stored
    return a * 100 + b;
  });
  assert.equal(f(3, 4), 304);
  assert.throws(() => f(0, 1), /no result/);
  invalidateTags(t);
  assert.equal(f(3, 4), 304); // invalid: dropped and recomputed
  assert.equal(loads, 3);
  assert.equal(f(3, 4), 304);
  assert.equal(loads, 3, "the entry just stored is a hit");
  assert.equal(f.cacheInfo().currentSize, 1);
});

Deno.test("call path: cacheSet of a Promise after a hit stores the key where its next call finds it", async () => {
  let loads = 0;
  const f = cache()((a: number, b: number): number => {
    loads++;
    if (a === 0) throw new Error("no result for 0");
    return a * 100 + b;
  });
  assert.equal(f(3, 4), 304);
  assert.throws(() => f(0, 1), /no result/); // found absent, never stored
  assert.equal(f(3, 4), 304); // a hit
  f.cacheSet(Promise.resolve(999) as unknown as number, 3, 4);
  await settle();
  assert.equal(f.cacheGet(3, 4), 999);
  assert.equal(await f(3, 4), 999, "the value set is a hit");
  assert.equal(loads, 2);
  assert.equal(f.cacheInfo().currentSize, 1);
});

Deno.test("call path: an async computation that deletes its own key before its first await is detached", async () => {
  let loads = 0;
  let release = (): void => {};
  let signal: AbortSignal | undefined;
  const f = cache()(async (k: number): Promise<string> => {
    const n = ++loads;
    if (n === 1) {
      signal = cacheContext()!.signal;
      f.cacheDelete(k); // e.g. it drops what it is about to replace
      await new Promise<void>((r) => release = r);
    }
    return `v${n}:${k}`;
  });
  const first = f(1);
  // README: "cacheDelete ... during a computation ... detach it: it still settles for its
  // callers, but its result is not stored, and the next call starts a new one".
  const second = f(1);
  release();
  assert.equal(await first, "v1:1");
  assert.equal(signal?.aborted, true, "its signal aborted");
  assert.equal(await second, "v2:1", "the next call started a new computation");
});
