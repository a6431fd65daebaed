// The shared store's format 6 features through SharedStore (src/store/shared_store.ts): an
// entry's own TTL, the stale window, the stale-hit and refresh counters across handles,
// and cross-process single-flight (Flights) within a process and across real `deno`
// processes (tests/fixtures/flight_child.ts): one owner of 8, waiters that sleep, and a
// SIGKILLed owner taken over.
import assert from "node:assert/strict";
import { loadNative } from "../src/native/ffi.ts";
import { FLIGHT, SharedStore } from "../src/store/shared_store.ts";
import { type KeyBytes, MISS } from "../src/store/store.ts";

const root = new URL("../", import.meta.url).pathname;
const encoder = new TextEncoder();

/** Runs `body` with a fresh directory in /dev/shm, removed afterwards. */
async function withDir(body: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp_flight_" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function open(dir: string, ttl?: number, stale = 0): SharedStore {
  return new SharedStore({ dir, file: "c.warp" }, 16, 64, 256, ttl, "f", undefined, stale);
}

function keyOf(text: string): KeyBytes {
  const buf = encoder.encode(text);
  return { buf, len: buf.length, pointer: () => undefined };
}

function put(s: SharedStore, key: string, value: unknown, now: number, ttl?: number): boolean {
  const k = encoder.encode(key);
  return s.set(k, k.length, value, now, false, undefined, ttl);
}

function get(s: SharedStore, key: string, now: number): unknown {
  const k = encoder.encode(key);
  return s.get(k, k.length, now);
}

function peekStale(s: SharedStore, key: string, now: number): unknown {
  const k = encoder.encode(key);
  return s.peekStale(k, k.length, now);
}

Deno.test("SharedStore: an entry's own TTL is honoured by a handle opened without a TTL", async () => {
  await withDir((dir) => {
    const writer = open(dir, 1e9);
    const reader = open(dir); // no ttl
    try {
      assert.ok(put(writer, "k", "v", 1000, 50));
      assert.equal(get(reader, "k", 1049), "v");
      assert.equal(get(reader, "k", 1050), MISS, "expired at its own TTL");
      assert.equal(get(writer, "k", 1050), MISS, "the writer's long TTL does not apply");
      // Infinity: never, whatever the handle's TTL.
      const short = open(dir, 10);
      assert.ok(put(short, "f", "w", 0, Infinity));
      assert.equal(get(short, "f", 1e12), "w");
      short.close();
      // Hits do not extend it.
      assert.ok(put(reader, "h", 1, 0, 100));
      assert.equal(get(reader, "h", 99), 1);
      assert.equal(get(reader, "h", 100), MISS);
      for (const bad of [0, -1, NaN]) {
        assert.throws(
          () => put(reader, "x", 1, 0, bad),
          (e: unknown) =>
            e instanceof RangeError &&
            e.message.includes(
              `ttl must be a positive number of milliseconds or Infinity: received ${bad}`,
            ),
        );
      }
    } finally {
      writer.close();
      reader.close();
    }
  });
});

Deno.test("SharedStore: the stale window keeps an entry for peekStale and misses it for get", async () => {
  await withDir((dir) => {
    const s = open(dir, 100, 50);
    const other = open(dir, 100); // no stale window
    try {
      assert.ok(put(s, "k", "v", 1000));
      assert.equal(get(s, "k", 1099), "v", "fresh while age < ttl");
      assert.equal(peekStale(s, "k", 1099), "v");
      for (const now of [1100, 1149]) {
        assert.equal(get(s, "k", now), MISS, `stale at ${now}: a miss for get`);
        assert.equal(peekStale(s, "k", now), "v", `stale at ${now}: kept`);
        assert.equal(peekStale(other, "k", now), MISS, "the window is per handle");
      }
      assert.equal(peekStale(s, "k", 1150), MISS, "gone at ttl + stale");
      assert.equal(get(s, "k", 1150), MISS);
      const info = s.info();
      assert.deepEqual([info.hits, info.misses, info.currentSize], [1, 3, 1]);
      assert.equal(info.staleHits, undefined, "left out while 0");
      // An own TTL has the window too.
      assert.ok(put(s, "o", "w", 0, 10));
      assert.equal(peekStale(s, "o", 59), "w");
      assert.equal(peekStale(s, "o", 60), MISS);
      for (const bad of [-1, NaN, Infinity]) {
        assert.throws(
          () => open(dir, 100, bad),
          (e: unknown) =>
            e instanceof RangeError &&
            e.message.includes(
              `stale must be a finite, non-negative number of ms: received ${bad}`,
            ),
        );
      }
    } finally {
      s.close();
      other.close();
    }
  });
});

