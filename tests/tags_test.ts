// Tags: the `tags` option, `cacheContext().tag()` and `invalidateTags()`, as a time
// barrier, on both engines of the memory backend (scripts/test.ts runs this file with
// each). The shared backend and the remote tier: tests/shared_tags_test.ts.
import assert from "node:assert/strict";
import { cache, cacheContext, invalidateTags } from "../mod.ts";
import { ProcessTagClock } from "../src/call/tags.ts";

let unique = 0;
/** A tag no other test uses. */
const tag = (name: string): string => `${name}#${++unique}`;

Deno.test("tags: invalidateTags makes the entries carrying a tag misses, in every cache; later entries hit", () => {
  const user = tag("user");
  const other = tag("other");
  let loads = 0;
  const profile = cache({ tags: (id: number) => [`${user}:${id}`, user] })((id: number) => {
    loads++;
    return { id };
  });
  const orders = cache({ tags: (id: number) => [`${user}:${id}`] })((id: number) => {
    loads++;
    return [id];
  });
  const unrelated = cache({ tags: () => [other] })((id: number) => {
    loads++;
    return id;
  });
  profile(1);
  profile(2);
  orders(1);
  unrelated(1);
  assert.equal(loads, 4);
  profile(1);
  orders(1);
  unrelated(1);
  assert.equal(loads, 4, "all hits");
  invalidateTags(`${user}:1`);
  profile(1);
  orders(1);
  assert.equal(loads, 6, "both caches' entries of user 1 missed");
  profile(2);
  unrelated(1);
  assert.equal(loads, 6, "other tags are untouched");
  profile(1);
  orders(1);
  assert.equal(loads, 6, "entries stored after the invalidation hit");
  assert.deepEqual(profile.cacheInfo(), { hits: 3, misses: 3, maxSize: 128, currentSize: 2 });
  invalidateTags(user);
  profile(1);
  profile(2);
  assert.equal(loads, 8);
});

Deno.test("tags: cacheContext().tag() adds tags, also after an await", async () => {
  const t1 = tag("a");
  const t2 = tag("b");
  let loads = 0;
  const f = cache()(async (k: number): Promise<number> => {
    loads++;
    cacheContext()!.tag(t1);
    await new Promise((r) => setTimeout(r, 1));
    cacheContext()!.tag(t2);
    return k;
  });
  await f(1);
  await f(1);
  assert.equal(loads, 1);
  invalidateTags(t2);
  await f(1);
  assert.equal(loads, 2, "the tag added after the await counts");
  invalidateTags(t1);
  assert.equal(await f(1), 1);
  assert.equal(loads, 3);
  assert.throws(() =>
    cacheContext()?.tag("x") ?? (() => {
      throw new TypeError("outside");
    })(), TypeError);
});

Deno.test("tags: a computation that started before an invalidation stores an entry that misses", async () => {
  const t = tag("barrier");
  let loads = 0;
  let release = (): void => {};
  const f = cache({ tags: () => [t] })(async (k: number): Promise<number> => {
    loads++;
    if (loads === 1) await new Promise<void>((r) => release = r);
    return k * loads;
  });
  const pending = f(3);
  await Promise.resolve();
  invalidateTags(t); // while the computation runs
  release();
  assert.equal(await pending, 3, "its callers still get its value");
  assert.equal(await f(3), 6, "its entry is a miss: computed again");
  assert.equal(await f(3), 6);
  assert.equal(loads, 2);
});

Deno.test("tags: a stale value of an invalidated entry is never served (staleWhileRevalidate, staleIfError)", async () => {
  const t = tag("stale");
  let now = 0;
  let loads = 0;
  let down = false;
  const f = cache({
    ttl: 100,
    staleWhileRevalidate: 1000,
    staleIfError: 1000,
    tags: () => [t],
    clock: () => now,
  })(async (k: number): Promise<number> => {
    loads++;
    await null;
    if (down) throw new Error("origin down");
    return k + loads;
  });
  assert.equal(await f(1), 2);
  now = 150; // stale, in both windows
  invalidateTags(t);
  // Not the stale value with a refresh: a miss that waits for a new computation.
  assert.equal(await f(1), 3);
  assert.equal(loads, 2);
  now = 300;
  invalidateTags(t);
  down = true;
  await assert.rejects(f(1), /origin down/, "the error, not the invalidated value");
  assert.equal(f.cacheGet(1), undefined, "cacheGet does not return it either");
});

Deno.test("tags: a tag set that changes between computations is the new one's", () => {
  const a = tag("a");
  const b = tag("b");
  let round = 0;
  let loads = 0;
  const f = cache({ tags: () => [round === 0 ? a : b] })((k: number) => {
    loads++;
    return k;
  });
  f(1);
  round = 1;
  invalidateTags(a);
  f(1); // recomputed, now tagged b
  assert.equal(loads, 2);
  invalidateTags(a);
  f(1);
  assert.equal(loads, 2, "the old tag no longer concerns the entry");
  invalidateTags(b);
  f(1);
  assert.equal(loads, 3);
});

Deno.test("tags: cacheSet entries carry the tags option's tags; cacheGet of an invalidated entry is undefined", () => {
  const t = tag("set");
  const f = cache({ tags: (k: number) => [`${t}:${k}`] })((k: number) => k);
  f.cacheSet(10, 1);
  assert.equal(f(1), 10);
  invalidateTags(`${t}:1`);
  assert.equal(f.cacheGet(1), undefined);
  assert.equal(f(1), 1);
});

Deno.test("tags: bad values are errors naming the option or the function", () => {
  assert.throws(
    () => cache({ tags: ["a"] as unknown as () => string[] }),
    /tags must be a function/,
  );
  const f = cache({ tags: () => "a" as unknown as string[] })((k: number) => k);
  assert.throws(() => f(1), /tags option must give an array of strings: received "a"/);
  const g = cache({ tags: () => [1 as unknown as string] })((k: number) => k);
  assert.throws(() => g(1), /tags option must give strings: received 1/);
  assert.throws(() => invalidateTags(5 as unknown as string), /invalidateTags must give strings/);
  const h = cache()((k: number) => {
    cacheContext()!.tag({} as unknown as string);
    return k;
  });
  assert.throws(() => h(1), /tag takes strings/);
  // A lone surrogate: the remote tier's frames and bus (UTF-8) would turn it into U+FFFD.
  assert.throws(() => invalidateTags("a\ud800"), /well-formed strings .*"a\\ud800"/);
  const l = cache({ tags: () => ["\udc00"] })((k: number) => k);
  assert.throws(() => l(1), TypeError);
  const m = cache()((k: number) => {
    cacheContext()!.tag("x\ud800y");
    return k;
  });
  assert.throws(() => m(1), /tag takes well-formed strings/);
  invalidateTags("\ufffd", "\ud83d\ude00"); // well-formed: fine
});

Deno.test("ProcessTagClock: past its bound it forgets the oldest tags and treats older entries as invalid", () => {
  const c = new ProcessTagClock();
  const at = c.epoch;
  c.invalidate(["first"]);
  const mid = c.epoch;
  for (let i = 0; i < 100_001; i++) c.invalidate([`t${i}`]);
  assert.equal(c.invalidSince(["unrelated"], at), true, "older than a forgotten invalidation");
  assert.equal(c.invalidSince(["unrelated"], c.epoch), false);
  assert.equal(c.invalidSince(["t100000"], c.epoch - 1), true);
  assert.ok(mid > at);
});
