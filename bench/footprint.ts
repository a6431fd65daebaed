/**
 * Memory footprint of 1,000,000 entries with small keys and values (an int key, the same
 * int as the value: a V8 small integer, which costs nothing beyond its slot), one process
 * per variant so that nothing else shares the heap: `Deno.memoryUsage()` after a full GC,
 * before and after the fill. `heap` is the live V8 heap (`heapUsed`); `native` is the
 * growth of `rss - heapTotal`: the memory outside the V8 heap (the Rust index, the mapped
 * file's touched pages), plus whatever the allocator keeps after freeing. `rss` alone
 * also counts V8 pages that hold garbage of the fill, not given back after the GC.
 *
 * Each variant runs in {@linkcode RUNS} processes, and the one whose heap + native is the
 * median is reported, with every process's total beside it (`totals`): outside the heap, what
 * the allocator keeps after the fill (compiler zones of background threads, arrays grown and
 * dropped) moved a variant's figure by up to 17 MB from one process to the next. `external`
 * is V8's count of the memory of its `ArrayBuffer`s (typed-array stores), which does not move
 * so.
 *
 * Variants: `cache()` on each engine (filled through the cached function, as a user
 * would), the shared backend (`maxKeySize` and `maxValueSize` 16, which an int key and
 * value fit: each entry lives in its 72-byte slot, and the default byte budget is the
 * smallest), npm `lru-cache` and `@neophi/sieve-cache` holding the same entries
 * (`set(i, i)`), and a bare `Map` for scale. Every variant must hold all the entries.
 *
 * Run: `deno run -A bench/footprint.ts` (prints a table; `--json` for the report).
 *
 * @module
 */

import { LRUCache } from "npm:lru-cache@^11.2.0";
import { SieveCache as NeoSieve } from "npm:@neophi/sieve-cache@^1.5.0";
import { cache } from "../mod.ts";
import { BENCH_LOCK_FLAG, sharedDir } from "./_workload.ts";

/** Entries per variant. */
export const ENTRIES = 1_000_000;

/** Processes per variant (`WARP_FOOTPRINT_RUNS`). */
export const RUNS = Number(Deno.env.get("WARP_FOOTPRINT_RUNS") ?? "3");

/** One variant's measurement. */
export interface Footprint {
  variant: string;
  entries: number;
  /** `heapUsed` growth: live V8 objects. */
  heapBytes: number;
  /** `heapTotal` growth: V8 heap committed (live objects plus garbage not given back). */
  heapTotalBytes: number;
  /** Resident set growth of the whole process. */
  rssBytes: number;
  /** `rss - heapTotal` growth: memory outside the V8 heap (the Rust side, mappings). */
  nativeBytes: number;
  /** `external` growth: the memory of V8's `ArrayBuffer`s (part of `nativeBytes`). */
  externalBytes?: number;
  /** Heap + native of each process of the variant (the one reported is the median). */
  totals?: number[];
  /** Size of the shared cache file, for the shared variant. */
  fileBytes?: number;
  /** Why the variant could not run. */
  error?: string;
}

const VARIANTS: Record<string, { env?: Record<string, string> }> = {
  "warp cache() (native)": { env: { WARP_CACHE_ENGINE: "native" } },
  "warp cache() (ts)": { env: { WARP_CACHE_ENGINE: "ts" } },
  "warp shared": {},
  "lru-cache": {},
  "@neophi/sieve-cache": {},
  "Map (no eviction)": {},
};

/** Keeps the filled structure alive until the second measurement. */
export let keep: unknown;

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g === undefined) throw new Error("run with --v8-flags=--expose-gc");
  for (let i = 0; i < 3; i++) g();
}

function fileSize(dir: string): number {
  let total = 0;
  for (const e of Deno.readDirSync(dir)) {
    if (e.isFile) total += Deno.statSync(`${dir}/${e.name}`).size;
  }
  return total;
}

