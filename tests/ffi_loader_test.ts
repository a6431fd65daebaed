// The loader of src/native/ffi.ts when WARP_CACHE_LIB is set (README "Native library"): that
// path is the only library tried, and one that does not load is a configuration error,
// never silently replaced by the release build. Each case runs in a child process, since
// the library is loaded once per process.
import assert from "node:assert/strict";
import { type LibraryOpener, openLibrary } from "../src/native/ffi.ts";
import { ABI_VERSION } from "../src/native/_abi.ts";
import { cargoFileName } from "../src/native/_library.ts";

const root = new URL("../", import.meta.url).pathname;
const script = new URL("./fixtures/loader_script.ts", import.meta.url).pathname;
const releaseBuild = new URL(`../rust/target/release/${cargoFileName()}`, import.meta.url)
  .pathname;

interface Step {
  backend: string;
  value?: number;
  error?: string;
  name?: string;
}

interface Run {
  code: number;
  stderr: string;
  engine: string;
  results: Step[];
}

/** Runs the loader script with `env` on the given steps, in a temporary directory. */
async function runSteps(env: Record<string, string>, steps: string[]): Promise<Run> {
  const dir = await Deno.makeTempDir({ prefix: "warp_loader_" });
  try {
    const out = await new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", script, JSON.stringify({ steps, dir })],
      cwd: root,
      env: { NO_COLOR: "1", ...env },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout).trim();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, `loader_script.ts exited with ${out.code}:\n${stderr}\n${stdout}`);
    const report = JSON.parse(stdout.split("\n").at(-1) ?? "") as Omit<Run, "code" | "stderr">;
    return { code: out.code, stderr, ...report };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

/** Lines of `stderr` that name WARP_CACHE_LIB. */
function warnings(stderr: string): string[] {
  return stderr.split("\n").filter((l) => l.includes("WARP_CACHE_LIB"));
}

/** A path that does not exist, and a file that is not a library. */
async function badLibraries(): Promise<{ missing: string; notALibrary: string }> {
  const dir = await Deno.makeTempDir({ prefix: "warp_badlib_" });
  const notALibrary = `${dir}/libwarp_cache.so`;
  await Deno.writeTextFile(notALibrary, "not a shared object\n".repeat(256));
  return { missing: `${dir}/missing/libwarp_cache.so`, notALibrary };
}

Deno.test("loadNative() with WARP_CACHE_LIB: that path only, never the release build", async (t) => {
  // The release build exists, so any use of it would pass unnoticed.
  assert.ok(Deno.statSync(releaseBuild).isFile, `${releaseBuild} exists (deno task build)`);
  const { missing, notALibrary } = await badLibraries();
  try {
    for (
      const [what, path, reason] of [
        ["a missing file", missing, /No such file or directory/],
        ["a file that is not a library", notALibrary, /invalid ELF header|file too short/],
      ] as const
    ) {
      await t.step(
        `${what}: the memory backend warns once and uses the TypeScript store`,
        async () => {
          const run = await runSteps(
            { WARP_CACHE_LIB: path, WARP_CACHE_ENGINE: "" },
            ["memory", "memory", "memory"],
          );
          assert.equal(run.engine, "ts", "the release build was not loaded instead");
          assert.deepEqual(run.results.map((r) => r.value), [2, 2, 2]);
          const warned = warnings(run.stderr);
          assert.equal(warned.length, 1, `one warning for three caches:\n${run.stderr}`);
          assert.ok(warned[0]!.includes(`WARP_CACHE_LIB=${path}`), warned[0]);
          assert.match(warned[0]!, reason);
          assert.match(warned[0]!, /TypeScript store/);
        },
      );

      await t.step(
        `${what}: the shared backend throws, naming it, with the hint once`,
        async () => {
          const run = await runSteps(
            { WARP_CACHE_LIB: path, WARP_CACHE_ENGINE: "" },
            ["shared", "memory", "shared"],
          );
          const [first, memory, again] = run.results;
          for (const shared of [first!, again!]) {
            assert.equal(shared.name, "Error");
            assert.ok(shared.error!.includes(`WARP_CACHE_LIB=${path}`), shared.error);
            assert.match(shared.error!, reason);
            assert.equal(shared.error!.split("deno task build").length - 1, 1, shared.error);
          }
          assert.equal(memory!.value, 2);
          assert.equal(warnings(run.stderr).length, 1, run.stderr);
        },
      );

      await t.step(`${what}: WARP_CACHE_ENGINE=native makes it an Error`, async () => {
        const run = await runSteps(
          { WARP_CACHE_LIB: path, WARP_CACHE_ENGINE: "native" },
          ["memory"],
        );
        const [memory] = run.results;
        assert.equal(memory!.name, "Error");
        assert.ok(memory!.error!.includes("WARP_CACHE_ENGINE=native"), memory!.error);
        assert.ok(memory!.error!.includes(`WARP_CACHE_LIB=${path}`), memory!.error);
        assert.match(memory!.error!, reason);
        assert.equal(warnings(run.stderr).length, 0, run.stderr);
      });
    }

    await t.step("the release build still loads when WARP_CACHE_LIB is unset", async () => {
      const run = await runSteps(
        { WARP_CACHE_LIB: "", WARP_CACHE_ENGINE: "" },
        ["memory", "shared"],
      );
      assert.equal(run.engine, "native");
      assert.deepEqual(run.results.map((r) => r.value), [2, 2]);
      assert.equal(run.stderr, "");
    });
  } finally {
    await Deno.remove(missing.replace(/\/missing\/.*$/, ""), { recursive: true });
  }
});

