// A JSR user's first run against a local server, in a copy of src/native/ whose
// _artifacts.ts pins this checkout's build (the layout of tests/library_test.ts): what the
// download leaves in the library cache must be what the next load accepts, and nothing
// prompts.
import assert from "node:assert/strict";
import { cargoFileName, sha256Hex } from "../src/native/_library.ts";
import { nativeCopy } from "./fixtures/native_copy.ts";

const root = new URL("../", import.meta.url).pathname;
const run = (await Deno.permissions.query({ name: "run" })).state === "granted";
const libraryBuild = `${root}rust/target/release/${cargoFileName()}`;

const CHILD = `
import { prepareNative, loadNative, nativeLoadError } from "./src/native/ffi.ts";
await prepareNative();
let loaded = false;
let error = "";
try {
  loaded = loadNative() !== null;
  if (!loaded) error = nativeLoadError();
} catch (e) {
  error = e instanceof Error ? e.message : String(e);
}
console.log(JSON.stringify({ loaded, error }));
`;

/** A copy of src/native/ pinning the hash of `good`, with the child as `main.ts`. */
function nativeCopyOf(good: Uint8Array): Promise<string> {
  return nativeCopy({ sha256: sha256Hex(good), size: good.length }, CHILD, "warp_install_faults_");
}

Deno.test({
  name: "install: a library cache made under umask 002 is loaded, not refused and fetched again",
  ignore: !run || Deno.build.os !== "linux",
  fn: async () => {
    const good = await Deno.readFile(libraryBuild);
    const pkg = await nativeCopyOf(good);
    let requests = 0;
    const server = Deno.serve({ hostname: "127.0.0.1", port: 0, onListen(): void {} }, () => {
      requests++;
      return new Response(good);
    });
    try {
      const child = async (): Promise<{ loaded: boolean; error: string }> => {
        // Ubuntu's and Debian's default umask for a user with a private group.
        const o = await new Deno.Command("sh", {
          args: [
            "-c",
            `umask 002; exec "$0" run -A --quiet "$1"`,
            Deno.execPath(),
            `${pkg}/main.ts`,
          ],
          env: {
            NO_COLOR: "1",
            WARP_CACHE_LIB: "",
            WARP_CACHE_DIR: `${pkg}/cache`,
            WARP_CACHE_BASE_URL: `http://127.0.0.1:${server.addr.port}/dist/`,
          },
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).output();
        const stdout = new TextDecoder().decode(o.stdout).trim();
        assert.ok(o.success, new TextDecoder().decode(o.stderr) + stdout);
        return JSON.parse(stdout.split("\n").at(-1)!);
      };
      const first = await child();
      assert.equal(
        first.loaded,
        true,
        `the first run did not load what it installed: ${first.error}`,
      );
      const second = await child();
      assert.equal(second.loaded, true, second.error);
      assert.equal(requests, 1, "the second run downloaded the library again");
    } finally {
      await server.shutdown();
      await Deno.remove(pkg, { recursive: true });
    }
  },
});

/** Whether `script` (util-linux) can give a child a terminal here. */
function hasScript(): boolean {
  try {
    return new Deno.Command("script", { args: ["--version"], stdout: "null", stderr: "null" })
      .outputSync().success;
  } catch {
    return false;
  }
}

Deno.test({
  name: "install: a download redirected to a host without --allow-net fails without a prompt",
  ignore: !run || Deno.build.os !== "linux" || !hasScript(),
  fn: async () => {
    const good = await Deno.readFile(libraryBuild);
    const pkg = await nativeCopyOf(good);
    // The mirror answers with a redirect to another host name (as a release host sends
    // downloads to its storage host): `localhost` is another host for --allow-net.
    const server: Deno.HttpServer<Deno.NetAddr> = Deno.serve({
      hostname: "127.0.0.1",
      port: 0,
      onListen(): void {},
    }, (req): Response => {
      const url = new URL(req.url);
      if (url.hostname === "127.0.0.1") {
        return new Response(null, {
          status: 302,
          headers: { location: `http://localhost:${server.addr.port}${url.pathname}` },
        });
      }
      return new Response(good);
    });
    const port = server.addr.port;
    try {
      // A terminal, as an interactive `deno run` has: a permission prompt would show there.
      const inner = [
        Deno.execPath(),
        "run",
        "--allow-ffi",
        "--allow-env",
        "--allow-read",
        "--allow-write",
        `--allow-net=127.0.0.1:${port}`,
        "--quiet",
        `${pkg}/main.ts`,
      ].map((a) => `'${a}'`).join(" ");
      const proc = new Deno.Command("script", {
        args: ["-qfc", inner, "/dev/null"],
        env: {
          NO_COLOR: "1",
          WARP_CACHE_LIB: "",
          WARP_CACHE_DIR: `${pkg}/cache`,
          WARP_CACHE_BASE_URL: `http://127.0.0.1:${port}/dist/`,
        },
        stdin: "piped",
        stdout: "piped",
        stderr: "piped",
      }).spawn();
      let text = "";
      const reader = proc.stdout.getReader();
      const decoder = new TextDecoder();
      // Until the child prints its result, or a prompt (which would wait for an answer).
      const bound = setTimeout(() => proc.kill("SIGKILL"), 20_000);
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        text += decoder.decode(value);
        if (/"loaded"/.test(text) || /Deno requests|Allow\?/.test(text)) break;
      }
      clearTimeout(bound);
      reader.releaseLock();
      try {
        proc.kill("SIGKILL");
      } catch {
        // exited
      }
      await proc.stdin.close().catch(() => {});
      await proc.stdout.cancel();
      await proc.stderr.cancel();
      await proc.status;
      assert.doesNotMatch(text, /Deno requests/, `the first run prompted:\n${text}`);
      assert.match(text, /"loaded"/, text);
    } finally {
      await server.shutdown();
      await Deno.remove(pkg, { recursive: true });
    }
  },
});
