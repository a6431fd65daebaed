// ttlJitter: each entry's TTL is `ttl` plus a uniform random part in [0, ttlJitter), on
// both engines (scripts/test.ts runs this file with each) and the shared backend, where
// another process honours the jittered TTL of an entry it did not store.
import assert from "node:assert/strict";
import { cache } from "../mod.ts";
import { backends } from "./fixtures/backends.ts";
import { runScript } from "./fixtures/run_child.ts";

/** How many of `keys` hit at time `t` (each call that misses is counted by `calls`). */
function hitsAt(f: (k: number) => number, keys: number, calls: { n: number }): number {
  const before = calls.n;
  for (let k = 0; k < keys; k++) f(k);
  return keys - (calls.n - before);
}

Deno.test("ttlJitter: entries stored together expire spread over [ttl, ttl + ttlJitter)", async () => {
  await backends((label, options) => {
    let now = 1_000_000;
    const calls = { n: 0 };
    const KEYS = 400;
    const make = (): ((k: number) => number) & { cacheClear(): void; [Symbol.dispose](): void } =>
      cache({ ...options, maxSize: 1024, ttl: 1000, ttlJitter: 1000, clock: () => now })(
        (k: number) => {
          calls.n++;
          return k;
        },
      );
    const f = make();
    try {
      for (let k = 0; k < KEYS; k++) f(k);
      assert.equal(calls.n, KEYS);
      now += 999;
      assert.equal(hitsAt(f, KEYS, calls), KEYS, `${label}: none expired before ttl`);
      // Each hit-or-miss pass stores the missed keys again: measure on fresh copies of the
      // population, one time point each.
      const alive: number[] = [];
      for (const dt of [1250, 1500, 1750]) {
        const g = make();
        const t0 = now = 2_000_000 + dt * 10;
        for (let k = 0; k < KEYS; k++) g(k);
        now = t0 + dt;
        alive.push(hitsAt(g, KEYS, calls) / KEYS);
        g.cacheClear();
        g[Symbol.dispose]();
      }
      // Uniform in [1000, 2000): about 75%, 50% and 25% alive (binomial sd ~2.5%).
      assert.ok(alive[0]! > 0.6 && alive[0]! < 0.9, `${label}: ${alive}`);
      assert.ok(alive[1]! > 0.35 && alive[1]! < 0.65, `${label}: ${alive}`);
      assert.ok(alive[2]! > 0.1 && alive[2]! < 0.4, `${label}: ${alive}`);
      now += 100_000;
      assert.equal(hitsAt(f, KEYS, calls), 0, `${label}: all expired after ttl + ttlJitter`);
    } finally {
      f[Symbol.dispose]();
    }
    return Promise.resolve();
  });
});

Deno.test("ttlJitter: cacheSet entries are jittered too", () => {
  let now = 0;
  const f = cache({ maxSize: 256, ttl: 100, ttlJitter: 100, clock: () => now })((k: number) => k);
  for (let k = 0; k < 200; k++) f.cacheSet(-k, k);
  now = 150;
  let alive = 0;
  for (let k = 0; k < 200; k++) if (f.cacheGet(k) !== undefined) alive++;
  assert.ok(alive > 60 && alive < 140, `${alive} of 200 cacheSet entries alive at 1.5 ttl`);
});

Deno.test("ttlJitter: bad values are errors at decoration naming the option", () => {
  assert.throws(() => cache({ ttlJitter: 100 }), /ttlJitter needs ttl/);
  assert.throws(() => cache({ ttl: 10, ttlJitter: 0 }), RangeError);
  assert.throws(() => cache({ ttl: 10, ttlJitter: -1 }), /ttlJitter.*-1/);
  assert.throws(() => cache({ ttl: 10, ttlJitter: Infinity }), RangeError);
  assert.throws(() => cache({ ttl: 10, ttlJitter: "1s" as unknown as number }), TypeError);
});

Deno.test("ttlJitter: another process honours the jittered TTL of a shared entry it did not store", async () => {
  if ((await Deno.permissions.query({ name: "ffi" })).state !== "granted") return;
  const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp_jitter_" });
  try {
    // The child stores 300 keys at Unix time T with ttl 1000 + jitter 1000, then another
    // cache (no jitter, ttl 1000) in a second process counts those alive at T + 1500.
    const code = `import { cache } from "${new URL("../mod.ts", import.meta.url).href}";
      const [mode, dir, t] = Deno.args;
      let now = Number(t);
      let calls = 0;
      const f = cache({
        backend: "shared", dir, name: "jitter", maxSize: 512, ttl: 1000,
        ...(mode === "write" ? { ttlJitter: 1000 } : {}),
        clock: () => now,
      })((k: number) => { calls++; return k; });
      for (let k = 0; k < 300; k++) f(k);
      console.log(300 - calls);`;
    const run = async (mode: string, t: number): Promise<number> => {
      const out = await runScript(code, [mode, dir, String(t)]);
      assert.equal(out.code, 0, out.stderr);
      return Number(out.stdout);
    };
    const T = 1_700_000_000_000;
    assert.equal(await run("write", T), 0, "the writer computed every key");
    const alive = await run("read", T + 1500);
    assert.ok(alive > 90 && alive < 210, `${alive} of 300 alive at ttl + half the jitter`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
