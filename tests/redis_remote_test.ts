// The `remote` option against a real redis-server on 127.0.0.1 (started by the test): two
// "hosts" (processes with separate local tiers) share through Redis; a cacheDelete in one
// reaches the other's local tier; Redis killed mid-run fails no call, the counters show
// the errors, and caching through Redis resumes once it is back.
import assert from "node:assert/strict";
import { createClient } from "@redis/client";
import { startRedisServer } from "./fixtures/redis_server.ts";
import { LineChild } from "../scripts/_line_child.ts";
import { until } from "./fixtures/until.ts";

const fixture = new URL("./fixtures/remote_host.ts", import.meta.url).pathname;
const root = new URL("../", import.meta.url).pathname;

/** One remote_host.ts process ("host"). */
class Host extends LineChild {
  static async start(url: string, name: string, label: string, local: string): Promise<Host> {
    const [host, ready] = await Host.spawn(label, fixture, [url, name, label, local], {
      cwd: root,
      env: { WARP_CACHE_ENGINE: "native" },
      stderr: "null",
    });
    assert.deepEqual(ready, { ready: true });
    return host;
  }
}

/**
 * Waits until a write-through of cache `name` is in Redis (the layout of src/remote/redis.ts:
 * `warp:<name>:<key>`): a host that reads the key before it lands computes its own value and
 * keeps it, which a busy machine made happen.
 */
async function landed(url: string, name: string): Promise<void> {
  const admin = createClient({ url });
  await admin.connect();
  try {
    await until(
      `a write-through of ${name} lands`,
      async () => (await admin.keys(`warp:${name}:*`)).some((k) => !k.endsWith(":bus")),
    );
  } finally {
    await admin.close();
  }
}

for (const local of ["memory", "shared"] as const) {
  Deno.test(`redis remote (${local} local tiers): two hosts share, invalidate, and survive a Redis outage`, async () => {
    await using redis = await startRedisServer();
    const dir = await Deno.makeTempDir({ prefix: "warp_redis_remote_" });
    const name = `rr-${crypto.randomUUID()}`;
    const localOf = (h: string) => local === "memory" ? "memory" : `${dir}/${h}`;
    if (local === "shared") {
      await Deno.mkdir(`${dir}/a`);
      await Deno.mkdir(`${dir}/b`);
    }
    const a = await Host.start(redis.url, name, "a", localOf("a"));
    const b = await Host.start(redis.url, name, "b", localOf("b"));
    try {
      // Shared through Redis: b's local miss is a remote hit.
      assert.deepEqual((await a.send("call 1")).computed, 1);
      await landed(redis.url, name);
      const got = await b.send("call 1");
      assert.equal(got.value, "1@a", "b got a's value");
      assert.equal(got.computed, 0, "b did not compute");
      assert.equal(got.info.remoteHits, 1);

      // A cacheDelete in a reaches b's local tier through the bus.
      assert.equal((await b.send("peek 1")).value, "1@a");
      await a.send("delete 1");
      const busMs = await until(
        "the delete reaches b",
        async () => (await b.send("peek 1")).value === null,
      );
      console.log(`  ${local}: the delete reached the other host after ${busMs.toFixed(0)} ms`);

      // Redis killed mid-run: no call fails; errors are counted.
      await redis.kill();
      for (let k = 10; k < 20; k++) {
        const r = await a.send(`call ${k}`);
        assert.equal(r.value, `${k}@a`, "a call during the outage still answers");
      }
      const down = (await a.send("info")).info;
      assert.ok(down.remoteErrors > 0, `errors counted: ${JSON.stringify(down)}`);

      // Back: caching through Redis resumes by itself (the breaker retries within 10 s).
      await redis.restart();
      let k = 100;
      const resumedMs = await until("caching through Redis resumes", async () => {
        k++;
        await a.send(`call ${k}`);
        await new Promise((r) => setTimeout(r, 30));
        const r = await b.send(`call ${k}`);
        return r.computed === 0 && r.value === `${k}@a`;
      }, 20_000);
      console.log(
        `  ${local}: shared through Redis again ${resumedMs.toFixed(0)} ms after restart`,
      );
      // The bus is back too.
      await a.send(`delete ${k}`);
      await until(
        "the bus delivers after the restart",
        async () => (await b.send(`peek ${k}`)).value === null,
      );
    } finally {
      await a.exit();
      await b.exit();
      await Deno.remove(dir, { recursive: true });
    }
  });
}

