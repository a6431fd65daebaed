// Tags and the remote tier (fake tier): a tag's invalidation time is kept in the storage,
// so a host that starts after the invalidation, or misses its message during a bus gap,
// still never serves a remote entry carrying the tag; the tags of a remote value go with
// its local copy. Conformance on every tier: tests/fixtures/remote_conformance.ts; two
// processes over a real Redis: tests/redis_tags_test.ts.
import assert from "node:assert/strict";
import { cache, cacheContext, invalidateTags } from "../mod.ts";
import { KeyWriter } from "../src/codec/key_codec.ts";
import {
  frameTagTime,
  RemoteLink,
  TAG_TIME_KEY,
  tagTimeKey,
  unframeTagTime,
} from "../src/remote/_remote_link.ts";
import { type RemoteTier, remoteTier } from "../src/remote/remote.ts";
import { FakeParts, FakeServer, fakeTier } from "./fixtures/fake_tier.ts";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
let unique = 0;
const tag = (name: string): string => `${name}#${Date.now()}-${++unique}`;

function keyOf(k: number): Uint8Array {
  const w = new KeyWriter(64, true);
  w.call(undefined, false, [k]);
  return w.buf.slice(0, w.len);
}

/** A link with a local tier that counts what it is told. */
interface Told {
  drops: number;
  dropAlls: number;
  tags: string[];
}

function link(
  server: FakeServer,
  name: string,
  bus = true,
): { link: RemoteLink; told: Told; tier: RemoteTier } {
  const told: Told = { drops: 0, dropAlls: 0, tags: [] };
  const parts = new FakeParts(server);
  const tier = remoteTier(bus ? { storage: parts, bus: parts } : { storage: parts });
  const l = new RemoteLink(tier, name, 1000, {
    drop: () => void told.drops++,
    dropAll: () => void told.dropAlls++,
    dropTags: (t) => void told.tags.push(...t),
  });
  return { link: l, told, tier };
}

Deno.test("tagTimeKey(): a storage key no encoded key can be; its time frames round-trip", () => {
  assert.deepEqual([...tagTimeKey("a\ud800")], [0xff, 0x54, 0x61, 0, 0x00, 0xd8]);
  assert.notDeepEqual(tagTimeKey("\ud800"), tagTimeKey("\ufffd"));
  for (const args of [[], [1], ["x"], [{ a: 1 }], [undefined]]) {
    const w = new KeyWriter(64, true);
    w.call(undefined, false, args);
    assert.ok(w.buf[0]! < 32 && w.buf[0] !== TAG_TIME_KEY);
    const m = new KeyWriter(64, true);
    m.call({}, true, args);
    assert.ok(m.buf[0]! < 32);
  }
  assert.equal(unframeTagTime(frameTagTime(1.7e12 + 0.25)), 1.7e12 + 0.25);
  assert.equal(unframeTagTime(new Uint8Array([2, 0, 0, 0, 0, 0, 0, 0, 0])), undefined);
  assert.equal(unframeTagTime(new Uint8Array(3)), undefined);
});

Deno.test("remote tags: a host that missed the invalidation during a bus gap reads the tag's time from the storage", async () => {
  const server = new FakeServer();
  const name = `rt-${crypto.randomUUID()}`;
  // (a without a bus: the gap is b's alone; a host's own gap takes back its recent writes.)
  const a = link(server, name, false);
  const b = link(server, name);
  const t = tag("t");
  a.link.write(keyOf(1), "old", false, undefined, a.link.stamp(), [t]);
  a.link.write(keyOf(2), "other", false, undefined, a.link.stamp(), ["u"]);
  await a.link.drain();
  await sleep(5);
  assert.equal((await b.link.fetch(keyOf(1), b.link.stamp()))?.value, "old", "t not invalidated");
  server.loseMessages = true;
  await sleep(2);
  a.link.invalidateTags([t]);
  await a.link.drain();
  assert.deepEqual(b.told.tags, [], "b missed the message");
  assert.ok(
    server.entries.has(
      `${name}/${[...tagTimeKey(t)].map((x) => x.toString(16).padStart(2, "0")).join("")}`,
    ),
  );
  server.loseMessages = false;
  server.gap();
  assert.equal(b.told.dropAlls, 1, "the gap dropped b's local copies");
  assert.equal(
    await b.link.fetch(keyOf(1), b.link.stamp()),
    undefined,
    "born before t's invalidation: a miss",
  );
  assert.equal((await b.link.fetch(keyOf(2), b.link.stamp()))?.value, "other");
  // A value born after the invalidation is a hit.
  await sleep(2);
  a.link.write(keyOf(1), "new", false, undefined, a.link.stamp(), [t]);
  await a.link.drain();
  assert.equal((await b.link.fetch(keyOf(1), b.link.stamp()))?.value, "new");
  await Promise.all([a.link.close(), b.link.close(), a.tier.close(), b.tier.close()]);
});

