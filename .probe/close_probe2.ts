import { redisTier } from "../src/remote/redis.ts";
import { cache } from "../mod.ts";
import { startRedisServer } from "../tests/fixtures/redis_server.ts";
const server = await startRedisServer();
await server.kill();
console.warn = () => {};
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
for (const mode of ["sub", "cache"]) {
  for (let delay = 0; delay <= 200; delay += 20) {
    const tier = await redisTier({ url: server.url }, { onError: () => {} });
    if (mode === "sub") tier.subscribe("x", () => {}).catch(() => {});
    else { const f = cache({ name: "p", remote: tier })(async (x: number) => x); await f(1); }
    await sleep(delay);
    const t0 = performance.now();
    const r = await Promise.race([tier.close().then(() => "closed"), sleep(3000).then(() => "hung")]);
    console.log(mode, delay, r, (performance.now() - t0).toFixed(1));
  }
}
Deno.exit(0);
