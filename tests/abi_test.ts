// The facts that cross the FFI (src/native/_abi.ts, generated from rust/src/abi.rs): that
// TypeScript keeps no copy of its own, that Strategy has the library's policy numbers, and that
// "no TTL" is one sentinel, NO_TTL, for both stores. Whether _abi.ts is current is the crate's
// test `abi::tests::generated_file_is_current` (`cargo test`; `deno task test` runs it first).
import assert from "node:assert/strict";
import * as abi from "../src/native/_abi.ts";
import {
  EXPIRED_BASE,
  LIBRARY_TIME,
  NO_TTL,
  POLICY,
  SET,
  SHARED_MAGIC,
  Status,
  UNBOUNDED_CAPACITY,
} from "../src/native/_abi.ts";
import { loadNative } from "../src/native/ffi.ts";
import { TAGGED_ENVELOPE } from "../src/store/_tag_envelope.ts";
import { Strategy } from "../src/options/options.ts";

const root = new URL("../", import.meta.url);
const lib = loadNative();
const native = lib !== null;
const shared = native && lib.warp_shm_open !== null;
const encoder = new TextEncoder();

/** Every `.ts` file of the package, its tests, benches and scripts (paths from the root). */
async function sourceFiles(): Promise<string[]> {
  const out: string[] = ["mod.ts"];
  async function walk(dir: string): Promise<void> {
    for await (const e of Deno.readDir(new URL(dir, root))) {
      const path = `${dir}${e.name}`;
      if (e.isDirectory && e.name !== "node_modules" && e.name !== ".out") await walk(`${path}/`);
      else if (e.isFile && e.name.endsWith(".ts")) out.push(path);
    }
  }
  for (const dir of ["src/", "tests/", "bench/", "scripts/"]) await walk(dir);
  return out;
}

Deno.test("_abi.ts: no other TypeScript file declares a fact of its own", async () => {
  const names = Object.keys(abi);
  assert.ok(names.length >= 30, `facts: ${names.join(", ")}`);
  const declaration = new RegExp(`\\b(?:const|let|var)\\s+(${names.join("|")})\\s*[=:]`);
  const copies: string[] = [];
  for (const path of await sourceFiles()) {
    if (path === "src/native/_abi.ts") continue;
    const text = await Deno.readTextFile(new URL(path, root));
    for (const [i, line] of text.split("\n").entries()) {
      const m = declaration.exec(line);
      if (m) copies.push(`${path}:${i + 1}: ${m[1]}`);
    }
  }
  assert.deepEqual(copies, [], "import these from src/native/_abi.ts");
});

Deno.test("_abi.ts: a fact written as a literal on a hot path is the generated one", async () => {
  // `-1 /* abi: Status.Miss */`: the literal before each marker must be the fact's value; a
  // `const:` marker names a constant of the package's own formats.
  const marked = /(-?(?:0x[\da-f]+|\d+)|NaN|-?Infinity)\s*\/\*\s*(abi|const):\s*([\w.]+)\s*\*\//gi;
  const own: Record<string, unknown> = { TAGGED_ENVELOPE };
  const found: string[] = [];
  for (const path of await sourceFiles()) {
    if (!path.startsWith("src/")) continue;
    const text = await Deno.readTextFile(new URL(path, root));
    for (const m of text.matchAll(marked)) {
      const [literal, kind, name] = [m[1]!, m[2]!, m[3]!];
      const value = name.split(".").reduce<unknown>(
        (o, k) => (o as Record<string, unknown> | undefined)?.[k],
        kind === "abi" ? abi : own,
      );
      assert.equal(typeof value, "number", `${path}: ${name} is not a numeric ${kind} constant`);
      assert.ok(Object.is(Number(literal), value), `${path}: ${literal} is not ${name} (${value})`);
      found.push(`${path}: ${name}`);
    }
  }
  assert.deepEqual(found.sort(), [
    "src/store/native_store.ts: LIBRARY_TIME",
    "src/store/native_store.ts: NO_TTL",
    "src/store/native_store.ts: Status.Miss",
    "src/store/shared_store.ts: LIBRARY_TIME",
    "src/store/shared_store.ts: TAGGED_ENVELOPE",
  ]);
});

Deno.test("_abi.ts: says it is generated, and how to regenerate it", async () => {
  const text = await Deno.readTextFile(new URL("src/native/_abi.ts", root));
  assert.match(text, /^\/\/ Generated from rust\/src\/abi\.rs by `deno task abi`: do not edit/);
  assert.match(text, /abi::tests::generated_file_is_current/);
  const config = JSON.parse(await Deno.readTextFile(new URL("deno.json", root)));
  assert.match(config.tasks.abi, /UPDATE_ABI=1 cargo test .*abi::tests::generated_file_is_current/);
  assert.equal(SHARED_MAGIC.length, 8);
});

