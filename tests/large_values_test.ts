// `largeValues: "file"`: values over maxValueSize kept in content-addressed files beside a
// shared cache (src/store/_large_values.ts): across processes, removed with their entries,
// orphans swept, a missing or damaged file a miss, writers killed mid-write.
import assert from "node:assert/strict";
import { cache } from "../mod.ts";
import { sharedFileName } from "../src/store/shared_store.ts";
import { STORE_GRACE_MS, TEMP_MAX_AGE_MS } from "../src/store/_large_values.ts";
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
      // Files younger than STORE_GRACE_MS are never swept (another process may be about to
      // store the entry that refers to one): a young orphan stays, old ones go.
      const h = cache(options)((n: number) => big(1000, n));
      assert.equal(files(dir, "lv4").length, 4, "young orphans are kept");
      h[Symbol.dispose]();
      const aged = new Date(Date.now() - STORE_GRACE_MS - 10_000);
      for (const name of files(dir, "lv4")) Deno.utimeSync(`${folder}/${name}`, aged, aged);
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
      const past = new Date(Date.now() - Math.max(TEMP_MAX_AGE_MS, STORE_GRACE_MS) - 10_000);
      for (const n of Deno.readDirSync(folder)) {
        if (n.name.endsWith(".tmp")) temps++;
        Deno.utimeSync(`${folder}/${n.name}`, past, past); // old: swept if orphaned
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

Deno.test({
  name: "largeValues: a sweep in one process never deletes a value another is storing",
  ignore: !ffi,
  fn: () =>
    withDir(async (dir) => {
      const name = "swept";
      const writers = 3;
      const keys = 400;
      const children = Array.from({ length: writers }, (_, seed) =>
        new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "-A",
            "--quiet",
            new URL("./fixtures/large_values_sweeper.ts", import.meta.url).pathname,
            JSON.stringify({ dir, name, seed, keys }),
          ],
          env: { WARP_CACHE_ENGINE: "native", NO_COLOR: "1" },
          stdout: "piped",
          stderr: "piped",
        }).output());
      let lost = 0;
      let wrong = 0;
      for (const o of await Promise.all(children)) {
        const stdout = new TextDecoder().decode(o.stdout).trim();
        assert.ok(o.success, new TextDecoder().decode(o.stderr) + stdout);
        const r = JSON.parse(stdout.split("\n").at(-1)!);
        lost += r.lost;
        wrong += r.wrong;
      }
      assert.equal(wrong, 0, "a wrong value");
      assert.equal(
        lost,
        0,
        `${lost} of ${
          writers * keys
        } stored large values lost (their files swept by another process before they were stored)`,
      );
    }),
});

/** A shared, sticky directory like /tmp (mode 1777), for a test's caches. */
async function withStickyDir(body: (dir: string) => Promise<void> | void): Promise<void> {
  await withDir(async (dir) => {
    await Deno.chmod(dir, 0o1777);
    await body(dir);
  });
}

Deno.test({
  name:
    "largeValues: a .large folder of another user, a symlink, a file or a wrong mode is refused, naming it",
  ignore: !ffi,
  fn: async (t) => {
    const make = (dir: string) =>
      cache({ backend: "shared", dir, name: "planted", maxValueSize: 128, largeValues: "file" })(
        (n: number) => big(3000, n),
      );
    const planted = (dir: string) => `${dir}/${sharedFileName("planted")}.large`;
    await t.step(
      "another user's folder (mode 0777): refused, nothing written there",
      () =>
        withStickyDir(async (dir) => {
          assert.equal(Deno.uid(), 0, "this step chowns a folder to another user: run as root");
          const folder = planted(dir);
          await Deno.mkdir(folder);
          await Deno.chmod(folder, 0o777);
          await Deno.chown(folder, 4242, 4242);
          assert.throws(
            () => make(dir),
            (e: Error) =>
              e.message.includes(folder) && /owned by another user \(uid 4242\)/.test(e.message),
          );
          assert.deepEqual([...Deno.readDirSync(folder)], []);
        }),
    );
    await t.step(
      "a symbolic link: refused, its target untouched",
      () =>
        withStickyDir(async (dir) => {
          const target = await Deno.makeTempDir({ prefix: "warp_large_target_" });
          try {
            Deno.symlinkSync(target, planted(dir));
            assert.throws(
              () => make(dir),
              (e: Error) => e.message.includes(planted(dir)) && /symbolic link/.test(e.message),
            );
            assert.deepEqual([...Deno.readDirSync(target)], []);
          } finally {
            await Deno.remove(target, { recursive: true });
          }
        }),
    );
    await t.step(
      "our folder of mode 0755: refused, naming the mode",
      () =>
        withStickyDir(async (dir) => {
          await Deno.mkdir(planted(dir));
          await Deno.chmod(planted(dir), 0o755);
          assert.throws(
            () => make(dir),
            (e: Error) => e.message.includes(planted(dir)) && /mode 755/.test(e.message),
          );
          assert.deepEqual([...Deno.readDirSync(planted(dir))], []);
        }),
    );
    await t.step("a regular file in its place: refused", () =>
      withStickyDir((dir) => {
        Deno.writeFileSync(planted(dir), new Uint8Array(1));
        assert.throws(
          () => make(dir),
          (e: Error) => e.message.includes(planted(dir)) && /not a directory/.test(e.message),
        );
      }));
    await t.step("a folder of our own, mode 0700: used", () =>
      withStickyDir((dir) => {
        const f = make(dir);
        assert.equal(f(1), big(3000, 1));
        assert.equal(f(1), big(3000, 1));
        assert.equal(f.cacheInfo().hits, 1);
      }));
  },
});