Deno.test("remote tags: without a bus, every read checks its tags' times; a storage that fails is a miss, never the value", async () => {
  const server = new FakeServer();
  const name = `rt-${crypto.randomUUID()}`;
  const a = link(server, name);
  const b = link(server, name, false);
  const t = tag("t");
  a.link.write(keyOf(1), "old", false, undefined, a.link.stamp(), [t]);
  await a.link.drain();
  await sleep(5);
  assert.equal((await b.link.fetch(keyOf(1), b.link.stamp()))?.value, "old");
  a.link.invalidateTags([t]);
  await a.link.drain();
  assert.equal(await b.link.fetch(keyOf(1), b.link.stamp()), undefined, "read again: a miss");
  // A value of another tag whose time cannot be read: a miss.
  const u = tag("u");
  a.link.write(keyOf(3), "v3", false, undefined, a.link.stamp(), [u]);
  await a.link.drain();
  const realGet = FakeParts.prototype.get;
  FakeParts.prototype.get = function (
    this: FakeParts,
    n: string,
    key: Uint8Array,
    signal: AbortSignal,
  ): Promise<Uint8Array | undefined> {
    return key[0] === TAG_TIME_KEY
      ? Promise.reject(new Error("down"))
      : realGet.call(this, n, key, signal);
  };
  try {
    assert.equal(await b.link.fetch(keyOf(3), b.link.stamp()), undefined);
  } finally {
    FakeParts.prototype.get = realGet;
  }
  assert.equal((await b.link.fetch(keyOf(3), b.link.stamp()))?.value, "v3");
  await Promise.all([a.link.close(), b.link.close(), a.tier.close(), b.tier.close()]);
});

Deno.test("remote tags: a host that starts after an invalidation misses the remote entries carrying the tag", async () => {
  const server = new FakeServer();
  const name = `rt-${crypto.randomUUID()}`;
  const t = tag("late");
  let n = 0;
  const make = (host: string) =>
    cache({ name, remote: fakeTier(server), tags: (k: number) => [`${t}:${k}`] })(
      async (k: number) => {
        await null;
        return `${k}@${host}#${++n}`;
      },
    );
  const a = make("a");
  assert.equal(await a(1), "1@a#1");
  assert.equal(await a(2), "2@a#2");
  await sleep(5);
  invalidateTags(`${t}:1`);
  await sleep(5);
  const b = make("b"); // started after the invalidation: it never saw the message
  assert.equal(await b(1), "1@b#3", "a's value was born before the invalidation");
  assert.equal(await b(2), "2@a#2", "another tag: a remote hit");
  assert.equal(b.cacheInfo().remoteHits, 1);
  a[Symbol.dispose]();
  b[Symbol.dispose]();
});

Deno.test("remote tags: the tags a remote value carries (cacheContext().tag() on its host) go with its local copy", async () => {
  const server = new FakeServer();
  const name = `rt-${crypto.randomUUID()}`;
  const t = tag("ctx");
  let n = 0;
  const make = (host: string) =>
    cache({ name, remote: fakeTier(server) })(async (k: number) => {
      if (host === "a") cacheContext()!.tag(t);
      await null;
      return `${k}@${host}#${++n}`;
    });
  const a = make("a");
  const b = make("b");
  assert.equal(await a(1), "1@a#1");
  await sleep(5);
  assert.equal(await b(1), "1@a#1", "b reads a's value (and its tag)");
  assert.equal(b.cacheGet(1), "1@a#1", "kept locally");
  invalidateTags(t);
  assert.equal(b.cacheGet(1), undefined, "b's local copy carries a's tag");
  a[Symbol.dispose]();
  b[Symbol.dispose]();
});
