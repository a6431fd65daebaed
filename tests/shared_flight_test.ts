// The shared store's format 6 and 7 features through SharedStore (src/store/shared_store.ts):
// an entry's own TTL, the stale window, the stale-hit and refresh counters across handles,
// and cross-process single-flight (SharedFlights, src/store/shared_flights.ts) within a
// process and across real `deno` processes (tests/fixtures/flight_child.ts): one owner of 8,
// waiters that sleep, a SIGKILLed owner taken over, and the issue "No hang, no stall, no
// leak across processes" (a reused liveness id, hundreds of waits on one thread, a stopped
// owner, flights of this process, async marks, ends by hand, a close during a wait, every
// waiter woken at once).
import assert from "node:assert/strict";
import { loadNative } from "../src/native/ffi.ts";
import { SharedStore } from "../src/store/shared_store.ts";
import { pendingFlightWaits } from "../src/store/shared_flights.ts";
import { FLIGHT, FLIGHT_RECORDS, FLIGHT_SIZE, NO_TTL, Status } from "../src/native/_abi.ts";
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

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

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

  signal(sig: Deno.Signal): void {
    this.#proc.kill(sig);
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

/** The store the children use (tests/fixtures/flight_child.ts). */
function openShared(dir: string): SharedStore {
  return new SharedStore({ dir, file: "flight.warp" }, 16, 64, 256, undefined, "f");
}

Deno.test("SharedFlights: two handles of one process see each other's flights as local and never block on them", async () => {
  await withDir(async (dir) => {
    const a = open(dir);
    const b = open(dir);
    const k = keyOf("k");
    try {
      assert.equal(a.flights.claim(k, true), "owner");
      assert.equal(a.flights.claim(k, false), "local", "its own flight");
      assert.equal(b.flights.claim(k, false), "local", "another handle of this process");
      assert.ok(a.flights.owns(k) && !b.flights.owns(k));
      // A synchronous wait returns at once (its owner may need this very thread).
      assert.equal(b.flights.waitSync(k, Infinity, false), "done");
      assert.equal(b.flights.waitSync(k, Infinity, true), "async");
      // An asynchronous one waits for it.
      const waiting = b.flights.wait(k, Infinity);
      await sleep(30);
      assert.equal(pendingFlightWaits(), 1);
      put(a, "k", 42, NaN);
      a.flights.release(k);
      a.flights.release(k); // idempotent
      assert.equal(await waiting, "done");
      assert.equal(pendingFlightWaits(), 0);
      assert.equal(get(b, "k", NaN), 42);
      const none = keyOf("none");
      assert.equal(b.flights.waitSync(none, Infinity, false), "done", "no flight");
      assert.equal(await b.flights.wait(none, Infinity), "done");
      // delete, set by hand (end) and clear in any handle end the flights they concern.
      for (const end of [() => b.delete(k.buf, k.len), () => b.flights.end(k), () => b.clear()]) {
        assert.equal(a.flights.claim(k, false), "owner");
        const w = b.flights.wait(k, Infinity);
        end();
        assert.equal(await w, "done");
        assert.ok(!a.flights.owns(k));
      }
      for (const bad of [-1, NaN]) {
        assert.throws(
          () => b.flights.waitSync(k, bad, false),
          (e: unknown) =>
            e instanceof RangeError &&
            e.message.includes(
              `ms must be a non-negative number of ms or Infinity: received ${bad}`,
            ),
        );
        await assert.rejects(b.flights.wait(k, bad), RangeError);
      }
      // A closed handle's flights end; it claims nothing and its waits end with "closed".
      assert.equal(a.flights.claim(k, false), "owner");
      const waitClosed = b.flights.wait(k, Infinity);
      a.close();
      assert.equal(await waitClosed, "done", "closing released the flight");
      assert.equal(a.flights.claim(k, false), "none");
      assert.equal(a.flights.owns(k), false);
      assert.equal(a.flights.waitSync(k, Infinity, false), "closed");
      assert.equal(await a.flights.wait(k, Infinity), "closed");
      a.flights.release(k);
      a.flights.end(k);
      a.flights.markAsync(k);
    } finally {
      a.close();
      b.close();
    }
  });
});

Deno.test("warp_shm_flight_* codes are FLIGHT's", async () => {
  const lib = loadNative()!;
  await withDir(async (dir) => {
    const owner = new Child({ mode: "own", dir, key: "k", async: true });
    assert.equal((await owner.next("claimed")).claim, "owner");
    const path = encoder.encode(`${dir}/flight.warp`);
    const a = lib.warp_shm_open!(path, path.length, 16, 64, 256, 0n, NO_TTL, 0)!;
    const b = lib.warp_shm_open!(path, path.length, 16, 64, 256, 0n, NO_TTL, 0)!;
    const [k, j, none] = ["k", "j", "none"].map((t) => encoder.encode(t)) as [
      Uint8Array,
      Uint8Array,
      Uint8Array,
    ];
    const d = lib.warp_shm_flight_dispatcher!();
    const next = async (): Promise<number[]> => {
      const out = new Uint32Array(8);
      const n = await lib.warp_shm_flight_next!(d, out, out.length);
      return [...out.subarray(0, 2 * n)];
    };
    try {
      assert.ok(d > 0);
      assert.equal(lib.warp_shm_flight_claim!(b, k, 1, 0), FLIGHT.wait);
      assert.equal(lib.warp_shm_flight_wait_sync!(b, k, 1, 0, 0), FLIGHT.timeout);
      assert.equal(lib.warp_shm_flight_wait_sync!(b, k, 1, Infinity, 1), FLIGHT.async);
      assert.equal(lib.warp_shm_flight_claim!(a, j, 1, 0), FLIGHT.owner);
      assert.equal(lib.warp_shm_flight_claim!(b, j, 1, 0), FLIGHT.local);
      assert.equal(lib.warp_shm_flight_wait_sync!(b, j, 1, Infinity, 0), FLIGHT.done);
      assert.equal(lib.warp_shm_flight_register!(d, b, none, 4, Infinity), FLIGHT.done);
      const id = lib.warp_shm_flight_register!(d, b, j, 1, Infinity) - FLIGHT.idBase;
      assert.ok(id > 0);
      const ended = next();
      assert.equal(lib.warp_shm_flight_release!(a, j, 1), Status.Ok);
      assert.deepEqual(await ended, [id, FLIGHT.done]);
      assert.deepEqual(await next(), [], "no wait: at once");
      // A wait of a handle that closes ends with `closed`.
      const c = lib.warp_shm_open!(path, path.length, 16, 64, 256, 0n, NO_TTL, 0)!;
      const idc = lib.warp_shm_flight_register!(d, c, k, 1, Infinity) - FLIGHT.idBase;
      const closed = next();
      lib.warp_shm_close!(c);
      assert.deepEqual(await closed, [idc, FLIGHT.closed]);
      // A killed owner's flight is taken over.
      owner.signal("SIGKILL");
      await owner.end();
      assert.equal(lib.warp_shm_flight_register!(d, b, k, 1, Infinity), FLIGHT.owner);
      assert.equal(lib.warp_shm_flight_owns!(b, k, 1), 1);
      // 16 keys of one home fill its probe window: the next gets FLIGHT.none.
      let codes = new Set<number>();
      for (let i = 0; i < 600 && !codes.has(FLIGHT.none); i++) {
        const key = encoder.encode(`n${i}`);
        codes = codes.add(lib.warp_shm_flight_claim!(a, key, key.length, 0));
      }
      assert.ok(codes.has(FLIGHT.none), "a full window gives none");
    } finally {
      lib.warp_shm_close!(a);
      lib.warp_shm_close!(b);
    }
  });
});

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
    const owner = new Child({ mode: "own", dir, key: "k" });
    assert.equal((await owner.next("claimed")).claim, "owner");
    const waiter = new Child({ mode: "wait", dir, key: "k" });
    assert.equal((await waiter.next("waiting")).claim, "wait");
    await sleep(300); // asleep on the futex
    const killedAt = Date.now();
    owner.signal("SIGKILL");
    const done = await waiter.next("done");
    assert.equal((await owner.end()).signal, "SIGKILL");
    assert.equal((await waiter.end()).code, 0);
    assert.equal(done.end, "owner", "the waiter took the flight over");
    assert.equal(done.owns, false, "and released it");
    const took = done.at - killedAt;
    console.log(`takeover ${took} ms after the SIGKILL`);
    assert.ok(took < 3000, `takeover took ${took} ms`);
    const s = openShared(dir);
    try {
      const k = encoder.encode("k");
      assert.equal(s.get(k, k.length, NaN), "recomputed", "the new owner's value");
    } finally {
      s.close();
    }
  });
});

