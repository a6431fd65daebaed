// Permissions not covered by tests/shared_process_test.ts (issue #6): files and
// directories of other owners. Runs as root (as CI does), since only root can give a file
// away; as another user the test fails with that message rather than skipping.
import assert from "node:assert/strict";
import { CacheError } from "../src/native/errors.ts";
import { makeValue, openStore, storeSet } from "./fixtures/fault_common.ts";

const NOBODY = 65534;

function requireRoot(): void {
  assert.equal(Deno.uid(), 0, "these tests chown files to another user: run them as root");
}

Deno.test("shared store refuses a cache file owned by another user, and leaves it alone", async () => {
  requireRoot();
  const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp-fault-perm-" });
  try {
    const s = openStore(dir, "c.warp", 8, 64);
    storeSet(s, "a", makeValue("a", 1, 1));
    s.close();
    const before = Deno.readFileSync(`${dir}/c.warp`);
    Deno.chownSync(`${dir}/c.warp`, NOBODY, NOBODY);
    try {
      openStore(dir, "c.warp", 8, 64);
      assert.fail("opened a file of another user");
    } catch (e) {
      assert.ok(e instanceof CacheError, String(e));
      assert.match(e.message, /owned by another user \(uid 65534\)/);
    }
    // Other parameters would recreate a bad file: a foreign one is refused, not replaced.
    assert.throws(() => openStore(dir, "c.warp", 16, 128), /owned by another user/);
    assert.deepEqual(Deno.readFileSync(`${dir}/c.warp`), before);
    assert.equal(Deno.statSync(`${dir}/c.warp`).uid, NOBODY);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("shared store refuses a directory that other users may write to", async () => {
  requireRoot();
  const base = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp-fault-perm-" });
  try {
    // Another user's directory, group-writable: they could swap files under us.
    const foreign = `${base}/foreign`;
    Deno.mkdirSync(foreign, { mode: 0o770 });
    Deno.chmodSync(foreign, 0o770);
    Deno.chownSync(foreign, NOBODY, NOBODY);
    assert.throws(() => openStore(foreign, "c.warp", 8, 64), /other users may write to it/);
    assert.deepEqual([...Deno.readDirSync(foreign)], []);
    // Our own directory, but world-writable without the sticky bit.
    const open = `${base}/open`;
    Deno.mkdirSync(open);
    Deno.chmodSync(open, 0o777);
    assert.throws(() => openStore(open, "c.warp", 8, 64), /other users may write to it/);
    // With the sticky bit (like /tmp) others cannot remove or rename our files: accepted.
    Deno.chmodSync(open, 0o1777);
    const s = openStore(open, "c.warp", 8, 64);
    assert.equal((Deno.statSync(`${open}/c.warp`).mode ?? 0) & 0o777, 0o600);
    s.close();
    // A symbolic link to the directory owned by another user is refused.
    Deno.mkdirSync(`${base}/target`, { mode: 0o700 });
    Deno.symlinkSync(`${base}/target`, `${base}/link`);
    await new Deno.Command("chown", { args: ["-h", `${NOBODY}:${NOBODY}`, `${base}/link`] })
      .output();
    assert.throws(
      () => openStore(`${base}/link`, "c.warp", 8, 64),
      /symbolic link owned by another user/,
    );
    assert.deepEqual([...Deno.readDirSync(`${base}/target`)], []);
  } finally {
    await Deno.remove(base, { recursive: true });
  }
});
