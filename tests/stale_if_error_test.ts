// staleIfError and errorBackoff, with an injected clock, on both engines (scripts/test.ts
// runs this file with each) and the shared backend; and across processes: a process whose
// computation fails gets the value another process stored.
import assert from "node:assert/strict";
import { cache } from "../mod.ts";
import { backends } from "./fixtures/backends.ts";
import { runScript } from "./fixtures/run_child.ts";

Deno.test("staleIfError: a failed miss gets the value stored less than ttl + staleIfError ago", async () => {
  await backends((label, options) => {
    let now = 1_000_000;
    let calls = 0;
    let failing = false;
    const f = cache({
      ...options,
      ttl: 100,
      staleIfError: 1000,
      errorBackoff: 1,
      clock: () => now,
    })((k: number): number => {
      calls++;
      if (failing) throw new Error(`origin down (${k})`);
      return k * 2;
    });
    try {
      assert.equal(f(21), 42);
      failing = true;
      now += 150;
      assert.equal(f(21), 42, `${label}: the stale value, not the error`);
      assert.equal(calls, 2, "the function ran");
      now += 2;
      assert.equal(f(21), 42);
      assert.equal(f.cacheInfo().staleHits, 2);
      // Past ttl + staleIfError: the error.
      now += 1000;
      assert.throws(() => f(21), /origin down/);
      // A key never stored: the error.
      assert.throws(() => f(7), /origin down/);
      failing = false;
      assert.equal(f(21), 42);
    } finally {
      f[Symbol.dispose]();
    }
    return Promise.resolve();
  });
});

Deno.test("staleIfError: an async computation's callers (joined too) get the stale value", async () => {
  await backends(async (label, options) => {
    let now = 1_000_000;
    let fail = false;
    const f = cache({ ...options, ttl: 100, staleIfError: 1000, clock: () => now })(
      async (k: number): Promise<string> => {
        await new Promise((r) => setTimeout(r, 5));
        if (fail) throw new Error("origin down");
        return `v${k}`;
      },
    );
    try {
      assert.equal(await f(1), "v1");
      fail = true;
      now += 150;
      const [a, b] = await Promise.all([f(1), f(1)]);
      assert.deepEqual([a, b], ["v1", "v1"], label);
      assert.equal(f.cacheInfo().staleHits, 1, "one failed computation answered stale");
    } finally {
      f[Symbol.dispose]();
    }
  });
});

Deno.test("errorBackoff: after a failure, calls within the back-off get the stale value without calling the origin", async () => {
  await backends((label, options) => {
    let now = 1_000_000;
    let origin = 0;
    let down = false;
    const f = cache({
      ...options,
      ttl: 100,
      staleIfError: 60_000,
      errorBackoff: 5000,
      clock: () => now,
    })((k: number): number => {
      origin++;
      if (down) throw new Error("down");
      return k + 1;
    });
    try {
      assert.equal(f(1), 2);
      down = true;
      now += 200;
      for (let i = 0; i < 10; i++) {
        assert.equal(f(1), 2);
        now += 100;
      }
      assert.equal(origin, 2, `${label}: the origin was called once after it failed`);
      now += 5000; // the back-off ended: the next call tries the origin again
      assert.equal(f(1), 2);
      assert.equal(origin, 3);
      down = false;
      now += 5001;
      assert.equal(f(1), 2);
      assert.equal(origin, 4);
      assert.equal(f(1), 2);
      assert.equal(origin, 4, "a success ends the back-off and stores the value");
    } finally {
      f[Symbol.dispose]();
    }
    return Promise.resolve();
  });
});

Deno.test("staleIfError with staleWhileRevalidate: each window applies on its own", async () => {
  await backends(async (label, options) => {
    let now = 1_000_000;
    let calls = 0;
    let down = false;
    const f = cache({
      ...options,
      ttl: 100,
      staleWhileRevalidate: 100,
      staleIfError: 1000,
      errorBackoff: 1,
      clock: () => now,
    })(async (k: number): Promise<number> => {
      calls++;
      await null;
      if (down) throw new Error("down");
      return k * 10 + calls;
    });
    try {
      assert.equal(await f(1), 11);
      down = true;
      // In the stale window: the stale value at once, and a refresh (which fails).
      now += 150;
      assert.equal(await f(1), 11);
      await new Promise((r) => setTimeout(r, 20));
      assert.equal(calls, 2, `${label}: one refresh`);
      // Past the stale window, within staleIfError: the call computes (no stale value at
      // once), fails, and gets the stale value.
      now += 200;
      assert.equal(await f(1), 11);
      assert.equal(calls, 3, "past the stale window the call waited for a computation");
      // Past both windows: the error.
      now += 2000;
      await assert.rejects(f(1), /down/);
    } finally {
      f[Symbol.dispose]();
    }
  });
});

Deno.test("staleIfError, errorBackoff: bad values are errors at decoration naming the option", () => {
  assert.throws(() => cache({ staleIfError: 100 }), /staleIfError needs ttl/);
  assert.throws(() => cache({ ttl: 10, staleIfError: 0 }), RangeError);
  assert.throws(() => cache({ ttl: 10, staleIfError: -3 }), /staleIfError.*-3/);
  assert.throws(() => cache({ ttl: 10, errorBackoff: 100 }), /errorBackoff needs staleIfError/);
  assert.throws(() => cache({ ttl: 10, staleIfError: 10, errorBackoff: NaN }), RangeError);
  assert.throws(
    () => cache({ ttl: 10, staleIfError: 10, errorBackoff: "5s" as unknown as number }),
    TypeError,
  );
});

Deno.test("staleIfError: a process whose computation fails gets the value another process stored", async () => {
  if ((await Deno.permissions.query({ name: "ffi" })).state !== "granted") return;
  const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp_sie_" });
  try {
    const code = `import { cache } from "${new URL("../mod.ts", import.meta.url).href}";
      const [mode, dir, t] = Deno.args;
      const f = cache({
        backend: "shared", dir, name: "sie", ttl: 1000, staleIfError: 60_000,
        clock: () => Number(t),
      })(async (k: number) => {
        if (mode === "fail") throw new Error("origin down in " + Deno.pid);
        return "stored by " + Deno.pid;
      });
      try {
        console.log(JSON.stringify({ value: await f(1), info: f.cacheInfo() }));
      } catch (e) {
        console.log(JSON.stringify({ error: String(e) }));
      }`;
    const run = async (mode: string, t: number): Promise<Record<string, unknown>> => {
      const out = await runScript(code, [mode, dir, String(t)]);
      assert.equal(out.code, 0, out.stderr);
      return JSON.parse(out.stdout);
    };
    const T = 1_700_000_000_000;
    const w = await run("ok", T);
    const stored = w.value as string;
    assert.match(stored, /^stored by \d+$/);
    const r = await run("fail", T + 5000);
    assert.equal(r.value, stored);
    assert.equal((r.info as { staleHits: number }).staleHits, 1);
    const late = await run("fail", T + 62_000);
    assert.match(String(late.error), /origin down/);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