Deno.test({
  name:
    "largeValues: a FIFO, a symlink or a file not ours in place of a value file is a miss, never a block",
  ignore: !ffi,
  fn: async (t) => {
    /** Runs the reader child; kills it when it has not answered in 20 s. */
    const read = async (dir: string) => {
      const child = new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--quiet",
          new URL("./fixtures/large_values_reader.ts", import.meta.url).pathname,
          JSON.stringify({ dir, name: "swapped" }),
        ],
        env: { WARP_CACHE_ENGINE: "native", NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      let blocked = false;
      const timer = setTimeout(() => {
        blocked = true;
        child.kill("SIGKILL");
      }, 20_000);
      const o = await child.output();
      clearTimeout(timer);
      assert.equal(blocked, false, "the reader blocked (killed after 20 s)");
      const stdout = new TextDecoder().decode(o.stdout).trim();
      assert.ok(o.success, new TextDecoder().decode(o.stderr) + stdout);
      return JSON.parse(stdout.split("\n").at(-1)!);
    };
    /** Stores f(1) as a large value and returns the path of its file. */
    const stored = (dir: string): string => {
      const f = cache({
        backend: "shared",
        dir,
        name: "swapped",
        maxValueSize: 128,
        largeValues: "file",
      })((n: number) => `${n}:`.padEnd(3000, "x"));
      f(1);
      f[Symbol.dispose]();
      const [file] = files(dir, "swapped");
      return `${dir}/${sharedFileName("swapped")}.large/${file}`;
    };
    await t.step("a FIFO: a miss, recomputed, no block", () =>
      withDir(async (dir) => {
        const path = stored(dir);
        Deno.removeSync(path);
        const mk = await new Deno.Command("mkfifo", { args: [path] }).output();
        assert.ok(mk.success);
        const r = await read(dir);
        assert.deepEqual(r, { length: 3000, right: true, computed: 1 });
      }));
    await t.step("a symbolic link to a copy of the right file: a miss", () =>
      withDir((dir) => {
        const path = stored(dir);
        const copy = `${dir}/copy`;
        Deno.copyFileSync(path, copy);
        Deno.chmodSync(copy, 0o600);
        Deno.removeSync(path);
        Deno.symlinkSync(copy, path);
        return read(dir).then((r) =>
          assert.deepEqual(r, { length: 3000, right: true, computed: 1 })
        );
      }));
    await t.step(
      "the right bytes in a file of another user, or of mode 0644: a miss",
      () =>
        withDir(async (dir) => {
          assert.equal(Deno.uid(), 0, "this step chowns a file to another user: run as root");
          const path = stored(dir);
          await Deno.chown(path, 4242, 4242);
          assert.deepEqual(await read(dir), { length: 3000, right: true, computed: 1 });
          const again = stored(dir); // stored again by the reader: ours, 0600
          await Deno.chmod(again, 0o644);
          assert.deepEqual(await read(dir), { length: 3000, right: true, computed: 1 });
        }),
    );
  },
});
