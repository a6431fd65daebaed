/**
 * `deno task bench`: runs every benchmark of `bench/` and writes `bench/RESULTS.md` and
 * its chart `bench/results.svg` (vega-lite, rendered headless to SVG).
 *
 * 1. builds the native library (incremental `cargo build --release`; `--no-build` skips);
 * 2. `bench/memory_bench.ts --turns` (each group's contenders timed in turns in one process)
 *    and `deno bench --json` over `bench/shared_bench.ts`, `--runs` times (3) with the
 *    native engine; `bench/memory_bench.ts --turns` once more a run with the TypeScript
 *    engine (the peers beside it again);
 * 3. `bench/peers/lmdb_bench.ts` (`npm:lmdb`) `--runs` times, each in a process of its own,
 *    and as many times with `--turns` (its hits taken in turns with `warp shared`);
 * 4. the hit-ratio simulator (`bench/sim.ts`), the memory footprint
 *    (`bench/footprint.ts`), 1 against 2 processes (`bench/shared_procs.ts`), the remote
 *    tier against Redis on loopback (`bench/remote.ts`), the costs
 *    against the cache's size (`bench/scale.ts`, about 3 minutes);
 * 5. the report: ns per call (median of the runs' means), each as a ratio to the floor
 *    and to each peer, the targets of issue #4 met or missed, the miss-ratio table, the
 *    scale tables (their chart: `bench/scale.svg`).
 *
 * Cases that the build cannot run (shared backend not available, no native library) are
 * left out with a note in the report. A peer that fails is an error that ends the run,
 * naming the file and the benchmarks that failed, never a column missing from the report:
 * every bench file must run to the end with every benchmark passing, and every group must
 * have the peers listed in `REQUIRED_PEERS` (`_bench_runs.ts`). Raw outputs go to
 * `bench/.out/`.
 *
 * Usage: `deno run -A scripts/bench_report.ts [--runs=3] [--no-build] [--quick]
 * [--only scale|sim [--reuse]]` (`--quick`: 1 run, shorter simulator traces and the scale
 * step at 1k and 100k entries only, for trying the harness; `--only scale`: runs the
 * scale step alone and replaces the "Scale" section of the existing `bench/RESULTS.md`,
 * keeping the other sections as they are; `--only sim`: the same for the simulator and its
 * "Miss ratios" section; `--reuse`: takes the step's last output,
 * `bench/.out/scale.json.txt` or `sim.json.txt`, instead of running it, to rewrite the
 * section's text).
 *
 * @module
 */

import * as vega from "npm:vega@^6.4.0";
import { compile, type TopLevelSpec } from "npm:vega-lite@^6.5.0";
import { build } from "./build.ts";
import { BATCH } from "../bench/_workload.ts";
import { lcsStore, type SimReport, STRATEGIES, warpStore } from "../bench/sim.ts";
import type { Footprint } from "../bench/footprint.ts";
import type { ProcsReport } from "../bench/shared_procs.ts";
import type { RemoteReport } from "../bench/remote.ts";
import type { ScaleReport } from "../bench/scale.ts";
import { SCALE_HEADING, scaleFindings, scaleSection, scaleSpec } from "./_scale_report.ts";
import { SIM_HEADING, simSection, simTargets } from "./_sim_report.ts";
import { type BenchJson, checkedReport, missingPeers, tail } from "./_bench_runs.ts";
import {
  FLOOR,
  fmtRatio,
  mb,
  MEMORY_PEERS,
  MISS_AGAINST_HIT,
  rowRatio,
  speedTargets,
  SWEEP_TEXT,
  type Target,
} from "./_targets.ts";
import { whyMissed } from "./_why_missed.ts";

const root = new URL("../", import.meta.url).pathname;
const benchDir = `${root}bench/`;
const outDir = `${benchDir}.out/`;

const args = Deno.args;
const quick = args.includes("--quick");
const runsArg = args.find((a) => a.startsWith("--runs="));
const RUNS = runsArg ? Number(runsArg.slice(7)) : quick ? 1 : 3;
const onlyAt = args.findIndex((a) => a === "--only" || a.startsWith("--only="));
const only = onlyAt < 0
  ? undefined
  : args[onlyAt]!.startsWith("--only=")
  ? args[onlyAt]!.slice(7)
  : args[onlyAt + 1];
if (only !== undefined && only !== "scale" && only !== "sim") {
  throw new TypeError(
    `Cannot run the bench report: --only must be "scale" or "sim": received ${only}`,
  );
}

const notes: string[] = [];
/** Sections of `bench/RESULTS.md` written by hand or by another task, kept by every run. */
const KEPT_HEADINGS = [
  "## Where the time goes",
  "## The call path before and after the split",
];
const t0 = performance.now();

function log(msg: string): void {
  const s = ((performance.now() - t0) / 1000).toFixed(0).padStart(4);
  console.error(`[bench ${s}s] ${msg}`);
}

interface CmdResult {
  ok: boolean;
  stdout: string;
  stderr: string;
}

