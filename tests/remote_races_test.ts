// The remote tier under interleavings and faults that the other remote tests
// do not cover. Each test states the guarantee it checks (README, "What is guaranteed
// across hosts"). Fake tier only; no timed assertions (waits poll with `until`).
import assert from "node:assert/strict";
import { cache, type CachedFunction, type CacheOptions } from "../mod.ts";
import { KeyWriter } from "../src/codec/key_codec.ts";
import { RemoteLink } from "../src/remote/_remote_link.ts";
import { type RemoteTier, remoteTier } from "../src/remote/remote.ts";
import { FakeParts, FakeServer, fakeTier } from "./fixtures/fake_tier.ts";
import { until } from "./fixtures/until.ts";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const hex = (key: Uint8Array): string =>
  Array.from(key, (b) => b.toString(16).padStart(2, "0")).join("");

function keyOf(k: number): Uint8Array {
  const w = new KeyWriter(64, true);
  w.call(undefined, false, [k]);
  return w.buf.slice(0, w.len);
}

/** A client of the fake server with faults of its own (one host cut off, not all). */
class HostParts extends FakeParts {
  /** Every storage call of this client rejects (its bus still receives). */
  down = false;
  /** Storage `set` calls of this client reject. */
  failSets = false;
  /** While set, this client's `delete` calls wait for it. */
  holdDeletes: Promise<void> | undefined = undefined;
  /** After `close()`, new calls reject, as a closed Redis client's do. */
  isClosed = false;
  #check(what: string): Promise<never> | undefined {
    if (this.isClosed) return Promise.reject(new Error(`${what}: the client is closed`));
    if (this.down) return Promise.reject(new Error(`${what}: host cut off`));
    return undefined;
  }
  override get(
    name: string,
    key: Uint8Array,
    signal: AbortSignal,
  ): Promise<Uint8Array | undefined> {
    return this.#check("get") ?? super.get(name, key, signal);
  }
  override set(
    name: string,
    key: Uint8Array,
    value: Uint8Array,
    ttl: number | undefined,
    signal: AbortSignal,
  ): Promise<void> {
    if (this.failSets) return Promise.reject(new Error("set: failing"));
    return this.#check("set") ?? super.set(name, key, value, ttl, signal);
  }
  override delete(name: string, key: Uint8Array, signal: AbortSignal): Promise<boolean> {
    const bad = this.#check("delete");
    if (bad !== undefined) return bad;
    const held = this.holdDeletes;
    return held === undefined
      ? super.delete(name, key, signal)
      : held.then(() => super.delete(name, key, signal));
  }
  override clear(name: string, signal: AbortSignal): Promise<void> {
    return this.#check("clear") ?? super.clear(name, signal);
  }
  override publish(
    name: string,
    message: Parameters<FakeParts["publish"]>[1],
    signal: AbortSignal,
  ): Promise<void> {
    if (this.isClosed) return Promise.reject(new Error("publish: the client is closed"));
    return super.publish(name, message, signal);
  }
  override close(): Promise<void> {
    this.isClosed = true;
    return super.close();
  }
}

function hostTier(server: FakeServer): { tier: RemoteTier; parts: HostParts } {
  const parts = new HostParts(server);
  return { tier: remoteTier({ storage: parts, bus: parts }), parts };
}

/** The value stored for key `k` of cache `name` on the fake server, decoded loosely. */
function stored(server: FakeServer, name: string, k: number): boolean {
  return server.entries.has(`${name}/${hex(keyOf(k))}`);
}

/** What a host that starts now (nothing local) gets for key 1 of cache `name`. */
async function freshHostGets(server: FakeServer, name: string): Promise<string> {
  const c = host(name, fakeTier(server), "c");
  try {
    return await c(1);
  } finally {
    c[Symbol.dispose]();
  }
}

let counter = 0;
function host(
  name: string,
  remote: RemoteTier,
  label: string,
  extra: CacheOptions = {},
): CachedFunction<(k: number) => Promise<string>> {
  return cache({ name, remote, ttl: 60_000, remoteTimeout: 2000, ...extra })(
    async (k: number): Promise<string> => {
      await null;
      return `${k}@${label}#${++counter}`;
    },
  );
}

