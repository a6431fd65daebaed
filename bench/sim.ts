/**
 * Hit-ratio simulator: replays generated traces through the real stores and reports
 * their miss counts, beside libCacheSim's policies on the same traces. No model of a
 * store is involved: each request is a lookup in the store itself, and a miss inserts
 * the key.
 *
 * Stores: every strategy of the memory backend (SIEVE, LRU, MRU, FIFO, LFU, S3-FIFO,
 * W-TinyLFU, ARC) on the native engine (`NativeMemoryStore`, skipped when the library does not
 * load) and on the TypeScript engine (`TsSieveStore`); the shared backend (SIEVE) through
 * `cache({ backend: "shared" })` (skipped while it throws); and libCacheSim's `Sieve`,
 * `LRU`, `FIFO`, `S3FIFO`, `ARC`, `WTinyLFU` and `TwoQ` with their default parameters
 * (PyPI `libcachesim`, installed into `bench/.venv` when missing, see `_libcachesim.ts`;
 * skipped with a note when that fails).
 *
 * Traces (1,000,000 requests each, over 100,000 Zipf-ranked keys unless said otherwise):
 * - `zipf-0.8`, `zipf-1.0`, `zipf-1.2`: Zipf with that exponent;
 * - `zipf-1.0+scans`: every 100,000 requests, 20,000 of them are a sequential scan over a
 *   cold range of 100,000 other keys;
 * - `one-hit-25%`: a quarter of the requests are keys never seen before or after;
 * - `shifting`: Zipf 1.0 whose ranking slides by 2,000 keys every 50,000 requests (the
 *   hottest keys cool down, new keys warm up);
 * - `loop`: the keys 0 to 49,999 over and over, a loop larger than every cache.
 *
 * Cache sizes are fractions of the distinct keys of each trace: the table uses 1% and
 * 10%, the curves also 0.5%, 2%, 5% and 20%.
 *
 * Run: `deno run -A bench/sim.ts` (a table), or with `--json` (what
 * `scripts/bench_report.ts` reads). `--requests=N` shortens the traces.
 *
 * @module
 */

import { cache } from "../mod.ts";
import { loadNative } from "../src/native/ffi.ts";
import { Strategy } from "../src/options/options.ts";
import { NativeMemoryStore } from "../src/store/native_store.ts";
import { type ByteStore, MISS } from "../src/store/store.ts";
import { TsSieveStore } from "../src/store/ts_store.ts";
import { permutation, rng, sharedDir, sharedUnavailable, zipfSampler } from "./_workload.ts";
import { LIBCACHESIM_POLICIES, replayLibCacheSim } from "./_libcachesim.ts";

/** Cache sizes, in percent of a trace's distinct keys. */
export const SIZES_PCT: readonly number[] = [0.5, 1, 2, 5, 10, 20];
/** The sizes that the results table shows. */
export const TABLE_SIZES_PCT: readonly number[] = [1, 10];

/** Our strategies, by the name the report gives them. */
export const STRATEGIES: ReadonlyArray<readonly [string, Strategy]> = [
  ["SIEVE", Strategy.Sieve],
  ["LRU", Strategy.Lru],
  ["MRU", Strategy.Mru],
  ["FIFO", Strategy.Fifo],
  ["LFU", Strategy.Lfu],
  ["S3-FIFO", Strategy.S3Fifo],
  ["W-TinyLFU", Strategy.WTinyLfu],
  ["ARC", Strategy.Arc],
];

/** The store name of one of our strategies on an engine: `warp S3-FIFO (native)`. */
export function warpStore(strategy: string, engine: "native" | "ts" | "shared"): string {
  return `warp ${strategy} (${engine})`;
}

/** The store name of a libCacheSim policy: `libCacheSim ARC`. */
export function lcsStore(policy: string): string {
  return `libCacheSim ${policy}`;
}

/** A generated trace. */
export interface Trace {
  name: string;
  ids: Int32Array;
  distinct: number;
}

