/**
 * The call path before and after a change, side by side in one run: `cache()` of this
 * checkout against `cache()` of an earlier tree (`WARP_BEFORE_MOD`: the path of its
 * `mod.ts`, exported and built by `scripts/bench_split.ts`), on every hit and miss row of
 * a plain cache and of caches with each feature on. Each iteration performs `BATCH` (1,000)
 * calls.
 *
 * Run: `deno task bench:split` (which exports the earlier tree first).
 *
 * @module
 */

import { cache as afterCache } from "../mod.ts";
import { BATCH, MASK, STREAMS } from "./_workload.ts";

type CacheFn = typeof afterCache;

const beforeMod = Deno.env.get("WARP_BEFORE_MOD");
if (beforeMod === undefined) {
  throw new Error("Cannot run bench/split_bench.ts: set WARP_BEFORE_MOD (deno task bench:split)");
}
const beforeCache = (await import(beforeMod)).cache as CacheFn;
const sharedDir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp_split_" });
globalThis.addEventListener("unload", () => Deno.removeSync(sharedDir, { recursive: true }));

/** Keeps results alive so that the work is not optimised away. */
export let sink = 0;

const f2 = (a: number, b: number): number => a * 1000 + b;
const af2 = async (a: number, b: number): Promise<number> => await a * 1000 + b;

// `WARP_SPLIT_REVERSE=1` benches the new side first in each group (bench:split alternates
// the order from round to round, so that neither side always runs on a warmer process).
const sides: [string, CacheFn][] = [["before", beforeCache], ["after", afterCache]];
if (Deno.env.get("WARP_SPLIT_REVERSE") === "1") sides.reverse();

function syncRow(
  group: string,
  make: (c: CacheFn, side: string) => (a: number, b: number) => number,
  a: number[],
  b: number[],
): void {
  for (const [side, c] of sides) {
    const f = make(c, side);
    for (let j = 0; j <= MASK; j++) f(a[j]!, b[j]!);
    let i = 0;
    Deno.bench({
      group,
      name: side,
      baseline: side === "before",
      fn(): void {
        let acc = 0;
        for (let n = 0; n < BATCH; n++) {
          acc += f(a[i]!, b[i]!);
          i = (i + 1) & MASK;
        }
        sink += acc;
      },
    });
  }
}

async function asyncRow(
  group: string,
  make: (c: CacheFn, side: string) => (a: number, b: number) => Promise<number>,
  a: number[],
  b: number[],
): Promise<void> {
  for (const [side, c] of sides) {
    const f = make(c, side);
    for (let j = 0; j <= MASK; j++) await f(a[j]!, b[j]!);
    let i = 0;
    Deno.bench({
      group,
      name: side,
      baseline: side === "before",
      async fn(): Promise<void> {
        let acc = 0;
        for (let n = 0; n < BATCH; n++) {
          acc += await f(a[i]!, b[i]!);
          i = (i + 1) & MASK;
        }
        sink += acc;
      },
    });
  }
}

for (const spec of STREAMS) {
  const a: number[] = [];
  const b: number[] = [];
  for (const id of spec.ids) {
    a.push(id % 1000);
    b.push(Math.floor(id / 1000));
  }
  const max = spec.maxSize;
  const tag = `[${spec.label}]`;
  syncRow(`hit 2 int args ${tag}`, (c) => c({ maxSize: max })(f2), a, b);
  syncRow(`hit 2 int args, TTL on ${tag}`, (c) => c({ maxSize: max, ttl: 60_000 })(f2), a, b);
  syncRow(
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
  syncRow(
    `shared hit 2 int args ${tag}`,
    (c, side) =>
      c({ backend: "shared", maxSize: max, dir: sharedDir, name: `split-${side}-${spec.label}` })(
        f2,
      ),
    a,
    b,
  );
}

// Misses: every call a new key (a new round), caches full (each insert evicts).
const max = 10_000;
let round = 0;
function missRow(
  group: string,
  make: (c: CacheFn, side: string) => (a: number, b: number) => number | Promise<number>,
): void {
  for (const [side, c] of sides) {
    const f = make(c, side);
    Deno.bench({
      group,
      name: side,
      baseline: side === "before",
      async fn(): Promise<void> {
        let acc = 0;
        const r = ++round;
        for (let n = 0; n < BATCH; n++) {
          const v = f(n, r);
          acc += typeof v === "number" ? v : await v; // a synchronous miss is not awaited
        }
        sink += acc;
      },
    });
  }
}
missRow("miss + insert 2 int args", (c) => c({ maxSize: max })(f2));
missRow("async miss + insert 2 int args", (c) => c({ maxSize: max })(af2));
missRow(
  "shared miss + insert 2 int args",
  (c, side) =>
    c({ backend: "shared", maxSize: max, dir: sharedDir, name: `split-miss-${side}` })(f2),
);
