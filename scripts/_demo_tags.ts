/**
 * The tags part of `deno task demo`.
 *
 * 1. One `invalidateTags("category:2")` reaching three processes and a Redis host at
 *    once: three processes share a cache of product pages (`backend: "shared"`, tags
 *    `product:<id>` and `category:<id % 4>`), a fourth process (another "host": a memory
 *    cache) shares them through Redis. One of the three invalidates a category; the table
 *    shows, per process, the entries of that category still cached right after (none: the
 *    three read the directory's tag clock, no message), and how long the Redis host took
 *    to drop its copies (the bus). Without `redis-server`, the Redis host is skipped and
 *    the note says so.
 * 2. A failing origin served by `staleIfError` with a back-off: a simulated 20 s of calls
 *    (one every 10 ms over 5 products, an injected clock) with the origin down from 5 s to
 *    15 s, with and without `staleIfError`; the table counts the errors that reach the
 *    callers, the stale values served and the calls made to the origin during the outage.
 *    At 12 s `product:0` is invalidated: from then on its callers get the error, never the
 *    invalidated value.
 *
 * @module
 */

import { cache, invalidateTags } from "../mod.ts";
import { table } from "./_demo_work.ts";
import { LineChild } from "./_line_child.ts";
import { startRedisServer } from "../tests/fixtures/redis_server.ts";

const here = new URL(".", import.meta.url).pathname;
const PRODUCTS = 40;

/** One `_demo_tags_host.ts` process. */
class DemoHost extends LineChild {
  static async start(label: string, args: string[]): Promise<DemoHost> {
    const [host] = await DemoHost.spawn(label, `${here}_demo_tags_host.ts`, args, {
      stderr: "inherit",
    });
    return host;
  }
}

/** Part 1 (see the module doc); whether everything came out as it should. */
async function invalidationDemo(): Promise<boolean> {
  console.log(
    `\n--- tags: one invalidateTags("category:2") in process 1 reaches the three processes of a shared cache and a host behind Redis (${PRODUCTS} product pages, tags product:<id> and category:<id % 4>)`,
  );
  let redis: Awaited<ReturnType<typeof startRedisServer>> | undefined;
  try {
    redis = await startRedisServer();
  } catch (e) {
    console.log(`the Redis host is skipped: ${e instanceof Error ? e.message : String(e)}`);
  }
  const url = redis?.url ?? "none";
  let base = "/dev/shm";
  try {
    Deno.statSync(base);
  } catch {
    base = Deno.env.get("TMPDIR") ?? "/tmp";
  }
  const dir = await Deno.makeTempDir({ dir: base, prefix: "warp_demo_tags_" });
  const name = `demo-tags-${Deno.pid}`;
  const hosts: DemoHost[] = [];
  let ok = true;
  try {
    for (const p of ["process 1", "process 2", "process 3"]) {
      hosts.push(await DemoHost.start(p, ["shared", dir, name, url]));
    }
    if (redis !== undefined) {
      hosts.push(await DemoHost.start("Redis host", ["memory", "-", name, url]));
    }
    const computedFirst: number[] = [];
    for (const h of hosts) computedFirst.push((await h.send(`load ${PRODUCTS}`)).computed);
    const before = await Promise.all(hosts.map((h) => h.send(`cached ${PRODUCTS}`)));
    const inv = await hosts[0]!.send("invalidate category:2");
    const t0 = performance.now();
    const rows: string[][] = [];
    const after: number[][] = [];
    const seenMs: number[] = [];
    for (const h of hosts) {
      // The shared processes: asked once, right away. The Redis host: until it dropped them.
      let r = await h.send(`cached ${PRODUCTS}`);
      while (h.label === "Redis host" && r.byCategory[2] > 0 && performance.now() - t0 < 5000) {
        await new Promise((res) => setTimeout(res, 1));
        r = await h.send(`cached ${PRODUCTS}`);
      }
      after.push(r.byCategory);
      seenMs.push(performance.now() - t0);
    }
    const computedAgain: number[] = [];
    for (const h of [...hosts].reverse()) {
      computedAgain.unshift((await h.send(`load ${PRODUCTS}`)).computed);
    }
    for (let i = 0; i < hosts.length; i++) {
      const b = before[i]!.byCategory as number[];
      const a = after[i]!;
      const shared = hosts[i]!.label !== "Redis host";
      rows.push([
        hosts[i]!.label,
        shared ? "shared (one file)" : "memory + Redis",
        String(computedFirst[i]),
        String(b[2]),
        String(a[2]),
        String(a[0]! + a[1]! + a[3]!),
        i === 0
          ? `invalidated (${inv.ms.toFixed(2)} ms)`
          : shared
          ? "next lookup (no message)"
          : `${seenMs[i]!.toFixed(1)} ms (bus)`,
        String(computedAgain[i]),
      ]);
      ok &&= a[2] === 0 && a[0]! + a[1]! + a[3]! === b[0]! + b[1]! + b[3]!;
    }
    console.log(
      table([
        "process",
        "local tier",
        "computed first",
        "category:2 cached before",
        "after",
        "others kept",
        "saw it",
        "computed again",
      ], rows),
    );
    // The pages of category 2 were computed again once in all (by the first to ask again).
    ok &&= computedAgain.reduce((s, n) => s + n, 0) === PRODUCTS / 4;
    console.log(
      ok
        ? `category 2's ${PRODUCTS / 4} pages were dropped everywhere, the other ${
          PRODUCTS * 3 / 4
        } kept, and computed again once in all`
        : "UNEXPECTED: see the table",
    );
  } finally {
    await Promise.all(hosts.map((h) => h.exit()));
    await redis?.stop();
    await Deno.remove(dir, { recursive: true });
  }
  return ok;
}