const quiet = <T>(body: () => Promise<T>): Promise<T> => {
  const warn = console.warn;
  console.warn = () => {};
  return body().finally(() => {
    console.warn = warn;
  });
};

// ---------------------------------------------------------------------------------------

Deno.test("remote tier: cacheSet on a cache with the tags option reaches the storage and the other hosts", async () => {
  const server = new FakeServer();
  const name = `rt-tagged-set-${crypto.randomUUID()}`;
  const extra: CacheOptions = { tags: (k: number) => [`item:${k}`] } as CacheOptions;
  const a = host(name, fakeTier(server), "a", extra);
  const b = host(name, fakeTier(server), "b", extra);
  try {
    const first = await a(1);
    assert.equal(await a(99), await a(99));
    await until("a's values land", () => stored(server, name, 1) && stored(server, name, 99));
    assert.equal(await b(1), first, "b reads a's value");
    await b(99);
    a.cacheSet("new (set by a)", 1);
    a.cacheDelete(99); // a witness, sent after the set
    await until("b receives a's delete of 99", () => b.cacheGet(99) === undefined);
    assert.equal(b.cacheGet(1), undefined, "b dropped its copy of key 1 (a set it)");
    const c = host(name, fakeTier(server), "c", extra);
    try {
      assert.notEqual(await c(1), first, "a third host never gets the value a replaced");
    } finally {
      c[Symbol.dispose]();
    }
  } finally {
    a[Symbol.dispose]();
    b[Symbol.dispose]();
  }
});

Deno.test("remote tier: cacheSet of a Promise reaches the other hosts' local tiers", async () => {
  const server = new FakeServer();
  const name = `rt-promise-set-${crypto.randomUUID()}`;
  const a = host(name, fakeTier(server), "a");
  const b = host(name, fakeTier(server), "b");
  try {
    const first = await a(1);
    await a(99);
    await until("a's values land", () => stored(server, name, 1) && stored(server, name, 99));
    assert.equal(await b(1), first);
    await b(99);
    const value = Promise.resolve("new (set by a)");
    a.cacheSet(value as unknown as string, 1);
    await value;
    await sleep(5);
    assert.equal(a.cacheGet(1), "new (set by a)", "a stored the value it set");
    a.cacheDelete(99); // a witness, sent after the set
    await until("b receives a's delete of 99", () => b.cacheGet(99) === undefined);
    assert.equal(b.cacheGet(1), undefined, "b dropped its copy of key 1 (a set it)");
    assert.notEqual(await b(1), first, "b never serves the value a replaced");
  } finally {
    a[Symbol.dispose]();
    b[Symbol.dispose]();
  }
});

for (const change of ["cacheSet", "cacheDelete"] as const) {
  Deno.test(`remote tier: a write-through that lands after this host's own ${change} is not left in the storage`, async () => {
    const server = new FakeServer();
    const name = `rt-own-${change}-${crypto.randomUUID()}`;
    const tierA = fakeTier(server);
    const partsA = tierA.storage as FakeParts;
    const a = host(name, tierA, "a");
    const b = host(name, fakeTier(server), "b");
    try {
      await b(99);
      await until("b's 99 lands", () => stored(server, name, 99));
      // a computes key 1; its write-through is slow in the network.
      const slow = Promise.withResolvers<void>();
      partsA.holdSets = slow.promise;
      const old = await a(1);
      partsA.holdSets = undefined;
      // a changes key 1 itself while its write-through is on its way.
      if (change === "cacheSet") a.cacheSet("new (set by a)", 1);
      else a.cacheDelete(1);
      a.cacheDelete(99); // a witness, sent with the change
      await sleep(20); // (the change could land now, before the write-through)
      // Then the older write-through lands.
      slow.resolve();
      await until("b receives a's changes", () => b.cacheGet(99) === undefined);
      await sleep(20);
      const got = await freshHostGets(server, name);
      assert.notEqual(got, old, `a third host never gets the value a replaced: got ${got}`);
    } finally {
      a[Symbol.dispose]();
      b[Symbol.dispose]();
    }
  });
}

