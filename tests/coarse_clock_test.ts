import assert from "node:assert/strict";
import { CoarseClock, LOOKUPS_PER_READ } from "../src/store/_coarse_clock.ts";
import { TsSieveStore } from "../src/store/ts_store.ts";
import { ABSENT, MISS } from "../src/store/store.ts";
import { encodeKey } from "../src/codec/key_codec.ts";
import { cache } from "../mod.ts";

/** A clock whose source is `t`, counting its reads, with its expiry in `expire`. */
function fakeClock(): {
  clock: CoarseClock;
  reads: () => number;
  set: (t: number) => void;
  expire: () => void;
  arms: () => number;
} {
  let t = 0;
  let reads = 0;
  let arms = 0;
  let expire = (): void => {};
  const clock = new CoarseClock(
    () => {
      reads++;
      return t;
    },
    (e) => {
      arms++;
      expire = e;
    },
  );
  return {
    clock,
    reads: () => reads,
    set: (v) => t = v,
    expire: () => expire(),
    arms: () => arms,
  };
}

Deno.test("CoarseClock reads its source once per LOOKUPS_PER_READ lookups", () => {
  const c = fakeClock();
  c.set(10);
  assert.equal(c.clock.lookup(), 10);
  assert.equal(c.reads(), 1);
  c.set(20);
  for (let i = 0; i < LOOKUPS_PER_READ; i++) assert.equal(c.clock.lookup(), 10);
  assert.equal(c.reads(), 1);
  assert.equal(c.clock.lookup(), 20, "the reading is used up: read again");
  assert.equal(c.reads(), 2);
});

Deno.test("CoarseClock reads again once its reading expires, and arms one expiry at a time", () => {
  const c = fakeClock();
  c.set(1);
  assert.equal(c.clock.lookup(), 1);
  c.set(2);
  assert.equal(c.clock.lookup(), 1);
  assert.equal(c.arms(), 1);
  c.expire();
  assert.equal(c.clock.lookup(), 2, "expired: read again");
  assert.equal(c.reads(), 2);
  assert.equal(c.arms(), 2);
  c.set(3);
  assert.equal(c.clock.exact(), 3, "exact reads every time");
  assert.equal(c.clock.exact(), 3);
  assert.equal(c.reads(), 4);
  assert.equal(c.arms(), 2, "armed already");
  c.set(4);
  assert.equal(c.clock.lookup(), 3, "an exact reading serves the lookups after it");
});

/** Runs `f` with `performance.now()` returning `now()`. */
function withTime(now: () => number, f: () => void): void {
  const real = performance.now;
  performance.now = now;
  try {
    f();
  } finally {
    performance.now = real;
  }
}

Deno.test("TsSieveStore without a clock: lookups read the time once per LOOKUPS_PER_READ, entries still expire", () => {
  const s = new TsSieveStore({ maxSize: 10, ttl: 100 }).keyed();
  const buf = encodeKey(["k"]);
  const k = { buf, len: buf.length, pointer: () => undefined };
  let t = 1000;
  let reads = 0;
  withTime(() => {
    reads++;
    return t;
  }, () => {
    s.set(k, "v", false);
    assert.equal(reads, 1, "an insert reads the time");
    for (let i = 0; i < LOOKUPS_PER_READ; i++) assert.equal(s.getArgs!(["k"]), "v");
    assert.equal(reads, 1, "the lookups after it use its reading");
    t = 1100;
    assert.equal(s.get(k), MISS, "expired by the next reading");
    assert.equal(reads, 2);
    assert.equal(s.getArgs!(["k"]), ABSENT, "and removed");
  });
});

Deno.test("TsSieveStore without a clock: an entry expires by real time across an await", async () => {
  const s = new TsSieveStore({ maxSize: 10, ttl: 5 }).keyed();
  const buf = encodeKey(["k"]);
  const k = { buf, len: buf.length, pointer: () => undefined };
  s.set(k, "v", false);
  const t0 = performance.now();
  while (performance.now() - t0 < 20) await new Promise((r) => setTimeout(r, 10));
  assert.equal(s.getArgs!(["k"]), MISS, "expired");
});

Deno.test("cache() on the TypeScript engine reads an injected clock on every hit", () => {
  const prev = Deno.env.get("WARP_CACHE_ENGINE");
  Deno.env.set("WARP_CACHE_ENGINE", "ts");
  try {
    let now = 0;
    let reads = 0;
    const f = cache({ maxSize: 10, ttl: 100, clock: () => (reads++, now) })((x: number) => x * 2);
    f(1);
    const before = reads;
    for (let i = 0; i < 3 * LOOKUPS_PER_READ; i++) assert.equal(f(1), 2);
    assert.equal(reads - before, 3 * LOOKUPS_PER_READ);
    now = 100;
    let calls = 0;
    const g = cache({ maxSize: 10, ttl: 100, clock: () => now })((x: number) => (calls++, x));
    now = 0;
    g(1);
    g(1);
    now = 100;
    g(1);
    assert.equal(calls, 2, "expired at once by the injected clock");
  } finally {
    if (prev === undefined) Deno.env.delete("WARP_CACHE_ENGINE");
    else Deno.env.set("WARP_CACHE_ENGINE", prev);
  }
});

Deno.test("CoarseClock's default expiry is a timer that does not keep the process alive", async () => {
  const unref = Deno.unrefTimer;
  const unrefed: unknown[] = [];
  Deno.unrefTimer = (id: Parameters<typeof unref>[0]): void => {
    unrefed.push(id);
    unref(id);
  };
  try {
    let t = 1;
    const clock = new CoarseClock(() => t);
    assert.equal(clock.lookup(), 1);
    assert.equal(unrefed.length, 1);
    t = 2;
    assert.equal(clock.lookup(), 1);
    // The timer ends the reading.
    await new Promise((r) => setTimeout(r, 5));
    assert.equal(clock.lookup(), 2);
    assert.equal(unrefed.length, 2);
  } finally {
    Deno.unrefTimer = unref;
  }
});