async function sh(
  cmd: string,
  cmdArgs: string[],
  opts: { cwd?: string; env?: Record<string, string> } = {},
): Promise<CmdResult> {
  // Deno's own commands load the benchmarks' lock file: their peers (vega, lru-cache...)
  // stay out of deno.lock, which `deno task test` loads (tests/lock_test.ts).
  if (cmd === Deno.execPath() && ["run", "bench", "eval"].includes(cmdArgs[0] ?? "")) {
    cmdArgs = [cmdArgs[0]!, `--lock=${root}bench/deno.lock`, ...cmdArgs.slice(1)];
  }
  try {
    const res = await new Deno.Command(cmd, {
      args: cmdArgs,
      cwd: opts.cwd ?? root,
      env: opts.env ?? {},
      stdout: "piped",
      stderr: "piped",
    }).output();
    return {
      ok: res.success,
      stdout: new TextDecoder().decode(res.stdout),
      stderr: new TextDecoder().decode(res.stderr),
    };
  } catch (e) {
    return { ok: false, stdout: "", stderr: e instanceof Error ? e.message : String(e) };
  }
}

// ---------------------------------------------------------------- deno bench output

/** ns per call by `group \0 name`, one array entry per run. */
const samples = new Map<string, number[]>();
const groupOrder: string[] = [];

function record(json: BenchJson, rename: (name: string) => string): void {
  for (const b of json.benches) {
    const ok = b.results[0]?.ok;
    if (!ok) continue;
    const group = b.group ?? "";
    if (!groupOrder.includes(group)) groupOrder.push(group);
    const key = `${group}\0${rename(b.name)}`;
    const list = samples.get(key) ?? [];
    list.push(ok.avg / BATCH);
    samples.set(key, list);
  }
}

/**
 * Runs one `deno bench --json` and records its figures.
 *
 * @throws {Error} If the run fails in any way (see `checkedReport` in `_bench_runs.ts`): a
 * peer that breaks stops the run instead of leaving a column out of the report. The
 * whole output is in `bench/.out/`.
 */
async function denoBench(
  label: string,
  benchArgs: string[],
  opts: { cwd?: string; env?: Record<string, string> },
  rename: (name: string) => string,
): Promise<void> {
  log(`deno bench: ${label}`);
  const res = await sh(Deno.execPath(), ["bench", "--json", ...benchArgs], opts);
  const slug = label.replace(/[^a-z0-9]+/gi, "_");
  await Deno.writeTextFile(`${outDir}${slug}.json.txt`, res.stdout);
  await Deno.writeTextFile(`${outDir}${slug}.err.txt`, res.stderr);
  record(checkedReport(label, benchArgs, res), rename);
}

/** The samples of each process that took its rows in turns (`bench/tags_bench.ts`,
 * `bench/memory_bench.ts --turns`): `{ [group]: { [name]: ns[] } }`, names as reported. The
 * k-th samples of two rows of a group were taken one after the other. */
const turnRuns: Array<Record<string, Record<string, number[]>>> = [];

/**
 * Runs a script that takes its rows in turns and prints `{ [group]: { [name]: ns[] } }`, and
 * records its samples (each a figure of its row, as the runs of `denoBench` are).
 *
 * @throws {Error} If the script fails (its output is in `bench/.out/`).
 */
async function turnsBench(
  label: string,
  scriptArgs: string[],
  engine: string,
  rename: (name: string) => string,
): Promise<void> {
  log(`deno run: ${label}`);
  const res = await sh(Deno.execPath(), ["run", "-A", ...scriptArgs], {
    env: { WARP_CACHE_ENGINE: engine },
  });
  const slug = label.replace(/[^a-z0-9]+/gi, "_");
  await Deno.writeTextFile(`${outDir}${slug}.json.txt`, res.stdout);
  await Deno.writeTextFile(`${outDir}${slug}.err.txt`, res.stderr);
  if (!res.ok) {
    throw new Error(`${scriptArgs.join(" ")} (${label}) failed: ${tail(res.stderr)}`);
  }
  const json = JSON.parse(res.stdout) as Record<string, Record<string, number[]>>;
  const run: Record<string, Record<string, number[]>> = {};
  for (const [group, rows] of Object.entries(json)) {
    if (!groupOrder.includes(group)) groupOrder.push(group);
    run[group] = {};
    for (const [raw, xs] of Object.entries(rows)) {
      const name = rename(raw);
      run[group][name] = xs;
      const key = `${group}\0${name}`;
      samples.set(key, [...(samples.get(key) ?? []), ...xs]);
    }
  }
  turnRuns.push(run);
}

/** The ratios of `name`'s k-th sample to `base`'s in `group`, of one process that took
 * them in turns (none where it did not take both). */
function ratiosOf(
  run: Record<string, Record<string, number[]>>,
  group: string,
  name: string,
  base: string,
): number[] {
  const xs = run[group]?.[name];
  const bs = run[group]?.[base];
  if (xs === undefined || bs === undefined) return [];
  const ratios: number[] = [];
  for (let k = 0; k < Math.min(xs.length, bs.length); k++) ratios.push(xs[k]! / bs[k]!);
  return ratios;
}

/**
 * The median, over the samples of every process that took `name` and `base` of `group` in
 * turns, of the ratio of `name`'s k-th sample to `base`'s: `undefined` where none did.
 */
function pairedRatio(group: string, name: string, base: string): number | undefined {
  const ratios = turnRuns.flatMap((run) => ratiosOf(run, group, name, base));
  return ratios.length ? median(ratios) : undefined;
}

