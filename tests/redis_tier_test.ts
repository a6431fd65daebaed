import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import { createClient } from "@redis/client";
import { GuardedTier } from "../src/remote/_remote_guard.ts";
import { decodeInvalidation, encodeInvalidation, redisTier } from "../src/remote/redis.ts";
import type { BusListener, Invalidation, RemoteBus, RemoteStorage } from "../src/remote/remote.ts";
import type { RemoteTier } from "../src/remote/remote.ts";
import { type RedisServer, startRedisServer } from "./fixtures/redis_server.ts";
import { until } from "./fixtures/until.ts";

const sig = (): AbortSignal => AbortSignal.timeout(2000);
/** A bus listener of messages (gaps ignored unless `gap` is given). */
const listen = (message: (m: Invalidation) => unknown, gap = (): void => {}): BusListener => ({
  message: (m) => void message(m),
  gap,
});
const bytes = (...b: number[]): Uint8Array => new Uint8Array(b);
const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Waits until `check()` holds, polling every 10 ms, for at most `ms`. */
function percentile(sorted: number[], p: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(sorted.length * p))]!;
}

async function withServer(fn: (server: RedisServer) => Promise<void>): Promise<void> {
  const server = await startRedisServer();
  try {
    await fn(server);
  } finally {
    await server.stop();
  }
}

/** A raw client on `url` returning Buffers, for looking at what the tier stored. */
function makeRaw(url: string): RawClient {
  return createClient({ url });
}
const newClient = (url: string) => createClient({ url });
type RawClient = ReturnType<typeof newClient>;

async function rawClient(url: string): Promise<RawClient> {
  const client = makeRaw(url);
  client.on("error", () => {});
  await client.connect();
  return client;
}

Deno.test("redisTier stores binary keys and values, one namespace per cache name", async () => {
  await withServer(async (server) => {
    const tier = await redisTier({ url: server.url });
    const raw = await rawClient(server.url);
    try {
      const key = bytes(0, 255, 58, 42, 0, 13, 10);
      const value = bytes(0, 1, 2, 255, 254, 0);
      await tier.storage.set("a", key, value, undefined, sig());
      assert.deepEqual(await tier.storage.get("a", key, sig()), value);
      assert.equal((await tier.storage.get("a", key, sig())) instanceof Buffer, false);
      assert.equal(
        await tier.storage.get("b", key, sig()),
        undefined,
        "another name, another cache",
      );
      assert.equal(await tier.storage.get("a:b", key, sig()), undefined);
      await tier.storage.set("a:b", bytes(1), bytes(2), undefined, sig());
      await tier.storage.set("a*", bytes(1), bytes(3), undefined, sig());
      await tier.storage.set("a", bytes(1), bytes(4), undefined, sig());
      await tier.storage.set("", bytes(1), bytes(5), undefined, sig());

      const stored = await raw.withTypeMapping({}).sendCommand(["KEYS", "*"]) as string[];
      assert.equal(stored.length, 5);
      assert.ok(stored.includes("warp:a%3Ab:\x01"), `${stored}`);

      await t_clear(tier);
      assert.equal(await tier.storage.get("a", key, sig()), undefined);
      assert.equal(await tier.storage.get("a", bytes(1), sig()), undefined);
      assert.deepEqual(await tier.storage.get("a:b", bytes(1), sig()), bytes(2), "a:b is not a's");
      assert.deepEqual(
        await tier.storage.get("a*", bytes(1), sig()),
        bytes(3),
        "a glob name is literal",
      );
      assert.deepEqual(await tier.storage.get("", bytes(1), sig()), bytes(5));

      assert.equal(await tier.storage.delete("a:b", bytes(1), sig()), true);
      assert.equal(await tier.storage.delete("a:b", bytes(1), sig()), false);
      assert.equal(await tier.storage.get("a:b", bytes(1), sig()), undefined);
      assert.equal(await tier.storage.get("", bytes(), sig()), undefined);
      await tier.storage.set("", bytes(), bytes(), undefined, sig());
      assert.deepEqual(await tier.storage.get("", bytes(), sig()), bytes(), "empty key and value");
    } finally {
      await raw.close();
      await tier.close();
    }
  });
  async function t_clear(tier: RemoteTier): Promise<void> {
    await tier.storage.clear("a", sig());
  }
});

