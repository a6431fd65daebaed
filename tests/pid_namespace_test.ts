// Processes in different PID namespaces sharing one cache directory, as containers that
// share /dev/shm do. The lock word names its owner by a liveness id that the kernel holds
// (rust/src/shm/lock.rs), not by a pid, which means nothing across namespaces. Needs root
// (to make namespaces), as CI has; without it these tests fail saying so.
import assert from "node:assert/strict";

const root = new URL("../", import.meta.url).pathname;
const writer = new URL("./fixtures/pid_ns_writer.ts", import.meta.url).pathname;

function requireRoot(): void {
  assert.equal(
    Deno.uid(),
    0,
    "this test needs root: it runs writers in new PID namespaces with `unshare --pid --fork --mount-proc`",
  );
}

Deno.test("cache() shared: writers in two PID namespaces get right values and no error", async () => {
  requireRoot();
  const dir = await Deno.makeTempDir({ prefix: "warp_pidns_" });
  try {
    const run = (w: number) =>
      new Deno.Command("unshare", {
        args: [
          "--pid",
          "--fork",
          "--mount-proc",
          Deno.execPath(),
          "run",
          "-A",
          "--quiet",
          writer,
          JSON.stringify({ dir, name: "pidns", writer: w, ms: 2500 }),
        ],
        cwd: root,
        env: { WARP_CACHE_ENGINE: "native", NO_COLOR: "1" },
        stdout: "piped",
        stderr: "piped",
      }).output();
    const outs = await Promise.all([run(0), run(1)]);
    const reports = outs.map((o) => {
      const text = new TextDecoder().decode(o.stdout).trim();
      assert.ok(o.success, new TextDecoder().decode(o.stderr) + text);
      return JSON.parse(text.split("\n").at(-1)!);
    });
    for (const r of reports) {
      assert.equal(r.pid, 1, "each writer is pid 1 of its own namespace");
      assert.deepEqual(r.errors, []);
      assert.equal(r.wrong, 0);
      assert.ok(r.calls > 1000, `only ${r.calls} calls`);
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("shared store: two lock holders in two PID namespaces never overlap (Rust scenario)", async () => {
  // The sensitive check: both writers increment a counter in a side file while holding the
  // write lock; any overlap loses an increment. The pid-named lock failed it 5 runs in 5.
  requireRoot();
  const o = await new Deno.Command("cargo", {
    args: [
      "test",
      "--manifest-path",
      "rust/Cargo.toml",
      "--lib",
      "writers_in_two_pid_namespaces_never_take_the_lock_from_each_other",
    ],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr);
  assert.ok(o.success, text.slice(-2000));
  assert.match(text, /test result: ok\. 1 passed/);
});
