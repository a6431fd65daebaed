/**
 * Shared-hit throughput of 1 process against 2 processes reading the same shared cache.
 * Each process opens the cache (same `name` and `dir`), loads the 1,024 keys of the
 * `hit-only` stream, waits for a common start time, then calls the cached function in a
 * loop for a fixed time and reports its call count; each configuration runs 3 times,
 * interleaved, and the median is kept. As a reference for what the machine
 * allows, the same with the memory backend (each process its own cache, nothing shared).
 *
 * Run: `deno run -A bench/shared_procs.ts` (a table; `--json` for the report).
 *
 * @module
 */

import { cache } from "../mod.ts";
import {
  BENCH_LOCK_FLAG,
  intArgs,
  MASK,
  sharedDir,
  sharedUnavailable,
  STREAMS,
} from "./_workload.ts";

/** Measured time per run, ms. */
export const DURATION_MS = 1_500;
/** Runs of each configuration; the median is reported. */
export const REPEATS = 3;

/** Throughput of one configuration. */
export interface ProcsResult {
  backend: "shared" | "memory";
  processes: number;
  /** Calls per second, all processes together. */
  opsPerSec: number;
  /** Calls per second of each process. */
  perProcess: number[];
}

/** What `--json` prints. */
export interface ProcsReport {
  results: ProcsResult[];
  sharedSkipped: string | null;
  durationMs: number;
}

function child(backend: string, name: string, dir: string, startAt: number): void {
  const spec = STREAMS[0]!;
  const { a, b } = intArgs(spec);
  const fn = (x: number, y: number): number => x * 1000 + y;
  const f = backend === "shared"
    ? cache({ backend: "shared", name, dir, maxSize: spec.maxSize })(fn)
    : cache({ maxSize: spec.maxSize })(fn);
  let acc = 0;
  // Load and warm up (JIT) before the start.
  for (let r = 0; r < 20; r++) for (let j = 0; j <= MASK; j++) acc += f(a[j]!, b[j]!);
  while (Date.now() < startAt) { /* spin until the common start */ }
  const t0 = performance.now();
  const end = t0 + DURATION_MS;
  let ops = 0;
  let i = 0;
  let now = t0;
  while (now < end) {
    for (let n = 0; n < 1000; n++) {
      acc += f(a[i]!, b[i]!);
      i = (i + 1) & MASK;
    }
    ops += 1000;
    now = performance.now();
  }
  console.log(JSON.stringify({ ops, ms: now - t0, acc }));
}

async function run(
  backend: "shared" | "memory",
  processes: number,
  name: string,
  dir: string,
): Promise<ProcsResult> {
  const self = new URL(import.meta.url).pathname;
  const startAt = Date.now() + 2_000;
  const children = Array.from({ length: processes }, () =>
    new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", BENCH_LOCK_FLAG, self, "--child", backend, name, dir, String(startAt)],
      stdout: "piped",
      stderr: "piped",
    }).output());
  const perProcess: number[] = [];
  for (const res of await Promise.all(children)) {
    const text = new TextDecoder().decode(res.stdout).trim();
    if (!res.success) {
      throw new Error(`child failed: ${new TextDecoder().decode(res.stderr).slice(-500)}`);
    }
    const { ops, ms } = JSON.parse(text) as { ops: number; ms: number };
    perProcess.push(ops / (ms / 1000));
  }
  return {
    backend,
    processes,
    opsPerSec: perProcess.reduce((s, x) => s + x, 0),
    perProcess,
  };
}

/** Runs 1 and 2 processes, shared (when available) and memory. */
export async function measureProcs(): Promise<ProcsReport> {
  const sharedSkipped = sharedUnavailable();
  const results: ProcsResult[] = [];
  const backends: Array<"shared" | "memory"> = sharedSkipped === null
    ? ["shared", "memory"]
    : ["memory"];
  for (const backend of backends) {
    // 1 and 2 processes interleaved, REPEATS times each; the median run of each is kept,
    // so that a burst of load from elsewhere on the machine does not decide the ratio.
    const runs: Record<number, ProcsResult[]> = { 1: [], 2: [] };
    for (let r = 0; r < REPEATS; r++) {
      for (const processes of [1, 2]) {
        const dir = sharedDir();
        try {
          runs[processes]!.push(await run(backend, processes, `procs_${Deno.pid}`, dir));
        } finally {
          Deno.removeSync(dir, { recursive: true });
        }
      }
    }
    for (const processes of [1, 2]) {
      const sorted = runs[processes]!.sort((x, y) => x.opsPerSec - y.opsPerSec);
      results.push(sorted[sorted.length >> 1]!);
    }
  }
  return { results, sharedSkipped, durationMs: DURATION_MS };
}

if (import.meta.main) {
  if (Deno.args[0] === "--child") {
    const [, backend, name, dir, startAt] = Deno.args;
    child(backend!, name!, dir!, Number(startAt));
  } else {
    const report = await measureProcs();
    if (Deno.args.includes("--json")) console.log(JSON.stringify(report));
    else {
      if (report.sharedSkipped) console.log(`shared skipped: ${report.sharedSkipped}`);
      for (const r of report.results) {
        console.log(
          `${r.backend.padEnd(7)} ${r.processes} process(es): ` +
            `${(r.opsPerSec / 1e6).toFixed(2)} M calls/s ` +
            `(${r.perProcess.map((x) => (x / 1e6).toFixed(2)).join(" + ")})`,
        );
      }
    }
  }
}