Deno.test("redisTier.clear removes every key of a large cache in batches", async () => {
  await withServer(async (server) => {
    const tier = await redisTier({ url: server.url });
    const raw = await rawClient(server.url);
    try {
      const n = 2500;
      const pipeline = raw.multi();
      for (let i = 0; i < n; i++) pipeline.set(`warp:big:${i}`, "x");
      pipeline.set("warp:other:1", "y");
      await pipeline.exec();
      await tier.storage.clear("big", sig());
      assert.equal(await raw.dbSize(), 1);
      assert.equal(await raw.get("warp:other:1"), "y");
    } finally {
      await raw.close();
      await tier.close();
    }
  });
});

Deno.test("redisTier.set gives a PX expiry from ttl (rounded up); 0 removes, Infinity keeps", async () => {
  await withServer(async (server) => {
    const tier = await redisTier({ url: server.url }, { prefix: "t:" });
    const raw = await rawClient(server.url);
    try {
      await tier.storage.set("c", bytes(1), bytes(1), 60_000.2, sig());
      const pttl = await raw.pTTL("t:c:\x01");
      assert.ok(pttl > 59_000 && pttl <= 60_001, `PTTL ${pttl}`);
      await tier.storage.set("c", bytes(2), bytes(2), Infinity, sig());
      assert.equal(await raw.pTTL("t:c:\x02"), -1);
      await tier.storage.set("c", bytes(2), bytes(2), 0, sig());
      assert.equal(await tier.storage.get("c", bytes(2), sig()), undefined, "ttl 0 removes");

      await tier.storage.set("c", bytes(3), bytes(3), 30, sig());
      await until(
        "an entry of TTL 30 ms expires",
        async () => (await tier.storage.get("c", bytes(3), sig())) === undefined,
        5000,
      );
      await assert.rejects(tier.storage.set("c", bytes(4), bytes(4), -1, sig()), RangeError);
      await assert.rejects(tier.storage.set("c", bytes(4), bytes(4), NaN, sig()), /ttl.*NaN/);
    } finally {
      await raw.close();
      await tier.close();
    }
  });
});

Deno.test("redisTier pub/sub: invalidations reach every subscriber of the name, binary-safe", async () => {
  await withServer(async (server) => {
    const a = await redisTier({ url: server.url });
    const b = await redisTier({ url: server.url });
    try {
      const atB: Invalidation[] = [];
      const atA: Invalidation[] = [];
      const otherName: Invalidation[] = [];
      const stopB = await b.bus!.subscribe("users", listen((m) => atB.push(m)));
      const stopA = await a.bus!.subscribe("users", listen((m) => atA.push(m)));
      const stopOther = await b.bus!.subscribe("posts", listen((m) => otherName.push(m)));
      const keys = [bytes(0, 255, 10), bytes(), bytes(58, 58)];
      await a.bus!.publish("users", { origin: "a-1", stamp: 1, keys }, sig());
      await a.bus!.publish("users", { origin: "a-1", stamp: 1, keys: "clear" }, sig());
      await until("both hosts get both messages", () => atB.length === 2 && atA.length === 2, 5000);
      assert.deepEqual(atB, [{ origin: "a-1", stamp: 1, keys }, {
        origin: "a-1",
        stamp: 1,
        keys: "clear",
      }]);
      assert.equal(Object.getPrototypeOf(atB[0]!.keys[0]), Uint8Array.prototype);
      assert.equal(otherName.length, 0);

      await stopB();
      await stopB();
      await a.bus!.publish("users", { origin: "a-1", stamp: 1, keys: "clear" }, sig());
      await until("a gets its third message", () => atA.length === 3, 5000);
      await sleep(50);
      assert.equal(atB.length, 2, "no message after unsubscribing");
      await stopA();
      await stopOther();
    } finally {
      await a.close();
      await b.close();
    }
  });
});

