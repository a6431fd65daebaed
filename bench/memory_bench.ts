/**
 * The memory backend against its peers, in the same run: `cache()` from `@warp/cache`, a
 * hand-written `Map` memoize keyed by a number (the floor, and each group's baseline),
 * npm `lru-cache` used as a memoizer (and, async, through its own `fetch`),
 * `micro-memoize`, `memoizee`, `p-memoize` (async only) and `@neophi/sieve-cache` (a
 * JavaScript SIEVE) used as a memoizer.
 *
 * Every group runs on two key streams (see `_workload.ts`): `hit-only` (every call a hit)
 * and `zipf` (Zipf 1.0 over 100,000 keys, caches of 10,000 entries, so misses happen as
 * they would). Each iteration performs `BATCH` (1,000) calls: divide the times by 1,000 for
 * ns per call (`scripts/bench_report.ts` does).
 *
 * The floor keys a `Map` by the key's numeric id, evicting the oldest entry past
 * `maxSize`: the least a cache lookup can cost on the stream. It does not pay for turning
 * string or object arguments into a key, which every other contender does. The peers key
 * as their documentation suggests for such arguments: a joined string for `lru-cache` and
 * `@neophi/sieve-cache`, `primitive: true` for `memoizee`, `JSON.stringify` for objects,
 * `isKeyItemEqual: "deep"` for `micro-memoize` with an object argument.
 *
 * `micro-memoize` keeps its entries in an array searched linearly (it is built for a
 * handful of entries): with the 10,000 entries of the `zipf` stream a call costs 0.1 to
 * 1 ms, and the warm-up alone would take minutes, so it runs on the `hit-only` stream and
 * in miss + insert only.
 *
 * The engine behind `cache()` is the one `WARP_CACHE_ENGINE` selects (`native` by default
 * when the library is built; `ts` for the TypeScript store). `warp cache()` evicts by SIEVE
 * (the default); `warp cache() s3fifo`, `warp cache() wtinylfu` and `warp cache() arc` by
 * those strategies, in the groups `hit 2 int args` and `miss + insert 2 int args`.
 *
 * Two ways to run it. `deno bench -A bench/memory_bench.ts` times each contender in its own
 * `Deno.bench` block, one after the other. `deno run -A bench/memory_bench.ts --turns` (what
 * `deno task bench` runs) takes each group's contenders in turns instead: short samples of
 * about `SAMPLE_MS` ms (`_workload.ts`), one of each contender per round, the first of each round
 * moving on by one, so that a busy machine's slow moments fall on every contender of the
 * row alike and a ratio of two contenders can be taken sample by sample (measured: with
 * separate blocks, a peer's figure swung more than 1.5x between two runs). It prints one
 * JSON object, `{ [group]: { [name]: number[] } }`, ns per call of each sample.
 *
 * @module
 */

import { LRUCache } from "npm:lru-cache@^11.2.0";
import { memoize as microMemoize } from "npm:micro-memoize@^5.2.0";
import memoizee from "npm:memoizee@^0.4.17";
import pMemoize from "npm:p-memoize@^9.0.0";
import { SieveCache as NeoSieve } from "npm:@neophi/sieve-cache@^1.5.0";
import { cache } from "../mod.ts";
import { loadNative } from "../src/native/ffi.ts";
import { KeyWriter } from "../src/codec/key_codec.ts";
import { MISS_AGAINST_HIT } from "../scripts/_targets.ts";
import {
  BATCH,
  intArgs,
  MASK,
  str10,
  STREAMS,
  type StreamSpec,
  timeInTurns,
  type TurnRow,
} from "./_workload.ts";

/** Keeps results alive so that the work is not optimised away. */
export let sink = 0;

/** Whether the contenders are timed in turns (`--turns`; see the module doc). */
const TURNS = Deno.args.includes("--turns");
/** Rounds of samples in turns (`WARP_MEM_SAMPLES`). */
const SAMPLES = Number(Deno.env.get("WARP_MEM_SAMPLES") ?? "15");

