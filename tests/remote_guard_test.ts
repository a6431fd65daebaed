import assert from "node:assert/strict";
import { GuardedTier } from "../src/remote/_remote_guard.ts";
import { FakeClock, flush } from "./fixtures/guard_clock.ts";
import type { BusListener, Invalidation, RemoteBus, RemoteStorage } from "../src/remote/remote.ts";

type Mode = "ok" | "fail" | "hang" | "throw";

/** A tier whose behaviour the test sets, counting calls and recording signals. */
class FakeTier implements RemoteStorage, RemoteBus {
  mode: Mode = "ok";
  calls = 0;
  signals: AbortSignal[] = [];
  store = new Map<string, Uint8Array>();
  listeners = new Set<BusListener>();
  subscribeCalls = 0;
  #run<T>(signal: AbortSignal | undefined, value: () => T): Promise<T> {
    this.calls++;
    if (signal) this.signals.push(signal);
    if (this.mode === "throw") throw new Error("sync throw");
    if (this.mode === "fail") return Promise.reject(new Error("connection refused"));
    if (this.mode === "hang") return new Promise(() => {});
    return Promise.resolve(value());
  }
  get(_n: string, key: Uint8Array, signal: AbortSignal): Promise<Uint8Array | undefined> {
    return this.#run(signal, () => this.store.get(key.join()));
  }
  set(
    _n: string,
    key: Uint8Array,
    value: Uint8Array,
    _t: number | undefined,
    signal: AbortSignal,
  ): Promise<void> {
    return this.#run(signal, () => void this.store.set(key.join(), value));
  }
  delete(_n: string, key: Uint8Array, signal: AbortSignal): Promise<boolean> {
    return this.#run(signal, () => this.store.delete(key.join()));
  }
  clear(_n: string, signal: AbortSignal): Promise<void> {
    return this.#run(signal, () => this.store.clear());
  }
  publish(_n: string, message: Invalidation, signal: AbortSignal): Promise<void> {
    return this.#run(signal, () => this.listeners.forEach((l) => l.message(message)));
  }
  subscribe(_n: string, listener: BusListener): Promise<() => Promise<void>> {
    this.subscribeCalls++;
    return this.#run(undefined, () => {
      this.listeners.add(listener);
      return () => {
        this.listeners.delete(listener);
        return Promise.resolve();
      };
    });
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

function setup(options: { threshold?: number } = {}): {
  tier: FakeTier;
  clock: FakeClock;
  guard: GuardedTier;
  lines: string[];
} {
  const tier = new FakeTier();
  const clock = new FakeClock();
  const lines: string[] = [];
  const guard = new GuardedTier(tier, tier, "users", {
    timeout: 100,
    failureThreshold: options.threshold ?? 3,
    tierName: "redis",
    clock,
    warn: (line) => lines.push(line),
  });
  return { tier, clock, guard, lines };
}

const K = new Uint8Array([1, 2]);
const V = new Uint8Array([9]);
/** A bus listener of messages; gaps are counted in `gaps`. */
function listen(message: (m: Invalidation) => unknown): BusListener & { gaps: number } {
  const l = { gaps: 0, message: (m: Invalidation) => void message(m), gap: () => void l.gaps++ };
  return l;
}

Deno.test("GuardedTier passes calls through while the tier works", async () => {
  const { tier, guard, lines } = setup();
  assert.equal(await guard.set(K, V, 1000), true);
  assert.deepEqual(await guard.get(K), V);
  assert.equal(await guard.delete(K), true);
  assert.equal(await guard.get(K), undefined);
  assert.equal(await guard.clear(), true);
  assert.equal(tier.calls, 5);
  assert.equal(guard.errors, 0);
  assert.equal(guard.state, "closed");
  assert.deepEqual(lines, []);
});

Deno.test("GuardedTier never rejects: failures and sync throws resolve to undefined/false and count", async () => {
  const { tier, guard } = setup({ threshold: 100 });
  tier.mode = "fail";
  assert.equal(await guard.get(K), undefined);
  assert.equal(await guard.set(K, V, undefined), false);
  assert.equal(await guard.delete(K), false);
  assert.equal(await guard.clear(), false);
  assert.equal(await guard.publish({ origin: "o", stamp: 1, keys: "clear" }), false);
  tier.mode = "throw";
  assert.equal(await guard.get(K), undefined);
  assert.equal(guard.errors, 6);
  assert.equal(tier.calls, 6);
});

Deno.test("GuardedTier times a hung call out: its signal aborts and the call counts as failed", async () => {
  const { tier, clock, guard } = setup();
  tier.mode = "hang";
  const pending = guard.get(K);
  await clock.advance(99);
  assert.equal(tier.signals[0]!.aborted, false);
  await clock.advance(1);
  assert.equal(await pending, undefined);
  assert.equal(tier.signals[0]!.aborted, true);
  assert.equal((tier.signals[0]!.reason as DOMException).name, "TimeoutError");
  assert.equal(guard.errors, 1);
  assert.equal(clock.pending, 0);
});

