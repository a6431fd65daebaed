/**
 * Stale values: `staleWhileRevalidate` answers at once with the stale value and refreshes
 * the key in the background; `staleIfError` answers a failed computation with the last
 * value, and `errorBackoff` stops calling a failing origin for a while. The clock is
 * injected, so the example runs in no time.
 *
 * $ deno run --allow-ffi --allow-env --allow-read examples/stale.ts
 *
 * @module
 */

import assert from "node:assert/strict";
import { cache, cacheContext } from "../mod.ts"; // jsr:@warp/cache

let now = 0; // ms, on the injected clock
let version = 0;
let failing = false;
let calls = 0;

const config = cache({
  ttl: 1_000, // fresh for 1 s
  staleWhileRevalidate: 10_000, // then stale for 10 s: served at once, refreshed behind
  staleIfError: 60_000, // a failure within 60 s after the TTL gets the last value
  errorBackoff: 5_000, // and for 5 s after a failure the origin is not called again
  clock: () => now,
})(async (name: string): Promise<string> => {
  calls++;
  const stale = cacheContext<string>()?.stale; // the value being refreshed, if any
  await null; // an upstream call
  if (failing) throw new Error("origin down");
  return `${name} v${++version} (was: ${stale ?? "nothing"})`;
});

console.log(await config("flags")); // miss: "flags v1 (was: nothing)"

now = 1_500; // past the TTL, within the stale window
console.log(await config("flags")); // stale hit at once: still v1; a refresh starts
await new Promise((r) => setTimeout(r, 10)); // let the background refresh finish
console.log(config.cacheGet("flags")); // "flags v2 (was: flags v1 ...)"
assert.match(config.cacheGet("flags")!, /^flags v2/);

failing = true;
now = 20_000; // past the stale window, within staleIfError's: the origin fails
console.log(await config("flags")); // the last value instead of the error
now = 21_000; // within errorBackoff: the origin is not called at all
const before = calls;
assert.match(await config("flags"), /^flags v2/);
assert.equal(calls, before);

now = 30_000; // the back-off is over and the origin is back
failing = false;
assert.match(await config("flags"), /^flags v3/);

console.log(config.cacheInfo()); // staleHits counts the stale answers, refreshes the refreshes
const info = config.cacheInfo();
assert.equal(info.staleHits, 3);
assert.equal(info.refreshes, 1);
