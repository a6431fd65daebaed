// Liveness of the cross-process single-flight (shared backend), as real `deno` processes
// meet it: a waiter always ends (the flight ends, its owner dies, or `flightTimeout`
// passes, even when the owner is stopped), waiters of a flight that stored nothing compute
// at once rather than in turn, a synchronous call never blocks on a flight of its own
// process, a function that returns a Promise always returns one, `cacheSet` wins over a
// computation already running elsewhere, and disposing a cache ends its waits with the
// disposed error. Bounds are generous (a busy 2-core machine); what is asserted is who
// computed, what was returned, and the order of events, never a tight duration.
import assert from "node:assert/strict";
import { cache } from "../mod.ts";
import { runScript, splitLines } from "./fixtures/run_child.ts";
import type { Scenario } from "./fixtures/flight_scenario.ts";

const fixture = new URL("./fixtures/flight_scenario_child.ts", import.meta.url).pathname;
const root = new URL("../", import.meta.url).pathname;

interface Report {
  pid: number;
  value?: string | null;
  promise?: boolean;
  error?: { name: string; message: string };
  wallMs: number;
  endedAt: number;
  ticks?: number;
}

interface Child {
  process: Deno.ChildProcess;
  pid: number;
  lines: ReadableStreamDefaultReader<string>;
  stdin: WritableStreamDefaultWriter<Uint8Array>;
}

/** The most a scenario's process may take before the test fails (a hang). */
const HANG_MS = 60_000;

async function spawn(s: Scenario): Promise<Child> {
  const process = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", fixture, JSON.stringify(s)],
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
  return { process, pid: process.pid, lines, stdin: process.stdin.getWriter() };
}

async function go(child: Child): Promise<void> {
  await child.stdin.write(new TextEncoder().encode("go\n"));
}

/** The child's report, or a failure if it takes longer than `HANG_MS` (it is killed). */
async function report(child: Child, bound = HANG_MS): Promise<Report> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const hang = new Promise<never>((_, reject) => {
    timer = setTimeout(() => {
      try {
        child.process.kill("SIGKILL");
      } catch { /* gone */ }
      reject(new Error(`process ${child.pid} did not report within ${bound} ms (a hang)`));
    }, bound);
  });
  try {
    const line = await Promise.race([child.lines.read(), hang]);
    return JSON.parse(line.value!) as Report;
  } finally {
    clearTimeout(timer);
  }
}

async function finish(children: Child[]): Promise<void> {
  for (const c of children) {
    try {
      c.process.kill("SIGKILL");
    } catch { /* exited */ }
    try {
      await c.stdin.close();
    } catch { /* closed */ }
    await c.process.status;
    await c.lines.cancel().catch(() => {});
  }
}

async function waitForFile(path: string, bound = HANG_MS): Promise<void> {
  const until = Date.now() + bound;
  for (;;) {
    try {
      Deno.statSync(path);
      return;
    } catch { /* not yet */ }
    if (Date.now() > until) throw new Error(`${path} did not appear within ${bound} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

interface Run {
  pid: number;
  start: number;
  end: number;
}

function runs(markers: string): Run[] {
  return [...Deno.readDirSync(markers)]
    .filter((e) => e.name.startsWith("run-"))
    .map((e) => JSON.parse(Deno.readTextFileSync(`${markers}/${e.name}`)) as Run);
}

async function withDirs(body: (dir: string, markers: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp_liveness_" });
  const markers = await Deno.makeTempDir({ prefix: "warp_liveness_markers_" });
  try {
    await body(dir, markers);
  } finally {
    await Deno.remove(dir, { recursive: true });
    await Deno.remove(markers, { recursive: true });
  }
}

for (const how of ["setTtl(0)", "a throw"] as const) {
  Deno.test(`flights: when the owner's result is not stored (${how}), its waiters compute at once, not in turn`, async () => {
    await withDirs(async (dir, markers) => {
      const base: Scenario = {
        dir,
        name: "not-stored",
        markers,
        mode: "async",
        computeMs: 3000,
        ...(how === "setTtl(0)" ? { noStore: true } : { fail: true }),
      };
      const owner = await spawn(base);
      const waiters = await Promise.all([1, 2, 3].map(() => spawn(base)));
      try {
        await go(owner);
        await waitForFile(`${markers}/start-${owner.pid}`);
        for (const w of waiters) await go(w);
        await report(owner);
        const reports = await Promise.all(waiters.map((w) => report(w)));
        // Every waiter computed the key itself, once.
        const computed = runs(markers).filter((r) => r.pid !== owner.pid);
        assert.equal(computed.length, 3, JSON.stringify(reports));
        // At once: their three computations overlap (in turn, none would).
        const latestStart = Math.max(...computed.map((r) => r.start));
        const earliestEnd = Math.min(...computed.map((r) => r.end));
        assert.ok(
          latestStart < earliestEnd,
          `the waiters computed one after another: ${JSON.stringify(computed)}`,
        );
      } finally {
        await finish([owner, ...waiters]);
      }
    });
  });
}