Deno.test("remote tier: a write-through made while the bus lost messages is taken back after the gap", async () => {
  const server = new FakeServer();
  const name = `rt-gap-${crypto.randomUUID()}`;
  const gate = Promise.withResolvers<void>();
  const started = Promise.withResolvers<void>();
  const a = cache({ name, remote: fakeTier(server), ttl: 60_000, remoteTimeout: 2000 })(
    async (k: number) => {
      started.resolve();
      await gate.promise;
      return `old ${k} (computed by a before b's change)`;
    },
  );
  const b = host(name, fakeTier(server), "b");
  try {
    const pending = a(1); // a's computation starts (its remote read missed)
    await started.promise;
    server.loseMessages = true; // the bus drops messages (a's pub/sub connection is down)
    const published = server.published.length;
    b.cacheSet("new (set by b)", 1);
    await until("b's set is sent", () => server.published.length > published);
    gate.resolve();
    await pending; // a's computation ends: a never heard of b's change
    await sleep(20); // a's write-through lands
    server.loseMessages = false;
    server.gap(); // a's bus reconnects: messages may have been lost
    await until("a takes its write back", () => !stored(server, name, 1));
    const got = await freshHostGets(server, name);
    assert.notEqual(
      got,
      "old 1 (computed by a before b's change)",
      `b's change is not undone by a's older value: got ${got}`,
    );
  } finally {
    gate.resolve();
    a[Symbol.dispose]();
    b[Symbol.dispose]();
  }
});

Deno.test("remote tier: a change kept in the outbox while this host was cut off does not undo a newer change of another host", async () => {
  await quiet(async () => {
    const server = new FakeServer();
    const name = `rt-outbox-${crypto.randomUUID()}`;
    const ha = hostTier(server);
    const a = host(name, ha.tier, "a", { remoteTimeout: 200 });
    const b = host(name, fakeTier(server), "b");
    try {
      // a is cut off from the storage (not from the bus): its breaker opens.
      ha.parts.down = true;
      for (let k = 10; k < 14; k++) await a(k);
      a.cacheSet("older (set by a while cut off)", 1);
      await sleep(5);
      // b sets the key later; a hears of it.
      b.cacheSet("newer (set by b)", 1);
      await until("b's set lands", () => stored(server, name, 1));
      ha.parts.down = false;
      // a's outbox goes out at its breaker's next trial.
      await until(
        "a's outbox is sent",
        () =>
          server.published.filter((m) =>
            m.keys !== "clear" && m.keys.some((k) => hex(k) === hex(keyOf(1)))
          ).length >= 2,
        15_000,
      );
      await sleep(20);
      const got = await freshHostGets(server, name);
      assert.notEqual(
        got,
        "older (set by a while cut off)",
        `a's older set does not undo b's newer one: got ${got}`,
      );
    } finally {
      a[Symbol.dispose]();
      b[Symbol.dispose]();
    }
  });
});

Deno.test("remote tier: a tag time retried after a failure never lowers a newer tag time in the storage", async () => {
  const server = new FakeServer();
  const name = `rt-tagtime-${crypto.randomUUID()}`;
  let now = 1_000_000;
  const clock = () => now;
  const make = (parts: FakeParts) =>
    new RemoteLink(remoteTier({ storage: parts, bus: parts }), name, 1000, {
      drop: () => {},
      dropAll: () => {},
      dropTags: () => {},
    }, clock);
  const pa = new HostParts(server);
  const a = make(pa);
  const b = make(new FakeParts(server));
  const d = make(new FakeParts(server));
  const t = "user:7";
  await sleep(1);
  // a invalidates t; its tag-time write fails (a's client only).
  pa.failSets = true;
  a.invalidateTags([t]);
  await a.drain();
  pa.failSets = false;
  // d stores a value carrying t, born after a's invalidation.
  now += 1000;
  d.write(keyOf(1), "value born between the two invalidations", false, undefined, d.stamp(), [t]);
  await d.drain();
  await sleep(5);
  // b invalidates t after that value was born.
  now += 1000;
  b.invalidateTags([t]);
  await b.drain();
  // a's retry goes out.
  now += 1000;
  await a.drain();
  await sleep(5);
  // A host that starts now (it never got the messages) reads the tag time from the storage.
  now += 1000;
  const e = make(new FakeParts(server));
  await sleep(1);
  const got = await e.fetch(keyOf(1), e.stamp());
  assert.equal(got, undefined, "the value born before b's invalidation is a miss");
  for (const l of [a, b, d, e]) await l.close();
});

