// Resources (issue #6): a full or read-only file system, the size limits at their extremes.
// Each must be a clear Error (CacheError with the reason), never SIGBUS, never a hang.
// Full and read-only file systems are real mounts (tmpfs of 1 MiB, `remount,ro`), which
// needs root / CAP_SYS_ADMIN as in CI. Without it the test fails with that message:
// permission tricks (mode 0500, chattr) do not stop root, so there is no honest fallback.
import assert from "node:assert/strict";
import { cache } from "../mod.ts";
import { CacheError } from "../src/native/errors.ts";
import {
  MAX_KEY_BYTES,
  MAX_SHARED_BYTES,
  MAX_SHARED_ENTRIES,
  MAX_VALUE_BYTES,
  MIN_SHARED_BYTES,
} from "../src/native/_abi.ts";
import {
  checkValue,
  makeValue,
  openStore,
  SharedStore as SharedStoreCtor,
  storeGet,
  storeSet,
} from "./fixtures/fault_common.ts";

/** The error thrown by `fn` (fails when it returns). */
function thrown(fn: () => unknown): Error {
  try {
    fn();
  } catch (e) {
    assert.ok(e instanceof Error, String(e));
    return e;
  }
  assert.fail("expected an error");
}

async function sh(cmd: string[]): Promise<{ ok: boolean; err: string }> {
  const out = await new Deno.Command(cmd[0]!, { args: cmd.slice(1), stderr: "piped" }).output();
  return { ok: out.success, err: new TextDecoder().decode(out.stderr) };
}

async function withTmpfs(size: string, fn: (dir: string) => void | Promise<void>): Promise<void> {
  const mnt = await Deno.makeTempDir({ prefix: "warp-fault-mnt-" });
  const m = await sh(["mount", "-t", "tmpfs", "-o", `size=${size},mode=0700`, "tmpfs", mnt]);
  if (!m.ok) {
    await Deno.remove(mnt);
    assert.fail(
      `Cannot mount a tmpfs for the full/read-only file system tests (needs root or CAP_SYS_ADMIN): ${m.err}`,
    );
  }
  try {
    await fn(mnt);
  } finally {
    await sh(["umount", "-l", mnt]);
    await Deno.remove(mnt, { recursive: true });
  }
}

Deno.test("shared store: a full file system is a clear error, never SIGBUS", async () => {
  await withTmpfs("1m", (dir) => {
    // 4096 entries of 4 KiB values: ~17 MiB, more than the 1 MiB file system.
    const e = thrown(() => openStore(dir, "big.warp", 4096, 4096));
    assert.ok(e instanceof CacheError, String(e));
    assert.match(e.message, /Cannot reserve \d+ bytes .*file system full.*No space left/);
    // Nothing is left behind: no half-created file, no temporary.
    assert.deepEqual([...Deno.readDirSync(dir)].map((d) => d.name), []);
    // A small cache still fits and works; filling the rest of the space does not break it.
    const s = openStore(dir, "small.warp", 16, 1024);
    assert.throws(() => Deno.writeFileSync(`${dir}/filler`, new Uint8Array(2 << 20)), /space/);
    assert.ok(storeSet(s, "a", makeValue("a", 1, 900)));
    assert.equal(checkValue("a", storeGet(s, "a")), "");
    assert.throws(() => openStore(dir, "other.warp", 1024, 4096), /No space left/);
    s.close();
  });
});

Deno.test("shared store: a read-only file system is a clear error", async () => {
  await withTmpfs("4m", async (dir) => {
    const s = openStore(dir, "c.warp", 16, 256);
    assert.ok(storeSet(s, "a", makeValue("a", 1, 10)));
    // `remount,ro` is refused while a file is open for writing ("busy"): a read-only bind
    // mount of the same file system shows it read-only through another path.
    const ro = await Deno.makeTempDir({ prefix: "warp-fault-ro-" });
    const b = await sh(["mount", "--bind", dir, ro]);
    assert.ok(b.ok, `bind mount: ${b.err}`);
    try {
      const r = await sh(["mount", "-o", "remount,bind,ro", ro]);
      assert.ok(r.ok, `remount,bind,ro: ${r.err}`);
      // Existing file: opening it read-write fails with the reason.
      assert.throws(() => openStore(ro, "c.warp", 16, 256), /Read-only file system/);
      // New file: creation fails with the reason, and leaves nothing behind.
      assert.throws(() => openStore(ro, "d.warp", 16, 256), /Read-only file system/);
      assert.deepEqual([...Deno.readDirSync(ro)].map((d) => d.name), ["c.warp"]);
      // A directory that cannot be created is a clear error too.
      assert.throws(() => openStore(`${ro}/sub`, "c.warp", 16, 256), /Read-only file system/);
    } finally {
      await sh(["umount", "-l", ro]);
      await Deno.remove(ro);
    }
    // The handle opened read-write keeps working.
    assert.equal(checkValue("a", storeGet(s, "a")), "");
    assert.ok(storeSet(s, "b", makeValue("b", 1, 10)));
    s.close();
  });
});

