/**
 * The speed and memory targets that `deno task bench` checks (`bench/RESULTS.md`,
 * "Targets"): each a ratio of two figures of the same run, never an absolute time, so that a
 * busy machine moves both sides alike. A missed target gets a paragraph under "Why the missed
 * targets are missed" that names the measured floor it runs into.
 *
 * @module
 */

// The parts of the bench reports read here, as shapes: importing the bench files' types
// would make a type check of this module (and of its test) load their npm peers.

/** One variant of `bench/footprint.ts`. */
export interface Footprint {
  variant: string;
  entries: number;
  heapBytes: number;
  nativeBytes: number;
  /** V8's count of its `ArrayBuffer`s' memory (typed arrays), grown by the fill. */
  externalBytes?: number;
  fileBytes?: number;
  error?: string;
}

/** `bench/shared_procs.ts`'s report. */
export interface ProcsReport {
  results: ReadonlyArray<{ backend: string; processes: number; opsPerSec: number }>;
}

/** `bench/remote.ts`'s report. */
export interface RemoteReport {
  rows: ReadonlyArray<{ case: string; us: number; cpuUs?: number }>;
}

/** One target: what, the goal, the figure of this run, and whether it is met. */
export interface Target {
  what: string;
  target: string;
  measured: string;
  /** `undefined`: not measured in this run. */
  met: boolean | undefined;
}

/** The figures of one `deno task bench` run that the targets read. */
export interface Figures {
  /** ns per call of `name` in `group` (median of the runs), or `undefined`. */
  ns(group: string, name: string): number | undefined;
  /** The median ratio of the samples of `name` in `group` to the samples of `base` taken
   * one after the other (the rows of `bench/memory_bench.ts --turns` and
   * `bench/tags_bench.ts`), or `undefined` where none were paired. */
  pairedRatio?(group: string, name: string, base: string): number | undefined;
  /** The memory groups of `bench/memory_bench.ts`, in order. */
  memGroups: readonly string[];
  /** The engines `cache()` ran on in this run (`native` and `ts`, or `ts` alone). */
  engines: readonly string[];
  footprint: readonly Footprint[];
  procs: ProcsReport | undefined;
  remote: RemoteReport | undefined;
}

/** The contenders of the memory groups that are not ours (`warp …`) nor the floor. */
export const MEMORY_PEERS = [
  "lru-cache",
  "lru-cache fetch",
  "micro-memoize",
  "memoizee",
  "p-memoize",
  "@neophi/sieve-cache",
] as const;

/** The floor of the memory groups: a hand-written `Map` memoize keyed by a number. */
export const FLOOR = "floor: Map<number>";

/** The group of `bench/memory_bench.ts` whose contenders are a hit and a miss + insert, of
 * `cache()` (`warp cache() hit`, `warp cache() miss + insert`) and of the floor
 * (`floor: Map<number> hit`, `floor: Map<number> miss + insert`), taken in turns. */
export const MISS_AGAINST_HIT = "miss + insert against a hit, 2 int args";

/** The remote rows of `bench/remote.ts` that the targets compare. */
export const REMOTE_OURS = "remote hit (local miss, Redis get)";
export const REMOTE_BENTO = "BentoCache remote hit (L1 miss, Redis L2 get)";
export const REMOTE_FLOOR = "floor: node-redis GET + JSON.parse";
/** The remote rows of `bench/remote.ts` over ioredis (BentoCache's client), and those of a
 * remote hit with no socket, that the "why missed" paragraph of the remote target reads. */
export const REMOTE_ROWS = {
  oursIoredis: "remote hit, our cache over an ioredis storage",
  floorIoredis: "floor: ioredis GET + JSON.parse",
  warm: "remote hit over an in-memory storage, warm",
  warmFloor: "floor: in-memory get + JSON.parse, warm",
  swept: "remote hit over an in-memory storage, caches swept",
  sweptFloor: "floor: in-memory get + JSON.parse, caches swept",
} as const;

