// Per-entry TTL and the stale window of the two in-process stores (`TsSieveStore` and
// `NativeMemoryStore`), each boundary at injected times: fresh while `age < ttl`, stale while
// `ttl <= age < ttl + stale`, gone after. The same cases run on both stores.
import assert from "node:assert/strict";
import { loadNative } from "../src/native/ffi.ts";
import { NativeMemoryStore } from "../src/store/native_store.ts";
import { type ByteStore, hitOf, MISS, peeked } from "../src/store/store.ts";
import { TsSieveStore } from "../src/store/ts_store.ts";

interface Options {
  maxSize?: number;
  ttl?: number;
  stale?: number;
  policy?: 0 | 1 | 2 | 3 | 4;
}

const native = (() => {
  try {
    return loadNative();
  } catch {
    return null;
  }
})();

const KINDS: Array<[string, ((o: Options) => ByteStore) | null]> = [
  ["TsSieveStore", (o) =>
    new TsSieveStore({
      maxSize: o.maxSize ?? 16,
      ttl: o.ttl,
      policy: o.policy ?? 0,
      stale: o.stale ?? 0,
    })],
  [
    "NativeMemoryStore",
    native === null
      ? null
      : (o) => new NativeMemoryStore(native, o.maxSize ?? 16, o.ttl, o.policy ?? 0, o.stale ?? 0),
  ],
];

const enc = (k: string): Uint8Array => new TextEncoder().encode(k);

/** The store with string keys. */
class Keyed {
  constructor(readonly s: ByteStore) {}
  set(k: string, v: unknown, now: number, ttl?: number, promised = false): boolean {
    const b = enc(k);
    return this.s.set(b, b.length, v, now, promised, undefined, ttl);
  }
  get(k: string, now: number): unknown {
    return this.s.get(enc(k), k.length, now);
  }
  peek(k: string, now: number): unknown {
    return this.s.peek(enc(k), k.length, now);
  }
  peekStale(k: string, now: number): unknown {
    return this.s.peekStale(enc(k), k.length, now);
  }
  /** `[peek, peekStale, get]` at `now` (the peeks first: they change nothing). */
  probe(k: string, now: number): [unknown, unknown, unknown] {
    return [this.peek(k, now), this.peekStale(k, now), this.get(k, now)];
  }
  size(): number {
    return this.s.info().currentSize;
  }
}

function eachStore(name: string, fn: (make: (o: Options) => Keyed) => void | Promise<void>): void {
  for (const [kind, make] of KINDS) {
    Deno.test({
      name: `${kind}: ${name}`,
      ignore: make === null,
      fn: async (): Promise<void> => {
        const made: ByteStore[] = [];
        try {
          await fn((o) => {
            const s = make!(o);
            made.push(s);
            return new Keyed(s);
          });
        } finally {
          made.forEach((s) => s.close());
        }
      },
    });
  }
}

eachStore("the store's TTL and stale window, at each boundary", (make) => {
  const s = make({ ttl: 100, stale: 50 });
  const v = { v: 1 };
  s.set("k", v, 1000);
  assert.deepEqual(s.probe("k", 1099), [v, v, v], "age ttl - 1: fresh");
  assert.deepEqual(s.probe("k", 1100), [MISS, v, MISS], "age ttl: stale");
  assert.equal(s.size(), 1, "a stale get keeps the entry");
  assert.deepEqual(s.probe("k", 1149), [MISS, v, MISS], "age ttl + stale - 1: stale");
  assert.equal(s.peekStale("k", 1149), v, "and its value, as it was");
  assert.deepEqual(s.probe("k", 1150), [MISS, MISS, MISS], "age ttl + stale: gone");
  assert.equal(s.size(), 0, "the get past the window removed it");
  assert.equal(s.peekStale("k", 1100), MISS);
  assert.deepEqual(s.s.info(), { hits: 1, misses: 3, maxSize: 16, currentSize: 0 });
});

eachStore("without a stale window an entry is gone at its TTL", (make) => {
  const s = make({ ttl: 100 });
  s.set("k", 1, 0);
  assert.deepEqual(s.probe("k", 99), [1, 1, 1]);
  assert.equal(s.peekStale("k", 100), MISS);
  assert.equal(s.get("k", 100), MISS);
  assert.equal(s.size(), 0);
});

eachStore("an own TTL shorter and one longer than the store's", (make) => {
  const s = make({ ttl: 100, stale: 10 });
  s.set("short", "s", 0, 30);
  s.set("long", "l", 0, 300);
  s.set("store", "d", 0);
  assert.deepEqual(s.probe("short", 29), ["s", "s", "s"]);
  assert.deepEqual(s.probe("short", 30), [MISS, "s", MISS]);
  assert.deepEqual(s.probe("short", 39), [MISS, "s", MISS]);
  assert.deepEqual(s.probe("short", 40), [MISS, MISS, MISS]);
  assert.deepEqual(s.probe("store", 99), ["d", "d", "d"]);
  assert.deepEqual(s.probe("store", 100), [MISS, "d", MISS]);
  assert.deepEqual(s.probe("long", 299), ["l", "l", "l"], "past the store's TTL, fresh");
  assert.deepEqual(s.probe("long", 300), [MISS, "l", MISS]);
  assert.deepEqual(s.probe("long", 309), [MISS, "l", MISS]);
  assert.deepEqual(s.probe("long", 310), [MISS, MISS, MISS]);
  assert.equal(s.size(), 1, "only the store-TTL entry is left, stale");
});

