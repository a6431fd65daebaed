/**
 * Scale: how each cache's costs grow with its size. For 1k, 100k, 1M and 4M entries
 * (`--quick`: 1k and 100k), per store, the time of:
 *
 * - `open empty`: making a cache of that size (`cache(options)(fn)`, `new SieveCache`,
 *   `new Map`); for the shared backend this creates and reserves the file;
 * - `open full` (shared backend only): opening a second handle on the full file while the
 *   first holds it, as another process does (the open checks the whole file);
 * - `hit`: a call whose key is present, keys drawn uniformly from the present ones;
 * - `hit, 1k hot keys`: the same, keys drawn from 1,000 of the present ones (the same
 *   at every size): the working set of a 1k cache in a large one, which tells the cost
 *   of a large table's cache misses from any cost of the algorithm;
 * - `miss + insert`: a call with a new key into the full cache (a lookup, the function,
 *   an insert that evicts one entry);
 * - `cacheClear` (`clear()` for `SieveCache` and `Map`) of the full cache;
 *
 * and, from a fresh process per store and size (so that sizes do not mix), the resident
 * set growth per entry (`VmRSS` of `/proc/self/status` after a full GC, before the cache
 * is made and after it is filled) and the shared file's size.
 *
 * Stores: the shared backend (`maxKeySize` and `maxValueSize` {@linkcode SLOT_BYTES}, so
 * that each entry lives in its slot: 4M entries take a file of 355 MB), the memory backend
 * on each engine
 * (`WARP_CACHE_ENGINE=native` and `ts`), {@linkcode SieveCache}, and a plain `Map` used
 * as a memoizer (FIFO eviction on insert), the reference for what a table of that size
 * costs in this runtime on this machine. Keys are ints; values the same int.
 *
 * Each figure is the median of `--repeats` (3) measurements of at least `--target-ms`
 * (100) ms each, timed with `performance.now()`; `hit` and `miss + insert` are divided
 * by the calls made, the whole-cache operations by the times they ran. The shared files
 * go to `/dev/shm` when it has room for them, else to the system temp directory (on
 * disk); the report says which.
 *
 * Run: `deno run -A bench/scale.ts [--quick] [--json] [--sizes=1000,100000]
 * [--stores=shared,SieveCache] [--target-ms=100] [--repeats=3]`. `--json` prints a
 * {@linkcode ScaleReport} (what `scripts/bench_report.ts` reads).
 *
 * To profile a hit: `deno run -A --v8-flags=--perf-basic-prof bench/scale.ts
 * --store="memory (native)" --size=4000000 --loop=5 [--hot] [--dependent]` runs hits for
 * 5 s after the fill (it writes `ready` on stderr when the fill is done: attach
 * `perf record -p` then) and prints ns per hit; set `WARP_CACHE_ENGINE` for the memory
 * stores.
 *
 * @module
 */

import { cache, SieveCache } from "../mod.ts";
import { memoryEngine } from "../src/store/engine.ts";
import { loadNative } from "../src/native/ffi.ts";
import { sharedFileSize } from "../src/store/shared_store.ts";
import { MAX_SHARED_ENTRIES } from "../src/native/_abi.ts";
import { BENCH_LOCK_FLAG, rng } from "./_workload.ts";

/** Cache sizes of a full run. */
export const SIZES: readonly number[] = [1_000, 100_000, 1_000_000, 4_000_000];
/** Cache sizes with `--quick`. */
export const QUICK_SIZES: readonly number[] = [1_000, 100_000];
/** `maxKeySize` and `maxValueSize` of the shared caches (an int key or value fits). */
export const SLOT_BYTES = 16;

/** The stores measured, in report order. */
export const STORES = [
  "shared",
  "memory (native)",
  "memory (ts)",
  "SieveCache",
  "Map (reference)",
] as const;
/** One of {@linkcode STORES}. */
export type StoreName = typeof STORES[number];

/** The operations measured, in report order. */
export const OPERATIONS = [
  "open empty",
  "open full",
  "hit",
  "hit, 1k hot keys",
  "miss + insert",
  "cacheClear",
] as const;
/** One of {@linkcode OPERATIONS}. */
export type Operation = typeof OPERATIONS[number];

/** Operations that concern the whole cache (timed per call, not per entry touched). */
export const WHOLE_CACHE: readonly Operation[] = ["open empty", "open full", "cacheClear"];

