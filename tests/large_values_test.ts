// `largeValues: "file"`: values over maxValueSize kept in content-addressed files beside a
// shared cache (src/store/_large_values.ts): across processes, removed with their entries,
// orphans swept, a missing or damaged file a miss, writers killed mid-write.
import assert from "node:assert/strict";
import { cache } from "../mod.ts";
import { sharedFileName } from "../src/store/shared_store.ts";
import { TEMP_MAX_AGE_MS } from "../src/store/_large_values.ts";
import { runChild } from "./fixtures/run_child.ts";

const ffi = (await Deno.permissions.query({ name: "ffi" })).state === "granted";

async function withDir(body: (dir: string) => Promise<void> | void): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "warp_large_" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function files(dir: string, name: string): string[] {
  try {
    return [...Deno.readDirSync(`${dir}/${sharedFileName(name)}.large`)].map((e) => e.name)
      .sort();
  } catch {
    return [];
  }
}

const big = (n: number, seed: number): string =>
  `${seed}:`.padEnd(n, String.fromCharCode(97 + seed % 26));

Deno.test({
  name: "largeValues: a value over maxValueSize is kept in a 0600 file and read back",
  ignore: !ffi,
  fn: () =>
    withDir((dir) => {
      let calls = 0;
      const f = cache({
        backend: "shared",
        dir,
        name: "lv",
        maxValueSize: 256,
        largeValues: "file",
      })(
        (n: number) => {
          calls++;
          return { n, text: big(10_000, n), bytes: new Uint8Array(5000).fill(n) };
        },
      );
      const first = f(3);
      assert.deepEqual(f(3), first);
      assert.equal(calls, 1);
      assert.equal(f.cacheInfo().oversizeSkips, 0);
      const names = files(dir, "lv");
      assert.equal(names.length, 1);
      assert.match(names[0]!, /^[0-9a-f]{64}\.v$/);
      const folder = `${dir}/${sharedFileName("lv")}.large`;
      assert.equal(Deno.statSync(`${folder}/${names[0]}`).mode! & 0o777, 0o600);
      assert.equal(Deno.statSync(folder).mode! & 0o777, 0o700);
      // Without the option such a value is skipped and counted.
      const g = cache({ backend: "shared", dir, name: "plain", maxValueSize: 256 })(
        (n: number) => big(10_000, n),
      );
      g(1);
      g(1);
      assert.equal(g.cacheInfo().oversizeSkips, 2);
      assert.deepEqual(files(dir, "plain"), []);
    }),
});

Deno.test({
  name: "largeValues: async results, cacheGet, cacheDelete and cacheClear remove files",
  ignore: !ffi,
  fn: () =>
    withDir(async (dir) => {
      const f = cache({
        backend: "shared",
        dir,
        name: "lv2",
        maxValueSize: 128,
        largeValues: "file",
      })(
        async (n: number) => {
          await Promise.resolve();
          return big(2000, n);
        },
      );
      assert.equal(await f(1), big(2000, 1));
      const hit = f(1);
      assert.ok(hit instanceof Promise);
      assert.equal(await hit, big(2000, 1));
      assert.equal(f.cacheGet(1), big(2000, 1), "cacheGet gives the value, not a Promise");
      await f(2);
      assert.equal(files(dir, "lv2").length, 2);
      assert.equal(f.cacheDelete(1), true);
      assert.equal(files(dir, "lv2").length, 1, "cacheDelete removed its file");
      f.cacheClear();
      assert.deepEqual(files(dir, "lv2"), []);
    }),
});

Deno.test({
  name: "largeValues: a missing or damaged file is a miss and recomputed, never a wrong value",
  ignore: !ffi,
  fn: () =>
    withDir((dir) => {
      let calls = 0;
      const f = cache({
        backend: "shared",
        dir,
        name: "lv3",
        maxValueSize: 128,
        largeValues: "file",
      })(
        (n: number) => {
          calls++;
          return big(3000, n);
        },
      );
      f(1);
      f(2);
      const folder = `${dir}/${sharedFileName("lv3")}.large`;
      const [a, b] = files(dir, "lv3");
      // Damage one file, remove the other.
      const bytes = Deno.readFileSync(`${folder}/${a}`);
      bytes[bytes.length - 1] = bytes[bytes.length - 1]! ^ 1;
      Deno.writeFileSync(`${folder}/${a}`, bytes);
      Deno.removeSync(`${folder}/${b}`);
      assert.equal(f(1), big(3000, 1));
      assert.equal(f(2), big(3000, 2));
      assert.equal(calls, 4, "both recomputed");
      assert.equal(f(1), big(3000, 1));
      assert.equal(calls, 4, "and stored again");
    }),
});

