// Faults of the shared backend beyond the other tests (a replaced tag clock, a clear racing
// a store in another process, oversize sets, stopped and namespaced processes; gdb stops them).
import assert from "node:assert/strict";
import { sharedTagClock } from "../src/store/shared_tags.ts";
import { Status, TAGS_FILE } from "../src/native/_abi.ts";
import { TagsHost } from "./fixtures/tags_driver.ts";
import { LineChild } from "../scripts/_line_child.ts";
import { cache, CacheError } from "../mod.ts";
import { sharedFileName, SharedStore } from "../src/store/shared_store.ts";

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

// ---------------------------------------------------------------------------------------
// cacheClear and a computation under way in another process

const childScript = new URL("./fixtures/shared_faults_child.ts", import.meta.url).pathname;
const root = new URL("../", import.meta.url).pathname;

async function child(label: string, dir: string, file: string): Promise<[LineChild, number]> {
  const [c, ready] = await LineChild.spawn(label, childScript, [JSON.stringify({ dir, file })], {
    cwd: root,
  });
  assert.equal(ready.ready, true);
  return [c, ready.pid as number];
}

/** Waits (without a bound of its own: the test's) until `path` exists. */
async function until(path: string): Promise<void> {
  for (;;) {
    try {
      await Deno.lstat(path);
      return;
    } catch {
      await new Promise((r) => setTimeout(r, 5));
    }
  }
}

/** The address of the write lock word (header offset 128) of `file` in the mappings of
 * process `pid`. */
async function lockWordOf(pid: number, file: string): Promise<string> {
  const maps = await Deno.readTextFile(`/proc/${pid}/maps`);
  const line = maps.split("\n").find((l) => l.endsWith(`/${file}`));
  assert.ok(line !== undefined, `no mapping of ${file} in ${pid}`);
  return "0x" + (BigInt("0x" + line.split("-")[0]) + 128n).toString(16);
}

/**
 * Attaches gdb to `pid` and stops it the first time `stopAt` (gdb commands that set
 * breakpoint 1) fires. `armed` exists once it is set, `stopped` when it fired; the process
 * goes on (gdb detaches) when `go` exists.
 */
async function gdbStop(
  pid: number,
  stopAt: string[],
  files: { armed: string; stopped: string; go: string },
): Promise<Deno.ChildProcess> {
  const script = await Deno.makeTempFile({ suffix: ".gdb" });
  await Deno.writeTextFile(
    script,
    [
      "set pagination off",
      "set confirm off",
      `attach ${pid}`,
      ...stopAt,
      "commands 1",
      `  shell touch ${files.stopped}`,
      `  shell while [ ! -e ${files.go} ]; do sleep 0.01; done`,
      "  detach",
      "  quit",
      "end",
      `shell touch ${files.armed}`,
      "continue",
    ].join("\n") + "\n",
  );
  return new Deno.Command("gdb", {
    args: ["-q", "-nx", "-batch", "-x", script],
    stdout: "null",
    stderr: "null",
  }).spawn();
}

/**
 * {@linkcode gdbStop} of `pid` the first time it releases the write lock of `file` (a
 * hardware watchpoint on the lock word, when it becomes 0: right after the release, before
 * the next statement).
 */
async function stopAfterLockRelease(
  pid: number,
  file: string,
  files: { armed: string; stopped: string; go: string },
): Promise<Deno.ChildProcess> {
  const addr = await lockWordOf(pid, file);
  return await gdbStop(pid, [
    `watch -l *(unsigned long *)${addr}`,
    `condition 1 *(unsigned long *)${addr} == 0`,
  ], files);
}

