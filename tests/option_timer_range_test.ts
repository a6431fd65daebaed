// Options of cache() that become timers (`timeout`, `remoteTimeout`) must be refused at
// decoration time when no timer can hold them. A timer's delay is a signed 32-bit int:
// Deno (as Node) sets any delay above 2^31 - 1 ms (about 24.8 days) to 1 ms, with a
// TimeoutOverflowWarning. Before the fix, `timeout: 2 ** 31` passed validation ("positive
// and finite") and every async call then rejected with a TimeoutError after ~1 ms, whose
// message claims it waited 2147483648 ms; `remoteTimeout: 2 ** 31` made every remote call
// time out at once (the tier counted as failing, `remoteErrors`).
import assert from "node:assert/strict";
import { cache, cacheControls } from "../mod.ts";
import { FakeServer, fakeTier } from "./fixtures/fake_tier.ts";

const LONGEST_TIMER = 2 ** 31 - 1;

for (const value of [2 ** 31, 2 ** 32 + 1, 1e12]) {
  Deno.test(`cache(): timeout ${value} (beyond the longest timer) is a RangeError naming it, at decoration`, () => {
    assert.throws(
      () => cache({ timeout: value }),
      (e: unknown) =>
        e instanceof RangeError && /timeout/.test(e.message) &&
        e.message.includes(`received ${value}`),
    );
  });

  Deno.test(`cache(): remoteTimeout ${value} (beyond the longest timer) is a RangeError naming it, at decoration`, () => {
    const server = new FakeServer();
    assert.throws(
      () => cache({ name: "rt-range", remote: fakeTier(server), remoteTimeout: value }),
      (e: unknown) =>
        e instanceof RangeError && /remoteTimeout/.test(e.message) &&
        e.message.includes(`received ${value}`),
    );
  });
}

Deno.test("cache(): the longest timer is a valid timeout, and a call is not cut short by it", async () => {
  const f = cache({ timeout: LONGEST_TIMER })(async (x: number) => {
    await new Promise((r) => setTimeout(r, 30));
    return x * 2;
  });
  assert.equal(await f(21), 42);
  cacheControls(f)[Symbol.dispose]();
});

Deno.test("cache(): the longest timer is a valid remoteTimeout, and a slow remote is not a failure", async () => {
  const server = new FakeServer();
  server.delay = 20;
  const name = "rt-longest";
  const a = cache({ name, remote: fakeTier(server), remoteTimeout: LONGEST_TIMER })(
    async (x: number) => await Promise.resolve(x * 2),
  );
  const b = cache({ name, remote: fakeTier(server), remoteTimeout: LONGEST_TIMER })(
    async (x: number) => await Promise.resolve(x * 3),
  );
  try {
    assert.equal(await a(1), 2);
    // The write-through reaches the remote (20 ms late), then b finds it there.
    for (let i = 0; i < 50 && server.entries.size === 0; i++) {
      await new Promise((r) => setTimeout(r, 10));
    }
    assert.equal(await b(1), 2, "b reads a's value from the remote tier");
    const info = cacheControls(b).cacheInfo();
    assert.equal(info.remoteErrors, 0);
    assert.equal(info.remoteHits, 1);
  } finally {
    cacheControls(a)[Symbol.dispose]();
    cacheControls(b)[Symbol.dispose]();
  }
});

Deno.test("cache(): a timeout of 2^31 ms never rejects a 30 ms call after 1 ms (refused, or honoured)", async () => {
  let f: (x: number) => Promise<number>;
  try {
    f = cache({ timeout: 2 ** 31 })(async (x: number) => {
      await new Promise((r) => setTimeout(r, 30));
      return x * 2;
    });
  } catch (e) {
    assert.ok(e instanceof RangeError && /timeout/.test(e.message), String(e));
    return;
  }
  const started = performance.now();
  await assert.doesNotReject(
    f(21),
    "rejected after " + (performance.now() - started).toFixed(0) + " ms",
  );
  cacheControls(f)[Symbol.dispose]();
});

Deno.test("remoteTier, redisTier and kvTier: options that become timers beyond the longest timer are RangeErrors naming them", async () => {
  const { remoteTier } = await import("../src/remote/remote.ts");
  const { redisTier } = await import("../src/remote/redis.ts");
  const { kvTier } = await import("../src/remote/kv.ts");
  const server = new FakeServer();
  const storage = fakeTier(server).storage;
  const beyond = LONGEST_TIMER + 1;
  assert.throws(
    () => remoteTier({ storage }, { timeout: beyond }),
    (e: unknown) =>
      e instanceof RangeError && /timeout/.test(e.message) && /2147483648/.test(e.message),
  );
  remoteTier({ storage }, { timeout: LONGEST_TIMER }); // the longest timer itself is fine
  for (const option of ["timeout", "connectTimeout", "reconnectMaxDelay"]) {
    await assert.rejects(
      () => redisTier({ url: "redis://127.0.0.1:1" }, { [option]: beyond }),
      (e: unknown) =>
        e instanceof RangeError && e.message.includes(option) && /2147483648/.test(e.message),
      option,
    );
  }
  for (const option of ["timeout", "pollInterval"]) {
    await assert.rejects(
      async () => await kvTier({ path: ":memory:" }, { [option]: beyond }),
      (e: unknown) =>
        e instanceof RangeError && e.message.includes(option) && /2147483648/.test(e.message),
      option,
    );
  }
});
