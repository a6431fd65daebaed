/**
 * lmdb (npm `lmdb`, a memory-mapped B-tree) as the on-disk peer of the shared backend:
 * the same groups and key streams as `bench/shared_bench.ts` (hits and miss + insert,
 * primitive and structured values), used as a memoizer: `get`, and on a miss compute and
 * `put`. lmdb never evicts, so on the `zipf` stream it ends up holding every key.
 *
 * `npm:lmdb@3.5.6` loads directly in Deno (its prebuilt native addon for this platform is
 * an optional dependency, which Deno installs, as it does `msgpackr-extract`, the native
 * string decoder that lmdb's msgpackr uses for structured values). Deno warns that the
 * packages' install scripts did not run: they only rebuild the addons when no prebuilt
 * one fits, which is not the case here. It runs in a `deno bench` invocation of its own
 * (`scripts/bench_report.ts`), as Deno KV does, so that neither weighs on the other:
 *
 * ```sh
 * deno bench -A bench/peers/lmdb_bench.ts
 * ```
 *
 * Miss + insert: writes are lmdb's asynchronous, batched `put`; each iteration waits for
 * its last `put` to commit.
 *
 * `deno run -A bench/peers/lmdb_bench.ts --turns` (also run by `deno task bench`) takes the
 * hit groups' `lmdb get` in turns with `warp shared`, the shared cache of
 * `bench/shared_bench.ts`, in this one process (`timeInTurns` in `_workload.ts`), and prints
 * `{ [group]: { [name]: ns[] } }`: the shared targets compare the two sample by sample (the
 * runs of separate processes moved that ratio from 1.58x to 2.30x between two runs).
 *
 * @module
 */

import { open } from "npm:lmdb@3.5.6";
import { cache } from "../../mod.ts";
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
  STREAMS,
  structured,
  timeInTurns,
  type TurnRow,
  valueOf,
} from "../_workload.ts";

type Db = ReturnType<typeof open<number | Row>>;

/** Keeps results alive so that the work is not optimised away. */
export let sink = 0;

/** Whether the hit groups are timed in turns beside our shared cache (`--turns`). */
const TURNS = Deno.args.includes("--turns");
const rows: TurnRow[] = [];

const dir = Deno.makeTempDirSync({ prefix: "warp_bench_lmdb_" });
const shmDir = TURNS ? sharedDir() : undefined;
// The databases are not closed on unload: closing them there crashed the process (SIGSEGV
// in lmdb's native teardown) before `deno bench --json` printed its report.
globalThis.addEventListener("unload", () => {
  for (const d of [dir, shmDir]) {
    try {
      if (d !== undefined) Deno.removeSync(d, { recursive: true });
    } catch {
      // ignore
    }
  }
});

let serial = 0;
function openDb(): Db {
  return open<number | Row>({ path: `${dir}/db${serial++}` });
}

/** A memoizer over lmdb: `get`, and on a miss compute and `put` (not awaited). */
function lmdbMemo(db: Db, fn: Fn): Fn {
  return (a: number, b: number): number | Row => {
    const got = db.get([a, b]);
    if (got !== undefined) return got;
    const v = fn(a, b);
    void db.put([a, b], v);
    return v;
  };
}

/** Rounds of samples in turns (`WARP_LMDB_SAMPLES`). */
const SAMPLES = Number(Deno.env.get("WARP_LMDB_SAMPLES") ?? "15");

const values: Array<[string, Fn]> = [["primitive", primitive], [
  "structured",
  structured,
]];

for (const spec of STREAMS) {
  const { a, b } = intArgs(spec);
  for (const [kind, fn] of values) {
    const db = openDb();
    // Load every key of the stream, committed, before measuring.
    for (let j = 0; j <= MASK; j++) {
      void db.put([a[j]!, b[j]!], fn(a[j]!, b[j]!));
    }
    await db.flushed;
    const f = lmdbMemo(db, fn);
    checkStream("lmdb get", f, a, b);
    const group = `shared hit ${kind} [${spec.label}]`;
    if (!TURNS) {
      Deno.bench({ group, name: "lmdb get", fn: overStream(f, a, b) });
      continue;
    }
    rows.push({ group, name: "lmdb get", slow: false, run: overStream(f, a, b) });
    const ours = cache({
      backend: "shared",
      name: `lmdb_turns_${Deno.pid}_${serial++}`,
      dir: shmDir!,
      maxSize: spec.maxSize,
    })(fn);
    checkStream("warp shared", ours, a, b);
    rows.push({ group, name: "warp shared", slow: false, run: overStream(ours, a, b) });
  }
}

if (TURNS) {
  console.log(JSON.stringify(await timeInTurns(rows, SAMPLES)));
} else {
  for (const [kind, fn] of values) {
    const db = openDb();
    const f = lmdbMemo(db, fn);
    let c = 0;
    Deno.bench({
      group: `shared miss + insert ${kind}`,
      name: "lmdb get + put",
      async fn(): Promise<void> {
        let acc = 0;
        for (let n = 0; n < BATCH; n++) {
          acc += valueOf(f(c % 1_000_000, Math.floor(c / 1_000_000)));
          c++;
        }
        await db.flushed;
        sink += acc;
      },
    });
  }
}
