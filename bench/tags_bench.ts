/**
 * The cost of tags on a hit: the same hit row of a cache without tags (the baseline) and
 * with `tags`, side by side in one run, on the engine that `WARP_CACHE_ENGINE` selects
 * (`native` or `ts`), for the memory backend and the shared one. Target: a memory hit with
 * tags within 10% of one without.
 *
 * Rows: `no tags`; `tags`; `tags, after invalidations`: other tags are invalidated every
 * 1,000 calls, so that the clock moves and each entry's next hit checks its tags once (the
 * memory clock remembers the epoch it checked; a shared entry is read back from the file,
 * so a shared hit checks its tags on every hit after any invalidation in its directory).
 *
 * Each iteration performs 1,000 hits over 1,000 keys (2 int args): divide by 1,000 for ns
 * per hit. Run: `deno bench -A bench/tags_bench.ts` (and with `WARP_CACHE_ENGINE=ts`).
 *
 * @module
 */

import { cache, invalidateTags } from "../mod.ts";
import { memoryEngine } from "../src/store/engine.ts";
import { BATCH } from "./_workload.ts";

/** Keeps results alive so that the work is not optimised away. */
export let sink = 0;

const KEYS = 1000;
const f2 = (a: number, b: number): number => a * 31 + b;
const a: number[] = [];
const b: number[] = [];
for (let i = 0; i < KEYS; i++) {
  a.push(i % 100);
  b.push(Math.floor(i / 100));
}

function register(
  group: string,
  name: string,
  call: (x: number, y: number) => number,
  baseline: boolean,
  churn = false,
): void {
  for (let r = 0; r < 3; r++) {
    for (let i = 0; i < KEYS; i++) {
      if (call(a[i]!, b[i]!) !== f2(a[i]!, b[i]!)) throw new Error(`${name}: wrong value`);
    }
  }
  let i = 0;
  let round = 0;
  Deno.bench({
    group,
    name,
    baseline,
    fn(): void {
      if (churn) invalidateTags(`other:${round++}`);
      let acc = 0;
      for (let n = 0; n < BATCH; n++) {
        acc += call(a[i]!, b[i]!);
        i = i + 1 === KEYS ? 0 : i + 1;
      }
      sink += acc;
    },
  });
}

const engine = memoryEngine();
{
  const g = `memory hit, tags off / on (${engine} engine)`;
  register(g, "no tags", cache({ maxSize: 2048 })(f2), true);
  register(g, "tags", cache({ maxSize: 2048, tags: (x: number) => [`t:${x}`] })(f2), false);
  register(
    g,
    "tags, after invalidations",
    cache({ maxSize: 2048, tags: (x: number) => [`t:${x}`] })(f2),
    false,
    true,
  );
}

if ((await Deno.permissions.query({ name: "ffi" })).state === "granted") {
  const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp_tags_bench_" });
  globalThis.addEventListener("unload", () => Deno.removeSync(dir, { recursive: true }));
  const g = "shared hit, tags off / on";
  const shared = { backend: "shared" as const, dir, maxSize: 2048 };
  register(g, "no tags", cache({ ...shared, name: "plain" })(f2), true);
  register(
    g,
    "tags",
    cache({ ...shared, name: "tagged", tags: (x: number) => [`t:${x}`] })(f2),
    false,
  );
  register(
    g,
    "tags, after invalidations",
    cache({ ...shared, name: "churn", tags: (x: number) => [`t:${x}`] })(f2),
    false,
    true,
  );
}
