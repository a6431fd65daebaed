// The shared backend's faults that need a process stopped at an exact point, which gdb does
// (attached to a child: a watchpoint on the lock word, or a catch of a syscall): a clear racing
// a store in another process, an open behind a process stopped while it replaces the file, and
// a file created from two PID namespaces. Run by `deno task redteam` (as root, with gdb), not by
// `deno task test`: a stop that gdb misses under load would hang a test run, so every wait here
// is bounded and fails with what it waited for.
import assert from "node:assert/strict";
import { LineChild } from "../_line_child.ts";
import { SharedStore } from "../../src/store/shared_store.ts";

const tempDir = () => Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp_stops_" });

// ---------------------------------------------------------------------------------------
// cacheClear and a computation under way in another process

const childScript =
  new URL("../../tests/fixtures/shared_faults_child.ts", import.meta.url).pathname;
const root = new URL("../../", import.meta.url).pathname;

async function child(label: string, dir: string, file: string): Promise<[LineChild, number]> {
  const [c, ready] = await LineChild.spawn(label, childScript, [JSON.stringify({ dir, file })], {
    cwd: root,
  });
  assert.equal(ready.ready, true);
  return [c, ready.pid as number];
}

/** Waits until `path` exists, for at most `ms`: past it, an error naming it (gdb did not
 * stop the process where asked, or did not attach). */
async function until(path: string, ms = 60_000): Promise<void> {
  const end = performance.now() + ms;
  for (;;) {
    try {
      await Deno.lstat(path);
      return;
    } catch {
      if (performance.now() > end) throw new Error(`${path} did not appear within ${ms} ms`);
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
 * Waits for `gdb` to end (it detaches once `go` exists), for at most 10 s: past it (it never
 * stopped the process where asked), gdb and the processes `pids` are killed, so that the test
 * fails instead of hanging.
 */
async function endGdb(gdb: Deno.ChildProcess, ...pids: number[]): Promise<void> {
  const timer = setTimeout(() => {
    for (
      const kill of [
        () => gdb.kill("SIGKILL"),
        ...pids.map((p) => () => Deno.kill(p, "SIGKILL")),
      ]
    ) {
      try {
        kill();
      } catch {
        // gone already
      }
    }
  }, 10_000);
  await gdb.status;
  clearTimeout(timer);
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
      if (gdb !== undefined) await endGdb(gdb, pPid);
      await Promise.all([p.send("exit"), q.send("exit")]).catch(() => {});
      await Deno.remove(dir, { recursive: true });
    }
  });
}

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
    await endGdb(gdb, aPid);
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
    await endGdb(gdb, aPid);
    await Promise.all([a.send("exit"), b.send("exit")]).catch(() => {});
    await unshare.status;
    await Deno.remove(dir, { recursive: true });
  }
});
