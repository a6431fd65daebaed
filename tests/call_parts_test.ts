// Unit tests of the parts of the call path (src/call/): the computation pool, in-process
// single-flight and its bounded joins, the counters, the tiers and the loader (the miss
// path), each driven directly, with a Map store, a fake remote link and a scripted flight
// table in place of the real ones.
import assert from "node:assert/strict";
import { free, hold, isThenable } from "../src/call/computation.ts";
import { boundedJoin, InFlight } from "../src/call/in_flight.ts";
import { FileCounters, LocalCounters } from "../src/call/counters.ts";
import { DISPOSED, RemoteTiers, Tiers } from "../src/call/tiers.ts";
import { FeatureLoader, Loader } from "../src/call/loader.ts";
import {
  type FlightClaim,
  type FlightEnd,
  type Flights,
  MISS,
  peeked,
} from "../src/store/store.ts";
import type { RemoteLink } from "../src/remote/_remote_link.ts";
import { CallContext } from "../src/call/context.ts";
import { processTags } from "../src/call/tags.ts";
import { keyOf, MapStore } from "./fixtures/map_store.ts";

// deno-lint-ignore no-explicit-any
type Fn = (...args: any[]) => any;

/** What `cached()` does with a loader: look up, else the miss path. */
function call(loader: Loader, store: MapStore, key: string, ...args: unknown[]): unknown {
  const k = keyOf(key);
  const hit = store.get(k);
  if (hit !== MISS) return hit;
  const r = loader.afterMiss(k.buf, k.len, undefined, args);
  if (r !== MISS) return r;
  try {
    return loader.endMiss(loader.missHeld, loader.fn.apply(undefined, args));
  } catch (e) {
    return loader.failMiss(e);
  }
}

interface Parts {
  fn: Fn;
  name: string;
  tiers: Tiers;
  counters: LocalCounters;
  inFlight: InFlight;
  readsContext: () => boolean;
  flightTimeout: number;
  tagClock: typeof processTags;
  tagsOf: undefined;
  store: MapStore;
}

function parts(fn: Fn, store = new MapStore()): Parts {
  return {
    fn,
    name: "f",
    tiers: new Tiers(store),
    counters: new LocalCounters(),
    inFlight: new InFlight(),
    readsContext: (): boolean => false,
    flightTimeout: 60_000,
    tagClock: processTags,
    tagsOf: undefined,
    store,
  };
}

Deno.test("computation: hold copies the key bytes into a pooled buffer; free gives it back clean", () => {
  const src = Uint8Array.from([1, 2, 3, 4]);
  const c = hold(src, 3, "k");
  assert.deepEqual([...c.buf.subarray(0, c.len)], [1, 2, 3]);
  assert.equal(c.pkey, "k");
  src[0] = 9;
  assert.equal(c.buf[0], 1, "a copy, not a view");
  c.flight = true;
  c.ctx = new CallContext(undefined);
  const ctx = c.ctx;
  free(c);
  assert.equal(ctx.live, false, "its context no longer stores anything");
  assert.equal(c.flight, false);
  assert.equal(c.ctx, undefined);
  assert.equal(hold(src, 2, undefined), c, "the pool reuses it");
  assert.ok(isThenable({ then(): void {} }) && !isThenable({ then: 1 }) && !isThenable(null));
});

Deno.test("in_flight: computations by key bytes; take removes only the current one", () => {
  const f = new InFlight();
  const a = hold(Uint8Array.from([1, 2]), 2, undefined);
  const b = hold(Uint8Array.from([1, 2]), 2, undefined);
  const other = hold(Uint8Array.from([1, 3]), 2, undefined);
  f.add(a);
  f.add(other);
  assert.equal(f.size, 2);
  assert.equal(f.find(Uint8Array.from([1, 2, 9]), 2), a, "found by its bytes");
  assert.equal(f.find(Uint8Array.from([1, 4]), 2), undefined);
  assert.equal(f.take(b), false, "not the computation of its key");
  f.add(b); // replaces a
  assert.equal(f.find(Uint8Array.from([1, 2]), 2), b);
  assert.equal(f.take(a), false, "a replaced computation no longer stores");
  assert.equal(f.take(b), true);
  assert.equal(f.take(b), false);
  assert.deepEqual(f.all(), [other]);
  // Many keys in few buckets: chains stay consistent.
  const many = Array.from(
    { length: 500 },
    (_, i) => hold(Uint8Array.from([i & 255, i >> 8]), 2, undefined),
  );
  for (const c of many) f.add(c);
  for (const c of many.filter((_, i) => i % 3 === 0)) assert.equal(f.take(c), true);
  for (const [i, c] of many.entries()) {
    assert.equal(f.find(c.buf, 2), i % 3 === 0 ? undefined : c);
  }
  assert.equal(f.size, 1 + 500 - 167);
});

