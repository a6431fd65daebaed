/**
 * One process of the tags part of `deno task demo` (`scripts/_demo_tags.ts`): a cache of
 * product pages tagged `product:<id>` and `category:<id % 4>`, shared in a directory (the
 * three processes of one machine) or in memory (the Redis host), with a Redis remote tier
 * when a URL is given; driven by lines on stdin, one JSON line per command.
 *
 * Args: `<"shared" | "memory"> <dir> <cache name> <redis url | "none">`.
 * Commands: `load N` (asks for products 0..N-1), `cached N` (which of them are cached, by
 * category), `invalidate TAG`, `exit`.
 *
 * @module
 */

import { cache, invalidateTags } from "../mod.ts";
import { redisTier } from "../src/remote/redis.ts";

const [local, dir, name, url] = Deno.args;
const tier = url === "none" ? undefined : await redisTier({ url: url! });
let computed = 0;

const page = cache({
  name: name!,
  ttl: 60_000,
  tags: (id: number) => [`product:${id}`, `category:${id % 4}`],
  ...(local === "shared" ? { backend: "shared" as const, dir: dir! } : {}),
  ...(tier === undefined ? {} : { remote: tier, remoteTimeout: 1000 }),
})(async (id: number): Promise<string> => {
  computed++;
  await new Promise((r) => setTimeout(r, 2)); // a database query
  return `<h1>product ${id}</h1><p>category ${id % 4}, rendered by pid ${Deno.pid}</p>`;
});

const print = (x: unknown) => console.log(JSON.stringify(x));
print({ ready: true });
let rest = "";
for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
  rest += chunk;
  let nl: number;
  while ((nl = rest.indexOf("\n")) >= 0) {
    const [cmd, arg] = rest.slice(0, nl).trim().split(" ");
    rest = rest.slice(nl + 1);
    if (cmd === "load") {
      const before = computed;
      for (let id = 0; id < Number(arg); id++) await page(id);
      print({ computed: computed - before, info: page.cacheInfo() });
    } else if (cmd === "cached") {
      const byCategory = [0, 0, 0, 0];
      for (let id = 0; id < Number(arg); id++) {
        if (page.cacheGet(id) !== undefined) byCategory[id % 4]!++;
      }
      print({ byCategory });
    } else if (cmd === "invalidate") {
      const t0 = performance.now();
      invalidateTags(arg!);
      print({ ms: performance.now() - t0 });
    } else if (cmd === "exit") {
      page[Symbol.dispose]();
      await tier?.close();
      print({ bye: true });
      Deno.exit(0);
    }
  }
}
