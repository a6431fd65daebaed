// Single-flight across processes (shared backend): 8 real `deno` processes ask for one
// slow key at once and one computes it; the waiters spend almost no CPU; when the computing
// process is killed with SIGKILL, another takes the key over. And the call-path cases of the
// issue "No hang, no stall, no leak across processes": two caches of one name in one
// process, `cacheSet` during another process's computation, a dispose during a wait.
import assert from "node:assert/strict";
import { splitLines } from "./fixtures/run_child.ts";
import { cache } from "../mod.ts";

const fixture = new URL("./fixtures/flight_cache_child.ts", import.meta.url).pathname;
const root = new URL("../", import.meta.url).pathname;

interface Report {
  pid: number;
  value: string;
  wallMs: number;
  cpuMs: number;
  info: { hits: number; misses: number; currentSize: number };
}

interface Child {
  process: Deno.ChildProcess;
  pid: number;
  stdin: WritableStreamDefaultWriter<Uint8Array>;
  lines: ReadableStreamDefaultReader<string>;
}

async function spawn(args: string[]): Promise<Child> {
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", fixture, ...args],
    cwd: root,
    env: { WARP_CACHE_ENGINE: "native", NO_COLOR: "1" },
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const lines = process.stdout
    .pipeThrough(new TextDecoderStream())
    .pipeThrough(splitLines())
    .getReader();
  const first = await lines.read();
  assert.equal(first.value, "ready");
  return { process, pid: process.pid, stdin: process.stdin.getWriter(), lines };
}

async function report(child: Child): Promise<Report> {
  const line = await child.lines.read();
  const status = await child.process.status;
  assert.equal(status.code, 0, `child ${child.pid} exited with ${status.code}`);
  return JSON.parse(line.value!) as Report;
}

