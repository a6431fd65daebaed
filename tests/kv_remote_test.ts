// The `remote` option with the Deno KV tier on a local `Deno.openKv` path: two "hosts"
// (caches with their own local tiers, each with its own KV connection to one file) share
// entries, and a cacheDelete or cacheClear in one reaches the other's local tier.
import assert from "node:assert/strict";
import { cache } from "../mod.ts";
import { kvTier } from "../src/remote/kv.ts";
import { until } from "./fixtures/until.ts";

/** The number of entries of cache `name` in the KV file at `path` (the layout of
 * src/remote/kv.ts: `["warp", name, key]`; the bus key left out). */
async function stored(path: string, name: string): Promise<number> {
  const kv = await Deno.openKv(path);
  try {
    let n = 0;
    for await (const e of kv.list({ prefix: ["warp", name] })) if (e.key[2] !== "_bus") n++;
    return n;
  } finally {
    kv.close();
  }
}

/** Waits until cache `name` has `n` entries in the KV file: a write-through lands in the
 * background, and a host that reads before it does computes the value itself. */
async function landed(path: string, name: string, n: number): Promise<void> {
  await until(`${n} entries of ${name} land`, async () => (await stored(path, name)) >= n);
}

Deno.test("kv remote: two hosts share entries and invalidations through one KV file", async () => {
  const dir = await Deno.makeTempDir({ prefix: "warp_kv_remote_" });
  const path = `${dir}/cache.kv`;
  const tierA = await kvTier({ path }, { pollInterval: 50 });
  const tierB = await kvTier({ path }, { pollInterval: 50 });
  const calls = { a: 0, b: 0 };
  const make = (tier: typeof tierA, host: "a" | "b") =>
    cache({ name: "kv-demo", ttl: 60_000, remote: tier })(async (k: number) => {
      calls[host]++;
      await null;
      return { k, by: host };
    });
  const a = make(tierA, "a");
  const b = make(tierB, "b");
  try {
    assert.deepEqual(await a(1), { k: 1, by: "a" });
    await landed(path, "kv-demo", 1);
    assert.deepEqual(await b(1), { k: 1, by: "a" }, "a remote hit on b");
    assert.deepEqual(calls, { a: 1, b: 0 });
    assert.equal(b.cacheInfo().remoteHits, 1);

    a.cacheDelete(1);
    await until("the delete reaches b", () => b.cacheGet(1) === undefined);
    assert.deepEqual(await b(1), { k: 1, by: "b" }, "deleted remotely too: b computes");

    await a(2);
    await landed(path, "kv-demo", 2);
    await b(2);
    assert.equal(b.cacheGet(2)?.by, "a");
    b.cacheClear();
    await until("the clear reaches a", () => a.cacheGet(2) === undefined);
    assert.equal(a.cacheInfo().remoteErrors, 0);
    assert.equal(b.cacheInfo().remoteErrors, 0);
  } finally {
    a[Symbol.dispose]();
    b[Symbol.dispose]();
    await tierA.close();
    await tierB.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kv remote: a value over Deno KV's 64 KiB stays local, without an error", async () => {
  const dir = await Deno.makeTempDir({ prefix: "warp_kv_big_" });
  const tier = await kvTier({ path: `${dir}/big.kv` }, { pollInterval: 0 });
  const f = cache({ name: "kv-big", remote: tier })(async (n: number) => {
    await null;
    return "x".repeat(n);
  });
  try {
    assert.equal((await f(100_000)).length, 100_000);
    await new Promise((r) => setTimeout(r, 50));
    assert.equal(f.cacheInfo().remoteErrors, 0);
    assert.equal(
      await tier.storage.get("kv-big", new Uint8Array([1]), new AbortController().signal),
      undefined,
    );
  } finally {
    f[Symbol.dispose]();
    await tier.close();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("kv remote: a burst of 100 deletes reaches the KV store and the other host, every one", async () => {
  const dir = await Deno.makeTempDir({ prefix: "warp_kv_burst_" });
  const path = `${dir}/burst.kv`;
  const tierA = await kvTier({ path }, { pollInterval: 50 });
  const tierB = await kvTier({ path }, { pollInterval: 50 });
  const make = (tier: typeof tierA, host: string) =>
    cache({ name: "kv-burst", ttl: 600_000, remote: tier })(async (k: number) => {
      await null;
      return `${k}@${host}`;
    });
  const a = make(tierA, "a");
  const b = make(tierB, "b");
  const keys = Array.from({ length: 100 }, (_, i) => i);
  try {
    for (let round = 0; round < 4; round++) {
      for (const k of keys) await a(k);
      await landed(path, "kv-burst", keys.length);
      for (const k of keys) assert.equal(await b(k), `${k}@a`, `round ${round}: b reads a's`);
      for (const k of keys) a.cacheDelete(k);
      await until(
        `round ${round}: every delete reaches b`,
        () => keys.every((k) => b.cacheGet(k) === undefined),
      );
      const kv = await Deno.openKv(path);
      const left: Deno.KvKey[] = [];
      for await (const e of kv.list({ prefix: ["warp", "kv-burst"] })) {
        if (e.key.length === 3 && e.key[2] !== "_bus") left.push(e.key);
      }
      kv.close();
      assert.equal(left.length, 0, `round ${round}: no entry left in KV`);
    }
  } finally {
    a[Symbol.dispose]();
    b[Symbol.dispose]();
    await tierA.close();
    await tierB.close();
    await Deno.remove(dir, { recursive: true });
  }
});
