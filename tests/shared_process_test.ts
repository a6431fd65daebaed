// The shared backend across processes and Workers: real `deno`
// child processes (Deno.execPath()) and a module Worker on the same cache file.
import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import { cache, type SharedCacheInfo } from "../mod.ts";
import {
  samples,
  SAMPLES_MAX_VALUE_SIZE,
  type StressReport,
  stressValue,
} from "./fixtures/shared_common.ts";
import { type ChildReport, runChild } from "./fixtures/run_child.ts";

/** Runs `body` with a fresh temporary directory, removed afterwards. */
async function withTempDir(body: (dir: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "warp_shared_proc_" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function sharedFn<R>(
  dir: string,
  name: string,
  f: (x: number) => R,
  maxSize = 16,
): ((x: number) => R) & { cacheInfo(): SharedCacheInfo; cacheClear(): void } {
  return cache({ backend: "shared", name, dir, maxSize })(f);
}

/**
 * `info` with the byte fields of a cache under the default budget (`maxSize` entries of
 * the largest size, `largest` chunks: 19 with the default maxKeySize and maxValueSize)
 * whose entries hold `chunks` chunks of 256 bytes each (0: small entries, which live in
 * their slots).
 */
function sized<T extends { maxSize: number; currentSize: number }>(
  info: T,
  largest = 19,
  chunks = 0,
): T & { bytes: number; maxBytes: number } {
  return {
    ...info,
    bytes: 256 * chunks * info.currentSize,
    maxBytes: 256 * largest * info.maxSize,
  };
}

Deno.test("cache() shared: an entry written by one process is a hit in another", async () => {
  await withTempDir(async (dir) => {
    const cmd = { mode: "calls", dir, name: "hits", maxSize: 16 };
    const first = await runChild("shared_child.ts", { ...cmd, keys: [1, 2, 3] });
    assert.equal(first.calls, 3, "the first process computes every key");
    assert.deepEqual(
      first.info,
      sized(
        {
          hits: 0,
          misses: 3,
          maxSize: 16,
          currentSize: 3,
          oversizeSkips: 0,
        },
        19,
        1,
      ), // values of about 40 bytes: a chunk each
    );

    const second = await runChild("shared_child.ts", { ...cmd, keys: [1, 2, 3, 4] });
    assert.notEqual(second.pid, first.pid);
    assert.equal(second.calls, 1, "the second process computes only key 4");
    assert.deepEqual(second.results, [
      { x: 1, square: 1, by: first.pid },
      { x: 2, square: 4, by: first.pid },
      { x: 3, square: 9, by: first.pid },
      { x: 4, square: 16, by: second.pid },
    ]);
    assert.deepEqual(
      second.info,
      sized(
        {
          hits: 3,
          misses: 4,
          maxSize: 16,
          currentSize: 4,
          oversizeSkips: 0,
        },
        19,
        1,
      ), // values of about 40 bytes: a chunk each
    );

    // This process too: its own function is never called for a stored key.
    let calls = 0;
    const f = sharedFn(dir, "hits", (x) => {
      calls++;
      return { x, square: x * x, by: Deno.pid };
    });
    assert.deepEqual(f(4), { x: 4, square: 16, by: second.pid });
    assert.deepEqual(f(1), { x: 1, square: 1, by: first.pid });
    assert.equal(calls, 0);
    assert.deepEqual(
      f.cacheInfo(),
      sized(
        {
          hits: 5,
          misses: 4,
          maxSize: 16,
          currentSize: 4,
          oversizeSkips: 0,
        },
        19,
        1,
      ), // values of about 40 bytes: a chunk each
    );
  });
});

Deno.test("cache() shared: cacheClear() in one process empties the cache for all", async () => {
  await withTempDir(async (dir) => {
    let calls = 0;
    const f = cache({ backend: "shared", name: "clear", dir, maxSize: 8, maxKeySize: 64 })(
      (x: unknown) => {
        calls++;
        return x;
      },
    );
    f(1);
    f(2);
    f(2);
    f("k".repeat(100)); // oversize key: counted, not stored
    const filled = sized({ hits: 1, misses: 3, maxSize: 8, currentSize: 2, oversizeSkips: 1 }, 17);
    assert.deepEqual(f.cacheInfo(), filled);

    const child = await runChild("shared_child.ts", {
      mode: "clear",
      dir,
      name: "clear",
      maxSize: 8,
    });
    assert.deepEqual(child.before, filled);
    // maxKeySize 64: the largest entry takes 17 chunks.
    const empty = { hits: 0, misses: 0, maxSize: 8, currentSize: 0, oversizeSkips: 0 };
    assert.deepEqual(child.after, sized(empty, 17));
    assert.deepEqual(f.cacheInfo(), sized(empty, 17), "this process sees the clear");
    const before = calls;
    f(1);
    assert.equal(calls, before + 1, "1 is computed again");
    assert.deepEqual(f.cacheInfo(), sized({ ...empty, misses: 1, currentSize: 1 }, 17));
  });
});

/** Checks the reports of a stress run and the counters and contents it left. */
function checkStress(cacheDir: string, reports: StressReport[], iterations: number): void {
  for (const r of reports) {
    assert.equal(r.bad, 0, `participant ${r.id} read wrong values: ${r.badSamples.join("; ")}`);
    assert.equal(r.total, iterations);
    assert.ok(r.calls > 0 && r.calls < iterations, `participant ${r.id}: ${r.calls} calls`);
  }
  const totalCalls = reports.reduce((s, r) => s + r.total, 0);
  const fnCalls = reports.reduce((s, r) => s + r.calls, 0);

  let calls = 0;
  const f = cache({
    backend: "shared",
    name: "stress",
    dir: cacheDir,
    maxSize: 16,
    maxValueSize: 1024,
  })(
    (k: number) => {
      calls++;
      return stressValue(k);
    },
  );
  const info = f.cacheInfo();
  assert.equal(info.hits + info.misses, totalCalls, "every call counted once");
  assert.equal(info.misses, fnCalls, "misses are the function calls of all participants");
  assert.equal(info.currentSize, 16);
  assert.equal(info.oversizeSkips, 0);
  // What is left in the cache is correct too.
  for (let k = 0; k < 64; k++) assert.deepEqual(f(k), stressValue(k));
  const after = f.cacheInfo();
  assert.equal(after.hits + after.misses, totalCalls + 64);
  assert.equal(calls, after.misses - info.misses, "this process's misses are its calls");
  assert.ok(calls >= 64 - 16, `${calls} calls`);
}

Deno.test("cache() shared: 4 concurrent processes over a small cache read correct values and exact counters", async () => {
  await withTempDir(async (dir) => {
    const barrier = `${dir}/barrier`;
    await Deno.mkdir(barrier);
    const n = 4;
    const iterations = 40_000;
    const cmd = { dir: `${dir}/cache`, name: "stress", maxSize: 16, keys: 64, barrier, n };
    const reports = await Promise.all(
      Array.from(
        { length: n },
        (_, id) =>
          runChild("shared_stress.ts", { ...cmd, id, iterations }) as Promise<StressReport>,
      ),
    );
    checkStress(cmd.dir, reports, iterations);
  });
});

Deno.test("cache() shared: 2 Workers and 2 processes at once read correct values and exact counters", async () => {
  await withTempDir(async (dir) => {
    const barrier = `${dir}/barrier`;
    await Deno.mkdir(barrier);
    const n = 4;
    const iterations = 20_000;
    const cmd = { dir: `${dir}/cache`, name: "stress", maxSize: 16, keys: 64, barrier, n };
    const workers = [0, 1].map(() =>
      new Worker(new URL("./fixtures/shared_worker.ts", import.meta.url), { type: "module" })
    );
    try {
      const fromWorkers = workers.map((w, id) =>
        new Promise<StressReport>((resolve, reject) => {
          w.onmessage = (e: MessageEvent<StressReport>): void => resolve(e.data);
          w.onerror = (e: ErrorEvent): void => {
            e.preventDefault();
            reject(new Error(`worker ${id} failed: ${e.message}`));
          };
          w.postMessage({ stress: { ...cmd, id, iterations } });
        })
      );
      const fromProcesses = [2, 3].map((id) =>
        runChild("shared_stress.ts", { ...cmd, id, iterations }) as Promise<StressReport>
      );
      const reports = await Promise.all([...fromWorkers, ...fromProcesses]);
      checkStress(cmd.dir, reports, iterations);
    } finally {
      for (const w of workers) w.terminate();
    }
  });
});

Deno.test("cache() shared: 8 processes opening a fresh cache at once share one file", async () => {
  await withTempDir(async (dir) => {
    const barrier = `${dir}/barrier`;
    await Deno.mkdir(barrier);
    const n = 8;
    // The cache directory does not exist yet either: every process races to create it.
    const cmd = { mode: "open", dir: `${dir}/cache`, name: "fresh", maxSize: 16, barrier, n };
    const reports = await Promise.all(
      Array.from({ length: n }, (_, id) => runChild("shared_child.ts", { ...cmd, id })),
    );
    const expected = Array.from({ length: n }, (_, k) => k * 1000 + 7);
    for (const r of reports) {
      assert.equal(r.own, r.id * 1000 + 7);
      assert.deepEqual(r.all, expected, `process ${r.id} sees every write`);
      assert.equal(r.calls, 1, `process ${r.id} computed its own key only`);
    }
    const files = [...Deno.readDirSync(`${dir}/cache`)].map((e) => e.name);
    assert.deepEqual(files, ["fresh.warp"], "one file, no temporary left behind");
    const f = sharedFn(dir + "/cache", "fresh", (k) => k);
    assert.deepEqual(
      f.cacheInfo(),
      sized({
        hits: n * n,
        misses: n,
        maxSize: 16,
        currentSize: n,
        oversizeSkips: 0,
      }),
    );
  });
});

Deno.test("cache() shared: a Worker shares the cache with its parent", async () => {
  await withTempDir(async (dir) => {
    let calls = 0;
    const f = sharedFn(dir, "worker", (x) => {
      calls++;
      return { x, by: "parent" };
    });
    f(1);
    f(2);
    assert.equal(calls, 2);

    const worker = new Worker(new URL("./fixtures/shared_worker.ts", import.meta.url), {
      type: "module",
    });
    try {
      const ask = (msg: unknown): Promise<ChildReport> =>
        new Promise((resolve, reject) => {
          worker.onmessage = (e: MessageEvent<ChildReport>): void => resolve(e.data);
          worker.onerror = (e: ErrorEvent): void => {
            e.preventDefault();
            reject(new Error(`worker failed: ${e.message}`));
          };
          worker.postMessage(msg);
        });
      const seen = await ask({ dir, name: "worker", keys: [1, 2, 3] });
      assert.equal(seen.calls, 1, "the worker computes only key 3");
      assert.deepEqual(seen.results, [
        { x: 1, by: "parent" },
        { x: 2, by: "parent" },
        { x: 3, by: "worker" },
      ]);
      assert.deepEqual(
        seen.info,
        sized({
          hits: 2,
          misses: 3,
          maxSize: 16,
          currentSize: 3,
          oversizeSkips: 0,
        }),
      );
      assert.deepEqual(f(3), { x: 3, by: "worker" });
      assert.equal(calls, 2, "the parent gets the worker's entry");

      const cleared = await ask({ dir, name: "worker", keys: [], clear: true });
      assert.deepEqual(
        cleared.info,
        sized({
          hits: 0,
          misses: 0,
          maxSize: 16,
          currentSize: 0,
          oversizeSkips: 0,
        }),
      );
      assert.equal(f.cacheInfo().currentSize, 0, "the worker's clear empties the parent's view");
      f(1);
      assert.equal(calls, 3);
    } finally {
      worker.terminate();
    }
  });
});

Deno.test("cache() shared: every value type round-trips across processes, sync and async", async () => {
  await withTempDir(async (dir) => {
    const count = samples().length;
    const written = await runChild("shared_child.ts", { mode: "types-write", dir, name: "types" });
    assert.deepEqual(written.failures, []);
    assert.equal(written.calls, 2 * count, "the writer computes every sample twice");
    const read = await runChild("shared_child.ts", { mode: "types-read", dir, name: "types" });
    assert.deepEqual(read.failures, [], "every sample read back equal and of its kind");
    assert.equal(read.calls, 0, "the reader's functions never run");
    assert.equal(read.sync.hits, count);
    assert.equal(read.async.hits, count);
    assert.equal(read.sync.oversizeSkips, 0);
    assert.equal(read.sync.currentSize, count);

    // And in this process, from the file the children wrote.
    const values = samples();
    const f = cache({
      backend: "shared",
      name: "types-sync",
      dir,
      maxSize: 256,
      maxValueSize: SAMPLES_MAX_VALUE_SIZE,
    })((_i: number): unknown => {
      throw new Error("not called");
    });
    for (let i = 0; i < count; i++) {
      const [label, expected] = values[i]!;
      assert.ok(isDeepStrictEqual(f(i), expected), label);
    }
  });
});

Deno.test("cache() shared: the default name meets across processes, by function source", async () => {
  await withTempDir(async (dir) => {
    const a1 = await runChild("shared_child.ts", { mode: "default-name", dir, variant: "a" });
    assert.equal(a1.result, 49);
    assert.equal(a1.calls, 1);
    assert.equal(a1.fnName, "square");
    const a2 = await runChild("shared_child.ts", { mode: "default-name", dir, variant: "a" });
    assert.equal(a2.result, 49);
    assert.equal(a2.calls, 0, "the same code in another process meets the same cache");
    assert.deepEqual(
      a2.info,
      sized({
        hits: 1,
        misses: 1,
        maxSize: 128,
        currentSize: 1,
        oversizeSkips: 0,
      }),
    );
    const b = await runChild("shared_child.ts", { mode: "default-name", dir, variant: "b" });
    assert.equal(b.result, 50, "another function with the same name has its own cache");
    assert.equal(b.calls, 1);
    assert.deepEqual(
      b.info,
      sized({
        hits: 0,
        misses: 1,
        maxSize: 128,
        currentSize: 1,
        oversizeSkips: 0,
      }),
    );
    const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
    assert.equal(files.length, 2, files.join(", "));
    for (const file of files) assert.match(file, /^square-[0-9a-f]+\.warp$/);
  });
});