const rows: TurnRow[] = [];

/** Registers a contender: a `Deno.bench` block, or one of the contenders taken in turns. */
function row(
  group: string,
  name: string,
  run: () => void | Promise<void>,
  baseline = false,
  slow = false,
): void {
  if (TURNS) {
    rows.push({ group, name, slow, run });
    return;
  }
  Deno.bench({
    group,
    name,
    baseline,
    // micro-memoize's miss + insert: ~0.1 ms a call (a linear search of 10,000 entries).
    ...(slow ? { n: 10, warmup: 1 } : {}),
    fn: run,
  });
}

const TTL = 60_000;

type Fn2 = (a: number, b: number) => number;
type FnS = (s: string, n: number) => number;
interface Obj {
  id: number;
  kind: string;
}
type FnO = (o: Obj) => number;
type AFn2 = (a: number, b: number) => Promise<number>;

/** Argument columns of a stream. */
interface Columns {
  ids: Int32Array;
  a: number[];
  b: number[];
  s: string[];
}

function columns(spec: StreamSpec): Columns {
  const ids = spec.ids;
  return { ids, ...intArgs(spec), s: Array.from(ids, str10) };
}

/**
 * Oldest-first eviction for the floor: a ring of the inserted ids. (`map.keys().next()`
 * would be O(n) here: V8 walks past the holes that deleting from the front leaves.)
 */
