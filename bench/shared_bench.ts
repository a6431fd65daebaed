/**
 * The shared backend (`cache({ backend: "shared" })`, a memory-mapped file) against the
 * memory backend and against Deno KV on a local file (`Deno.openKv(path)`), in the same
 * run: hits and miss + insert, with a primitive value (a number) and a structured value (a
 * small plain object). lmdb, the other on-disk peer, runs from `bench/peers/lmdb_bench.ts`
 * in a process of its own (as Deno KV does: `scripts/bench_report.ts`).
 *
 * The peers are used as memoizers, as the cache is: `get`, and on a miss compute and
 * `set`. Deno KV never evicts, so on the `zipf` stream it ends up holding every key
 * while the caches (10,000 entries) miss now and then. Each iteration performs `BATCH`
 * (1,000) calls.
 *
 * When `cache({ backend: "shared" })` throws (not built yet, or no shared memory), the
 * shared cases are not registered, and `scripts/bench_report.ts` says so.
 *
 * Run: `deno bench -A --unstable-kv bench/shared_bench.ts`.
 *
 * @module
 */

import { cache } from "../mod.ts";
import {
  BATCH,
  checkStream,
  type Fn,
  intArgs,
  MASK,
  overStream,
  primitive,
  type Row,
  sharedDir,
  sharedUnavailable,
  STREAMS,
  type StreamSpec,
  structured,
  valueOf,
} from "./_workload.ts";

/** Keeps results alive so that the work is not optimised away. */
export let sink = 0;

const unavailable = sharedUnavailable();
if (unavailable !== null) {
  console.error(`shared_bench: shared backend unavailable, shared cases skipped: ${unavailable}`);
}

const dirs: string[] = [];
const kvs: Deno.Kv[] = [];
globalThis.addEventListener("unload", () => {
  for (const kv of kvs) kv.close();
  for (const d of dirs) {
    try {
      Deno.removeSync(d, { recursive: true });
    } catch {
      // ignore
    }
  }
});

async function openKv(): Promise<Deno.Kv | null> {
  if (typeof Deno.openKv !== "function") {
    console.error("shared_bench: Deno.openKv is missing (run with --unstable-kv): KV skipped");
    return null;
  }
  const dir = Deno.makeTempDirSync({ prefix: "warp_bench_kv_" });
  dirs.push(dir);
  const kv = await Deno.openKv(`${dir}/kv.sqlite`);
  kvs.push(kv);
  return kv;
}

type AFn = (a: number, b: number) => Promise<number | Row>;

function kvMemo(kv: Deno.Kv, fn: Fn): AFn {
  return async (a: number, b: number): Promise<number | Row> => {
    const key = ["k", a, b];
    const got = await kv.get<number | Row>(key);
    if (got.value !== null) return got.value;
    const v = fn(a, b);
    await kv.set(key, v);
    return v;
  };
}

const argsOf = intArgs;

function registerSync(
  group: string,
  name: string,
  spec: StreamSpec,
  f: Fn,
  a: number[],
  b: number[],
  baseline = false,
): void {
  checkStream(`${group} / ${name}`, f, a, b);
  if (spec.hitOnly) { for (let j = 0; j <= MASK; j++) f(a[j]!, b[j]!); }
  Deno.bench({ group, name, baseline, fn: overStream(f, a, b) });
}

/** Writes every key of the stream to `kv`, 500 per atomic commit (a commit is ~ms). */
async function preload(kv: Deno.Kv, fn: Fn, a: number[], b: number[]): Promise<void> {
  let op = kv.atomic();
  let pending = 0;
  for (let j = 0; j <= MASK; j++) {
    op.set(["k", a[j]!, b[j]!], fn(a[j]!, b[j]!));
    if (++pending === 500) {
      await op.commit();
      op = kv.atomic();
      pending = 0;
    }
  }
  if (pending) await op.commit();
}

async function registerAsync(
  group: string,
  name: string,
  f: AFn,
  a: number[],
  b: number[],
): Promise<void> {
  for (let j = 0; j <= MASK; j++) await f(a[j]!, b[j]!);
  let i = 0;
  Deno.bench({
    group,
    name,
    // Tens of µs a call: 20 iterations of 1,000 calls are plenty.
    n: 20,
    warmup: 2,
    async fn(): Promise<void> {
      let acc = 0;
      for (let n = 0; n < BATCH; n++) {
        acc += valueOf(await f(a[i]!, b[i]!));
        i = (i + 1) & MASK;
      }
      sink += acc;
    },
  });
}

let serial = 0;
function sharedCache(max: number, fn: Fn): Fn {
  const dir = sharedDir();
  dirs.push(dir);
  return cache({
    backend: "shared",
    name: `bench_${Deno.pid}_${serial++}`,
    dir,
    maxSize: max,
  })(fn);
}

const values: Array<[string, Fn]> = [["primitive", primitive], ["structured", structured]];

for (const spec of STREAMS) {
  const { a, b } = argsOf(spec);
  for (const [kind, fn] of values) {
    const g = `shared hit ${kind} [${spec.label}]`;
    if (unavailable === null) {
      registerSync(g, "warp shared", spec, sharedCache(spec.maxSize, fn), a, b, true);
    }
    registerSync(g, "warp memory", spec, cache({ maxSize: spec.maxSize })(fn), a, b);
    const kv = await openKv();
    if (kv !== null) {
      await preload(kv, fn, a, b);
      await registerAsync(g, "Deno KV (file)", kvMemo(kv, fn), a, b);
    }
  }
}

// --- miss + insert: every call a new key, caches full (each insert evicts)
for (const [kind, fn] of values) {
  const g = `shared miss + insert ${kind}`;
  const max = 10_000;
  const register = (name: string, f: Fn, baseline = false): void => {
    let c = 0;
    for (let n = 0; n < max; n++) f(c % 1_000_000, Math.floor(c++ / 1_000_000));
    Deno.bench({
      group: g,
      name,
      baseline,
      fn(): void {
        let acc = 0;
        for (let n = 0; n < BATCH; n++) {
          acc += valueOf(f(c % 1_000_000, Math.floor(c / 1_000_000)));
          c++;
        }
        sink += acc;
      },
    });
  };
  if (unavailable === null) register("warp shared", sharedCache(max, fn), true);
  register("warp memory", cache({ maxSize: max })(fn));
  const kv = await openKv();
  if (kv !== null) {
    const f = kvMemo(kv, fn);
    let c = 0;
    Deno.bench({
      group: g,
      name: "Deno KV (file)",
      // A commit per call (~0.5 to 3 ms): 1,000 calls take seconds; 3 iterations.
      n: 2,
      warmup: 1,
      async fn(): Promise<void> {
        let acc = 0;
        for (let n = 0; n < BATCH; n++) {
          acc += valueOf(await f(c % 1_000_000, Math.floor(c / 1_000_000)));
          c++;
        }
        sink += acc;
      },
    });
  }
}
