// OpenTelemetry metrics: the observable instruments read the registry at collection time.
// Each test sets its own SDK MeterProvider as the global one; the next cache created
// registers the instruments with it (src/ops/metrics.ts).
import assert from "node:assert/strict";
import { metrics } from "npm:@opentelemetry/api@^1.9.0";
import {
  AggregationTemporality,
  MeterProvider,
  MetricReader,
  type MetricReaderOptions,
} from "npm:@opentelemetry/sdk-metrics@3.1.1";
import { cache, type CacheInfo, caches, SieveCache } from "../mod.ts";
import { METRIC } from "../src/ops/metrics.ts";
import { FakeServer, fakeTier } from "./fixtures/fake_tier.ts";

/** A reader collected by hand (no timer). */
class ManualReader extends MetricReader {
  constructor(options?: MetricReaderOptions) {
    super(options);
  }
  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}

/** One data point: `metric name|cache.name|cache.backend[|cache.dir]` -> value. */
type Points = Map<string, number>;

/**
 * Sets a new SDK provider as the global one; returns its collection, as points. `delta`:
 * delta temporality (a series not observed in a collection is absent from it).
 */
function provider(delta = false): () => Promise<Points> {
  const reader = new ManualReader(
    delta ? { aggregationTemporalitySelector: () => AggregationTemporality.DELTA } : {},
  );
  metrics.disable();
  metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader] }));
  return async () => {
    const { resourceMetrics, errors } = await reader.collect();
    assert.deepEqual(errors, []);
    const out: Points = new Map();
    for (const scope of resourceMetrics.scopeMetrics) {
      assert.equal(scope.scope.name, "@warp/cache");
      for (const m of scope.metrics) {
        for (const p of m.dataPoints) {
          const a = p.attributes;
          const dir = a["cache.dir"] === undefined ? "" : `|${a["cache.dir"]}`;
          out.set(
            `${m.descriptor.name}|${a["cache.name"]}|${a["cache.backend"]}${dir}`,
            p.value as number,
          );
        }
      }
    }
    return out;
  };
}

/** The points of one cache, by instrument, as its info would give them. */
function pointsOf(
  points: Points,
  name: string,
  backend: string,
  dir?: string,
): Record<string, number> {
  const out: Record<string, number> = {};
  for (const [k, v] of points) {
    const [metric, n, b, d] = k.split("|");
    if (n === name && b === backend && (dir === undefined || d === dir)) out[metric!] = v;
  }
  return out;
}

/** What the instruments must report for a cache with `info` and `evictions`. */
function expected(info: CacheInfo, evictions: number): Record<string, number> {
  const out: Record<string, number> = {
    [METRIC.hits]: info.hits,
    [METRIC.misses]: info.misses,
    [METRIC.evictions]: evictions,
    [METRIC.entries]: info.currentSize,
  };
  if (Number.isFinite(info.maxSize)) out[METRIC.limit] = info.maxSize;
  if (info.staleHits !== undefined) out[METRIC.staleHits] = info.staleHits;
  if (info.remoteErrors !== undefined) out[METRIC.remoteErrors] = info.remoteErrors;
  return out;
}

const evictionsOf = (name: string): number =>
  caches().find((c) => c.name === name)?.evictions ?? NaN;

Deno.test("metrics: a memory cache's counters equal its cacheInfo(), per name", async () => {
  const collect = provider();
  const a = cache({ maxSize: 4 })(function metricsA(x: number): number {
    return x;
  });
  const b = cache({ maxSize: Infinity })(function metricsB(x: number): number {
    return -x;
  });
  for (let i = 0; i < 10; i++) a(i); // 10 misses, 6 evictions
  a(9);
  a(9);
  b(1);
  b(1);
  let points = await collect();
  assert.deepEqual(pointsOf(points, "metricsA", "memory"), expected(a.cacheInfo(), 6));
  assert.deepEqual(pointsOf(points, "metricsA", "memory"), {
    [METRIC.hits]: 2,
    [METRIC.misses]: 10,
    [METRIC.evictions]: 6,
    [METRIC.entries]: 4,
    [METRIC.limit]: 4,
  });
  assert.deepEqual(pointsOf(points, "metricsB", "memory"), {
    [METRIC.hits]: 1,
    [METRIC.misses]: 1,
    [METRIC.evictions]: 0,
    [METRIC.entries]: 1,
  }, "no limit point for an unbounded cache");
  // Read at collection time: later calls show in the next collection.
  a(9);
  points = await collect();
  assert.equal(points.get(`${METRIC.hits}|metricsA|memory`), 3);
  assert.equal(evictionsOf("metricsA"), 6);
  a[Symbol.dispose]();
  b[Symbol.dispose]();
});