Deno.test({
  name: "largeValues: files of evicted entries are swept; stale temporary files too",
  ignore: !ffi,
  fn: () =>
    withDir((dir) => {
      const options = {
        backend: "shared",
        dir,
        name: "lv4",
        maxSize: 2,
        maxValueSize: 128,
        largeValues: "file",
      } as const;
      const f = cache(options)((n: number) => big(1000, n));
      for (const n of [1, 2, 3, 4]) f(n); // 1 and 2 evicted
      assert.equal(files(dir, "lv4").length, 4, "evicted entries leave their files for now");
      const folder = `${dir}/${sharedFileName("lv4")}.large`;
      // A killed writer's temporary file: old enough to be swept, and a fresh one that stays.
      Deno.writeFileSync(`${folder}/.old.tmp`, new Uint8Array(10));
      const past = new Date(Date.now() - TEMP_MAX_AGE_MS - 10_000);
      Deno.utimeSync(`${folder}/.old.tmp`, past, past);
      Deno.writeFileSync(`${folder}/.new.tmp`, new Uint8Array(10));
      // A handle that opens the cache sweeps.
      const g = cache(options)((n: number) => big(1000, n));
      const left = files(dir, "lv4");
      assert.deepEqual(left.filter((n) => n.endsWith(".tmp")), [".new.tmp"]);
      assert.equal(left.filter((n) => n.endsWith(".v")).length, 2, "only 3's and 4's files stay");
      assert.equal(g(3), big(1000, 3));
      assert.equal(g(4), big(1000, 4));
      assert.equal(g.cacheInfo().hits, 2);
    }),
});

Deno.test({
  name: "largeValues: a 100 MB Uint8Array cached by one process is a hit in another",
  ignore: !ffi,
  fn: () =>
    withDir(async (dir) => {
      const size = 100 * 1024 * 1024;
      let calls = 0;
      const f = cache({ backend: "shared", dir, name: "huge", largeValues: "file" })(
        (n: number) => {
          calls++;
          const b = new Uint8Array(size);
          for (let i = 0; i < size; i += 4096) b[i] = (i / 4096 + n) & 255;
          return b;
        },
      );
      const mine = f(7);
      assert.equal(mine.length, size);
      const r = await runChild("large_values_child.ts", { dir, name: "huge", n: 7 });
      assert.equal(r.length, size);
      assert.equal(r.computed, 0, "the other process hit the entry");
      assert.equal(
        r.sample,
        [...mine.subarray(0, size).filter((_, i) => i % 4096 === 0)].reduce(
          (a, x) => (a * 31 + x) >>> 0,
          7,
        ),
      );
      assert.equal(calls, 1);
    }),
});

Deno.test({
  name: "largeValues: writers killed while writing files leave no wrong value; orphans swept",
  ignore: !ffi,
  fn: () =>
    withDir(async (dir) => {
      const name = "killed";
      const folder = `${dir}/${sharedFileName(name)}.large`;
      let kills = 0;
      for (let round = 0; round < 8; round++) {
        const child = new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            "--quiet",
            new URL("./fixtures/large_values_writer.ts", import.meta.url).pathname,
            JSON.stringify({ dir, name, seed: round }),
          ],
          env: { WARP_CACHE_ENGINE: "native" },
          stdout: "piped",
          stderr: "inherit",
        }).spawn();
        // Wait until it is writing, then kill it at a random instant.
        const reader = child.stdout.getReader();
        await reader.read();
        await new Promise((r) => setTimeout(r, 20 + Math.random() * 200));
        child.kill("SIGKILL");
        await child.status;
        reader.releaseLock();
        await child.stdout.cancel();
        kills++;
      }
      // Every entry is a right value or a miss (then recomputed).
      let calls = 0;
      const f = cache({
        backend: "shared",
        dir,
        name,
        maxSize: 64,
        maxValueSize: 256,
        largeValues: "file",
      })(
        (k: number) => {
          calls++;
          return new Uint8Array(1 << 20).fill(k & 255);
        },
      );
      for (let k = 0; k < 64; k++) {
        const v = f(k);
        assert.equal(v.length, 1 << 20);
        assert.ok(v.every((x) => x === (k & 255)), `key ${k}: a wrong value`);
      }
      assert.ok(calls < 64, `every entry recomputed: ${calls} (the writers stored nothing?)`);
      // Temporary files of the killed writers, once old, and files no entry refers to are
      // swept by the next handle that opens the cache.
      let temps = 0;
      for (const n of Deno.readDirSync(folder)) {
        if (n.name.endsWith(".tmp")) {
          temps++;
          const past = new Date(Date.now() - TEMP_MAX_AGE_MS - 10_000);
          Deno.utimeSync(`${folder}/${n.name}`, past, past);
        }
      }
      cache({ backend: "shared", dir, name, maxSize: 64, maxValueSize: 256, largeValues: "file" })(
        (k: number) => k,
      );
      const left = [...Deno.readDirSync(folder)].map((e) => e.name);
      assert.deepEqual(left.filter((n) => n.endsWith(".tmp")), []);
      assert.ok(left.length <= 64, `${left.length} files for at most 64 entries`);
      assert.equal(kills, 8);
      console.log(`${kills} writers killed; ${temps} temporary files left by them, swept`);
    }),
});

Deno.test("largeValues: bad values and the memory backend are TypeErrors", () => {
  assert.throws(
    () => cache({ backend: "shared", largeValues: "disk" as "file" }),
    /largeValues must be "file" or undefined: received "disk"/,
  );
  assert.throws(() => cache({ largeValues: "file" }), /largeValues needs the shared backend/);
});
