// Tags on the shared backend: entries carry their tags in an envelope, and the tag clock of
// their directory (`.warp_tags`, mapped by every process) makes an invalidation in one
// process a miss in every process at once; faults of the clock's file. The memory backend:
// tests/tags_test.ts.
import assert from "node:assert/strict";
import { cache, cacheContext, invalidateTags } from "../mod.ts";
import { decodeValue, encodeValue } from "../src/codec/value_codec.ts";
import { TAGGED_ENVELOPE } from "../src/store/_tag_envelope.ts";
import { hashTag, hashTags, NOT_OPEN, sharedTagClock } from "../src/store/shared_tags.ts";
import { TAGS_FILE, TAGS_MAGIC } from "../src/native/_abi.ts";
import { samples } from "./fixtures/shared_common.ts";
import { TagsHost } from "./fixtures/tags_driver.ts";

/** Three hosts of one shared cache. */
async function three(name: string, dir: string): Promise<[TagsHost, TagsHost, TagsHost]> {
  return await Promise.all([
    TagsHost.start({ label: "a", name, dir }),
    TagsHost.start({ label: "b", name, dir }),
    TagsHost.start({ label: "c", name, dir }),
  ]);
}

const tempDir = () => Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp_tags_" });
let unique = 0;
const tag = (name: string): string => `${name}#${Date.now()}-${++unique}`;