for (const mode of ["async", "sync"] as const) {
  Deno.test(`flights: a ${mode} waiter of a stopped owner computes itself after flightTimeout`, async () => {
    await withDirs(async (dir, markers) => {
      const base: Scenario = { dir, name: `stopped-${mode}`, markers, mode, computeMs: 2000 };
      const owner = await spawn(base);
      const waiter = await spawn({ ...base, flightTimeout: 500 });
      let continued = 0;
      try {
        await go(owner);
        await waitForFile(`${markers}/start-${owner.pid}`);
        Deno.kill(owner.pid, "SIGSTOP");
        await go(waiter);
        const r = await Promise.race([
          report(waiter),
          new Promise<null>((resolve) => setTimeout(() => resolve(null), 30_000)),
        ]);
        continued = Date.now();
        Deno.kill(owner.pid, "SIGCONT");
        assert.ok(
          r !== null,
          "the waiter was still waiting 30 s after its flightTimeout of 500 ms",
        );
        assert.equal(r.error, undefined, JSON.stringify(r));
        assert.equal(r.value, `the-key@${waiter.pid}`, "the waiter computed the key itself");
        assert.ok(r.endedAt <= continued);
      } finally {
        if (continued === 0) Deno.kill(owner.pid, "SIGCONT");
        await finish([owner, waiter]);
      }
    });
  });
}

Deno.test("flights: a function returning a Promise without async returns a Promise while it waits for another process, and the event loop runs", async () => {
  await withDirs(async (dir, markers) => {
    const base: Scenario = { dir, name: "promise-fn", markers, mode: "promise", computeMs: 1500 };
    const owner = await spawn(base);
    const waiter = await spawn({ ...base, ticks: true });
    try {
      await go(owner);
      await waitForFile(`${markers}/start-${owner.pid}`);
      await go(waiter);
      const r = await report(waiter);
      await report(owner);
      assert.equal(r.error, undefined, JSON.stringify(r));
      assert.equal(r.promise, true, "the call returned a plain value, not a Promise");
      assert.equal(r.value, `the-key@${owner.pid}`);
      // A 20 ms interval ticked while the call waited (a blocked event loop ticks at most
      // once); the wait took about 1 s at least.
      assert.ok(r.ticks! >= Math.min(10, r.wallMs / 100), JSON.stringify(r));
    } finally {
      await finish([owner, waiter]);
    }
  });
});

Deno.test("flights: a stale hit of a Promise-returning function stored by another process is a Promise on a process's first call", async () => {
  await withDirs(async (dir, markers) => {
    const base: Scenario = {
      dir,
      name: "promise-stale",
      markers,
      mode: "promise",
      computeMs: 10,
      ttl: 100,
      staleWhileRevalidate: 60_000,
    };
    const writer = await spawn(base);
    try {
      await go(writer);
      const w = await report(writer);
      assert.equal(w.value, `the-key@${writer.pid}`);
      await new Promise((r) => setTimeout(r, 300));
      const reader = await spawn(base);
      try {
        await go(reader);
        const r = await report(reader);
        assert.equal(r.promise, true, "the stale hit was a plain value, not a Promise");
        assert.equal(r.value, `the-key@${writer.pid}`);
      } finally {
        await finish([reader]);
      }
    } finally {
      await finish([writer]);
    }
  });
});

Deno.test("flights: cacheSet in one process wins over a computation already running in another", async () => {
  await withDirs(async (dir, markers) => {
    const base: Scenario = { dir, name: "set-wins", markers, mode: "async", computeMs: 2000 };
    const computer = await spawn(base);
    const setter = await spawn({ ...base, action: "set" });
    try {
      await go(computer);
      await waitForFile(`${markers}/start-${computer.pid}`);
      await go(setter);
      const s = await report(setter);
      assert.equal(s.error, undefined, JSON.stringify(s));
      const c = await report(computer);
      assert.equal(c.value, `the-key@${computer.pid}`, "its callers still get its value");
      const getter = await spawn({ ...base, action: "get" });
      try {
        await go(getter);
        const g = await report(getter);
        assert.equal(g.value, `set-by-${setter.pid}`);
      } finally {
        await finish([getter]);
      }
    } finally {
      await finish([computer, setter]);
    }
  });
});

