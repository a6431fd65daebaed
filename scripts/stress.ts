/**
 * `deno task stress [seconds]`: 2 processes x 2 Workers hammer one shared cache; then writer
 * processes are killed mid-flight, round after round, for as long again.
 *
 * Phase 1 (default 60 s): mixed get / set / clear (about 70 / 29.9 / 0.1 %) over 2,000
 * keys with values of 0 to 3 KB on a cache of 1,000 entries and a byte budget of 1 MiB
 * (about 600 such entries: so SIEVE evicts all the time, for bytes and for entries);
 * every value read must carry its key's checksum. Phase 2 (10 s, no clear, after a clear
 * by this process): the cache's hit and miss counters must equal the totals that
 * the four Workers counted, exactly. Phase 3 (as long as phase 1): the killed-flight fault
 * run of `tests/fault_flight_test.ts` (`tests/fixtures/flight_fault_run.ts`): 3 writers of
 * two shared cached functions SIGKILLed at random moments, then a fresh process that must
 * read every key within 30 s and leave no flight record in use. Exits non-zero on any wrong
 * value or count, or a fresh process that hangs.
 *
 * @module
 */
import {
  checkValue,
  makeValue,
  MISS,
  openStore,
  storeGet,
  storeSet,
} from "../tests/fixtures/fault_common.ts";
import { runFlightFaults } from "../tests/fixtures/flight_fault_run.ts";

const MAX_SIZE = 1000;
const KEYS = 2000;
const MAX_VALUE = 4096;
const MAX_BYTES = 1 << 20;

interface Report {
  gets: number;
  hits: number;
  misses: number;
  sets: number;
  clears: number;
  bad: string[];
}

function hammer(dir: string, seconds: number, clears: boolean, seed: number): Report {
  const store = openStore(dir, "stress.warp", MAX_SIZE, MAX_VALUE, MAX_BYTES);
  const r: Report = { gets: 0, hits: 0, misses: 0, sets: 0, clears: 0, bad: [] };
  let x = seed >>> 0 || 1;
  const end = performance.now() + seconds * 1000;
  while (performance.now() < end) {
    for (let n = 0; n < 256; n++) {
      x ^= x << 13;
      x >>>= 0;
      x ^= x >>> 17;
      x ^= x << 5;
      x >>>= 0;
      const key = `s${x % KEYS}`;
      const op = (x >>> 12) % 1000;
      if (clears && op === 0) {
        store.clear();
        r.clears++;
      } else if (op < 700) {
        const v = storeGet(store, key);
        r.gets++;
        if (v === MISS) r.misses++;
        else {
          r.hits++;
          const why = checkValue(key, v);
          if (why && r.bad.length < 10) r.bad.push(why);
        }
      } else {
        storeSet(store, key, makeValue(key, x, (x >>> 7) % 3000));
        r.sets++;
      }
    }
  }
  store.close();
  return r;
}

function sum(rs: Report[]): Report {
  return rs.reduce((a, b) => ({
    gets: a.gets + b.gets,
    hits: a.hits + b.hits,
    misses: a.misses + b.misses,
    sets: a.sets + b.sets,
    clears: a.clears + b.clears,
    bad: [...a.bad, ...b.bad],
  }));
}

// Worker: one hammer run, reported back.
if (typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !== "undefined") {
  const scope = self as unknown as {
    onmessage: (e: MessageEvent) => void;
    postMessage: (r: Report) => void;
    close: () => void;
  };
  scope.onmessage = (e) => {
    const { dir, seconds, clears, seed } = e.data;
    scope.postMessage(hammer(dir, seconds, clears, seed));
    scope.close();
  };
} else if (Deno.args[0] === "--child") {
  // Child process: two Workers, their summed report as JSON on stdout.
  const [, dir, seconds, clears, id] = Deno.args;
  const reports = await Promise.all([0, 1].map((w) =>
    new Promise<Report>((resolve, reject) => {
      const worker = new Worker(import.meta.url, { type: "module" });
      worker.onmessage = (e) => resolve(e.data);
      worker.onerror = (e) => reject(e.error ?? e.message);
      worker.postMessage({
        dir,
        seconds: Number(seconds),
        clears: clears === "1",
        seed: Number(id) * 7919 + w * 104729 + 1,
      });
    })
  ));
  console.log(JSON.stringify(sum(reports)));
} else if (import.meta.main) {
  const seconds = Number(Deno.args[0] ?? 60);
  const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp-stress-" });
  const run = async (secs: number, clears: boolean): Promise<Report> => {
    const outs = await Promise.all([0, 1].map((id) =>
      new Deno.Command(Deno.execPath(), {
        args: [
          "run",
          "-A",
          "--quiet",
          import.meta.filename!,
          "--child",
          dir,
          String(secs),
          clears ? "1" : "0",
          String(id),
        ],
        env: { WARP_CACHE_ENGINE: "native" },
        stderr: "inherit",
      }).output()
    ));
    for (const o of outs) if (!o.success) throw new Error(`a stress process failed (${o.code})`);
    return sum(outs.map((o) => JSON.parse(new TextDecoder().decode(o.stdout).trim()) as Report));
  };
  let failed = false;
  try {
    console.log(`phase 1: 2 processes x 2 Workers, get/set/clear for ${seconds} s`);
    const p1 = await run(seconds, true);
    const ops = p1.gets + p1.sets + p1.clears;
    console.log(
      `  ${ops} ops (${
        Math.round(ops / seconds)
      }/s): ${p1.gets} gets (${p1.hits} hits), ${p1.sets} sets, ${p1.clears} clears; wrong values: ${p1.bad.length}`,
    );
    if (p1.bad.length) {
      console.error(p1.bad);
      failed = true;
    }
    const store = openStore(dir, "stress.warp", MAX_SIZE, MAX_VALUE, MAX_BYTES);
    store.clear();
    console.log("phase 2: get/set only for 10 s, then the shared counters must match");
    const p2 = await run(10, false);
    const info = store.info();
    console.log(
      `  workers counted ${p2.hits} hits / ${p2.misses} misses; the cache says ${info.hits} / ${info.misses}; size ${info.currentSize}/${info.maxSize}, bytes ${info.bytes}/${info.maxBytes}; wrong values: ${p2.bad.length}`,
    );
    if (info.hits !== p2.hits || info.misses !== p2.misses || p2.bad.length) failed = true;
    if (info.currentSize > MAX_SIZE || info.bytes! > MAX_BYTES) failed = true;
    store.close();
    console.log(`phase 3: writers killed mid-flight, then fresh readers, for ${seconds} s`);
    const p3 = await runFlightFaults({
      seconds,
      minRounds: 4,
      writers: 3,
      keys: 3000,
      spinMs: 4,
      readerBoundMs: 30_000,
      log: console.log,
    });
    console.log(
      `  ${p3.rounds} rounds, ${p3.kills} kills (${p3.orphans} flights left behind), ${p3.readers} fresh readers of 2 x 3000 keys; slowest reader ${
        p3.worstReaderMs.toFixed(0)
      } ms${p3.failure ? `; FAILED: ${p3.failure}` : ""}`,
    );
    if (p3.failure) failed = true;
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  console.log(failed ? "STRESS FAILED" : "stress ok");
  if (failed) Deno.exit(1);
}
