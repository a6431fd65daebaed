/**
 * The call path before and after a change, side by side in one process: `cache()` of this
 * checkout against `cache()` of an earlier tree (`WARP_BEFORE_MOD`: the path of its
 * `mod.ts`, exported and built by `scripts/bench_split.ts`), on every hit and miss row of
 * a plain cache and of caches with each feature on.
 *
 * Each row is measured in short samples that alternate between the two sides (before,
 * after, after, before, …): a pass over the row's key stream (65,536 calls) for a hit row,
 * 5,000 new keys for a miss row. A busy machine's slow moments then fall on both sides
 * alike, where `deno bench` measures one side for half a second and then the other. Prints
 * one JSON object: `{ [row]: { before: number[], after: number[] } }`, ns per call of each
 * sample.
 *
 * Run: `deno task bench:split` (which exports the earlier tree first and runs this several
 * times).
 *
 * @module
 */

import { cache as afterCache } from "../mod.ts";
import { intArgs, MASK, STREAM_LENGTH, STREAMS, takeTurns } from "./_workload.ts";

type CacheFn = typeof afterCache;
type Side = "before" | "after";

const beforeMod = Deno.env.get("WARP_BEFORE_MOD");
if (beforeMod === undefined) {
  throw new Error("Cannot run bench/split_bench.ts: set WARP_BEFORE_MOD (deno task bench:split)");
}
const beforeCache = (await import(beforeMod)).cache as CacheFn;
const sharedDir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp_split_" });
const SAMPLES = Number(Deno.env.get("WARP_SPLIT_SAMPLES") ?? "12");
const MISSES = 5_000;

/** Keeps results alive so that the work is not optimised away. */
export let sink = 0;

const f2 = (a: number, b: number): number => a * 1000 + b;
const af2 = async (a: number, b: number): Promise<number> => await a * 1000 + b;

// `WARP_SPLIT_REVERSE=1` makes the new side's caches first and measures it first (bench:split
// alternates from process to process, so that neither side is always made or run first).
const sides: [Side, CacheFn][] = [["before", beforeCache], ["after", afterCache]];
if (Deno.env.get("WARP_SPLIT_REVERSE") === "1") sides.reverse();

const results: Record<string, Record<Side, number[]>> = {};

/** Runs `sample(side)` (ns per call) `SAMPLES` times per side, alternating. */
async function measure(
  row: string,
  sample: (side: Side) => number | Promise<number>,
): Promise<void> {
  const taken = await takeTurns(sides, SAMPLES, ([side]) => sample(side));
  const out = {} as Record<Side, number[]>;
  sides.forEach(([side], i) => out[side] = taken[i]!);
  results[row] = out;
}

function syncHits(f: (a: number, b: number) => number, a: number[], b: number[]): number {
  let acc = 0;
  const t0 = performance.now();
  for (let i = 0; i <= MASK; i++) acc += f(a[i]!, b[i]!);
  const ns = (performance.now() - t0) * 1e6 / STREAM_LENGTH;
  sink += acc;
  return ns;
}

async function asyncHits(
  f: (a: number, b: number) => Promise<number>,
  a: number[],
  b: number[],
): Promise<number> {
  let acc = 0;
  const t0 = performance.now();
  for (let i = 0; i <= MASK; i++) acc += await f(a[i]!, b[i]!);
  const ns = (performance.now() - t0) * 1e6 / STREAM_LENGTH;
  sink += acc;
  return ns;
}

async function syncRow(
  row: string,
  make: (c: CacheFn, side: Side) => (a: number, b: number) => number,
  a: number[],
  b: number[],
): Promise<void> {
  const fs = {} as Record<Side, (a: number, b: number) => number>;
  for (const [side, c] of sides) {
    fs[side] = make(c, side);
    syncHits(fs[side], a, b); // fills the cache
  }
  await measure(row, (side) => syncHits(fs[side], a, b));
}

async function asyncRow(
  row: string,
  make: (c: CacheFn, side: Side) => (a: number, b: number) => Promise<number>,
  a: number[],
  b: number[],
): Promise<void> {
  const fs = {} as Record<Side, (a: number, b: number) => Promise<number>>;
  for (const [side, c] of sides) {
    fs[side] = make(c, side);
    await asyncHits(fs[side], a, b); // fills the cache
  }
  await measure(row, (side) => asyncHits(fs[side], a, b));
}

// Misses: every call a new key (a new round), caches full (each insert evicts).
let round = 0;
async function missRow(
  row: string,
  make: (c: CacheFn, side: Side) => (a: number, b: number) => number | Promise<number>,
): Promise<void> {
  const fs = {} as Record<Side, (a: number, b: number) => number | Promise<number>>;
  for (const [side, c] of sides) fs[side] = make(c, side);
  const misses = async (side: Side): Promise<number> => {
    const f = fs[side];
    let acc = 0;
    const r = ++round;
    const t0 = performance.now();
    for (let n = 0; n < MISSES; n++) {
      const v = f(n, r);
      acc += typeof v === "number" ? v : await v; // a synchronous miss is not awaited
    }
    const ns = (performance.now() - t0) * 1e6 / MISSES;
    sink += acc;
    return ns;
  };
  for (const [side] of sides) await misses(side); // fills the cache
  await measure(row, misses);
}

try {
  for (const spec of STREAMS) {
    const { a, b } = intArgs(spec);
    const max = spec.maxSize;
    const tag = `[${spec.label}]`;
    await syncRow(`hit 2 int args ${tag}`, (c) => c({ maxSize: max })(f2), a, b);
    await syncRow(
      `hit 2 int args, TTL on ${tag}`,
      (c) => c({ maxSize: max, ttl: 60_000 })(f2),
      a,
      b,
    );
    await syncRow(
      `hit 2 int args, stale window on ${tag}`,
      (c) => c({ maxSize: max, ttl: 60_000, staleWhileRevalidate: 60_000 })(f2),
      a,
      b,
    );
    await asyncRow(`async hit 2 int args ${tag}`, (c) => c({ maxSize: max })(af2), a, b);
    await asyncRow(
      `async hit 2 int args, timeout on ${tag}`,
      (c) => c({ maxSize: max, timeout: 60_000 })(af2),
      a,
      b,
    );
    await syncRow(
      `shared hit 2 int args ${tag}`,
      (c, side) =>
        c({ backend: "shared", maxSize: max, dir: sharedDir, name: `split-${side}-${spec.label}` })(
          f2,
        ),
      a,
      b,
    );
  }
  const max = 10_000;
  await missRow("miss + insert 2 int args", (c) => c({ maxSize: max })(f2));
  await missRow("async miss + insert 2 int args", (c) => c({ maxSize: max })(af2));
  await missRow(
    "shared miss + insert 2 int args",
    (c, side) =>
      c({ backend: "shared", maxSize: max, dir: sharedDir, name: `split-miss-${side}` })(f2),
  );
  console.log(JSON.stringify(results));
} finally {
  await Deno.remove(sharedDir, { recursive: true });
}