Deno.test("GuardedTier logs one line when failing starts and one when it recovers", async () => {
  const { tier, guard, lines } = setup({ threshold: 100 });
  tier.mode = "fail";
  for (let i = 0; i < 5; i++) await guard.get(K);
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /cache "users": redis tier failing.*connection refused/);
  tier.mode = "ok";
  await guard.get(K);
  await guard.get(K);
  assert.equal(lines.length, 2);
  assert.match(lines[1]!, /cache "users": redis tier recovered/);
  tier.mode = "fail";
  await guard.get(K);
  assert.equal(lines.length, 3, "a new outage logs again");
});

Deno.test("GuardedTier breaker: opens after 3 failures, skips the tier, retries after a backoff capped at 10 s", async (t) => {
  const { tier, clock, guard } = setup();
  tier.mode = "fail";
  for (let i = 0; i < 3; i++) await guard.get(K);
  assert.equal(guard.state, "open");
  assert.equal(tier.calls, 3);

  await t.step("open: no tier calls", async () => {
    for (let i = 0; i < 10; i++) assert.equal(await guard.get(K), undefined);
    assert.equal(tier.calls, 3);
    assert.equal(guard.errors, 3);
    assert.equal(guard.skipped, 10);
  });

  await t.step("trials after 1, 2, 4, 8, 10, 10 s", async () => {
    const waits = [1000, 2000, 4000, 8000, 10_000, 10_000];
    for (const wait of waits) {
      const before = tier.calls;
      await clock.advance(wait - 1);
      await guard.get(K);
      assert.equal(tier.calls, before, `no trial before ${wait} ms`);
      await clock.advance(1);
      await guard.get(K);
      assert.equal(tier.calls, before + 1, `one trial at ${wait} ms`);
      assert.equal(guard.state, "open");
    }
  });

  await t.step("half-open: one trial at a time", async () => {
    tier.mode = "hang";
    await clock.advance(10_000);
    const trial = guard.get(K);
    await flush();
    const before = tier.calls;
    assert.equal(await guard.get(K), undefined);
    assert.equal(tier.calls, before, "a second call during the trial is skipped");
    assert.equal(guard.state, "half-open");
    await clock.advance(100);
    assert.equal(await trial, undefined);
    assert.equal(guard.state, "open");
  });

  await t.step("a successful trial closes it", async () => {
    tier.mode = "ok";
    await clock.advance(10_000);
    assert.equal(await guard.set(K, V, undefined), true);
    assert.equal(guard.state, "closed");
    assert.deepEqual(await guard.get(K), V);
  });

  await t.step("after closing, the backoff starts at 1 s again", async () => {
    tier.mode = "fail";
    for (let i = 0; i < 3; i++) await guard.get(K);
    const before = tier.calls;
    await clock.advance(1000);
    await guard.get(K);
    assert.equal(tier.calls, before + 1);
  });
});

Deno.test("GuardedTier.subscribe passes messages through and ends the subscription", async () => {
  const { tier, guard } = setup();
  const got: Invalidation[] = [];
  const end = await guard.subscribe(listen((m) => got.push(m)));
  await guard.publish({ origin: "a", stamp: 1, keys: [K] });
  assert.deepEqual(got, [{ origin: "a", stamp: 1, keys: [K] }]);
  await end();
  await guard.publish({ origin: "a", stamp: 1, keys: "clear" });
  assert.equal(got.length, 1);
  assert.equal(tier.listeners.size, 0);
});

Deno.test("GuardedTier.subscribe retries under the breaker until it succeeds, never twice", async () => {
  const { tier, clock, guard } = setup({ threshold: 1 });
  tier.mode = "fail";
  const got: Invalidation[] = [];
  const end = await guard.subscribe(listen((m) => got.push(m)));
  assert.equal(tier.subscribeCalls, 1);
  assert.equal(guard.state, "open");
  await clock.advance(999);
  assert.equal(tier.subscribeCalls, 1);
  await clock.advance(1);
  assert.equal(tier.subscribeCalls, 2, "retried at the breaker's trial time");
  tier.mode = "ok";
  await clock.advance(2000);
  assert.equal(tier.subscribeCalls, 3);
  assert.equal(tier.listeners.size, 1);
  await clock.advance(60_000);
  assert.equal(tier.subscribeCalls, 3, "no retries once subscribed");
  await guard.publish({ origin: "b", stamp: 1, keys: "clear" });
  assert.equal(got.length, 1);
  await end();
  assert.equal(tier.listeners.size, 0);
  // The publish's deadline timer ends with its window; no retry timer is left.
  await clock.advance(100);
  assert.equal(clock.pending, 0);
});

