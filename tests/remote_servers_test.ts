// The concrete remote tiers against real servers: redis-server (started per test, killed,
// frozen with SIGSTOP) and Deno KV files (locked by another process, closed mid-subscribe).
// Each test failed on the code before its fix (RELIABILITY.md, holes 94-98).
import assert from "node:assert/strict";
import { cache } from "../mod.ts";
import { kvTier } from "../src/remote/kv.ts";
import { redisTier } from "../src/remote/redis.ts";
import type { BusListener } from "../src/remote/remote.ts";
import { startRedisServer } from "./fixtures/redis_server.ts";
import { until } from "./fixtures/until.ts";

const sig = (): AbortSignal => AbortSignal.timeout(5000);
const bytes = (...b: number[]): Uint8Array => new Uint8Array(b);

/** Resolves to `"hung"` if `promise` has not settled within `ms` (a hang check with a
 * generous bound, not a latency assertion). */
async function settles(promise: Promise<unknown>, ms: number): Promise<"settled" | "hung"> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  const outcome = await Promise.race([
    promise.then(() => "settled" as const, () => "settled" as const),
    new Promise<"hung">((r) => timer = setTimeout(() => r("hung"), ms)),
  ]);
  clearTimeout(timer);
  return outcome;
}

async function withKvPath(body: (path: string) => Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "warp_servers_kv_" });
  try {
    await body(`${dir}/cache.kv`);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Runs the KV child fixture; kills it after `ms` (then `exited` is false). */
async function runKvChild(
  path: string,
  mode: string,
  ms = 20_000,
): Promise<{ exited: boolean; code: number; out: string; err: string }> {
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--unstable-kv",
      new URL("./fixtures/remote_servers_kv_child.ts", import.meta.url).pathname,
      path,
      mode,
    ],
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  let killed = false;
  const watchdog = setTimeout(() => {
    killed = true;
    child.kill("SIGKILL");
  }, ms);
  const { code, stdout, stderr } = await child.output();
  clearTimeout(watchdog);
  return {
    exited: !killed,
    code,
    out: new TextDecoder().decode(stdout).trim(),
    err: new TextDecoder().decode(stderr).trim(),
  };
}

// --- Redis: a server that accepts connections but never answers ----------------------

Deno.test("redisTier() resolves within connectTimeout when the server accepts but never answers (a frozen redis-server)", async () => {
  const server = await startRedisServer();
  const pid = Number(
    (await new Deno.Command("redis-cli", {
      args: ["-p", String(server.port), "info", "server"],
      stdout: "piped",
    }).output().then((o) => new TextDecoder().decode(o.stdout)))
      .match(/process_id:(\d+)/)![1],
  );
  Deno.kill(pid, "SIGSTOP");
  try {
    const opening = redisTier({ url: server.url }, {
      connectTimeout: 200,
      timeout: 200,
      onError: () => {},
    });
    // "The Promise resolves once the connections are ready or their first attempt
    // failed", and connectTimeout bounds "one connection attempt": 200 ms here, 10 s
    // allowed.
    const outcome = await settles(opening, 10_000);
    Deno.kill(pid, "SIGCONT");
    const tier = await opening;
    await tier.close();
    assert.equal(
      outcome,
      "settled",
      "redisTier() still pending 10 s after a 200 ms connectTimeout",
    );
  } finally {
    try {
      Deno.kill(pid, "SIGCONT");
    } catch { /* exited */ }
    await server.stop();
  }
});

Deno.test("redisTier() resolves within connectTimeout against a listener that accepts and never answers", async () => {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (listener.addr as Deno.NetAddr).port;
  const held: Deno.Conn[] = [];
  const accepting = (async () => {
    try {
      for await (const conn of listener) held.push(conn);
    } catch { /* closed */ }
  })();
  try {
    const opening = redisTier({ url: `redis://127.0.0.1:${port}` }, {
      connectTimeout: 200,
      timeout: 200,
      onError: () => {},
    });
    const outcome = await settles(opening, 10_000);
    if (outcome === "hung") {
      // Let the tier go: closing the held sockets fails its handshake.
      for (const c of held) c.close();
      held.length = 0;
      await (await opening).close();
      assert.fail("redisTier() still pending 10 s after a 200 ms connectTimeout");
    }
    // Closed while its handshake is still unanswered: within its timeout (10 s allowed).
    const tier = await opening;
    assert.equal(await settles(tier.close(), 10_000), "settled", "close() hung");
  } finally {
    listener.close();
    for (const c of held) c.close();
    await accepting;
  }
});

