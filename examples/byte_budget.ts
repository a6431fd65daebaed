/**
 * A memory cache bounded by bytes as well as entries: `maxBytes` is the budget, `sizeOf`
 * measures an entry (by default strings count 2 bytes a code unit, byte arrays their length,
 * other values the length of their encoding). The strategy evicts until a new entry fits; an
 * entry larger than the whole budget is returned but not stored.
 *
 * $ deno run --allow-ffi --allow-env --allow-read examples/byte_budget.ts
 *
 * @module
 */

import assert from "node:assert/strict";
import { cache } from "../mod.ts"; // jsr:@warp/cache

// Thumbnails of up to 64 KiB; keep at most 1 MiB of them, and at most 10,000 entries.
const thumbnail = cache({ maxSize: 10_000, maxBytes: 1 << 20, strategy: "s3fifo" })(
  (id: number, size: number): Uint8Array => new Uint8Array(size).fill(id % 256),
);

for (let id = 0; id < 100; id++) thumbnail(id, 32 * 1024); // 100 × 32 KiB = 3.1 MiB
let info = thumbnail.cacheInfo();
console.log(info); // 32 entries of 32 KiB: bytes 1048576 of maxBytes 1048576
assert.ok(info.bytes! <= info.maxBytes!);
assert.equal(info.currentSize, 32);

thumbnail(1_000, 2 << 20); // 2 MiB: larger than the budget, returned but not stored
info = thumbnail.cacheInfo();
assert.equal(info.oversizeSkips, 1);
assert.equal(thumbnail.cacheGet(1_000, 2 << 20), undefined);

// sizeOf: your own measure, given the value and the arguments (here: rows × an estimate).
const report = cache({
  maxBytes: 100_000,
  sizeOf: (rows: string[][]) => rows.length * 200,
})((month: string): string[][] => Array.from({ length: 100 }, (_, i) => [month, String(i), "…"]));
for (let m = 1; m <= 12; m++) report(`2026-${m}`); // 20,000 bytes each: 5 fit
console.log(report.cacheInfo());
assert.equal(report.cacheInfo().currentSize, 5);
