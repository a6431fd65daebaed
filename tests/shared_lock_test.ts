// The shared store's write lock against a holder that is alive but does not release it
// (README "Locks", RELIABILITY.md G1 and hole 20): a
// real second process (`rust/examples/shm_hold.rs`) takes the lock in the middle of an
// update and is stopped with SIGSTOP, as Ctrl-Z, `docker pause` or a debugger would; a
// third process keeps reading and writing.
import assert from "node:assert/strict";
import { cache } from "../mod.ts";
import { Status } from "../src/native/_abi.ts";
import { sharedFileName } from "../src/store/shared_store.ts";

const root = new URL("../", import.meta.url).pathname;
const reader = new URL("./fixtures/shared_lock_reader.ts", import.meta.url).pathname;

/** Builds `rust/examples/shm_hold.rs` (dev profile, incremental); returns its path. */
async function buildHolder(): Promise<string> {
  const out = await new Deno.Command("cargo", {
    args: ["build", "--quiet", "--example", "shm_hold", "--manifest-path", "rust/Cargo.toml"],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  assert.equal(
    out.code,
    0,
    `cargo build --example shm_hold:\n${new TextDecoder().decode(out.stderr)}`,
  );
  return `${root}rust/target/debug/examples/shm_hold`;
}

/** Reads `child`'s stdout until a line equal to `want`. */
async function waitLine(child: Deno.ChildProcess, want: string): Promise<void> {
  const decoder = new TextDecoder();
  let text = "";
  const r = child.stdout.getReader();
  try {
    while (!text.split("\n").includes(want)) {
      const { value, done } = await r.read();
      if (done) assert.fail(`the holder exited before printing ${want}: ${text}`);
      text += decoder.decode(value, { stream: true });
    }
  } finally {
    r.releaseLock();
  }
}

/** All of a stream's text, gathered in the background. */
class Gather {
  text = "";
  ended = false;
  readonly done: Promise<string>;

  constructor(stream: ReadableStream<Uint8Array>) {
    this.done = (async () => {
      const decoder = new TextDecoder();
      for await (const chunk of stream) this.text += decoder.decode(chunk, { stream: true });
      this.ended = true;
      return this.text;
    })();
  }

  /** Resolves once the text has the line `want`; fails when the stream ends first. */
  async line(want: string): Promise<void> {
    while (!this.text.split("\n").includes(want)) {
      if (this.ended) assert.fail(`the stream ended before ${want}: ${this.text}`);
      await new Promise((r) => setTimeout(r, 10));
    }
  }
}

Deno.test("cache() shared: a writer stopped while holding the lock blocks no reader, and a write gives up", async () => {
  const holderPath = await buildHolder();
  const dir = await Deno.makeTempDir({ prefix: "warp_shared_lock_" });
  const name = "stopped";
  const maxSize = 64;
  const keys = 10;
  let holder: Deno.ChildProcess | null = null;
  try {
    const f = cache({ backend: "shared", name, dir, maxSize })((x: number) => `v${x}`);
    for (let k = 0; k < keys; k++) f(k);
    // The reader runs in a process of its own, so that a reader blocked by the stopped
    // holder (the old design) fails this test instead of hanging it. It opens the cache
    // first (opening checks the file under the lock), then waits for the go.
    const child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--quiet",
        reader,
        JSON.stringify({ dir, name, maxSize, keys, ms: 1000 }),
      ],
      cwd: root,
      env: { WARP_CACHE_ENGINE: "native", NO_COLOR: "1" },
      stdin: "piped",
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const stdout = new Gather(child.stdout);
    const stderr = new Gather(child.stderr);
    const output = Promise.all([child.status, stdout.done, stderr.done]);
    await stdout.line("ready");
    // The holder opens the file with the cache's sizes (maxKeySize 512, maxValueSize 4096).
    holder = new Deno.Command(holderPath, {
      args: [`${dir}/${sharedFileName(name)}`, String(maxSize), "512", "4096"],
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    await waitLine(holder, "held");
    Deno.kill(holder.pid, "SIGSTOP");
    const stdin = child.stdin.getWriter();
    await stdin.write(new TextEncoder().encode("go\n"));
    await stdin.close();
    let timer: ReturnType<typeof setTimeout> | undefined;
    const timeout = new Promise<null>((resolve) => {
      timer = setTimeout(() => resolve(null), 30_000);
    });
    const done = await Promise.race([output, timeout]);
    clearTimeout(timer);
    if (done === null) {
      holder.kill("SIGKILL"); // frees a blocked reader
      await holder.status;
      holder = null;
      await output;
      assert.fail("the reader was blocked for 30 s by a stopped lock holder");
    }
    const [status, out, err] = done;
    assert.equal(status.code, 0, `reader exited with ${status.code}:\n${err}\n${out}`);
    const r = JSON.parse(out.trim().split("\n").at(-1)!);
    console.log(
      `during the stop: ${r.hits} hits of ${r.calls} calls in 1 s; a new key's call took ${
        r.setMs.toFixed(1)
      } ms`,
    );
    assert.equal(r.wrong, 0, "a wrong value");
    assert.equal(r.computedDuringReads, 0, "every key stays a hit");
    assert.ok(r.hits > 1000, `only ${r.hits} hits in 1 s`);
    assert.equal(r.fresh, "v1000", "the call of a new key returns its value");
    assert.equal(r.computed, 1);
    assert.equal(r.size, keys, "its insert gave up: the lock is held");
    // The insert waits its bound (500 ms), not the whole stop; generous for a loaded machine.
    assert.ok(r.setMs < 5000, `the insert took ${r.setMs} ms`);
    // Opening does not wait for the stopped holder beyond its bound, and shares the file.
    assert.equal(r.reopenedHit, "v0", "a handle opened during the stop hits");
    assert.ok(r.openMs < 5000, `the open took ${r.openMs} ms`);
    assert.equal(r.clearCode, Status.Busy, r.clearError);
    assert.match(r.clearError, /held by a live process/);

    // Once the holder is gone, the next writer takes the lock over and repairs.
    holder.kill("SIGKILL");
    await holder.status;
    holder = null;
    assert.equal(f(1000), "v1000");
    assert.equal(f.cacheInfo().currentSize, keys + 1);
    for (let k = 0; k < keys; k++) assert.equal(f(k), `v${k}`);
  } finally {
    if (holder !== null) {
      holder.kill("SIGKILL");
      await holder.status;
    }
    await Deno.remove(dir, { recursive: true });
  }
});
