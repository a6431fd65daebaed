// kvTier() on a real local Deno KV file: entries, isolation between cache names, the
// 64 KiB limit, two tiers (and two processes) on one file, the invalidation bus, close()
// and bad arguments.
import assert from "node:assert/strict";
import { KV_MAX_VALUE_BYTES, kvTier } from "../src/remote/kv.ts";
import type { Invalidation, RemoteTier } from "../src/remote/remote.ts";
import { runChild } from "./fixtures/run_child.ts";

const bytes = (...b: number[]): Uint8Array => new Uint8Array(b);
const signal = (): AbortSignal => AbortSignal.timeout(30_000);

/** Runs `body` with the path of a fresh Deno KV file, removed afterwards. */
async function withPath(body: (path: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "warp_kv_" });
  try {
    await body(`${dir}/cache.kv`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** How an {@linkcode Inbox} records a gap (messages may have been lost). */
const GAP: Invalidation = { origin: "(gap)", stamp: 0, keys: "clear" };

/** Collects a subscription's messages; `until` waits (up to 30 s) for a condition on them. */
class Inbox {
  messages: Invalidation[] = [];
  #wake: (() => void) | undefined;

  push = (message: Invalidation): void => {
    this.messages.push(message);
    this.#wake?.();
  };
  /** A {@linkcode BusListener}: messages, and gaps recorded as {@linkcode GAP}. */
  message = this.push;
  gap = (): void => this.push(GAP);

  async until(what: string, done: (messages: Invalidation[]) => boolean): Promise<void> {
    const deadline = Date.now() + 30_000;
    while (!done(this.messages)) {
      if (Date.now() > deadline) {
        throw new Error(`No ${what} within 30 s: received ${this.messages.length} messages`);
      }
      await new Promise<void>((resolve) => {
        const timer = setTimeout(() => resolve(), 50);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }

  /** The first key byte of each message (`-1` for `"clear"`). */
  firsts(): number[] {
    return this.messages.map((m) => m.keys === "clear" ? -1 : m.keys[0]?.[0] ?? -2);
  }
}

/** A Deno.Kv that records the arguments of each `set`. */
function spySet(kv: Deno.Kv, calls: unknown[][]): Deno.Kv {
  return new Proxy(kv, {
    get(target, prop): unknown {
      if (prop === "set") {
        return (...args: Parameters<Deno.Kv["set"]>) => {
          calls.push(args);
          return target.set(...args);
        };
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
}

/** A Deno.Kv whose `watch` streams only what the test pushes. */
function manualWatch(kv: Deno.Kv): {
  kv: Deno.Kv;
  push: (entry: Deno.KvEntryMaybe<unknown>) => void;
} {
  let controller: ReadableStreamDefaultController<Deno.KvEntryMaybe<unknown>[]> | undefined;
  const proxy = new Proxy(kv, {
    get(target, prop): unknown {
      if (prop === "watch") {
        return () =>
          new ReadableStream<Deno.KvEntryMaybe<unknown>[]>({
            start(c): void {
              controller = c;
            },
          });
      }
      const v = Reflect.get(target, prop, target);
      return typeof v === "function" ? v.bind(target) : v;
    },
  });
  return { kv: proxy, push: (entry) => controller!.enqueue([entry]) };
}

function quantile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
}

Deno.test("kvTier() stores, reads and deletes bytes under binary keys", async () => {
  await withPath(async (path) => {
    const tier = await kvTier({ path });
    const keys = [bytes(), bytes(0), bytes(0, 0), bytes(255, 0, 1), bytes(0xfe, 0xff)];
    for (const [i, key] of keys.entries()) {
      await tier.storage.set("c", key, bytes(i, 0, 255), undefined, signal());
    }
    for (const [i, key] of keys.entries()) {
      assert.deepEqual(await tier.storage.get("c", key, signal()), bytes(i, 0, 255), `key ${key}`);
    }
    assert.equal(await tier.storage.get("c", bytes(1), signal()), undefined);
    await tier.storage.set("c", bytes(0), bytes(9), undefined, signal());
    assert.deepEqual(await tier.storage.get("c", bytes(0), signal()), bytes(9), "set replaces");
    assert.equal(await tier.storage.delete("c", bytes(0), signal()), true);
    assert.equal(await tier.storage.delete("c", bytes(0), signal()), false, "already gone");
    assert.equal(await tier.storage.get("c", bytes(0), signal()), undefined);
    assert.deepEqual(await tier.storage.get("c", bytes(0, 0), signal()), bytes(2, 0, 255));
    await tier.close();
  });
});

Deno.test("kvTier() keeps keys past Deno KV's 2048-byte key limit apart", async () => {
  await withPath(async (path) => {
    const tier = await kvTier({ path });
    // 3000 bytes, and 1100 zero bytes (each escaped to two in a KV key).
    const long1 = new Uint8Array(3000).fill(7);
    const long2 = new Uint8Array(3000).fill(7);
    long2[2999] = 8;
    const zeros = new Uint8Array(1100);
    await tier.storage.set("c", long1, bytes(1), undefined, signal());
    await tier.storage.set("c", long2, bytes(2), undefined, signal());
    await tier.storage.set("c", zeros, bytes(3), undefined, signal());
    assert.deepEqual(await tier.storage.get("c", long1, signal()), bytes(1));
    assert.deepEqual(await tier.storage.get("c", long2, signal()), bytes(2));
    assert.deepEqual(await tier.storage.get("c", zeros, signal()), bytes(3));
    assert.equal(await tier.storage.delete("c", long1, signal()), true);
    assert.equal(await tier.storage.get("c", long1, signal()), undefined);
    assert.deepEqual(await tier.storage.get("c", long2, signal()), bytes(2));
    await tier.storage.clear("c", signal());
    assert.equal(await tier.storage.get("c", long2, signal()), undefined);
    assert.equal(await tier.storage.get("c", zeros, signal()), undefined);
    await tier.close();
  });
});

Deno.test("kvTier() keeps caches of different names apart, in get and clear", async () => {
  await withPath(async (path) => {
    const kv = await Deno.openKv(path);
    const tier = await kvTier({ kv });
    const names = ["a", "ab", "a\u0000", "", "b"];
    for (const [i, name] of names.entries()) {
      await tier.storage.set(name, bytes(1), bytes(i), undefined, signal());
    }
    for (const [i, name] of names.entries()) {
      assert.deepEqual(await tier.storage.get(name, bytes(1), signal()), bytes(i), `name ${name}`);
    }
    await tier.bus!.publish("a", { origin: "x", stamp: 1, keys: [bytes(1)] }, signal());
    await tier.storage.clear("a", signal());
    assert.equal(await tier.storage.get("a", bytes(1), signal()), undefined);
    for (const [i, name] of names.entries()) {
      if (name !== "a") {
        assert.deepEqual(await tier.storage.get(name, bytes(1), signal()), bytes(i));
      }
    }
    const bus = await kv.get(["warp", "a", "_bus"]);
    assert.notEqual(bus.versionstamp, null, "clear keeps the bus key (its sequence)");
    // A key of another application under "warp" but not under a cache is left alone.
    await kv.set(["warp"], 1);
    await tier.storage.clear("", signal());
    assert.equal((await kv.get(["warp"])).value, 1);
    assert.equal(await tier.storage.get("", bytes(1), signal()), undefined);
    await tier.close();
    kv.close();
  });
});

Deno.test("kvTier() clear deletes more keys than one atomic batch holds", async () => {
  await withPath(async (path) => {
    const kv = await Deno.openKv(path);
    const tier = await kvTier({ kv });
    // 1500 short keys (over 1000 mutations) and 100 keys of 2000 bytes (over 80 KiB of keys).
    for (let start = 0; start < 1500; start += 500) {
      const op = kv.atomic();
      for (let i = start; i < start + 500; i++) {
        op.set(["warp", "big", bytes(i >> 8, i & 255)], bytes(1));
      }
      assert.ok((await op.commit()).ok);
    }
    for (let start = 0; start < 100; start += 25) {
      const op = kv.atomic();
      for (let i = start; i < start + 25; i++) {
        op.set(["warp", "big", new Uint8Array(2000).fill(i + 1)], 1);
      }
      assert.ok((await op.commit()).ok);
    }
    await tier.storage.set("other", bytes(1), bytes(1), undefined, signal());
    const count = async (prefix: Deno.KvKey): Promise<number> => {
      let n = 0;
      for await (const _ of kv.list({ prefix })) n++;
      return n;
    };
    assert.equal(await count(["warp", "big"]), 1600);
    await tier.storage.clear("big", signal());
    assert.equal(await count(["warp", "big"]), 0);
    assert.equal(await count(["warp", "other"]), 1);
    await tier.close();
    kv.close();
  });
});

Deno.test("kvTier() set passes the ttl as expireIn, rounded up, and none without one", async () => {
  await withPath(async (path) => {
    const kv = await Deno.openKv(path);
    const calls: unknown[][] = [];
    const tier = await kvTier({ kv: spySet(kv, calls) });
    await tier.storage.set("c", bytes(1), bytes(1), 1500, signal());
    await tier.storage.set("c", bytes(2), bytes(2), 0.5, signal());
    await tier.storage.set("c", bytes(3), bytes(3), undefined, signal());
    assert.deepEqual(calls.map((c) => c[2]), [{ expireIn: 1500 }, { expireIn: 1 }, {}]);
    assert.deepEqual(calls.map((c) => c[0]), [
      ["warp", "c", bytes(1)],
      ["warp", "c", bytes(2)],
      ["warp", "c", bytes(3)],
    ]);
    assert.deepEqual(await tier.storage.get("c", bytes(1), signal()), bytes(1));
    await assert.rejects(
      tier.storage.set("c", bytes(1), bytes(1), -5, signal()),
      RangeError,
      "ttl must be a positive finite number of milliseconds or undefined: received -5",
    );
    await tier.close();
    kv.close();
  });
});

Deno.test("kvTier() set takes a value of 64 KiB and rejects a larger one", async () => {
  await withPath(async (path) => {
    const tier = await kvTier({ path });
    assert.equal(KV_MAX_VALUE_BYTES, 65536);
    const largest = new Uint8Array(KV_MAX_VALUE_BYTES).fill(3);
    await tier.storage.set("c", bytes(1), largest, undefined, signal());
    assert.deepEqual(await tier.storage.get("c", bytes(1), signal()), largest);
    await assert.rejects(
      tier.storage.set("c", bytes(2), new Uint8Array(KV_MAX_VALUE_BYTES + 1), undefined, signal()),
      RangeError,
      "Cannot store a value of 65537 bytes in Deno KV: the limit is 65536 bytes",
    );
    assert.equal(await tier.storage.get("c", bytes(2), signal()), undefined);
    await tier.close();
  });
});

Deno.test("kvTier() on one path twice: each sees the other's writes and messages", async () => {
  await withPath(async (path) => {
    const a = await kvTier({ path });
    const b = await kvTier({ path }, { pollInterval: 0 });
    await a.storage.set("c", bytes(5), bytes(50), undefined, signal());
    assert.deepEqual(await b.storage.get("c", bytes(5), signal()), bytes(50));
    assert.equal(await b.storage.delete("c", bytes(5), signal()), true);
    assert.equal(await a.storage.get("c", bytes(5), signal()), undefined);

    const inA = new Inbox();
    const inB = new Inbox();
    const offA = await a.bus!.subscribe("c", inA);
    const offB = await b.bus!.subscribe("c", inB);
    await a.bus!.publish("c", { origin: "A", stamp: 1, keys: [bytes(1), bytes(0, 2)] }, signal());
    await b.bus!.publish("c", { origin: "B", stamp: 1, keys: "clear" }, signal());
    const expected: Invalidation[] = [
      { origin: "A", stamp: 1, keys: [bytes(1), bytes(0, 2)] },
      { origin: "B", stamp: 1, keys: "clear" },
    ];
    await inA.until("two messages on A", (m) => m.length >= 2);
    await inB.until("two messages on B", (m) => m.length >= 2);
    assert.deepEqual(inA.messages, expected, "the publisher gets its own messages too");
    assert.deepEqual(inB.messages, expected);
    await offA();
    await offB();
    await a.close();
    await b.close();
  });
});

Deno.test("kvTier() bus delivers a burst of 50 messages once each, in order", async () => {
  await withPath(async (path) => {
    const a = await kvTier({ path });
    const b = await kvTier({ path });
    const inbox = new Inbox();
    const off = await b.bus!.subscribe("c", inbox);
    for (let i = 0; i < 50; i++) {
      await a.bus!.publish("c", { origin: "A", stamp: 1, keys: [bytes(i)] }, signal());
    }
    await inbox.until("50 messages", (m) => m.length >= 50);
    assert.deepEqual(inbox.firsts(), Array.from({ length: 50 }, (_, i) => i));

    // 50 more from two publishers at once: each is delivered once (their order is the
    // order in which their writes won).
    inbox.messages = [];
    await Promise.all(
      Array.from(
        { length: 50 },
        (_, i) =>
          (i % 2 ? a : b).bus!.publish(
            "c",
            { origin: "X", stamp: 1, keys: [bytes(100 + i)] },
            signal(),
          ),
      ),
    );
    await inbox.until("50 concurrent messages", (m) => m.length >= 50);
    assert.deepEqual(
      inbox.firsts().sort((x, y) => x - y),
      Array.from({ length: 50 }, (_, i) => 100 + i),
    );
    assert.equal(inbox.messages.length, 50);
    await off();
    await a.close();
    await b.close();
  });
});

Deno.test("kvTier() subscriber that missed more than ringSize messages is told of a gap", async () => {
  await withPath(async (path) => {
    const kv = await Deno.openKv(path);
    const watched = manualWatch(kv);
    const late = await kvTier({ kv: watched.kv }, { pollInterval: 0 });
    const inbox = new Inbox();
    const off = await late.bus!.subscribe("c", inbox);
    const writer = await kvTier({ path }, { ringSize: 4 });
    for (let i = 1; i <= 10; i++) {
      await writer.bus!.publish("c", { origin: "W", stamp: 1, keys: [bytes(i)] }, signal());
    }
    watched.push(await kv.get(["warp", "c", "_bus"]));
    await inbox.until("a clear and 4 messages", (m) => m.length >= 5);
    assert.deepEqual(inbox.messages[0], GAP);
    assert.deepEqual(inbox.firsts(), [-1, 7, 8, 9, 10]);

    // Within the ring: no clear, and an older entry is ignored.
    const older = await kv.get(["warp", "c", "_bus"]);
    await writer.bus!.publish("c", { origin: "W", stamp: 1, keys: [bytes(11)] }, signal());
    await writer.bus!.publish("c", { origin: "W", stamp: 1, keys: [bytes(12)] }, signal());
    watched.push(await kv.get(["warp", "c", "_bus"]));
    watched.push(older);
    await inbox.until("2 more messages", (m) => m.length >= 7);
    // The bus key deleted (a wiped database): a clear.
    await kv.delete(["warp", "c", "_bus"]);
    watched.push(await kv.get(["warp", "c", "_bus"]));
    await inbox.until("the clear", (m) => m.length >= 8);
    assert.deepEqual(inbox.firsts(), [-1, 7, 8, 9, 10, 11, 12, -1]);
    // A new bus after that: its messages from the first, with no other clear.
    await writer.bus!.publish("c", { origin: "W", stamp: 1, keys: [bytes(13)] }, signal());
    watched.push(await kv.get(["warp", "c", "_bus"]));
    await inbox.until("message 13", (m) => m.length >= 9);
    // The bus key deleted and written again between two reads (the sequence passed the
    // last one seen): a clear, then the new bus's messages.
    await kv.delete(["warp", "c", "_bus"]);
    for (let i = 14; i <= 16; i++) {
      await writer.bus!.publish("c", { origin: "W", stamp: 1, keys: [bytes(i)] }, signal());
    }
    watched.push(await kv.get(["warp", "c", "_bus"]));
    await inbox.until("the second clear", (m) => m.length >= 13);
    assert.deepEqual(inbox.firsts(), [-1, 7, 8, 9, 10, 11, 12, -1, 13, -1, 14, 15, 16]);
    await off();
    await late.close();
    await writer.close();
    kv.close();
  });
});

Deno.test("kvTier() bus: a message too large for the bus value travels as a clear", async () => {
  await withPath(async (path) => {
    const tier = await kvTier({ path });
    const inbox = new Inbox();
    const off = await tier.bus!.subscribe("c", inbox);
    const keys = Array.from({ length: 40 }, (_, i) => new Uint8Array(1000).fill(i));
    await tier.bus!.publish("c", { origin: "A", stamp: 1, keys }, signal());
    // Many medium messages: the ring drops the oldest to stay under 64 KiB.
    for (let i = 0; i < 20; i++) {
      await tier.bus!.publish(
        "c",
        { origin: "A", stamp: 1, keys: [new Uint8Array(8000).fill(i)] },
        signal(),
      );
    }
    await inbox.until("21 messages", (m) => m.length >= 21);
    assert.deepEqual(inbox.messages[0], { origin: "A", stamp: 1, keys: "clear" });
    assert.equal(inbox.messages.length, 21);
    assert.deepEqual(inbox.messages[20]!.keys, [new Uint8Array(8000).fill(19)]);
    await off();
    await tier.close();
  });
});

Deno.test("kvTier() unsubscribe stops delivery; close() stops the rest", async () => {
  await withPath(async (path) => {
    const tier = await kvTier({ path });
    const stopped = new Inbox();
    const control = new Inbox();
    const off = await tier.bus!.subscribe("c", stopped);
    await tier.bus!.subscribe("c", control); // stopped by close()
    await tier.bus!.publish("c", { origin: "A", stamp: 1, keys: [bytes(1)] }, signal());
    await stopped.until("the first message", (m) => m.length >= 1);
    await off();
    await off(); // a second call is a no-op
    await tier.bus!.publish("c", { origin: "A", stamp: 1, keys: [bytes(2)] }, signal());
    await tier.bus!.publish("c", { origin: "A", stamp: 1, keys: [bytes(3)] }, signal());
    await control.until("three messages", (m) => m.length >= 3);
    assert.deepEqual(stopped.firsts(), [1]);
    assert.deepEqual(control.firsts(), [1, 2, 3]);
    await tier.close();
    await tier.close(); // idempotent
  });
});

Deno.test("kvTier() close() closes a kv it opened, never a given one", async () => {
  await withPath(async (path) => {
    const kv = await Deno.openKv(path);
    const given = await kvTier({ kv });
    await given.storage.set("c", bytes(1), bytes(1), undefined, signal());
    await given.close();
    assert.equal((await kv.get(["warp", "c", bytes(1)])).versionstamp !== null, true);
    await assert.rejects(given.storage.get("c", bytes(1), signal()), Error, "it is closed");
    kv.close();

    // With a path, close() closes the database it opened: watch Deno.openKv to see it.
    const opens: Deno.Kv[] = [];
    const descriptor = Object.getOwnPropertyDescriptor(Deno, "openKv")!;
    const openKv = Deno.openKv;
    Object.defineProperty(Deno, "openKv", {
      configurable: true,
      value: async (p?: string) => {
        const kv = await openKv(p);
        opens.push(kv);
        return kv;
      },
    });
    let opened: RemoteTier;
    try {
      opened = await kvTier({ path });
    } finally {
      Object.defineProperty(Deno, "openKv", descriptor);
    }
    assert.equal(opens.length, 1);
    assert.deepEqual(await opened.storage.get("c", bytes(1), signal()), bytes(1));
    await opened.close();
    await assert.rejects(opens[0]!.get(["warp"]), Deno.errors.BadResource, "the kv is closed");
    await assert.rejects(
      opened.bus!.publish("c", { origin: "", stamp: 1, keys: "clear" }, signal()),
      Error,
    );
  });
});

Deno.test("kvTier() rejects bad arguments with errors naming them", async () => {
  const cases: [unknown, unknown, ErrorConstructor, string][] = [
    [{}, undefined, TypeError, "target must have exactly one of kv (a Deno.Kv) and path"],
    [undefined, undefined, TypeError, "target must be { kv } (a Deno.Kv) or { path }"],
    [{ path: 42 }, undefined, TypeError, "path must be a non-empty string: received 42"],
    [{ path: "" }, undefined, TypeError, 'path must be a non-empty string: received ""'],
    [{ kv: {} }, undefined, TypeError, "kv must be a Deno.Kv (from Deno.openKv): received {}"],
    [{ kv: {}, path: "x" }, undefined, TypeError, "target must have exactly one of kv"],
    [{ path: "x" }, { pollInterval: -1 }, RangeError, "pollInterval must be 0 or a positive"],
    [{ path: "x" }, { pollInterval: "1" }, TypeError, "pollInterval must be 0 or a positive"],
    [{ path: "x" }, { ringSize: 0 }, RangeError, "ringSize must be an integer from 1 to 1000"],
    [{ path: "x" }, { ringSize: 1.5 }, RangeError, "received 1.5"],
    [{ path: "x" }, null, TypeError, "options must be an object: received null"],
  ];
  for (const [target, options, type, message] of cases) {
    await assert.rejects(
      // deno-lint-ignore no-explicit-any
      kvTier(target as any, options as any),
      (e: unknown) => {
        assert.ok(e instanceof type, `${describe(target)}: ${e}`);
        assert.ok((e as Error).message.startsWith("Cannot create kvTier: "), String(e));
        assert.ok((e as Error).message.includes(message), `${(e as Error).message}`);
        return true;
      },
    );
  }
  await withPath(async (path) => {
    const tier = await kvTier({ path });
    // deno-lint-ignore no-explicit-any
    const loose = tier as any;
    await assert.rejects(
      loose.storage.get("c", "key", signal()),
      TypeError,
      "key must be a Uint8Array",
    );
    await assert.rejects(
      loose.storage.get(1, bytes(1), signal()),
      TypeError,
      "name must be a string",
    );
    await assert.rejects(
      loose.bus!.publish("c", { origin: "A", stamp: 1, keys: ["k"] }, signal()),
      TypeError,
      'message must be { origin: string, stamp: 1, keys: Uint8Array[] | "clear" }',
    );
    await assert.rejects(
      loose.bus!.subscribe("c", 1),
      TypeError,
      "listener must have message() and gap() methods",
    );
    const aborted = AbortSignal.abort();
    await assert.rejects(tier.storage.get("c", bytes(1), aborted));
    await tier.close();
  });
});

function describe(v: unknown): string {
  return JSON.stringify(v) ?? String(v);
}

Deno.test("kvTier() bus latency on one file: watch in one process", async () => {
  await withPath(async (path) => {
    const a = await kvTier({ path }, { pollInterval: 0 });
    const b = await kvTier({ path }, { pollInterval: 0 });
    const inbox = new Inbox();
    const off = await b.bus!.subscribe("c", inbox);
    const times: number[] = [];
    for (let i = 0; i < 200; i++) {
      const t0 = performance.now();
      await a.bus!.publish("c", { origin: "A", stamp: 1, keys: [bytes(i & 255)] }, signal());
      await inbox.until(`message ${i}`, (m) => m.length > i);
      times.push(performance.now() - t0);
    }
    assert.deepEqual(inbox.firsts(), Array.from({ length: 200 }, (_, i) => i & 255));
    times.sort((x, y) => x - y);
    console.log(
      `kv bus, publish to delivery, watch in one process: p50 ${
        quantile(times, 0.5).toFixed(2)
      } ms, p99 ${quantile(times, 0.99).toFixed(2)} ms (200 messages)`,
    );
    await off();
    await a.close();
    await b.close();
  });
});

Deno.test("kvTier() in two processes on one file: entries and the bus both ways", async () => {
  await withPath(async (path) => {
    const pollInterval = 20;
    const tier: RemoteTier = await kvTier({ path }, { pollInterval });
    await tier.storage.set("p", bytes(0, 1, 0), bytes(10, 0, 10), undefined, signal());
    const inbox = new Inbox();
    const off = await tier.bus!.subscribe("p", inbox);
    const child = runChild("kv_child.ts", { path, name: "p", pollInterval });
    const fromChild = (m: Invalidation[]): Invalidation[] => m.filter((x) => x.origin === "child");
    await inbox.until("the child's hello", (m) => fromChild(m).length >= 1);
    assert.deepEqual(fromChild(inbox.messages)[0]!.keys, [bytes(1), bytes(2), bytes(3)]);
    assert.deepEqual(await tier.storage.get("p", bytes(0, 2, 0), signal()), bytes(20, 0, 20));

    const rounds = 30;
    const times: number[] = [];
    for (let i = 1; i <= rounds; i++) {
      const t0 = performance.now();
      await tier.bus!.publish("p", { origin: "parent", stamp: 1, keys: [bytes(i)] }, signal());
      await inbox.until(`pong ${i}`, (m) => fromChild(m).length >= i + 1);
      times.push(performance.now() - t0);
    }
    await tier.bus!.publish("p", { origin: "parent", stamp: 1, keys: [bytes()] }, signal());
    const report = await child;
    assert.deepEqual(report, { seen: [10, 0, 10], pongs: rounds, clears: 0, fromParent: 31 });
    assert.deepEqual(
      fromChild(inbox.messages).slice(1).map((m) => m.keys),
      Array.from({ length: rounds }, (_, i) => [bytes(i + 1)]),
    );
    assert.equal(inbox.messages.filter((m) => m.keys === "clear").length, 0);
    times.sort((x, y) => x - y);
    console.log(
      `kv bus, round trip between two processes (pollInterval ${pollInterval} ms): p50 ${
        quantile(times, 0.5).toFixed(1)
      } ms, p99 ${quantile(times, 0.99).toFixed(1)} ms (${rounds} rounds)`,
    );
    await off();
    await tier.close();
  });
});
