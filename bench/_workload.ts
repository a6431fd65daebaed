/**
 * What every benchmark and the hit-ratio simulator share: a seeded random source, a Zipf
 * sampler, the key streams, the batch size, and the probe that says whether the shared
 * backend works in this build.
 *
 * Every `Deno.bench` iteration in `bench/` performs {@linkcode BATCH} operations, so that
 * the harness's own cost per iteration (a few ns) is spread out; `scripts/bench_report.ts`
 * divides by it to print ns per operation.
 *
 * @module
 */

import { cache } from "../mod.ts";

/** Operations per `Deno.bench` iteration, in every bench file. */
export const BATCH = 1000;

/** A small, fast, seeded PRNG (mulberry32): the same traces on every run. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return (): number => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * Returns a sampler of ranks `0..n-1` where rank `r` has weight `1 / (r + 1)^alpha`
 * (inverse CDF, binary search).
 */
export function zipfSampler(n: number, alpha: number, random: () => number): () => number {
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let r = 0; r < n; r++) {
    sum += 1 / Math.pow(r + 1, alpha);
    cdf[r] = sum;
  }
  for (let r = 0; r < n; r++) cdf[r]! /= sum;
  return (): number => {
    const u = random();
    let lo = 0;
    let hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    return lo;
  };
}

/** A random permutation of `0..n-1` (Fisher-Yates), so that hot keys are not small ints. */
export function permutation(n: number, random: () => number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(random() * (i + 1));
    const t = p[i]!;
    p[i] = p[j]!;
    p[j] = t;
  }
  return p;
}

/** `length` key ids drawn Zipf(`alpha`) from `universe` ids (a power of two long). */
export function zipfStream(
  universe: number,
  alpha: number,
  length: number,
  seed: number,
): Int32Array {
  const random = rng(seed);
  const sample = zipfSampler(universe, alpha, random);
  const perm = permutation(universe, random);
  const out = new Int32Array(length);
  for (let i = 0; i < length; i++) out[i] = perm[sample()]!;
  return out;
}

/** The two key streams of the benchmarks (length a power of two: index with `& MASK`). */
export const STREAM_LENGTH = 1 << 16;
/** `i & MASK` walks a stream. */
export const MASK = STREAM_LENGTH - 1;

/** The key streams each benchmark group runs on. */
export interface StreamSpec {
  /** Label used in group names. */
  label: string;
  /** Key ids, {@linkcode STREAM_LENGTH} long. */
  ids: Int32Array;
  /** Distinct ids the stream draws from. */
  universe: number;
  /** `maxSize` of every bounded cache in the group. */
  maxSize: number;
  /** Whether every lookup (after the warm-up fill) is a hit. */
  hitOnly: boolean;
}

/**
 * `zipf`: Zipf(1.0) over 100,000 keys with caches of 10,000 entries (10%): hits and
 * misses as a real workload mixes them. `hit-only`: Zipf(1.0) over 1,024 keys, all of them
 * inserted before the measurement, caches of 10,000 entries: every call is a hit.
 */
export const STREAMS: readonly StreamSpec[] = [
  {
    label: "hit-only",
    ids: zipfStream(1024, 1.0, STREAM_LENGTH, 7),
    universe: 1024,
    maxSize: 10_000,
    hitOnly: true,
  },
  {
    label: "zipf",
    ids: zipfStream(100_000, 1.0, STREAM_LENGTH, 11),
    universe: 100_000,
    maxSize: 10_000,
    hitOnly: false,
  },
];

/** A directory for shared cache files: under `/dev/shm` where it exists. */
export function sharedDir(): string {
  try {
    if (Deno.statSync("/dev/shm").isDirectory) {
      return Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "warp_bench_" });
    }
  } catch {
    // fall through to the system temp dir
  }
  return Deno.makeTempDirSync({ prefix: "warp_bench_" });
}

/**
 * `null` when `cache({ backend: "shared" })` works in this build, else the message of the
 * error it throws (the benches that need it are then skipped).
 */
export function sharedUnavailable(): string | null {
  let dir: string | undefined;
  try {
    dir = sharedDir();
    const f = cache({ backend: "shared", name: `probe_${Deno.pid}`, dir, maxSize: 16 })(
      (x: number): number => x + 1,
    );
    if (f(1) !== 2 || f(1) !== 2) return "the shared backend returned a wrong value";
    if (f.cacheInfo().hits !== 1) return "the shared backend did not count a hit";
    f.cacheClear();
    return null;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  } finally {
    if (dir !== undefined) {
      try {
        Deno.removeSync(dir, { recursive: true });
      } catch {
        // ignore
      }
    }
  }
}

/** The two int arguments of each key id of `spec`: `id % 1000` and `floor(id / 1000)`
 * (a call of two small ints, as every "2 int args" row makes it). */
export function intArgs(spec: StreamSpec): { a: number[]; b: number[] } {
  const a: number[] = [];
  const b: number[] = [];
  for (const id of spec.ids) {
    a.push(id % 1000);
    b.push(Math.floor(id / 1000));
  }
  return { a, b };
}