// Issue "No hang, no stall, no leak across processes", 1: a killed writer left a key that
// hung every new process. The new process was given the dead one's liveness id (the first
// free), judged the dead flight its own, and waited for itself. On format 6 the fresh
// process claims "wait" (and its waits never end).
Deno.test("SharedStore.flights: a fresh process given a killed owner's liveness id takes its flight, never waits for itself", async () => {
  await withDir(async (dir) => {
    for (let round = 0; round < 3; round++) {
      const owner = new Child({ mode: "own", dir, keys: ["k", `r${round}`], key: "k" });
      assert.deepEqual((await owner.next("claimed")).claims, ["owner", "owner"]);
      owner.signal("SIGKILL");
      await owner.end();
      // Alone on the file, the fresh process takes liveness id 0: the dead owner's.
      const fresh = new Child({ mode: "claim", dir, key: "k" });
      assert.equal((await fresh.next("claimed")).claim, "owner", `round ${round}`);
      assert.equal((await fresh.end()).code, 0);
    }
    // Nothing of the dead owners stays in the table (the fresh handles ended it at open).
    const bytes = Deno.readFileSync(`${dir}/flight.warp`);
    const view = new DataView(bytes.buffer);
    const start = bytes.length - FLIGHT_RECORDS * FLIGHT_SIZE;
    let inUse = 0;
    for (let i = 0; i < FLIGHT_RECORDS; i++) {
      if (view.getBigUint64(start + FLIGHT_SIZE * i, true) !== 0n) inUse++;
    }
    assert.equal(inUse, 0, "flight records left in use");
  });
});

