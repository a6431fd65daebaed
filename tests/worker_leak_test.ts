// Workers that end release their native stores and unmap their shared files
// (`rust/src/ffi/thread_handles.rs`; RELIABILITY.md "Holes found and fixed"). Deno tears
// a Worker's isolate down without running its FinalizationRegistry callbacks, so before
// the fix every Worker left its memory store allocated and its shared file mapped.
import assert from "node:assert/strict";
import { symbols } from "../src/native/ffi.ts";
import { runChild } from "./fixtures/run_child.ts";

interface LeakReport {
  workers: number;
  entries: number;
  engines: string[];
  sizes: number;
  distinctThreads: number;
  stillAlive: number;
  rssBefore: number;
  rssAfter: number;
  mappingsBefore: number;
  mappingsAfter: number;
}

Deno.test({
  name: "cache() in Workers that end: native stores freed, shared file unmapped",
  ignore: Deno.build.os !== "linux", // reads /proc
  async fn(): Promise<void> {
    const dir = await Deno.makeTempDir({ prefix: "warp_worker_leak_" });
    try {
      // Each Worker fills a memory cache with 25,000 keys of 100 characters, so that what
      // the Rust side keeps (about 40 bytes per entry plus the key's 100 bytes) stands far
      // above the RSS noise of 40 Workers (V8 and malloc arenas: 10-25 MiB).
      const workers = 40;
      const entries = 25_000;
      const r = await runChild("worker_leak_main.ts", {
        workers,
        entries,
        dir,
        name: "leak",
      }) as LeakReport;
      assert.deepEqual(r.engines, ["native"]);
      assert.equal(r.sizes, workers * entries, "every Worker filled its memory cache");
      assert.equal(r.distinctThreads, workers, "each Worker ran on a thread of its own");
      assert.equal(r.stillAlive, 0, "every Worker's thread exited");

      const grewMiB = (r.rssAfter - r.rssBefore) / 2 ** 20;
      // At least what the Rust side keeps per entry: ~40 bytes (index, SIEVE node) and the
      // 100 bytes of the key (the old library leaked ~190 bytes per entry here).
      const leakMiB = (workers * entries * (40 + 100)) / 2 ** 20;
      console.log(
        `${workers} Workers x ${entries} entries: RSS +${grewMiB.toFixed(1)} MiB (a leak: ~${
          leakMiB.toFixed(0)
        } MiB); mappings of the shared file ${r.mappingsBefore} -> ${r.mappingsAfter}`,
      );
      assert.equal(
        r.mappingsAfter,
        r.mappingsBefore,
        "every Worker's mapping of the shared file is gone",
      );
      assert.equal(r.mappingsBefore, 0, "the warm-up Worker's mapping is gone");
      assert.ok(
        grewMiB < leakMiB / 3,
        `RSS grew by ${grewMiB.toFixed(1)} MiB, a third of the leak is ${
          (leakMiB / 3).toFixed(1)
        } MiB`,
      );
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});

Deno.test("symbols: the constructors run on the calling isolate's thread, which owns the handle", () => {
  // A `nonblocking` constructor would run on a blocking-pool thread, which would own the
  // handle and free it when that pool thread ends, while the Worker still uses it.
  for (const name of ["warp_mem_new", "warp_shm_open"] as const) {
    const def: Deno.ForeignFunction = symbols[name];
    assert.notEqual(def.nonblocking, true, `${name} must not be nonblocking`);
  }
});