eachStore("own TTLs on a store without TTL", (make) => {
  for (const stale of [0, 5]) {
    const s = make({ stale });
    s.set("plain", "p", 0);
    s.set("own", "o", 10, 20);
    s.set("after", "a", 10);
    assert.deepEqual(s.probe("own", 29), ["o", "o", "o"]);
    const staleAt30 = stale > 0 ? "o" : MISS;
    assert.deepEqual(s.probe("own", 30), [MISS, staleAt30, MISS]);
    assert.equal(s.size(), stale > 0 ? 3 : 2);
    assert.deepEqual(s.probe("own", 35), [MISS, MISS, MISS]);
    assert.equal(s.get("plain", 1e12), "p", "entries without an own TTL never expire");
    assert.equal(s.get("after", 1e12), "a");
  }
});

eachStore("an own TTL of Infinity never expires, on a store with a TTL", (make) => {
  const s = make({ ttl: 10, stale: 10 });
  s.set("k", 1, 0, Infinity);
  assert.deepEqual(s.probe("k", 1e12), [1, 1, 1]);
});

eachStore("hits do not extend an own TTL", (make) => {
  const s = make({});
  s.set("k", 1, 0, 10);
  assert.equal(s.get("k", 5), 1);
  assert.equal(s.get("k", 9), 1);
  assert.equal(s.get("k", 10), MISS);
});

eachStore("replacing an entry resets its TTL: own, or the store's again", (make) => {
  const s = make({ ttl: 100 });
  s.set("k", 1, 0, 10);
  s.set("k", 2, 5);
  assert.equal(s.get("k", 104), 2, "the store's TTL again");
  assert.equal(s.get("k", 105), MISS);
  s.set("k", 3, 200, 1000);
  assert.equal(s.get("k", 1199), 3);
  s.set("k", 4, 1200, 1);
  assert.equal(s.get("k", 1201), MISS);
  const none = make({});
  none.set("k", 1, 0, 10);
  none.set("k", 2, 1);
  assert.equal(none.get("k", 1e12), 2, "no TTL again on a store without one");
});

eachStore("a stale get marks nothing; stale entries are evicted like any other", (make) => {
  // SIEVE, 2 entries: a get that marked `a` visited would make `b` the victim.
  const s = make({ maxSize: 2, ttl: 10, stale: 100 });
  s.set("a", "a", 0);
  s.set("b", "b", 0);
  assert.equal(s.get("a", 50), MISS);
  s.set("c", "c", 50);
  assert.equal(s.peekStale("a", 50), MISS, "a, stale and unvisited, was evicted");
  assert.equal(s.peekStale("b", 50), "b");
  assert.equal(s.size(), 2);
});

eachStore("peekStale marks nothing, fresh or stale: the eviction order shows it", (make) => {
  // SIEVE, 2 entries, TTL 10 and a window of 100: at 5 `a` is fresh, at 50 stale. A get of
  // the fresh `a` marks it visited, and `b` goes; after a peekStale, `a` goes.
  const cases = [["get", 5, "b", "a"], ["peekStale", 5, "a", "b"], ["peekStale", 50, "a", "b"]];
  for (
    const [look, at, victim, kept] of cases as Array<["get" | "peekStale", number, string, string]>
  ) {
    const s = make({ maxSize: 2, ttl: 10, stale: 100 });
    s.set("a", "a", 0);
    s.set("b", "b", 0);
    assert.equal(look === "get" ? s.get("a", at) : s.peekStale("a", at), "a");
    s.set("c", "c", at);
    assert.equal(s.peekStale(victim, at), MISS, `after ${look}(a) at ${at}, ${victim} goes`);
    assert.equal(s.peekStale(kept, at), kept);
  }
  const s = make({ maxSize: 2 });
  s.set("a", "a", 0);
  s.peekStale("a", 0);
  s.peekStale("zz", 0);
  assert.deepEqual(s.s.info(), { hits: 0, misses: 0, maxSize: 2, currentSize: 1 });
});

eachStore(
  "peekStale of an async entry returns its entry: hitOf() gives the hit's Promise, peeked() its value, stale too",
  async (make) => {
    const s = make({ ttl: 10, stale: 10 });
    s.set("k", 7, 0, undefined, true);
    const hit = s.get("k", 0);
    assert.ok(hit instanceof Promise);
    // V8's own Promise, untouched: a property on it slows every `await` of a hit.
    assert.deepEqual(Reflect.ownKeys(hit as object), []);
    assert.equal(Object.getPrototypeOf(hit), Promise.prototype);
    assert.equal(await hit, 7);
    assert.equal(hitOf(s.peekStale("k", 5)), hit);
    assert.equal(hitOf(s.get("k", 5)), hit, "every hit returns the one Promise");
    assert.equal(peeked(s.peekStale("k", 5)), 7);
    assert.equal(peeked(s.peekStale("k", 15)), 7);
    assert.equal(s.get("k", 15), MISS);
    assert.equal(peeked(s.peekStale("k", 15)), 7, "the stale get kept the value");
  },
);