// Issue "No hang, no stall, no leak across processes", 2: each waiting call held a thread
// of Deno's blocking pool (782 waiting calls held 782 threads, and a small
// `Deno.readTextFile` took 7.7 s). On format 6 this process gains a thread per wait.
Deno.test("SharedStore.flights: 800 waits on another process's flights hold one thread, and file reads stay fast", async () => {
  await withDir(async (dir) => {
    const keys = Array.from({ length: 100 }, (_, i) => `k${i}`);
    const owner = new Child({ mode: "own", dir, keys, key: "k0" });
    const claims: string[] = (await owner.next("claimed")).claims;
    const owned = keys.filter((_, i) => claims[i] === "owner");
    assert.ok(owned.length >= 90, `${owned.length} flights`);
    // The waits and their measures run in a process of their own: the CPU and threads of
    // this test process include the other test files that run beside it.
    const script = `${dir}/waiter.ts`;
    await Deno.writeTextFile(
      script,
      `import process from "node:process";
      import { SharedStore } from "${
        new URL("../src/store/shared_store.ts", import.meta.url).href
      }";
      import { pendingFlightWaits } from "${
        new URL("../src/store/shared_flights.ts", import.meta.url).href
      }";
      const [dir, ...owned] = Deno.args;
      const s = new SharedStore({ dir, file: "flight.warp" }, 16, 64, 256, undefined, "f");
      const enc = new TextEncoder();
      const threads = () => Number(/^Threads:\\s+(\\d+)/m.exec(Deno.readTextFileSync("/proc/self/status"))[1]);
      const cpuMs = () => { const u = process.cpuUsage(); return (u.user + u.system) / 1000; };
      const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
      const before = threads();
      const waits = [];
      for (let copy = 0; copy < 8; copy++) {
        for (const key of owned) {
          const buf = enc.encode(key);
          waits.push(s.flights.wait({ buf, len: buf.length, pointer: () => undefined }, Infinity));
        }
      }
      await sleep(200);
      const during = threads();
      const t0 = performance.now();
      await Deno.readTextFile(${JSON.stringify(new URL(import.meta.url).pathname)});
      const readMs = performance.now() - t0;
      const cpu0 = cpuMs();
      const w0 = performance.now();
      await sleep(2000);
      const cpuPerS = 1000 * (cpuMs() - cpu0) / (performance.now() - w0);
      console.log(JSON.stringify({ waits: waits.length, before, during, readMs, cpuPerS }));
      const ends = await Promise.all(waits);
      console.log(JSON.stringify({ ends: [...new Set(ends)], pending: pendingFlightWaits() }));
      s.close();`,
    );
    const waiter = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", script, dir, ...owned],
      cwd: root,
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const lines = waiter.stdout.pipeThrough(new TextDecoderStream()).getReader();
    let text = "";
    const line = async (): Promise<Record<string, unknown>> => {
      while (!text.includes("\n")) {
        const { value, done } = await lines.read();
        if (done) throw new Error(`the waiter ended early: ${text}`);
        text += value;
      }
      const i = text.indexOf("\n");
      const l = text.slice(0, i);
      text = text.slice(i + 1);
      return JSON.parse(l);
    };
    try {
      const m = await line() as {
        waits: number;
        before: number;
        during: number;
        readMs: number;
        cpuPerS: number;
      };
      await owner.send("release");
      await owner.next("released");
      const e = await line() as { ends: string[]; pending: number };
      console.log(
        `${m.waits} waits: threads ${m.before} -> ${m.during}; a file read took ${
          m.readMs.toFixed(1)
        } ms; ${m.cpuPerS.toFixed(1)} ms CPU per s waited`,
      );
      assert.deepEqual(e.ends, ["done"]);
      assert.equal(e.pending, 0);
      assert.ok(m.during - m.before < 16, `threads ${m.before} -> ${m.during}`);
      assert.ok(m.readMs < 2000, `a file read took ${m.readMs} ms`);
      assert.ok(m.cpuPerS < 20, `${m.cpuPerS} ms CPU per s waited`);
      assert.equal((await waiter.status).code, 0);
    } finally {
      await lines.cancel().catch(() => {});
      try {
        waiter.kill("SIGKILL");
      } catch { /* exited */ }
      await waiter.status;
      await owner.send("exit");
      await owner.end();
    }
  });
});

