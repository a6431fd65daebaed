// Behaviour of cache() with the shared backend inside one process: counters, SIEVE, TTL,
// sizes, values, async, keys, files on disk.
// Cross-process and Worker behaviour: tests/shared_process_test.ts.
import assert from "node:assert/strict";
import { isDeepStrictEqual } from "node:util";
import { Backend, cache, type CacheOptions, type SharedCacheInfo } from "../mod.ts";
import { defaultSharedDir, sharedFileName } from "../src/store/shared_store.ts";
import { HEADER_SIZE, MAX_SHARED_ENTRIES, SHM_HEADER } from "../src/native/_abi.ts";
import { samples, SAMPLES_MAX_VALUE_SIZE } from "./fixtures/shared_common.ts";
import { handResumes, secondChance } from "./fixtures/sieve_scenarios.ts";

/** Runs `body` with a fresh temporary directory, removed afterwards. */
async function withTempDir(body: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "warp_shared_" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

type Shared<A extends unknown[], R> = ((...args: A) => R) & {
  cacheInfo(): SharedCacheInfo;
  cacheClear(): void;
};

/** A shared cache over `f`, counting the calls of `f`. */
function counted<A extends unknown[], R>(
  options: CacheOptions & { dir: string },
  f: (...args: A) => R,
): { c: Shared<A, R>; calls: A[] } {
  const calls: A[] = [];
  const c = cache({ ...options, backend: "shared" })((...args: A): R => {
    calls.push(args);
    return f(...args);
  });
  return { c, calls };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

Deno.test("cache() shared: counts hits and misses; cacheInfo() adds oversizeSkips", async () => {
  await withTempDir((dir) => {
    const { c, calls } = counted({ dir, name: "basic", maxSize: 32 }, (x: number) => x * x);
    assert.equal(c(3), 9);
    assert.equal(c(3), 9);
    assert.equal(c(4), 16);
    assert.equal(calls.length, 2);
    assert.deepEqual(c.cacheInfo(), {
      hits: 1,
      misses: 2,
      maxSize: 32,
      currentSize: 2,
      oversizeSkips: 0,
      bytes: 0, // small entries live in their slots (no chunk)
      maxBytes: 155648,
    });
    assert.deepEqual(Object.keys(c.cacheInfo()), [
      "hits",
      "misses",
      "maxSize",
      "currentSize",
      "oversizeSkips",
      "bytes",
      "maxBytes",
    ]);
    c.cacheClear();
    assert.deepEqual(c.cacheInfo(), {
      hits: 0,
      misses: 0,
      maxSize: 32,
      currentSize: 0,
      oversizeSkips: 0,
      bytes: 0,
      maxBytes: 155648,
    });
    c(3);
    assert.equal(calls.length, 3, "cleared entries are computed again");
    assert.equal(c.name, "", "an arrow function keeps its (empty) name");
  });
});

Deno.test("cache() shared: Backend.Shared and the string form are the same backend", async () => {
  await withTempDir((dir) => {
    const a = cache({ backend: Backend.Shared, dir, name: "same" })((x: number) => x + 1);
    let calls = 0;
    const b = cache({ backend: "shared", dir, name: "same" })((x: number) => {
      calls++;
      return x + 100;
    });
    assert.equal(a(1), 2);
    assert.equal(b(1), 2, "one file: b hits a's entry");
    assert.equal(calls, 0);
  });
});

Deno.test("cache() shared: evicts by SIEVE: a visited entry survives, the unvisited oldest goes", async () => {
  await withTempDir((dir) => {
    const { c, calls } = counted({ dir, name: "sieve", maxSize: 3 }, (x: number) => x);
    secondChance(c, calls);
  });
});

Deno.test("cache() shared: SIEVE hand resumes where it stopped", async () => {
  await withTempDir((dir) => {
    const { c, calls } = counted({ dir, name: "hand", maxSize: 4 }, (x: number) => x);
    handResumes(c, calls);
  });
});

Deno.test("cache() shared: only SIEVE, and maxSize is finite and at most 2^24", () => {
  const dir = "/nonexistent-warp-dir"; // never opened: every call below fails first
  assert.throws(
    () => cache({ backend: "shared", dir, strategy: "lru" })((x: number) => x),
    (e) => e instanceof TypeError && /SIEVE/.test(e.message) && /"lru"/.test(e.message),
  );
  for (const strategy of ["s3fifo", "wtinylfu", "arc"] as const) {
    assert.throws(
      () => cache({ backend: "shared", dir, strategy, name: strategy })((x: number) => x),
      (e) =>
        e instanceof TypeError && /SIEVE only/.test(e.message) &&
        e.message.includes(`received strategy "${strategy}"`),
    );
  }
  assert.throws(
    () => cache({ backend: "shared", dir, maxSize: Infinity }),
    (e) => e instanceof RangeError && /maxSize/.test(e.message) && /Infinity/.test(e.message),
  );
  assert.throws(
    () => cache({ backend: "shared", dir, maxSize: MAX_SHARED_ENTRIES + 1 }),
    (e) => e instanceof RangeError && /maxSize/.test(e.message) && /16777217/.test(e.message),
  );
  assert.throws(
    () => cache({ backend: "shared", dir, maxKeySize: 0 }),
    (e) => e instanceof RangeError && /maxKeySize/.test(e.message),
  );
  assert.throws(
    () => cache({ backend: "shared", dir, maxValueSize: 1.5 }),
    (e) => e instanceof RangeError && /maxValueSize/.test(e.message),
  );
});

Deno.test("cache() shared: ttl with an injected clock; hits do not extend it", async () => {
  await withTempDir((dir) => {
    let now = 1000;
    const { c, calls } = counted(
      { dir, name: "ttl-clock", ttl: 100, clock: () => now },
      (x: number) => x * 2,
    );
    c(1);
    now = 1099;
    c(1);
    assert.equal(calls.length, 1, "fresh at age 99");
    now = 1100;
    c(1);
    assert.equal(calls.length, 2, "expired at age 100");
    assert.deepEqual(c.cacheInfo(), {
      hits: 1,
      misses: 2,
      maxSize: 128,
      currentSize: 1,
      oversizeSkips: 0,
      bytes: 0, // small entries live in their slots (no chunk)
      maxBytes: 622592,
    });
    now = 1150;
    c(1); // hit at age 50
    now = 1200;
    c(1); // expired: inserted at 1100, the hit did not extend it
    assert.equal(calls.length, 3);
  });
});

Deno.test("cache() shared: ttl with real time", async () => {
  await withTempDir(async (dir) => {
    const { c, calls } = counted({ dir, name: "ttl-real", ttl: 40 }, (x: number) => x);
    c(1);
    c(1);
    assert.equal(calls.length, 1);
    await sleep(80);
    c(1);
    assert.equal(calls.length, 2, "expired after 80 ms");
    assert.equal(c.cacheInfo().hits, 1);
  });
});

Deno.test("cache() shared: ttl belongs to the handle, not to the file", async () => {
  await withTempDir((dir) => {
    let now = 1000;
    const clock = (): number => now;
    const short = counted({ dir, name: "ttl-handle", ttl: 10, clock }, (x: number) => x);
    const long = counted({ dir, name: "ttl-handle", ttl: 1000, clock }, (x: number) => x);
    const none = counted({ dir, name: "ttl-handle", clock }, (x: number) => x);
    short.c(1);
    now = 1500;
    none.c(1);
    long.c(1);
    assert.equal(none.calls.length + long.calls.length, 0, "fresh for ttl 1000 and no ttl");
    short.c(1);
    assert.equal(short.calls.length, 2, "expired for ttl 10");

    // An entry written by a handle without ttl still carries its insertion time.
    none.c(2);
    now = 1600;
    long.c(2);
    assert.equal(long.calls.length, 0, "fresh at age 100 for ttl 1000");
    now = 2600;
    long.c(2);
    assert.equal(long.calls.length, 1, "expired at age 1000");
  });
});

Deno.test("cache() shared: entries written without ttl are fresh for a handle with ttl (real time)", async () => {
  await withTempDir((dir) => {
    const none = counted({ dir, name: "ttl-mixed" }, (x: number) => x);
    const withTtl = counted({ dir, name: "ttl-mixed", ttl: 60_000 }, (x: number) => x);
    none.c(1);
    none.c(2);
    withTtl.c(1);
    withTtl.c(2);
    assert.equal(withTtl.calls.length, 0, "just written: fresh");
    assert.equal(withTtl.c.cacheInfo().currentSize, 2);
  });
});

Deno.test("cache() shared: reopening with other parameters while in use adopts the file's", async (t) => {
  // A file that no one has open is recreated instead: tests/shared_store_test.ts.
  await withTempDir(async (dir) => {
    const base = { dir, name: "params", maxSize: 8, maxKeySize: 64, maxValueSize: 256 };
    const first = counted(base, (x: number) => `v${x}`);
    first.c(1);
    first.c(2);
    const path = `${dir}/${sharedFileName("params")}`;
    const size = Deno.statSync(path).size;

    const variants: [string, Partial<typeof base>][] = [
      ["maxKeySize", { maxKeySize: 128 }],
      ["maxValueSize", { maxValueSize: 512 }],
      ["maxSize", { maxSize: 16 }],
      ["all back to the first", {}],
    ];
    const original = console.warn;
    for (const [label, change] of variants) {
      await t.step(label, () => {
        const warned: string[] = [];
        console.warn = (msg: string): void => void warned.push(msg);
        let other: ReturnType<typeof counted<[number], string>>;
        try {
          other = counted({ ...base, ...change }, (x: number) => `w${x}`);
        } finally {
          console.warn = original;
        }
        assert.equal(warned.length, label === "all back to the first" ? 0 : 1, warned.join());
        assert.equal(other.c.cacheInfo().maxSize, 8, "the file's maxSize");
        assert.equal(other.c(1), "v1", "the first cache's entries are shared");
        assert.equal(other.calls.length, 0);
        assert.equal(Deno.statSync(path).size, size, "not recreated");
      });
    }
    assert.equal(first.c(1), "v1");
    assert.equal(first.c(3), "v3");
  });
});

Deno.test("cache() shared: oversize keys and values are not stored but returned and counted", async () => {
  await withTempDir((dir) => {
    const { c, calls } = counted(
      { dir, name: "oversize", maxSize: 8, maxKeySize: 32, maxValueSize: 64 },
      (_k: string, size: number) => "v".repeat(size),
    );
    const longKey = "k".repeat(100);
    assert.equal(c(longKey, 1), "v");
    assert.equal(c(longKey, 1), "v");
    assert.equal(calls.length, 2, "a key over maxKeySize is never stored");
    assert.equal(c("a", 500), "v".repeat(500));
    assert.equal(c("a", 500), "v".repeat(500));
    assert.equal(calls.length, 4, "a value over maxValueSize is never stored");
    assert.equal(c("b", 10), "v".repeat(10));
    assert.equal(c("b", 10), "v".repeat(10));
    assert.equal(calls.length, 5, "a small entry is stored");
    assert.deepEqual(c.cacheInfo(), {
      hits: 1,
      misses: 5,
      maxSize: 8,
      currentSize: 1,
      oversizeSkips: 4,
      bytes: 0, // small entries live in their slots (no chunk)
      maxBytes: 2048,
    });
    c.cacheClear();
    assert.deepEqual(c.cacheInfo(), {
      hits: 0,
      misses: 0,
      maxSize: 8,
      currentSize: 0,
      oversizeSkips: 0,
      bytes: 0,
      maxBytes: 2048,
    });
  });
});

Deno.test("cache() shared: an oversize async result resolves and is counted, not stored", async () => {
  await withTempDir(async (dir) => {
    const { c, calls } = counted(
      { dir, name: "oversize-async", maxValueSize: 16 },
      (n: number) => Promise.resolve("x".repeat(n)),
    );
    assert.equal(await c(100), "x".repeat(100));
    assert.equal(await c(100), "x".repeat(100));
    assert.equal(calls.length, 2);
    assert.equal(c.cacheInfo().oversizeSkips, 2);
    assert.equal(c.cacheInfo().currentSize, 0);
  });
});

Deno.test("cache() shared: every fast-path and structured value round-trips", async () => {
  await withTempDir((dir) => {
    const values = samples();
    const { c, calls } = counted(
      { dir, name: "types", maxSize: 256, maxValueSize: SAMPLES_MAX_VALUE_SIZE },
      (i: number) => values[i]![1],
    );
    for (let i = 0; i < values.length; i++) {
      const [label, expected] = values[i]!;
      assert.ok(isDeepStrictEqual(c(i), expected), `${label}, miss`);
      const hit = c(i);
      assert.ok(isDeepStrictEqual(hit, expected), `${label}: ${Deno.inspect(hit)}`);
      if (typeof expected === "object" && expected !== null) {
        assert.notEqual(hit, expected, `${label} is a copy`);
      }
    }
    assert.equal(calls.length, values.length);
    assert.equal(c.cacheInfo().oversizeSkips, 0);
    // Type-distinct values stay distinct.
    assert.ok(Object.is(c(values.findIndex(([l]) => l === "-0")), -0));
    assert.equal(c(values.findIndex(([l]) => l === "lone high surrogate")), "\ud800");
  });
});

Deno.test("cache() shared: returned values are copies", async () => {
  await withTempDir((dir) => {
    const original = { list: [1, 2], map: new Map([["a", 1]]) };
    const { c } = counted({ dir, name: "copies" }, (_k: number) => original);
    const first = c(1);
    assert.equal(first, original, "the miss returns the function's own value");
    original.list.push(3); // changing the original after the call changes nothing
    const hit = c(1);
    assert.deepEqual(hit, { list: [1, 2], map: new Map([["a", 1]]) });
    hit.list.push(99);
    hit.map.set("b", 2);
    const again = c(1);
    assert.notEqual(again, hit);
    assert.deepEqual(again, { list: [1, 2], map: new Map([["a", 1]]) });
    const bytes = counted({ dir, name: "copies-bytes" }, (_k: number) => new Uint8Array([1, 2]));
    bytes.c(1);
    const b = bytes.c(1);
    b[0] = 42;
    assert.deepEqual(bytes.c(1), new Uint8Array([1, 2]));
  });
});

Deno.test("cache() shared: async results", async (t) => {
  await withTempDir(async (dir) => {
    await t.step("a hit returns a Promise of a copy of the resolved value", async () => {
      const { c, calls } = counted(
        { dir, name: "async-hit" },
        async (x: number) => {
          await sleep(1);
          return { x };
        },
      );
      const first = c(1);
      assert.ok(first instanceof Promise);
      assert.deepEqual(await first, { x: 1 });
      const hit = c(1);
      assert.ok(hit instanceof Promise, "a hit returns a Promise");
      assert.deepEqual(await hit, { x: 1 });
      assert.notEqual(await c(1), await c(1));
      assert.equal(calls.length, 1);
      assert.equal(c.cacheInfo().hits, 3);
    });

    await t.step("concurrent calls in a process share one computation (hits)", async () => {
      let release!: () => void;
      const gate = new Promise<void>((r) => release = r);
      const { c, calls } = counted({ dir, name: "async-flight" }, async (x: number) => {
        await gate;
        return x * 10;
      });
      const p1 = c(1);
      const p2 = c(1);
      const p3 = c(2);
      release();
      assert.deepEqual(await Promise.all([p1, p2, p3]), [10, 10, 20]);
      assert.equal(calls.length, 2);
      assert.deepEqual(c.cacheInfo(), {
        hits: 1,
        misses: 2,
        maxSize: 128,
        currentSize: 2,
        oversizeSkips: 0,
        bytes: 0, // small entries live in their slots (no chunk)
        maxBytes: 622592,
      });
    });

    await t.step("a rejection is shared by the waiters and never cached", async () => {
      let fail = true;
      const err = new Error("boom");
      const { c, calls } = counted({ dir, name: "async-reject" }, async (x: number) => {
        await sleep(1);
        if (fail) throw err;
        return x;
      });
      const p1 = c(1);
      const p2 = c(1);
      await assert.rejects(p1, (e) => e === err);
      await assert.rejects(p2, (e) => e === err);
      assert.equal(calls.length, 1);
      assert.equal(c.cacheInfo().currentSize, 0);
      fail = false;
      assert.equal(await c(1), 1, "the next call computes again");
      assert.equal(calls.length, 2);
      assert.equal(await c(1), 1);
      assert.equal(calls.length, 2);
    });

    await t.step("cacheClear() while pending stores nothing from the old call", async () => {
      let release!: () => void;
      const gate = new Promise<void>((r) => release = r);
      const { c, calls } = counted({ dir, name: "async-clear" }, async (x: number) => {
        await gate;
        return x;
      });
      const p = c(1);
      c.cacheClear();
      release();
      assert.equal(await p, 1);
      assert.equal(c.cacheInfo().currentSize, 0);
      assert.equal(await c(1), 1);
      assert.equal(calls.length, 2);
    });

    await t.step("a thrown exception is never cached and rethrown as is", () => {
      const err = new Error("sync boom");
      const { c, calls } = counted({ dir, name: "sync-throw" }, (_x: number): number => {
        throw err;
      });
      assert.throws(() => c(1), (e) => e === err);
      assert.throws(() => c(1), (e) => e === err);
      assert.equal(calls.length, 2);
      assert.equal(c.cacheInfo().currentSize, 0);
    });
  });
});

Deno.test("cache() shared: identity-keyed arguments are a TypeError naming position and type", async () => {
  await withTempDir((dir) => {
    class Point {
      constructor(public x: number) {}
    }
    const { c, calls } = counted({ dir, name: "identity" }, (..._args: unknown[]) => 1);
    const cases: [unknown[], RegExp][] = [
      [[new Point(1)], /argument 0 \(a Point\)/],
      [[1, function helper(): void {}], /argument 1 \(function helper\)/],
      [[1, 2, Symbol("tag")], /argument 2 \(Symbol\(tag\)\)/],
      [[new Map([[1, 2]])], /argument 0 \(a Map\)/],
      [[[1, [new Point(2)]]], /argument 0 \(a Point\)/],
      [[{ nested: new Set([1]) }], /argument 0 \(a Set\)/],
    ];
    for (const [args, message] of cases) {
      assert.throws(
        () => c(...args),
        (e) => e instanceof TypeError && message.test(e.message) && /shared/.test(e.message),
        `${Deno.inspect(args)} should throw ${message}`,
      );
    }
    assert.equal(calls.length, 0, "the function is never called");
    assert.deepEqual(c.cacheInfo(), {
      hits: 0,
      misses: 0,
      maxSize: 128,
      currentSize: 0,
      oversizeSkips: 0,
      bytes: 0,
      maxBytes: 622592,
    });
    // Value-keyed arguments work: primitives, arrays, plain objects, Date, bytes.
    c(1, "a", [2], { b: 3 }, new Date(0), new Uint8Array([4]), 5n);
    c(1, "a", [2], { b: 3 }, new Date(0), new Uint8Array([4]), 5n);
    assert.equal(calls.length, 1);
  });
});

Deno.test("cache() shared: an unserializable result is a TypeError naming the function; nothing is stored", async () => {
  await withTempDir((dir) => {
    class Account {
      balance = 1;
    }
    const results: [unknown, RegExp][] = [
      [() => 1, /function/],
      [new Account(), /Account/],
      [{ nested: [Symbol("s")] }, /symbol at value\.nested\[0\]/],
    ];
    for (const [i, [result, what]] of results.entries()) {
      let calls = 0;
      const c = cache({ backend: "shared", dir, name: `unser-${i}` })(
        function makeThing(_k: number): unknown {
          calls++;
          return result;
        },
      );
      for (let round = 0; round < 2; round++) {
        assert.throws(
          () => c(1),
          (e) =>
            e instanceof TypeError && /of makeThing in a shared cache/.test(e.message) &&
            what.test(e.message),
          `result ${Deno.inspect(result)}`,
        );
      }
      assert.equal(calls, 2, "nothing was stored: computed again");
      assert.equal(c.cacheInfo().currentSize, 0);
    }
  });
});

Deno.test("cache() shared: the file is 0600 and a created directory 0700", async () => {
  await withTempDir((dir) => {
    const cacheDir = `${dir}/nested`;
    const { c } = counted({ dir: cacheDir, name: "modes" }, (x: number) => x);
    c(1);
    assert.equal(Deno.statSync(cacheDir).mode! & 0o777, 0o700);
    const path = `${cacheDir}/${sharedFileName("modes")}`;
    assert.equal(Deno.statSync(path).mode! & 0o777, 0o600);
    assert.equal(Deno.lstatSync(path).isFile, true);
  });
});

Deno.test({
  name: "cache() shared: the README's flags and -A use one default directory, without a prompt",
  ignore: (await Deno.permissions.query({ name: "run" })).state !== "granted" ||
    Deno.build.os !== "linux",
  fn: async () => {
    const name = `warp-test-flags-${Deno.pid}-${crypto.randomUUID()}`;
    const script = new URL("./fixtures/default_dir_child.ts", import.meta.url).pathname;
    const child = async (flags: string[]) => {
      const o = await new Deno.Command(Deno.execPath(), {
        args: ["run", ...flags, "--quiet", script, name],
        env: { NO_COLOR: "1", WARP_CACHE_ENGINE: "native" },
        stdin: "null",
        stdout: "piped",
        stderr: "piped",
      }).output();
      const stdout = new TextDecoder().decode(o.stdout).trim();
      assert.ok(o.success, new TextDecoder().decode(o.stderr) + stdout);
      return JSON.parse(stdout.split("\n").at(-1)!);
    };
    const uid = Deno.uid();
    try {
      // The README's flags ("Install"), with no terminal: nothing may prompt.
      const narrow = await child(["--allow-ffi", "--allow-env", "--allow-read"]);
      const all = await child(["-A"]);
      assert.equal(narrow.dir, `/dev/shm/warp_cache-${uid}`);
      assert.equal(all.dir, narrow.dir);
      assert.deepEqual([narrow.value, narrow.hits, narrow.misses], [10, 0, 1]);
      assert.deepEqual([all.value, all.hits], [10, 1], "-A hits the entry of the narrow run");
    } finally {
      for (const dir of [`/dev/shm/warp_cache-${uid}`, "/dev/shm/warp_cache"]) {
        try {
          Deno.removeSync(`${dir}/${sharedFileName(name)}`);
        } catch {
          // not created there
        }
      }
    }
  },
});

Deno.test("cache() shared: the default directory is per user and 0700", () => {
  const name = `warp-test-default-dir-${Deno.pid}-${crypto.randomUUID()}`;
  const dir = defaultSharedDir();
  if (Deno.build.os === "linux") assert.equal(dir, `/dev/shm/warp_cache-${Deno.uid()}`);
  const path = `${dir}/${sharedFileName(name)}`;
  try {
    const c = cache({ backend: "shared", name, maxSize: 2 })((x: number) => x + 1);
    assert.equal(c(1), 2);
    assert.equal(c(1), 2);
    assert.equal(c.cacheInfo().hits, 1);
    assert.equal(Deno.statSync(dir).mode! & 0o777, 0o700);
    assert.equal(Deno.statSync(path).mode! & 0o777, 0o600);
  } finally {
    Deno.removeSync(path); // our file only; the directory may hold other caches
  }
});

Deno.test("cache() shared: a planted symlink is refused or replaced, never followed", async (t) => {
  await withTempDir(async (dir) => {
    const cacheDir = `${dir}/cache`;
    Deno.mkdirSync(cacheDir, { mode: 0o700 });
    const path = `${cacheDir}/${sharedFileName("planted")}`;

    /** Opens and uses the cache; returns the error, if any. */
    const attempt = (): unknown => {
      try {
        const { c, calls } = counted({ dir: cacheDir, name: "planted" }, (x: number) => x * 3);
        assert.equal(c(2), 6);
        assert.equal(c(2), 6);
        assert.equal(calls.length, 1);
        return undefined;
      } catch (e) {
        return e;
      }
    };
    const checkOutcome = (error: unknown): void => {
      if (error === undefined) {
        // Replaced: the name is now a regular file of ours.
        assert.equal(Deno.lstatSync(path).isFile, true);
      } else {
        assert.ok(error instanceof Error, String(error));
        assert.match(error.message, /symbolic link/);
        assert.equal(Deno.lstatSync(path).isSymlink, true, "the link itself is left alone");
      }
    };

    await t.step("to an existing file: its content is unchanged", () => {
      const target = `${dir}/precious.txt`;
      const content = "precious content\n".repeat(100);
      Deno.writeTextFileSync(target, content, { mode: 0o600 });
      Deno.symlinkSync(target, path);
      checkOutcome(attempt());
      assert.equal(Deno.readTextFileSync(target), content);
      assert.equal(Deno.statSync(target).size, content.length);
      Deno.removeSync(path);
    });

    await t.step("dangling: the target is never created", () => {
      const target = `${dir}/never-created`;
      Deno.symlinkSync(target, path);
      checkOutcome(attempt());
      assert.throws(() => Deno.lstatSync(target), Deno.errors.NotFound);
      Deno.removeSync(path);
    });
  });
});

Deno.test("cache() shared: a garbage file at the path is recreated", async (t) => {
  await withTempDir(async (dir) => {
    const path = `${dir}/${sharedFileName("garbage")}`;
    const opts = { dir, name: "garbage", maxSize: 8 };
    // The size of a good file with these parameters, from a first cache.
    counted(opts, (x: number) => x).c(1);
    const good = Deno.readFileSync(path);
    const random = (n: number): Uint8Array => {
      const out = new Uint8Array(n);
      for (let i = 0; i < n; i += 65536) crypto.getRandomValues(out.subarray(i, i + 65536));
      return out;
    };
    // Each case writes a new file (a new inode) under the name: handles opened before keep
    // their own mapping, and no mapping is truncated under this process.
    const plant = (bytes: Uint8Array): void => {
      Deno.writeFileSync(`${path}.new`, bytes, { mode: 0o600 });
      Deno.renameSync(`${path}.new`, path);
    };
    // [label, bytes, whether the file must be recreated (else it is repaired in place)]
    const cases: [string, () => Uint8Array, boolean][] = [
      ["empty", () => new Uint8Array(0), true],
      ["short garbage", () => random(1000), true],
      ["garbage of the right size", () => random(good.length), true],
      ["wrong magic, good rest", () => {
        const bytes = good.slice();
        bytes[0] = 0;
        return bytes;
      }, true],
      ["right identity line, garbage after it", () => {
        const bytes = random(good.length);
        bytes.set(good.subarray(0, SHM_HEADER.seq)); // the identity line ends at the seqlock's
        return bytes;
      }, false],
      ["good header, garbage table and slots", () => {
        const bytes = random(good.length);
        bytes.set(good.subarray(0, HEADER_SIZE));
        return bytes;
      }, false],
    ];
    for (const [label, make, recreated] of cases) {
      await t.step(label, () => {
        plant(make());
        const planted = Deno.statSync(path).ino;
        const { c, calls } = counted(opts, (x: number) => ({ x, y: [x, x] }));
        for (let round = 0; round < 2; round++) {
          for (let k = 0; k < 6; k++) assert.deepEqual(c(k), { x: k, y: [k, k] });
        }
        assert.equal(Deno.statSync(path).size, good.length);
        assert.equal(Deno.statSync(path).mode! & 0o777, 0o600);
        if (recreated) {
          assert.notEqual(Deno.statSync(path).ino, planted, "a new file");
          assert.equal(calls.length, 6);
          assert.deepEqual(c.cacheInfo(), {
            hits: 6,
            misses: 6,
            maxSize: 8,
            currentSize: 6,
            oversizeSkips: 0,
            bytes: 0, // small entries live in their slots (no chunk)
            maxBytes: 38912,
          });
        } else {
          assert.ok(calls.length >= 6 && calls.length <= 12, `${calls.length} calls`);
          assert.ok(c.cacheInfo().currentSize <= 8);
        }
      });
    }
  });
});

Deno.test("cache() shared method: keys on this unless a key option is given", async () => {
  const dir = await Deno.makeTempDir({ prefix: "warp-shared-method-" });
  try {
    class Repo {
      calls = 0;
      @cache({ backend: "shared", dir, name: "method-no-key" })
      plain(id: number): number {
        return id;
      }
      @cache({ backend: "shared", dir, name: "method-keyed", key: (id: number) => id })
      keyed(id: number): string {
        this.calls++;
        return `row ${id}`;
      }
    }
    const a = new Repo();
    const b = new Repo();
    assert.throws(
      () => a.plain(1),
      (e: unknown) =>
        e instanceof TypeError && /Cannot use this \(a Repo\)/.test(e.message) &&
        /key` option/.test(e.message),
    );
    assert.equal(a.keyed(7), "row 7");
    assert.equal(b.keyed(7), "row 7");
    assert.equal(a.calls + b.calls, 1, "the second instance hit the first one's entry");
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test("cache() shared: maxBytes bounds the bytes of keys and values, and cacheInfo() reports them", async () => {
  await withTempDir((dir) => {
    // 16 chunks of 256 bytes: 3 results of about 1,000 bytes (5 chunks each), not 4.
    const { c, calls } = counted(
      { dir, name: "budget", maxSize: 100, maxBytes: 4096 },
      (x: number) => `${x}`.repeat(1000),
    );
    for (const x of [1, 2, 3, 4]) assert.equal(c(x), `${x}`.repeat(1000));
    const info = c.cacheInfo();
    assert.equal(info.maxBytes, 4096);
    assert.equal(info.currentSize, 3);
    assert.equal(info.bytes, 3 * 5 * 256);
    assert.equal(c(1), "1".repeat(1000), "the oldest was evicted for bytes: computed again");
    assert.equal(calls.length, 5);
    // A result larger than the whole budget is returned, not stored, and counted: 1,000
    // bytes fit maxValueSize but take 5 chunks with the key, over the 4 of the budget.
    const { c: big } = counted(
      { dir, name: "budget-big", maxBytes: 1024, maxValueSize: 1024 },
      (x: number) => "b".repeat(x),
    );
    assert.equal(big(1000), "b".repeat(1000));
    assert.deepEqual([big.cacheInfo().oversizeSkips, big.cacheInfo().currentSize], [1, 0]);
    assert.equal(big(500), "b".repeat(500));
    assert.equal(big.cacheInfo().currentSize, 1);
  });
});
