// The `remote` option through a fake in-memory tier (two "hosts" = two caches of one name
// with their own local tiers): read path, write path, invalidations, failures. The same
// behaviour against a real Redis server is in tests/redis_remote_test.ts.
import assert from "node:assert/strict";
import { cache, type CachedFunction, type CacheOptions } from "../mod.ts";
import { memoryEngine } from "../src/store/engine.ts";
import { frameValue, unframeValue } from "../src/remote/_remote_link.ts";
import { type FakeParts, FakeServer, fakeTier } from "./fixtures/fake_tier.ts";

const engine = memoryEngine();
const ffi = (await Deno.permissions.query({ name: "ffi" })).state === "granted";
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
/** Lets the background remote writes and the bus deliver. */
const drain = () => sleep(5);

async function locals(body: (label: string, o: CacheOptions) => Promise<void>): Promise<void> {
  await body(`memory (${engine})`, { backend: "memory" });
  if (!ffi) return;
  const dir = await Deno.makeTempDir({ prefix: "warp_remote_" });
  try {
    // Two hosts: two directories, so the local shared tiers are separate.
    await Deno.mkdir(`${dir}/a`);
    await Deno.mkdir(`${dir}/b`);
    await body("shared", { backend: "shared", dir });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Two hosts' caches of one name over one fake server. */
function hosts(
  options: CacheOptions,
  server: FakeServer,
  name: string,
  extra: CacheOptions = {},
): {
  calls: { a: number; b: number };
  a: HostCache;
  b: HostCache;
} {
  const calls = { a: 0, b: 0 };
  const dirOf = (h: string) => options.dir === undefined ? {} : { dir: `${options.dir}/${h}` };
  const a = makeCache(
    { ...options, ...dirOf("a"), ...extra, name, remote: fakeTier(server) },
    () => ++calls.a,
  );
  const b = makeCache(
    { ...options, ...dirOf("b"), ...extra, name, remote: fakeTier(server) },
    () => ++calls.b,
  );
  return { calls, a, b };
}

type HostCache = CachedFunction<(x: number) => Promise<string>>;

function makeCache(options: CacheOptions, count: () => number): HostCache {
  return cache(options)(async (x: number): Promise<string> => {
    count();
    await null;
    return `v${x}`;
  });
}

Deno.test("remote: a value computed by one host is a remote hit on the other", async () => {
  await locals(async (label, options) => {
    const server = new FakeServer();
    const { calls, a, b } = hosts(options, server, `r1-${crypto.randomUUID()}`);
    assert.equal(await a(1), "v1");
    await drain();
    assert.equal(await b(1), "v1", label);
    assert.deepEqual(calls, { a: 1, b: 0 }, `${label}: b did not compute`);
    assert.equal(await b(1), "v1");
    const info = b.cacheInfo();
    assert.deepEqual(
      [info.hits, info.misses, info.remoteHits, info.remoteErrors],
      [2, 0, 1, 0],
      `${label}: one remote hit, then a local hit`,
    );
    a[Symbol.dispose]();
    b[Symbol.dispose]();
  });
});

Deno.test("remote: cacheDelete, cacheSet and cacheClear reach the other host's local tier", async () => {
  await locals(async (label, options) => {
    const server = new FakeServer();
    const { calls, a, b } = hosts(options, server, `r2-${crypto.randomUUID()}`);
    await a(1);
    await a(2);
    await drain();
    await b(1);
    await b(2);
    assert.deepEqual(calls, { a: 2, b: 0 });
    assert.equal(b.cacheGet(1), "v1", `${label}: b holds a local copy`);

    assert.equal(a.cacheDelete(1), true);
    await drain();
    assert.equal(b.cacheGet(1), undefined, `${label}: the delete reached b's local tier`);
    assert.equal(await b(1), "v1");
    assert.equal(calls.b, 1, `${label}: deleted remotely too: b computed`);

    a.cacheSet("set-by-a", 2);
    await drain();
    assert.equal(b.cacheGet(2), undefined, `${label}: b's old copy dropped`);
    assert.equal(await b(2), "set-by-a", `${label}: the value set by a, from the remote`);

    a.cacheClear();
    await drain();
    assert.equal(b.cacheGet(1), undefined, `${label}: clear reached b`);
    assert.equal(server.entries.size, 0, `${label}: the remote entries are gone`);
    // (b then repairs what it wrote through just before: values older than the clear.)
    assert.ok(server.published.some((m) => m.keys === "clear" && m.origin !== ""));
    a[Symbol.dispose]();
    b[Symbol.dispose]();
  });
});

Deno.test("remote: a server down or hanging never fails a call; errors are counted", async () => {
  await locals(async (label, options) => {
    const server = new FakeServer();
    const { calls, a, b } = hosts(options, server, `r3-${crypto.randomUUID()}`, {
      remoteTimeout: 30,
    });
    server.down = true;
    assert.equal(await a(1), "v1", `${label}: computed despite the remote`);
    await drain();
    server.down = false;
    server.hang = true;
    const t0 = performance.now();
    assert.equal(await b(1), "v1", `${label}: a hanging remote is bounded by remoteTimeout`);
    const waited = performance.now() - t0;
    assert.ok(waited < 5_000, `${label}: waited ${waited} ms`);
    assert.deepEqual(calls, { a: 1, b: 1 });
    await sleep(40);
    assert.ok(a.cacheInfo().remoteErrors! >= 2, `${label}: a's get and set failed`);
    assert.ok(b.cacheInfo().remoteErrors! >= 1, `${label}: b's get timed out`);
    a[Symbol.dispose]();
    b[Symbol.dispose]();
  });
});

Deno.test("remote: expired and undecodable remote values are misses; TTL becomes the remote expiry", async () => {
  const server = new FakeServer();
  const name = `r4-${crypto.randomUUID()}`;
  const { calls, a, b } = hosts({ backend: "memory" }, server, name, { ttl: 60_000 });
  const lastEntry = () => [...server.entries.values()].at(-1)!;
  await a(1);
  await drain();
  assert.equal(lastEntry().ttl, 60_000, "the cache's ttl is the remote expiry");
  lastEntry().value = new Uint8Array([1, 2, 3]);
  assert.equal(await b(1), "v1");
  assert.equal(calls.b, 1, "an undecodable remote value is a miss");
  await a(2);
  await drain();
  lastEntry().value = frameValue("old", true, Date.now() - 1, Date.now() - 10);
  assert.equal(await b(2), "v2");
  assert.equal(calls.b, 2, "a remote value past its deadline is a miss");
  assert.equal(b.cacheInfo().remoteHits, 0);
  assert.deepEqual(unframeValue(frameValue({ a: [1] }, true, Infinity, 1234.5), Date.now()), {
    value: { a: [1] },
    promised: true,
    ttl: undefined,
    born: 1234.5,
    tags: [],
  });
  assert.deepEqual(unframeValue(frameValue(7, false, Infinity, 1, ["t1", "é"]), 0)?.tags, [
    "t1",
    "é",
  ]);
  a[Symbol.dispose]();
  b[Symbol.dispose]();
});

Deno.test("remote: a synchronous function writes through but reads locally only", async () => {
  const server = new FakeServer();
  const name = `r5-${crypto.randomUUID()}`;
  let calls = 0;
  const make = () => cache({ name, remote: fakeTier(server) })((x: number) => ++calls + x);
  const a = make();
  const b = make();
  assert.equal(a(1), 2);
  await drain();
  assert.equal(server.entries.size, 1, "written through");
  assert.equal(b(1), 3, "b computes: a synchronous call cannot wait for the remote");
  a[Symbol.dispose]();
  b[Symbol.dispose]();
});

Deno.test("remote: options are checked; keys must be values", () => {
  assert.throws(() => cache({ remote: {} as never }), (e: unknown) => {
    assert.ok(e instanceof TypeError);
    assert.match(e.message, /remote must be a remote tier/);
    return true;
  });
  assert.throws(
    () => cache({ remote: fakeTier(new FakeServer()), remoteTimeout: -1 }),
    /remoteTimeout must be a positive finite number of milliseconds: received -1/,
  );
  const f = cache({ name: "r6", remote: fakeTier(new FakeServer()) })((o: object) => o);
  assert.throws(() => f(new (class Point {})()), TypeError, "an identity key cannot cross hosts");
  f[Symbol.dispose]();
});

Deno.test("remote: a tier given as a rejected Promise leaves the cache local, counted once", async () => {
  const warn = console.warn;
  const lines: string[] = [];
  console.warn = (line: string) => lines.push(line);
  try {
    const f = cache({ name: "r7", remote: Promise.reject(new Error("no server")) })(
      (x: number) => Promise.resolve(x * 2),
    );
    await drain();
    assert.equal(await f(2), 4);
    assert.equal(await f(2), 4);
    assert.deepEqual([f.cacheInfo().hits, f.cacheInfo().remoteErrors], [1, 1]);
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(lines[0]!, /r7: the remote tier could not be set up.*no server/);
    f[Symbol.dispose]();
  } finally {
    console.warn = warn;
  }
});

Deno.test("remote: after a bus gap (lost messages), a host drops the local copies it may hold stale", async () => {
  await locals(async (label, options) => {
    const server = new FakeServer();
    const { calls, a, b } = hosts(options, server, `r8-${crypto.randomUUID()}`);
    assert.equal(await a(1), "v1");
    await drain();
    assert.equal(await b(1), "v1");
    server.loseMessages = true;
    a.cacheSet("set by a", 1);
    await drain();
    assert.equal(b.cacheGet(1), "v1", `${label}: the message was lost`);
    server.loseMessages = false;
    server.gap(); // what a reconnection reports
    assert.equal(b.cacheGet(1), undefined, `${label}: b dropped its copy`);
    assert.equal(await b(1), "set by a", `${label}: and reads a's value from the remote`);
    assert.equal(calls.b, 0);
    a[Symbol.dispose]();
    b[Symbol.dispose]();
  });
});

Deno.test("remote: wrong bytes from the remote are misses, never values", async () => {
  const server = new FakeServer();
  const { calls, a, b } = hosts({ backend: "memory" }, server, `r9-${crypto.randomUUID()}`);
  for (let k = 0; k < 20; k++) await a(k);
  await drain();
  server.wrongBytes = true;
  for (let k = 0; k < 20; k++) assert.equal(await b(k), `v${k}`);
  assert.equal(calls.b, 20, "every garbled value was a miss");
  assert.equal(b.cacheInfo().remoteHits, 0);
  a[Symbol.dispose]();
  b[Symbol.dispose]();
});

Deno.test("remote: changes made while the remote is down are kept and sent once it is back", async () => {
  const server = new FakeServer();
  const name = `r10-${crypto.randomUUID()}`;
  const { a, b } = hosts({ backend: "memory" }, server, name, { remoteTimeout: 50 });
  const warn = console.warn;
  console.warn = () => {};
  try {
    for (let k = 0; k < 5; k++) await a(k);
    await drain();
    for (let k = 0; k < 5; k++) assert.equal(await b(k), `v${k}`);
    server.down = true;
    for (let k = 10; k < 14; k++) await a(k); // the breaker opens
    a.cacheDelete(0);
    a.cacheSet("new 1", 1);
    await sleep(100);
    assert.equal(b.cacheGet(0), "v0", "b cannot know while the remote is down");
    server.down = false;
    const t0 = performance.now();
    while (b.cacheGet(0) !== undefined || b.cacheGet(1) !== undefined) {
      if (performance.now() - t0 > 15_000) throw new Error("the changes never arrived");
      await sleep(20);
    }
    // Key 0 deleted, key 1 replaced; 10..13 were computed while down (not written).
    assert.equal(server.entries.size, 4, `keys 1..4: ${[...server.entries.keys()]}`);
    assert.equal(await b(0), "v0");
    assert.equal(b.cacheInfo().remoteHits, 5, "key 0 was computed by b");
    assert.equal(await b(1), "new 1", "the set made while down, sent once the remote is back");
  } finally {
    console.warn = warn;
    a[Symbol.dispose]();
    b[Symbol.dispose]();
  }
});

Deno.test("remote: a write-through overtaken by another host's change is removed again (repair)", async () => {
  const server = new FakeServer();
  const name = `r11-${crypto.randomUUID()}`;
  const tierA = fakeTier(server);
  const partsA = tierA.storage as FakeParts;
  const make = (remote: typeof tierA, value: string) =>
    cache({ name, remote, remoteTimeout: 5000 })(async (_k: number) => {
      await null;
      return value;
    });
  const a = make(tierA, "old, computed by A");
  const b = make(fakeTier(server), "computed by B");
  const c = make(fakeTier(server), "computed by C");
  try {
    // A computes; its write-through is slow in the network.
    const release = Promise.withResolvers<void>();
    partsA.holdSets = release.promise;
    assert.equal(await a(1), "old, computed by A");
    partsA.holdSets = undefined;
    // B changes the key meanwhile: its change lands and reaches A.
    b.cacheSet("set by B", 1);
    await drain();
    assert.equal(a.cacheGet(1), undefined, "A dropped its copy");
    // Then A's older write lands, after B's change.
    release.resolve();
    await drain();
    await drain();
    const got = await c(1);
    assert.notEqual(got, "old, computed by A", "a third host never gets A's older value");
    assert.equal(got, "computed by C", "A removed it again (B's value went with it)");
    assert.equal(server.published.at(-1)?.repair, true, "announced as a repair");
  } finally {
    a[Symbol.dispose]();
    b[Symbol.dispose]();
    c[Symbol.dispose]();
  }
});

Deno.test("remote: a tier that arrives late (a Promise) drops the copies made without it", async () => {
  const server = new FakeServer();
  const name = `r12-${crypto.randomUUID()}`;
  const late = Promise.withResolvers<ReturnType<typeof fakeTier>>();
  const a = makeCache({ name, remote: late.promise }, () => 0);
  const b = makeCache({ name, remote: fakeTier(server) }, () => 0);
  try {
    assert.equal(await a(1), "v1", "computed locally: no tier yet");
    b.cacheSet("set by b", 1); // a cannot hear of it
    await drain();
    late.resolve(fakeTier(server));
    await drain();
    assert.equal(a.cacheGet(1), undefined, "dropped once the bus listens");
    assert.equal(await a(1), "set by b");
  } finally {
    a[Symbol.dispose]();
    b[Symbol.dispose]();
  }
});

Deno.test("remote: a value written to a shared local tier and the remote tier is encoded once", async () => {
  const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp_once_" });
  const server = new FakeServer();
  try {
    let reads = 0;
    const make = (k: number): { k: number; readonly n: number } => ({
      k,
      get n(): number {
        reads++; // the value codec reads each getter once per encoding
        return k * 2;
      },
    });
    const f = cache({ backend: "shared", dir, name: "once", remote: fakeTier(server) })(
      async (k: number) => {
        await null;
        return make(k);
      },
    );
    await f(1);
    // The write-through lands in the background.
    for (let waited = 0; server.entries.size === 0 && waited < 10_000; waited += 10) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(server.entries.size, 1, "written to the remote tier");
    assert.equal(reads, 1, "the computed value: one encoding for both tiers");
    f.cacheSet(make(2), 2);
    assert.equal(reads, 2, "cacheSet: one encoding for both tiers");
    f[Symbol.dispose]();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
