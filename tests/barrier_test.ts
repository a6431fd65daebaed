// The invalidation barrier of a cache with a remote tier (src/remote/_barrier.ts), with an
// injected wall clock.
import assert from "node:assert/strict";
import { Barrier } from "../src/remote/_barrier.ts";

const k = (s: string) => () => s;

Deno.test("Barrier stamps strictly increase, even when the wall clock stands still or goes back", () => {
  let now = 1000;
  const b = new Barrier(() => now);
  const a = b.stamp();
  const c = b.stamp();
  now = 900;
  const d = b.stamp();
  assert.ok(a < c && c < d, `${a} < ${c} < ${d}`);
  now = 2000;
  assert.equal(b.stamp(), 2000);
});

Deno.test("Barrier.mayStore: nothing that started before an invalidation of its key, a clear or a gap", () => {
  let now = 1000;
  const b = new Barrier(() => now++);
  const before = b.stamp();
  b.invalidateKey("x");
  const after = b.stamp();
  assert.equal(b.mayStore(k("x"), before), false, "started before the key's invalidation");
  assert.equal(b.mayStore(k("y"), before), true, "another key");
  assert.equal(b.mayStore(k("x"), after), true, "started after it");
  b.receivedKey("y");
  assert.equal(b.mayStore(k("y"), after), false, "an invalidation received from the bus");
  const beforeClear = b.stamp();
  b.clear();
  assert.equal(b.mayStore(k("z"), beforeClear), false, "a clear stops every key");
  assert.equal(b.mayStore(k("z"), b.stamp()), true);
  const beforeGap = b.stamp();
  b.gap();
  assert.equal(b.mayStore(k("z"), beforeGap), false, "a gap too");
  const beforeTag = b.stamp();
  b.invalidateTags(["t"]);
  assert.equal(b.mayStore(k("w"), beforeTag, ["s", "t"]), false, "an entry carrying the tag");
  assert.equal(b.mayStore(k("w"), beforeTag, ["s"]), true);
});

Deno.test("Barrier.admits: remote values born before a clear, a tag or an unsent invalidation are misses", () => {
  let now = 10_000;
  const b = new Barrier(() => now);
  assert.equal(b.admits(k("x"), 5, []), true);
  const at = b.invalidateKey("x");
  assert.equal(b.admits(k("x"), at - 1, []), false, "older than this host's delete");
  assert.equal(b.admits(k("x"), at, []), true, "this host's own set");
  b.sent("x", at);
  assert.equal(b.admits(k("x"), at - 1, []), true, "acknowledged: the storage has it");
  now = 20_000;
  b.clear(19_000); // received: the publisher's stamp
  assert.equal(b.admits(k("y"), 18_999, []), false);
  assert.equal(b.admits(k("y"), 19_000, []), true);
  // A publisher whose clock runs ahead: clamped to this host's time of receipt.
  b.clear(1_000_000);
  assert.equal(b.admits(k("y"), 20_001, []), true, "not hidden for the length of the skew");
  assert.equal(b.admits(k("y"), 19_999, []), false);
  now = 21_000;
  b.invalidateTags(["t"], 20_500);
  assert.equal(b.admits(k("y"), 20_200, ["t"]), false);
  assert.equal(b.admits(k("y"), 20_200, ["u"]), true);
});

Deno.test("Barrier remembers at most cap keys; the oldest give way to a floor", () => {
  let now = 0;
  const b = new Barrier(() => ++now, 3);
  const start = b.stamp();
  for (const key of ["a", "b", "c", "d"]) b.receivedKey(key);
  assert.equal(b.size, 3);
  assert.equal(b.mayStore(k("z"), start), false, "older than the pruned key: refused");
  assert.equal(b.mayStore(k("z"), b.stamp()), true);
});
