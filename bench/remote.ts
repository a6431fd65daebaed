/**
 * The remote tier against Redis on loopback (a `redis-server` started here on a free port),
 * side by side in one run: a local hit, a remote hit (a local miss answered by Redis), a
 * miss that computes and writes through, the same function with no remote tier, and the
 * invalidation bus's latency (a `cacheDelete` on one cache until another cache of the same
 * name has dropped its local copy).
 *
 * Peers and floors on the same server, in the same run: BentoCache (npm `bentocache`,
 * `getOrSet` with a memory L1, its Redis L2 and bus, through ioredis) for the same remote
 * hit (its L1 holds one item, so every call misses it and reads Redis), and the floors: a
 * bare `GET` + `JSON.parse` through node-redis (our client) and through ioredis
 * (BentoCache's). And the same remote hit with no socket, over a storage that answers from a
 * `Map`, against its floor, warm and with the CPU caches swept between two calls.
 *
 * Run: `deno run -A bench/remote.ts [--json]` (`deno task bench` runs it and writes the
 * "Remote tier" section of `bench/RESULTS.md`).
 *
 * @module
 */

import { cache } from "../mod.ts";
import { redisTier } from "../src/remote/redis.ts";
import { type RemoteStorage, remoteTier } from "../src/remote/remote.ts";
import { startRedisServer } from "../tests/fixtures/redis_server.ts";
import { createClient } from "@redis/client";
import {
  REMOTE_BENTO,
  REMOTE_FLOOR,
  REMOTE_OURS,
  REMOTE_ROWS,
  SWEEP_BYTES,
} from "../scripts/_targets.ts";
import { Buffer } from "node:buffer";
import process from "node:process";
// BentoCache's Redis driver needs ioredis, a peer dependency: imported first so that npm
// resolution finds it.
import { Redis } from "npm:ioredis@5.11.1";
import { BentoCache, bentostore } from "npm:bentocache@1.6.1";
import { memoryDriver } from "npm:bentocache@1.6.1/drivers/memory";
import { redisBusDriver, redisDriver } from "npm:bentocache@1.6.1/drivers/redis";

/** One measured case. */
export interface RemoteRow {
  case: string;
  /** Microseconds per call (median of the rounds). */
  us: number;
  /** CPU microseconds of this process per call (user + system, median of the rounds), for
   * the interleaved remote hit rows: less sensitive to other processes than `us`. */
  cpuUs?: number;
  calls: number;
}

/** What this benchmark reports. */
export interface RemoteReport {
  rows: RemoteRow[];
  /** Bus latency in ms: p50 and p99 over `busSamples` deletes. */
  busP50: number;
  busP99: number;
  busSamples: number;
}

const percentile = (xs: number[], p: number): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil((p / 100) * s.length) - 1))]!;
};

async function time(
  calls: number,
  rounds: number,
  body: (i: number) => Promise<unknown>,
): Promise<number> {
  const perRound: number[] = [];
  let i = 0;
  for (let r = 0; r < rounds; r++) {
    const t0 = performance.now();
    for (let c = 0; c < calls; c++) await body(i++);
    perRound.push(((performance.now() - t0) * 1000) / calls);
  }
  return percentile(perRound, 50);
}

/**
 * A storage over an ioredis client (the client BentoCache uses), to measure what our remote
 * hit costs over it: `remoteTier({ storage })` takes any client this way.
 */
function ioredisStorage(client: Redis): RemoteStorage {
  const key = (name: string, k: Uint8Array): Buffer =>
    Buffer.concat([Buffer.from(`warp:${name}:`), k]);
  return {
    async get(name, k): Promise<Uint8Array | undefined> {
      const reply = await client.getBuffer(key(name, k));
      return reply === null
        ? undefined
        : new Uint8Array(reply.buffer, reply.byteOffset, reply.length);
    },
    async set(name, k, value, ttl): Promise<void> {
      const v = Buffer.from(value.buffer, value.byteOffset, value.byteLength);
      if (ttl === undefined) await client.set(key(name, k), v);
      else await client.set(key(name, k), v, "PX", Math.ceil(ttl));
    },
    async delete(name, k): Promise<boolean> {
      return (await client.del(key(name, k))) > 0;
    },
    clear(): Promise<void> {
      return Promise.reject(new Error("not used by the bench"));
    },
    close(): Promise<void> {
      return Promise.resolve();
    },
  };
}