// Issue 3: an owner stopped (SIGSTOP) for 8 s stalled a waiter without `timeout` for 7.2 s
// (the call path passed no bound). Both waits honour their bound while the owner is
// stopped.
Deno.test("SharedStore.flights: a stopped owner is waited for exactly as long as asked", async () => {
  await withDir(async (dir) => {
    const owner = new Child({ mode: "own", dir, key: "k" });
    assert.equal((await owner.next("claimed")).claim, "owner");
    const s = openShared(dir);
    owner.signal("SIGSTOP");
    try {
      const k = keyOf("k");
      for (const ms of [0, 50, 300]) {
        let t0 = performance.now();
        assert.equal(s.flights.waitSync(k, ms, false), "timeout");
        const syncMs = performance.now() - t0;
        t0 = performance.now();
        assert.equal(await s.flights.wait(k, ms), "timeout");
        const asyncMs = performance.now() - t0;
        console.log(
          `asked ${ms} ms: waitSync ${syncMs.toFixed(1)} ms, wait ${asyncMs.toFixed(1)} ms`,
        );
        for (const took of [syncMs, asyncMs]) {
          assert.ok(took >= ms - 1 && took < ms + 5000, `asked ${ms} ms, waited ${took} ms`);
        }
      }
    } finally {
      owner.signal("SIGCONT");
      s.close();
      await owner.send("exit");
      await owner.end();
    }
  });
});

