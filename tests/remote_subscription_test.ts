// The remote tier's subscription and closing: no leak, no lost message.
// The guard runs on a manual clock (no timers, no timed assertions).
import assert from "node:assert/strict";
import { cache } from "../mod.ts";
import { GuardedTier } from "../src/remote/_remote_guard.ts";
import { FakeClock, flush } from "./fixtures/guard_clock.ts";
import {
  type BusListener,
  type Invalidation,
  type RemoteBus,
  remoteTier,
} from "../src/remote/remote.ts";
import { FakeParts, FakeServer, fakeTier } from "./fixtures/fake_tier.ts";
import { until } from "./fixtures/until.ts";

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** A bus whose subscriptions land when the test says; counts the live ones. */
class SlowBus implements RemoteBus {
  live = 0;
  pending: (() => void)[] = [];
  publish(_n: string, _m: Invalidation, _s: AbortSignal): Promise<void> {
    return Promise.resolve();
  }
  subscribe(_n: string, _l: BusListener): Promise<() => Promise<void>> {
    return new Promise((resolve) => {
      this.pending.push(() => {
        this.live++;
        let ended = false;
        resolve(() => {
          if (!ended) {
            ended = true;
            this.live--;
          }
          return Promise.resolve();
        });
      });
    });
  }
  close(): Promise<void> {
    return Promise.resolve();
  }
}

const storage = new FakeParts(new FakeServer());

for (const order of ["the late one first", "the retry first"] as const) {
  Deno.test(`remote tier: GuardedTier.subscribe: a timed-out subscription landing with its retry (${order}) leaves one subscription, ended by end()`, async () => {
    const bus = new SlowBus();
    const clock = new FakeClock();
    const guard = new GuardedTier(storage, bus, "users", {
      timeout: 100,
      failureThreshold: 1,
      clock,
      warn: () => {},
    });
    let gaps = 0;
    const endP = guard.subscribe({ message: () => {}, gap: () => void gaps++ });
    await clock.advance(100); // the first attempt times out; the breaker opens
    const end = await endP;
    await clock.advance(1000); // the retry, at the breaker's trial time
    assert.equal(bus.pending.length, 2, "two subscribe calls under way");
    const [late, retry] = bus.pending;
    if (order === "the late one first") {
      late!();
      await flush();
      retry!();
    } else {
      retry!();
      await flush();
      late!();
    }
    await flush();
    await clock.advance(60_000);
    assert.equal(bus.live, 1, "one live subscription (each message delivered once)");
    await end();
    assert.equal(bus.live, 0, "end() ends every subscription that was made");
  });
}

/** A client whose deletes wait for the test, and whose calls reject once it is closed. */
class ClosingParts extends FakeParts {
  holdDeletes: Promise<void> | undefined = undefined;
  isClosed = false;
  override delete(name: string, key: Uint8Array, signal: AbortSignal): Promise<boolean> {
    if (this.isClosed) return Promise.reject(new Error("the client is closed"));
    const held = this.holdDeletes;
    return held === undefined
      ? super.delete(name, key, signal)
      : held.then(() => super.delete(name, key, signal));
  }
  override publish(name: string, message: Invalidation, signal: AbortSignal): Promise<void> {
    if (this.isClosed) return Promise.reject(new Error("the client is closed"));
    return super.publish(name, message, signal);
  }
  override close(): Promise<void> {
    this.isClosed = true;
    return super.close();
  }
}

Deno.test("remote tier: closing the tier after a cache was disposed still sends the change that cache had under way", async () => {
  const server = new FakeServer();
  const name = `rt-close-${crypto.randomUUID()}`;
  const parts = new ClosingParts(server);
  const tierA = remoteTier({ storage: parts, bus: parts });
  const tierB = fakeTier(server);
  let n = 0;
  const make = (tier: typeof tierA) =>
    cache({ name, remote: tier, ttl: 60_000 })(async (k: number) => {
      await null;
      return `${k}#${++n}`;
    });
  const a = make(tierA);
  const b = make(tierB);
  try {
    const first = await a(1);
    await until("a's value lands", () => server.entries.size === 1);
    assert.equal(await b(1), first);
    // a deletes key 1; the delete is under way (slow server) when the cache is disposed
    // (`using` ends its scope), and the tier is closed a little later.
    const held = Promise.withResolvers<void>();
    parts.holdDeletes = held.promise;
    a.cacheDelete(1);
    await sleep(0);
    a[Symbol.dispose]();
    await sleep(10);
    const closing = tierA.close();
    await sleep(10);
    held.resolve();
    await closing;
    await sleep(10);
    assert.equal(server.entries.size, 0, "the delete reached the storage");
    assert.equal(b.cacheGet(1), undefined, "the delete reached the other host");
  } finally {
    b[Symbol.dispose]();
    await tierB.close();
  }
});
