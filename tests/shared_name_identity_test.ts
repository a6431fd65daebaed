// Two shared caches with different `name`s must never share a file: the name is the
// cache's identity across processes, and a shared file returns whatever any cache of that
// name stored. `sharedFileName` hashes the name when it rewrites it, but hashes its UTF-8
// encoding, which turns every lone surrogate into U+FFFD: the names "\uD800", "\uDC00" and
// "\uFFFD" all became `_-83d544cc.warp`, and one function got another's results. A name
// with a lone surrogate (which no other process can spell the same way) is refused, as
// `tags` are.
import assert from "node:assert/strict";
import { cache, cacheControls } from "../mod.ts";
import { sharedFileName } from "../src/store/shared_store.ts";

Deno.test("sharedFileName(): names that differ only by a lone surrogate name different files", () => {
  const names = ["\uD800", "\uDC00", "\uFFFD", "a\uD83Db", "a\uFFFDb"];
  const files = new Set(names.map(sharedFileName));
  assert.equal(files.size, names.length, [...files].join(", "));
});

Deno.test("cache() shared: two caches named \\uD800 and \\uFFFD never return each other's values", async () => {
  const dir = await Deno.makeTempDir({ prefix: "warp_name_identity_" });
  const made: Array<(x: number) => number> = [];
  try {
    let tens: (x: number) => number;
    let twenties: (x: number) => number;
    try {
      tens = cache({ backend: "shared", dir, name: "\uFFFD" })((x: number) => x * 10);
      made.push(tens);
      twenties = cache({ backend: "shared", dir, name: "\uD800" })((x: number) => x * 20);
      made.push(twenties);
    } catch (e) {
      // Refusing the lone surrogate at decoration is a fix too.
      assert.ok(e instanceof TypeError && /name/.test(e.message), String(e));
      return;
    }
    assert.equal(tens(1), 10);
    assert.equal(twenties(1), 20, "the cache named \\uD800 returned the \\uFFFD cache's value");
  } finally {
    for (const f of made) cacheControls(f)[Symbol.dispose]();
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cache(): a name with a lone surrogate is a TypeError naming the option", () => {
  assert.throws(
    () => cache({ backend: "shared", name: "report\uD800" }),
    (e: unknown) => e instanceof TypeError && /name/.test(e.message) && /surrogate/.test(e.message),
  );
});

Deno.test("sharedFileName(): a name spelled like another's rewritten form names another file", () => {
  // "a b" is rewritten to "a_b" with the hash of "a b" appended; a cache named exactly that
  // must not open the same file.
  const rewritten = sharedFileName("a b").slice(0, -".warp".length);
  assert.match(rewritten, /^a_b-[0-9a-f]{8}$/);
  assert.notEqual(sharedFileName(rewritten), sharedFileName("a b"));
  // Names that need no rewriting keep their file name.
  assert.equal(sharedFileName("users-v2"), "users-v2.warp");
  assert.equal(sharedFileName("cache-2024"), "cache-2024.warp");
});