eachStore("countStaleHit and countRefresh are counted, and reset by clear", (make) => {
  const s = make({ ttl: 10, stale: 10 });
  s.set("k", 1, 0);
  assert.equal(s.get("k", 12), MISS);
  s.s.countStaleHit();
  s.s.countRefresh();
  assert.equal(s.get("zz", 12), MISS);
  assert.deepEqual(s.s.info(), {
    hits: 1,
    misses: 1,
    maxSize: 16,
    currentSize: 1,
    staleHits: 1,
    refreshes: 1,
  });
  s.s.clear();
  assert.deepEqual(s.s.info(), { hits: 0, misses: 0, maxSize: 16, currentSize: 0 });
  s.s.countRefresh();
  assert.deepEqual(s.s.info(), {
    hits: 0,
    misses: 0,
    maxSize: 16,
    currentSize: 0,
    staleHits: 0,
    refreshes: 1,
  });
});

eachStore("a bad own TTL is refused and stores nothing", (make) => {
  const s = make({ ttl: 10 });
  for (const bad of [0, -1, NaN, -Infinity]) {
    assert.throws(
      () => s.set("k", 1, 0, bad),
      (e: unknown) =>
        e instanceof RangeError && e.message.includes(`ttl`) && e.message.includes(String(bad)),
    );
  }
  assert.throws(() => s.set("k", 1, 0, "5" as unknown as number), TypeError);
  assert.equal(s.size(), 0);
  assert.equal(s.set("k", 1, 0), true, "the store still works");
  assert.equal(s.get("k", 0), 1);
});

Deno.test({
  name: "NativeMemoryStore: own TTLs on the library's clock (now = NaN)",
  ignore: native === null,
  async fn(): Promise<void> {
    const store = new NativeMemoryStore(native!, 16, undefined, 0, 3_600_000);
    try {
      const s = new Keyed(store);
      s.set("plain", "p", NaN);
      s.set("long", "l", NaN, 3_600_000);
      s.set("short", "s", NaN, 1);
      await new Promise((r) => setTimeout(r, 30));
      assert.equal(s.get("long", NaN), "l");
      assert.equal(s.get("plain", NaN), "p");
      assert.equal(s.get("short", NaN), MISS, "1 ms old TTL, 30 ms later: stale");
      assert.equal(s.peek("short", NaN), MISS);
      assert.equal(s.peekStale("short", NaN), "s", "inside the hour-long window");
      assert.equal(s.size(), 3);
    } finally {
      store.close();
    }
    const gone = new NativeMemoryStore(native!, 16, undefined, 0, 0);
    try {
      const s = new Keyed(gone);
      s.set("short", "s", NaN, 1);
      await new Promise((r) => setTimeout(r, 30));
      assert.equal(s.get("short", NaN), MISS);
      assert.equal(s.size(), 0, "no window: removed");
    } finally {
      gone.close();
    }
  },
});

Deno.test({
  name: "NativeMemoryStore refuses a bad stale window with the library's reason",
  ignore: native === null,
  fn(): void {
    for (const bad of [-1, NaN, Infinity]) {
      assert.throws(() => new NativeMemoryStore(native!, 4, 10, 0, bad), /stale window/);
    }
  },
});

Deno.test("TsSieveStore refuses a bad stale window", () => {
  for (const bad of [-1, NaN, Infinity]) {
    assert.throws(() => new TsSieveStore({ maxSize: 4, ttl: 10, stale: bad }), RangeError);
  }
});

eachStore(
  "a slot freed by an async entry serves the next entry's own value and form",
  async (make) => {
    const s = make({ maxSize: 1 });
    s.set("a", { a: 1 }, 0, undefined, true);
    const a = s.get("a", 0);
    assert.ok(a instanceof Promise);
    // Evicted by a sync entry, which reuses the slot.
    s.set("b", "plain", 0);
    assert.equal(s.get("a", 0), MISS);
    assert.equal(s.get("b", 0), "plain");
    assert.equal(s.peek("b", 0), "plain", "a sync value is peeked as itself");
    // Evicted by an async entry, then replaced by a sync value under the same key.
    s.set("c", 7, 0, undefined, true);
    assert.equal(peeked(s.peek("c", 0)), 7);
    assert.equal(await s.get("c", 0), 7);
    s.set("c", 8, 0);
    assert.equal(s.get("c", 0), 8);
    assert.equal(s.peek("c", 0), 8);
    s.set("c", undefined, 0, undefined, true);
    const c = s.get("c", 0);
    assert.ok(c instanceof Promise);
    assert.equal(await c, undefined);
    assert.equal(hitOf(s.peek("c", 0)), c);
    assert.equal(peeked(s.peek("c", 0)), undefined);
  },
);