Deno.test("flights: disposing a cache during a wait for another process rejects with the disposed error", async () => {
  await withDirs(async (dir, markers) => {
    const base: Scenario = { dir, name: "dispose-wait", markers, mode: "async", computeMs: 5000 };
    const owner = await spawn(base);
    const waiter = await spawn({ ...base, action: "dispose", disposeAfterMs: 300 });
    try {
      await go(owner);
      await waitForFile(`${markers}/start-${owner.pid}`);
      await go(waiter);
      const r = await report(waiter);
      assert.equal(r.error?.name, "Error", JSON.stringify(r));
      assert.match(r.error!.message, /disposed/);
    } finally {
      await finish([owner, waiter]);
    }
  });
});

Deno.test("flights: a synchronous call never blocks on an async computation of its own process (two caches of one name)", async () => {
  // In a child process: a hang there fails this test instead of hanging the suite.
  const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp_liveness_" });
  try {
    const run = await runScript(
      `
      import { cache } from "${new URL("../mod.ts", import.meta.url).href}";
      const opts = {
        backend: "shared",
        dir: ${JSON.stringify(dir)},
        name: "same-name",
        flightTimeout: ${2 * HANG_MS},
      } as const;
      const slow = cache(opts)(async (k: string) => {
        await new Promise((r) => setTimeout(r, 500));
        return "async:" + k;
      });
      const quick = cache(opts)((k: string) => "sync:" + k);
      const pending = slow("k");
      const v = quick("k");
      console.log(JSON.stringify({ sync: v, async: await pending }));
    `,
      [],
      HANG_MS,
    );
    assert.equal(run.code, 0, `the process hung or failed: ${run.stderr}`);
    assert.deepEqual(JSON.parse(run.stdout), { sync: "sync:k", async: "async:k" });
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("flights: an async result that cannot be serialized does not wedge its key, here or in another process", async () => {
  await withDirs(async (dir) => {
    class Point {
      constructor(readonly x: number) {}
    }
    let calls = 0;
    const f = cache({ backend: "shared", dir, name: "wedge", timeout: 20_000 })(
      async (x: number): Promise<Point> => {
        calls++;
        await null;
        return new Point(x);
      },
    );
    try {
      for (let i = 1; i <= 3; i++) {
        await assert.rejects(f(1), TypeError);
        assert.equal(calls, i, "the function ran again");
      }
      // Another process computes the key (the flight was released).
      const run = await runScript(
        `
        import { cache } from "${new URL("../mod.ts", import.meta.url).href}";
        const g = cache({ backend: "shared", dir: ${JSON.stringify(dir)}, name: "wedge" })(
          async (x: number) => x * 10,
        );
        console.log(await g(1));
      `,
        [],
        HANG_MS,
      );
      assert.equal(run.code, 0, "the other process hung on the key");
      assert.equal(run.stdout.trim(), "10");
    } finally {
      f[Symbol.dispose]();
    }
  });
});

Deno.test("flights: a refresh whose result cannot be serialized does not wedge its key", async () => {
  await withDirs(async (dir) => {
    let now = 0;
    let calls = 0;
    const f = cache({
      backend: "shared",
      dir,
      name: "wedge-refresh",
      ttl: 100,
      staleWhileRevalidate: 100,
      clock: () => now,
    })(async (x: number): Promise<unknown> => {
      calls++;
      await null;
      return calls === 1 ? x : new Map([[x, { f: () => 1 }]]);
    });
    try {
      assert.equal(await f(1), 1);
      now = 150; // stale: a refresh starts, and fails to store its result
      assert.equal(await f(1), 1);
      await new Promise((r) => setTimeout(r, 50));
      assert.equal(calls, 2);
      now = 300; // past the stale window: a miss, which must compute again
      await assert.rejects(
        Promise.race([
          f(1),
          new Promise((_, reject) => setTimeout(() => reject(new Error("wedged")), 20_000)),
        ]),
        TypeError,
      );
      assert.equal(calls, 3);
    } finally {
      f[Symbol.dispose]();
    }
  });
});