Deno.test("Strategy numbers are the library's Policy numbers (POLICY)", () => {
  const strategies = Object.fromEntries(
    Object.entries(Strategy).filter(([, v]) => typeof v === "number"),
  );
  assert.deepEqual(strategies, { ...POLICY });
});

Deno.test({
  name: "NO_TTL: the memory store's one 'no TTL', for the store and for an entry",
  ignore: !native,
  fn(): void {
    const k = encoder.encode("k");
    const j = encoder.encode("j");
    // A store TTL of 10 ms: NO_TTL for the entry means the store's.
    const h = lib!.warp_mem_new(4, 10, POLICY.Sieve, 0)!;
    try {
      const slot = lib!.warp_mem_set(h, k, 1, 0, NO_TTL);
      assert.ok(slot >= 0);
      assert.equal(lib!.warp_mem_get(h, k, 1, 9), slot);
      assert.equal(lib!.warp_mem_get(h, k, 1, 10), EXPIRED_BASE - slot);
      const own = lib!.warp_mem_set(h, j, 1, 0, 100);
      assert.equal(lib!.warp_mem_get(h, j, 1, 50), own, "an entry's own TTL replaces the store's");
      for (const bad of [0, -1, -Infinity]) {
        assert.equal(lib!.warp_mem_set(h, k, 1, 0, bad), Status.InvalidArgument, `ttl ${bad}`);
      }
    } finally {
      lib!.warp_mem_free(h);
    }
    // NO_TTL for the store: entries never expire.
    const none = lib!.warp_mem_new(UNBOUNDED_CAPACITY, NO_TTL, POLICY.Sieve, 0)!;
    try {
      const slot = lib!.warp_mem_set(none, k, 1, 0, NO_TTL);
      assert.equal(lib!.warp_mem_get(none, k, 1, 1e12), slot);
      assert.equal(lib!.warp_mem_get(none, k, 1, LIBRARY_TIME), slot);
    } finally {
      lib!.warp_mem_free(none);
    }
    for (const bad of [0, -1]) {
      assert.equal(lib!.warp_mem_new(4, bad, POLICY.Sieve, 0), null, `store ttl ${bad}`);
    }
  },
});

Deno.test({
  name: "NO_TTL: the shared store's one 'no TTL', for the handle and for an entry",
  ignore: !shared,
  async fn(): Promise<void> {
    const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp_abi_" });
    const open = (file: string, ttl: number): Deno.PointerValue => {
      const path = encoder.encode(`${dir}/${file}`);
      return lib!.warp_shm_open!(path, path.length, 8, 16, 16, 0n, ttl, 0);
    };
    const k = encoder.encode("k");
    const j = encoder.encode("j");
    const v = encoder.encode("v");
    const out = new Uint8Array(16);
    try {
      const h = open("ttl.warp", 10);
      assert.notEqual(h, null);
      try {
        assert.equal(lib!.warp_shm_set!(h, k, 1, v, 1, 0, NO_TTL), SET.stored);
        assert.equal(lib!.warp_shm_get!(h, k, 1, out, 16, 9), 1);
        assert.equal(lib!.warp_shm_get!(h, k, 1, out, 16, 10), Status.Miss, "the handle's TTL");
        assert.equal(lib!.warp_shm_set!(h, j, 1, v, 1, 0, 100), SET.stored);
        assert.equal(lib!.warp_shm_get!(h, j, 1, out, 16, 50), 1, "the entry's own TTL");
        for (const bad of [0, -1, -Infinity]) {
          assert.equal(lib!.warp_shm_set!(h, k, 1, v, 1, 0, bad), Status.InvalidArgument, `${bad}`);
        }
      } finally {
        lib!.warp_shm_close!(h);
      }
      const none = open("none.warp", NO_TTL);
      assert.notEqual(none, null);
      try {
        assert.equal(lib!.warp_shm_set!(none, k, 1, v, 1, 0, NO_TTL), SET.stored);
        assert.equal(lib!.warp_shm_get!(none, k, 1, out, 16, 1e12), 1, "no TTL: never expires");
      } finally {
        lib!.warp_shm_close!(none);
      }
      for (const bad of [0, -1]) assert.equal(open("bad.warp", bad), null, `handle ttl ${bad}`);
    } finally {
      await Deno.remove(dir, { recursive: true });
    }
  },
});