Deno.test("redisTier ignores a malformed bus message and reports it to onError", async () => {
  await withServer(async (server) => {
    const errors: Error[] = [];
    const tier = await redisTier({ url: server.url }, { onError: (e) => errors.push(e) });
    const raw = await rawClient(server.url);
    try {
      const got: Invalidation[] = [];
      const stop = await tier.bus!.subscribe("m", listen((msg) => got.push(msg)));
      await raw.publish("warp:m:bus", Buffer.from([1, 0, 200]));
      await raw.publish(
        "warp:m:bus",
        Buffer.from(encodeInvalidation({ origin: "o", stamp: 1, keys: [] })),
      );
      await until("the message arrives", () => got.length === 1, 5000);
      assert.deepEqual(got, [{ origin: "o", stamp: 1, keys: [] }]);
      assert.equal(errors.length, 1);
      assert.match(errors[0]!.message, /malformed invalidation on warp:m:bus/);
      await stop();
    } finally {
      await raw.close();
      await tier.close();
    }
  });
});

Deno.test("encodeInvalidation/decodeInvalidation round-trip and reject malformed frames", () => {
  const cases: Invalidation[] = [
    { origin: "", stamp: 1, keys: [] },
    { origin: "é-1", stamp: 1, keys: "clear" },
    {
      origin: "x".repeat(255),
      stamp: 1.7e12 + 0.125,
      keys: [bytes(), bytes(0), new Uint8Array(70_000).fill(7)],
    },
    { origin: "t", stamp: 2, keys: [bytes(3)], tags: ["user:1", "", "ü".repeat(300)] },
    { origin: "t", stamp: 3, keys: "clear", tags: ["a"] },
  ];
  for (const m of cases) assert.deepEqual(decodeInvalidation(encodeInvalidation(m)), m);
  const good = encodeInvalidation({ origin: "ab", stamp: 1, keys: [bytes(1, 2)] });
  for (let cut = 0; cut < good.length; cut++) {
    assert.equal(decodeInvalidation(good.subarray(0, cut)), undefined, `cut at ${cut}`);
  }
  assert.equal(decodeInvalidation(new Uint8Array([...good, 0])), undefined, "trailing byte");
  assert.equal(decodeInvalidation(new Uint8Array([1, ...good.subarray(1)])), undefined);
  assert.equal(decodeInvalidation(new Uint8Array([3, ...good.subarray(1)])), undefined);
  assert.equal(decodeInvalidation(new Uint8Array([2, 9, 0])), undefined, "unknown kind");
  assert.equal(
    decodeInvalidation(new Uint8Array([2, 0, 1, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0])),
    undefined,
    "an origin that is not UTF-8",
  );
  assert.throws(
    () => encodeInvalidation({ origin: "x".repeat(256), stamp: 1, keys: [] }),
    RangeError,
  );
});

Deno.test("redisTier rejects bad arguments with errors naming them", async () => {
  // deno-lint-ignore no-explicit-any
  const bad = (target: any, options?: any): Promise<RemoteTier> => redisTier(target, options);
  await assert.rejects(bad({}), /target must have a url \(string\) or a client/);
  await assert.rejects(bad(undefined), /target must be \{ url \} or \{ client \}/);
  await assert.rejects(bad({ url: 6379 }), /target must have a url/);
  await assert.rejects(
    bad({ url: "http://127.0.0.1:6379" }),
    (e: Error) => e instanceof TypeError && /url must be a redis:\/\/.*"http:/.test(e.message),
  );
  await assert.rejects(bad({ url: "not a url" }), /url must be a redis:\/\/ or rediss:\/\/ URL/);
  await assert.rejects(bad({ client: {} }), /client must be a node-redis client/);
  await assert.rejects(
    bad({ url: "redis://127.0.0.1:1" }, { reconnectMaxDelay: 0 }),
    /reconnectMaxDelay must be a positive number of ms no larger than 2147483647 \(the longest timer\): received 0/,
  );
  await assert.rejects(
    bad({ url: "redis://127.0.0.1:1" }, { prefix: 1 }),
    /prefix must be a string/,
  );
});

