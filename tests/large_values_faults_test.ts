// `largeValues: "file"` (src/store/_large_values.ts) when the folder goes away under a
// live process, and the orphan sweep against a writer that stores the same content again.
import assert from "node:assert/strict";
import { cache } from "../mod.ts";
import { sharedFileName } from "../src/store/shared_store.ts";
import { LargeValueFiles, STORE_GRACE_MS } from "../src/store/_large_values.ts";

const ffi = (await Deno.permissions.query({ name: "ffi" })).state === "granted";

async function withDir(body: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "warp_large_faults_" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

const big = (n: number): string => `${n}:`.padEnd(20_000, "x");

Deno.test({
  name: "largeValues: a live process still stores large values after its .large folder is removed",
  ignore: !ffi,
  fn: () =>
    withDir((dir) => {
      let calls = 0;
      const f = cache({
        backend: "shared",
        dir,
        name: "gone",
        maxValueSize: 256,
        largeValues: "file",
      })(
        (n: number) => {
          calls++;
          return big(n);
        },
      );
      try {
        f(1);
        assert.equal(f(1), big(1));
        assert.equal(calls, 1);
        // As `cli rm` does (the README: processes that use the cache "go on hitting and
        // storing in it"), or an operator cleaning up by hand.
        Deno.removeSync(`${dir}/${sharedFileName("gone")}.large`, { recursive: true });
        f(2);
        assert.equal(f(2), big(2));
        assert.equal(
          calls,
          2,
          `the value of 2 was computed ${
            calls - 1
          } times: not stored (oversizeSkips ${f.cacheInfo().oversizeSkips})`,
        );
      } finally {
        f[Symbol.dispose]();
      }
    }),
});

Deno.test({
  name: "largeValues: a sweep never removes a value file written again after it judged the old one",
  ignore: !ffi,
  fn: () =>
    withDir((dir) => {
      // One key whose value (deterministic) was stored, evicted, and is computed again by
      // another process: the same content, so the same file name as the old orphan.
      const files = new LargeValueFiles(`${dir}/c.warp`);
      const key = new TextEncoder().encode("k");
      const value = new TextEncoder().encode(big(7));
      files.write(key, key.length, value, false);
      const old = Date.now() - 2 * STORE_GRACE_MS;
      for (const e of Deno.readDirSync(files.dir)) {
        Deno.utimeSync(`${files.dir}/${e.name}`, old / 1000, old / 1000);
      }
      let ref: Uint8Array | undefined;
      // The sweep (one process) judges the old file an orphan; meanwhile the other process
      // renames its fresh copy into place and is about to store the entry.
      files.sweep((_key, _sha) => {
        ref = files.write(key, key.length, value, false);
        return false; // not stored yet
      });
      // The other process stores its entry: its value must be readable.
      assert.ok(ref !== undefined);
      const got = files.read(ref, key, key.length);
      assert.ok(
        got !== undefined,
        "the file written and about to be stored was removed by the sweep: a lost value",
      );
      assert.deepEqual(got, value);
    }),
});