// Issue 5: a function that returns a Promise without being `async` blocked the event loop in
// `waitSync` on its first call. The owner's async mark (at claim, or later) ends a
// synchronous wait that asked for it.
Deno.test("SharedStore.flights: an owner's async mark ends a synchronous wait that asked for it", async () => {
  await withDir(async (dir) => {
    const asyncOwner = new Child({ mode: "own", dir, key: "a", async: true });
    const laterOwner = new Child({ mode: "own", dir, key: "b", async: false });
    assert.equal((await asyncOwner.next("claimed")).claim, "owner");
    assert.equal((await laterOwner.next("claimed")).claim, "owner");
    const s = openShared(dir);
    try {
      const [a, b] = [keyOf("a"), keyOf("b")];
      assert.equal(s.flights.waitSync(a, Infinity, true), "async", "marked at claim");
      assert.equal(s.flights.waitSync(a, 50, false), "timeout", "not asked: it waits");
      assert.equal(s.flights.waitSync(b, 50, true), "timeout", "not async (yet)");
      await laterOwner.send("mark");
      const t0 = performance.now();
      assert.equal(s.flights.waitSync(b, 60_000, true), "async", "marked later");
      assert.ok(performance.now() - t0 < 30_000);
      s.flights.markAsync(b); // not its owner: nothing
      await laterOwner.send("owns");
      assert.deepEqual((await laterOwner.next("marked")).event, "marked");
      assert.deepEqual((await laterOwner.next("owns")).owns, [true]);
    } finally {
      s.close();
      for (const c of [asyncOwner, laterOwner]) {
        await c.send("exit");
        await c.end();
      }
    }
  });
});

// Issue 6: `cacheSet` in one process was overwritten by a computation already running in
// another. `end(key)` ends every process's flight of the key: its owner no longer owns it
// (and does not store).
Deno.test("SharedStore.flights: end(key) ends another process's flight; its owner no longer owns it", async () => {
  await withDir(async (dir) => {
    const owner = new Child({ mode: "own", dir, key: "k" });
    assert.equal((await owner.next("claimed")).claim, "owner");
    const s = openShared(dir);
    try {
      const k = keyOf("k");
      assert.equal(s.flights.claim(k, false), "wait");
      const waiting = s.flights.wait(k, Infinity);
      s.flights.end(k);
      assert.equal(await waiting, "done");
      await owner.send("owns");
      assert.deepEqual((await owner.next("owns")).owns, [false]);
      assert.equal(s.flights.claim(k, false), "owner", "free again");
    } finally {
      s.close();
      await owner.send("exit");
      await owner.end();
    }
  });
});

// Issue 7: disposing a cache during a cross-process wait rejected with "TimeoutError ...
// timeout of undefined ms". A wait of a handle closed meanwhile ends with "closed".
Deno.test("SharedStore.flights: closing the store during a cross-process wait ends it with closed", async () => {
  await withDir(async (dir) => {
    const owner = new Child({ mode: "own", dir, key: "k" });
    assert.equal((await owner.next("claimed")).claim, "owner");
    const s = openShared(dir);
    const other = openShared(dir);
    try {
      const k = keyOf("k");
      const mine = s.flights.wait(k, Infinity);
      const theirs = other.flights.wait(k, 60_000);
      await sleep(30);
      s.close();
      assert.equal(await mine, "closed");
      assert.equal(pendingFlightWaits(), 1, "the other handle's wait goes on");
      await owner.send("release");
      assert.equal(await theirs, "done");
    } finally {
      s.close();
      other.close();
      await owner.send("exit");
      await owner.end();
    }
  });
});

// Issue 8: results that were not stored were computed one process after another. Nothing
// in the store serializes the waiters: when a flight ends without a value, all wake.
Deno.test("SharedStore.flights: every waiter wakes when a flight ends without a value", async () => {
  await withDir(async (dir) => {
    const children = Array.from(
      { length: 5 },
      (_, i) =>
        new Child({ mode: "race", dir, key: "x", computeMs: 800, store: false, sync: i % 2 === 0 }),
    );
    for (const c of children) await c.next("ready");
    await Promise.all(children.map((c) => c.send("go")));
    const reports = await Promise.all(children.map((c) => c.next("done")));
    for (const c of children) assert.equal((await c.end()).code, 0);
    const owner = reports.find((r) => r.claim === "owner")!;
    const waiters = reports.filter((r) => r.claim === "wait");
    assert.equal(waiters.length, 4, JSON.stringify(reports));
    for (const w of waiters) {
      assert.equal(w.end, "done");
      assert.equal(w.value, null, "nothing was stored");
    }
    const spread = Math.max(...waiters.map((w) => w.at)) - Math.min(...waiters.map((w) => w.at));
    console.log(`4 waiters woke within ${spread} ms of each other (owner done at +0)`);
    // One after another would take a computation (800 ms) each.
    assert.ok(spread < 800, `waiters woke over ${spread} ms`);
    assert.ok(waiters.every((w) => w.at >= owner.at - 50));
  });
});
