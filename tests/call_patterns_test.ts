// cache() under adversarial call patterns: cached calls nested in user code that runs
// between a function's return and the store (getters, `then` lookups, Proxy traps, the
// value codec's walk), stack overflows at any statement of the call path, deep memoized
// recursion, default shared names, unknown options and bad clocks. Each test failed on the
// code before its fix (RELIABILITY.md, "Holes found and fixed"). Runs on both memory
// engines (`deno task test`); the shared cases run in the native run.
import assert from "node:assert/strict";
import { Backend, cache, type CachedFunction } from "../mod.ts";
import { memoryEngine } from "../src/store/engine.ts";
import { overflowSweep } from "./fixtures/overflow.ts";
import { FakeServer, fakeTier } from "./fixtures/fake_tier.ts";

const engine = memoryEngine();
const ffi = (await Deno.permissions.query({ name: "ffi" })).state === "granted";

async function withTempDir(body: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ prefix: "warp_patterns_" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

// A call of one, two or three number or string arguments is looked up in an array the cached
// function lends it and fills again on the next call (src/call/cache.ts, `lending`): what
// runs after the lookup (the computation, a later remote read's computation, an insert)
// must use the call's own arguments, not the array's.
Deno.test(`cache() a call of one, two or three arguments keeps its own arguments past later calls (${engine})`, async (t) => {
  await t.step("a memoized recursion of two arguments", () => {
    let computed = 0;
    const walk: CachedFunction<(n: number, tag: string) => string> = cache({ maxSize: 1000 })(
      (n: number, tag: string): string => {
        computed++;
        return n <= 0 ? tag : `${walk(n - 1, tag)},${n}`;
      },
    );
    assert.equal(walk(5, "a"), "a,1,2,3,4,5");
    assert.equal(computed, 6);
    assert.equal(walk(3, "a"), "a,1,2,3", "a hit, stored under its own key");
    assert.equal(walk(2, "b"), "b,1,2");
    assert.equal(computed, 9);
    for (let n = 0; n <= 5; n++) {
      assert.equal(
        walk(n, "a"),
        ["a", ...Array.from({ length: n }, (_, i) => i + 1)].join(","),
      );
    }
    assert.equal(computed, 9, "every level was stored under its own arguments");
    assert.deepEqual(walk.cacheInfo(), { hits: 7, misses: 9, maxSize: 1000, currentSize: 9 });
  });

  await t.step("one argument, and calls of another arity or type beside it", () => {
    const f = cache({ maxSize: 100 })((x: unknown) => `v${String(x)}`);
    assert.equal(f(1), "v1");
    assert.equal(f("1"), "v1");
    assert.equal((f as (...a: unknown[]) => string)(1, 2), "v1");
    assert.equal(f(true), "vtrue");
    assert.equal(f.cacheInfo().currentSize, 4, "1, '1', (1, 2) and true are four keys");
    assert.equal(f(1), "v1");
    assert.equal(f.cacheInfo().hits, 1);
  });

  await t.step("a memoized recursion of three arguments", () => {
    let computed = 0;
    const walk: CachedFunction<(n: number, tag: string, step: number) => string> = cache({
      maxSize: 1000,
    })((n: number, tag: string, step: number): string => {
      computed++;
      return n <= 0 ? tag : `${walk(n - step, tag, step)},${n}`;
    });
    assert.equal(walk(6, "a", 2), "a,2,4,6");
    assert.equal(computed, 4);
    assert.equal(walk(4, "a", 2), "a,2,4", "a hit, stored under its own key");
    assert.equal(walk(3, "b", 1), "b,1,2,3");
    assert.equal(computed, 8);
    assert.equal(walk(2, "b", 1), "b,1,2");
    assert.equal(walk(0, "a", 2), "a");
    assert.equal(computed, 8, "every level was stored under its own arguments");
    assert.deepEqual(walk.cacheInfo(), { hits: 3, misses: 8, maxSize: 1000, currentSize: 8 });
  });

  await t.step("three arguments, and calls of another arity or type beside them", () => {
    const f = cache({ maxSize: 100 })((x: unknown, y: unknown, z: unknown) =>
      `${String(x)}|${String(y)}|${String(z)}`
    );
    const loose = f as (...a: unknown[]) => string;
    const o = { o: 1 };
    assert.equal(f(1, 2, 3), "1|2|3");
    assert.equal(f(1, 2, "3"), "1|2|3");
    assert.equal(loose(1, 2), "1|2|undefined");
    assert.equal(loose(1, 2, 3, 4), "1|2|3");
    assert.equal(f(1, 2, o), "1|2|[object Object]");
    assert.equal(f(1, 2, true), "1|2|true");
    assert.equal(f.cacheInfo().currentSize, 6, "six keys: by arity and by type");
    assert.equal(f(1, 2, 3), "1|2|3");
    assert.equal(loose(1, 2, 3, 4), "1|2|3");
    assert.equal(f(1, 2, { o: 1 }), "1|2|[object Object]", "an object by value");
    assert.equal(f.cacheInfo().hits, 3);
    assert.equal(f(1, 2, o), "1|2|[object Object]");
    assert.equal(f.cacheInfo().hits, 4);
  });

  await t.step(
    "computations of three arguments that start after later calls (a remote read first)",
    async () => {
      const seen: string[] = [];
      const f = cache({ remote: fakeTier(new FakeServer()), name: `lent3-${crypto.randomUUID()}` })(
        async (a: number, b: string, c: number): Promise<string> => {
          seen.push(`${a}${b}${c}`);
          await null;
          return `${a}${b}${c}`;
        },
      );
      const all = await Promise.all([f(1, "x", 7), f(2, "y", 8), f(3, "z", 9)]);
      assert.deepEqual(all, ["1x7", "2y8", "3z9"]);
      assert.deepEqual(seen.sort(), ["1x7", "2y8", "3z9"]);
      assert.equal(await f(2, "y", 8), "2y8");
      assert.equal(await f(1, "x", 7), "1x7");
      assert.equal(seen.length, 3);
      f[Symbol.dispose]();
    },
  );

  await t.step(
    "computations that start after later calls (an async miss's remote read)",
    async () => {
      const seen: string[] = [];
      const f = cache({ remote: fakeTier(new FakeServer()), name: `lent-${crypto.randomUUID()}` })(
        async (a: number, b: string): Promise<string> => {
          seen.push(`${a}${b}`);
          await null;
          return `${a}${b}`;
        },
      );
      // Each miss reads the remote tier first and computes after the await, when the later
      // calls have filled the lent array with their own arguments.
      const all = await Promise.all([f(1, "x"), f(2, "y"), f(3, "z")]);
      assert.deepEqual(all, ["1x", "2y", "3z"]);
      assert.deepEqual(seen.sort(), ["1x", "2y", "3z"]);
      assert.equal(await f(2, "y"), "2y");
      assert.equal(await f(1, "x"), "1x");
      assert.equal(seen.length, 3);
      f[Symbol.dispose]();
    },
  );
});

Deno.test(`cache() nested misses in user code after fn returns keep their keys (${engine})`, async (t) => {
  await t.step("a `then` getter of the result calls a cached function", () => {
    const inner = cache({ maxSize: 1000 })((x: number) => x * 10);
    const f = cache({ maxSize: 1000 })((x: number) => ({
      x,
      get then(): undefined {
        inner(x + 1000); // a miss with another, longer-lived key
        return undefined;
      },
    }));
    const five = f(5);
    const nine = f(9);
    assert.equal(nine.x, 9, "f(9) must not return f(5)'s result");
    assert.equal(f(5), five);
    assert.equal(f(9), nine);
    assert.equal(inner(1005), 10050);
    assert.deepEqual(f.cacheInfo(), { hits: 2, misses: 2, maxSize: 1000, currentSize: 2 });
  });

  await t.step("a Proxy result whose trap calls a memoized helper is stored under its key", () => {
    const helper = cache({ maxSize: 1000 })((p: string) => p.length);
    const f = cache({ maxSize: 1000 })((x: number) =>
      new Proxy({ x }, {
        get(target, p): unknown {
          helper(`${String(p)}:${x}`);
          return Reflect.get(target, p);
        },
      })
    );
    const a = f(1);
    const b = f(2);
    assert.equal(a.x, 1);
    assert.equal(b.x, 2);
    assert.equal(f(1), a, "the entry is found again (it was stored under a garbage key)");
    assert.equal(f(2), b);
    assert.equal(f.cacheInfo().hits, 2);
  });

  await t.step("nested misses three deep inside getters and thenables", () => {
    const leaf = cache({ maxSize: 1000 })((s: string) => `leaf:${s}`);
    const mid = cache({ maxSize: 1000 })((n: number) => ({
      n,
      get then(): undefined {
        leaf(`mid-${n}-${"x".repeat(100)}`); // a long key: the buffer grows
        return undefined;
      },
    }));
    const top = cache({ maxSize: 1000 })((n: number) => ({
      n,
      get then(): undefined {
        mid(n + 1).n;
        mid(n + 2).n;
        return undefined;
      },
    }));
    for (let i = 0; i < 50; i++) assert.equal(top(i).n, i);
    for (let i = 0; i < 50; i++) assert.equal(top(i).n, i);
    for (let i = 1; i < 52; i++) assert.equal(mid(i).n, i);
    assert.equal(top.cacheInfo().misses, 50);
    assert.equal(top.cacheInfo().hits, 50);
  });

  await t.step("an async result whose `then` getter calls a cached function", async () => {
    const inner = cache({ maxSize: 100 })((x: number) => x + 1);
    const f = cache({ maxSize: 100 })((x: number) => {
      const p = Promise.resolve({ x });
      return {
        get then(): typeof p.then {
          inner(x * 1000);
          return p.then.bind(p);
        },
      };
    });
    assert.equal((await f(3)).x, 3);
    assert.equal((await f(4)).x, 4);
    assert.equal((await f(3)).x, 3);
    assert.equal(f.cacheInfo().hits, 1);
  });
});

Deno.test({
  name: "cache() shared: a getter walked by the value codec that calls a cached function",
  ignore: !ffi,
  fn: () =>
    withTempDir((dir) => {
      // The red team's case: after f(5), f(9) returned f(5)'s result.
      const inner = cache({ backend: "shared", dir, name: "inner" })((x: number) => x * 2);
      const f = cache({ backend: "shared", dir, name: "outer" })((x: number) => ({
        x,
        get plus4(): number {
          return inner(x + 4);
        },
      }));
      assert.deepEqual(f(5), { x: 5, plus4: 18 });
      assert.deepEqual(f(9), { x: 9, plus4: 26 });
      assert.deepEqual(f(5), { x: 5, plus4: 18 });
      assert.deepEqual(f(9), { x: 9, plus4: 26 });
      assert.equal(f.cacheInfo().hits, 2);
      // The JSON walk's state is per call: a getter nested two levels deep that encodes
      // another structured value on the way.
      const g = cache({ backend: "shared", dir, name: "g" })((x: number) => ({ x, list: [x, x] }));
      const h = cache({ backend: "shared", dir, name: "h" })((x: number) => ({
        a: {
          get b(): unknown {
            return g(x);
          },
        },
        c: [1, { d: x }],
      }));
      for (let i = 0; i < 20; i++) {
        assert.deepEqual(h(i), { a: { b: { x: i, list: [i, i] } }, c: [1, { d: i }] });
      }
      for (let i = 0; i < 20; i++) {
        assert.deepEqual(h(i), { a: { b: { x: i, list: [i, i] } }, c: [1, { d: i }] });
      }
      assert.equal(h.cacheInfo().hits, 20);
    }),
});

Deno.test(`cache() a stack overflow at any statement of the call path leaves no wrong value (${engine})`, () => {
  // Sweeps where the overflow strikes: the recursion starts at many stack offsets, so the
  // RangeError is thrown at a different call inside the cache's hit and miss paths each
  // time. Every value read back afterwards must be right, and nothing may hang.
  for (const strategy of ["sieve", "lru", "lfu"] as const) {
    const r = overflowSweep({ strategy, offsets: 24, keys: 97, maxSize: 32 });
    assert.equal(r.wrong, 0, `${strategy}: wrong values after overflows: ${r.firstWrong}`);
    assert.ok(r.overflows >= 24, `${strategy}: every run overflowed (${r.overflows})`);
    assert.ok(r.currentSize <= 32, `${strategy}: ${r.currentSize} entries for maxSize 32`);
  }
});

const run = (await Deno.permissions.query({ name: "run" })).state === "granted";

/** Runs `deno run -A --v8-flags=<flags> tests/fixtures/<fixture> ...args`; its JSON output. */
// deno-lint-ignore no-explicit-any
async function child(flags: string, fixture: string, args: string[] = []): Promise<any> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      `--v8-flags=${flags}`,
      new URL(`./fixtures/${fixture}`, import.meta.url).pathname,
      ...args,
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  assert.ok(out.success, `${fixture} failed`);
  return JSON.parse(new TextDecoder().decode(out.stdout));
}