Deno.test("redisTier with a server down at start: resolves, calls reject fast, works once it is up", async () => {
  const server = await startRedisServer();
  await server.kill();
  const errors: Error[] = [];
  const tier = await redisTier({ url: server.url }, { onError: (e) => errors.push(e) });
  try {
    await assert.rejects(tier.storage.get("x", bytes(1), sig()), /offline|closed|ECONNREFUSED/i);
    assert.ok(errors.length >= 1, "connection errors go to onError, not to an unhandled event");
    await server.restart();
    await until(
      "a set works again after the restart",
      () =>
        tier.storage.set("x", bytes(1), bytes(2), undefined, sig()).then(() => true, () => false),
      10_000,
    );
    assert.deepEqual(await tier.storage.get("x", bytes(1), sig()), bytes(2));
  } finally {
    await tier.close();
    await server.stop();
  }
});

Deno.test("redisTier({ client }) uses the client and never closes it", async () => {
  await withServer(async (server) => {
    const client = createClient({ url: server.url });
    await client.connect();
    assert.equal(client.listenerCount("error"), 0);
    const tier = await redisTier({ client });
    assert.equal(client.listenerCount("error"), 1, "a no-op error listener while open");
    try {
      await tier.storage.set("g", bytes(1), bytes(7), undefined, sig());
      assert.equal(await client.get("warp:g:\x01"), "\x07");
      const got: Invalidation[] = [];
      const stop = await tier.bus!.subscribe("g", listen((m) => got.push(m)));
      await tier.bus!.publish("g", { origin: "o", stamp: 1, keys: "clear" }, sig());
      await until("the message arrives", () => got.length === 1, 5000);
      await stop();
    } finally {
      await tier.close();
    }
    assert.equal(client.isOpen, true, "the given client stays open");
    assert.equal(client.listenerCount("error"), 0);
    assert.equal(await client.get("warp:g:\x01"), "\x07");
    await client.close();
  });
});

Deno.test("redisTier latency on loopback: get/set and bus p50/p99 (printed, not asserted)", async () => {
  await withServer(async (server) => {
    const a = await redisTier({ url: server.url });
    const b = await redisTier({ url: server.url });
    try {
      const value = new Uint8Array(100).fill(1);
      const setTimes: number[] = [];
      const getTimes: number[] = [];
      for (let i = 0; i < 500; i++) {
        const key = new TextEncoder().encode(`k${i % 50}`);
        let t0 = performance.now();
        await a.storage.set("lat", key, value, 60_000, sig());
        setTimes.push(performance.now() - t0);
        t0 = performance.now();
        const got = await a.storage.get("lat", key, sig());
        getTimes.push(performance.now() - t0);
        assert.equal(got?.length, 100);
      }
      let resolveNext: ((t: number) => void) | undefined;
      const stop = await b.bus!.subscribe("lat", listen(() => resolveNext?.(performance.now())));
      const busTimes: number[] = [];
      for (let i = 0; i < 200; i++) {
        const received = new Promise<number>((r) => (resolveNext = r));
        const t0 = performance.now();
        await a.bus!.publish("lat", { origin: "a", stamp: 1, keys: [bytes(i & 255)] }, sig());
        busTimes.push((await received) - t0);
      }
      await stop();
      assert.equal(busTimes.length, 200);
      for (const [label, times] of [["set", setTimes], ["get", getTimes], ["bus", busTimes]]) {
        const sorted = (times as number[]).toSorted((x, y) => x - y);
        console.log(
          `redis ${label}: p50 ${percentile(sorted, 0.5).toFixed(3)} ms, p99 ${
            percentile(sorted, 0.99).toFixed(3)
          } ms over ${sorted.length}`,
        );
      }
    } finally {
      await a.close();
      await b.close();
    }
  });
});