Deno.test("metrics: stale hits and remote errors where the cache counts them", async () => {
  const collect = provider();
  let now = 1_000_000;
  const stale = cache({ ttl: 100, staleWhileRevalidate: 50, clock: () => now })(
    function metricsStale(x: number): number {
      return x;
    },
  );
  stale(1);
  now += 120;
  stale(1); // stale hit, refresh in the background
  await new Promise((r) => setTimeout(r, 0));
  const server = new FakeServer();
  server.down = true;
  const remote = cache({ name: "metricsRemote", remote: fakeTier(server) })(
    (x: number) => Promise.resolve(x),
  );
  const warn = console.warn;
  const lines: string[] = [];
  console.warn = (line: string) => lines.push(line);
  try {
    await remote(1);
    await new Promise((r) => setTimeout(r, 10));
  } finally {
    console.warn = warn;
  }
  assert.match(lines.join("\n"), /metricsRemote.*fake remote down/);
  const points = await collect();
  const staleInfo = stale.cacheInfo();
  assert.equal(staleInfo.staleHits, 1);
  assert.deepEqual(pointsOf(points, "metricsStale", "memory"), expected(staleInfo, 0));
  const remoteInfo = remote.cacheInfo();
  assert.ok(remoteInfo.remoteErrors! >= 1, `${remoteInfo.remoteErrors} remote errors`);
  assert.deepEqual(pointsOf(points, "metricsRemote", "memory"), expected(remoteInfo, 0));
  assert.equal(points.has(`${METRIC.remoteErrors}|metricsStale|memory`), false);
  stale[Symbol.dispose]();
  remote[Symbol.dispose]();
});