/** A case of an interleaved comparison. */
interface Case {
  name: string;
  body: (i: number) => Promise<unknown>;
}

/** Times `cases` round by round (each round runs every case once, in turn), so that the
 * machine's noise falls on all of them alike; the median round of each. */
async function interleaved(cases: Case[], calls: number, rounds: number): Promise<RemoteRow[]> {
  const perRound = cases.map(() => [] as number[]);
  const cpuPerRound = cases.map(() => [] as number[]);
  let i = 0;
  for (let r = 0; r < rounds; r++) {
    for (let c = 0; c < cases.length; c++) {
      const body = cases[c]!.body;
      const cpu0 = process.cpuUsage();
      const t0 = performance.now();
      for (let n = 0; n < calls; n++) await body(i++);
      perRound[c]!.push(((performance.now() - t0) * 1000) / calls);
      const cpu = process.cpuUsage(cpu0);
      cpuPerRound[c]!.push((cpu.user + cpu.system) / calls);
    }
  }
  return cases.map((c, k) => ({
    case: c.name,
    us: percentile(perRound[k]!, 50),
    cpuUs: percentile(cpuPerRound[k]!, 50),
    calls,
  }));
}

/**
 * The remote hit side by side: ours, BentoCache's, and the client floors (one `GET` and a
 * `JSON.parse`), all on the server at `port`, over the same 1000 keys of one small object.
 */
async function remoteHits(
  port: number,
  url: string,
  calls: number,
  rounds: number,
): Promise<RemoteRow[]> {
  const keys = 1000;
  const value = (k: number) => ({ id: k, name: "a user", tags: ["x", "y"] });
  const work = async (k: number) => {
    await null;
    return value(k);
  };
  const tierA = await redisTier({ url });
  const tierB = await redisTier({ url });
  const nodeRedis = createClient({ url });
  await nodeRedis.connect();
  const ioredis = new Redis({ host: "127.0.0.1", port, lazyConnect: true });
  await ioredis.connect();
  const ioredisForUs = new Redis({ host: "127.0.0.1", port, lazyConnect: true });
  await ioredisForUs.connect();
  const connection = { host: "127.0.0.1", port };
  const bento = (maxItems: number) =>
    new BentoCache({
      default: "c",
      stores: {
        c: bentostore()
          .useL1Layer(memoryDriver({ maxItems }))
          .useL2Layer(redisDriver({ connection }))
          .useBus(redisBusDriver({ connection })),
      },
    });
  const bentoWriter = bento(keys * 2);
  const bentoReader = bento(1);
  // Ours: keys written by one cache, read by another whose local tier holds one entry, so
  // every call misses locally and finds the key in Redis.
  const writer = cache({ name: "bench-remote", remote: tierA, maxSize: keys + 1 })(work);
  const reader = cache({ name: "bench-remote", remote: tierB, maxSize: 1 })(work);
  const overIoredis = cache({
    name: "bench-remote",
    remote: remoteTier({ storage: ioredisStorage(ioredisForUs) }),
    maxSize: 1,
  })(work);
  let computed = 0;
  try {
    for (let k = 0; k < keys; k++) {
      await writer(k);
      await nodeRedis.set(`floor:${k}`, JSON.stringify(value(k)));
      await bentoWriter.getOrSet({ key: `k${k}`, factory: () => value(k), ttl: "10m" });
    }
    await new Promise((r) => setTimeout(r, 200)); // the write-through lands
    const rows = await interleaved(
      [
        { name: REMOTE_OURS, body: (i) => reader(i % keys) },
        {
          name: REMOTE_ROWS.oursIoredis,
          body: (i) => overIoredis(i % keys),
        },
        {
          name: REMOTE_BENTO,
          body: (i) =>
            bentoReader.getOrSet({ key: `k${i % keys}`, factory: () => ++computed, ttl: "10m" }),
        },
        {
          name: REMOTE_FLOOR,
          body: async (i) => JSON.parse((await nodeRedis.get(`floor:${i % keys}`))!),
        },
        {
          name: REMOTE_ROWS.floorIoredis,
          body: async (i) => JSON.parse((await ioredis.get(`floor:${i % keys}`))!),
        },
      ],
      calls,
      rounds,
    );
    if (computed > 0) throw new Error(`BentoCache computed ${computed} times: not remote hits`);
    for (const f of [reader, overIoredis]) {
      const info = f.cacheInfo();
      if (info.misses > 0) throw new Error(`a reader of ours computed ${info.misses} times`);
    }
    return rows;
  } finally {
    writer[Symbol.dispose]();
    reader[Symbol.dispose]();
    overIoredis[Symbol.dispose]();
    ioredisForUs.disconnect();
    await bentoWriter.disconnectAll();
    await bentoReader.disconnectAll();
    await nodeRedis.close();
    ioredis.disconnect();
    await tierA.close();
    await tierB.close();
  }
}

