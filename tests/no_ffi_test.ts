// Without --allow-ffi the library cannot load: the memory backend must fall back to the
// TypeScript store silently, without a permission prompt.
import assert from "node:assert/strict";
import { cache } from "../mod.ts";
import { memoryEngine } from "../src/store/engine.ts";

const ffiGranted = Deno.permissions.querySync({ name: "ffi" }).state === "granted";
const runGranted = Deno.permissions.querySync({ name: "run" }).state === "granted";

Deno.test({
  name: "memoryEngine() is the TypeScript store without --allow-ffi",
  ignore: ffiGranted,
  fn(): void {
    assert.equal(memoryEngine(), "ts");
    let n = 0;
    const c = cache()((x: number) => (n++, x));
    c(1);
    c(1);
    assert.equal(n, 1);
    assert.deepEqual(c.cacheInfo(), { hits: 1, misses: 1, maxSize: 128, currentSize: 1 });
  },
});

Deno.test({
  name: "cache() works in a script run with only --allow-read",
  ignore: !runGranted,
  async fn(): Promise<void> {
    const script = new URL("./fixtures/no_ffi_script.ts", import.meta.url).pathname;
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "--allow-read", "--no-prompt", script],
      env: { NO_COLOR: "1" },
      stdin: "null",
    }).output();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, stderr);
    assert.doesNotMatch(stderr, /prompt|Warning/i);
    const result = JSON.parse(new TextDecoder().decode(out.stdout));
    assert.deepEqual(result, {
      engine: "ts",
      identity: true,
      calls: 3,
      info: { hits: 2, misses: 3, maxSize: 2, currentSize: 2 },
    });
  },
});