/** Part 2 (see the module doc); whether everything came out as it should. */
async function staleIfErrorDemo(): Promise<boolean> {
  console.log(
    "\n--- staleIfError: a simulated 20 s of calls (one every 10 ms over 5 products), the origin down from 5 s to 15 s, product:0 invalidated at 12 s",
  );
  const configs = [
    { label: "ttl 1 s", options: {} },
    {
      label: "ttl 1 s, staleIfError 60 s, errorBackoff 1 s",
      options: { staleIfError: 60_000, errorBackoff: 1000 },
    },
  ];
  const rows: string[][] = [];
  let ok = true;
  for (const { label, options } of configs) {
    let now = 0;
    let down = false;
    let outageOrigin = 0;
    let errors = 0;
    let errorsBeforeInvalidation = 0;
    let outageCalls = 0;
    const price = cache({
      ttl: 1000,
      ...options,
      tags: (id: number) => [`product:${id}`, `demo:${label}`],
      clock: () => now,
    })(async (id: number): Promise<string> => {
      if (down) {
        outageOrigin++;
        throw new Error("503 from the origin");
      }
      await null;
      return `price of ${id} at ${now} ms`;
    });
    let invalidated = false;
    for (let step = 0; step < 2000; step++) {
      now = step * 10;
      down = now >= 5000 && now < 15_000;
      if (down) outageCalls++;
      if (now === 12_000) {
        invalidateTags("product:0");
        invalidated = true;
      }
      try {
        const v = await price(step % 5);
        if (invalidated && step % 5 === 0 && down && v.endsWith(" ms")) {
          const at = Number(v.split(" at ")[1]!.split(" ")[0]);
          ok &&= at >= 12_000; // never the invalidated value
        }
      } catch {
        errors++;
        if (!invalidated) errorsBeforeInvalidation++;
      }
    }
    const info = price.cacheInfo();
    rows.push([
      label,
      "2000",
      String(outageCalls),
      String(errors),
      String(info.staleHits ?? 0),
      String(outageOrigin),
    ]);
    if (options.staleIfError !== undefined) {
      // Before the invalidation no caller saw an error, and the origin was asked about once
      // a second per product rather than on every call; after it, product 0's callers get
      // the error (its stale value is invalidated).
      ok &&= errorsBeforeInvalidation === 0 && errors > 0 && outageOrigin < outageCalls / 5;
    } else {
      ok &&= errors === outageCalls;
    }
    price[Symbol.dispose]();
  }
  console.log(
    table([
      "cache",
      "calls",
      "during the outage",
      "errors seen by callers",
      "stale values served",
      "origin calls during the outage",
    ], rows),
  );
  console.log(
    ok
      ? "with staleIfError, no caller saw the outage until product:0 was invalidated (its callers then got the error, never the invalidated value), and the back-off spared the origin"
      : "UNEXPECTED: see the table",
  );
  return ok;
}

/**
 * Runs the tags part of the demo and prints its tables.
 *
 * @returns Whether every count came out as it should.
 */
export async function runTagsDemo(): Promise<boolean> {
  const a = await invalidationDemo();
  const b = await staleIfErrorDemo();
  return a && b;
}