Deno.test({
  name: `cache() a stack overflow swept with inlining off leaves no wrong value (${engine})`,
  ignore: !run,
  fn: async () => {
    // Without inlining every call of the path is a frame of its own, so the sweep reaches
    // calls that inlined code hides: this found the native engine's slot answering with an
    // evicted key's value (a throw between the native insert and the value store).
    const r = await child("--max-inlined-bytecode-size=0", "overflow_child.ts", ["sieve", "768"]);
    assert.equal(r.trials, 768);
    assert.ok(r.overflows >= 768);
    assert.equal(r.wrong, 0, `wrong values after overflows: ${r.firstWrong}`);
  },
});

Deno.test({
  name: `cache() a memoized recursion keeps most of the uncached depth (${engine})`,
  ignore: !run,
  fn: async () => {
    // Jitless, so that frame sizes are those of the interpreter on every run: with the JIT
    // the depth moves with tiering (a run here measured 0.23 to 0.45 of the uncached depth,
    // and more where the JIT inlines the wrapper into the function).
    const { uncached, cached } = await child("--jitless", "depth_child.ts");
    // Was 2,755 of 10,802 (0.26): a wrapper frame of 8 registers with a try/finally, a
    // rest array and `apply`; now one small frame (0.41).
    assert.ok(
      cached >= 0.38 * uncached,
      `memoized depth ${cached} < 0.38 of the uncached depth ${uncached}`,
    );
  },
});