/** Bytes of memory swept between two calls of the remote rows "caches swept" (twice a core's
 * 1 MiB L2 cache on the bench machines). */
export const SWEEP_BYTES = 2 << 20;

/** {@linkcode SWEEP_BYTES} as the report writes it. */
export const SWEEP_TEXT = `${SWEEP_BYTES / 2 ** 20} MiB`;

/** The 16-byte entries of the shared footprint variant: goal of bytes of file per entry. */
export const SHARED_BYTES_PER_ENTRY = 96;

/** A ratio as the report prints it (`1.23×`, `12.3×`, `123×`; `-` when not a number). */
export function fmtRatio(x: number | undefined): string {
  if (x === undefined || !Number.isFinite(x)) return "-";
  if (x >= 100) return `${x.toFixed(0)}×`;
  if (x >= 10) return `${x.toFixed(1)}×`;
  return `${x.toFixed(2)}×`;
}

/** Bytes as the report prints them, in MB of 2^20 bytes (`-` when not a number). */
export const mb = (n: number): string =>
  Number.isFinite(n) ? `${(n / 2 ** 20).toFixed(1)} MB` : "-";
const ours = (engine: string): string => `warp cache() (${engine})`;

/**
 * `name`'s time / `base`'s in `group`: the median of the ratios of their samples where they
 * were taken in turns ({@linkcode Figures.pairedRatio}), else the ratio of their medians;
 * `undefined` when either was not measured.
 */
export function rowRatio(
  f: Pick<Figures, "ns" | "pairedRatio">,
  group: string,
  name: string,
  base: string,
): number | undefined {
  const x = f.ns(group, name);
  const b = f.ns(group, base);
  if (x === undefined || b === undefined) return undefined;
  return f.pairedRatio?.(group, name, base) ?? x / b;
}

/**
 * The speed-up of `mine` (a contender of `group`) over the peer it beats by the least: the
 * peer's time / ours, each peer's ratio the median of its paired samples where they were
 * taken in turns with ours, else the ratio of the medians.
 */
export function speedUpOverPeers(
  f: Figures,
  group: string,
  mine: string,
): { name: string; ratio: number } | undefined {
  let worst: { name: string; ratio: number } | undefined;
  for (const name of MEMORY_PEERS) {
    const ratio = rowRatio(f, group, name, mine);
    if (ratio === undefined) continue;
    if (worst === undefined || ratio < worst.ratio) worst = { name, ratio };
  }
  return worst;
}

function at(
  what: string,
  target: string,
  value: number | undefined,
  met: (v: number) => boolean,
  show: (v: number) => string,
  detail = "",
): Target {
  return {
    what,
    target,
    measured: value === undefined ? "not measured" : `${show(value)}${detail}`,
    met: value === undefined ? undefined : met(value),
  };
}

function memoryTargets(f: Figures): Target[] {
  const out: Target[] = [];
  for (const engine of f.engines) {
    for (const g of f.memGroups) {
      const peer = speedUpOverPeers(f, g, ours(engine));
      if (peer === undefined) continue;
      out.push(at(
        `memory ${g} (${engine}): speed-up over the fastest peer`,
        "≥ 1.5×",
        peer.ratio,
        (v) => v >= 1.5,
        fmtRatio,
        ` (${peer.name})`,
      ));
    }
  }
  const hit2 = "hit 2 int args [hit-only]";
  const native = f.engines[0]!;
  const mine = f.ns(hit2, ours(native));
  out.push(at(
    `memory hit, 2 int args (${native}): time / Map floor`,
    "≤ 1.5×",
    rowRatio(f, hit2, ours(native), FLOOR),
    (v) => v <= 1.5,
    fmtRatio,
  ));
  // Paired where the run took the two in turns (`MISS_AGAINST_HIT`), else the two rows.
  const miss = f.ns("miss + insert 2 int args", ours(native));
  const pairedMiss = f.pairedRatio?.(
    MISS_AGAINST_HIT,
    `warp cache() miss + insert (${native})`,
    `warp cache() hit (${native})`,
  );
  out.push(at(
    `miss + insert / hit, 2 int args (${native})`,
    "≤ 3×",
    pairedMiss ?? (miss === undefined || mine === undefined ? undefined : miss / mine),
    (v) => v <= 3,
    fmtRatio,
  ));
  return out;
}