Deno.test("GuardedTier.subscribe: ending it while retrying stops the retries", async () => {
  const { tier, clock, guard } = setup({ threshold: 1 });
  tier.mode = "fail";
  const end = await guard.subscribe(listen(() => {}));
  await end();
  tier.mode = "ok";
  await clock.advance(60_000);
  assert.equal(tier.subscribeCalls, 1);
  assert.equal(tier.listeners.size, 0);
});

Deno.test("GuardedTier.subscribe: a subscription landing after its timeout is kept, not doubled", async () => {
  const { tier, clock, guard } = setup({ threshold: 1 });
  let land: (() => void) | undefined;
  const original = tier.subscribe.bind(tier);
  tier.subscribe = (_name, listener) => {
    tier.subscribeCalls++;
    return new Promise((resolve) => {
      land = () => {
        tier.listeners.add(listener);
        resolve(() => {
          tier.listeners.delete(listener);
          return Promise.resolve();
        });
      };
    });
  };
  const endP = guard.subscribe(listen(() => {}));
  await clock.advance(100);
  const end = await endP;
  assert.equal(guard.errors, 1);
  land!();
  await flush();
  tier.subscribe = original;
  await clock.advance(60_000);
  assert.equal(tier.subscribeCalls, 1);
  assert.equal(tier.listeners.size, 1);
  await end();
  assert.equal(tier.listeners.size, 0);
});

Deno.test("GuardedTier rejects bad options with a RangeError naming them", () => {
  const tier = new FakeTier();
  assert.throws(
    () => new GuardedTier(tier, tier, "x", { timeout: 0 }),
    /remoteTimeout.*received 0/,
  );
  assert.throws(() => new GuardedTier(tier, tier, "x", { timeout: NaN }), RangeError);
  assert.throws(
    () => new GuardedTier(tier, tier, "x", { timeout: 10, failureThreshold: -1 }),
    /failureThreshold/,
  );
});

Deno.test("GuardedTier.subscribe during another call's trial waits for it, without spinning", async () => {
  const { tier, clock, guard } = setup({ threshold: 1 });
  tier.mode = "fail";
  await guard.get(K);
  assert.equal(guard.state, "open");
  await clock.advance(1000);
  tier.mode = "hang";
  const trial = guard.get(K); // the trial: the breaker is half-open while it hangs
  await flush();
  assert.equal(guard.state, "half-open");
  tier.mode = "ok";
  const end = await guard.subscribe(listen(() => {}));
  assert.equal(tier.subscribeCalls, 0, "skipped while the trial is in flight");
  await clock.advance(99);
  assert.equal(tier.subscribeCalls, 0, "no retry storm during the trial");
  assert.equal(await Promise.race([trial, Promise.resolve("pending")]), "pending");
  await clock.advance(1);
  assert.equal(await trial, undefined, "the trial timed out");
  await clock.advance(2000);
  assert.equal(tier.subscribeCalls, 1, "subscribed at the next trial time");
  assert.equal(tier.listeners.size, 1);
  await end();
});

Deno.test("GuardedTier: calls within an eighth of the timeout share one timer and one signal", async () => {
  const { tier, clock, guard } = setup();
  tier.store.set(K.join(), V);
  const calls = Array.from({ length: 10 }, () => guard.get(K));
  assert.equal(clock.pending, 1, "one deadline timer for ten calls");
  assert.equal(new Set(tier.signals).size, 1, "one signal for ten calls");
  for (const v of await Promise.all(calls)) assert.deepEqual(v, V);
  await clock.advance(12); // within the window: the same timer
  await guard.get(K);
  assert.equal(new Set(tier.signals).size, 1);
  await clock.advance(1); // past an eighth of 100 ms: a new window
  await guard.get(K);
  assert.equal(new Set(tier.signals).size, 2);
  await clock.advance(100);
  assert.equal(clock.pending, 0, "the windows' timers end with them");
  // A hung call still times out with its window, and only then is an error built.
  tier.mode = "hang";
  const hung = guard.get(K);
  await clock.advance(100);
  assert.equal(await hung, undefined);
  assert.equal(guard.errors, 1);
  assert.equal(tier.signals.at(-1)!.reason?.name, "TimeoutError");
});

Deno.test("GuardedTier: a tier answering a value instead of a Promise never rejects", async () => {
  const { tier, guard } = setup();
  const broken = tier as unknown as { get: () => unknown };
  broken.get = () => new Uint8Array([5]);
  assert.deepEqual(await guard.get(K), new Uint8Array([5]));
});