async function withDirs(body: (dir: string, markers: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "warp_flight_" });
  const markers = `${dir}/markers`;
  await Deno.mkdir(markers);
  try {
    await body(dir, markers);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function starts(markers: string): number[] {
  return [...Deno.readDirSync(markers)].map((e) => Number(e.name.slice("start-".length)));
}

const go = new TextEncoder().encode("go\n");

for (const mode of ["async", "sync"] as const) {
  Deno.test(`flights (${mode}): 8 processes ask for one slow key at once: one computation`, async () => {
    await withDirs(async (dir, markers) => {
      const children = await Promise.all(
        Array.from({ length: 8 }, () => spawn([dir, "one", markers, "1500", "1500", mode])),
      );
      await Promise.all(children.map((c) => c.stdin.write(go)));
      const reports = await Promise.all(children.map(report));
      const started = starts(markers);
      assert.equal(started.length, 1, `one computation, not ${started.length}`);
      const owner = started[0]!;
      for (const r of reports) {
        assert.equal(r.value, `the-key@${owner}`, `process ${r.pid} got the owner's value`);
      }
      const waiters = reports.filter((r) => r.pid !== owner);
      assert.equal(waiters.length, 7);
      // The counters are the file's totals: the process that printed last (the most hits)
      // saw every call counted: one miss, 7 hits (each waiter's miss turned into a hit).
      const last = reports.reduce((a, b) => (a.info.hits >= b.info.hits ? a : b));
      assert.deepEqual([last.info.hits, last.info.misses], [7, 1]);
      // No polling storm: a waiter blocks on a futex; its CPU time is a small part of the
      // time it waited (generous bound: a poll loop would take all of it).
      const waited = waiters.reduce((s, r) => s + r.wallMs, 0);
      const cpu = waiters.reduce((s, r) => s + r.cpuMs, 0);
      console.log(
        `  ${mode}: 7 waiters waited ${waited.toFixed(0)} ms in all, with ${cpu} ms of CPU ` +
          `(${(1000 * cpu / waited).toFixed(1)} ms per s waited)`,
      );
      assert.ok(waited >= 7 * 500, `the waiters waited for the computation (${waited} ms)`);
      assert.ok(cpu <= waited * 0.1, `waiters' CPU ${cpu} ms for ${waited} ms of waiting`);
    });
  });

  Deno.test(`flights (${mode}): the computing process killed with SIGKILL: another takes over`, async () => {
    await withDirs(async (dir, markers) => {
      const children = await Promise.all(
        Array.from({ length: 4 }, () => spawn([dir, "kill", markers, "60000", "300", mode])),
      );
      await Promise.all(children.map((c) => c.stdin.write(go)));
      let first: number[] = [];
      for (let i = 0; i < 500 && first.length === 0; i++) {
        await new Promise((r) => setTimeout(r, 10));
        first = starts(markers);
      }
      assert.equal(first.length, 1, "one process started computing");
      const owner = children.find((c) => c.pid === first[0])!;
      const killedAt = performance.now();
      owner.process.kill("SIGKILL");
      await owner.process.status;
      let next: number[] = first;
      while (next.length < 2 && performance.now() - killedAt < 10_000) {
        await new Promise((r) => setTimeout(r, 5));
        next = starts(markers);
      }
      const takeoverMs = performance.now() - killedAt;
      console.log(`  ${mode}: taken over ${takeoverMs.toFixed(0)} ms after the SIGKILL`);
      assert.equal(next.length, 2, "another process took the computation over");
      assert.ok(takeoverMs < 3_000, `takeover after ${takeoverMs} ms`);
      const heir = next.find((p) => p !== owner.pid)!;
      const rest = children.filter((c) => c !== owner);
      const reports = await Promise.all(rest.map(report));
      for (const r of reports) assert.equal(r.value, `the-key@${heir}`);
      await owner.stdin.close().catch(() => {});
    });
  });
}

Deno.test("flights (async): a waiter in another process is bounded by timeout", async () => {
  await withDirs(async (dir, markers) => {
    const owner = await spawn([dir, "bounded", markers, "3000", "3000", "async"]);
    await owner.stdin.write(go);
    for (let i = 0; i < 500 && starts(markers).length === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(starts(markers).length, 1, "the owner computes");
    const waiter = await spawn([dir, "bounded", markers, "3000", "3000", "async", "300"]);
    await waiter.stdin.write(go);
    const r = await report(waiter) as unknown as { error?: string; wallMs: number };
    assert.equal(r.error, "TimeoutError", "the waiter gave up at its timeout");
    assert.ok(r.wallMs < 2_500, `it did not wait for the computation (${r.wallMs} ms)`);
    assert.equal(starts(markers).length, 1, "and did not compute");
    const done = await report(owner);
    assert.match(done.value, /^the-key@/);
  });
});

async function waitForStart(markers: string): Promise<void> {
  for (let i = 0; i < 1000 && starts(markers).length === 0; i++) {
    await new Promise((r) => setTimeout(r, 10));
  }
  assert.equal(starts(markers).length, 1, "the other process computes");
}

// Issue 4: a sync call waiting on an async flight of its own process deadlocked (the async
// cache owned the flight; the sync one blocked the main thread in waitSync, so the owner
// could never finish). Run in a child with a bound: on format 6 it never returns.
Deno.test("flights: two caches of one name in one process: a sync call never blocks on the async one's flight", async () => {
  await withDirs(async (dir) => {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--quiet",
        new URL("./fixtures/flight_twin_child.ts", import.meta.url).pathname,
        dir,
      ],
      cwd: root,
      env: { WARP_CACHE_ENGINE: "native", NO_COLOR: "1" },
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const out = new Response(child.stdout).text();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const bound = new Promise<"hung">((r) => timer = setTimeout(() => r("hung"), 30_000));
    const ended = await Promise.race([child.status, bound]);
    clearTimeout(timer);
    if (ended === "hung") child.kill("SIGKILL");
    await child.status;
    assert.notEqual(ended, "hung", "the process hung (a sync call blocked on its own process)");
    const r = JSON.parse((await out).trim());
    console.log(`  the sync call returned in ${r.ms.toFixed(1)} ms`);
    assert.equal(r.async, "async:a");
    assert.equal(r.sync, "sync:a", "the sync cache computed the key itself");
    assert.ok(r.ms < 250, `the sync call did not wait for the async one (${r.ms} ms)`);
  });
});

// Issue 6: `cacheSet` in one process was overwritten by a computation already running in
// another (cacheDelete and cacheClear ended the other's flight; cacheSet did not).
Deno.test("flights: cacheSet during another process's computation is not overwritten by it", async () => {
  await withDirs(async (dir, markers) => {
    const other = await spawn([dir, "set", markers, "1500", "1500", "async"]);
    await other.stdin.write(go);
    await waitForStart(markers);
    const mine = cache({ backend: "shared", dir, name: "set", maxSize: 64 })(
      async (key: string): Promise<string> => await Promise.resolve(`computed ${key}`),
    );
    try {
      mine.cacheSet("set by hand", "the-key");
      const r = await report(other);
      assert.match(r.value, /^the-key@/, "the other call still gets its result");
      assert.equal(mine.cacheGet("the-key"), "set by hand", "and did not store it");
    } finally {
      mine[Symbol.dispose]();
    }
  });
});

// Issue 7: disposing a cache during a cross-process wait rejected with "TimeoutError ...
// timeout of undefined ms".
Deno.test("flights: disposing a cache during a cross-process wait rejects with the disposed error", async () => {
  await withDirs(async (dir, markers) => {
    const other = await spawn([dir, "dispose", markers, "2000", "2000", "async"]);
    await other.stdin.write(go);
    await waitForStart(markers);
    const mine = cache({ backend: "shared", dir, name: "dispose", maxSize: 64 })(
      async (key: string): Promise<string> => await Promise.resolve(`computed ${key}`),
    );
    const call = mine("the-key"); // waits for the other process
    await new Promise((r) => setTimeout(r, 50));
    mine[Symbol.dispose]();
    await assert.rejects(call, (e: unknown) => {
      assert.ok(e instanceof Error && !(e instanceof DOMException), String(e));
      assert.equal(e.message, "Cannot use a cache after it was disposed");
      return true;
    });
    assert.equal(starts(markers).length, 1, "and did not compute");
    await report(other);
  });
});