Deno.test("in_flight: the computation outside the Map and those in it are found and taken alike", () => {
  const f = new InFlight();
  const key = (n: number): Uint8Array => Uint8Array.from([7, n]);
  const first = hold(key(1), 2, undefined);
  const second = hold(key(2), 2, undefined);
  f.add(first); // the one outside the Map
  f.add(second); // in the Map
  assert.equal(f.find(key(1), 2), first);
  assert.equal(f.find(key(2), 2), second);
  assert.equal(f.take(first), true);
  assert.equal(f.find(key(1), 2), undefined, "taken: no longer found");
  assert.equal(f.find(key(2), 2), second, "the one in the Map is still found");
  const third = hold(key(3), 2, undefined);
  f.add(third); // outside the Map again
  const again = hold(key(2), 2, undefined);
  f.add(again); // replaces the one in the Map
  assert.equal(f.take(second), false);
  assert.deepEqual(f.all(), [third, again]);
  assert.equal(f.size, 2);
  assert.equal(f.take(again), true);
  assert.equal(f.take(third), true);
  assert.equal(f.size, 0);
  assert.deepEqual(f.all(), []);
  assert.equal(f.find(key(3), 2), undefined);
});

Deno.test("in_flight: a bounded join that times out is no longer referenced by its computation", async () => {
  const c = hold(new Uint8Array(1), 1, "k");
  let settle = (_: unknown): void => {};
  c.joined = new Promise((r) => settle = r);
  const late = boundedJoin(c, 5, (_resolve, reject) => reject(new Error("late")));
  const onTime = boundedJoin(c, 60_000, (_resolve, reject) => reject(new Error("never")));
  await assert.rejects(late, /late/);
  assert.equal(c.waiters!.size, 1, "the timed-out waiter left the set");
  settle(7);
  assert.equal(await onTime, 7);
  assert.equal(c.waiters!.size, 0, "settled waiters leave too (and their timers are cleared)");
});

Deno.test("counters: LocalCounters turn joined misses into hits; FileCounters defer to the file", () => {
  const local = new LocalCounters();
  local.join();
  local.staleHit(false);
  local.staleHit(true);
  local.refresh();
  assert.deepEqual(local.apply({ hits: 1, misses: 5, maxSize: 9, currentSize: 2 }), {
    hits: 3,
    misses: 3,
    maxSize: 9,
    currentSize: 2,
    staleHits: 2,
    refreshes: 1,
  });
  local.clear();
  assert.deepEqual(local.apply({ hits: 1, misses: 5, maxSize: 9, currentSize: 2 }), {
    hits: 1,
    misses: 5,
    maxSize: 9,
    currentSize: 2,
  });
  const calls: string[] = [];
  const file = new FileCounters({
    countJoin: () => calls.push("join"),
    countStaleHit: (joined) => calls.push(`stale ${joined}`),
    countRefresh: () => calls.push("refresh"),
  });
  file.join();
  file.staleHit(true);
  file.refresh();
  assert.deepEqual(calls, ["join", "stale true", "refresh"]);
  const info = { hits: 1, misses: 1, maxSize: 1, currentSize: 1 };
  assert.equal(file.apply(info), info);
});