Deno.test("shared tags: invalidateTags makes the entries carrying a tag misses; later entries hit; an invalid hit counts as a miss", async () => {
  const dir = await tempDir();
  try {
    const t = tag("user");
    let loads = 0;
    const f = cache({ backend: "shared", dir, name: "f", tags: (k: number) => [`${t}:${k}`] })(
      (k: number) => ({ k, loads: ++loads }),
    );
    const g = cache({ backend: "shared", dir, name: "g" })(async (k: number) => {
      cacheContext()!.tag(`${t}:${k}`);
      await null;
      return [k, ++loads];
    });
    assert.deepEqual(f(1), { k: 1, loads: 1 });
    assert.deepEqual(await g(1), [1, 2]);
    assert.deepEqual(f(2), { k: 2, loads: 3 });
    assert.deepEqual(f(1), { k: 1, loads: 1 }, "a hit (a copy)");
    const hit = g(1);
    assert.ok(hit instanceof Promise, "an async result's hit is a Promise");
    assert.deepEqual(await hit, [1, 2]);
    invalidateTags(`${t}:1`);
    assert.equal(f.cacheGet(1), undefined);
    assert.equal(g.cacheGet(1), undefined);
    assert.deepEqual(f(1), { k: 1, loads: 4 }, "missed");
    assert.deepEqual(await g(1), [1, 5], "missed");
    assert.deepEqual(f(2), { k: 2, loads: 3 }, "another tag: untouched");
    assert.deepEqual(f(1), { k: 1, loads: 4 }, "stored after the invalidation: a hit");
    assert.deepEqual(await g(1), [1, 5]);
    // f: calls 1, 2, 1 (hit), [inv] 1 (invalid hit: a miss), 2 (hit), 1 (hit).
    assert.deepEqual(
      { hits: f.cacheInfo().hits, misses: f.cacheInfo().misses },
      { hits: 3, misses: 3 },
    );
    // cacheSet entries carry the tags option's tags.
    f.cacheSet({ k: 9, loads: -1 }, 9);
    assert.deepEqual(f(9), { k: 9, loads: -1 });
    invalidateTags(`${t}:9`);
    assert.equal(f.cacheGet(9), undefined);
    f[Symbol.dispose]();
    g[Symbol.dispose]();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("shared tags: the envelope's first byte is never one the value codec writes first", () => {
  assert.equal(TAGGED_ENVELOPE, 0x7f);
  for (const [label, value] of samples()) {
    for (const promised of [false, true]) {
      const first = encodeValue(value, promised)[0]!;
      assert.notEqual(first, TAGGED_ENVELOPE, label);
      assert.notEqual(first & 0x7f, TAGGED_ENVELOPE, `${label}: tag 127 stays free`);
    }
  }
  // An older reader takes an envelope for an unknown tag: a miss, never a value.
  assert.throws(() => decodeValue(new Uint8Array([TAGGED_ENVELOPE, 0, 0, 0])), RangeError);
});

Deno.test("hashTag(): a stable 64-bit hash of the UTF-16 code units, never 0", () => {
  const out = new Uint32Array(2);
  // Part of the file format: pinned.
  hashTag("user:1", out, 0);
  const user1 = [...out];
  hashTag("user:1", out, 0);
  assert.deepEqual([...out], user1);
  assert.deepEqual(hashTags(["", "user:1"]).slice(2), user1);
  const seen = new Set<string>();
  for (const t of ["", "a", "b", "ab", "ba", "\ud800", "\ufffd", "user:1", "user:2"]) {
    hashTag(t, out, 0);
    assert.ok(out[0] !== 0 || out[1] !== 0);
    seen.add(`${out[0]}/${out[1]}`);
  }
  assert.equal(seen.size, 9, "lone surrogates and U+FFFD differ, as do all these");
  assert.deepEqual(user1, [user1[0], user1[1]]);
  assert.equal(typeof user1[0], "number");
});

Deno.test("shared tags: three processes see one invalidateTags at once; a computation that started before it stores an entry that misses", async () => {
  const dir = await tempDir();
  const name = "three";
  const [a, b, c] = await three(name, dir);
  try {
    assert.equal((await a.call(1)).value, "1@a#1");
    for (const h of [b, c]) {
      const r = await h.call(1);
      assert.deepEqual([r.value, r.computed], ["1@a#1", 0], "a hit in another process");
    }
    assert.deepEqual(await c.send("invalidate k:1"), { invalidated: ["k:1"] });
    // At once, with no message: the very next lookup misses in every process.
    for (const h of [a, b, c]) assert.deepEqual(await h.send("peek 1"), { value: null });
    const r = await b.call(1);
    assert.deepEqual([r.value, r.computed], ["1@b#1", 1]);
    assert.equal((await a.call(1)).value, "1@b#1", "stored after the invalidation: a hit");
    // Counters are the file's exact totals: 1 miss (a), 2 hits, 1 invalid hit... as misses.
    const info = (await a.send("info")).info;
    assert.equal(info.hits + info.misses, 5);
    assert.equal(info.misses, 2, "the first call and b's recomputation");
    // The barrier across processes: a computation under way when another process
    // invalidates its tag gives its callers its value but stores an entry that misses.
    assert.deepEqual(await a.send("start 2"), { started: 1 });
    await c.send("invalidate k:2");
    assert.deepEqual(await a.send("release"), { value: "2@a#2" });
    assert.deepEqual(await b.send("peek 2"), { value: null }, "its entry is a miss elsewhere");
    assert.deepEqual(await a.send("peek 2"), { value: null }, "and here");
    const again = await b.call(2);
    assert.deepEqual([again.value, again.computed], ["2@b#2", 1]);
  } finally {
    await Promise.all([a, b, c].map((h) => h.exit()));
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("shared tags: a stale value of an invalidated entry is never served by another process (BentoCache #71: grace)", async () => {
  const dir = await tempDir();
  const name = "grace";
  const opts = { name, dir, ttl: 1000, swr: 60_000, sie: 60_000, backoff: 60_000 };
  const a = await TagsHost.start({ label: "a", ...opts });
  const b = await TagsHost.start({ label: "b", ...opts });
  try {
    assert.equal((await a.call(1)).value, "1@a#1");
    assert.equal((await a.call(2)).value, "1@a#1".replace("1@", "2@").replace("#1", "#2"));
    // b's clock runs 5 s ahead: both entries are stale for b, within its grace windows.
    await b.send("advance 5000");
    const stale = await b.call(2);
    assert.deepEqual([stale.value, stale.info.staleHits], ["2@a#2", 1], "a stale hit first");
    await a.send("invalidate r:0");
    // staleWhileRevalidate: not the stale value with a refresh, a miss that waits (b's
    // first computation was the refresh of key 2).
    const fresh = await b.call(1);
    assert.deepEqual([fresh.value, fresh.computed], ["1@b#2", 1]);
    // staleIfError (and its back-off): the error, not the invalidated value.
    await a.send("invalidate k:1");
    await b.send("down 1");
    await b.send("advance 5000");
    const failed = await b.send("call 1");
    assert.match(failed.error, /origin down \(b\)/);
    assert.deepEqual(await b.send("peek 1"), { value: null });
    const again = await b.send("call 1");
    assert.match(again.error, /origin down \(b\)/, "within the back-off too");
    assert.equal((await b.send("info")).info.staleHits, 1, "no stale hit after the first");
  } finally {
    await a.exit();
    await b.exit();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("shared tags: a tag set that changes between computations is the new one's, across processes (BentoCache #83)", async () => {
  const dir = await tempDir();
  const name = "retag";
  const [a, b, c] = await three(name, dir);
  try {
    await a.send("extra old");
    assert.equal((await a.call(1)).value, "1@a#1");
    await b.send("round 1");
    await c.send("invalidate old");
    // b recomputes with tags k:1, r:1 (no "old"); a finds b's entry.
    assert.equal((await b.call(1)).value, "1@b#1");
    await c.send("invalidate old");
    await c.send("invalidate r:0");
    const hit = await a.call(1);
    assert.deepEqual([hit.value, hit.computed], ["1@b#1", 0], "the old tags no longer apply");
    await c.send("invalidate r:1");
    const miss = await a.call(1);
    assert.deepEqual([miss.value, miss.computed], ["1@a#2", 1], "the new tag does");
  } finally {
    await Promise.all([a, b, c].map((h) => h.exit()));
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("shared tags: a garbage, truncated or empty tags file is replaced at open, never a crash", async () => {
  for (const bad of [new Uint8Array(1 << 20).fill(0xa5), new Uint8Array(100), new Uint8Array(0)]) {
    const dir = await tempDir();
    try {
      await Deno.writeFile(`${dir}/${TAGS_FILE}`, bad, { mode: 0o600 });
      const f = cache({ backend: "shared", dir, name: "g", tags: () => ["g"] })((k: number) =>
        k * 2
      );
      assert.equal(f(1), 2);
      assert.equal(f(1), 2);
      assert.equal(f.cacheInfo().hits, 1);
      invalidateTags("g");
      assert.equal(f.cacheGet(1), undefined);
      const st = await Deno.stat(`${dir}/${TAGS_FILE}`);
      assert.equal(st.size, 64 + 16 * 65_536);
      assert.equal(st.mode! & 0o777, 0o600);
      f[Symbol.dispose]();
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  }
});

Deno.test("shared tags: garbage written over a mapped tags file: entries are misses, then the file is replaced and every process follows", async () => {
  const dir = await tempDir();
  const a = await TagsHost.start({ label: "a", name: "g", dir });
  try {
    let loads = 0;
    const f = cache({ backend: "shared", dir, name: "g", tags: (k: number) => [`k:${k}`] })(
      async (k: number) => {
        await null;
        return `${k}@here#${++loads}`;
      },
    );
    assert.equal(await f(1), "1@here#1");
    assert.equal((await a.call(1)).value, "1@here#1");
    // Garbage over the header of the file that both processes map.
    const file = await Deno.open(`${dir}/${TAGS_FILE}`, { write: true });
    await file.write(new Uint8Array(64).fill(0xff));
    file.close();
    // The epoch word is garbage (>= 2^53): each process opens the file again (replacing the
    // damaged one), and what was stored under the old one is a miss.
    assert.equal(await f(1), "1@here#2");
    const r = await a.call(1);
    assert.deepEqual([r.value, r.computed], ["1@here#2", 0], "the other process follows");
    await a.send("invalidate k:1");
    assert.equal(f.cacheGet(1), undefined, "one clock again: its invalidation is seen here");
    const magic = new TextDecoder().decode(
      (await Deno.readFile(`${dir}/${TAGS_FILE}`)).slice(0, 8),
    );
    assert.equal(magic, TAGS_MAGIC);
    f[Symbol.dispose]();
  } finally {
    await a.exit();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("shared tags: a full table makes every older entry a miss (never a stale hit), then has room again", async () => {
  const dir = await tempDir();
  try {
    let loads = 0;
    const f = cache({ backend: "shared", dir, name: "full", tags: (k: number) => [`keep:${k}`] })(
      (k: number) => `${k}#${++loads}`,
    );
    assert.equal(f(1), "1#1");
    const g = cache({ backend: "shared", dir, name: "g", tags: (j: number) => [`flood:2:${j}`] })(
      (j: number) => `${j}#${++loads}`,
    );
    const flooded = [0, 1, 29_998, 29_999];
    for (const j of flooded) g(j);
    // 90,000 distinct tags in 65,536 slots: some probe window fills up.
    for (let i = 0; i < 3; i++) {
      invalidateTags(...Array.from({ length: 30_000 }, (_, j) => `flood:${i}:${j}`));
    }
    for (const j of flooded) assert.equal(g.cacheGet(j), undefined, `flood:2:${j} invalidated`);
    assert.equal(f(1), "1#6", "keep:1 was never invalidated, but conservatively a miss");
    assert.equal(f(1), "1#6", "stored after: a hit");
    invalidateTags("keep:1");
    assert.equal(f(1), "1#7", "the table records tags again");
    invalidateTags("flood:0:1");
    assert.equal(f(1), "1#7");
    f[Symbol.dispose]();
    g[Symbol.dispose]();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("shared tags: a planted symlink for the tags file is refused, its target untouched; entries with tags are then not stored", async () => {
  const dir = await tempDir();
  try {
    await Deno.writeTextFile(`${dir}/target`, "keep");
    await Deno.symlink(`${dir}/target`, `${dir}/${TAGS_FILE}`);
    let loads = 0;
    const f = cache({ backend: "shared", dir, name: "s", tags: () => ["s"] })((k: number) =>
      k + ++loads
    );
    const warn = console.warn;
    const warned: string[] = [];
    console.warn = (m: string) => void warned.push(m);
    try {
      assert.equal(f(1), 2);
      assert.equal(f(1), 3, "not stored: computed again");
    } finally {
      console.warn = warn;
    }
    assert.equal(warned.length, 1);
    assert.match(warned[0]!, /tag clock .* cannot be opened: .*symbolic link/);
    assert.throws(() => invalidateTags("s"), /symbolic link/);
    assert.equal(await Deno.readTextFile(`${dir}/target`), "keep");
    f[Symbol.dispose]();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("shared tags: a directory where tags are never used gets no tags file", async () => {
  const dir = await tempDir();
  try {
    const f = cache({ backend: "shared", dir, name: "plain" })((k: number) => k);
    const g = cache({ backend: "shared", dir, name: "plain2" })(async (k: number) => {
      await null;
      return k;
    });
    f(1);
    f(1);
    await g(1);
    f.cacheSet(5, 2);
    const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.deepEqual(files, ["plain.warp", "plain2.warp"]);
    f[Symbol.dispose]();
    g[Symbol.dispose]();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("shared tags: a computation that started before its process opened the tag clock stores an entry older than any invalidation since", async () => {
  const dir = await tempDir();
  const name = "late-clock";
  const [a, b, c] = await three(name, dir);
  try {
    // a has not needed the clock yet (no file exists): its computation starts, then c
    // invalidates the tag (creating the file), then a stores.
    assert.deepEqual(await a.send("start 2"), { started: 1 });
    assert.equal(await Deno.lstat(`${dir}/${TAGS_FILE}`).catch(() => null), null);
    await c.send("invalidate k:2");
    assert.deepEqual(await a.send("release"), { value: "2@a#1" });
    assert.deepEqual(await b.send("peek 2"), { value: null }, "a's entry is a miss");
    assert.deepEqual(await a.send("peek 2"), { value: null });
    // Once the clock is open, entries are stored at their epoch: a later one hits.
    assert.equal((await a.call(2)).value, "2@a#2");
    const hit = await b.call(2);
    assert.deepEqual([hit.value, hit.computed], ["2@a#2", 0]);
  } finally {
    await Promise.all([a, b, c].map((h) => h.exit()));
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("sharedTagClock(): one clock per directory, whose epoch counts invalidations", async () => {
  const dir = await tempDir();
  try {
    const c = sharedTagClock(dir);
    assert.equal(sharedTagClock(`${dir}/`), c);
    assert.equal(c.epoch, NOT_OPEN, "not opened yet");
    assert.equal(c.ensure(), true);
    const e = c.epoch;
    assert.equal(c.start, e, "a new file: its first epoch");
    c.invalidate(["x", "y"]);
    assert.equal(c.epoch, e + 1);
    assert.equal(c.invalidSince(["x"], e), true);
    assert.equal(c.invalidSince(["y", "z"], e), true);
    assert.equal(c.invalidSince(["z"], e), false);
    assert.equal(c.invalidSince(["x"], e + 1), false);
    assert.equal(c.invalidSince(["z"], NaN), true, "not an epoch of this clock");
    assert.equal(c.invalidSince([], e + 1, hashTags(["x"])), false);
    assert.equal(c.invalidSince([], e, hashTags(["q", "x"])), true);
    c.invalidate([]);
    assert.equal(c.epoch, e + 1, "no tags: nothing happens");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
