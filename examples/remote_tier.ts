/**
 * A remote tier: two caches of one `name` (two "hosts" here, in one process) share values
 * through Redis, and a change made on one reaches the other through the invalidation bus.
 * The tier is opened with `await using`, so it is closed at the end of the scope (after
 * sending what is pending) and the script exits by itself.
 *
 * $ deno run --allow-ffi --allow-env --allow-read --allow-net examples/remote_tier.ts
 *
 * It needs a Redis (or Valkey) server: set `REDIS_URL` (say `redis://127.0.0.1:6379`).
 * Without it, it says so and exits.
 *
 * @module
 */

import assert from "node:assert/strict";
import { cache } from "../mod.ts"; // jsr:@warp/cache
import { redisTier } from "../src/remote/redis.ts"; // jsr:@warp/cache/redis

const url = Deno.env.get("REDIS_URL");
if (url === undefined) {
  console.log("skipped: set REDIS_URL (redis://host:port) to run this example against Redis");
  Deno.exit(0);
}

await using tier = await redisTier({ url });
const name = `example-profile-${crypto.randomUUID()}`; // a fresh cache on the server

let loads = 0;
// Host A loads profiles from its database; host B has none and reads through the tier.
const a = cache({ name, ttl: 60_000, remote: tier })(async (id: number) => {
  loads++;
  await new Promise((r) => setTimeout(r, 5)); // a slow load
  return { id, from: "A's database" };
});
const b = cache({ name, ttl: 60_000, remote: tier })(
  (_id: number): Promise<{ id: number; from: string }> =>
    Promise.reject(new Error("host B has no database")),
);

assert.equal((await a(1)).from, "A's database"); // computed on A, written through to Redis
await waitFor(async () => (await b(1)).from === "A's database"); // B: a remote hit
console.log(b.cacheInfo()); // remoteHits: 1
assert.equal(b.cacheInfo().remoteHits, 1);
assert.equal(loads, 1);

// A change on A reaches B through the bus: B drops its local copy and reads the new value.
a.cacheSet({ id: 1, from: "set on A" }, 1);
await waitFor(async () => (await b(1)).from === "set on A");
console.log(await b(1));
a.cacheDelete(1); // leaves nothing behind on the server
// `await using`: the tier closes here, within its timeout, whatever the server does.

/** Retries `check` for up to 5 s: a write-through and a bus message take a few ms. */
async function waitFor(check: () => Promise<boolean>): Promise<void> {
  for (const end = Date.now() + 5_000; Date.now() < end;) {
    if (await check().catch(() => false)) return;
    await new Promise((r) => setTimeout(r, 10));
  }
  throw new Error("timed out waiting for the other host");
}