/** Counts the calls that reach a tier's parts. */
class CountingTier implements RemoteStorage, RemoteBus {
  calls = 0;
  constructor(readonly inner: RemoteTier) {}
  get(n: string, k: Uint8Array, s: AbortSignal): Promise<Uint8Array | undefined> {
    this.calls++;
    return this.inner.storage.get(n, k, s);
  }
  set(
    n: string,
    k: Uint8Array,
    v: Uint8Array,
    t: number | undefined,
    s: AbortSignal,
  ): Promise<void> {
    this.calls++;
    return this.inner.storage.set(n, k, v, t, s);
  }
  delete(n: string, k: Uint8Array, s: AbortSignal): Promise<boolean> {
    this.calls++;
    return this.inner.storage.delete(n, k, s);
  }
  clear(n: string, s: AbortSignal): Promise<void> {
    this.calls++;
    return this.inner.storage.clear(n, s);
  }
  publish(n: string, m: Invalidation, s: AbortSignal): Promise<void> {
    this.calls++;
    return this.inner.bus!.publish(n, m, s);
  }
  subscribe(n: string, l: BusListener): Promise<() => Promise<void>> {
    this.calls++;
    return this.inner.bus!.subscribe(n, l);
  }
  close(): Promise<void> {
    return this.inner.close();
  }
}

Deno.test("GuardedTier over redisTier: a killed server never fails a call, opens the breaker, and recovers by itself", async () => {
  const server = await startRedisServer();
  const tier = new CountingTier(await redisTier({ url: server.url }));
  const publisherTier = await redisTier({ url: server.url });
  const lines: string[] = [];
  const guard = new GuardedTier(tier, tier, "k", {
    timeout: 500,
    tierName: "redis",
    warn: (l) => lines.push(l),
  });
  const publisher = new GuardedTier(publisherTier.storage, publisherTier.bus, "k", {
    timeout: 500,
    warn: () => {},
  });
  try {
    const got: Invalidation[] = [];
    const stop = await guard.subscribe(listen((m) => got.push(m)));
    assert.equal(await guard.set(bytes(1), bytes(10), undefined), true);
    assert.deepEqual(await guard.get(bytes(1)), bytes(10));
    assert.equal(await publisher.publish({ origin: "p", stamp: 1, keys: [bytes(1)] }), true);
    await until("the message arrives", () => got.length === 1, 5000);

    await server.kill();
    const killedAt = performance.now();
    // Every call resolves; failures count; after 3 the breaker opens.
    for (let i = 0; i < 3; i++) assert.equal(await guard.get(bytes(1)), undefined);
    assert.equal(guard.errors, 3);
    assert.equal(guard.state, "open");
    const before = tier.calls;
    for (let i = 0; i < 50; i++) {
      assert.equal(await guard.get(bytes(1)), undefined);
      assert.equal(await guard.set(bytes(1), bytes(11), 1000), false);
      assert.equal(await guard.publish({ origin: "g", stamp: 1, keys: "clear" }), false);
    }
    assert.equal(tier.calls, before, "no tier call while the breaker is open");
    assert.equal(guard.skipped, 150);
    assert.equal(lines.length, 1);
    assert.match(lines[0]!, /cache "k": redis tier failing/);
    const failFastMs = performance.now() - killedAt;

    await sleep(1500); // the server stays down past the first trial: it fails, backoff doubles
    await guard.get(bytes(1));
    assert.ok(guard.errors >= 4, `errors ${guard.errors}`);
    await server.restart();
    const restartedAt = performance.now();
    // The server restarted empty (no persistence); calls work again within the 10 s cap.
    await until(
      "set works again after the restart",
      async () => await guard.set(bytes(1), bytes(12), undefined),
      15_000,
    );
    const recoveryMs = performance.now() - restartedAt;
    assert.deepEqual(await guard.get(bytes(1)), bytes(12));
    assert.equal(guard.state, "closed");
    assert.equal(lines.length, 2);
    assert.match(lines[1]!, /cache "k": redis tier recovered/);

    // The subscription was renewed on the new server.
    await until("the subscription delivers again after the restart", async () => {
      await publisher.publish({ origin: "p", stamp: 1, keys: [bytes(2)] });
      return got.length > 1;
    }, 15_000);
    const resubscribedMs = performance.now() - restartedAt;
    assert.deepEqual(got.at(-1), { origin: "p", stamp: 1, keys: [bytes(2)] });
    console.log(
      `kill/restart: 3 failures + 150 skipped calls in ${
        failFastMs.toFixed(0)
      } ms; errors ${guard.errors}; ` +
        `set/get back ${recoveryMs.toFixed(0)} ms after restart; bus back ${
          resubscribedMs.toFixed(0)
        } ms after restart`,
    );
    await stop();
  } finally {
    await tier.close();
    await publisherTier.close();
    await server.stop();
  }
});