/** One replay: a store, a trace, a size. */
export interface SimResult {
  trace: string;
  store: string;
  sizePct: number;
  capacity: number;
  misses: number;
  missRatio: number;
}

/** What `--json` prints. */
export interface SimReport {
  requests: number;
  traces: Array<{ name: string; requests: number; distinct: number }>;
  results: SimResult[];
  /** The libcachesim version replayed, or `null`. */
  libCacheSim: string | null;
  /** Why libCacheSim was left out, or `null`. */
  libCacheSimSkipped: string | null;
  /** Why the shared store was left out, or `null`. */
  sharedSkipped: string | null;
  /** Why the native store was left out, or `null`. */
  nativeSkipped: string | null;
}

const HOT = 100_000;
/** Keys of the `loop` trace. */
const LOOP = 50_000;

function countDistinct(ids: Int32Array): number {
  const seen = new Set<number>();
  for (const id of ids) seen.add(id);
  return seen.size;
}

function trace(name: string, ids: Int32Array): Trace {
  return { name, ids, distinct: countDistinct(ids) };
}

/** Builds the seven traces of `length` requests each. */
export function makeTraces(length: number): Trace[] {
  const out: Trace[] = [];
  for (const [alpha, seed] of [[0.8, 1], [1.0, 2], [1.2, 3]] as const) {
    const random = rng(seed);
    const sample = zipfSampler(HOT, alpha, random);
    const perm = permutation(HOT, random);
    const ids = new Int32Array(length);
    for (let i = 0; i < length; i++) ids[i] = perm[sample()]!;
    out.push(trace(`zipf-${alpha.toFixed(1)}`, ids));
  }
  {
    const random = rng(4);
    const sample = zipfSampler(HOT, 1.0, random);
    const perm = permutation(HOT, random);
    const ids = new Int32Array(length);
    const cold = 100_000;
    let scan = 0;
    for (let i = 0; i < length; i++) {
      ids[i] = i % 100_000 >= 80_000 ? HOT + (scan++ % cold) : perm[sample()]!;
    }
    out.push(trace("zipf-1.0+scans", ids));
  }
  {
    const random = rng(5);
    const sample = zipfSampler(HOT, 1.0, random);
    const perm = permutation(HOT, random);
    const ids = new Int32Array(length);
    let fresh = HOT;
    for (let i = 0; i < length; i++) ids[i] = random() < 0.25 ? fresh++ : perm[sample()]!;
    out.push(trace("one-hit-25%", ids));
  }
  {
    const random = rng(6);
    const sample = zipfSampler(HOT, 1.0, random);
    const space = 4 * HOT;
    const perm = permutation(space, random);
    const ids = new Int32Array(length);
    for (let i = 0; i < length; i++) {
      const shift = Math.floor(i / 50_000) * 2_000;
      ids[i] = perm[(sample() + shift) % space]!;
    }
    out.push(trace("shifting", ids));
  }
  {
    const ids = new Int32Array(length);
    for (let i = 0; i < length; i++) ids[i] = i % LOOP;
    out.push(trace("loop", ids));
  }
  return out;
}

/** A store under test: `replay` returns the misses over the trace. */
interface Contender {
  name: string;
  replay(ids: Int32Array, capacity: number): number;
}

function storeContender(name: string, make: (capacity: number) => ByteStore): Contender {
  return {
    name,
    replay(ids: Int32Array, capacity: number): number {
      const store = make(capacity);
      const key = new Uint8Array(4);
      const view = new DataView(key.buffer);
      let misses = 0;
      for (let i = 0; i < ids.length; i++) {
        const id = ids[i]!;
        view.setInt32(0, id, true);
        if (store.get(key, 4, 0) === MISS) {
          misses++;
          store.set(key, 4, id, 0, false);
        }
      }
      const info = store.info();
      store.close();
      if (info.misses !== misses) {
        throw new Error(`${name}: counted ${info.misses} misses, the replay saw ${misses}`);
      }
      return misses;
    },
  };
}