Deno.test("SharedStore: staleHits and refreshes are exact totals over handles, reset by clear", async () => {
  await withDir((dir) => {
    const a = open(dir);
    const b = open(dir);
    try {
      assert.equal(get(a, "x", NaN), MISS);
      assert.equal(get(b, "x", NaN), MISS);
      a.countStaleHit();
      b.countStaleHit();
      a.countRefresh();
      b.countRefresh();
      b.countRefresh();
      const expected = { hits: 2, misses: 0, staleHits: 2, refreshes: 3 };
      for (const s of [a, b]) {
        const i = s.info();
        assert.deepEqual(
          { hits: i.hits, misses: i.misses, staleHits: i.staleHits, refreshes: i.refreshes },
          expected,
        );
      }
      b.clear();
      const i = a.info();
      assert.equal(i.staleHits, undefined);
      assert.equal(i.refreshes, undefined);
      a.countRefresh();
      assert.deepEqual([a.info().staleHits, a.info().refreshes], [0, 1], "both once one is not 0");
    } finally {
      a.close();
      b.close();
    }
  });
});

Deno.test("SharedStore.flights: claim, wait, owns and release between two handles", async () => {
  await withDir(async (dir) => {
    const a = open(dir);
    const b = open(dir);
    const k = keyOf("k");
    try {
      assert.equal(a.flights.claim(k), "owner");
      assert.equal(b.flights.claim(k), "wait");
      assert.ok(a.flights.owns(k) && !b.flights.owns(k));
      assert.equal(b.flights.waitSync(k, 0), "timeout");
      assert.equal(await b.flights.wait(k, 10), "timeout");
      assert.equal(b.flights.waitSync(keyOf("none"), Infinity), "done", "no flight");
      const waiting = b.flights.wait(k, Infinity);
      await new Promise((r) => setTimeout(r, 20));
      put(a, "k", 42, NaN);
      a.flights.release(k);
      a.flights.release(k); // idempotent
      assert.equal(await waiting, "done");
      assert.equal(get(b, "k", NaN), 42);
      assert.ok(!a.flights.owns(k));
      // delete and clear in any handle end the flights they concern.
      assert.equal(a.flights.claim(k), "owner");
      assert.equal(a.flights.claim(keyOf("j")), "owner");
      const waitK = b.flights.wait(k, Infinity);
      b.delete(k.buf, k.len);
      assert.equal(await waitK, "done");
      assert.ok(!a.flights.owns(k) && a.flights.owns(keyOf("j")));
      b.clear();
      assert.ok(!a.flights.owns(keyOf("j")));
      // A closed handle's flights end; its wait ends too.
      assert.equal(a.flights.claim(k), "owner");
      const waitClosed = b.flights.wait(k, Infinity);
      a.close();
      assert.equal(await waitClosed, "done", "closing released the flight");
      assert.equal(a.flights.claim(k), "none", "a closed handle claims nothing");
      assert.equal(a.flights.owns(k), false);
      assert.throws(
        () => b.flights.waitSync(k, -1),
        (e: unknown) =>
          e instanceof RangeError &&
          e.message.includes("ms must be a non-negative number of ms or Infinity: received -1"),
      );
    } finally {
      a.close();
      b.close();
    }
  });
});

Deno.test("warp_shm_flight_* codes are FLIGHT's", async () => {
  const lib = loadNative()!;
  await withDir((dir) => {
    const path = encoder.encode(`${dir}/raw.warp`);
    const a = lib.warp_shm_open!(path, path.length, 4, 16, 16, 0n, 0, 0)!;
    const b = lib.warp_shm_open!(path, path.length, 4, 16, 16, 0n, 0, 0)!;
    const k = encoder.encode("k");
    try {
      assert.equal(lib.warp_shm_flight_claim!(a, k, 1), FLIGHT.owner);
      assert.equal(lib.warp_shm_flight_claim!(b, k, 1), FLIGHT.wait);
      const w = lib.warp_shm_flight_waiter!(b, k, 1)!;
      assert.equal(lib.warp_shm_flight_wait_sync!(w, 0), FLIGHT.timeout);
      assert.equal(lib.warp_shm_flight_release!(a, k, 1), 0);
      const w2 = lib.warp_shm_flight_waiter!(b, k, 1)!;
      assert.equal(lib.warp_shm_flight_wait_sync!(w2, 0), FLIGHT.done);
      // 16 keys of one home fill its probe window: the next gets FLIGHT.none.
      let codes = new Set<number>();
      for (let i = 0; i < 600 && !codes.has(FLIGHT.none); i++) {
        const key = encoder.encode(`n${i}`);
        codes = codes.add(lib.warp_shm_flight_claim!(a, key, key.length));
      }
      assert.ok(codes.has(FLIGHT.none), "a full window gives none");
    } finally {
      lib.warp_shm_close!(a);
      lib.warp_shm_close!(b);
    }
  });
});

/** A child process of tests/fixtures/flight_child.ts, read line by line. */
class Child {
  #proc: Deno.ChildProcess;
  #lines: AsyncIterator<string>;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;

