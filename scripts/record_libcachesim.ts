/**
 * Records libCacheSim's miss counts on the short traces of
 * `tests/fixtures/eviction_traces.ts` into `tests/fixtures/libcachesim_misses.json`, which
 * `tests/eviction_quality_test.ts` compares with both engines without Python.
 *
 * Run: `deno run -A scripts/record_libcachesim.ts` (installs PyPI `libcachesim` into
 * `bench/.venv` when it is missing; see `bench/_libcachesim.ts`).
 *
 * @module
 */

import { replayLibCacheSim } from "../bench/_libcachesim.ts";
import {
  CAPACITIES,
  checksum,
  evictionTraces,
  REQUESTS,
} from "../tests/fixtures/eviction_traces.ts";

const out = new URL("../tests/fixtures/libcachesim_misses.json", import.meta.url);
const traces = evictionTraces();
const report = await replayLibCacheSim(
  traces.map((t) => ({ ...t, capacities: [...CAPACITIES] })),
  ["S3FIFO", "Sieve", "LRU", "FIFO", "ARC"],
  (line) => console.error(line),
);
if (report.skipped !== null) {
  console.error(`libCacheSim did not run: ${report.skipped}`);
  Deno.exit(1);
}
// Counts by trace, then by policy, one per capacity of `CAPACITIES` (in its order).
const misses: Record<string, Record<string, number[]>> = {};
for (const r of report.results) {
  const byPolicy = misses[r.trace] ??= {};
  (byPolicy[r.policy] ??= [])[CAPACITIES.indexOf(r.capacity)] = r.misses;
}
const fixture = {
  recordedBy: "scripts/record_libcachesim.ts",
  libcachesim: report.version,
  requests: REQUESTS,
  capacities: CAPACITIES,
  checksums: Object.fromEntries(traces.map((t) => [t.name, checksum(t.ids)])),
  misses,
};
// One line per trace and policy.
const text = JSON.stringify(fixture, null, 2).replace(
  /\[\s+([\d,\s]+?)\s+\]/g,
  (_, list: string) => `[${list.split(/,\s*/).join(", ")}]`,
);
await Deno.writeTextFile(out, text + "\n");
console.error(`wrote ${out.pathname}: ${report.results.length} counts`);
