// The remote tier conformance suite (tests/fixtures/remote_conformance.ts) against every
// tier: Redis (a redis-server started here), Deno KV (a local file), and the fake tier, as
// is and slow.
import { redisTier } from "../src/remote/redis.ts";
import { kvTier } from "../src/remote/kv.ts";
import { conformance } from "./fixtures/remote_conformance.ts";
import { startRedisServer } from "./fixtures/redis_server.ts";
import { FakeServer, fakeTier } from "./fixtures/fake_tier.ts";

conformance("redis", async () => {
  const server = await startRedisServer();
  return {
    tier: () => redisTier({ url: server.url }),
    end: () => server.stop(),
    busMs: 50,
  };
});

conformance("kv", async () => {
  const dir = await Deno.makeTempDir({ prefix: "warp_conformance_kv_" });
  return {
    tier: () => kvTier({ path: `${dir}/c.kv` }, { pollInterval: 50 }),
    end: () => Deno.remove(dir, { recursive: true }),
    busMs: 300,
  };
});

conformance("fake", () => {
  const server = new FakeServer();
  return Promise.resolve({
    tier: () => Promise.resolve(fakeTier(server)),
    end: () => Promise.resolve(),
    busMs: 10,
  });
});

conformance("fake, slow", () => {
  const server = new FakeServer();
  server.delay = 5;
  return Promise.resolve({
    tier: () => Promise.resolve(fakeTier(server)),
    end: () => Promise.resolve(),
    busMs: 50,
  });
});