Deno.test("remote tier: a tag time read before a bus gap does not count as known after it", async () => {
  const server = new FakeServer();
  const name = `rt-taggap-${crypto.randomUUID()}`;
  let now = 2_000_000;
  const clock = () => now;
  /** b's client: the reply to a tag-time read, as of when the read was made, waits. */
  class SlowTagReads extends FakeParts {
    hold: Promise<void> | undefined = undefined;
    override get(n: string, key: Uint8Array, signal: AbortSignal): Promise<Uint8Array | undefined> {
      const held = this.hold;
      if (held === undefined || key[0] !== 0xff) return super.get(n, key, signal);
      const snapshot = server.entries.get(`${n}/${hex(key)}`)?.value.slice();
      return held.then(() => snapshot);
    }
  }
  const make = (parts: FakeParts) =>
    new RemoteLink(remoteTier({ storage: parts, bus: parts }), name, 1000, {
      drop: () => {},
      dropAll: () => {},
      dropTags: () => {},
    }, clock);
  // (a writes without a bus: the gap below is b's alone.)
  const pa = new FakeParts(server);
  const a = new RemoteLink(remoteTier({ storage: pa }), name, 1000, {
    drop: () => {},
    dropAll: () => {},
  }, clock);
  const pb = new SlowTagReads(server);
  const b = make(pb);
  const c = make(new FakeParts(server));
  const t = "team:3";
  await sleep(1);
  a.write(keyOf(1), "one", false, undefined, a.stamp(), [t]);
  now += 10;
  a.write(keyOf(2), "two", false, undefined, a.stamp(), [t]);
  await a.drain();
  await sleep(5);
  // b reads key 1; its read of t's time is slow to answer.
  const slow = Promise.withResolvers<void>();
  pb.hold = slow.promise;
  now += 10;
  const reading = b.fetch(keyOf(1), b.stamp());
  await sleep(1);
  pb.hold = undefined;
  // Meanwhile c invalidates t, and b's bus loses the message (then reconnects).
  server.loseMessages = true;
  now += 1000;
  c.invalidateTags([t]);
  await c.drain();
  server.loseMessages = false;
  server.gap();
  slow.resolve(); // the answer of before the invalidation arrives
  assert.equal(await reading, undefined, "the read under way during the gap is not trusted");
  now += 10;
  assert.equal(
    await b.fetch(keyOf(2), b.stamp()),
    undefined,
    "key 2, born before c's invalidation of t, is a miss",
  );
  for (const l of [a, b, c]) await l.close();
});

Deno.test("remote tier: a remote that is dead for good: cacheDelete of ever new keys does not grow memory without bound", async () => {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--v8-flags=--expose-gc",
      new URL("./fixtures/unsent_bound_child.ts", import.meta.url).pathname,
    ],
    stdout: "piped",
    stderr: "inherit",
  });
  const out = await child.output();
  assert.equal(out.code, 0);
  const { growth } = JSON.parse(new TextDecoder().decode(out.stdout).trim());
  // 300,000 more keys: bounded structures (10,000 keys each) grow by nothing much; one
  // entry per key kept forever grows by tens of MB.
  assert.ok(growth < 8 * 1024 * 1024, `heap grew by ${(growth / 1048576).toFixed(1)} MiB`);
});
