// The native library's lookup, verification and download (src/native/_library.ts), piece by
// piece; tests/install_test.ts plays the whole first run.
import assert from "node:assert/strict";
import {
  artifactFileName,
  candidates,
  cargoFileName,
  checkCandidate,
  download,
  pinnedHash,
  sha256Hex,
  userLibraryDir,
} from "../src/native/_library.ts";
import { ARTIFACTS, VERSION } from "../src/native/_artifacts.ts";
import { artifactsModule } from "../scripts/release.ts";
import { nativeCopy } from "./fixtures/native_copy.ts";

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
    assert.equal(
      checkCandidate({ path: `${dir}/none`, source: "t", sha256: good }),
      "not found (No such file or directory)",
    );
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

// ---- Loading what was verified (RELIABILITY.md, "The loader verified one file and loaded
// another"). A child loads the library through a copy of src/native/ whose _artifacts.ts pins
// the hash of this checkout's build; the file beside that copy is what the child may load.

const run = (await Deno.permissions.query({ name: "run" })).state === "granted";
const libraryBuild = `${root}rust/target/release/${cargoFileName()}`;
/**
 * The child: loads the library through the copy of src/native/ beside it, and prints
 * whether it loaded, why not, and the inodes of the mapped `libwarp_cache` files (from
 * /proc/self/maps): which file was loaded.
 */
const LOAD_CHILD = `
import { loadNative, nativeLoadError, nativeLoadFailure } from "./src/native/ffi.ts";
let loaded = false;
let error = "";
try {
  loaded = loadNative() !== null;
  if (!loaded) error = nativeLoadError();
} catch (e) {
  error = e instanceof Error ? e.message : String(e);
}
const inodes = new Set();
for (const line of Deno.readTextFileSync("/proc/self/maps").split("\\n")) {
  if (!line.includes("libwarp_cache")) continue;
  const ino = Number(line.trim().split(/\\s+/)[4]);
  if (ino > 0) inodes.add(ino);
}
console.log(JSON.stringify({ loaded, error, failure: nativeLoadFailure(), inodes: [...inodes] }));
`;
const swapperScript = new URL("./fixtures/library_swapper.ts", import.meta.url).pathname;

/** What the child saw: whether the library loaded, why not, and the mapped inodes. */
interface LoadReport {
  loaded: boolean;
  error: string;
  failure: { path: string; reason: string } | null;
  inodes: number[];
}

/** A copy of src/native/ pinning `sha256` for this target, with the child as `main.ts` and
 * an empty `dist/` (mode 0755) where the library beside the module goes. */
async function nativeCopyFor(sha256: string, size: number): Promise<string> {
  const pkg = await nativeCopy({ sha256, size }, LOAD_CHILD, "warp_loader_copy_");
  await Deno.mkdir(`${pkg}/dist`);
  await Deno.chmod(`${pkg}/dist`, 0o755);
  return pkg;
}

async function loadChild(pkg: string, env: Record<string, string> = {}): Promise<LoadReport> {
  const o = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", `${pkg}/main.ts`],
    env: { NO_COLOR: "1", WARP_CACHE_LIB: "", WARP_CACHE_DIR: `${pkg}/no_cache`, ...env },
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(o.stdout).trim();
  assert.ok(o.success, new TextDecoder().decode(o.stderr) + stdout);
  return JSON.parse(stdout.split("\n").at(-1)!) as LoadReport;
}

Deno.test({
  name: "loadNative() loads the very bytes it verified while another process swaps the file",
  ignore: !run || Deno.build.os !== "linux",
  fn: async () => {
    const good = await Deno.readFile(libraryBuild);
    const pkg = await nativeCopyFor(sha256Hex(good), good.length);
    const store = `${pkg}/store`;
    await Deno.mkdir(store);
    await Deno.writeFile(`${store}/good.so`, good);
    // A library that loads and works like the good one, with another hash.
    const evil = new Uint8Array(good.length + 64);
    evil.set(good);
    await Deno.writeFile(`${store}/evil.so`, evil);
    const goodIno = Deno.statSync(`${store}/good.so`).ino!;
    const evilIno = Deno.statSync(`${store}/evil.so`).ino!;
    const target = `${pkg}/dist/${artifactFileName()}`;
    Deno.linkSync(`${store}/good.so`, target);
    const swapper = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", swapperScript, target, `${store}/good.so`, `${store}/evil.so`],
      stdout: "piped",
      stderr: "null",
    }).spawn();
    const reader = swapper.stdout.getReader();
    try {
      await reader.read(); // "swapping"
      let evilLoads = 0;
      let goodLoads = 0;
      let refused = 0;
      const starts = 30;
      for (let i = 0; i < starts; i++) {
        const r = await loadChild(pkg);
        if (r.inodes.includes(evilIno)) {
          evilLoads++;
        } else if (r.loaded && r.inodes.includes(goodIno)) {
          goodLoads++;
        } else {
          refused++;
          assert.equal(r.loaded, false);
          assert.match(r.error, /SHA-256 [0-9a-f]{64}, expected [0-9a-f]{64}: not loaded/);
        }
      }
      assert.equal(
        evilLoads,
        0,
        `${evilLoads} of ${starts} starts loaded the tampered library (${goodLoads} the verified one, ${refused} refused it)`,
      );
      assert.ok(goodLoads > 0, `no start loaded the verified library (${refused} refused)`);
    } finally {
      swapper.kill("SIGKILL");
      reader.releaseLock();
      await swapper.stdout.cancel();
      await swapper.status;
      await Deno.remove(pkg, { recursive: true });
    }
  },
});

