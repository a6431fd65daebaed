/**
 * `deno task fuzz [seconds per target]`: replays the saved regressions, then runs each
 * cargo-fuzz target (rust/fuzz/fuzz_targets/) for a fixed time (default 60 s) with
 * libFuzzer, and prints the executions. Needs a nightly toolchain (`rustup toolchain
 * install nightly`) and `cargo install cargo-fuzz`. A crash, a panic or a hang (over
 * 5 s) fails the run; libFuzzer saves the input under rust/fuzz/artifacts/, which then
 * belongs in rust/fuzz/regressions/<target>/ with a regression test for the fix.
 *
 * @module
 */

const fuzzDir = new URL("../rust/fuzz/", import.meta.url).pathname;
const TARGETS = ["shm_file", "shm_ops", "shm_sizes"];
const seconds = Number(Deno.args[0] ?? 60);

async function cargo(args: string[]): Promise<{ ok: boolean; stderr: string }> {
  const child = new Deno.Command("cargo", {
    args: ["+nightly", "fuzz", ...args],
    cwd: fuzzDir,
    stdout: "inherit",
    stderr: "piped",
  }).spawn();
  let stderr = "";
  for await (const chunk of child.stderr.pipeThrough(new TextDecoderStream())) {
    stderr += chunk;
    await Deno.stderr.write(new TextEncoder().encode(chunk));
  }
  return { ok: (await child.status).success, stderr };
}

if (import.meta.main) {
  const build = await cargo(["build", "-O"]);
  if (!build.ok) {
    console.error(
      "cargo fuzz build failed: needs `rustup toolchain install nightly` and `cargo install cargo-fuzz`",
    );
    Deno.exit(1);
  }
  let failed = false;
  const lines: string[] = [];
  for (const target of TARGETS) {
    const regressions = `${fuzzDir}regressions/${target}`;
    // A target without saved regressions has no folder yet.
    const entries = (() => {
      try {
        return [...Deno.readDirSync(regressions)];
      } catch (e) {
        if (e instanceof Deno.errors.NotFound) return [];
        throw e;
      }
    })();
    const saved = entries.filter((e) => e.isFile).map((e) => `${regressions}/${e.name}`);
    if (saved.length) {
      const r = await cargo(["run", "-O", target, ...saved, "--", "-timeout=5"]);
      lines.push(`${target}: ${saved.length} regression inputs ${r.ok ? "pass" : "FAIL"}`);
      failed ||= !r.ok;
    }
    Deno.mkdirSync(`${fuzzDir}corpus/${target}`, { recursive: true });
    const r = await cargo([
      "run",
      "-O",
      target,
      "--",
      `-max_total_time=${seconds}`,
      "-timeout=5",
      "-rss_limit_mb=2048",
      "-print_final_stats=1",
    ]);
    const runs = r.stderr.match(/Done (\d+) runs in (\d+) second/);
    const execs = runs
      ? Number(runs[1])
      : Number(r.stderr.match(/stat::number_of_executed_units:\s*(\d+)/)?.[1] ?? 0);
    lines.push(`${target}: ${r.ok ? "ok" : "FAILED"}, ${execs} executions in ${seconds} s`);
    failed ||= !r.ok;
  }
  console.log(`\n${lines.join("\n")}`);
  if (failed) Deno.exit(1);
}