function sharedContender(): Contender {
  return {
    name: warpStore("SIEVE", "shared"),
    replay(ids: Int32Array, capacity: number): number {
      const dir = sharedDir();
      let misses = 0;
      try {
        const f = cache({ backend: "shared", name: `sim_${Deno.pid}`, dir, maxSize: capacity })(
          (id: number): number => {
            misses++;
            return id;
          },
        );
        for (let i = 0; i < ids.length; i++) f(ids[i]!);
        f.cacheClear();
      } finally {
        Deno.removeSync(dir, { recursive: true });
      }
      return misses;
    },
  };
}

function contenders(): { list: Contender[]; shared: string | null; native: string | null } {
  const list: Contender[] = [];
  const lib = loadNative();
  const native = lib === null ? "the native library did not load" : null;
  for (const [name, policy] of STRATEGIES) {
    if (lib !== null) {
      list.push(
        storeContender(
          warpStore(name, "native"),
          (c) => new NativeMemoryStore(lib, c, undefined, policy),
        ),
      );
    }
    list.push(
      storeContender(warpStore(name, "ts"), (c) => new TsSieveStore({ maxSize: c, policy })),
    );
  }
  const shared = sharedUnavailable();
  if (shared === null) list.push(sharedContender());
  return { list, shared, native };
}

/** The capacity of a cache of `pct`% of a trace's distinct keys. */
export function capacityOf(t: { distinct: number }, pct: number): number {
  return Math.max(1, Math.round(t.distinct * pct / 100));
}

/** Replays every trace through every store at every size, then through libCacheSim. */
export async function simulate(
  length: number,
  log: (line: string) => void = () => {},
): Promise<SimReport> {
  const traces = makeTraces(length);
  const { list, shared, native } = contenders();
  const results: SimResult[] = [];
  const record = (t: Trace, store: string, pct: number, misses: number): void => {
    const capacity = capacityOf(t, pct);
    const missRatio = misses / t.ids.length;
    results.push({ trace: t.name, store, sizePct: pct, capacity, misses, missRatio });
  };
  for (const t of traces) {
    for (const pct of SIZES_PCT) {
      for (const c of list) {
        const t0 = performance.now();
        const misses = c.replay(t.ids, capacityOf(t, pct));
        record(t, c.name, pct, misses);
        log(
          `${t.name.padEnd(15)} ${String(pct).padStart(4)}% ${
            String(capacityOf(t, pct)).padStart(6)
          } ${c.name.padEnd(28)} ${(misses / t.ids.length * 100).toFixed(2).padStart(6)}%  ` +
            `(${((performance.now() - t0) / 1000).toFixed(1)} s)`,
        );
      }
    }
  }
  log("libCacheSim");
  const lcs = await replayLibCacheSim(
    traces.map((t) => ({ ...t, capacities: SIZES_PCT.map((p) => capacityOf(t, p)) })),
    LIBCACHESIM_POLICIES,
    log,
  );
  if (lcs.skipped === null) {
    for (const r of lcs.results) {
      const t = traces.find((x) => x.name === r.trace)!;
      const pct = SIZES_PCT.find((p) => capacityOf(t, p) === r.capacity)!;
      record(t, lcsStore(r.policy), pct, r.misses);
    }
  } else log(`libCacheSim left out: ${lcs.skipped}`);
  return {
    requests: length,
    traces: traces.map((t) => ({ name: t.name, requests: t.ids.length, distinct: t.distinct })),
    results,
    libCacheSim: lcs.skipped === null ? lcs.version : null,
    libCacheSimSkipped: lcs.skipped,
    sharedSkipped: shared,
    nativeSkipped: native,
  };
}

if (import.meta.main) {
  const json = Deno.args.includes("--json");
  const arg = Deno.args.find((a) => a.startsWith("--requests="));
  const length = arg ? Number(arg.slice("--requests=".length)) : 1_000_000;
  const report = await simulate(length, json ? (l) => console.error(l) : (l) => console.log(l));
  if (json) console.log(JSON.stringify(report));
}