// --- Redis: prefixes ---------------------------------------------------------------

Deno.test("redisTier clear() of a cache never deletes the keys of a tier with a longer prefix", async () => {
  const server = await startRedisServer();
  // Two services on one server: "app:" and, under it, "app:staging:".
  const outer = await redisTier({ url: server.url }, { prefix: "app:", onError: () => {} });
  const inner = await redisTier({ url: server.url }, {
    prefix: "app:staging:",
    onError: () => {},
  });
  // The default prefix, and a tier without one.
  const plain = await redisTier({ url: server.url }, { onError: () => {} });
  const bare = await redisTier({ url: server.url }, { prefix: "", onError: () => {} });
  try {
    await inner.storage.set("users", bytes(1, 1), bytes(42), undefined, sig());
    await plain.storage.set("users", bytes(1, 1), bytes(43), undefined, sig());
    // Cache "staging" of the outer tier is empty; clearing it touches only it.
    await outer.storage.clear("staging", sig());
    // Cache "warp" of the bare tier is empty; clearing it touches only it.
    await bare.storage.clear("warp", sig());
    assert.deepEqual(
      await inner.storage.get("users", bytes(1, 1), sig()),
      bytes(42),
      'outer clear("staging") deleted cache "users" of the tier with prefix "app:staging:"',
    );
    assert.deepEqual(
      await plain.storage.get("users", bytes(1, 1), sig()),
      bytes(43),
      'clear("warp") with prefix "" deleted cache "users" of the default prefix "warp:"',
    );
  } finally {
    await Promise.all([outer.close(), inner.close(), plain.close(), bare.close()]);
    await server.stop();
  }
});

// --- TTLs past what the server accepts ----------------------------------------------

Deno.test("redisTier and kvTier store a value with a TTL past the server's expiry range (kept longer, never refused)", async () => {
  const server = await startRedisServer();
  await withKvPath(async (path) => {
    const redis = await redisTier({ url: server.url }, { onError: () => {} });
    const kv = await kvTier({ path });
    try {
      const failures: string[] = [];
      // A year; MAX_SAFE_INTEGER ("forever" as a finite number, 285,000 years); 1e19;
      // Number.MAX_VALUE. The cache's `ttl` option takes any positive finite number.
      for (const ttl of [31_536_000_000, Number.MAX_SAFE_INTEGER, 1e19, Number.MAX_VALUE]) {
        for (const [label, tier] of [["redis", redis], ["kv", kv]] as const) {
          try {
            await tier.storage.set("long", bytes(7), bytes(1, 2, 3), ttl, sig());
            const got = await tier.storage.get("long", bytes(7), sig());
            if (got === undefined) failures.push(`${label} ttl ${ttl}: not stored`);
          } catch (e) {
            failures.push(`${label} ttl ${ttl}: ${(e as Error).message}`);
          }
        }
      }
      assert.deepEqual(failures, []);
    } finally {
      await redis.close();
      await kv.close();
      await server.stop();
    }
  });
});

Deno.test("kv remote: a cache with ttl Number.MAX_SAFE_INTEGER shares its values between hosts", async () => {
  await withKvPath(async (path) => {
    const tier = await kvTier({ path });
    const raw = await Deno.openKv(path);
    const warn = console.warn;
    console.warn = () => {};
    let computed = 0;
    const make = () =>
      cache({ name: "kv-forever", ttl: Number.MAX_SAFE_INTEGER, remote: tier })(
        async (k: number) => {
          await null;
          computed++;
          return `v${k}`;
        },
      );
    const a = make();
    const b = make();
    try {
      assert.equal(await a(1), "v1");
      // A's write-through lands in the storage (polled; 10 s allowed).
      await until("A's value in the KV storage", async () => {
        for await (const _ of raw.list({ prefix: ["warp", "kv-forever"] })) return true;
        return false;
      }, 10_000);
      assert.equal(await b(1), "v1");
      assert.equal(computed, 1, "B computed instead of reading A's value");
    } finally {
      console.warn = warn;
      raw.close();
      await tier.close();
    }
  });
});

// --- Deno KV: close() while a subscription is being made ------------------------------