/**
 * Takes `samples` rounds of one sample of each item, taking turns, the first item of each
 * round moving on by one (two items: A B, B A, A B, …), so that a busy machine's slow
 * moments fall on every item alike and the k-th samples of two items were taken one after
 * the other. Returns the samples (ns per call) of each item, in `items`' order.
 */
export async function takeTurns<T>(
  items: readonly T[],
  samples: number,
  sample: (item: T) => number | Promise<number>,
): Promise<number[][]> {
  const out = items.map((): number[] => []);
  for (let s = 0; s < samples; s++) {
    for (let k = 0; k < items.length; k++) {
      const i = (s + k) % items.length;
      out[i]!.push(await sample(items[i]!));
    }
  }
  return out;
}

/** About how long one sample of {@linkcode timeInTurns} lasts (ms): as many batches as fit. */
export const SAMPLE_MS = 20;

/** One contender of a group timed in turns: `run` makes {@linkcode BATCH} calls. */
export interface TurnRow {
  group: string;
  name: string;
  /** At most one batch a sample (micro-memoize's miss + insert: ~0.1 ms a call). */
  slow: boolean;
  run: () => void | Promise<void>;
}

/** Batches of `r` that fill about {@linkcode SAMPLE_MS} ms, measured after a warm-up. */
async function batchesOf(r: TurnRow): Promise<number> {
  if (r.slow) return 1;
  for (let k = 0; k < 20; k++) await r.run();
  const t0 = performance.now();
  for (let k = 0; k < 5; k++) await r.run();
  const ms = (performance.now() - t0) / 5;
  return Math.max(1, Math.min(1000, Math.round(SAMPLE_MS / Math.max(ms, 1e-3))));
}

/**
 * Times the contenders of each group of `rows` in turns ({@linkcode takeTurns}, `samples`
 * rounds of a sample of each, about {@linkcode SAMPLE_MS} ms a sample), group after group.
 * Returns `{ [group]: { [name]: ns[] } }`, ns per call of each sample, in the order taken.
 */
export async function timeInTurns(
  rows: readonly TurnRow[],
  samples: number,
): Promise<Record<string, Record<string, number[]>>> {
  const out: Record<string, Record<string, number[]>> = {};
  const groups = [...new Set(rows.map((r) => r.group))];
  for (const group of groups) {
    const items: { r: TurnRow; batches: number }[] = [];
    for (const r of rows.filter((x) => x.group === group)) {
      items.push({ r, batches: await batchesOf(r) });
    }
    const taken = await takeTurns(items, samples, async ({ r, batches }) => {
      const t0 = performance.now();
      for (let k = 0; k < batches; k++) await r.run();
      return (performance.now() - t0) * 1e6 / (batches * BATCH);
    });
    out[group] = Object.fromEntries(items.map(({ r }, i) => [r.name, taken[i]!]));
  }
  return out;
}

/** A 10-character string for key id `id`: `"k"` and 9 digits. */
export function str10(id: number): string {
  return "k" + String(id).padStart(9, "0");
}

/** A small structured value, as a cached API response might be (shared and lmdb benches). */
export interface Row {
  id: number;
  name: string;
  active: boolean;
  score: number;
  tags: string[];
}

/** The primitive-valued function of the shared benches. */
export const primitive = (a: number, b: number): number => a * 1000 + b;
/** The structured-valued function of the shared benches. */
export const structured = (a: number, b: number): Row => ({
  id: a * 1000 + b,
  name: `user${a}`,
  active: (b & 1) === 0,
  score: b / 4,
  tags: ["a", "b"],
});
/** A number that identifies a result, to check what a contender returned. */
export const valueOf = (v: number | Row): number => typeof v === "number" ? v : v.id;
/** A function of the shared benches. */
export type Fn = (a: number, b: number) => number | Row;

/** Keeps the results of {@linkcode overStream}'s calls alive, so that the work is not
 * optimised away. */
export let streamSink = 0;

/** Checks that `f` returns the right value for every key of the stream `a`, `b`.
 * @throws {Error} Naming `label`, at the first wrong value. */
export function checkStream(label: string, f: Fn, a: number[], b: number[]): void {
  for (let j = 0; j <= MASK; j++) {
    const want = a[j]! * 1000 + b[j]!;
    const got = valueOf(f(a[j]!, b[j]!));
    if (got !== want) throw new Error(`${label}: returned ${got}, expected ${want}`);
  }
}

/** {@linkcode BATCH} calls of `f` over the stream `a`, `b`, going on where the last ended. */
export function overStream(f: Fn, a: number[], b: number[]): () => void {
  let i = 0;
  return (): void => {
    let acc = 0;
    for (let n = 0; n < BATCH; n++) {
      acc += valueOf(f(a[i]!, b[i]!));
      i = (i + 1) & MASK;
    }
    streamSink += acc;
  };
}

/**
 * `--lock` for the `deno run` of a benchmark's child process: the benchmarks' own lock file,
 * so that their npm peers never land in the package's deno.lock (tests/lock_test.ts).
 */
export const BENCH_LOCK_FLAG = `--lock=${new URL("./deno.lock", import.meta.url).pathname}`;