function measure(variant: string): Footprint {
  let dir: string | undefined;
  let fill: () => unknown;
  switch (variant) {
    case "warp cache() (native)":
    case "warp cache() (ts)":
      fill = (): unknown => {
        const f = cache({ maxSize: ENTRIES })((i: number): number => i);
        for (let i = 0; i < ENTRIES; i++) f(i);
        if (f.cacheInfo().currentSize !== ENTRIES) throw new Error("not filled");
        return f;
      };
      break;
    case "warp shared":
      dir = sharedDir();
      fill = (): unknown => {
        const f = cache({
          backend: "shared",
          name: `footprint_${Deno.pid}`,
          dir: dir!,
          maxSize: ENTRIES,
          maxKeySize: 16,
          maxValueSize: 16,
        })((i: number): number => i);
        for (let i = 0; i < ENTRIES; i++) f(i);
        // (Format 7 kept 65,536 of them: each took a 256-byte chunk of a 16 MiB budget.)
        if (f.cacheInfo().currentSize !== ENTRIES) throw new Error("not filled");
        return f;
      };
      break;
    case "lru-cache":
      fill = (): unknown => {
        const c = new LRUCache<number, number>({ max: ENTRIES });
        for (let i = 0; i < ENTRIES; i++) c.set(i, i);
        return c;
      };
      break;
    case "@neophi/sieve-cache":
      fill = (): unknown => {
        const c = new NeoSieve<number, number>(ENTRIES);
        for (let i = 0; i < ENTRIES; i++) c.set(i, i);
        return c;
      };
      break;
    case "Map (no eviction)":
      fill = (): unknown => {
        const m = new Map<number, number>();
        for (let i = 0; i < ENTRIES; i++) m.set(i, i);
        return m;
      };
      break;
    default:
      throw new Error(`unknown variant ${variant}`);
  }
  try {
    gc();
    const before = Deno.memoryUsage();
    keep = fill();
    gc();
    const after = Deno.memoryUsage();
    const out: Footprint = {
      variant,
      entries: ENTRIES,
      heapBytes: after.heapUsed - before.heapUsed,
      heapTotalBytes: after.heapTotal - before.heapTotal,
      rssBytes: after.rss - before.rss,
      nativeBytes: (after.rss - after.heapTotal) - (before.rss - before.heapTotal),
      externalBytes: after.external - before.external,
    };
    if (dir !== undefined) out.fileBytes = fileSize(dir);
    return out;
  } finally {
    if (dir !== undefined) Deno.removeSync(dir, { recursive: true });
  }
}

/** Measures `variant` in a process of its own. */
async function measureApart(variant: string, env: Record<string, string>): Promise<Footprint> {
  const self = new URL(import.meta.url).pathname;
  const cmd = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", BENCH_LOCK_FLAG, "--v8-flags=--expose-gc", self, `--variant=${variant}`],
    env,
    stdout: "piped",
    stderr: "piped",
  });
  const res = await cmd.output();
  const text = new TextDecoder().decode(res.stdout).trim();
  if (res.success && text.startsWith("{")) return JSON.parse(text) as Footprint;
  const err = new TextDecoder().decode(res.stderr).trim().split("\n").slice(-3).join(" ");
  return {
    variant,
    entries: ENTRIES,
    heapBytes: NaN,
    heapTotalBytes: NaN,
    rssBytes: NaN,
    nativeBytes: NaN,
    error: err,
  };
}

/** Runs every variant in {@linkcode RUNS} processes of its own; reports the median one. */
export async function footprints(): Promise<Footprint[]> {
  const out: Footprint[] = [];
  for (const [variant, { env }] of Object.entries(VARIANTS)) {
    const runs: Footprint[] = [];
    for (let r = 0; r < RUNS; r++) runs.push(await measureApart(variant, env ?? {}));
    const failed = runs.find((f) => f.error !== undefined);
    if (failed !== undefined) {
      out.push(failed);
      continue;
    }
    const total = (f: Footprint): number => f.heapBytes + f.nativeBytes;
    const sorted = [...runs].sort((x, y) => total(x) - total(y));
    out.push({ ...sorted[(sorted.length - 1) >> 1]!, totals: runs.map(total) });
  }
  return out;
}

if (import.meta.main) {
  const v = Deno.args.find((a) => a.startsWith("--variant="));
  if (v !== undefined) {
    console.log(JSON.stringify(measure(v.slice("--variant=".length))));
  } else {
    const all = await footprints();
    if (Deno.args.includes("--json")) console.log(JSON.stringify(all));
    else {
      for (const f of all) {
        const mb = (n: number): string => (n / 2 ** 20).toFixed(1).padStart(7) + " MB";
        console.log(
          `${f.variant.padEnd(24)} heap ${mb(f.heapBytes)}  heapTotal ${mb(f.heapTotalBytes)}` +
            `  native ${mb(f.nativeBytes)}  external ${mb(f.externalBytes ?? NaN)}` +
            `  rss ${mb(f.rssBytes)}` +
            (f.fileBytes !== undefined ? `  file ${mb(f.fileBytes)}` : "") +
            (f.error ? `  error: ${f.error}` : ""),
        );
      }
    }
  }
}