/** The operations each store has (`open full` is the shared backend's alone). */
export function operationsOf(store: StoreName): Operation[] {
  return OPERATIONS.filter((op) => op !== "open full" || store === "shared");
}

/** One store at one size, measured in a process of its own. */
export interface ScaleResult {
  store: StoreName;
  entries: number;
  /** ns per operation (median of the repeats). */
  ns: Partial<Record<Operation, number>>;
  /** Resident set growth per entry, in bytes: filled cache against none. */
  rssBytesPerEntry: number;
  /** Size of the shared cache file, in bytes. */
  fileBytes?: number;
  /** Why this store could not be measured at this size. */
  error?: string;
}

/** What `--json` prints. */
export interface ScaleReport {
  sizes: number[];
  /** Load average (1, 5, 15 min) when the run started. */
  loadAverage: number[];
  /** Where the shared files lived, and what kind of file system that is. */
  dir: string;
  dirKind: string;
  slotBytes: number;
  targetMs: number;
  repeats: number;
  /** Wall time of the whole run, in seconds. */
  seconds: number;
  results: ScaleResult[];
}

/** Distinct keys of the `hit, 1k hot keys` operation. */
const HOT_KEYS = 1000;

/** Keys drawn for hits (a power of two long, indexed with `& (length - 1)`). */
const SAMPLE_LENGTH = 1 << 20;

/** Keeps results alive so that the work is not optimised away. */
export let sink = 0;

function gc(): void {
  const g = (globalThis as { gc?: () => void }).gc;
  if (g === undefined) throw new Error("run with --v8-flags=--expose-gc");
  for (let i = 0; i < 3; i++) g();
}

/** Runs pending finalizers (closing native handles left to the GC). */
async function collect(): Promise<void> {
  gc();
  await new Promise((r) => setTimeout(r, 0));
  gc();
}

