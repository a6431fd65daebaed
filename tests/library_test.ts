// The native library's lookup, verification and download (src/native/_library.ts), piece by
// piece; tests/install_test.ts plays the whole first run.
import assert from "node:assert/strict";
import {
  artifactFileName,
  candidates,
  checkCandidate,
  download,
  pinnedHash,
  sha256Hex,
  userLibraryDir,
} from "../src/native/_library.ts";
import { ARTIFACTS, VERSION } from "../src/native/_artifacts.ts";
import { artifactsModule } from "../scripts/release.ts";

const root = new URL("../", import.meta.url).pathname;

function withEnv(vars: Record<string, string | undefined>, body: () => void): void {
  const saved = Object.fromEntries(Object.keys(vars).map((k) => [k, Deno.env.get(k)]));
  try {
    for (const [k, v] of Object.entries(vars)) {
      v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
    }
    body();
  } finally {
    for (const [k, v] of Object.entries(saved)) {
      v === undefined ? Deno.env.delete(k) : Deno.env.set(k, v);
    }
  }
}

Deno.test("artifacts: one version for the package and its pinned hashes", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${root}deno.json`));
  assert.equal(VERSION, config.version);
  for (const [target, a] of Object.entries(ARTIFACTS)) {
    assert.equal(
      a.file,
      artifactFileName(
        target,
        target.includes("windows") ? "windows" : target.includes("apple") ? "darwin" : "linux",
      ),
    );
    assert.match(a.sha256, /^[0-9a-f]{64}$/);
  }
  // The generated module round-trips what it is given.
  const text = artifactsModule("9.9.9", { t: { file: "f", sha256: "a".repeat(64), size: 1 } });
  assert.match(text, /export const VERSION = "9\.9\.9";/);
  assert.match(text, /"t": \{\s+file: "f",\s+sha256: "a{64}",\s+size: 1,\s+\}/);
});

Deno.test("artifactFileName() names each platform's artifact", () => {
  assert.equal(
    artifactFileName("x86_64-unknown-linux-gnu", "linux"),
    "libwarp_cache-x86_64-unknown-linux-gnu.so",
  );
  assert.equal(
    artifactFileName("aarch64-apple-darwin", "darwin"),
    "libwarp_cache-aarch64-apple-darwin.dylib",
  );
  assert.equal(
    artifactFileName("x86_64-pc-windows-msvc", "windows"),
    "warp_cache-x86_64-pc-windows-msvc.dll",
  );
});

Deno.test("userLibraryDir() follows WARP_CACHE_DIR, then XDG_CACHE_HOME, then HOME", () => {
  const tail = `${VERSION}/${Deno.build.target}`;
  withEnv({ WARP_CACHE_DIR: "/x/y/", XDG_CACHE_HOME: "/xdg", HOME: "/home/u" }, () => {
    assert.equal(userLibraryDir(), `/x/y/${tail}`);
  });
  if (Deno.build.os === "linux") {
    withEnv({ WARP_CACHE_DIR: undefined, XDG_CACHE_HOME: "/xdg", HOME: "/home/u" }, () => {
      assert.equal(userLibraryDir(), `/xdg/warp_cache/${tail}`);
    });
    withEnv({ WARP_CACHE_DIR: undefined, XDG_CACHE_HOME: undefined, HOME: "/home/u" }, () => {
      assert.equal(userLibraryDir(), `/home/u/.cache/warp_cache/${tail}`);
    });
    withEnv({ WARP_CACHE_DIR: undefined, XDG_CACHE_HOME: undefined, HOME: undefined }, () => {
      assert.equal(userLibraryDir(), undefined);
    });
  }
});

Deno.test("candidates(): WARP_CACHE_LIB alone when set, else the checkout build first", () => {
  withEnv({ WARP_CACHE_LIB: "/nowhere/lib.so" }, () => {
    assert.deepEqual(candidates(), [{
      path: "/nowhere/lib.so",
      source: "WARP_CACHE_LIB",
      sha256: undefined,
    }]);
  });
  withEnv({ WARP_CACHE_LIB: undefined, WARP_CACHE_DIR: "/c" }, () => {
    const list = candidates();
    assert.deepEqual(list.map((c) => c.source), [
      "cargo build output",
      "beside the module",
      "beside the main module",
      "library cache",
    ]);
    assert.equal(list[0]!.sha256, undefined, "a developer build is not pinned");
    for (const c of list.slice(1)) assert.equal(c.sha256, pinnedHash());
    assert.equal(list[3]!.path, `/c/${VERSION}/${Deno.build.target}/${artifactFileName()}`);
  });
});

Deno.test("checkCandidate() refuses a file whose hash differs, and says so", async () => {
  const dir = await Deno.makeTempDir();
  try {
    await Deno.writeFile(`${dir}/lib`, new Uint8Array([1, 2, 3]));
    const good = sha256Hex(new Uint8Array([1, 2, 3]));
    assert.equal(checkCandidate({ path: `${dir}/lib`, source: "t", sha256: good }), null);
    assert.match(
      checkCandidate({ path: `${dir}/lib`, source: "t", sha256: "0".repeat(64) })!,
      new RegExp(`SHA-256 ${good}, expected 0{64}: not loaded`),
    );
    assert.equal(checkCandidate({ path: `${dir}/none`, source: "t", sha256: good }), "not found");
    assert.equal(checkCandidate({ path: `${dir}/lib`, source: "t", sha256: undefined }), null);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
});

Deno.test({
  name: "download() verifies, bounds size and time, and keeps nothing on failure",
  ignore: pinnedHash() === undefined,
  fn: async (t) => {
    const artifact = artifactFileName();
    const good = new Uint8Array(ARTIFACTS[Deno.build.target]!.size);
    let mode = "ok";
    let body: Uint8Array<ArrayBuffer> = new Uint8Array(0);
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen(): void {} }, async () => {
      if (mode === "404") return new Response("no", { status: 404 });
      if (mode === "slow") await new Promise((r) => setTimeout(r, 2_000));
      if (mode === "chunked") {
        return new Response(
          new ReadableStream({
            start(c): void {
              for (let i = 0; i < 10; i++) c.enqueue(new Uint8Array(1000));
              c.close();
            },
          }),
        );
      }
      return new Response(body);
    });
    const base = `http://127.0.0.1:${server.addr.port}/dist/`;
    const dir = await Deno.makeTempDir();
    const files = () => [...Deno.readDirSync(dir)].map((e) => e.name);
    try {
      await t.step("a wrong hash: both hashes and the URL named, nothing kept", async () => {
        body = good; // zeros: not the pinned bytes
        await assert.rejects(() => download(base, dir), (e: Error) => {
          assert.match(e.message, new RegExp(`${base}${artifact.replace(/\./g, "\\.")}`));
          assert.match(
            e.message,
            new RegExp(`its SHA-256 is ${sha256Hex(good)}, expected ${pinnedHash()}`),
          );
          return true;
        });
        assert.deepEqual(files(), []);
      });
      await t.step("HTTP errors name the status", async () => {
        mode = "404";
        await assert.rejects(() => download(base, dir), /HTTP 404/);
      });
      await t.step("a declared size over the bound is refused before reading", async () => {
        mode = "ok";
        body = new Uint8Array(5000);
        await assert.rejects(
          () => download(base, dir, { maxBytes: 4000 }),
          /5000 bytes is more than 4000/,
        );
      });
      await t.step("a streamed body over the bound is cut off", async () => {
        mode = "chunked";
        await assert.rejects(() => download(base, dir, { maxBytes: 4000 }), /more than 4000 bytes/);
      });
      await t.step("a server that does not answer in time is abandoned", async () => {
        mode = "slow";
        await assert.rejects(
          () => download(base, dir, { timeoutMs: 100 }),
          /Cannot download .* from http/,
        );
      });
      assert.deepEqual(files(), [], "no temporary file left by any failure");
    } finally {
      await server.shutdown();
      await Deno.remove(dir, { recursive: true });
    }
  },
});
