/**
 * The targets of `deno task bench` (scripts/_targets.ts) and their explanations
 * (scripts/_why_missed.ts), on made-up figures: each target compares the right two
 * figures, is met or missed at its bound, and a missed one gets its paragraph.
 */

import assert from "node:assert/strict";
import {
  type Figures,
  MISS_AGAINST_HIT,
  REMOTE_ROWS,
  speedTargets,
  speedUpOverPeers,
  type Target,
} from "../scripts/_targets.ts";
import { whyMissed } from "../scripts/_why_missed.ts";

function figures(
  table: Record<string, Record<string, number>>,
  extra: Partial<Figures> = {},
): Figures {
  return {
    ns: (g: string, n: string) => table[g]?.[n],
    memGroups: Object.keys(table).filter((g) => !g.startsWith("shared ")),
    engines: ["native", "ts"],
    footprint: [],
    procs: undefined,
    remote: undefined,
    ...extra,
  };
}

/** Asserts the figure and the verdict of the target `what`. */
function assertTarget(ts: Target[], what: string, measured: string, met: boolean): void {
  const t = find(ts, what);
  assert.equal(t.measured, measured, what);
  assert.equal(t.met, met, what);
}

const find = (ts: Target[], what: string): Target => {
  const t = ts.find((x) => x.what === what);
  assert.ok(t, `no target "${what}" among ${ts.map((x) => x.what).join(" | ")}`);
  return t;
};

