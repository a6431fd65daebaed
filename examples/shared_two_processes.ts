/**
 * A shared cache across two processes: a result computed in one is a hit in the other, and
 * the counters are the totals of both. The parent makes a temporary directory for the cache
 * file and runs this file again as the child.
 *
 * $ deno run --allow-ffi --allow-env --allow-read --allow-write --allow-run examples/shared_two_processes.ts
 *
 * The shared backend itself needs only `--allow-ffi --allow-env --allow-read` (the child runs
 * with those); `--allow-write` and `--allow-run` are for the temporary directory and the
 * child process.
 *
 * @module
 */

import assert from "node:assert/strict";
import { cache, type CachedFunction, type SharedCacheInfo } from "../mod.ts"; // jsr:@warp/cache

const [role = "parent", dir] = Deno.args;

interface Page {
  page: number;
  html: string;
  by: number; // the process that computed it
}

function open(dir: string): CachedFunction<(page: number) => Page, SharedCacheInfo> {
  // Same `name` and `dir` in both processes: one file, one cache.
  return cache({ backend: "shared", name: "render", dir, maxSize: 1_000, ttl: 60_000 })(
    (page: number): Page => ({ page, html: `<h1>page ${page}</h1>`, by: Deno.pid }),
  );
}

if (role === "child") {
  const render = open(dir!);
  const one = render(1); // computed by the parent: a hit here
  const two = render(2); // a miss: computed here
  console.log(`child ${Deno.pid}: page 1 by ${one.by}, page 2 by ${two.by}`);
  Deno.exit(one.by !== Deno.pid && two.by === Deno.pid ? 0 : 1);
}

const tmp = await Deno.makeTempDir({ prefix: "warp_example_" });
try {
  const render = open(tmp);
  render(1); // a miss: computed here
  const child = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-ffi",
      "--allow-env",
      "--allow-read",
      import.meta.filename!,
      "child",
      tmp,
    ],
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  assert.equal(child.code, 0, "the child should have hit page 1 and computed page 2");
  const two = render(2); // computed by the child: a hit here
  assert.notEqual(two.by, Deno.pid);
  console.log(`parent ${Deno.pid}: page 2 by ${two.by}`);
  // Exact totals over both processes: 2 misses (one each), 2 hits (one each).
  const info = render.cacheInfo();
  console.log(info);
  assert.equal(info.hits, 2);
  assert.equal(info.misses, 2);
  render[Symbol.dispose](); // unmaps the file (it stays, with its entries)
} finally {
  await Deno.remove(tmp, { recursive: true });
}
