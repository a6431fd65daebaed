/**
 * Eviction against libCacheSim, without Python: both engines replay the short traces of
 * `fixtures/eviction_traces.ts` and must miss exactly as often as libCacheSim's `S3FIFO`,
 * `Sieve`, `LRU`, `FIFO` and `ARC` did (`fixtures/libcachesim_misses.json`, recorded by
 * `scripts/record_libcachesim.ts`). And the strategy numbers that cross the FFI are the
 * same on both sides.
 */

import assert from "node:assert/strict";
import { cache, Strategy } from "../mod.ts";
import { loadNative } from "../src/native/ffi.ts";
import { POLICY } from "../src/native/_abi.ts";
import { NativeMemoryStore } from "../src/store/native_store.ts";
import { type ByteStore, MISS } from "../src/store/store.ts";
import { TsSieveStore } from "../src/store/ts_store.ts";
import { checksum, evictionTraces } from "./fixtures/eviction_traces.ts";

interface Fixture {
  libcachesim: string;
  requests: number;
  capacities: number[];
  checksums: Record<string, string>;
  misses: Record<string, Record<string, number[]>>;
}

const fixture: Fixture = JSON.parse(
  await Deno.readTextFile(new URL("./fixtures/libcachesim_misses.json", import.meta.url)),
);

/** libCacheSim's policy names, as our strategies. */
const POLICIES: Record<string, Strategy> = {
  S3FIFO: Strategy.S3Fifo,
  Sieve: Strategy.Sieve,
  LRU: Strategy.Lru,
  FIFO: Strategy.Fifo,
  ARC: Strategy.Arc,
};

const native = (() => {
  try {
    return loadNative();
  } catch {
    return null;
  }
})();

function replay(store: ByteStore, ids: Int32Array): number {
  const key = new Uint8Array(4);
  const view = new DataView(key.buffer);
  let misses = 0;
  for (const id of ids) {
    view.setInt32(0, id, true);
    if (store.get(key, 4, 0) === MISS) {
      misses++;
      store.set(key, 4, id, 0, false);
    }
  }
  assert.equal(store.info().misses, misses);
  store.close();
  return misses;
}

const traces = evictionTraces();

Deno.test("the eviction traces are the ones libCacheSim replayed", () => {
  assert.equal(fixture.requests, traces[0]!.ids.length);
  assert.deepEqual(
    Object.fromEntries(traces.map((t) => [t.name, checksum(t.ids)])),
    fixture.checksums,
    "the traces changed: record again with scripts/record_libcachesim.ts",
  );
});

for (
  const [engine, make] of [
    ["TypeScript", (c: number, p: Strategy) => new TsSieveStore({ maxSize: c, policy: p })],
    ["native", (c: number, p: Strategy) => new NativeMemoryStore(native!, c, undefined, p)],
  ] as const
) {
  Deno.test({
    name: `${engine} store misses exactly as libCacheSim ${fixture.libcachesim}'s S3FIFO, ` +
      "Sieve, LRU, FIFO and ARC",
    ignore: engine === "native" && native === null,
    fn: async (t) => {
      for (const { name, ids } of traces) {
        for (const [policy, strategy] of Object.entries(POLICIES)) {
          await t.step(`${name}, ${policy}`, () => {
            const ours = fixture.capacities.map((c) => replay(make(c, strategy), ids));
            assert.deepEqual(
              ours,
              fixture.misses[name]![policy],
              `capacities ${fixture.capacities}`,
            );
          });
        }
      }
    },
  });
}

Deno.test("cache() with strategy s3fifo misses as libCacheSim's S3FIFO", () => {
  const { name, ids } = traces[0]!;
  const ours = fixture.capacities.map((maxSize) => {
    const f = cache({ maxSize, strategy: "s3fifo" })((id: number) => id);
    for (const id of ids) f(id);
    return f.cacheInfo().misses;
  });
  assert.deepEqual(ours, fixture.misses[name]!.S3FIFO);
});

Deno.test("cache() with strategy arc misses as libCacheSim's ARC", () => {
  const { name, ids } = traces.find((t) => t.name === "shifting")!;
  const ours = fixture.capacities.map((maxSize) => {
    const f = cache({ maxSize, strategy: "arc" })((id: number) => id);
    for (const id of ids) f(id);
    return f.cacheInfo().misses;
  });
  assert.deepEqual(ours, fixture.misses[name]!.ARC);
});

Deno.test({
  name: "the native library accepts each Strategy number and refuses the next",
  ignore: native === null,
  fn: () => {
    for (const n of Object.values(Strategy).filter((v) => typeof v === "number")) {
      new NativeMemoryStore(native!, 8, undefined, n as number).close();
    }
    const next = Object.keys(POLICY).length;
    assert.throws(
      () => new NativeMemoryStore(native!, 8, undefined, next),
      new RegExp(`unknown policy: ${next}`),
    );
  },
});