Deno.test("tags target: the paired ratio of samples, where measured, over the ratio of medians", () => {
  const table = {
    "memory hit, tags off / on (native engine)": { "no tags": 50, "tags": 60 },
    "memory hit, tags off / on (ts engine)": { "no tags": 50, "tags": 52 },
  };
  const paired: Record<string, number> = {
    "memory hit, tags off / on (native engine)": 1.04,
    "memory hit, tags off / on (ts engine)": 1.12,
  };
  const ts = speedTargets(
    figures(table, {
      pairedRatio: (g, n, base) => n === "tags" && base === "no tags" ? paired[g] : undefined,
    }),
  );
  const native = find(ts, "memory hit with tags / without (native)");
  assert.equal(native.measured, "1.04×");
  assert.equal(native.met, true);
  const tsEngine = find(ts, "memory hit with tags / without (ts)");
  assert.equal(tsEngine.measured, "1.12×");
  assert.equal(tsEngine.met, false);
  // The paragraph gives each process's own ratio beside the pooled one.
  const why = whyMissed(ts, {
    ns: (g, n) => (table as Record<string, Record<string, number>>)[g]?.[n],
    pairedRatiosByRun: (g, n, base) =>
      n === "tags" && base === "no tags" && g.includes("(ts engine)") ? [1.02, 1.19, 1.08] : [],
    rawFfi: undefined,
    remote: undefined,
    footprint: [],
  });
  const tags = why.find((p) => p.startsWith("- **Tags on a hit.**"));
  assert.ok(tags, why.join("\n"));
  assert.match(tags, /ts: 50\.0 ns without, 52\.0 ns with/);
  assert.match(tags, /in this run: ts 1\.02–1\.19×; the target's figure/);
  // Without paired samples, the ratio of the medians.
  const unpaired = speedTargets(figures(table, { pairedRatio: () => undefined }));
  assert.equal(find(unpaired, "memory hit with tags / without (native)").measured, "1.20×");
});

Deno.test("memory rows: each engine against the fastest peer of the row, at 1.5×", () => {
  const f = figures({
    "hit 2 int args [hit-only]": {
      "floor: Map<number>": 20,
      "warp cache() (native)": 30,
      "warp cache() (ts)": 61,
      "lru-cache": 120,
      "@neophi/sieve-cache": 90,
      memoizee: 600,
    },
    "miss + insert 2 int args": { "warp cache() (native)": 91, "lru-cache": 500 },
    "memory hit, tags off / on (native engine)": { "no tags": 50, "tags": 55 },
    "memory hit, tags off / on (ts engine)": { "no tags": 50, "tags": 55.5 },
  });
  assert.deepEqual(speedUpOverPeers(f, "hit 2 int args [hit-only]", "warp cache() (native)"), {
    name: "@neophi/sieve-cache",
    ratio: 3,
  });
  const ts = speedTargets(f);
  assertTarget(
    ts,
    "memory hit 2 int args [hit-only] (native): speed-up over the fastest peer",
    "3.00× (@neophi/sieve-cache)",
    true,
  );
  assertTarget(
    ts,
    "memory hit 2 int args [hit-only] (ts): speed-up over the fastest peer",
    "1.48× (@neophi/sieve-cache)",
    false,
  );
  assertTarget(ts, "memory hit, 2 int args (native): time / Map floor", "1.50×", true);
  assertTarget(ts, "miss + insert / hit, 2 int args (native)", "3.03×", false);
  assert.equal(find(ts, "memory hit with tags / without (native)").met, true);
  assert.equal(find(ts, "memory hit with tags / without (ts)").measured, "1.11×");
  assert.equal(find(ts, "memory hit with tags / without (ts)").met, false);
  // Not measured: reported as such, never as met.
  assert.equal(find(ts, "shared hits: 2 processes / 1 process throughput").met, undefined);
  const why = whyMissed(ts, { ns: f.ns, rawFfi: 6, remote: undefined, footprint: [] });
  assert.equal(why.length, 3, why.join("\n"));
  assert.match(why[0]!, /^- \*\*Miss \+ insert ≤ 3× a hit/);
  assert.match(why[1]!, /^- \*\*TypeScript engine rows/);
  assert.match(why[2]!, /native: 50\.0 ns without, 55\.0 ns with; ts: 50\.0 ns without/);
});

Deno.test("memory rows: ratios of samples taken in turns over the ratio of medians", () => {
  const g = "hit 2 int args [hit-only]";
  const table = {
    [g]: {
      "floor: Map<number>": 20,
      "warp cache() (native)": 30,
      "warp cache() (ts)": 61,
      "lru-cache": 120,
      "@neophi/sieve-cache": 90,
    },
    "miss + insert 2 int args": { "warp cache() (native)": 91, "lru-cache": 500 },
  };
  // Paired: against the native engine, lru-cache is the peer beaten by the least (its medians
  // say otherwise); the floor's paired ratio is the native row's time over the floor's.
  const paired: Record<string, number> = {
    "warp cache() miss + insert (native) / warp cache() hit (native)": 2.9,
    "lru-cache / warp cache() (native)": 1.6,
    "@neophi/sieve-cache / warp cache() (native)": 2.5,
    "warp cache() (native) / floor: Map<number>": 1.7,
  };
  const f = figures(table, {
    pairedRatio: (group, name, base) =>
      group === g || group === MISS_AGAINST_HIT ? paired[`${name} / ${base}`] : undefined,
  });
  assert.deepEqual(speedUpOverPeers(f, g, "warp cache() (native)"), {
    name: "lru-cache",
    ratio: 1.6,
  });
  // The TypeScript engine has no paired samples here: the ratio of the medians.
  assert.deepEqual(speedUpOverPeers(f, g, "warp cache() (ts)"), {
    name: "@neophi/sieve-cache",
    ratio: 90 / 61,
  });
  const ts = speedTargets(f);
  assertTarget(
    ts,
    `memory ${g} (native): speed-up over the fastest peer`,
    "1.60× (lru-cache)",
    true,
  );
  assertTarget(ts, "memory hit, 2 int args (native): time / Map floor", "1.70×", false);
  // The miss and the hit taken in turns in their own group, not the rows' medians (3.03×).
  assertTarget(ts, "miss + insert / hit, 2 int args (native)", "2.90×", true);
  // A group whose rows were not measured on an engine gets no target for it.
  assert.equal(speedUpOverPeers(f, g, "warp cache() (wasm)"), undefined);
});

Deno.test("shared, remote and footprint targets read the right rows", () => {
  const f = figures({
    "shared hit structured [hit-only]": { "warp shared": 300, "lmdb get": 1400 },
    "shared hit structured [zipf]": { "warp shared": 800, "lmdb get": 1500 },
  }, {
    memGroups: [],
    procs: {
      results: [
        { backend: "shared", processes: 1, opsPerSec: 10e6 },
        { backend: "shared", processes: 2, opsPerSec: 17e6 },
        { backend: "memory", processes: 2, opsPerSec: 99e6 },
      ],
    },
    remote: {
      rows: [
        { case: "remote hit (local miss, Redis get)", us: 80, cpuUs: 50 },
        { case: "BentoCache remote hit (L1 miss, Redis L2 get)", us: 100, cpuUs: 60 },
        { case: "floor: node-redis GET + JSON.parse", us: 70, cpuUs: 40 },
        { case: REMOTE_ROWS.oursIoredis, us: 75, cpuUs: 45 },
        { case: REMOTE_ROWS.floorIoredis, us: 50, cpuUs: 30 },
        { case: REMOTE_ROWS.warm, us: 8 },
        { case: REMOTE_ROWS.warmFloor, us: 2 },
        { case: REMOTE_ROWS.swept, us: 20 },
        { case: REMOTE_ROWS.sweptFloor, us: 6 },
      ],
    },
    footprint: [
      // The native growth (allocator and V8 page slack) does not count; the buffers do.
      {
        variant: "warp cache() (ts)",
        entries: 1e6,
        heapBytes: 20e6,
        nativeBytes: 40e6,
        externalBytes: 21e6,
      },
      {
        variant: "lru-cache",
        entries: 1e6,
        heapBytes: 43e6,
        nativeBytes: 9e6,
        externalBytes: 11e6,
      },
      {
        variant: "warp shared",
        entries: 1e6,
        heapBytes: 0,
        nativeBytes: 0,
        fileBytes: 97_000_000,
      },
    ],
  });
  const ts = speedTargets(f);
  assert.equal(find(ts, "shared hit structured [hit-only]: speed-up over lmdb get").met, true);
  assertTarget(ts, "shared hit structured [zipf]: speed-up over lmdb get", "1.88×", false);
  // Taken in turns in one process (bench/peers/lmdb_bench.ts --turns): the paired ratio.
  const paired = speedTargets({
    ...f,
    pairedRatio: (g, n, base) =>
      g === "shared hit structured [zipf]" && n === "lmdb get" && base === "warp shared"
        ? 2.05
        : undefined,
  });
  assertTarget(paired, "shared hit structured [zipf]: speed-up over lmdb get", "2.05×", true);
  assert.equal(find(ts, "shared hits: 2 processes / 1 process throughput").measured, "1.70×");
  assert.equal(find(ts, "shared hits: 2 processes / 1 process throughput").met, true);
  assertTarget(ts, "remote hit: speed-up over BentoCache (same redis-server)", "1.25×", false);
  assertTarget(
    ts,
    "1,000,000 entries on the TypeScript engine: heap + array buffers / lru-cache's",
    "0.76× (39.1 MB against 51.5 MB)",
    true,
  );
  assertTarget(
    ts,
    "1,000,000 shared entries of 16-byte keys and values: bytes of file per entry",
    "97.0 bytes (a file of 92.5 MB)",
    false,
  );
  const why = whyMissed(ts, {
    ns: f.ns,
    rawFfi: undefined,
    remote: f.remote,
    footprint: f.footprint,
  });
  assert.equal(why.length, 3, why.join("\n"));
  assert.match(why[1]!, /Ours 80 µs \(50 µs of CPU\), BentoCache 100 µs \(60 µs of CPU\)/);
  assert.match(why[1]!, /takes 70 µs \(40 µs of CPU\)/);
  assert.match(why[1]!, /1\.5× asks 67 µs/);
  // Over ioredis: 67 - 50 left for the cache, ours 25 over that floor.
  assert.match(why[1]!, /takes 50 µs \(30 µs of CPU\), which leaves 17 µs/);
  assert.match(why[1]!, /ours takes 25 µs more than that floor/);
  assert.match(why[1]!, /ours costs 6 µs more than its floor .* back to back, and 14 µs more/);
  assert.match(why[1]!, /14 µs more when 2 MiB of memory is swept between two calls/);
  // node-redis's floor (70) alone exceeds the 67 µs asked.
  assert.match(
    why[1]!,
    /takes 70 µs \(40 µs of CPU\) in the same rounds .*, 3 µs more than the target allows before anything a cache does\./,
  );
  // An ioredis floor above the time asked says by how much, not "leaves -3 µs".
  const slowIoredis = f.remote!.rows.map((r) =>
    r.case === REMOTE_ROWS.floorIoredis ? { ...r, us: 70 } : r
  );
  const whySlow = whyMissed(ts, { ...f, rawFfi: undefined, remote: { rows: slowIoredis } });
  assert.match(
    whySlow[1]!,
    /takes 70 µs \(30 µs of CPU\), 3 µs more than the target allows before anything a cache does on a remote hit/,
  );
  assert.doesNotMatch(whySlow[1]!, /leaves -/);
});
