/**
 * The simulator's part of `bench/RESULTS.md` (`scripts/bench_report.ts`): the miss-ratio
 * tables, ours beside libCacheSim's, the checks that the engines (and libCacheSim, for the
 * policies it shares with us) give the same counts, where each strategy wins and loses,
 * and the eviction targets.
 *
 * @module
 */

import {
  lcsStore,
  type SimReport,
  type SimResult,
  STRATEGIES,
  TABLE_SIZES_PCT,
  warpStore,
} from "../bench/sim.ts";
import { LIBCACHESIM_POLICIES } from "../bench/_libcachesim.ts";

/** The heading of the section. */
export const SIM_HEADING = "## Miss ratios (hit-ratio simulator)";

/** libCacheSim's policy of the same rules as one of our strategies. */
const SAME_AS: Record<string, string> = {
  SIEVE: "Sieve",
  LRU: "LRU",
  FIFO: "FIFO",
  "S3-FIFO": "S3FIFO",
  ARC: "ARC",
};

/** The goal of the eviction issue: the best of ours at most this much above libCacheSim's. */
export const GOAL_POINTS = 0.2;

/** A target row of the report. */
export interface SimTarget {
  what: string;
  target: string;
  measured: string;
  met: boolean | undefined;
}

type Get = (trace: string, store: string, size: number) => SimResult | undefined;

function getter(sim: SimReport): Get {
  const index = new Map<string, SimResult>();
  for (const r of sim.results) index.set(`${r.trace}|${r.store}|${r.sizePct}`, r);
  return (trace, store, size) => index.get(`${trace}|${store}|${size}`);
}

function pct(v: number | undefined): string {
  return v === undefined ? "-" : `${(v * 100).toFixed(2)}%`;
}

function points(v: number): string {
  return `${v >= 0 ? "+" : "−"}${Math.abs(v * 100).toFixed(2)}`;
}

/** The best (lowest miss ratio) of `stores` at a cell, with the names that reach it. */
function best(
  get: Get,
  trace: string,
  size: number,
  stores: Array<[label: string, store: string]>,
): { ratio: number; names: string[] } | undefined {
  let low: SimResult | undefined;
  let names: string[] = [];
  for (const [label, store] of stores) {
    const r = get(trace, store, size);
    if (r === undefined) continue;
    if (low === undefined || r.misses < low.misses) {
      low = r;
      names = [label];
    } else if (r.misses === low.misses) names.push(label);
  }
  return low === undefined ? undefined : { ratio: low.missRatio, names };
}

