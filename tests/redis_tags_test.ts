// Tags across processes and hosts over a real redis-server (started here): two processes of
// one machine share a shared cache (and its tag clock), a third "host" has a memory local
// tier; one invalidateTags reaches the first two at once and the third through the bus, and
// a host started afterwards never serves the remote entry carrying the tag.
import assert from "node:assert/strict";
import { createClient } from "@redis/client";
import { startRedisServer } from "./fixtures/redis_server.ts";
import { TagsHost } from "./fixtures/tags_driver.ts";
import { until } from "./fixtures/until.ts";

Deno.test("redis tags: one invalidateTags reaches the shared processes at once and the other host by the bus; a late host misses the remote entry", async () => {
  await using redis = await startRedisServer();
  const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp_redis_tags_" });
  const name = `rt-${crypto.randomUUID()}`;
  const hosts: TagsHost[] = [];
  const start = async (label: string, shared: boolean) => {
    const h = await TagsHost.start({
      label,
      name,
      redis: redis.url,
      ...(shared ? { dir } : {}),
    });
    hosts.push(h);
    return h;
  };
  try {
    const a = await start("a", true);
    const b = await start("b", true);
    const c = await start("c", false);
    assert.equal((await a.call(1)).value, "1@a#1");
    assert.equal((await a.call(2)).value, "2@a#2");
    const shared = await b.call(1);
    assert.deepEqual([shared.value, shared.computed], ["1@a#1", 0], "b: the shared file");
    const client = createClient({ url: redis.url });
    await client.connect();
    try {
      await until("a's values land in Redis", async () => (await client.keys("*")).length >= 2);
    } finally {
      await client.close();
    }
    const remote = await c.call(1);
    assert.deepEqual([remote.value, remote.computed], ["1@a#1", 0], "c: a remote hit");
    assert.equal((await c.send("peek 1")).value, "1@a#1", "kept locally");
    assert.equal((await c.call(2)).value, "2@a#2");
    await a.send("invalidate k:1");
    // The same machine: at once, no message.
    assert.deepEqual(await b.send("peek 1"), { value: null });
    assert.deepEqual(await a.send("peek 1"), { value: null });
    // Another host: by the bus.
    await until("c drops its copy", async () => (await c.send("peek 1")).value === null);
    assert.equal((await c.send("peek 2")).value, "2@a#2", "another tag stays");
    // A host started after the invalidation never saw the message; Redis still holds a's
    // value of key 1 (born before it).
    const d = await start("d", false);
    const late = await d.call(1);
    assert.deepEqual([late.value, late.computed], ["1@d#1", 1]);
    const two = await d.call(2);
    assert.deepEqual([two.value, two.computed], ["2@a#2", 0], "a remote hit");
  } finally {
    await Promise.all(hosts.map((h) => h.exit()));
    await Deno.remove(dir, { recursive: true });
  }
});
