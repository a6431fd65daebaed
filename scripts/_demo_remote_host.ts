/**
 * One "host" of the two-host part of `deno task demo` (`scripts/_demo_remote.ts`): a
 * shared cache in its own directory with (or without) a Redis remote tier, asked for a
 * stream of keys; prints its counters as JSON.
 *
 * Args: `<redis url | "none"> <cache name> <dir> <keys as JSON>`.
 *
 * @module
 */

import { cache } from "../mod.ts";
import { redisTier } from "../src/remote/redis.ts";

const [url, name, dir, keysJson] = Deno.args;
const keys = JSON.parse(keysJson!) as number[];
const tier = url === "none" ? undefined : await redisTier({ url: url! });

/** A slow computation: SHA-256 stretched over the key, ~3 ms. */
async function report(id: number): Promise<string> {
  let bytes: ArrayBuffer = new TextEncoder().encode(`report ${id}`).buffer as ArrayBuffer;
  for (let i = 0; i < 200; i++) bytes = await crypto.subtle.digest("SHA-256", bytes);
  return Array.from(new Uint8Array(bytes, 0, 8), (b) => b.toString(16).padStart(2, "0")).join("");
}

const cached = cache({
  backend: "shared",
  dir: dir!,
  name: name!,
  maxSize: 1024,
  ttl: 60_000,
  ...(tier === undefined ? {} : { remote: tier }),
})(report);

const t0 = performance.now();
for (const k of keys) await cached(k);
const info = cached.cacheInfo();
console.log(JSON.stringify({ ...info, ms: performance.now() - t0 }));
cached[Symbol.dispose]();
await tier?.close();