/** A markdown table (the caller runs `deno fmt` on the file). */
function table(head: string[], rows: string[][], align?: string[]): string {
  const a = align ?? head.map((_, i) => (i < 2 ? "---" : "---:"));
  return [
    `| ${head.join(" | ")} |`,
    `| ${a.join(" | ")} |`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}

/** The engine whose figures the tables show: native when it ran. */
function shownEngine(sim: SimReport): "native" | "ts" {
  return sim.nativeSkipped === null ? "native" : "ts";
}

/** Replays where two stores that must agree gave different counts. */
function disagreements(sim: SimReport, get: Get): { engines: string[]; lcs: string[] } {
  const engines: string[] = [];
  const lcs: string[] = [];
  for (const t of sim.traces) {
    for (const r of sim.results.filter((x) => x.trace === t.name)) {
      const m = /^warp (.+) \(ts\)$/.exec(r.store);
      if (m && sim.nativeSkipped === null) {
        const n = get(t.name, warpStore(m[1]!, "native"), r.sizePct);
        if (n && n.misses !== r.misses) {
          engines.push(`${m[1]} on ${t.name} at ${r.sizePct}%: ${n.misses} native, ${r.misses} ts`);
        }
      }
      const own = /^warp (.+) \((\w+)\)$/.exec(r.store);
      const same = own && SAME_AS[own[1]!];
      if (same && sim.libCacheSim !== null) {
        const l = get(t.name, lcsStore(same), r.sizePct);
        if (l && l.misses !== r.misses) {
          lcs.push(
            `${r.store} on ${t.name} at ${r.sizePct}%: ${r.misses}, libCacheSim ${l.misses}`,
          );
        }
      }
    }
  }
  return { engines, lcs };
}

/** The eviction targets, for the targets table of the report. */
export function simTargets(sim: SimReport): SimTarget[] {
  const get = getter(sim);
  const engine = shownEngine(sim);
  const ours = STRATEGIES.map(([n]): [string, string] => [n, warpStore(n, engine)]);
  const theirs = LIBCACHESIM_POLICIES.map((p): [string, string] => [p, lcsStore(p)]);
  const out: SimTarget[] = [];
  if (sim.libCacheSim === null) {
    out.push({
      what: "best of our strategies ≤ best of libCacheSim's seven + 0.2 points",
      target: `≤ ${GOAL_POINTS} points`,
      measured: `not measured (${sim.libCacheSimSkipped})`,
      met: undefined,
    });
    return out;
  }
  let worst = -Infinity;
  let worstAt = "";
  let tinyWorse = 0;
  let tinyCells = 0;
  for (const t of sim.traces) {
    for (const size of TABLE_SIZES_PCT) {
      const o = best(get, t.name, size, ours);
      const l = best(get, t.name, size, theirs);
      if (o === undefined || l === undefined) continue;
      const gap = o.ratio - l.ratio;
      if (gap > worst) {
        worst = gap;
        worstAt = `${t.name} at ${size}%`;
      }
      const w = get(t.name, warpStore("W-TinyLFU", engine), size);
      const lw = get(t.name, lcsStore("WTinyLFU"), size);
      if (w && lw) {
        tinyCells++;
        if (w.misses > lw.misses) tinyWorse++;
      }
    }
  }
  out.push({
    what: "best of our strategies ≤ best of libCacheSim's seven + 0.2 points (1% and 10%)",
    target: `≤ ${GOAL_POINTS} points`,
    measured: `worst ${(worst * 100).toFixed(2)} points (${worstAt})`,
    met: worst <= GOAL_POINTS / 100,
  });
  out.push({
    what: "W-TinyLFU misses no more than libCacheSim's WTinyLFU (1% and 10%)",
    target: "every cell",
    measured: `${tinyCells - tinyWorse} of ${tinyCells} cells`,
    met: tinyWorse === 0,
  });
  const { engines, lcs } = disagreements(sim, get);
  out.push({
    what: "SIEVE, LRU, FIFO, S3-FIFO, ARC: libCacheSim's miss counts exactly; both engines alike",
    target: "every replay",
    measured: engines.length + lcs.length === 0
      ? "every replay"
      : `${engines.length + lcs.length} differ`,
    met: engines.length + lcs.length === 0,
  });
  return out;
}

/** The section's lines. */
export function simSection(sim: SimReport): string[] {
  const get = getter(sim);
  const engine = shownEngine(sim);
  const md: string[] = [SIM_HEADING, ""];
  const { engines, lcs } = disagreements(sim, get);
  md.push(
    `\`bench/sim.ts\` replays ${
      sim.requests.toLocaleString("en-US")
    } requests per trace through the real stores (a miss inserts the key), and the same ` +
      "traces through libCacheSim's policies with their default parameters " +
      (sim.libCacheSim === null
        ? `(libCacheSim left out: ${sim.libCacheSimSkipped}). `
        : `(PyPI \`libcachesim\` ${sim.libCacheSim}). `) +
      "Cache sizes are a share of each trace's distinct keys. The tables show the " +
      `${engine === "native" ? "native" : "TypeScript"} engine. ` +
      (sim.nativeSkipped === null
        ? engines.length === 0
          ? "The TypeScript engine gave the same miss count on every replay. "
          : `The engines differ on ${engines.length} replays: ${engines.slice(0, 5).join("; ")}. `
        : `The native engine did not run: ${sim.nativeSkipped}. `) +
      (sim.libCacheSim === null
        ? ""
        : lcs.length === 0
        ? "SIEVE, LRU, FIFO, S3-FIFO and ARC (memory, both engines, and the shared SIEVE) " +
          "gave libCacheSim's Sieve, LRU, FIFO, S3FIFO and ARC miss counts exactly, on every " +
          "replay."
        : `${lcs.length} replays differ from libCacheSim: ${lcs.slice(0, 5).join("; ")}.`),
  );
  md.push("");
  md.push(
    table(
      ["trace", "distinct keys"],
      sim.traces.map((t) => [t.name, t.distinct.toLocaleString("en-US")]),
      ["---", "---:"],
    ),
  );
  md.push("");
  const ours = STRATEGIES.map(([n]): [string, string] => [n, warpStore(n, engine)]);
  const theirs = LIBCACHESIM_POLICIES.map((p): [string, string] => [p, lcsStore(p)]);
  const shared = sim.sharedSkipped === null ? [warpStore("SIEVE", "shared")] : [];
  const rows: string[][] = [];
  const lrows: string[][] = [];
  for (const t of sim.traces) {
    for (const size of TABLE_SIZES_PCT) {
      const cell = (s: string): string => pct(get(t.name, s, size)?.missRatio);
      const o = best(get, t.name, size, ours);
      const l = best(get, t.name, size, theirs);
      rows.push([
        t.name,
        `${size}%`,
        ...ours.map(([, s]) => cell(s)),
        ...shared.map(cell),
        o ? `${o.names.join(", ")}` : "-",
      ]);
      if (sim.libCacheSim !== null) {
        lrows.push([
          t.name,
          `${size}%`,
          ...theirs.map(([, s]) => cell(s)),
          l ? l.names.join(", ") : "-",
          o && l ? points(o.ratio - l.ratio) : "-",
        ]);
      }
    }
  }
  md.push(
    `Our strategies (memory backend, ${engine} engine${
      shared.length ? "; and the shared backend's SIEVE" : ""
    }):`,
  );
  md.push("");
  md.push(
    table(
      ["trace", "size", ...ours.map(([n]) => n), ...shared.map(() => "SIEVE (shared)"), "best"],
      rows,
    ),
  );
  md.push("");
  if (sim.libCacheSim !== null) {
    md.push(
      "libCacheSim's seven on the same traces; the last column is the best of ours minus the " +
        `best of these, in points of miss ratio (the goal: at most +${GOAL_POINTS}):`,
    );
    md.push("");
    md.push(
      table(["trace", "size", ...theirs.map(([n]) => n), "best", "ours − best"], lrows),
    );
    md.push("");
  }
  md.push(
    "Where each of our strategies wins and loses (1% and 10%; within 0.2 points of the best of ours counts as a win):",
  );
  md.push("");
  const wins: string[][] = [];
  for (const [name, store] of ours) {
    const won: string[] = [];
    const lost: string[] = [];
    for (const t of sim.traces) {
      for (const size of TABLE_SIZES_PCT) {
        const r = get(t.name, store, size);
        const o = best(get, t.name, size, ours);
        if (!r || !o) continue;
        const behind = r.missRatio - o.ratio;
        if (behind <= 0.002) won.push(`${t.name} ${size}%`);
        else if (behind >= 0.05) lost.push(`${t.name} ${size}% (${points(behind)})`);
      }
    }
    const cells = sim.traces.length * TABLE_SIZES_PCT.length;
    const lostText = lost.length > cells / 2
      ? `${lost.length} of ${cells} cells: all but ${
        sim.traces.flatMap((t) => TABLE_SIZES_PCT.map((z) => `${t.name} ${z}%`))
          .filter((c) => !lost.some((l) => l.startsWith(`${c} `))).join(", ")
      }`
      : lost.join(", ") || "-";
    wins.push([name, won.join(", ") || "-", lostText]);
  }
  md.push(
    table(["strategy", "best of ours on", "5 points or more behind the best of ours on"], wins, [
      "---",
      "---",
      "---",
    ]),
  );
  md.push("");
  return md;
}