/** Keeps the sweeps' reads alive, so that they are not optimised away. */
export let sink = 0;

/**
 * Our remote hit with no socket: a storage that answers from a `Map` (the bytes our tier
 * wrote), against its floor (an awaited `Map.get` and `JSON.parse` of the same object),
 * first back to back ("warm": the path's code and data stay in the CPU's caches), then
 * with {@linkcode SWEEP_BYTES} of memory read and written between two calls, outside the
 * timed part ("swept": each call starts from cold caches, as a call that waited for a
 * socket does). Wall time of the timed parts only, median of rounds taken in turns.
 */
async function inMemoryHits(calls: number, rounds: number): Promise<RemoteRow[]> {
  const keys = 1000;
  const bytes = new Map<string, Uint8Array>();
  const name = (n: string, k: Uint8Array): string => n + ":" + String.fromCharCode(...k);
  const storage: RemoteStorage = {
    get: (n, k) => Promise.resolve(bytes.get(name(n, k))),
    set: (n, k, v) => {
      bytes.set(name(n, k), v.slice());
      return Promise.resolve();
    },
    delete: (n, k) => Promise.resolve(bytes.delete(name(n, k))),
    clear: () => Promise.resolve(bytes.clear()),
    close: () => Promise.resolve(),
  };
  const value = (k: number) => ({ id: k, name: "a user", tags: ["x", "y"] });
  const work = async (k: number) => {
    await null;
    return value(k);
  };
  const writer = cache({ name: "bench-mem", remote: remoteTier({ storage }), maxSize: keys + 1 })(
    work,
  );
  const reader = cache({ name: "bench-mem", remote: remoteTier({ storage }), maxSize: 1 })(work);
  const json = new Map<number, string>();
  for (let k = 0; k < keys; k++) {
    await writer(k);
    json.set(k, JSON.stringify(value(k)));
  }
  await new Promise((r) => setTimeout(r, 100)); // the write-through lands
  const floor = async (k: number) => {
    await null;
    return JSON.parse(json.get(k)!);
  };
  const sweep = new Int32Array(SWEEP_BYTES >> 2);
  let swept = 0;
  const cases: Array<[string, (k: number) => Promise<unknown>, boolean]> = [
    [REMOTE_ROWS.warm, reader, false],
    [REMOTE_ROWS.warmFloor, floor, false],
    [REMOTE_ROWS.swept, reader, true],
    [REMOTE_ROWS.sweptFloor, floor, true],
  ];
  const perRound = cases.map(() => [] as number[]);
  let i = 0;
  try {
    for (let r = 0; r < rounds; r++) {
      for (let c = 0; c < cases.length; c++) {
        const [, f, cold] = cases[c]!;
        let ms = 0;
        for (let n = 0; n < calls; n++) {
          // A 64-byte line at a time: every line of the sweep is read and written.
          if (cold) {
            for (let j = 0; j < sweep.length; j += 16) {
              const v = sweep[j]! + 1;
              sweep[j] = v;
              swept += v;
            }
          }
          const t0 = performance.now();
          await f(i++ % keys);
          ms += performance.now() - t0;
        }
        perRound[c]!.push((ms * 1000) / calls);
      }
    }
    if (reader.cacheInfo().misses > 0) throw new Error("the in-memory reader computed");
  } finally {
    writer[Symbol.dispose]();
    reader[Symbol.dispose]();
  }
  sink += swept;
  return cases.map(([name], k) => ({ case: name, us: percentile(perRound[k]!, 50), calls }));
}

