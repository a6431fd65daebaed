import { redisTier } from "../src/remote/redis.ts";
import { startRedisServer } from "../tests/fixtures/redis_server.ts";
const server = await startRedisServer();
await server.kill();
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
for (const withCall of [false, true]) {
  for (let delay = 0; delay <= 200; delay += 10) {
    const tier = await redisTier({ url: server.url }, { onError: () => {} });
    if (withCall) await tier.get("x", new Uint8Array([1]), AbortSignal.timeout(200)).catch(() => {});
    await sleep(delay);
    const t0 = performance.now();
    const r = await Promise.race([tier.close().then(() => "closed"), sleep(3000).then(() => "hung")]);
    console.log(withCall, delay, r, (performance.now() - t0).toFixed(1));
  }
}
Deno.exit(0);