function vmRssBytes(): number {
  const status = Deno.readTextFileSync("/proc/self/status");
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(status)?.[1];
  if (kb === undefined) throw new Error("no VmRSS in /proc/self/status");
  return Number(kb) * 1024;
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

/** The counters of a `cache()` function (`oversizeSkips`: 0 outside the shared backend). */
interface Counts {
  hits: number;
  misses: number;
  oversizeSkips: number;
}

/** A cache under test: a memoized identity over int keys. */
interface Subject {
  /** The memoized call. */
  call: (k: number) => number;
  clear: () => void;
  /** Hits and misses so far, where the store counts them. */
  counts?: () => Counts;
}

interface Config {
  store: StoreName;
  entries: number;
  dir: string;
  targetMs: number;
  repeats: number;
}

/** Makes a cache of `cfg.entries` entries; `name` tells shared caches apart. */
function open(cfg: Config, name: string): Subject {
  const n = cfg.entries;
  const identity = (k: number): number => k;
  switch (cfg.store) {
    case "shared":
    case "memory (native)":
    case "memory (ts)": {
      const f = cfg.store === "shared"
        ? cache({
          backend: "shared",
          name,
          dir: cfg.dir,
          maxSize: n,
          maxKeySize: SLOT_BYTES,
          maxValueSize: SLOT_BYTES,
          // Entries of these sizes live in their slots (format 8): the default budget, the
          // smallest, since none takes a chunk.
        })(identity)
        : cache({ maxSize: n })(identity);
      return {
        call: f,
        clear: f.cacheClear,
        counts: (): Counts => {
          const info = f.cacheInfo() as { hits: number; misses: number; oversizeSkips?: number };
          return { hits: info.hits, misses: info.misses, oversizeSkips: info.oversizeSkips ?? 0 };
        },
      };
    }
    case "SieveCache": {
      const c = new SieveCache<number, number>({ maxSize: n });
      return {
        call: (k: number): number => {
          const v = c.get(k);
          if (v !== undefined) return v;
          c.set(k, k);
          return k;
        },
        clear: (): void => c.clear(),
      };
    }
    case "Map (reference)": {
      // A memoizer on a bare Map, evicting first-in first-out: the keys of this bench
      // arrive in order, so the oldest key is the new one minus the size.
      const m = new Map<number, number>();
      return {
        call: (k: number): number => {
          const v = m.get(k);
          if (v !== undefined) return v;
          m.set(k, k);
          if (m.size > n) m.delete(k - n);
          return k;
        },
        clear: (): void => m.clear(),
      };
    }
  }
}

function fill(s: Subject, n: number): void {
  const call = s.call;
  let acc = 0;
  for (let k = 0; k < n; k++) acc += call(k);
  sink += acc;
}

/**
 * Median ns per call of `run(count)` over the repeats, with `count` grown until one run
 * takes `targetMs`; repeats that fall short of it (a GC pause during the calibration made
 * `count` too small) are measured again with a larger `count`.
 */
function perCall(cfg: Config, run: (count: number) => void): number {
  let count = 1000;
  for (;;) {
    const t = performance.now();
    run(count);
    const dt = performance.now() - t;
    if (dt >= cfg.targetMs / 4) {
      count = Math.ceil(count * Math.max(1, (cfg.targetMs * 1.1) / dt));
      break;
    }
    count *= dt > 0 ? Math.min(16, Math.ceil(cfg.targetMs / 4 / dt)) : 16;
  }
  for (let attempt = 0;; attempt++) {
    const out: number[] = [];
    let shortest = Infinity;
    for (let r = 0; r < cfg.repeats; r++) {
      const t = performance.now();
      run(count);
      const dt = performance.now() - t;
      shortest = Math.min(shortest, dt);
      out.push((dt * 1e6) / count);
    }
    if (shortest >= cfg.targetMs * 0.9 || attempt === 3) return median(out);
    count = Math.ceil(count * (cfg.targetMs * 1.1) / shortest);
  }
}

/**
 * Median ns per call of an operation that needs untimed preparation before each call
 * (`prepare`, then `timed`): calls are repeated until they add up to `targetMs`, or until
 * the measurement has taken `targetMs × 3` with preparations (at least one call). Each
 * call is timed alone (`performance.now()` steps by 80 ns here, and costs about 40).
 */
async function perWholeOp(
  cfg: Config,
  prepare: () => void | Promise<void>,
  timed: () => void,
): Promise<number> {
  const out: number[] = [];
  for (let r = 0; r < cfg.repeats; r++) {
    let spent = 0;
    let calls = 0;
    const start = performance.now();
    do {
      await prepare();
      const t = performance.now();
      timed();
      spent += performance.now() - t;
      calls++;
    } while (spent < cfg.targetMs && performance.now() - start < cfg.targetMs * 3);
    out.push((spent * 1e6) / calls);
  }
  return median(out);
}

function check(ok: boolean, what: string): void {
  if (!ok) throw new Error(`scale: ${what}`);
}

/** Removes the file of the shared cache `name` (nothing for the other stores). */
function removeFile(cfg: Config, name: string): void {
  if (cfg.store === "shared") Deno.removeSync(`${cfg.dir}/${name}.warp`);
}

/** Logs a phase's wall time on stderr. */
function phase(t: number, what: string): number {
  const now = performance.now();
  console.error(`[scale child] ${what}: ${(now - t).toFixed(0)} ms`);
  return now;
}

async function measure(cfg: Config): Promise<ScaleResult> {
  const n = cfg.entries;
  const ns: Partial<Record<Operation, number>> = {};
  const random = rng(n);
  const sample = new Int32Array(SAMPLE_LENGTH);
  for (let i = 0; i < SAMPLE_LENGTH; i++) sample[i] = Math.floor(random() * n);
  // 1,000 present keys spread over the cache (all of them at 1,000 entries).
  const hot = new Int32Array(SAMPLE_LENGTH);
  const hotKeys = Math.min(HOT_KEYS, n);
  for (let i = 0; i < SAMPLE_LENGTH; i++) {
    hot[i] = Math.floor(Math.floor(random() * hotKeys) * (n / hotKeys));
  }
  const mask = SAMPLE_LENGTH - 1;
  if (cfg.store === "memory (native)") check(memoryEngine() === "native", "native engine off");
  if (cfg.store === "memory (ts)") check(memoryEngine() === "ts", "TypeScript engine off");

  // Resident set: nothing but the sample before, the filled cache after.
  await collect();
  const rssBefore = vmRssBytes();
  let t = performance.now();
  const s = open(cfg, `scale_${Deno.pid}`);
  fill(s, n);
  await collect();
  t = phase(t, "fill");
  const rssBytesPerEntry = (vmRssBytes() - rssBefore) / n;
  const result: ScaleResult = { store: cfg.store, entries: n, ns, rssBytesPerEntry };
  if (cfg.store === "shared") {
    result.fileBytes = Deno.statSync(`${cfg.dir}/scale_${Deno.pid}.warp`).size;
    const lib = loadNative();
    check(
      lib !== null &&
        result.fileBytes === sharedFileSize(lib, n, SLOT_BYTES, SLOT_BYTES),
      `file size ${result.fileBytes} is not the formula's`,
    );
  }
  const info = s.counts?.();
  if (info !== undefined) {
    check(info.misses === n && info.hits === 0, "fill was not all misses");
    check(info.oversizeSkips === 0, "keys or values too large for the slots");
  }

  // Hits: uniform over the present keys.
  const call = s.call;
  let pos = 0;
  let hitCalls = 0;
  const hits = (keys: Int32Array) => (count: number): void => {
    let acc = 0;
    for (let i = 0; i < count; i++) acc += call(keys[(pos + i) & mask]!);
    pos += count;
    hitCalls += count;
    sink += acc;
  };
  ns.hit = perCall(cfg, hits(sample));
  ns["hit, 1k hot keys"] = perCall(cfg, hits(hot));
  t = phase(t, "hit");
  const afterHits = s.counts?.();
  if (afterHits !== undefined) {
    check(afterHits.hits === hitCalls && afterHits.misses === n, "a hit was a miss");
  }

  // Miss + insert: new keys into the full cache, each evicting one entry.
  let next = n;
  let missCalls = 0;
  ns["miss + insert"] = perCall(cfg, (count) => {
    let acc = 0;
    const end = next + count;
    for (let k = next; k < end; k++) acc += call(k);
    next = end;
    missCalls += count;
    sink += acc;
  });
  t = phase(t, "miss + insert");
  const afterMisses = s.counts?.();
  if (afterMisses !== undefined) {
    check(afterMisses.misses === n + missCalls, "a new key was a hit");
  }

  // Shared handles made below are closed by their finalizers: collect often enough that
  // their mappings (of files already unlinked) stay under 1 GiB, and their descriptors few.
  const collectEvery = Math.max(1, Math.min(256, Math.floor(2 ** 30 / (result.fileBytes ?? 1))));

  // Open full: a second handle on the full file, as another process opens it.
  if (cfg.store === "shared") {
    let opened = 0;
    let extra: Subject | undefined;
    ns["open full"] = await perWholeOp(cfg, async () => {
      extra = undefined;
      if (++opened % collectEvery === 0) await collect();
    }, () => {
      extra = open(cfg, `scale_${Deno.pid}`);
    });
    check(extra !== undefined && extra.counts!().misses === n + missCalls, "reopen lost counts");
    extra = undefined;
    t = phase(t, "open full");
  }

  // cacheClear of the full cache, refilled (untimed) before each.
  ns.cacheClear = await perWholeOp(cfg, () => fill(s, n), () => s.clear());
  check((s.counts?.().misses ?? 0) === 0, "clear left counts");
  t = phase(t, "cacheClear");

  // Open empty, last: the handles it makes are left to the GC.
  let made = 0;
  const names: string[] = [];
  ns["open empty"] = await perWholeOp(cfg, async () => {
    for (const name of names.splice(0)) removeFile(cfg, name);
    if (cfg.store === "shared" && ++made % collectEvery === 0) await collect();
  }, () => {
    const name = `scale_${Deno.pid}_${made}`;
    names.push(name);
    sink += open(cfg, name).call.length;
  });
  for (const name of names) removeFile(cfg, name);
  removeFile(cfg, `scale_${Deno.pid}`);
  phase(t, "open empty");
  return result;
}

/**
 * A hit loop to profile (`--loop=<seconds>`): fills the store, writes `ready` on stderr,
 * then calls it with present keys for `seconds` and prints ns per hit. `hot`: the keys of
 * `hit, 1k hot keys`; `dependent`: each key depends on the previous hit's value, so that
 * no two hits' cache misses overlap.
 */
function hitLoop(cfg: Config, seconds: number, hot: boolean, dependent: boolean): void {
  const n = cfg.entries;
  const s = open(cfg, `scale_loop_${Deno.pid}`);
  fill(s, n);
  const random = rng(n);
  const keys = new Int32Array(SAMPLE_LENGTH);
  const spread = Math.min(HOT_KEYS, n);
  for (let i = 0; i < SAMPLE_LENGTH; i++) {
    keys[i] = hot
      ? Math.floor(Math.floor(random() * spread) * (n / spread))
      : Math.floor(random() * n);
  }
  const mask = SAMPLE_LENGTH - 1;
  const call = s.call;
  console.error("ready");
  const start = performance.now();
  const end = start + seconds * 1000;
  let calls = 0;
  let v = 0;
  while (performance.now() < end) {
    if (dependent) {
      for (let i = 0; i < 100_000; i++) v = call(keys[(i + (v & 1)) & mask]!);
    } else {
      for (let i = 0; i < 100_000; i++) v += call(keys[i & mask]!);
    }
    calls += 100_000;
  }
  sink += v;
  console.log(
    `${cfg.store} ${n}${hot ? " hot" : ""}${dependent ? " dependent" : ""}: ${
      (((performance.now() - start) * 1e6) / calls).toFixed(0)
    } ns per hit`,
  );
}

// ---------------------------------------------------------------- parent

/** Free bytes of the file system holding `dir` (`df`), or `undefined` when unknown. */
async function freeBytes(dir: string): Promise<number | undefined> {
  try {
    const res = await new Deno.Command("df", { args: ["-B1", "--output=avail", dir] }).output();
    const last = new TextDecoder().decode(res.stdout).trim().split("\n").pop();
    const v = Number(last);
    return res.success && Number.isFinite(v) ? v : undefined;
  } catch {
    return undefined;
  }
}

/**
 * A directory for the shared files: under `/dev/shm` when it has room for three files of
 * the largest size (the full cache, one being opened, one not yet collected) and memory
 * to back them, else the system temp directory.
 */
async function chooseDir(largest: number): Promise<{ dir: string; kind: string }> {
  const lib = loadNative();
  const need = lib === null ? 0 : 3 * sharedFileSize(lib, largest, SLOT_BYTES, SLOT_BYTES);
  const shm = await freeBytes("/dev/shm");
  if (shm !== undefined && shm > need && Deno.systemMemoryInfo().available > 2 * need) {
    return {
      dir: Deno.makeTempDirSync({ dir: "/dev/shm", prefix: "warp_scale_" }),
      kind: `tmpfs, /dev/shm (${(shm / 2 ** 30).toFixed(1)} GiB free; needs ${
        (need / 2 ** 20).toFixed(0)
      } MiB)`,
    };
  }
  const dir = Deno.makeTempDirSync({ prefix: "warp_scale_" });
  const free = await freeBytes(dir);
  if (free !== undefined && free < need) {
    throw new Error(
      `Cannot run the scale bench: ${need} bytes needed for the shared files, ${free} free in ${dir}`,
    );
  }
  return {
    dir,
    kind: `disk, system temp dir (${
      free === undefined ? "?" : (free / 2 ** 30).toFixed(1)
    } GiB free)`,
  };
}

function intList(flag: string): number[] | undefined {
  const a = Deno.args.find((x) => x.startsWith(`--${flag}=`));
  return a === undefined ? undefined : a.slice(flag.length + 3).split(",").map(Number);
}

function flagValue(flag: string): string | undefined {
  return Deno.args.find((x) => x.startsWith(`--${flag}=`))?.slice(flag.length + 3);
}

/** Measures every store at every size, each in a process of its own. */
export async function scale(options: {
  sizes: number[];
  stores?: readonly StoreName[];
  targetMs?: number;
  repeats?: number;
}): Promise<ScaleReport> {
  const t0 = performance.now();
  const loadAverage = Deno.loadavg();
  const targetMs = options.targetMs ?? 100;
  const repeats = options.repeats ?? 3;
  for (const n of options.sizes) {
    if (!Number.isInteger(n) || n < 1 || n > MAX_SHARED_ENTRIES) {
      throw new RangeError(
        `Cannot run the scale bench: sizes must be 1..${MAX_SHARED_ENTRIES}: received ${n}`,
      );
    }
  }
  const { dir, kind } = await chooseDir(Math.max(...options.sizes));
  const self = new URL(import.meta.url).pathname;
  const results: ScaleResult[] = [];
  try {
    for (const store of options.stores ?? STORES) {
      for (const entries of options.sizes) {
        const env: Record<string, string> = { NO_COLOR: "1" };
        if (store === "memory (native)") env.WARP_CACHE_ENGINE = "native";
        if (store === "memory (ts)") env.WARP_CACHE_ENGINE = "ts";
        const t = performance.now();
        const res = await new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            BENCH_LOCK_FLAG,
            "--v8-flags=--expose-gc",
            self,
            `--store=${store}`,
            `--size=${entries}`,
            `--dir=${dir}`,
            `--target-ms=${targetMs}`,
            `--repeats=${repeats}`,
          ],
          env,
          stdout: "piped",
          stderr: "piped",
        }).output();
        const text = new TextDecoder().decode(res.stdout).trim();
        if (res.success && text.startsWith("{")) {
          results.push(JSON.parse(text) as ScaleResult);
        } else {
          const err = new TextDecoder().decode(res.stderr).trim().split("\n").slice(-3);
          results.push({ store, entries, ns: {}, rssBytesPerEntry: NaN, error: err.join(" ") });
        }
        console.error(
          `[scale] ${store} ${entries.toLocaleString("en-US")}: ${
            ((performance.now() - t) / 1000).toFixed(1)
          } s${res.success ? "" : " (failed)"}`,
        );
      }
    }
  } finally {
    Deno.removeSync(dir, { recursive: true });
  }
  return {
    sizes: options.sizes,
    loadAverage,
    dir,
    dirKind: kind,
    slotBytes: SLOT_BYTES,
    targetMs,
    repeats,
    seconds: (performance.now() - t0) / 1000,
    results,
  };
}