for (const op of ["delete k", "clear"]) {
  Deno.test(`shared: a computation under way in another process when ${op} runs does not store its result after it`, async () => {
    const dir = await tempDir();
    const file = `${op.split(" ")[0]}.warp`;
    const [p, pPid] = await child("p", dir, file);
    const [q] = await child("q", dir, file);
    const files = { armed: `${dir}/armed`, stopped: `${dir}/stopped`, go: `${dir}/go` };
    let gdb: Deno.ChildProcess | undefined;
    try {
      // q's computation of k is under way (it owns k's flight), with data read before the
      // clear.
      assert.deepEqual(await q.send("claim k"), { claim: "owner" });
      if (op === "delete k") assert.deepEqual(await p.send("set k v0"), { stored: true });
      // p clears the cache (or deletes k); it is stopped by gdb just after the clear released the write lock
      // (a process descheduled there: the same state for as long as it lasts).
      gdb = await stopAfterLockRelease(pPid, file, files);
      await until(files.armed);
      const cleared = p.send(op);
      await until(files.stopped);
      // q's computation ends now and stores its result, as cache() does (only while it owns
      // the flight).
      const stored = await q.send("store k computed-before-the-clear");
      await Deno.writeTextFile(files.go, "");
      assert.ok(!("error" in await cleared));
      await gdb.status;
      gdb = undefined;
      // The clear has returned: no entry computed before it may be read, in any process.
      assert.deepEqual(
        [await p.send("get k"), await q.send("get k")],
        [{ value: null }, { value: null }],
        `a value computed before ${op} is read after it (stored: ${JSON.stringify(stored)})`,
      );
    } finally {
      await Deno.writeTextFile(files.go, "").catch(() => {});
      if (gdb !== undefined) await gdb.status;
      await Promise.all([p.send("exit"), q.send("exit")]).catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  });
}

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

// ---------------------------------------------------------------------------------------
// Opening a file while another process, stopped, is replacing it

Deno.test("shared: a process stopped while it replaces a cache file does not hang every process that opens it", async () => {
  const dir = await tempDir();
  const file = "replace.warp";
  const files = { armed: `${dir}/armed`, stopped: `${dir}/stopped`, go: `${dir}/go` };
  // A file of maxSize 64 that nobody has open.
  new SharedStore({ dir, file }, 64, 64, 256, undefined, "f").close();
  const spawn = async (label: string, maxSize: number) => {
    const [c, ready] = await LineChild.spawn(
      label,
      childScript,
      [JSON.stringify({ dir, file, maxSize, lazy: true })],
      { cwd: root },
    );
    assert.equal(ready.ready, true);
    return [c, ready.pid as number] as const;
  };
  const [a, aPid] = await spawn("a", 128);
  const [b] = await spawn("b", 64);
  const gdb = await gdbStop(aPid, ["catch syscall fallocate"], files);
  let watchdog: ReturnType<typeof setTimeout> | undefined;
  try {
    await until(files.armed);
    // a opens with another maxSize: nobody has the file open, so a replaces it; a is stopped
    // (SIGSTOP, docker pause, a debugger: here gdb) while it reserves the new file's space.
    const aOpened = a.send("open");
    await until(files.stopped);
    // b opens the cache meanwhile (the file's own sizes). It may wait for a while, or fail,
    // but not for as long as a stays stopped.
    const bOpened = b.send("open");
    const hung = new Promise<"hung">((r) => {
      watchdog = setTimeout(() => r("hung"), 20_000);
    });
    const first = await Promise.race([bOpened, hung]);
    await Deno.writeTextFile(files.go, "");
    await aOpened;
    assert.notEqual(first, "hung", "b's open was still blocked after 20 s while a was stopped");
  } finally {
    clearTimeout(watchdog);
    await Deno.writeTextFile(files.go, "").catch(() => {});
    await gdb.status;
    await Promise.all([a.send("exit"), b.send("exit")]).catch(() => {});
    await Deno.remove(dir, { recursive: true });
  }
});

// ---------------------------------------------------------------------------------------
// Creating a file from two PID namespaces at once (containers sharing /dev/shm)

/** The children of process `pid`. */
function childrenOf(pid: number): number[] {
  const text = Deno.readTextFileSync(`/proc/${pid}/task/${pid}/children`).trim();
  return text === "" ? [] : text.split(" ").map(Number);
}

Deno.test("shared: a process of another PID namespace creating the cache file is not undone by an opener's sweep of temporary files", async () => {
  const dir = await tempDir();
  const file = "ns.warp";
  const files = { armed: `${dir}/armed`, stopped: `${dir}/stopped`, go: `${dir}/go` };
  // a: in a PID namespace of its own (a container sharing /dev/shm), with a pid that no
  // process of this namespace has (ns_last_pid), as the pids of another namespace are.
  const unshare = new Deno.Command("unshare", {
    args: [
      "--pid",
      "--fork",
      "--mount-proc",
      "sh",
      "-c",
      'echo 199999 > /proc/sys/kernel/ns_last_pid && "$@"; :',
      "sh",
      Deno.execPath(),
      "run",
      "-A",
      "--quiet",
      childScript,
      JSON.stringify({ dir, file, lazy: true }),
    ],
    cwd: root,
    env: { NO_COLOR: "1" },
    stdin: "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const a = new LineChild("a", unshare);
  const ready = await a.read();
  assert.deepEqual(ready, { ready: true, pid: 200000 }, "the pid of a in its namespace");
  // Its pid here: unshare -> sh -> deno.
  const aPid = childrenOf(childrenOf(unshare.pid)[0]!)[0]!;
  const [b, bReady] = await LineChild.spawn("b", childScript, [
    JSON.stringify({ dir, file, lazy: true }),
  ], { cwd: root });
  assert.equal(bReady.ready, true);
  const gdb = await gdbStop(aPid, ["catch syscall fallocate"], files);
  try {
    await until(files.armed);
    // a creates the file: it is descheduled while it reserves the space of its temporary
    // file (here: stopped there by gdb), before it gives the file its name.
    const aOpened = a.send("open");
    await until(files.stopped);
    // b, in this namespace, opens the same cache meanwhile: it creates the file too.
    const bOpened = [await b.send("open"), await b.send("set k from-b")];
    await Deno.writeTextFile(files.go, "");
    // Both open the one file (one of them creates it, the other opens it), as two openers of
    // one namespace do.
    assert.deepEqual(await aOpened, { opened: true, maxSize: 64 });
    assert.deepEqual(bOpened, [{ opened: true, maxSize: 64 }, { stored: true }]);
    assert.deepEqual(await a.send("get k"), { value: "from-b" });
  } finally {
    await Deno.writeTextFile(files.go, "").catch(() => {});
    await gdb.status;
    await Promise.all([a.send("exit"), b.send("exit")]).catch(() => {});
    await unshare.status;
    await Deno.remove(dir, { recursive: true });
  }
});