Deno.test("loadNative() without a library: silent memory fallback, shared error with the fix once", async () => {
  // A copy of the module without rust/target: the release build is missing.
  const copy = await Deno.makeTempDir({ prefix: "warp_nolib_" });
  try {
    for (const f of ["mod.ts", "deno.json", "deno.lock"]) {
      await Deno.copyFile(`${root}${f}`, `${copy}/${f}`);
    }
    const cp = await new Deno.Command("cp", { args: ["-r", `${root}src`, `${copy}/src`] })
      .output();
    assert.ok(cp.success);
    await Deno.mkdir(`${copy}/tests/fixtures`, { recursive: true });
    await Deno.copyFile(script, `${copy}/tests/fixtures/loader_script.ts`);
    const out = await new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--quiet",
        `${copy}/tests/fixtures/loader_script.ts`,
        JSON.stringify({ steps: ["memory", "shared"], dir: copy }),
      ],
      cwd: copy,
      env: {
        NO_COLOR: "1",
        WARP_CACHE_LIB: "",
        WARP_CACHE_ENGINE: "",
        // Nothing in the library cache, and a download that fails at once (no network).
        WARP_CACHE_DIR: `${copy}/library_cache`,
        WARP_CACHE_BASE_URL: "http://127.0.0.1:1/",
      },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const stdout = new TextDecoder().decode(out.stdout).trim();
    const stderr = new TextDecoder().decode(out.stderr);
    assert.equal(out.code, 0, `${stderr}\n${stdout}`);
    const run = JSON.parse(stdout.split("\n").at(-1) ?? "") as Omit<Run, "code" | "stderr">;
    assert.equal(run.engine, "ts");
    assert.equal(stderr, "", "a library that was never built is no warning");
    const [memory, shared] = run.results;
    assert.equal(memory!.value, 2);
    assert.equal(shared!.name, "Error");
    assert.ok(shared!.error!.includes(`${copy}/rust/target/release/`), shared!.error);
    assert.match(shared!.error!, /not found/);
    assert.match(shared!.error!, /download: Cannot download .* from http:\/\/127\.0\.0\.1:1\//);
    assert.equal(
      shared!.error!.split("deno run -A jsr:@warp/cache/install").length - 1,
      1,
      shared!.error,
    );
  } finally {
    await Deno.remove(copy, { recursive: true });
  }
});

Deno.test("WARP_CACHE_ENGINE of another value than ts or native: ignored, with one warning naming it", async () => {
  const run = await runSteps({ WARP_CACHE_ENGINE: "TS" }, ["memory", "memory"]);
  const lines = run.stderr.split("\n").filter((l) => l.includes("WARP_CACHE_ENGINE"));
  assert.deepEqual(lines, [
    '@warp/cache: WARP_CACHE_ENGINE="TS" is neither "ts" nor "native": ignored',
  ]);
  assert.equal(run.engine, "native", "the default engine (the library loads here)");
  const quiet = await runSteps({ WARP_CACHE_ENGINE: "" }, ["memory"]);
  assert.equal(quiet.stderr.includes("WARP_CACHE_ENGINE"), false, "empty: unset, no warning");
});

Deno.test("openLibrary() refuses a library of another ABI version, saying to rebuild", () => {
  let closed = 0;
  const stale: LibraryOpener = () =>
    ({
      symbols: { warp_abi_version: () => ABI_VERSION + 1 },
      close: () => void closed++,
    }) as unknown as ReturnType<LibraryOpener>;
  const r = openLibrary("/x/libwarp_cache.so", stale);
  assert.ok("reason" in r);
  assert.equal(r.version, ABI_VERSION + 1);
  assert.equal(
    r.reason,
    `it reports ABI version ${
      ABI_VERSION + 1
    }, expected ${ABI_VERSION}; rebuild it with \`deno task build\``,
  );
  assert.equal(closed, 1, "the stale library is closed");
});
