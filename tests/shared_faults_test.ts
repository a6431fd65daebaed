// Faults of the shared backend beyond the other tests: a tag clock file replaced during a
// computation, a cacheSet while a stopped process holds the write lock, an oversize cacheSet.
// Those that need gdb to stop a process at an exact point are in
// scripts/redteam/shared_stops_test.ts (`deno task redteam`).
import assert from "node:assert/strict";
import { sharedTagClock } from "../src/store/shared_tags.ts";
import { Status, TAGS_FILE } from "../src/native/_abi.ts";
import { TagsHost } from "./fixtures/tags_driver.ts";
import { cache, CacheError } from "../mod.ts";
import { sharedFileName } from "../src/store/shared_store.ts";

const tempDir = () => Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp_faults_" });

/** The tags file's header words: epoch (24) and first epoch (56). */
async function clockHeader(dir: string): Promise<{ epoch: number; start: number }> {
  const b = (await Deno.readFile(`${dir}/${TAGS_FILE}`)).slice(0, 64);
  const v = new DataView(b.buffer);
  return { epoch: Number(v.getBigUint64(24, true)), start: Number(v.getBigUint64(56, true)) };
}

/** Garbage over the mapped tags file's header, then this process's clock replaces the
 * file by a fresh one (as any process that needs the clock next does). Returns the fresh
 * file's header. */
async function replaceClock(dir: string): Promise<{ epoch: number; start: number }> {
  const file = await Deno.open(`${dir}/${TAGS_FILE}`, { write: true });
  await file.write(new Uint8Array(64).fill(0xff));
  file.close();
  assert.ok(sharedTagClock(dir).ensure(), "the damaged clock file is replaced");
  return await clockHeader(dir);
}

Deno.test("shared: a computation under way while the tag clock file is replaced never stores an entry that survives a later invalidation of its tag", async () => {
  const dir = await tempDir();
  const name = "clock-swap";
  const [a, b, c] = await Promise.all([
    TagsHost.start({ label: "a", name, dir }),
    TagsHost.start({ label: "b", name, dir }),
    TagsHost.start({ label: "c", name, dir }),
  ]);
  try {
    // a opens the clock (an entry with tags stored), so its computations take real epochs.
    assert.equal((await a.call(1)).value, "1@a#1");
    // A clock whose epoch is in the upper half of the range of first epochs (each fresh
    // file starts at a random epoch below 2^31: two tries on average).
    let h = await clockHeader(dir);
    for (let i = 0; i < 64 && h.epoch < 2 ** 30; i++) h = await replaceClock(dir);
    assert.ok(h.epoch >= 2 ** 30);
    // a's computation of 2 (tags k:2, r:0) starts at that epoch.
    assert.deepEqual(await a.send("start 2"), { started: 1 });
    const startedAt = h.epoch;
    // The clock file is damaged and replaced while it runs; the fresh file's epochs are
    // below the one a's computation started at (again about two tries).
    let fresh = await replaceClock(dir);
    for (let i = 0; i < 64 && fresh.start + 8 >= startedAt; i++) fresh = await replaceClock(dir);
    assert.ok(fresh.start + 8 < startedAt, `${fresh.start} vs ${startedAt}`);
    // Then another process invalidates the tag of the running computation, in the current
    // file: whatever a stores now was computed before that invalidation.
    assert.deepEqual(await c.send("invalidate k:2"), { invalidated: ["k:2"] });
    assert.deepEqual(await a.send("release"), { value: "2@a#2" });
    // a's entry must be a miss everywhere (its computation started before the
    // invalidation), as it is when the file is not replaced (shared_tags_test.ts).
    assert.deepEqual(await b.send("peek 2"), { value: null }, "a stale entry is served in b");
    assert.deepEqual(await a.send("peek 2"), { value: null }, "a stale entry is served in a");
  } finally {
    await Promise.all([a, b, c].map((x) => x.exit()));
    await Deno.remove(dir, { recursive: true });
  }
});

const root = new URL("../", import.meta.url).pathname;

// ---------------------------------------------------------------------------------------
// cacheSet while another process holds the write lock and is stopped

Deno.test("shared: cacheSet while a stopped process holds the write lock never leaves the old value readable without a word", async () => {
  const build = await new Deno.Command("cargo", {
    args: ["build", "--quiet", "--example", "shm_hold", "--manifest-path", "rust/Cargo.toml"],
    cwd: root,
  }).output();
  assert.equal(build.code, 0);
  const dir = await tempDir();
  const name = "set-busy";
  const f = cache({ backend: "shared", name, dir, maxSize: 64 })((k: number) => `old ${k}`);
  let holder: Deno.ChildProcess | undefined;
  try {
    assert.equal(f(1), "old 1");
    // Another process takes the write lock in the middle of an update and is stopped
    // (Ctrl-Z, docker pause, a debugger), as in tests/shared_lock_test.ts.
    holder = new Deno.Command(`${root}rust/target/debug/examples/shm_hold`, {
      args: [`${dir}/${sharedFileName(name)}`, "64", "512", "4096"],
      stdout: "piped",
    }).spawn();
    const r = holder.stdout.getReader();
    let out = "";
    while (!out.includes("held\n")) out += new TextDecoder().decode((await r.read()).value);
    r.releaseLock();
    Deno.kill(holder.pid, "SIGSTOP");
    // The value changes (the source was updated): cacheSet returns, or throws as cacheDelete
    // and cacheClear do when they cannot take the lock.
    let threw: unknown;
    try {
      f.cacheSet("new 1", 1);
    } catch (e) {
      threw = e;
    }
    // Reads go on during the stop: they must not keep returning the value cacheSet replaced
    // after it returned normally. It does not return: it fails as cacheDelete does.
    assert.ok(threw instanceof CacheError, `cacheSet returned (old value read: ${f.cacheGet(1)})`);
    assert.equal(threw.code, Status.Busy);
    assert.match(threw.message, /write lock for 5 s/);
    assert.equal(f.cacheGet(1), "old 1", "the entry was not replaced, as the error says");
  } finally {
    if (holder !== undefined) {
      Deno.kill(holder.pid, "SIGKILL");
      await holder.status;
      await holder.stdout.cancel().catch(() => {});
    }
    f[Symbol.dispose]();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("shared: cacheSet of a value too large for the file never leaves the old value readable (as the memory backend)", async () => {
  const dir = await tempDir();
  const options = {
    backend: "shared" as const,
    name: "too-large",
    dir,
    maxSize: 16,
    maxValueSize: 64,
  };
  const f = cache(options)((k: number) => `old ${k}`);
  // Another handle of the file (as another process has).
  const other = cache(options)((k: number) => `computed by the other ${k}`);
  const memory = cache({ maxSize: 16, maxBytes: 64 })((k: number) => `old ${k}`);
  try {
    assert.equal(f(1), "old 1");
    assert.equal(memory(1), "old 1");
    // The value changed; its new form is larger than the file holds: it is not stored
    // (counted as an oversize skip), and the entry that it replaces must not stay.
    const large = "x".repeat(200);
    f.cacheSet(large, 1);
    memory.cacheSet(large, 1);
    assert.equal(memory.cacheGet(1), undefined, "the memory backend drops the old entry");
    assert.equal(f.cacheInfo().oversizeSkips, 1);
    assert.notEqual(f.cacheGet(1), "old 1", "the replaced value is still read here");
    assert.notEqual(other(1), "old 1", "the replaced value is still read by another handle");
  } finally {
    f[Symbol.dispose]();
    other[Symbol.dispose]();
    memory[Symbol.dispose]();
    await Deno.remove(dir, { recursive: true });
  }
});