Deno.test("tiers: the remote tier gets computed values (not those read from it), sets, deletes and clears", () => {
  const log: string[] = [];
  let allowed = true;
  const link = {
    stamp: () => 7,
    mayStore: (_k: Uint8Array, since: number) => allowed && since === 0,
    write: (k: Uint8Array, v: unknown, _p: boolean, ttl?: number, since?: number) =>
      log.push(`write ${k} ${v} ${ttl} since ${since}`),
    set: (k: Uint8Array, v: unknown) => log.push(`set ${k} ${v}`),
    delete: (k: Uint8Array) => log.push(`delete ${k}`),
    clear: () => log.push("clear"),
    close: () => Promise.resolve(log.push("close")),
    fetch: () => Promise.resolve(undefined),
  } as unknown as RemoteLink;
  const store = new MapStore();
  const tiers = new RemoteTiers(store, link, 1000);
  const c = hold(Uint8Array.from([65]), 1, undefined);
  tiers.write(c, 1, false, undefined, undefined);
  tiers.write(c, 2, false, 50, undefined);
  c.ctx = new CallContext(undefined);
  c.ctx.fromRemote = true;
  tiers.write(c, 3, false, undefined, undefined);
  allowed = false; // an invalidation came after the computation started: stored nowhere
  tiers.write(c, 9, false, undefined, undefined);
  assert.equal(tiers.stamp(), 7);
  tiers.set(keyOf("B"), 4, false, undefined);
  tiers.delete(keyOf("B"));
  tiers.clear();
  tiers.close();
  assert.deepEqual(log, [
    "write 65 1 1000 since 0",
    "write 65 2 50 since 0",
    "set 66 4",
    "delete 66",
    "clear",
    "close",
  ]);
  assert.deepEqual(store.log, [
    "set A",
    "set A ttl=50",
    "set A",
    "set B",
    "delete B",
    "clear",
    "close",
  ]);
  assert.equal(tiers.local, DISPOSED);
  assert.equal(new Tiers(store).remote, false);
});

Deno.test("loader: a sync miss is stored, the next call hits; a throw stores nothing", () => {
  let calls = 0;
  const p = parts((x: number) => {
    calls++;
    if (x < 0) throw new RangeError("negative");
    return x * 2;
  });
  const loader = new Loader(p);
  assert.equal(loader.sawPromise, false);
  assert.equal(call(loader, p.store, "a", 2), 4);
  assert.equal(call(loader, p.store, "a", 2), 4);
  assert.equal(calls, 1);
  assert.throws(() => call(loader, p.store, "b", -1), RangeError);
  assert.equal(p.store.fresh.has("b"), false);
  assert.equal(calls, 2);
});

Deno.test("loader: concurrent async calls share one computation, counted as one miss and joins", async () => {
  let calls = 0;
  let release = (_: number): void => {};
  const p = parts(async (_x: number) => {
    calls++;
    return await new Promise<number>((r) => release = r);
  });
  const loader = new Loader(p);
  assert.equal(loader.sawPromise, true);
  const a = call(loader, p.store, "k", 1) as Promise<number>;
  const b = call(loader, p.store, "k", 1) as Promise<number>;
  assert.equal(calls, 1);
  assert.equal(p.inFlight.size, 1);
  release(5);
  assert.deepEqual(await Promise.all([a, b]), [5, 5]);
  assert.equal(p.inFlight.size, 0);
  assert.deepEqual(p.counters.apply(p.store.info()), {
    hits: 1,
    misses: 1,
    maxSize: Infinity,
    currentSize: 1,
  });
  assert.equal(await (call(loader, p.store, "k", 1) as Promise<number>), 5);
  assert.equal(peeked(p.store.peek(keyOf("k"))), 5);
});

Deno.test("loader: a result the store refuses rejects the call and leaves the key free", async () => {
  let calls = 0;
  const p = parts(async (x: number) => {
    calls++;
    await null;
    return x;
  });
  p.store.failSet = new TypeError("not serializable");
  const loader = new Loader(p);
  for (let i = 1; i <= 2; i++) {
    await assert.rejects(call(loader, p.store, "k", 1) as Promise<unknown>, /not serializable/);
    assert.equal(calls, i);
    assert.equal(p.inFlight.size, 0);
  }
});

/** A scripted flight table: `claim` answers `claims`, the waits answer `ends`. */
function flights(
  claims: FlightClaim[],
  ends: FlightEnd[],
  owns = true,
): { table: Flights; log: string[] } {
  const log: string[] = [];
  const table: Flights = {
    claim: (_k, async) => {
      log.push(`claim ${async}`);
      return claims.shift() ?? "owner";
    },
    markAsync: () => void log.push("markAsync"),
    wait: (_k, ms) => {
      log.push(`wait ${ms}`);
      return Promise.resolve(ends.shift() ?? "done");
    },
    waitSync: (_k, ms, untilAsync) => {
      log.push(`waitSync ${ms} ${untilAsync}`);
      return ends.shift() ?? "done";
    },
    owns: () => owns,
    release: () => void log.push("release"),
    end: () => void log.push("end"),
  };
  return { table, log };
}