Deno.test("redisTier: a server killed under a live process never crashes it (no unhandled error event)", async () => {
  const server = await startRedisServer();
  try {
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("./fixtures/redis_dead_server_child.ts", import.meta.url).pathname,
        server.url,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    // A child stuck after the kill fails the test instead of hanging it.
    const watchdog = setTimeout(() => child.kill("SIGKILL"), 30_000);
    const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let out = "";
    while (!out.includes("ready\n")) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
    }
    await server.kill();
    await child.stdin.close();
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      out += value;
    }
    const status = await child.status;
    clearTimeout(watchdog);
    const stderr = await new Response(child.stderr).text();
    assert.equal(status.code, 0, `child exited with ${status.code}: ${stderr}`);
    assert.doesNotMatch(stderr, /Uncaught|Error/, "no error reaches the process");
    const failed = Number(/alive (\d+)/.exec(out)?.[1]);
    assert.ok(failed >= 10, `calls failed while the server was down: ${out}`);
  } finally {
    await server.stop();
  }
});

Deno.test("redisTier.close() resolves within its timeout while the server is down", async () => {
  const server = await startRedisServer();
  await server.kill();
  try {
    for (const delay of [0, 20, 40, 300]) {
      const tier = await redisTier({ url: server.url }, { onError: () => {} });
      // What a cache does first: subscribe to its bus (pending while the server is down).
      const subscribed = tier.bus!.subscribe("x", listen(() => {})).catch(() => undefined);
      await sleep(delay);
      const closed = tier.close().then(() => "closed");
      const outcome = await Promise.race([closed, sleep(5000).then(() => "hung")]);
      assert.equal(outcome, "closed", `close() ${delay} ms after the first call`);
      await subscribed;
    }
  } finally {
    await server.stop();
  }
});

Deno.test("a script with a tier opened by await using exits by itself, Redis up or down", async () => {
  const server = await startRedisServer();
  const run = async (): Promise<{ code: number; out: string; ms: number }> => {
    const t0 = performance.now();
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("./fixtures/redis_script_exit.ts", import.meta.url).pathname,
        server.url,
      ],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const watchdog = setTimeout(() => child.kill("SIGKILL"), 30_000);
    const { code, stdout } = await child.output();
    clearTimeout(watchdog);
    return { code, out: new TextDecoder().decode(stdout), ms: performance.now() - t0 };
  };
  const raw = await rawClient(server.url);
  try {
    const up = await run();
    assert.equal(up.code, 0, "exited by itself (not killed by the watchdog)");
    assert.equal(up.out.trim(), "42");
    // The delete and the set made just before the end were sent by close().
    const keys = await raw.withTypeMapping({}).sendCommand([
      "KEYS",
      "warp:script-exit:*",
    ]) as string[];
    assert.equal(keys.length, 1, `only key 1 is left: ${keys}`);
    await server.kill();
    const down = await run();
    assert.equal(down.code, 0, "exited by itself with Redis down");
    assert.equal(down.out.trim(), "42");
    console.log(`  exits ${up.ms.toFixed(0)} ms (Redis up), ${down.ms.toFixed(0)} ms (down)`);
  } finally {
    await raw.close().catch(() => {});
    await server.stop();
  }
});
