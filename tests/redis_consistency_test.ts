// No lost update across hosts, against a real redis-server started here: an invalidation
// (cacheClear, cacheDelete, cacheSet) is never undone by an older value, in this process or
// on another host; one made while Redis is unreachable is sent once it is back; a tier
// closes within its timeout whatever the server does.
import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createClient } from "@redis/client";
import { cache, type CacheOptions } from "../mod.ts";
import { redisTier } from "../src/remote/redis.ts";
import { startRedisServer } from "./fixtures/redis_server.ts";
import { KeyWriter } from "../src/codec/key_codec.ts";
import { until } from "./fixtures/until.ts";

const ffi = (await Deno.permissions.query({ name: "ffi" })).state === "granted";
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** Memory always; shared (each "host" in its own directory) when the library loads. */
async function locals(
  body: (label: string, of: (host: string) => CacheOptions) => Promise<void>,
): Promise<void> {
  await body("memory", () => ({ backend: "memory" }));
  if (!ffi) return;
  const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp_consistency_" });
  try {
    await body("shared", (host) => {
      Deno.mkdirSync(`${dir}/${host}`, { recursive: true });
      return { backend: "shared", dir: `${dir}/${host}` };
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** The remote key of `f(k)` in cache `name` (the default prefix). */
function remoteKey(name: string, k: number): Buffer {
  const w = new KeyWriter(64, true);
  w.call(undefined, false, [k]);
  return Buffer.concat([Buffer.from(`warp:${name}:`), w.buf.subarray(0, w.len)]);
}

const newClient = (url: string) => createClient({ url });

async function admin(url: string): Promise<ReturnType<typeof newClient>> {
  const client = newClient(url);
  client.on("error", () => {});
  await client.connect();
  return client;
}

Deno.test("redis: cacheClear() is not undone by the next call of the same process", async () => {
  await using redis = await startRedisServer();
  await locals(async (label, of) => {
    const tier = await redisTier({ url: redis.url });
    const raw = await admin(redis.url);
    let n = 0;
    const name = `clr-${crypto.randomUUID()}`;
    const f = cache({ ...of("a"), name, ttl: 60_000, remote: tier })(
      async (k: number) => {
        await null;
        return `${k}#${++n}`;
      },
    );
    try {
      assert.equal(await f(1), "1#1");
      await until(
        "the write-through lands",
        async () => (await raw.exists(remoteKey(name, 1))) === 1,
      );
      f.cacheClear();
      assert.equal(await f(1), "1#2", `${label}: the call after cacheClear() computes`);
      assert.equal(await f(1), "1#2", `${label}: and keeps its own value`);
    } finally {
      f[Symbol.dispose]();
      await raw.close();
      await tier.close();
    }
  });
});

for (const change of ["cacheSet", "cacheDelete"] as const) {
  Deno.test(`redis: a ${change} on host B is not undone by a computation in progress on host A`, async () => {
    await using redis = await startRedisServer();
    await locals(async (label, of) => {
      const name = `lost-${crypto.randomUUID()}`;
      const tiers = await Promise.all([0, 1, 2].map(() => redisTier({ url: redis.url })));
      const gate = Promise.withResolvers<void>();
      const started = Promise.withResolvers<void>();
      const make = (host: string, i: number, body: (k: number) => Promise<string>) =>
        cache({ ...of(host), name, ttl: 60_000, remote: tiers[i]!, remoteTimeout: 2000 })(body);
      const a = make("a", 0, async (k) => {
        if (k !== 1) return `${k}@a`;
        started.resolve();
        await gate.promise;
        return "old (computed by A before the change)";
      });
      // Async functions: their first call already reads the remote tier.
      const b = make("b", 1, async (k) => {
        await null;
        return `${k}@b`;
      });
      const c = make("c", 2, async (k) => {
        await null;
        return `${k}@c`;
      });
      try {
        // A witness: A holds key 99; B's change of key 1 travels with a delete of key 99
        // (one bus message), so A dropping 99 shows that A received the change of 1.
        assert.equal(await a(99), "99@a");
        const pending = a(1); // A's computation starts (its remote read missed) and waits
        await started.promise;
        if (change === "cacheSet") b.cacheSet("new (set by B)", 1);
        else b.cacheDelete(1);
        b.cacheDelete(99);
        await until("A receives B's change", () => a.cacheGet(99) === undefined);
        gate.resolve();
        assert.equal(await pending, "old (computed by A before the change)");
        await sleep(300); // whatever A would write through lands (before the fix, it did)
        const expected = change === "cacheSet" ? "new (set by B)" : "1@c";
        assert.equal(await c(1), expected, `${label}: a third host gets B's change`);
        assert.equal(await a(1), expected, `${label}: A does not keep its older value either`);
      } finally {
        gate.resolve();
        for (const f of [a, b, c]) f[Symbol.dispose]();
        for (const t of tiers) await t.close();
      }
    });
  });
}

Deno.test("redis: a cacheDelete made while the breaker is open is sent once Redis answers again", async () => {
  await using redis = await startRedisServer();
  const raw = await admin(redis.url);
  const name = `open-${crypto.randomUUID()}`;
  const tierA = await redisTier({ url: redis.url });
  const tierB = await redisTier({ url: redis.url });
  const make = (tier: typeof tierA, host: string) =>
    cache({ name, remote: tier, remoteTimeout: 100 })(async (k: number) => {
      await null;
      return `${k}@${host}`;
    });
  const a = make(tierA, "a");
  const b = make(tierB, "b");
  const warn = console.warn;
  console.warn = () => {};
  try {
    assert.equal(await a(1), "1@a");
    await until(
      "the write-through lands",
      async () => (await raw.exists(remoteKey(name, 1))) === 1,
    );
    assert.equal(await b(1), "1@a", "b reads a's value (no TTL) and keeps it locally");
    // Redis stops answering for a while: A's calls time out and its breaker opens.
    await raw.sendCommand(["CLIENT", "PAUSE", "1500", "ALL"]);
    for (let k = 10; k < 14; k++) await a(k);
    a.cacheDelete(1);
    assert.equal(a.cacheGet(1), undefined);
    await until(
      "the delete reaches Redis and host B",
      async () => b.cacheGet(1) === undefined && (await raw.exists(remoteKey(name, 1))) === 0,
    );
    assert.equal(await b(1), "1@b", "B computes the deleted key");
  } finally {
    console.warn = warn;
    a[Symbol.dispose]();
    b[Symbol.dispose]();
    await raw.close();
    await tierA.close();
    await tierB.close();
  }
});