Deno.test("redis remote with a shared local tier: one remote fetch per key per machine", async () => {
  await using redis = await startRedisServer();
  const dir = await Deno.makeTempDir({ prefix: "warp_redis_machine_" });
  const name = `rm-${crypto.randomUUID()}`;
  await Deno.mkdir(`${dir}/elsewhere`);
  await Deno.mkdir(`${dir}/machine`);
  const admin = createClient({ url: redis.url });
  await admin.connect();
  // Another machine computes the key; its value lands in Redis.
  const other = await Host.start(redis.url, name, "other", `${dir}/elsewhere`);
  const hosts = await Promise.all(
    ["p1", "p2", "p3"].map((h) => Host.start(redis.url, name, h, `${dir}/machine`)),
  );
  try {
    assert.equal((await other.send("call 7")).computed, 1);
    await landed(redis.url, name);
    await admin.sendCommand(["CONFIG", "RESETSTAT"]);
    // Three processes of one machine (one shared directory) miss the key at once.
    const replies = await Promise.all(hosts.map((h) => h.send("call 7")));
    for (const r of replies) {
      assert.equal(r.value, "7@other");
      assert.equal(r.computed, 0);
    }
    const stats = String(await admin.sendCommand(["INFO", "commandstats"]));
    const gets = Number(/cmdstat_get:calls=(\d+)/.exec(stats)?.[1] ?? 0);
    assert.equal(gets, 1, `one GET for three processes of one machine:\n${stats}`);
  } finally {
    await admin.close();
    await other.exit();
    for (const h of hosts) await h.exit();
    await Deno.remove(dir, { recursive: true });
  }
});

for (const change of ["set", "delete"] as const) {
  Deno.test(`redis remote: a ${change} made on one host while Redis is down reaches the others once it is back`, async () => {
    await using redis = await startRedisServer();
    const name = `rec-${crypto.randomUUID()}`;
    const a = await Host.start(redis.url, name, "a", "memory");
    const b = await Host.start(redis.url, name, "b", "memory");
    try {
      assert.equal((await a.send("call 1")).value, "1@a");
      await landed(redis.url, name);
      await until("b reads a's value", async () => (await b.send("call 1")).value === "1@a");
      await redis.kill();
      // Made while Redis is unreachable: kept by host a.
      await a.send(change === "set" ? "set new 1" : "delete 1");
      assert.equal((await b.send("peek 1")).value, "1@a", "b cannot know yet");
      await redis.restart();
      // A set that failed may have landed or not: it is retried as a delete, so b gets
      // either the new value or its own computation, never the stale copy.
      const fresh = change === "set" ? ["new", "1@b"] : ["1@b"];
      const ms = await until(
        "b drops its stale copy",
        async () => (await b.send("call 1")).value !== "1@a",
        20_000,
      );
      assert.ok(fresh.includes((await b.send("call 1")).value));
      console.log(`  ${change}: reached the other host ${ms.toFixed(0)} ms after the restart`);
      // A host that starts now sees the change too (Redis has it, not the old value).
      const c = await Host.start(redis.url, name, "c", "memory");
      try {
        const got = (await c.send("call 1")).value;
        assert.ok([...fresh, "1@c"].includes(got), `a new host gets no stale value: ${got}`);
      } finally {
        await c.exit();
      }
    } finally {
      await a.exit();
      await b.exit();
    }
  });
}
