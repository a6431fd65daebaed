/**
 * The cost of tags on a hit: the same hit row of a cache without tags (the baseline) and
 * with `tags`, side by side in one process, on the engine that `WARP_CACHE_ENGINE` selects
 * (`native` or `ts`), for the memory backend and (with `--allow-ffi`) the shared one.
 * Target: a memory hit with tags within 10% of one without.
 *
 * Rows: `no tags`; `tags`; `tags, after invalidations`: other tags are invalidated every
 * 1,000 calls, so that the clock moves and each entry's next hit checks its tags once (the
 * memory clock remembers the epoch it checked; a shared entry is read back from the file,
 * so a shared hit checks its tags on every hit after any invalidation in its directory).
 *
 * Each row is measured in short samples ({@linkcode PASSES} passes over 1,000 keys of 2 int
 * args) that take turns with the other rows of its group, the first row of each round
 * moving on by one: a busy machine's slow moments fall on every row alike, and the ratio of
 * `tags` to `no tags` is taken sample by sample (`scripts/bench_report.ts` runs this in
 * several processes and reports the median of those ratios). The rows after invalidations
 * come last (they move the tag clock that the others check against), each sample after one
 * of `no tags`. Prints one JSON object:
 * `{ [group]: { [row]: number[] } }`, ns per hit of each sample, in the order taken.
 *
 * Run: `deno run -A bench/tags_bench.ts` (and with `WARP_CACHE_ENGINE=ts`).
 *
 * @module
 */

import { cache, invalidateTags } from "../mod.ts";
import { memoryEngine } from "../src/store/engine.ts";
import { takeTurns } from "./_workload.ts";

/** Keeps results alive so that the work is not optimised away. */
export let sink = 0;

const KEYS = 1000;
/** Passes over the keys in one sample (64,000 hits). */
const PASSES = 64;
const SAMPLES = Number(Deno.env.get("WARP_TAGS_SAMPLES") ?? "24");

const f2 = (a: number, b: number): number => a * 31 + b;
const a: number[] = [];
const b: number[] = [];
for (let i = 0; i < KEYS; i++) {
  a.push(i % 100);
  b.push(Math.floor(i / 100));
}

interface Row {
  name: string;
  call: (x: number, y: number) => number;
  /** Invalidates another tag before every pass over the keys. */
  churn: boolean;
}

let round = 0;

/** One sample of `row`: ns per hit over {@linkcode PASSES} passes. */
function sample(row: Row): number {
  const call = row.call;
  let acc = 0;
  const t0 = performance.now();
  for (let p = 0; p < PASSES; p++) {
    if (row.churn) invalidateTags(`other:${round++}`);
    for (let i = 0; i < KEYS; i++) acc += call(a[i]!, b[i]!);
  }
  const ns = (performance.now() - t0) * 1e6 / (PASSES * KEYS);
  sink += acc;
  return ns;
}

const results: Record<string, Record<string, number[]>> = {};

/** Fills each row's cache (checking its values), then takes the samples in turns. */
async function group(name: string, rows: Row[]): Promise<void> {
  for (const row of rows) {
    for (let i = 0; i < KEYS; i++) {
      if (row.call(a[i]!, b[i]!) !== f2(a[i]!, b[i]!)) {
        throw new Error(`${name}, ${row.name}: wrong value`);
      }
    }
    for (let w = 0; w < 3; w++) sample(row); // warms the row up
  }
  const out: Record<string, number[]> = {};
  // The rows that invalidate tags move the clock that the others check against: they are
  // measured after them, taking turns with the first row (their ratio is not paired).
  const steady = rows.filter((r) => !r.churn);
  const churning = [rows[0]!, ...rows.filter((r) => r.churn)];
  const taken = await takeTurns(steady, SAMPLES, sample);
  steady.forEach((row, i) => out[row.name] = taken[i]!);
  for (const row of churning.slice(1)) out[row.name] = [];
  for (let s = 0; s < SAMPLES; s++) {
    for (let k = 1; k < churning.length; k++) {
      sample(churning[0]!);
      out[churning[k]!.name]!.push(sample(churning[k]!));
    }
  }
  results[name] = out;
}

/** The three rows of a group, made by `make` (tags: `t:<first argument>`). */
function rows(
  make: (opts: { name: string; tags?: (x: number) => string[] }) => Row["call"],
): Row[] {
  const tags = (x: number): string[] => [`t:${x}`];
  return [
    { name: "no tags", call: make({ name: "plain" }), churn: false },
    { name: "tags", call: make({ name: "tagged", tags }), churn: false },
    {
      name: "tags, after invalidations",
      call: make({ name: "churn", tags }),
      churn: true,
    },
  ];
}

await group(
  `memory hit, tags off / on (${memoryEngine()} engine)`,
  rows((opts) => cache({ maxSize: 2048, ...opts })(f2)),
);

if ((await Deno.permissions.query({ name: "ffi" })).state === "granted") {
  const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp_tags_bench_" });
  try {
    await group(
      "shared hit, tags off / on",
      rows((opts) => cache({ backend: "shared", dir, maxSize: 2048, ...opts })(f2)),
    );
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

console.log(JSON.stringify(results));