/** Formats ns: `ns` below 1 µs, then µs, then ms. */
export function fmtTime(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return "-";
  if (x >= 1e7) return `${(x / 1e6).toFixed(0)} ms`;
  if (x >= 1e6) return `${(x / 1e6).toFixed(1)} ms`;
  if (x >= 1e5) return `${(x / 1e3).toFixed(0)} µs`;
  if (x >= 1e4) return `${(x / 1e3).toFixed(1)} µs`;
  if (x >= 1e3) return `${(x / 1e3).toFixed(2)} µs`;
  if (x >= 100) return `${x.toFixed(0)} ns`;
  return `${x.toFixed(1)} ns`;
}

if (import.meta.main) {
  const store = flagValue("store");
  const targetMs = Number(flagValue("target-ms") ?? 100);
  const repeats = Number(flagValue("repeats") ?? 3);
  const seconds = flagValue("loop");
  if (store !== undefined && seconds !== undefined) {
    check((STORES as readonly string[]).includes(store), `unknown store ${store}`);
    const dir = Deno.makeTempDirSync({ prefix: "warp_scale_loop_" });
    try {
      hitLoop(
        {
          store: store as StoreName,
          entries: Number(flagValue("size")),
          dir,
          targetMs,
          repeats,
        },
        Number(seconds),
        Deno.args.includes("--hot"),
        Deno.args.includes("--dependent"),
      );
    } finally {
      Deno.removeSync(dir, { recursive: true });
    }
  } else if (store !== undefined) {
    check((STORES as readonly string[]).includes(store), `unknown store ${store}`);
    const result = await measure({
      store: store as StoreName,
      entries: Number(flagValue("size")),
      dir: flagValue("dir") ?? ".",
      targetMs,
      repeats,
    });
    console.log(JSON.stringify(result));
  } else {
    const stores = flagValue("stores")?.split(",") as StoreName[] | undefined;
    const report = await scale({
      sizes: intList("sizes") ?? [...(Deno.args.includes("--quick") ? QUICK_SIZES : SIZES)],
      ...(stores ? { stores } : {}),
      targetMs,
      repeats,
    });
    if (Deno.args.includes("--json")) console.log(JSON.stringify(report));
    else {
      console.log(`shared files: ${report.dirKind}; ${report.seconds.toFixed(0)} s`);
      for (const r of report.results) {
        console.log(
          `${r.store.padEnd(16)} ${r.entries.toLocaleString("en-US").padStart(10)}  ` +
            operationsOf(r.store).map((op) => `${op} ${fmtTime(r.ns[op])}`).join("  ") +
            `  rss/entry ${r.rssBytesPerEntry.toFixed(1)} B` +
            (r.fileBytes !== undefined ? `  file ${(r.fileBytes / 2 ** 20).toFixed(1)} MiB` : "") +
            (r.error ? `  error: ${r.error}` : ""),
        );
      }
    }
  }
}