/** {@linkcode pairedRatio} of each process apart: the median of its own samples' ratios, in
 * the order the processes ran (those that did not take both rows left out). */
function pairedRatiosByRun(group: string, name: string, base: string): number[] {
  return turnRuns.map((run) => ratiosOf(run, group, name, base)).filter((r) => r.length > 0)
    .map(median);
}

/** @throws {Error} If a group lacks a peer of `REQUIRED_PEERS` (`_bench_runs.ts`). */
function requirePeers(): void {
  const missing = missingPeers(groupOrder, (g, name) => ns(g, name) !== undefined);
  if (missing.length > 0) {
    throw new Error(
      `Cannot finish the bench run: peers missing from the results: ${missing.join("; ")}`,
    );
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

function ns(group: string, name: string): number | undefined {
  const list = samples.get(`${group}\0${name}`);
  return list && list.length ? median(list) : undefined;
}

// ---------------------------------------------------------------- machine and versions

async function machine(): Promise<Array<[string, string]>> {
  const rows: Array<[string, string]> = [];
  let cpu = "unknown";
  try {
    const info = await Deno.readTextFile("/proc/cpuinfo");
    cpu = /model name\s*:\s*(.+)/.exec(info)?.[1] ?? cpu;
  } catch {
    // not Linux
  }
  rows.push(["CPU", `${cpu}, ${navigator.hardwareConcurrency} logical cores`]);
  rows.push(["OS", `${Deno.build.os} ${Deno.build.arch} (${Deno.osRelease()})`]);
  rows.push(["Memory", `${(Deno.systemMemoryInfo().total / 2 ** 30).toFixed(1)} GiB`]);
  rows.push(["Load average at start", Deno.loadavg().map((x) => x.toFixed(2)).join(", ")]);
  rows.push([
    "Deno",
    `${Deno.version.deno} (V8 ${Deno.version.v8}, TypeScript ${Deno.version.typescript})`,
  ]);
  const rustc = await sh("rustc", ["--version"]);
  rows.push(["rustc", rustc.ok ? rustc.stdout.trim() : "not found"]);
  const git = await sh("git", ["rev-parse", "--short", "HEAD"]);
  const dirty = await sh("git", ["status", "--porcelain", "--", "src", "rust/src", "mod.ts"]);
  rows.push([
    "@warp/cache",
    `${git.ok ? git.stdout.trim() : "?"}${
      dirty.ok && dirty.stdout.trim() ? " + uncommitted changes" : ""
    }`,
  ]);
  // Peer versions, as resolved in deno.lock and bench/peers/node_modules.
  try {
    const lock = JSON.parse(await Deno.readTextFile(`${root}deno.lock`)) as {
      specifiers?: Record<string, string>;
    };
    const wanted = [
      "lru-cache",
      "micro-memoize",
      "memoizee",
      "p-memoize",
      "@neophi/sieve-cache",
      "lmdb",
      "vega",
      "vega-lite",
    ];
    const found: string[] = [];
    for (const [spec, version] of Object.entries(lock.specifiers ?? {})) {
      const m = /^npm:(@?[^@]+)@/.exec(spec);
      if (m && wanted.includes(m[1]!)) found.push(`${m[1]} ${version}`);
    }
    rows.push(["npm peers", found.sort().join(", ")]);
  } catch {
    // no lock file
  }
  return rows;
}

// ---------------------------------------------------------------- formatting

function fmtNs(x: number | undefined): string {
  if (x === undefined) return "-";
  if (x >= 100_000) return `${(x / 1000).toFixed(0)} µs`;
  if (x >= 10_000) return `${(x / 1000).toFixed(1)} µs`;
  if (x >= 100) return x.toFixed(0);
  return x.toFixed(1);
}

function table(head: string[], rows: string[][], align?: string[]): string {
  const sep = align ?? head.map((_, i) => (i === 0 ? "---" : "---:"));
  return [
    `| ${head.join(" | ")} |`,
    `|${sep.join("|")}|`,
    ...rows.map((r) => `| ${r.join(" | ")} |`),
  ].join("\n");
}

// ---------------------------------------------------------------- run everything

await Deno.mkdir(outDir, { recursive: true });

let native = true;
if (!args.includes("--no-build")) {
  log("cargo build --release");
  try {
    await build();
  } catch (e) {
    native = false;
    notes.push(`The native library was not built (${e instanceof Error ? e.message : e}).`);
  }
}
const probe = await sh(Deno.execPath(), [
  "eval",
  "import { memoryEngine } from './src/store/engine.ts'; console.log(memoryEngine());",
]);
if (probe.stdout.trim() !== "native") {
  native = false;
  notes.push("The native library does not load: `cache()` ran on the TypeScript engine only.");
}

/**
 * Runs `bench/scale.ts` (with `--reuse`: reads its last output from `bench/.out/`
 * instead); `undefined` (with a note) when it fails.
 */
async function scaleStep(): Promise<ScaleReport | undefined> {
  if (args.includes("--reuse")) {
    log("scale: reusing bench/.out/scale.json.txt");
    return JSON.parse(await Deno.readTextFile(`${outDir}scale.json.txt`)) as ScaleReport;
  }
  log(`scale (bench/scale.ts${quick ? " --quick" : ""})`);
  const res = await sh(Deno.execPath(), [
    "run",
    "-A",
    "bench/scale.ts",
    "--json",
    ...(quick ? ["--quick"] : []),
  ]);
  await Deno.writeTextFile(`${outDir}scale.json.txt`, res.stdout);
  await Deno.writeTextFile(`${outDir}scale.err.txt`, res.stderr);
  if (res.ok) return JSON.parse(res.stdout) as ScaleReport;
  notes.push(`The scale script failed: ${tail(res.stderr)}`);
  return undefined;
}

/** Writes `bench/scale.svg` from a scale report. */
async function writeScaleChart(report: ScaleReport): Promise<void> {
  const view = new vega.View(vega.parse(compile(scaleSpec(report)).spec), { renderer: "none" });
  await Deno.writeTextFile(`${benchDir}scale.svg`, await view.toSVG());
  view.finalize();
}

/** Runs the simulator (or, with `--reuse`, reads its last output); `undefined` and a note
 * when it fails. */
async function simStep(): Promise<SimReport | undefined> {
  if (args.includes("--reuse") && only === "sim") {
    return JSON.parse(await Deno.readTextFile(`${outDir}sim.json.txt`)) as SimReport;
  }
  log("hit-ratio simulator");
  const res = await sh(Deno.execPath(), [
    "run",
    "-A",
    "bench/sim.ts",
    "--json",
    ...(quick ? ["--requests=200000"] : []),
  ]);
  await Deno.writeTextFile(`${outDir}sim.json.txt`, res.stdout);
  await Deno.writeTextFile(`${outDir}sim.err.txt`, res.stderr);
  if (res.ok) return JSON.parse(res.stdout) as SimReport;
  notes.push(`The simulator failed: ${tail(res.stderr)}`);
  return undefined;
}

/** Replaces the section under `heading` of `bench/RESULTS.md` with `section`. */
async function replaceSection(heading: string, section: string[]): Promise<void> {
  const old = await Deno.readTextFile(`${benchDir}RESULTS.md`);
  const lines = old.replace(/\n+$/, "").split("\n");
  const from = lines.indexOf(heading);
  let to = from < 0 ? lines.length : lines.findIndex((l, i) => i > from && /^## /.test(l));
  if (to < 0) to = lines.length;
  const kept = from < 0 ? [...lines, ""] : lines.slice(0, from);
  await Deno.writeTextFile(
    `${benchDir}RESULTS.md`,
    [...kept, ...section, ...lines.slice(to)].join("\n") + "\n",
  );
}

/**
 * The hand-written sections of `bench/RESULTS.md` that a run keeps as they are: the
 * profiles ("Where the time goes") and the table of `deno task bench:split`.
 */
async function keptSections(): Promise<string[]> {
  let old: string[];
  try {
    old = (await Deno.readTextFile(`${benchDir}RESULTS.md`)).replace(/\n+$/, "").split("\n");
  } catch {
    return [];
  }
  const out: string[] = [];
  for (const heading of KEPT_HEADINGS) {
    const from = old.indexOf(heading);
    if (from < 0) continue;
    let to = old.findIndex((l, i) => i > from && /^## /.test(l));
    if (to < 0) to = old.length;
    out.push(...old.slice(from, to), "");
  }
  return out;
}

if (only === "sim") {
  const report = await simStep();
  if (report === undefined) throw new Error(notes.join("\n"));
  await replaceSection(SIM_HEADING, simSection(report));
  await sh(Deno.execPath(), ["fmt", "bench/RESULTS.md"]);
  log("replaced the Miss ratios section of bench/RESULTS.md");
  Deno.exit(0);
}

if (only === "scale") {
  const report = await scaleStep();
  if (report === undefined) throw new Error(notes.join("\n"));
  await replaceSection(SCALE_HEADING, scaleSection(report, scaleFindings(report)));
  await writeScaleChart(report);
  await sh(Deno.execPath(), ["fmt", "bench/RESULTS.md", "bench/scale.svg"]);
  log("replaced the Scale section of bench/RESULTS.md; wrote bench/scale.svg");
  Deno.exit(0);
}

const machineRows = await machine();
const engine = native ? "native" : "ts";
// `warp cache()`, and `warp cache() s3fifo` (any strategy), get the engine in their name.
const renameWarp = (tag: string) => (name: string): string =>
  name.startsWith("warp cache()") ? `${name} (${tag})` : name;

// One process per file and per kind of contender: Deno KV's SQLite threads and one
// file's heap would otherwise weigh on the figures of the next contender (measured: the
// shared hit read 226 ns beside Deno KV, 140-160 ns alone).
for (let r = 1; r <= RUNS; r++) {
  await turnsBench(
    `memory run ${r}`,
    ["bench/memory_bench.ts", "--turns"],
    engine,
    renameWarp(engine),
  );
  await denoBench(
    `shared run ${r}`,
    ["-A", "--filter", "warp", "bench/shared_bench.ts"],
    { env: { WARP_CACHE_ENGINE: engine } },
    renameWarp(engine),
  );
  await denoBench(
    `Deno KV run ${r}`,
    ["-A", "--unstable-kv", "--filter", "Deno KV", "bench/shared_bench.ts"],
    { env: { WARP_CACHE_ENGINE: engine } },
    renameWarp(engine),
  );
  // Two processes a run: a tag check's cost is a few ns, and each process is one draw of V8's
  // inlining decisions (notes/native_hit.md).
  for (const p of [1, 2]) {
    await turnsBench(`tags run ${r}.${p}`, ["bench/tags_bench.ts"], engine, (n) => n);
    if (native) {
      await turnsBench(`tags ts engine run ${r}.${p}`, ["bench/tags_bench.ts"], "ts", (n) => n);
    }
  }
  // The peers again beside the TypeScript engine, so that its ratios are paired too.
  if (native) {
    await turnsBench(
      `memory ts engine run ${r}`,
      ["bench/memory_bench.ts", "--turns"],
      "ts",
      renameWarp("ts"),
    );
  }
}

// lmdb: `npm:lmdb`, in deno bench invocations of its own; then its hits in turns with
// `warp shared` in one process, for the shared targets' paired ratios.
for (let r = 1; r <= RUNS; r++) {
  await denoBench("lmdb run " + r, ["-A", "bench/peers/lmdb_bench.ts"], {}, (n) => n);
  await turnsBench(
    `lmdb turns run ${r}`,
    ["bench/peers/lmdb_bench.ts", "--turns"],
    engine,
    (n) => n,
  );
}
requirePeers();

const sim = await simStep();

log("memory footprint");
const fpRes = await sh(Deno.execPath(), ["run", "-A", "bench/footprint.ts", "--json"]);
await Deno.writeTextFile(`${outDir}footprint.json.txt`, fpRes.stdout);
let footprint: Footprint[] = [];
if (fpRes.ok) footprint = JSON.parse(fpRes.stdout) as Footprint[];
else notes.push(`The footprint script failed: ${tail(fpRes.stderr)}`);

log("1 against 2 processes");
const prRes = await sh(Deno.execPath(), ["run", "-A", "bench/shared_procs.ts", "--json"]);
await Deno.writeTextFile(`${outDir}shared_procs.json.txt`, prRes.stdout);
let procs: ProcsReport | undefined;
if (prRes.ok) procs = JSON.parse(prRes.stdout) as ProcsReport;
else notes.push(`The processes script failed: ${tail(prRes.stderr)}`);

log("remote tier against Redis on loopback");
const rmRes = await sh(Deno.execPath(), ["run", "-A", "bench/remote.ts", "--json"]);
await Deno.writeTextFile(`${outDir}remote.json.txt`, rmRes.stdout);
let remote: RemoteReport | undefined;
if (rmRes.ok) remote = JSON.parse(rmRes.stdout.trim().split("\n").at(-1)!) as RemoteReport;
else {notes.push(
    `The remote-tier script failed (is redis-server installed?): ${tail(rmRes.stderr)}`,
  );}

const scaleReport = await scaleStep();

const sharedSkipped = sim?.sharedSkipped ?? procs?.sharedSkipped ?? null;
if (sharedSkipped !== null) {
  notes.push(
    `The shared backend is not available in this build, so its cases were skipped: ${sharedSkipped}`,
  );
}

// ---------------------------------------------------------------- report

const W = `warp cache() (${engine})`;
const md: string[] = [];
md.push("# @warp/cache benchmark results");
md.push("");
md.push(
  `Written by \`deno task bench\` (\`scripts/bench_report.ts\`) on ${
    new Date().toISOString().slice(0, 16).replace("T", " ")
  } UTC. ` +
    `Times are ns per call. The memory rows (\`bench/memory_bench.ts --turns\`) are taken in turns: in each process, short samples of each contender of a row, one after the other, the first of each round moving on by one; a figure is the median of its samples (${RUNS} process(es) an engine; the peers run beside each engine), and a ratio of two contenders of a row (the tables of ratios, the targets) the median of the ratios of their samples taken one after the other. Each \`Deno.bench\` iteration of the other files makes ${BATCH} calls, and each of their figures is the median over ${RUNS} run(s) of the mean time per iteration, divided by ${BATCH}. ` +
    "Ratios compare figures of the same `deno task bench` run; they are not asserted by any test. " +
    "What each case does, and how the peers are configured, is in the header of its file in `bench/`.",
);
md.push("");
md.push("![throughput and miss ratios](results.svg)");
md.push("");
md.push("## Machine and versions");
md.push("");
md.push(table(["", ""], machineRows, ["---", "---"]));
md.push("");
if (notes.length) {
  md.push("## Notes on this run");
  md.push("");
  for (const n of notes) md.push(`- ${n}`);
  md.push("");
}

const ratio = (a: number | undefined, b: number | undefined): number | undefined =>
  a === undefined || b === undefined ? undefined : a / b;
/** The run's figures, for `rowRatio`: paired where taken in turns, else the medians. */
const figures = { ns, pairedRatio };

// The memory groups of `bench/memory_bench.ts` (not its floors, nor the other files' groups).
const memGroups = groupOrder.filter((g) =>
  !g.startsWith("shared ") && g !== "raw FFI no-op" && !g.startsWith("floor: ") &&
  g !== MISS_AGAINST_HIT &&
  !g.includes("tags off / on")
);

// --- targets: the speed and memory targets (`_targets.ts`), then the eviction ones
const targets: Target[] = speedTargets({
  ns,
  pairedRatio,
  memGroups,
  engines: native ? ["native", "ts"] : ["ts"],
  footprint,
  procs,
  remote,
});
if (sim) targets.push(...simTargets(sim));
md.push("## Targets");
md.push("");
md.push(
  "Each target is a ratio of two figures of this run (a busy machine slows both sides), " +
    "checked here and never by a test. The memory rows compare `cache()` on each engine " +
    "with the fastest peer of the same row (the peer named); the eviction targets come from " +
    'the simulator ("Miss ratios").',
);
md.push("");
md.push(
  table(
    ["", "target", "measured", ""],
    targets.map((t) => [
      t.what,
      t.target,
      t.measured,
      t.met === undefined ? "n/a" : t.met ? "met" : "**missed**",
    ]),
    ["---", "---", "---", "---"],
  ),
);
md.push("");
const why = whyMissed(targets, {
  ns,
  pairedRatio,
  pairedRatiosByRun,
  rawFfi: ns("raw FFI no-op", "warp_abi_version()"),
  remote,
  footprint,
});
if (why.length > 0) {
  md.push("### Why the missed targets are missed");
  md.push("");
  md.push(...why);
  md.push("");
}

// --- memory backend tables
const memNames = [...new Set([FLOOR, W, "warp cache() (ts)", ...MEMORY_PEERS])]
  .filter((n) => memGroups.some((g) => ns(g, n) !== undefined));
md.push("## Memory backend against the peers");
md.push("");
md.push(
  "`hit-only`: Zipf 1.0 over 1,024 keys, all resident (every call a hit). `zipf`: Zipf 1.0 over " +
    "100,000 keys, every cache bounded to 10,000 entries (hits and misses mixed; the floor " +
    "evicts oldest-first). The floor is a hand-written `Map` memoize keyed by the key's " +
    "number; it does not pay for turning string or object arguments into a key. " +
    "`micro-memoize` searches an array linearly and is run on `hit-only` only (see " +
    "`bench/memory_bench.ts`).",
);
md.push("");
md.push("### ns per call");
md.push("");
md.push(
  table(["case", ...memNames], memGroups.map((g) => [g, ...memNames.map((n) => fmtNs(ns(g, n)))])),
);
md.push("");
md.push("### Ratio to the floor (time / floor's time; lower is better)");
md.push("");
md.push(
  table(
    ["case", ...memNames.slice(1)],
    memGroups.map((
      g,
    ) => [g, ...memNames.slice(1).map((n) => fmtRatio(rowRatio(figures, g, n, FLOOR)))]),
  ),
);
md.push("");
md.push(`### Speed-up of \`${W}\` over each contender (their time / ours; above 1× we are faster)`);
md.push("");
const others = memNames.filter((n) => n !== W);
md.push(
  table(
    ["case", ...others],
    memGroups.map((g) => [g, ...others.map((n) => fmtRatio(rowRatio(figures, g, n, W)))]),
  ),
);
md.push("");
const strategyNames = [
  W,
  `warp cache() s3fifo (${engine})`,
  `warp cache() wtinylfu (${engine})`,
  `warp cache() arc (${engine})`,
];
if (native) {
  strategyNames.push(
    "warp cache() (ts)",
    "warp cache() s3fifo (ts)",
    "warp cache() wtinylfu (ts)",
    "warp cache() arc (ts)",
  );
}
const strategyGroups = memGroups.filter((g) =>
  ns(g, `warp cache() s3fifo (${engine})`) !== undefined
);
if (strategyGroups.length > 0) {
  md.push("### Strategies: ns per call");
  md.push("");
  md.push(
    "`warp cache()` evicts by SIEVE (the default); the others by S3-FIFO, W-TinyLFU and " +
      "ARC (`strategy` option), on both engines.",
  );
  md.push("");
  md.push(
    table(
      ["case", ...strategyNames],
      strategyGroups.map((g) => [g, ...strategyNames.map((n) => fmtNs(ns(g, n)))]),
    ),
  );
  md.push("");
}
const ffi = ns("raw FFI no-op", "warp_abi_version()");
if (ffi !== undefined) {
  md.push(
    `A raw FFI call into the library (\`warp_abi_version()\`, no arguments) costs ${
      fmtNs(ffi)
    } ns.`,
  );
  md.push("");
}

// --- shared backend tables
const sharedGroups = groupOrder.filter((g) =>
  g.startsWith("shared ") && !g.includes("tags off / on")
);
const sharedNames = ["warp shared", "warp memory", "lmdb get", "lmdb get + put", "Deno KV (file)"]
  .filter((n) => sharedGroups.some((g) => ns(g, n) !== undefined));
md.push("## Shared backend against on-disk peers");
md.push("");
md.push(
  "Every contender is used as a memoizer (`get`, and on a miss compute and `set`). lmdb and " +
    "Deno KV never evict: on `zipf` they end up holding every key while the caches hold " +
    "10,000. The Deno KV file and the lmdb environment live in the system temp directory, the " +
    "shared cache in `/dev/shm`. lmdb (`npm:lmdb`, with its native addon) runs in a `deno " +
    "bench` invocation of its own in the same `deno task bench` (`bench/peers/lmdb_bench.ts`), " +
    "then with `--turns`: its hits taken in turns with `warp shared` in one process, whose " +
    "samples count in the figures too and give the ratios of the hit rows (of samples taken " +
    "one after the other).",
);
md.push("");
if (sharedGroups.length) {
  md.push("### ns per call");
  md.push("");
  md.push(
    table(
      ["case", ...sharedNames],
      sharedGroups.map((g) => [g, ...sharedNames.map((n) => fmtNs(ns(g, n)))]),
    ),
  );
  md.push("");
  md.push("### Speed-up of `warp shared` over each contender (their time / ours)");
  md.push("");
  const so = sharedNames.filter((n) => n !== "warp shared");
  md.push(
    table(
      ["case", ...so],
      sharedGroups.map((
        g,
      ) => [g, ...so.map((n) => fmtRatio(rowRatio(figures, g, n, "warp shared")))]),
    ),
  );
  md.push("");
}
if (procs) {
  md.push("### 1 process against 2 processes (hits on the `hit-only` stream)");
  md.push("");
  md.push(
    `Each process calls the cached function in a loop for ${
      procs.durationMs / 1000
    } s after a common start; each configuration runs 3 times, interleaved, and the median ` +
      "run is shown. " +
      "`memory` (each process its own cache, nothing shared) shows what the machine allows.",
  );
  md.push("");
  const rows: string[][] = [];
  for (const backend of ["shared", "memory"] as const) {
    const one = procs.results.find((r) => r.backend === backend && r.processes === 1);
    const two = procs.results.find((r) => r.backend === backend && r.processes === 2);
    if (!one || !two) continue;
    rows.push([
      backend,
      `${(one.opsPerSec / 1e6).toFixed(2)} M/s`,
      `${(two.opsPerSec / 1e6).toFixed(2)} M/s (${
        two.perProcess.map((x) => (x / 1e6).toFixed(2)).join(" + ")
      })`,
      fmtRatio(two.opsPerSec / one.opsPerSec),
    ]);
  }
  md.push(table(["backend", "1 process", "2 processes", "2 / 1"], rows));
  md.push("");
}

// --- remote tier
if (remote) {
  md.push("## Remote tier (Redis on loopback)");
  md.push("");
  md.push(
    "`bench/remote.ts`: `cache({ remote: await redisTier({ url }) })` against a `redis-server` " +
      "started on 127.0.0.1; each row is the median of its rounds of sequential awaited " +
      "calls. A remote hit is a local miss (a local tier of one entry) answered by Redis; the " +
      "remote hit rows (ours over node-redis and over ioredis, BentoCache's `getOrSet` with " +
      "its Redis L2 through ioredis, and the bare clients' `GET` + `JSON.parse`) run " +
      "interleaved, round by round, on the same server, with the CPU time of this process " +
      "per call beside the wall time. The in-memory rows time the same remote hit with no " +
      "socket (a storage answering from a `Map`) against an awaited `Map.get` + `JSON.parse`, " +
      `back to back (warm) and with ${SWEEP_TEXT} of memory swept between two calls, outside the timed ` +
      "part (each call then starts from cold CPU caches). A miss also computes, stores locally and writes through " +
      "in the background. The bus row is the time from a `cacheDelete` on one cache until " +
      `another cache of the same name has dropped its local copy (${remote.busSamples} deletes).`,
  );
  md.push("");
  md.push(
    table(
      ["case", "µs per call", "CPU µs per call"],
      [
        ...remote.rows.map((r) => [
          r.case,
          r.us.toFixed(2),
          r.cpuUs === undefined ? "" : r.cpuUs.toFixed(2),
        ]),
        [
          "invalidation bus, p50 / p99 (ms)",
          `${remote.busP50.toFixed(2)} / ${remote.busP99.toFixed(2)}`,
          "",
        ],
      ],
    ),
  );
  md.push("");
}

// --- tags
const tagGroups = groupOrder.filter((g) => g.includes("tags off / on"));
if (tagGroups.length > 0) {
  const names = ["no tags", "tags", "tags, after invalidations"];
  md.push("## Tags on a hit");
  md.push("");
  md.push(
    "`bench/tags_bench.ts`: the same hit (2 int args, 1,000 keys) of a cache without tags and " +
      "with `tags`, in short samples that take turns in one process " +
      `(${2 * RUNS} processes an engine); \`after invalidations\`: other tags are invalidated ` +
      "every 1,000 calls, so each entry checks its tags again once the clock moved (measured " +
      "after the other rows). ns per hit, the median of the samples; in parentheses the ratio " +
      "to `no tags`: for `tags`, the median of the ratios of samples taken one after the " +
      "other (the target's figure), else the ratio of the medians.",
  );
  md.push("");
  md.push(
    table(
      ["case", ...names],
      tagGroups.map((g) => [
        g,
        ...names.map((n) => {
          const v = ns(g, n);
          const r = n === "tags" ? rowRatio(figures, g, n, "no tags") : ratio(v, ns(g, "no tags"));
          return v === undefined ? "-" : `${fmtNs(v)} (${fmtRatio(r)})`;
        }),
      ]),
    ),
  );
  md.push("");
}

// --- footprint
if (footprint.length) {
  md.push("## Memory for 1,000,000 entries");
  md.push("");
  md.push(
    "Small int keys and values (the values are V8 small integers: they cost nothing beyond " +
      "their slot, so every byte here is the cache's own). Each variant is measured in " +
      `${
        footprint[0]?.totals?.length ?? 1
      } process(es) of its own, after a full GC before and after the fill: the one whose ` +
      "heap + native is the median is shown, every process's total in the last column. heap = " +
      "`heapUsed` growth; native = growth of `rss - heapTotal` (outside the V8 heap: the Rust " +
      "index, typed-array stores, mapped pages, allocator slack); external = growth of V8's " +
      "count of its `ArrayBuffer`s' memory (part of native). The shared variant uses 32-byte " +
      "key and value slots.",
  );
  md.push("");
  md.push(
    table(
      ["variant", "heap", "native", "external", "heap + native", "rss", "file", "each process"],
      footprint.map((f) => [
        f.variant + (f.error ? ` (failed: ${f.error.slice(0, 120)})` : ""),
        mb(f.heapBytes),
        mb(f.nativeBytes),
        mb(f.externalBytes ?? NaN),
        mb(f.heapBytes + f.nativeBytes),
        mb(f.rssBytes),
        f.fileBytes !== undefined ? mb(f.fileBytes) : "",
        (f.totals ?? []).map((t) => (t / 2 ** 20).toFixed(1)).join(", "),
      ]),
    ),
  );
  md.push("");
}

// --- hit ratios
if (sim) md.push(...simSection(sim));

if (scaleReport) md.push(...scaleSection(scaleReport, scaleFindings(scaleReport)));

md.push(...await keptSections());

await Deno.writeTextFile(`${benchDir}RESULTS.md`, md.join("\n"));
log("wrote bench/RESULTS.md");

// ---------------------------------------------------------------- chart

const bars: Array<{ case: string; contender: string; mcalls: number }> = [];
for (
  const g of [
    ...memGroups.filter((g) => g.endsWith("[hit-only]")),
    ...sharedGroups.filter((g) => g.includes("hit-only")),
  ]
) {
  for (const n of g.startsWith("shared ") ? sharedNames : memNames) {
    const v = ns(g, n);
    if (v !== undefined) {
      bars.push({ case: g.replace(" [hit-only]", ""), contender: n, mcalls: 1000 / v });
    }
  }
}
// The curves: our strategies on the engine of the tables, and libCacheSim's policies that
// are not ours (its Sieve, LRU, FIFO, S3FIFO and ARC give our counts).
const curveStores = new Set([
  ...STRATEGIES.map(([n]) => warpStore(n, sim?.nativeSkipped === null ? "native" : "ts")),
  ...["WTinyLFU", "TwoQ"].map(lcsStore),
]);
const curves = (sim?.results ?? []).filter((r) => curveStores.has(r.store)).map((r) => ({
  trace: r.trace,
  store: r.store,
  size: r.sizePct,
  miss: r.missRatio,
}));
const spec: TopLevelSpec = {
  $schema: "https://vega.github.io/schema/vega-lite/v6.json",
  background: "white",
  resolve: { scale: { color: "independent", strokeDash: "independent" } },
  config: { font: "sans-serif" },
  vconcat: [
    {
      title: "Throughput, hit-only stream (million calls per second, higher is better)",
      data: { values: bars },
      facet: {
        row: {
          field: "case",
          type: "nominal",
          title: null,
          header: { labelAngle: 0, labelAlign: "left" },
        },
      },
      spec: {
        width: 420,
        mark: "bar",
        encoding: {
          y: { field: "contender", type: "nominal", title: null, sort: null },
          x: { field: "mcalls", type: "quantitative", title: "M calls/s" },
          color: { field: "contender", type: "nominal", legend: null },
        },
      },
      resolve: { scale: { y: "independent" } },
    },
    {
      title: "Miss ratio against cache size (lower is better)",
      data: { values: curves },
      facet: { column: { field: "trace", type: "nominal", title: null } },
      spec: {
        width: 150,
        height: 150,
        mark: { type: "line", point: true },
        encoding: {
          x: {
            field: "size",
            type: "quantitative",
            scale: { type: "log" },
            axis: { values: [0.5, 1, 2, 5, 10, 20] },
            title: "cache size, % of distinct keys",
          },
          y: { field: "miss", type: "quantitative", axis: { format: "%" }, title: "miss ratio" },
          color: { field: "store", type: "nominal", title: "store" },
          strokeDash: { field: "store", type: "nominal" },
        },
      },
    },
  ],
};
const view = new vega.View(vega.parse(compile(spec).spec), { renderer: "none" });
await Deno.writeTextFile(`${benchDir}results.svg`, await view.toSVG());
view.finalize();
// Keep both files as `deno fmt --check` (part of `deno task check`) wants them.
if (scaleReport) await writeScaleChart(scaleReport);
await sh(Deno.execPath(), ["fmt", "bench/RESULTS.md", "bench/results.svg", "bench/scale.svg"]);
log(`wrote bench/results.svg${scaleReport ? " and bench/scale.svg" : ""}`);
