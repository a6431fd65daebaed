/**
 * OpenTelemetry metrics of every live cache, through `npm:@opentelemetry/api`: observable
 * instruments whose one callback reads the registry (`registry.ts`) when a reader collects,
 * so that a hit or a miss does no metrics work at all, with a meter provider set or not.
 * Deno exports them with `OTEL_DENO=true`; any SDK `MeterProvider` set as the global one
 * collects them too (see the README, "Metrics (OpenTelemetry)").
 *
 * The instruments (`warp_cache.*`, attributes `cache.name`, `cache.backend` and, for a
 * shared cache, `cache.dir`, the directory of its file):
 *
 * | name | instrument | unit | from |
 * | --- | --- | --- | --- |
 * | `warp_cache.hits` | ObservableCounter | `{hit}` | `hits` |
 * | `warp_cache.misses` | ObservableCounter | `{miss}` | `misses` |
 * | `warp_cache.evictions` | ObservableCounter | `{entry}` | `evictions` |
 * | `warp_cache.stale_hits` | ObservableCounter | `{hit}` | `staleHits` (when counted) |
 * | `warp_cache.remote.errors` | ObservableCounter | `{error}` | `remoteErrors` (with `remote`) |
 * | `warp_cache.entry.count` | ObservableUpDownCounter | `{entry}` | `currentSize` |
 * | `warp_cache.entry.limit` | ObservableUpDownCounter | `{entry}` | `maxSize` (when finite) |
 *
 * Memory caches that share a name are added up into one series. A shared cache's counters
 * are its file's totals over every process: caches of one shared name and directory (one
 * file) in this process give one series (the first one's), two directories two series, and
 * every process that exports them reports the same totals (aggregate them across processes
 * with a maximum, not a sum).
 *
 * @module
 */

import {
  type BatchObservableCallback,
  type Meter,
  type MeterProvider,
  metrics,
  type Observable,
} from "npm:@opentelemetry/api@^1.9.0";
import type { Registered } from "./_registered.ts";
import { Backend } from "../options/options.ts";
import { VERSION } from "../native/_artifacts.ts";

/** The instrumentation scope of the instruments. */
export const METER_NAME = "@warp/cache";

/** The names of the instruments, in one place (the README's table lists them). */
export const METRIC = {
  hits: "warp_cache.hits",
  misses: "warp_cache.misses",
  evictions: "warp_cache.evictions",
  staleHits: "warp_cache.stale_hits",
  remoteErrors: "warp_cache.remote.errors",
  entries: "warp_cache.entry.count",
  limit: "warp_cache.entry.limit",
} as const;

/** The attribute naming the cache (`name` of its listing in `caches()`). */
export const ATTR_NAME = "cache.name";
/** The attribute naming where its entries live (`memory` or `shared`). */
export const ATTR_BACKEND = "cache.backend";
/** The attribute naming a shared cache's directory (absent for memory caches). */
export const ATTR_DIR = "cache.dir";

/** The sums of one series: the caches of one name and backend (and directory, shared). */
interface Series {
  name: string;
  backend: Backend;
  dir: string | undefined;
  hits: number;
  misses: number;
  evictions: number;
  entries: number;
  limit: number;
  staleHits: number | undefined;
  remoteErrors: number | undefined;
}

/** The meter provider that the instruments are registered with, and how to undo it. */
let current: { provider: MeterProvider; meter: Meter; undo: () => void } | undefined;

/**
 * Registers the instruments with the global meter provider, unless they are registered
 * with it already (then it only compares one reference): called at every cache creation,
 * so that a provider set after the first cache (a test's, an SDK's set up late) is
 * instrumented from the next cache created on. Their callback calls `read` at each
 * collection.
 *
 * @param read The live caches, read at collection time.
 */