function featured(
  fn: Fn,
  table: Flights,
  store = new MapStore(),
): { p: Parts; loader: FeatureLoader } {
  const p = parts(fn, store);
  return {
    p,
    loader: new FeatureLoader({
      ...p,
      stale: false,
      timeout: undefined,
      flights: table,
      ttl: undefined,
      ttlJitter: undefined,
      staleWindow: undefined,
      now: () => performance.now(),
      staleIfError: undefined,
      errorBackoff: undefined,
    }),
  };
}

Deno.test("loader: a synchronous call never waits on a flight of its own process", () => {
  const f = flights(["local"], []);
  const { p, loader } = featured((x: number) => x + 1, f.table);
  loader.firstCall = false;
  assert.equal(call(loader, p.store, "k", 1), 2);
  assert.deepEqual(f.log, ["claim false"], "no wait, and no flight to release");
});

Deno.test("loader: a synchronous waiter takes the stored value, or computes at once when none was stored", () => {
  const f = flights(["wait", "wait"], ["done", "done"]);
  let calls = 0;
  const store = new MapStore();
  const { p, loader } = featured(
    (x: number) => {
      calls++;
      return x * 10;
    },
    f.table,
    store,
  );
  loader.firstCall = false;
  // The owner stores the key while this call waits: a hit, counted as a join.
  const origWaitSync = f.table.waitSync;
  f.table.waitSync = (kb, ms, u) => {
    store.fresh.set("k", 70);
    f.table.waitSync = origWaitSync;
    return origWaitSync(kb, ms, u);
  };
  assert.equal(call(loader, store, "k", 7), 70);
  assert.equal(calls, 0);
  assert.equal(p.counters.apply(store.info()).hits, 1);
  // Nothing stored: computed here at once, without claiming again.
  assert.equal(call(loader, store, "j", 2), 20);
  assert.equal(calls, 1);
  assert.deepEqual(f.log, [
    "claim false",
    "waitSync 60000 false",
    "claim false",
    "waitSync 60000 false",
  ]);
});

Deno.test("loader: a first call that finds an async flight returns a Promise; closed waits throw the disposed error", async () => {
  const f = flights(["wait", "wait"], ["async", "done", "closed"]);
  const store = new MapStore();
  const { loader } = featured((x: number) => x, f.table, store);
  assert.equal(loader.firstCall, true);
  const origWait = f.table.wait;
  f.table.wait = (kb, ms) => {
    store.fresh.set("k", 5);
    return origWait(kb, ms);
  };
  const r = call(loader, store, "k", 1);
  assert.ok(r instanceof Promise, "a Promise, not a blocked thread and a plain value");
  assert.equal(await r, 5);
  assert.deepEqual(f.log.slice(0, 3), ["claim false", "waitSync 60000 true", "wait 60000"]);
  assert.throws(() => call(loader, store, "j", 1), /disposed/);
});

Deno.test("loader: an owner marks its async computation, and does not store once it lost its flight", async () => {
  const f = flights(["owner"], [], false);
  const store = new MapStore();
  const { loader } = featured(
    async (x: number) => {
      await null;
      return x;
    },
    f.table,
    store,
  );
  assert.equal(await (call(loader, store, "k", 3) as Promise<number>), 3);
  assert.deepEqual(f.log, ["claim true", "markAsync", "release"]);
  assert.equal(store.fresh.has("k"), false, "not stored: another process ended its flight");
});

Deno.test("loader: an async waiter computes the key itself when the wait times out or its owner died", async () => {
  for (const end of ["timeout", "owner"] as const) {
    const f = flights(["wait"], [end]);
    const store = new MapStore();
    const { loader } = featured((x: number) => Promise.resolve(x * 3), f.table, store);
    assert.equal(await (call(loader, store, "k", 2) as Promise<number>), 6);
    assert.equal(peeked(store.fresh.get("k")), 6);
    assert.equal(f.log.includes("release"), end === "owner", f.log.join());
  }
});