Deno.test({
  name: "cache() shared default names tell apart closures, classes and factories",
  ignore: !ffi,
  fn: () =>
    withTempDir((dir) => {
      // Two classes with the same method body: different default names (the class and
      // its position are part of it), so each gets its own values.
      class UserRepo {
        kind = "user";
        @cache({ backend: "shared", dir, key: (id: number) => id })
        find(id: number): string {
          return `user:${id}`;
        }
      }
      class PostRepo {
        kind = "post";
        @cache({ backend: "shared", dir, key: (id: number) => id })
        find(id: number): string {
          return `post:${id}`;
        }
      }
      const users = new UserRepo();
      const posts = new PostRepo();
      assert.equal(users.find(1), "user:1");
      assert.equal(posts.find(1), "post:1", "posts(1) returned user:1");
      assert.equal(users.find(1), "user:1");
      const files = [...Deno.readDirSync(dir)].map((e) => e.name).sort();
      assert.equal(files.length, 2, files.join());
      assert.ok(files[0]!.startsWith("PostRepo.find-") && files[1]!.startsWith("UserRepo.find-"));

      // Closures of one factory decorate at one site with one source: the second is an
      // error asking for a name, never a silent share.
      const makeFetcher = (kind: string) =>
        cache({ backend: "shared", dir })((id: number) => `${kind}:${id}`);
      const userFetcher = makeFetcher("user");
      assert.throws(() => makeFetcher("post"), (e: unknown) => {
        assert.ok(e instanceof TypeError);
        assert.match(e.message, /default shared name .*give each a distinct name option/);
        return true;
      });
      assert.equal(userFetcher(1), "user:1");
      const mk = (mult: number) =>
        cache({ backend: Backend.Shared, dir })(function scale(x: number): number {
          return x * mult;
        });
      mk(2);
      assert.throws(() => mk(3), TypeError);
      // With a name each, they work side by side.
      const a = cache({ backend: "shared", dir, name: "fetch-user" })((id: number) => `u${id}`);
      const b = cache({ backend: "shared", dir, name: "fetch-post" })((id: number) => `p${id}`);
      assert.equal(a(1), "u1");
      assert.equal(b(1), "p1");
      // The same source decorated at two sites of this module: two caches, each named after
      // its own site (not the package's own frame in src/call/).
      const here1 = cache({ backend: "shared", dir })((x: number) => x * 7);
      const here2 = cache({ backend: "shared", dir })((x: number) => x * 7);
      assert.equal(here1(1), 7);
      assert.equal(here2(1), 7);
      assert.equal(here2.cacheInfo().misses, 1, "its own cache");
      // The same function decorated twice at one site shares its cache, as before.
      const same = (x: number): number => x + 1;
      const twice = [0, 1].map(() => cache({ backend: "shared", dir })(same));
      twice[0]!(1);
      twice[1]!(1);
      assert.equal(twice[1]!.cacheInfo().hits, 1);
    }),
});

