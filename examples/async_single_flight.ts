/**
 * An async function: concurrent calls for one key share one computation (single-flight),
 * a rejection is never cached, and `timeout` bounds how long a call waits while the
 * computation goes on and is stored when it resolves.
 *
 * $ deno run --allow-ffi --allow-env --allow-read examples/async_single_flight.ts
 *
 * @module
 */

import assert from "node:assert/strict";
import { cache } from "../mod.ts"; // jsr:@warp/cache

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

let fetches = 0;
const price = cache({ ttl: 60_000, timeout: 200 })(async (sku: string): Promise<number> => {
  fetches++;
  await sleep(sku === "slow" ? 400 : 20); // an upstream call
  if (sku === "gone") throw new Error(`no such sku: ${sku}`);
  return sku.length * 1.25;
});

// Ten concurrent calls, one computation: the nine others join it (and count as hits).
const prices = await Promise.all(Array.from({ length: 10 }, () => price("A-100")));
assert.deepEqual(new Set(prices), new Set([6.25]));
assert.equal(fetches, 1);
console.log(price.cacheInfo()); // { hits: 9, misses: 1, ... }

// A rejection reaches every caller and is not cached: the next call computes again.
await assert.rejects(price("gone"), /no such sku/);
await assert.rejects(price("gone"), /no such sku/);
assert.equal(fetches, 3);

// Past `timeout` the call rejects with a DOMException named TimeoutError; the computation
// goes on, and its result is stored when it resolves.
const started = performance.now();
await assert.rejects(
  price("slow"),
  (e: unknown) => e instanceof DOMException && e.name === "TimeoutError",
);
console.log(`timed out after ${Math.round(performance.now() - started)} ms`);
await sleep(400);
assert.equal(price.cacheGet("slow"), 5); // stored meanwhile
assert.equal(await price("slow"), 5); // a hit
assert.equal(fetches, 4);
console.log(price.cacheInfo());