  constructor(arg: Record<string, unknown>) {
    this.#proc = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--quiet",
        new URL("./fixtures/flight_child.ts", import.meta.url).pathname,
        JSON.stringify(arg),
      ],
      cwd: root,
      env: { WARP_CACHE_ENGINE: "native", NO_COLOR: "1" },
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#lines = this.#proc.stdout.pipeThrough(new TextDecoderStream()).pipeThrough(
      new LineStream(),
    )[Symbol.asyncIterator]();
    this.#stdin = this.#proc.stdin.getWriter();
  }

  /** The next JSON line, which must be `event`. */
  // deno-lint-ignore no-explicit-any
  async next(event: string): Promise<Record<string, any>> {
    const { value, done } = await this.#lines.next();
    assert.ok(!done, `the child ended before ${event}`);
    const msg = JSON.parse(value);
    assert.equal(msg.event, event, value);
    return msg;
  }

  async send(line: string): Promise<void> {
    await this.#stdin.write(encoder.encode(`${line}\n`));
  }

  kill(): void {
    this.#proc.kill("SIGKILL");
  }

  async end(): Promise<Deno.CommandStatus> {
    await this.#stdin.close().catch(() => {});
    // Drain what is left so the process can exit.
    while (!(await this.#lines.next()).done) { /* nothing */ }
    return await this.#proc.status;
  }
}

/** Splits a text stream into lines. */
class LineStream extends TransformStream<string, string> {
  constructor() {
    let rest = "";
    super({
      transform(chunk, controller): void {
        const parts = (rest + chunk).split("\n");
        rest = parts.pop()!;
        for (const p of parts) if (p.trim() !== "") controller.enqueue(p);
      },
      flush(controller): void {
        if (rest.trim() !== "") controller.enqueue(rest);
      },
    });
  }
}

Deno.test("SharedStore.flights: of 8 processes claiming one key, one computes and 7 sleep until it is done", async () => {
  await withDir(async (dir) => {
    const children = Array.from(
      { length: 8 },
      (_, i) => new Child({ mode: "race", dir, key: "slow", computeMs: 1000, sync: i % 2 === 1 }),
    );
    for (const c of children) await c.next("ready");
    await Promise.all(children.map((c) => c.send("go")));
    const reports = await Promise.all(children.map((c) => c.next("done")));
    for (const c of children) assert.equal((await c.end()).code, 0);
    const owners = reports.filter((r) => r.claim === "owner");
    assert.equal(owners.length, 1, JSON.stringify(reports));
    assert.equal(reports.filter((r) => r.computed).length, 1, "one computation");
    const waiters = reports.filter((r) => r.claim === "wait");
    assert.equal(waiters.length, 7, JSON.stringify(reports));
    for (const w of waiters) {
      assert.equal(w.end, "done");
      assert.equal(w.value, "value of slow", "the waiter finds the owner's value");
    }
    // They slept: CPU time of the whole process (every thread) while waiting, against the
    // wall time waited. A polling storm (or a spin) would use a large part of it.
    const cpu = waiters.reduce((t, w) => t + w.cpuWaitMs, 0);
    const wall = waiters.reduce((t, w) => t + w.waitedMs, 0);
    console.log(
      `waiters: ${cpu.toFixed(1)} ms CPU over ${wall.toFixed(0)} ms waited (${
        (1000 * cpu / wall).toFixed(1)
      } ms CPU per s waited)`,
    );
    assert.ok(wall > 0);
    // Measured: about 2 ms per s with the futex; a poll every 200 µs instead uses 26 ms.
    assert.ok(cpu / wall < 0.02, `waiters used ${cpu} ms of CPU in ${wall} ms waited`);
  });
});

Deno.test("SharedStore.flights: a SIGKILLed owner's flight is taken over by a waiter", async () => {
  await withDir(async (dir) => {
    const owner = new Child({ mode: "hang", dir, key: "k" });
    assert.equal((await owner.next("claimed")).claim, "owner");
    const waiter = new Child({ mode: "wait", dir, key: "k" });
    assert.equal((await waiter.next("waiting")).claim, "wait");
    await new Promise((r) => setTimeout(r, 300)); // asleep on the futex
    const killedAt = Date.now();
    owner.kill();
    const done = await waiter.next("done");
    assert.equal((await owner.end()).signal, "SIGKILL");
    assert.equal((await waiter.end()).code, 0);
    assert.equal(done.end, "owner", "the waiter took the flight over");
    assert.equal(done.owns, false, "and released it");
    const took = done.at - killedAt;
    console.log(`takeover ${took} ms after the SIGKILL`);
    assert.ok(took < 3000, `takeover took ${took} ms`);
    const s = new SharedStore({ dir, file: "flight.warp" }, 16, 64, 256, undefined, "f");
    try {
      const k = encoder.encode("k");
      assert.equal(s.get(k, k.length, NaN), "recomputed", "the new owner's value");
    } finally {
      s.close();
    }
  });
});