Deno.test("cache() rejects unknown option names, naming them", () => {
  for (
    const [options, hint] of [
      [{ maxsize: 10 }, "maxSize"],
      [{ max_size: 10 }, "maxSize"],
      [{ TTL: 1 }, "ttl"],
      [{ maxAge: 1000 }, "ttl"],
      [{ Backend: "shared" }, "backend"],
      [{ max_bytes: 1 << 20 }, "maxBytes"],
      [{ frobnicate: true }, undefined],
    ] as const
  ) {
    assert.throws(
      () => cache(options as never),
      (e: unknown) => {
        assert.ok(e instanceof TypeError, String(e));
        assert.match(e.message, new RegExp(`unknown option "${Object.keys(options)[0]}"`));
        if (hint) assert.match(e.message, new RegExp(`did you mean ${hint}\\?`));
        else assert.doesNotMatch(e.message, /did you mean/);
        return true;
      },
    );
  }
});

Deno.test(`cache() a clock that returns no finite number is a TypeError at the call (${engine})`, () => {
  for (const bad of ["5", undefined, NaN, Infinity, null, 5n]) {
    const f = cache({ ttl: 10, clock: () => bad as unknown as number })((x: number) => x);
    assert.throws(() => f(1), (e: unknown) => {
      assert.ok(e instanceof TypeError, `${String(bad)}: ${e}`);
      assert.match(e.message, /clock must return a finite number of milliseconds: received/);
      return true;
    });
  }
  // A good clock still drives expiry the same way on both engines.
  let now = 0;
  const f = cache({ ttl: 10, clock: () => now })((x: number) => ({ x }));
  const first = f(1);
  now = 9;
  assert.equal(f(1), first);
  now = 10;
  assert.notEqual(f(1), first);
});
