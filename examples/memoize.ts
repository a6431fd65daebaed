/**
 * A memoized function: the second call with the same arguments is a hit, and
 * `cacheInfo()` counts both.
 *
 * $ deno run --allow-ffi --allow-env --allow-read examples/memoize.ts
 * $ deno run examples/memoize.ts
 *
 * The second line runs it with no permission at all: the memory backend then uses its
 * TypeScript engine (same behaviour), silently and without a prompt.
 *
 * @module
 */

import assert from "node:assert/strict";
import { cache, caches } from "../mod.ts"; // jsr:@warp/cache

let calls = 0;
const distance = cache({ maxSize: 1_000 })(function distance(a: string, b: string): number {
  calls++;
  // Levenshtein distance, O(a × b): worth caching.
  let row = Array.from({ length: b.length + 1 }, (_, j) => j);
  for (let i = 1; i <= a.length; i++) {
    const next = [i];
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      next[j] = Math.min(row[j]! + 1, next[j - 1]! + 1, row[j - 1]! + cost);
    }
    row = next;
  }
  return row[b.length]!;
});

console.log(distance("kitten", "sitting")); // 3: a miss, the function runs
console.log(distance("kitten", "sitting")); // 3: a hit
console.log(distance("sitting", "kitten")); // 3: other arguments, another miss
console.log(distance.cacheInfo()); // { hits: 1, misses: 2, maxSize: 1000, currentSize: 2 }
assert.equal(calls, 2);
assert.deepEqual(distance.cacheInfo(), { hits: 1, misses: 2, maxSize: 1000, currentSize: 2 });

// Every cache of the process, with the engine that holds its entries:
// "native" (the Rust library) or "ts" (without --allow-ffi).
const listed = caches().find((c) => c.name === "distance");
console.log(listed?.name, listed?.backend, listed?.strategy, listed?.engine);

distance.cacheClear(); // removes every entry and resets the counters
assert.deepEqual(distance.cacheInfo(), { hits: 0, misses: 0, maxSize: 1000, currentSize: 0 });