Deno.test("shared store: size limits at their extremes are clear errors", async () => {
  const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp-fault-limits-" });
  try {
    // Smallest: one entry of one-byte keys and values.
    const one = new SharedStoreCtor({ dir, file: "one.warp" }, 1, 1, 16, undefined, "f");
    for (let i = 0; i < 10; i++) {
      assert.equal(one.set(new Uint8Array([i]), 1, i, NaN, false), true);
      assert.equal(one.get(new Uint8Array([i]), 1, NaN), i);
      assert.equal(one.info().currentSize, 1);
    }
    assert.equal(one.set(new Uint8Array([1, 2]), 2, 1, NaN, false), false); // key too large
    assert.equal(one.info().oversizeSkips, 1);
    one.close();
    const bad: [number, number, number, RegExp, number?][] = [
      [0, 64, 64, new RegExp(`capacity must be between 1 and ${MAX_SHARED_ENTRIES}: received 0`)],
      [MAX_SHARED_ENTRIES + 1, 64, 64, /capacity must be between 1/],
      [1, 0, 64, /max_key_size must be between/],
      [1, MAX_KEY_BYTES + 1, 64, /max_key_size must be between/],
      [1, 64, MAX_VALUE_BYTES + 1, /max_value_size must be between/],
      [
        1,
        64,
        64,
        new RegExp(
          `max_bytes must be between ${MIN_SHARED_BYTES} and ${MAX_SHARED_BYTES}: received ${
            MIN_SHARED_BYTES - 1
          }`,
        ),
        MIN_SHARED_BYTES - 1,
      ],
    ];
    for (const [cap, key, value, re, maxBytes] of bad) {
      const e = thrown(() =>
        new SharedStoreCtor({ dir, file: "x.warp" }, cap, key, value, undefined, "f", maxBytes)
      );
      assert.ok(e instanceof CacheError, String(e));
      assert.match(e.message, re);
    }
    // maxBytes 2^36 with the largest sizes passes the size check (the README's range): on a
    // file system too small for it, the open fails with the OS reason (tests/shared_store_test.ts).
    await withTmpfs("1m", (mnt) => {
      const e = thrown(() =>
        new SharedStoreCtor(
          { dir: mnt, file: "x.warp" },
          MAX_SHARED_ENTRIES,
          MAX_KEY_BYTES,
          MAX_VALUE_BYTES,
          undefined,
          "f",
          MAX_SHARED_BYTES,
        )
      );
      assert.ok(e instanceof CacheError, String(e));
      assert.match(e.message, /No space left/);
      assert.throws(
        () =>
          cache({ backend: "shared", dir: mnt, name: "budget", maxBytes: MAX_SHARED_BYTES })((
            x: number,
          ) => x),
        (e: unknown) => e instanceof CacheError && /No space left/.test(e.message),
      );
      assert.deepEqual([...Deno.readDirSync(mnt)], [], "nothing left behind");
      return Promise.resolve();
    });
    // Largest capacity with small slots: a 1.1 GiB file on a 1 MiB tmpfs is "full", not SIGBUS.
    await withTmpfs("1m", (mnt) => {
      assert.throws(
        () =>
          new SharedStoreCtor(
            { dir: mnt, file: "max.warp" },
            MAX_SHARED_ENTRIES,
            1,
            1,
            undefined,
            "f",
          ),
        /No space left/,
      );
      return Promise.resolve();
    });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