/** Runs the benchmark against a fresh redis-server. */
export async function runRemoteBench(calls = 2000, rounds = 5): Promise<RemoteReport> {
  await using redis = await startRedisServer();
  const tierA = await redisTier({ url: redis.url });
  const tierB = await redisTier({ url: redis.url });
  const work = async (k: number): Promise<number> => {
    await null;
    return k * 2;
  };
  const rows: RemoteRow[] = [];
  try {
    // A local hit: the same key again.
    const local = cache({ name: "bench-local", remote: tierA, maxSize: 16 })(work);
    await local(1);
    rows.push({
      case: "local hit (remote tier behind)",
      us: await time(calls, rounds, () => local(1)),
      calls,
    });

    const plain = cache({ maxSize: 16 })(work);
    await plain(1);
    rows.push({
      case: "local hit (no remote tier)",
      us: await time(calls, rounds, () => plain(1)),
      calls,
    });

    // More, shorter rounds: the machine's noise then falls on every case alike.
    rows.push(...await remoteHits(redis.port, redis.url, Math.ceil(calls / 2), rounds * 2 - 1));
    rows.push(...await inMemoryHits(Math.ceil(calls / 2), rounds * 2 - 1));

    // A miss: computes, stores locally and writes through in the background.
    const misses = cache({ name: "bench-miss", remote: tierA, maxSize: 1 })(work);
    rows.push({
      case: "miss + write-through (Redis get, compute, set)",
      us: await time(calls, rounds, (i) => misses(1e9 + i)),
      calls,
    });
    const plainMiss = cache({ maxSize: 1 })(work);
    rows.push({
      case: "miss (no remote tier)",
      us: await time(calls, rounds, (i) => plainMiss(1e9 + i)),
      calls,
    });

    // The bus: a delete on one host until the other's local copy is gone.
    const a = cache({ name: "bench-bus", remote: tierA })(work);
    const b = cache({ name: "bench-bus", remote: tierB })(work);
    const latencies: number[] = [];
    for (let k = 0; k < 200; k++) {
      await a(k);
      await new Promise((r) => setTimeout(r, 2));
      await b(k);
      const t0 = performance.now();
      a.cacheDelete(k);
      while (b.cacheGet(k) !== undefined) await new Promise((r) => setTimeout(r, 0));
      latencies.push(performance.now() - t0);
    }
    for (const f of [local, plain, misses, plainMiss, a, b]) f[Symbol.dispose]();
    return {
      rows,
      busP50: percentile(latencies, 50),
      busP99: percentile(latencies, 99),
      busSamples: latencies.length,
    };
  } finally {
    await tierA.close();
    await tierB.close();
  }
}

if (import.meta.main) {
  const report = await runRemoteBench();
  if (Deno.args.includes("--json")) {
    console.log(JSON.stringify(report));
  } else {
    for (const r of report.rows) {
      const cpu = r.cpuUs === undefined ? "" : ` (CPU ${r.cpuUs.toFixed(1)} µs)`;
      console.log(`${r.case.padEnd(50)} ${r.us.toFixed(2)} µs${cpu}`);
    }
    console.log(`bus p50 ${report.busP50.toFixed(2)} ms, p99 ${report.busP99.toFixed(2)} ms`);
  }
}