Deno.test({
  name: "loadNative() refuses a library whose directory or file other users may write",
  ignore: !run || Deno.build.os !== "linux",
  fn: async (t) => {
    const good = await Deno.readFile(libraryBuild);
    const pkg = await nativeCopyFor(sha256Hex(good), good.length);
    const dist = `${pkg}/dist`;
    const lib = `${dist}/${artifactFileName()}`;
    await Deno.writeFile(lib, good);
    await Deno.chmod(lib, 0o644);
    const root0 = Deno.uid() === 0;
    try {
      await t.step("a private directory: loaded", async () => {
        const r = await loadChild(pkg);
        assert.equal(r.loaded, true, r.error);
      });
      for (const mode of [0o777, 0o775, 0o757]) {
        await t.step(`a directory of mode ${mode.toString(8)}: refused, naming it`, async () => {
          await Deno.chmod(dist, mode);
          const r = await loadChild(pkg);
          await Deno.chmod(dist, 0o755);
          assert.equal(r.loaded, false);
          assert.deepEqual(r.inodes, []);
          assert.ok(r.error.includes(`its directory ${dist}`), r.error);
          assert.match(r.error, new RegExp(`mode ${mode.toString(8)}, owner uid \\d+`));
        });
      }
      await t.step("a sticky world-writable directory (like /tmp), our file: loaded", async () => {
        await Deno.chmod(dist, 0o1777);
        const r = await loadChild(pkg);
        await Deno.chmod(dist, 0o755);
        assert.equal(r.loaded, true, r.error);
      });
      await t.step("a file others may write: refused", async () => {
        await Deno.chmod(lib, 0o666);
        const r = await loadChild(pkg);
        await Deno.chmod(lib, 0o644);
        assert.equal(r.loaded, false);
        assert.match(r.error, /other users may write to it \(mode 666, owner uid \d+\)/);
      });
      if (root0) {
        await t.step("a directory or a file of another user: refused", async () => {
          await Deno.chown(dist, 4242, 4242);
          const r = await loadChild(pkg);
          await Deno.chown(dist, 0, 0);
          assert.equal(r.loaded, false);
          assert.ok(r.error.includes(`its directory ${dist}`), r.error);
          assert.match(r.error, /owner uid 4242/);
          await Deno.chown(lib, 4242, 4242);
          const f = await loadChild(pkg);
          await Deno.chown(lib, 0, 0);
          assert.equal(f.loaded, false);
          assert.match(f.error, /owned by another user \(uid 4242\)/);
        });
      }
      await t.step(
        "WARP_CACHE_LIB in a world-writable directory: a configuration error",
        async () => {
          await Deno.chmod(dist, 0o777);
          const r = await loadChild(pkg, { WARP_CACHE_LIB: lib });
          await Deno.chmod(dist, 0o755);
          assert.equal(r.loaded, false);
          assert.equal(r.failure?.path, lib);
          assert.ok(r.failure?.reason.includes(`its directory ${dist}`), r.failure?.reason);
        },
      );
    } finally {
      await Deno.remove(pkg, { recursive: true });
    }
  },
});

Deno.test({
  name: "install --help prints the usage and installs nothing; an unknown option exits 2",
  ignore: !run,
  fn: async () => {
    const cacheDir = await Deno.makeTempDir({ prefix: "warp_install_help_" });
    try {
      const install = (...args: string[]) =>
        new Deno.Command(Deno.execPath(), {
          args: ["run", "-A", "--quiet", `${root}src/native/install.ts`, ...args],
          env: {
            NO_COLOR: "1",
            WARP_CACHE_LIB: "",
            WARP_CACHE_DIR: cacheDir,
            WARP_CACHE_BASE_URL: "http://127.0.0.1:1/",
          },
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).output();
      const help = await install("--help");
      const out = new TextDecoder().decode(help.stdout);
      assert.equal(help.code, 0, new TextDecoder().decode(help.stderr));
      assert.match(out, /^Usage: deno run -A jsr:@warp\/cache\/install \[--check\]/);
      assert.match(out, /--check/);
      assert.doesNotMatch(out, /libwarp_cache/, "printed a library path: it installed");
      assert.deepEqual([...Deno.readDirSync(cacheDir)], []);
      const bad = await install("--bogus");
      assert.equal(bad.code, 2);
      assert.match(new TextDecoder().decode(bad.stderr), /--bogus[\s\S]*Usage:/);
      assert.equal(new TextDecoder().decode(bad.stdout), "");
    } finally {
      await Deno.remove(cacheDir, { recursive: true });
    }
  },
});
