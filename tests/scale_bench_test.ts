/**
 * Keeps `bench/scale.ts` (the scale section of `deno task bench`) from rotting: runs it at
 * 1,000 entries with short measurements and checks that its JSON has every store and
 * operation, as positive finite numbers. Timings are not compared with anything.
 */

import assert from "node:assert/strict";
import { operationsOf, type ScaleReport, SLOT_BYTES, STORES, WHOLE_CACHE } from "../bench/scale.ts";

const script = new URL("../bench/scale.ts", import.meta.url).pathname;

Deno.test("bench/scale.ts reports every store and operation as positive finite numbers", async () => {
  const res = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", script, "--json", "--sizes=1000", "--target-ms=2", "--repeats=1"],
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stderr = new TextDecoder().decode(res.stderr);
  assert.ok(res.success, `bench/scale.ts failed: ${stderr}`);
  const report = JSON.parse(new TextDecoder().decode(res.stdout)) as ScaleReport;

  assert.deepEqual(report.sizes, [1000]);
  assert.equal(report.slotBytes, SLOT_BYTES);
  assert.equal(report.loadAverage.length, 3);
  assert.ok(report.dirKind.length > 0);
  assert.deepEqual(report.results.map((r) => r.store), [...STORES]);
  for (const r of report.results) {
    assert.equal(r.error, undefined, `${r.store}: ${r.error}`);
    assert.equal(r.entries, 1000);
    const ops = operationsOf(r.store);
    assert.equal(ops.includes("open full"), r.store === "shared");
    assert.deepEqual(Object.keys(r.ns).sort(), [...ops].sort(), r.store);
    for (const op of ops) {
      const v = r.ns[op]!;
      assert.ok(Number.isFinite(v) && v > 0, `${r.store} ${op}: ${v}`);
    }
    // A whole-cache operation is one call; it cannot cost less than a timer read.
    for (const op of WHOLE_CACHE) {
      if (ops.includes(op)) assert.ok(r.ns[op]! >= 10, `${r.store} ${op}: ${r.ns[op]}`);
    }
    assert.ok(Number.isFinite(r.rssBytesPerEntry), `${r.store} RSS: ${r.rssBytesPerEntry}`);
    if (r.store === "shared") {
      // README "Shared backend": 512 + 8 × tableSize + 72 × (maxSize + 1) + 256 × chunks + 16384;
      // entries of 16-byte keys and values live in their slots: the default budget is the
      // smallest (one chunk), and no spare chunk.
      assert.equal(r.fileBytes, 512 + 8 * 2048 + 72 * 1001 + 256 * 1 + 16384);
    } else {
      assert.equal(r.fileBytes, undefined);
    }
  }
});
