// The byte budget of the shared store (maxBytes, format 5) across processes: two writers
// fill one budget with values of log-uniform sizes (100 B to 64 KB) at once, reading each
// other's entries as they go; then every value reads back right or as a miss, never wrong,
// the bytes held stay within the budget and match the entries found, and the space
// efficiency (bytes of keys and values stored over the budget) is at least 75%.
import assert from "node:assert/strict";
import { MISS } from "../src/store/store.ts";
import { SharedStore } from "../src/store/shared_store.ts";
import { CHUNK_PAYLOAD, CHUNK_SIZE } from "../src/native/_abi.ts";
import { isValueOf, keyOf, MAX_VALUE_SIZE, storedBytes } from "./fixtures/bytes_common.ts";
const MAX_BYTES = 8 << 20;
const MAX_SIZE = 100_000; // never binds: the budget does

import { runChild } from "./fixtures/run_child.ts";

interface ChildReport {
  id: number;
  entries: number;
  written: number;
  wrong: number;
  hits: number;
  misses: number;
}

Deno.test("shared store: two processes fill one byte budget with values of 100 B to 64 KB", async () => {
  const dir = await Deno.makeTempDir({ prefix: "warp_shared_bytes_" });
  try {
    const cmd = { dir, file: "bytes.warp", maxSize: MAX_SIZE, maxBytes: MAX_BYTES };
    // Each writes 1.5 budgets: the budget fills and SIEVE evicts for bytes.
    const reports = await Promise.all(
      [0, 1].map((id) =>
        runChild("bytes_child.ts", { ...cmd, id, writeBytes: MAX_BYTES * 1.5 }) as Promise<
          ChildReport
        >
      ),
    );
    for (const r of reports) {
      assert.equal(r.wrong, 0, `writer ${r.id} read a wrong value`);
      assert.ok(r.hits > 0, `writer ${r.id} read back nothing: ${JSON.stringify(r)}`);
    }
    const s = new SharedStore(
      { dir, file: "bytes.warp" },
      MAX_SIZE,
      64,
      MAX_VALUE_SIZE,
      undefined,
      "bytes",
      MAX_BYTES,
    );
    try {
      let hits = 0;
      let wrong = 0;
      let stored = 0;
      let chunkBytes = 0;
      const held = [0, 0];
      for (const r of reports) {
        for (let i = 0; i < r.entries; i++) {
          const k = keyOf(r.id, i);
          const v = s.get(k, k.length, NaN);
          if (v === MISS) continue;
          if (!isValueOf(r.id, i, v)) {
            wrong++;
            continue;
          }
          hits++;
          held[r.id]!++;
          const n = storedBytes(r.id, i);
          stored += n;
          chunkBytes += Math.ceil(n / CHUNK_PAYLOAD) * CHUNK_SIZE;
        }
      }
      const info = s.info();
      assert.equal(wrong, 0, "never a wrong value");
      assert.equal(info.currentSize, hits, "every entry in the file is one of the writers'");
      assert.ok(held[0]! > 0 && held[1]! > 0, `both writers' entries are kept: ${held}`);
      assert.equal(info.maxBytes, MAX_BYTES);
      assert.ok(info.bytes! <= MAX_BYTES, `${info.bytes} bytes held, over ${MAX_BYTES}`);
      assert.equal(info.bytes, chunkBytes, "the bytes held are the chunks of the entries found");
      const written = reports[0]!.written + reports[1]!.written;
      assert.ok(written > 2.5 * MAX_BYTES, `${written}`);
      const efficiency = stored / MAX_BYTES;
      console.log(
        `byte budget ${MAX_BYTES}: ${hits} entries of ${
          reports[0]!.entries + reports[1]!.entries
        } written (${written} bytes) kept, ${stored} bytes of keys and values, ${info.bytes} bytes of chunks held: space efficiency ${
          (100 * efficiency).toFixed(1)
        }% of the budget (${(100 * stored / info.bytes!).toFixed(1)}% of the chunks held)`,
      );
      assert.ok(efficiency >= 0.75, `space efficiency ${efficiency}`);
    } finally {
      s.close();
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
