// TTL is per handle (README "TTL is per process"): each handle of a shared cache judges
// freshness with its own ttl, and an entry expired for one handle stays for the others.
import assert from "node:assert/strict";
import { cache } from "../mod.ts";

Deno.test("cache() shared: an entry expired by one handle's ttl stays a hit for a handle without ttl", async () => {
  const dir = await Deno.makeTempDir({ prefix: "warp_shared_ttl_" });
  try {
    const name = "ttl-per-handle";
    let forever = 0;
    let short = 0;
    let release = (): void => {};
    const gate = new Promise<void>((r) => (release = r));
    // Two handles on one file, as two processes would have: one without ttl, one with
    // `ttl: 20` and a clock (Unix ms, as every process must use) that can jump ahead.
    let skew = 0;
    const noTtl = cache({ backend: "shared", name, dir, maxSize: 16 })((x: number) => {
      forever++;
      return Promise.resolve(`v${x}`);
    });
    const withTtl = cache({
      backend: "shared",
      name,
      dir,
      maxSize: 16,
      ttl: 20,
      clock: () => Date.now() + skew,
    })(async (x: number) => {
      short++;
      await gate;
      return `w${x}`;
    });
    assert.equal(await noTtl(1), "v1");
    assert.equal(await withTtl(1), "v1", "fresh for the ttl handle too");
    skew = 1000;
    // Expired for the ttl handle: a miss, whose computation is pending...
    const pending = withTtl(1);
    assert.equal(short, 1);
    // ...while the entry stays in the file for the handle without ttl.
    assert.equal(await noTtl(1), "v1");
    assert.equal(await noTtl(1), "v1");
    assert.equal(forever, 1, "the handle without ttl never recomputes");
    assert.equal(noTtl.cacheInfo().currentSize, 1);
    release();
    // The ttl handle's own result replaces the entry when it resolves.
    assert.equal(await pending, "w1");
    assert.equal(await withTtl(1), "w1");
    assert.equal(await noTtl(1), "w1");
    assert.equal(forever, 1);
    assert.equal(short, 1);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});