class Ring {
  #ids: Float64Array;
  #pos = 0;
  #len = 0;
  constructor(max: number) {
    this.#ids = new Float64Array(max);
  }
  /** Records `id`; returns the id to drop, or -1 while the ring is not full. */
  push(id: number): number {
    const out = this.#len === this.#ids.length ? this.#ids[this.#pos]! : -1;
    if (this.#len < this.#ids.length) this.#len++;
    this.#ids[this.#pos] = id;
    this.#pos = this.#pos + 1 === this.#ids.length ? 0 : this.#pos + 1;
    return out;
  }
}

/** The floor: a `Map` keyed by a number, dropping its oldest entry past `max`. */
function mapMemo<V>(max: number, compute: (id: number) => V): (id: number) => V {
  const m = new Map<number, V>();
  const ring = new Ring(max);
  return (id: number): V => {
    let v = m.get(id);
    if (v === undefined) {
      v = compute(id);
      const old = ring.push(id);
      if (old >= 0) m.delete(old);
      m.set(id, v);
    }
    return v;
  };
}

/** The floor with a TTL: each entry keeps its insertion time. */
function mapMemoTtl(max: number, compute: (id: number) => number): (id: number) => number {
  const m = new Map<number, { v: number; t: number }>();
  const ring = new Ring(max);
  return (id: number): number => {
    const now = performance.now();
    const e = m.get(id);
    if (e !== undefined && now - e.t < TTL) return e.v;
    const v = compute(id);
    if (e === undefined) {
      const old = ring.push(id);
      if (old >= 0) m.delete(old);
      m.set(id, { v, t: now });
    } else {
      e.v = v;
      e.t = now;
    }
    return v;
  };
}

/** A string-keyed store used as a memoizer (the way `lru-cache` and SIEVE caches are). */
interface KV<V> {
  get(k: string): V | undefined;
  set(k: string, v: V): unknown;
}

function kvMemo2(store: KV<number>, fn: Fn2): Fn2 {
  return (a: number, b: number): number => {
    const k = `${a},${b}`;
    let v = store.get(k);
    if (v === undefined) {
      v = fn(a, b);
      store.set(k, v);
    }
    return v;
  };
}

function kvMemoS(store: KV<number>, fn: FnS): FnS {
  return (s: string, n: number): number => {
    const k = `${s},${n}`;
    let v = store.get(k);
    if (v === undefined) {
      v = fn(s, n);
      store.set(k, v);
    }
    return v;
  };
}

function kvMemoO(store: KV<number>, fn: FnO): FnO {
  return (o: Obj): number => {
    const k = JSON.stringify(o);
    let v = store.get(k);
    if (v === undefined) {
      v = fn(o);
      store.set(k, v);
    }
    return v;
  };
}

function kvMemoAsync(store: KV<Promise<number>>, fn: AFn2): AFn2 {
  return (a: number, b: number): Promise<number> => {
    const k = `${a},${b}`;
    let v = store.get(k);
    if (v === undefined) {
      v = fn(a, b);
      store.set(k, v);
    }
    return v;
  };
}

const f2: Fn2 = (a, b) => a * 1000 + b;
const fs: FnS = (s, n) => s.length + n;
const fo: FnO = (o) => o.id + o.kind.length;
const af2: AFn2 = (a, b) => Promise.resolve(a * 1000 + b);

function lru<V extends object | number>(max: number, ttl?: number): LRUCache<string, V> {
  return ttl === undefined ? new LRUCache<string, V>({ max }) : new LRUCache<string, V>({
    max,
    ttl,
  });
}

function check(name: string, got: number, want: number): void {
  if (got !== want) throw new Error(`${name}: returned ${got}, expected ${want}`);
}

/** Registers one sync contender over a stream, after a warm-up pass and a value check. */
function benchSync(
  group: string,
  name: string,
  spec: StreamSpec,
  call: (j: number) => number,
  want: (j: number) => number,
  baseline = false,
): void {
  // Warm-up: every key of a hit-only stream is resident; a zipf stream runs once.
  for (let j = 0; j <= MASK; j++) check(`${group} / ${name}`, call(j), want(j));
  if (spec.hitOnly) { for (let j = 0; j <= MASK; j++) call(j); }
  let i = 0;
  row(group, name, (): void => {
    let acc = 0;
    for (let n = 0; n < BATCH; n++) {
      acc += call(i);
      i = (i + 1) & MASK;
    }
    sink += acc;
  }, baseline);
}

/** Registers one async contender (each call awaited in turn). */
async function benchAsync(
  group: string,
  name: string,
  call: (j: number) => Promise<number>,
  want: (j: number) => number,
  baseline = false,
): Promise<void> {
  for (let j = 0; j <= MASK; j++) check(`${group} / ${name}`, await call(j), want(j));
  let i = 0;
  row(group, name, async (): Promise<void> => {
    let acc = 0;
    for (let n = 0; n < BATCH; n++) {
      acc += await call(i);
      i = (i + 1) & MASK;
    }
    sink += acc;
  }, baseline);
}

for (const spec of STREAMS) {
  const { ids, a, b, s } = columns(spec);
  const max = spec.maxSize;
  const tag = `[${spec.label}]`;
  const want2 = (j: number): number => f2(a[j]!, b[j]!);

  // --- hit, 2 int args
  {
    const g = `hit 2 int args ${tag}`;
    const floor = mapMemo(max, (id) => f2(id % 1000, Math.floor(id / 1000)));
    benchSync(g, "floor: Map<number>", spec, (j) => floor(ids[j]!), want2, true);
    const warp = cache({ maxSize: max })(f2);
    benchSync(g, "warp cache()", spec, (j) => warp(a[j]!, b[j]!), want2);
    for (const strategy of ["s3fifo", "wtinylfu", "arc"] as const) {
      const w = cache({ maxSize: max, strategy })(f2);
      benchSync(g, `warp cache() ${strategy}`, spec, (j) => w(a[j]!, b[j]!), want2);
    }
    const l = kvMemo2(lru<number>(max), f2);
    benchSync(g, "lru-cache", spec, (j) => l(a[j]!, b[j]!), want2);
    if (spec.hitOnly) {
      const mm = microMemoize(f2, { maxSize: max });
      benchSync(g, "micro-memoize", spec, (j) => mm(a[j]!, b[j]!), want2);
    }
    const mz = memoizee(f2, { max, primitive: true });
    benchSync(g, "memoizee", spec, (j) => mz(a[j]!, b[j]!), want2);
    const sv = kvMemo2(new NeoSieve<string, number>(max), f2);
    benchSync(g, "@neophi/sieve-cache", spec, (j) => sv(a[j]!, b[j]!), want2);
  }

  // --- hit, a 10-char string and an int
  {
    const g = `hit string(10) + int ${tag}`;
    const n = (j: number): number => ids[j]! & 7;
    const wantS = (j: number): number => fs(s[j]!, n(j));
    const floor = mapMemo(max, (id) => fs(str10(id), id & 7));
    benchSync(g, "floor: Map<number>", spec, (j) => floor(ids[j]!), wantS, true);
    const warp = cache({ maxSize: max })(fs);
    benchSync(g, "warp cache()", spec, (j) => warp(s[j]!, n(j)), wantS);
    const l = kvMemoS(lru<number>(max), fs);
    benchSync(g, "lru-cache", spec, (j) => l(s[j]!, n(j)), wantS);
    if (spec.hitOnly) {
      const mm = microMemoize(fs, { maxSize: max });
      benchSync(g, "micro-memoize", spec, (j) => mm(s[j]!, n(j)), wantS);
    }
    const mz = memoizee(fs, { max, primitive: true });
    benchSync(g, "memoizee", spec, (j) => mz(s[j]!, n(j)), wantS);
    const sv = kvMemoS(new NeoSieve<string, number>(max), fs);
    benchSync(g, "@neophi/sieve-cache", spec, (j) => sv(s[j]!, n(j)), wantS);
  }

  // --- hit, a plain-object argument (a fresh object per call, compared by value)
  {
    const g = `hit object arg ${tag}`;
    const obj = (j: number): Obj => ({ id: ids[j]!, kind: "user" });
    const wantO = (j: number): number => ids[j]! + 4;
    const floor = mapMemo(max, (id) => fo({ id, kind: "user" }));
    benchSync(g, "floor: Map<number>", spec, (j) => floor(obj(j).id), wantO, true);
    const warp = cache({ maxSize: max })(fo);
    benchSync(g, "warp cache()", spec, (j) => warp(obj(j)), wantO);
    const l = kvMemoO(lru<number>(max), fo);
    benchSync(g, "lru-cache", spec, (j) => l(obj(j)), wantO);
    if (spec.hitOnly) {
      const mm = microMemoize(fo, { maxSize: max, isKeyItemEqual: "deep" });
      benchSync(g, "micro-memoize", spec, (j) => mm(obj(j)), wantO);
    }
    const mz = memoizee(fo, {
      max,
      normalizer: (args: ArrayLike<unknown>): string => JSON.stringify(args[0]),
    });
    benchSync(g, "memoizee", spec, (j) => mz(obj(j)), wantO);
    const sv = kvMemoO(new NeoSieve<string, number>(max), fo);
    benchSync(g, "@neophi/sieve-cache", spec, (j) => sv(obj(j)), wantO);
  }

  // --- hit with a TTL on
  {
    const g = `hit 2 int args, TTL on ${tag}`;
    const floor = mapMemoTtl(max, (id) => f2(id % 1000, Math.floor(id / 1000)));
    benchSync(g, "floor: Map<number>", spec, (j) => floor(ids[j]!), want2, true);
    const warp = cache({ maxSize: max, ttl: TTL })(f2);
    benchSync(g, "warp cache()", spec, (j) => warp(a[j]!, b[j]!), want2);
    const l = kvMemo2(lru<number>(max, TTL), f2);
    benchSync(g, "lru-cache", spec, (j) => l(a[j]!, b[j]!), want2);
    if (spec.hitOnly) {
      const mm = microMemoize(f2, { maxSize: max, expires: TTL });
      benchSync(g, "micro-memoize", spec, (j) => mm(a[j]!, b[j]!), want2);
    }
    const mz = memoizee(f2, { max, primitive: true, maxAge: TTL });
    benchSync(g, "memoizee", spec, (j) => mz(a[j]!, b[j]!), want2);
  }

  // --- async hit
  {
    const g = `async hit 2 int args ${tag}`;
    const floor = mapMemo(max, (id) => af2(id % 1000, Math.floor(id / 1000)));
    await benchAsync(g, "floor: Map<number>", (j) => floor(ids[j]!), want2, true);
    const warp = cache({ maxSize: max })(af2);
    await benchAsync(g, "warp cache()", (j) => warp(a[j]!, b[j]!), want2);
    const l = kvMemoAsync(lru<Promise<number>>(max), af2);
    await benchAsync(g, "lru-cache", (j) => l(a[j]!, b[j]!), want2);
    // lru-cache's own async memoizer: `fetch` calls `fetchMethod` on a miss and shares
    // the pending Promise between concurrent callers (its `memo` is the synchronous one).
    const lf = new LRUCache<string, number>({
      max,
      fetchMethod: (k: string): Promise<number> => {
        const comma = k.indexOf(",");
        return af2(Number(k.slice(0, comma)), Number(k.slice(comma + 1)));
      },
    });
    // `fetch` resolves to `undefined` only when aborted or failing: `check` would see it.
    const viaFetch = (j: number): Promise<number> =>
      lf.fetch(`${a[j]!},${b[j]!}`) as Promise<number>;
    await benchAsync(g, "lru-cache fetch", viaFetch, want2);
    if (spec.hitOnly) {
      const mm = microMemoize(af2, { maxSize: max, async: true });
      await benchAsync(g, "micro-memoize", (j) => mm(a[j]!, b[j]!), want2);
    }
    const mz = memoizee(af2, { max, primitive: true, promise: true });
    await benchAsync(g, "memoizee", (j) => mz(a[j]!, b[j]!), want2);
    const pm = pMemoize(af2, {
      cache: new LRUCache<string, number>({ max }),
      cacheKey: ([x, y]: [number, number]): string => `${x},${y}`,
    });
    await benchAsync(g, "p-memoize", (j) => pm(a[j]!, b[j]!), want2);
  }
}

/**
 * Registers one contender of misses: every call a new key (two int arguments), after filling
 * the cache with `max` of them, so that each insert evicts.
 */
function benchMisses(
  group: string,
  name: string,
  max: number,
  f: Fn2,
  baseline = false,
  slow = false,
): void {
  let c = 0;
  for (let n = 0; n < max; n++) f(c % 1_000_000, Math.floor(c++ / 1_000_000));
  row(
    group,
    name,
    (): void => {
      let acc = 0;
      for (let n = 0; n < BATCH; n++) {
        acc += f(c % 1_000_000, Math.floor(c / 1_000_000));
        c++;
      }
      sink += acc;
    },
    baseline,
    slow,
  );
}

/** The floor on the miss rows: keys made of the two arguments as a number. */
function floorOfMisses(max: number): Fn2 {
  const floor = mapMemo(max, (id) => f2(id % 1_000_000, Math.floor(id / 1_000_000)));
  return (x, y) => floor(y * 1_000_000 + x);
}

// --- miss + insert: every call a new key, caches full (each insert evicts)
{
  const g = "miss + insert 2 int args";
  const max = 10_000;
  benchMisses(g, "floor: Map<number>", max, floorOfMisses(max), true);
  benchMisses(g, "warp cache()", max, cache({ maxSize: max })(f2));
  benchMisses(g, "warp cache() s3fifo", max, cache({ maxSize: max, strategy: "s3fifo" })(f2));
  benchMisses(g, "warp cache() wtinylfu", max, cache({ maxSize: max, strategy: "wtinylfu" })(f2));
  benchMisses(g, "warp cache() arc", max, cache({ maxSize: max, strategy: "arc" })(f2));
  benchMisses(g, "lru-cache", max, kvMemo2(lru<number>(max), f2));
  benchMisses(g, "micro-memoize", max, microMemoize(f2, { maxSize: max }), false, true);
  benchMisses(g, "memoizee", max, memoizee(f2, { max, primitive: true }));
  benchMisses(g, "@neophi/sieve-cache", max, kvMemo2(new NeoSieve<string, number>(max), f2));
}

// --- a miss + insert against a hit (2 int args), ours and the floor's, in one group: the
// target's ratio, of samples taken one after the other (the two rows above are taken apart)
{
  const g = MISS_AGAINST_HIT;
  const spec = STREAMS.find((x) => x.hitOnly)!;
  const { a, b } = columns(spec);
  const want2 = (j: number): number => f2(a[j]!, b[j]!);
  const floor = mapMemo(spec.maxSize, (id) => f2(id % 1000, Math.floor(id / 1000)));
  benchSync(g, "floor: Map<number> hit", spec, (j) => floor(spec.ids[j]!), want2, true);
  benchMisses(g, "floor: Map<number> miss + insert", 10_000, floorOfMisses(10_000));
  const warp = cache({ maxSize: spec.maxSize })(f2);
  benchSync(g, "warp cache() hit", spec, (j) => warp(a[j]!, b[j]!), want2);
  benchMisses(g, "warp cache() miss + insert", 10_000, cache({ maxSize: 10_000 })(f2));
}

// --- the raw FFI boundary: a no-op call into the library
{
  const lib = loadNative();
  if (lib !== null) {
    row("raw FFI no-op", "warp_abi_version()", (): void => {
      let acc = 0;
      for (let n = 0; n < BATCH; n++) acc += lib.warp_abi_version();
      sink += acc;
    }, true);
  }
}

/** Registers one contender of a floor group: `f(j)` over the key ids of a stream, in turn. */
function floorRow(group: string, name: string, f: (j: number) => number, baseline = false): void {
  let i = 0;
  row(group, name, (): void => {
    let acc = 0;
    for (let n = 0; n < BATCH; n++) acc += f(i++ & MASK);
    sink += acc;
  }, baseline);
}

// --- floors of the object-argument rows: building the key alone, the peers' way and ours
// (`scripts/_why_missed.ts` quotes them when a target is missed)
{
  const g = "floor: object key";
  const { ids } = columns(STREAMS[0]!);
  const obj = (j: number): Obj => ({ id: ids[j]!, kind: "user" });
  const writer = new KeyWriter(256, false);
  const keyOf = (j: number): number => JSON.stringify(obj(j)).length;
  const m = new Map<string, number>();
  for (let j = 0; j <= MASK; j++) m.set(JSON.stringify(obj(j)), j);
  floorRow(g, "JSON.stringify", keyOf, true);
  floorRow(g, "JSON.stringify + Map.get", (j) => m.get(JSON.stringify(obj(j)))!);
  floorRow(g, "warp key codec", (j) => writer.call(undefined, false, [obj(j)]));
}

// --- the key of the string rows: the peers' joined string, and ours (`_why_missed.ts`)
{
  const g = "floor: string key";
  const { ids } = columns(STREAMS[0]!);
  const s = Array.from(ids, str10);
  const n = (j: number): number => ids[j]! & 7;
  const writer = new KeyWriter(256, false);
  floorRow(g, "joined string (the peers' key)", (j) => `${s[j]!},${n(j)}`.length, true);
  floorRow(g, "warp key codec", (j) => writer.call(undefined, false, [s[j]!, n(j)]));
}

// --- floors of the async rows: what awaiting costs before any cache runs
{
  const g = "floor: async";
  const { a, b } = columns(STREAMS[0]!);
  const want = (j: number): number => f2(a[j]!, b[j]!);
  const settled = a.map((x, j) => Promise.resolve(f2(x, b[j]!)));
  await benchAsync(g, "await a settled Promise", (j) => settled[j]!, want, true);
  await benchAsync(g, "await fn() (one Promise)", (j) => af2(a[j]!, b[j]!), want);
  await benchAsync(g, "await fn().then(v => v)", (j) => af2(a[j]!, b[j]!).then((v) => v), want);
}

if (TURNS) console.log(JSON.stringify(await timeInTurns(rows, SAMPLES)));