function sharedTargets(f: Figures): Target[] {
  const out: Target[] = [];
  for (const g of ["shared hit structured [hit-only]", "shared hit structured [zipf]"]) {
    out.push(at(
      `${g}: speed-up over lmdb get`,
      "≥ 2×",
      rowRatio(f, g, "lmdb get", "warp shared"),
      (v) => v >= 2,
      fmtRatio,
    ));
  }
  const p1 = f.procs?.results.find((r) => r.backend === "shared" && r.processes === 1);
  const p2 = f.procs?.results.find((r) => r.backend === "shared" && r.processes === 2);
  out.push(at(
    "shared hits: 2 processes / 1 process throughput",
    "≥ 1.7×",
    p1 && p2 ? p2.opsPerSec / p1.opsPerSec : undefined,
    (v) => v >= 1.7,
    fmtRatio,
  ));
  const shared = f.footprint.find((v) => v.variant === "warp shared");
  const file = shared?.fileBytes;
  out.push(at(
    "1,000,000 shared entries of 16-byte keys and values: bytes of file per entry",
    `≤ ${SHARED_BYTES_PER_ENTRY} bytes`,
    file === undefined || shared === undefined ? undefined : file / shared.entries,
    (v) => v <= SHARED_BYTES_PER_ENTRY,
    (v) => `${v.toFixed(1)} bytes`,
    file === undefined ? "" : ` (a file of ${mb(file)})`,
  ));
  return out;
}

function otherTargets(f: Figures): Target[] {
  const out: Target[] = [];
  const row = (name: string): number | undefined => f.remote?.rows.find((r) => r.case === name)?.us;
  const mine = row(REMOTE_OURS);
  const bento = row(REMOTE_BENTO);
  out.push(at(
    "remote hit: speed-up over BentoCache (same redis-server)",
    "≥ 1.5×",
    mine === undefined || bento === undefined ? undefined : bento / mine,
    (v) => v >= 1.5,
    fmtRatio,
  ));
  // What a JavaScript structure holds: its live heap and its typed arrays' buffers, both as V8
  // counts them. (The growth of `rss - heapTotal` also counted heap pages that V8 gave up
  // after the fill's garbage but the process kept: it moved by up to 17 MB between processes
  // of the same code, see bench/footprint.ts.)
  const fp = (variant: string): number | undefined => {
    const v = f.footprint.find((x) => x.variant === variant);
    return v === undefined || v.error !== undefined || v.externalBytes === undefined
      ? undefined
      : v.heapBytes + v.externalBytes;
  };
  const ts = fp(ours("ts"));
  const lru = fp("lru-cache");
  out.push(at(
    "1,000,000 entries on the TypeScript engine: heap + array buffers / lru-cache's",
    "≤ 1×",
    ts === undefined || lru === undefined ? undefined : ts / lru,
    (v) => v <= 1,
    fmtRatio,
    ts === undefined || lru === undefined ? "" : ` (${mb(ts)} against ${mb(lru)})`,
  ));
  return out;
}

function tagTargets(f: Figures): Target[] {
  return f.engines.map((engine) => {
    const g = `memory hit, tags off / on (${engine} engine)`;
    return at(
      `memory hit with tags / without (${engine})`,
      "≤ 1.1×",
      rowRatio(f, g, "tags", "no tags"),
      (v) => v <= 1.1,
      fmtRatio,
    );
  });
}

/** The speed and memory targets of this run, in the order of the report's table. */
export function speedTargets(f: Figures): Target[] {
  return [...memoryTargets(f), ...tagTargets(f), ...sharedTargets(f), ...otherTargets(f)];
}