export function instrument(read: () => Registered[]): void {
  const provider = metrics.getMeterProvider();
  if (current?.provider === provider) return;
  current?.undo();
  const meter = provider.getMeter(METER_NAME, VERSION);
  // valueType is left at its default (DOUBLE): Deno's own meter accepts no other.
  const counter = (name: string, unit: string, description: string): Observable =>
    meter.createObservableCounter(name, { unit, description });
  const gauge = (name: string, unit: string, description: string): Observable =>
    meter.createObservableUpDownCounter(name, { unit, description });
  const hits = counter(
    METRIC.hits,
    "{hit}",
    "Lookups answered from the cache (calls that joined a computation under way included)",
  );
  const misses = counter(METRIC.misses, "{miss}", "Lookups that found no fresh entry");
  const evictions = counter(
    METRIC.evictions,
    "{entry}",
    "Entries removed by the eviction policy to make room",
  );
  const staleHits = counter(
    METRIC.staleHits,
    "{hit}",
    "Stale values returned (staleWhileRevalidate, or timeout with a stale value)",
  );
  const remoteErrors = counter(
    METRIC.remoteErrors,
    "{error}",
    "Remote tier operations that failed or timed out",
  );
  const entries = gauge(METRIC.entries, "{entry}", "Entries held now");
  const limit = gauge(METRIC.limit, "{entry}", "Most entries kept (maxSize)");
  const all = [hits, misses, evictions, staleHits, remoteErrors, entries, limit];
  const callback: BatchObservableCallback = (result) => {
    for (const s of collect(read())) {
      const attributes: Record<string, string> = {
        [ATTR_NAME]: s.name,
        [ATTR_BACKEND]: s.backend === Backend.Shared ? "shared" : "memory",
      };
      if (s.dir !== undefined) attributes[ATTR_DIR] = s.dir;
      result.observe(hits, s.hits, attributes);
      result.observe(misses, s.misses, attributes);
      result.observe(evictions, s.evictions, attributes);
      result.observe(entries, s.entries, attributes);
      if (Number.isFinite(s.limit)) result.observe(limit, s.limit, attributes);
      if (s.staleHits !== undefined) result.observe(staleHits, s.staleHits, attributes);
      if (s.remoteErrors !== undefined) result.observe(remoteErrors, s.remoteErrors, attributes);
    }
  };
  meter.addBatchObservableCallback(callback, all);
  current = {
    provider,
    meter,
    undo: () => meter.removeBatchObservableCallback(callback, all),
  };
}

/**
 * The series of the live caches: one per name and backend, their counters added up. A
 * cache whose info cannot be read now (its store failed) is left out of this collection,
 * not the others.
 */
export function collect(caches: Registered[]): Series[] {
  const byKey = new Map<string, Series>();
  for (const c of caches) {
    let info;
    let evictions;
    try {
      info = c.info();
      evictions = c.evictions?.() ?? 0;
    } catch {
      continue;
    }
    const key = `${c.backend}\u0000${c.name}\u0000${c.dir ?? ""}`;
    let s: Series | undefined = byKey.get(key);
    // Two caches of one shared name and directory read one file (the same totals): count
    // it once.
    if (s !== undefined && c.backend === Backend.Shared) continue;
    if (s === undefined) {
      s = {
        name: c.name,
        backend: c.backend,
        dir: c.dir,
        hits: 0,
        misses: 0,
        evictions: 0,
        entries: 0,
        limit: 0,
        staleHits: undefined,
        remoteErrors: undefined,
      };
      byKey.set(key, s);
    }
    s.hits += info.hits;
    s.misses += info.misses;
    s.evictions += evictions;
    s.entries += info.currentSize;
    s.limit += info.maxSize;
    if (info.staleHits !== undefined) s.staleHits = (s.staleHits ?? 0) + info.staleHits;
    if (info.remoteErrors !== undefined) {
      s.remoteErrors = (s.remoteErrors ?? 0) + info.remoteErrors;
    }
  }
  return [...byKey.values()];
}
