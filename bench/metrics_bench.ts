/**
 * What OpenTelemetry metrics cost a hit: the same hit loop on a cache created while the
 * global meter provider is the API's no-op one, and on a cache created after an SDK
 * `MeterProvider` was set (its reader collecting every 100 ms into an in-memory exporter,
 * so that collections run during the benchmark). The instruments are observable: they read
 * the registry when the reader collects, so both hit paths run the same code; the
 * difference is noise plus the collections' share of the thread.
 *
 * Each iteration performs `BATCH` (1,000) operations: divide by 1,000 for ns per call.
 *
 * Run: `deno bench -A bench/metrics_bench.ts`.
 *
 * @module
 */

import { metrics } from "npm:@opentelemetry/api@^1.9.0";
import {
  AggregationTemporality,
  InMemoryMetricExporter,
  MeterProvider,
  MetricReader,
  PeriodicExportingMetricReader,
} from "npm:@opentelemetry/sdk-metrics@3.1.1";
import { cache, SieveCache } from "../mod.ts";
import { BATCH } from "./_workload.ts";

/** Keeps results alive so that the work is not optimised away. */
export let sink = 0;

const KEYS = 1024;

function makeCached(): (x: number) => number {
  const f = cache({ maxSize: 4096 })((x: number): number => x * 2);
  for (let i = 0; i < KEYS; i++) f(i);
  return f;
}

function makeSieve(name: string): SieveCache<number, number> {
  const s = new SieveCache<number, number>({ maxSize: 4096, name });
  for (let i = 0; i < KEYS; i++) s.set(i, i * 2);
  return s;
}

// Created under the no-op provider (nothing set yet).
const noopCached = makeCached();
const noopSieve = makeSieve("benchNoop");

// An SDK provider, collecting every 100 ms while the benchmarks run.
const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 100 });
/** A reader collected by hand, to time one collection. */
class ManualReader extends MetricReader {
  protected override onShutdown(): Promise<void> {
    return Promise.resolve();
  }
  protected override onForceFlush(): Promise<void> {
    return Promise.resolve();
  }
}
const manual = new ManualReader();
metrics.setGlobalMeterProvider(new MeterProvider({ readers: [reader, manual] }));
const sdkCached = makeCached();
const sdkSieve = makeSieve("benchSdk");
// The timer must not keep the process alive once the benchmarks are done.
globalThis.addEventListener("unload", () => void reader.shutdown());

function hits(f: (x: number) => number): void {
  let s = 0;
  for (let i = 0; i < BATCH; i++) s += f(i & (KEYS - 1));
  sink += s;
}

function gets(c: SieveCache<number, number>): void {
  let s = 0;
  for (let i = 0; i < BATCH; i++) s += c.get(i & (KEYS - 1))!;
  sink += s;
}

Deno.bench({
  group: "cache() hit",
  name: "no meter provider (API no-op)",
  baseline: true,
  fn: () => hits(noopCached),
});
Deno.bench({
  group: "cache() hit",
  name: "SDK meter provider, collecting every 100 ms",
  fn: () => hits(sdkCached),
});
Deno.bench({
  group: "SieveCache.get() hit",
  name: "no meter provider (API no-op)",
  baseline: true,
  fn: () => gets(noopSieve),
});
Deno.bench({
  group: "SieveCache.get() hit",
  name: "SDK meter provider, collecting every 100 ms",
  fn: () => gets(sdkSieve),
});
Deno.bench({
  group: "collection",
  name: "one collection (reader.collect(), 4 caches)",
  fn: async () => {
    await manual.collect();
  },
});