Deno.test("metrics: a shared cache reports its file's counters", async () => {
  const collect = provider();
  const dir = await Deno.makeTempDir({ prefix: "warp_metrics_" });
  try {
    const f = cache({ backend: "shared", dir, name: "metricsShared", maxSize: 4 })(
      (x: number) => x,
    );
    for (let i = 0; i < 10; i++) f(i);
    f(9);
    const points = await collect();
    const info = f.cacheInfo();
    assert.deepEqual([info.hits, info.misses, info.currentSize], [1, 10, 4]);
    assert.equal(evictionsOf("metricsShared"), 6);
    assert.deepEqual(pointsOf(points, "metricsShared", "shared"), expected(info, 6));
    f[Symbol.dispose]();
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("metrics: shared caches of one name in two directories are two series, by cache.dir", async () => {
  const collect = provider();
  const dirs = [
    await Deno.makeTempDir({ prefix: "warp_metrics_a_" }),
    await Deno.makeTempDir({ prefix: "warp_metrics_b_" }),
  ];
  try {
    const [f, g] = dirs.map((dir) =>
      cache({ backend: "shared", dir, name: "metricsTwin", maxSize: 8 })((x: number) => x)
    );
    for (let i = 0; i < 3; i++) f!(i);
    for (let i = 0; i < 5; i++) g!(i);
    g!(0);
    const points = await collect();
    assert.deepEqual(
      pointsOf(points, "metricsTwin", "shared", dirs[0]),
      expected(f!.cacheInfo(), 0),
    );
    assert.deepEqual(
      pointsOf(points, "metricsTwin", "shared", dirs[1]),
      expected(g!.cacheInfo(), 0),
    );
    assert.equal(points.get(`${METRIC.misses}|metricsTwin|shared|${dirs[0]}`), 3);
    assert.equal(points.get(`${METRIC.misses}|metricsTwin|shared|${dirs[1]}`), 5);
    f![Symbol.dispose]();
    g![Symbol.dispose]();
  } finally {
    for (const dir of dirs) await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("metrics: SieveCache counters, and caches of one name added up", async () => {
  const collect = provider();
  const one = new SieveCache<number, number>({ maxSize: 2, name: "metricsSieve" });
  const two = new SieveCache<number, number>({ maxSize: 3, name: "metricsSieve" });
  one.set(1, 1).set(2, 2).set(3, 3); // 1 eviction
  one.get(3);
  one.get(1); // miss
  two.set(1, 1);
  two.get(1);
  two.get(5); // miss
  const points = await collect();
  assert.deepEqual(one.info(), { hits: 1, misses: 1, evictions: 1, maxSize: 2, currentSize: 2 });
  assert.deepEqual(pointsOf(points, "metricsSieve", "memory"), {
    [METRIC.hits]: 2,
    [METRIC.misses]: 2,
    [METRIC.evictions]: 1,
    [METRIC.entries]: 3,
    [METRIC.limit]: 5,
  });
  one[Symbol.dispose]();
  two[Symbol.dispose]();
});

Deno.test("metrics: a disposed cache is absent from the next collection", async () => {
  const collect = provider(true);
  const kept = cache()(function metricsKept(x: number): number {
    return x;
  });
  const gone = cache()(function metricsGone(x: number): number {
    return x;
  });
  const sieve = new SieveCache<number, number>({ maxSize: 2, name: "metricsGoneSieve" });
  kept(1);
  gone(1);
  let points = await collect();
  assert.equal(points.get(`${METRIC.misses}|metricsGone|memory`), 1);
  assert.equal(points.get(`${METRIC.entries}|metricsGoneSieve|memory`), 0);
  gone[Symbol.dispose]();
  sieve[Symbol.dispose]();
  points = await collect();
  assert.deepEqual(pointsOf(points, "metricsGone", "memory"), {}, "disposed: not observed");
  assert.deepEqual(pointsOf(points, "metricsGoneSieve", "memory"), {});
  assert.equal(points.get(`${METRIC.entries}|metricsKept|memory`), 0, "kept: observed (delta)");
  kept[Symbol.dispose]();
});

Deno.test({
  name: "metrics: a dropped cache is absent from the next collection",
  fn: async () => {
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--v8-flags=--expose-gc",
        new URL("./fixtures/metrics_gc.ts", import.meta.url).pathname,
      ],
      stdout: "piped",
      stderr: "inherit",
    }).output();
    assert.ok(out.success);
    const r = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.deepEqual(r.before, ["dropped", "droppedSieve", "kept"]);
    assert.deepEqual(r.after, ["kept"], "the dropped caches are no longer observed");
  },
});

Deno.test("metrics: a provider set after the first cache is instrumented at the next", async () => {
  metrics.disable(); // the no-op provider
  const early = cache()(function metricsEarly(x: number): number {
    return x;
  });
  early(1);
  const collect = provider();
  assert.equal((await collect()).size, 0, "no instrument on the new provider yet");
  const late = new SieveCache<number, number>({ maxSize: 2, name: "metricsLate" });
  const points = await collect();
  assert.equal(points.get(`${METRIC.misses}|metricsEarly|memory`), 1);
  assert.equal(points.get(`${METRIC.entries}|metricsLate|memory`), 0);
  early[Symbol.dispose]();
  late[Symbol.dispose]();
});

Deno.test("metrics: Deno exports the instruments itself with OTEL_DENO=true", async () => {
  // A local OTLP/HTTP receiver: the child's exporter posts protobuf to /v1/metrics.
  const bodies: string[] = [];
  const { promise: seen, resolve } = Promise.withResolvers<void>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen(): void {} },
    async (req): Promise<Response> => {
      const body = new TextDecoder("latin1").decode(new Uint8Array(await req.arrayBuffer()));
      if (new URL(req.url).pathname === "/v1/metrics") bodies.push(body);
      if (body.includes(METRIC.hits) && body.includes("otelDenoFixture")) resolve();
      return new Response(new Uint8Array(0), {
        headers: { "content-type": "application/x-protobuf" },
      });
    },
  );
  const child = new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", new URL("./fixtures/otel_deno.ts", import.meta.url).pathname],
    env: {
      OTEL_DENO: "true",
      OTEL_EXPORTER_OTLP_ENDPOINT: `http://127.0.0.1:${server.addr.port}`,
      OTEL_METRIC_EXPORT_INTERVAL: "100",
    },
    stdout: "null",
    stderr: "inherit",
  }).spawn();
  // Generous bound: the child exports every 100 ms once it has started.
  const timer = setTimeout(resolve, 30_000);
  await seen;
  clearTimeout(timer);
  child.kill();
  await child.status;
  await server.shutdown();
  const ours = bodies.filter((b) => b.includes("otelDenoFixture"));
  assert.ok(ours.length > 0, `${bodies.length} exports, none with the cache's name`);
  for (const name of [METRIC.hits, METRIC.misses, METRIC.evictions, METRIC.entries]) {
    assert.ok(ours.some((b) => b.includes(name)), `${name} exported`);
  }
  assert.ok(ours.some((b) => b.includes("cache.name") && b.includes("cache.backend")));
});
