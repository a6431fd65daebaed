/**
 * `deno task test`: every test, in three runs.
 *
 * 0. `cargo test` of `abi::tests::generated_file_is_current`: fails when
 *    `src/native/_abi.ts` is stale (a fact changed in `rust/src/abi.rs` without `deno task
 *    abi`), before any run reads a wrong fact;
 * 1. the whole suite (unit, doc examples, cross-process, fault injection) with the native
 *    engine (`WARP_CACHE_ENGINE=native`), after an incremental `cargo build --release`;
 * 2. the memory suites again with the TypeScript engine (`WARP_CACHE_ENGINE=ts`): the same
 *    files, parameterised by the environment, not copied;
 * 3. the memory suite without `--allow-ffi` (nor `--allow-run`/`--allow-write`), where the
 *    library cannot load and the TypeScript store must take over silently.
 *
 * Prints a closing `N passed, N failed` line and exits non-zero when a run fails.
 *
 * @module
 */

import { build } from "./build.ts";

const root = new URL("../", import.meta.url).pathname;

/** The files whose behaviour must be the same on both engines. */
const MEMORY_SUITES = [
  "tests/cache_test.ts",
  "tests/call_patterns_test.ts",
  "tests/call_interplay_test.ts",
  "tests/entries_test.ts",
  "tests/registry_test.ts",
  "tests/metrics_test.ts",
  "tests/timeout_test.ts",
  "tests/liveness_test.ts",
  "tests/jitter_test.ts",
  "tests/stale_if_error_test.ts",
  "tests/tags_test.ts",
  "tests/remote_tags_test.ts",
  "tests/memory_budget_test.ts",
  "tests/context_test.ts",
  "tests/stale_test.ts",
  "tests/key_codec_test.ts",
  "tests/keys_model_test.ts",
  "tests/ts_store_test.ts",
  "tests/eviction_quality_test.ts",
  "tests/sieve_cache_test.ts",
  "tests/no_ffi_test.ts",
];

interface Run {
  label: string;
  args: string[];
  env: Record<string, string>;
}

const runs: Run[] = [
  {
    label: "native engine, whole suite",
    args: ["test", "-A", "--parallel", "--doc", "tests/", "src/", "mod.ts"],
    env: { WARP_CACHE_ENGINE: "native" },
  },
  {
    label: "TypeScript engine, memory suites",
    args: ["test", "-A", "--parallel", ...MEMORY_SUITES],
    env: { WARP_CACHE_ENGINE: "ts" },
  },
  {
    label: "no --allow-ffi, memory suite",
    args: ["test", "--allow-read", "--allow-env", "tests/cache_test.ts", "tests/no_ffi_test.ts"],
    env: { WARP_CACHE_ENGINE: "" },
  },
];

/** The crate's test that compares `src/native/_abi.ts` with what its facts give. */
export const ABI_CHECK = [
  "test",
  "--manifest-path",
  `${root}rust/Cargo.toml`,
  "--lib",
  "abi::tests::generated_file_is_current",
];

/** Runs {@linkcode ABI_CHECK}; resolves to whether `src/native/_abi.ts` is current. */
export async function abiCurrent(): Promise<boolean> {
  const status = await new Deno.Command("cargo", {
    args: ABI_CHECK,
    env: { UPDATE_ABI: "" },
    stdout: "inherit",
    stderr: "inherit",
  }).spawn().status;
  return status.success;
}

function stripAnsi(s: string): string {
  // deno-lint-ignore no-control-regex
  return s.replace(/\x1b\[[0-9;]*m/g, "");
}

if (import.meta.main) {
  console.log("=== src/native/_abi.ts against rust/src/abi.rs: cargo " + ABI_CHECK.join(" "));
  if (!(await abiCurrent())) {
    console.log(
      "\nsrc/native/_abi.ts is stale or the check failed: run `deno task abi`, see above",
    );
    Deno.exit(1);
  }
  await build();
  let passed = 0;
  let failed = 0;
  let ok = true;
  const extra = Deno.args;
  for (const run of runs) {
    console.log(`\n=== ${run.label}: deno ${run.args.join(" ")}`);
    const child = new Deno.Command(Deno.execPath(), {
      args: [...run.args, ...extra],
      cwd: root,
      env: { ...run.env, NO_COLOR: "1" },
      clearEnv: false,
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    const decoder = new TextDecoder();
    let tail = "";
    for await (const chunk of child.stdout) {
      const text = decoder.decode(chunk, { stream: true });
      await Deno.stdout.write(chunk);
      tail = (tail + text).slice(-4000);
    }
    const status = await child.status;
    const m = stripAnsi(tail).match(/(\d+) passed(?: \(\d+ steps?\))? \| (\d+) failed/);
    if (m) {
      passed += Number(m[1]);
      failed += Number(m[2]);
    }
    if (!status.success) ok = false;
  }
  console.log(`\n${passed} passed, ${failed} failed${ok ? "" : " (a run failed: see above)"}`);
  if (!ok || failed > 0) Deno.exit(1);
}