Deno.test("kvTier: a subscribe in flight when close() is called ends, and the process exits", async () => {
  await withKvPath(async (path) => {
    const run = await runKvChild(path, "bus");
    assert.ok(run.exited, `the child never exited (killed after 20 s): ${run.out} ${run.err}`);
    assert.equal(run.out, "closed; the subscribe in flight rejected");
  });
});

Deno.test("kvTier: a subscribe in flight when close() is called rejects (nothing keeps polling a closed tier)", async () => {
  await withKvPath(async (path) => {
    const db = await Deno.openKv(path);
    // A given Deno.Kv whose reads take 50 ms (Deno Deploy's KV is a network away).
    const slow = new Proxy(db, {
      get(target, prop): unknown {
        const v = Reflect.get(target, prop, target);
        if (prop === "get") {
          return async (...args: Parameters<Deno.Kv["get"]>) => {
            await new Promise((r) => setTimeout(r, 50));
            return await target.get(...args);
          };
        }
        return typeof v === "function" ? v.bind(target) : v;
      },
    });
    const tier = await kvTier({ kv: slow }, { pollInterval: 20 });
    const listener: BusListener = { message: () => {}, gap: () => {} };
    const subscribed = tier.bus!.subscribe("x", listener);
    await tier.close();
    const outcome = await subscribed.then(
      async (stop) => {
        await stop(); // ends the watch and the polling left behind
        return "resolved";
      },
      () => "rejected",
    );
    db.close();
    assert.equal(
      outcome,
      "rejected",
      "subscribe() resolved after close(): its watch and polling outlive the tier",
    );
  });
});

// --- Deno KV: a file locked by another process -------------------------------------------

Deno.test("kvTier.close() resolves within its timeout while another process holds the file locked", async () => {
  await withKvPath(async (path) => {
    const seed = await Deno.openKv(path);
    await seed.set(["seed"], 1);
    seed.close();
    const locker = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        new URL("./fixtures/remote_servers_sqlite_lock.ts", import.meta.url).pathname,
        path,
      ],
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lockOut = lines(locker.stdout);
    assert.equal(await lockOut.next(), "locked");
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--unstable-kv",
        new URL("./fixtures/remote_servers_kv_lock_child.ts", import.meta.url).pathname,
        path,
      ],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const out = lines(child.stdout);
    let closedWhileLocked = false;
    try {
      assert.equal(await out.next(), "closing");
      // close() has a timeout of 300 ms; 10 s allowed before the lock is released.
      const next = out.next();
      closedWhileLocked = (await settles(next, 10_000)) === "settled" && await next === "closed";
    } finally {
      const w = locker.stdin.getWriter();
      await w.write(new Uint8Array([10]));
      await w.close();
      await locker.status;
      await lockOut.drain();
      await child.status;
      await out.drain();
    }
    assert.ok(closedWhileLocked, "tier.close() did not resolve while the file was locked (10 s)");
  });
});

/** The lines of a child's stdout, one by one. */
function lines(stream: ReadableStream<Uint8Array>): {
  next(): Promise<string | undefined>;
  drain(): Promise<void>;
} {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  return {
    async next(): Promise<string | undefined> {
      for (;;) {
        const at = buffer.indexOf("\n");
        if (at >= 0) {
          const line = buffer.slice(0, at);
          buffer = buffer.slice(at + 1);
          return line;
        }
        const { done, value } = await reader.read();
        if (done) return buffer === "" ? undefined : buffer;
        buffer += value;
      }
    },
    async drain(): Promise<void> {
      while (!(await reader.read()).done) { /* discard */ }
    },
  };
}

for (const mode of ["slow", "cache"]) {
  Deno.test(`kv remote (${mode === "slow" ? "reads of 50 ms" : "a local file"}): a script that calls a cache once and ends its \`await using\` scope exits by itself`, async () => {
    // The cache subscribes to its bus in the background; the scope ends while the
    // subscription's first read is under way (always with reads of 50 ms; on a local
    // file, depending on the machine's load).
    await withKvPath(async (path) => {
      for (let run = 0; run < 3; run++) {
        const r = await runKvChild(path, mode);
        assert.ok(r.exited, `run ${run}: the script never exited (killed after 20 s): ${r.out}`);
        assert.equal(r.out, "42\nclosed");
      }
    });
  });
}
