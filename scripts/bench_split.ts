/**
 * `deno task bench:split [<rev>]`: the call path of this checkout against that of an
 * earlier commit (default `4ff3a73`, the last one before `cache()` was split into parts),
 * side by side in one run of `bench/split_bench.ts`, on both engines; writes the table into
 * `bench/RESULTS.md` between the `split:start` and `split:end` markers. `--rounds=N` (5):
 * how many processes run each engine's rows; each row shows the median of the samples of
 * every process.
 *
 * The earlier tree is exported with `git archive` into a temporary directory and its
 * library built there with cargo, so each side loads its own library.
 *
 * @module
 */

const root = new URL("../", import.meta.url).pathname;
const roundsArg = Deno.args.find((a) => a.startsWith("--rounds="));
const ROUNDS = roundsArg ? Number(roundsArg.slice(9)) : 5;
const rev = Deno.args.find((a) => !a.startsWith("--")) ?? "4ff3a73";

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
}

async function run(cmd: string, args: string[], opts: Deno.CommandOptions = {}): Promise<string> {
  const out = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped", ...opts })
    .output();
  const text = new TextDecoder().decode(out.stdout);
  if (!out.success) {
    throw new Error(`${cmd} ${args.join(" ")} failed: ${new TextDecoder().decode(out.stderr)}`);
  }
  return text;
}

const tmp = await Deno.makeTempDir({ prefix: "warp_split_" });
try {
  console.log(`exporting ${rev} into ${tmp}`);
  const archive = `${tmp}/tree.tar`;
  await run("git", [
    "-C",
    root,
    "archive",
    "-o",
    archive,
    rev,
    "mod.ts",
    "src",
    "rust",
    "deno.json",
  ]);
  await run("tar", ["-xf", archive, "-C", tmp]);
  console.log("building its library");
  await run("cargo", [
    "build",
    "--release",
    "--quiet",
    "--manifest-path",
    `${tmp}/rust/Cargo.toml`,
  ]);
  // ns per call of each sample by row and side, pooled over the processes; each process
  // runs both engines' rows... one engine per process, both sides interleaved sample by sample.
  const samples = new Map<string, { before: number[]; after: number[] }>();
  for (let round = 1; round <= ROUNDS; round++) {
    for (const engine of ["native", "ts"]) {
      console.log(`round ${round}/${ROUNDS}: bench/split_bench.ts (WARP_CACHE_ENGINE=${engine})`);
      const text = await run(
        Deno.execPath(),
        ["run", "-A", "--lock=bench/deno.lock", "bench/split_bench.ts"],
        {
          cwd: root,
          env: {
            WARP_BEFORE_MOD: `file://${tmp}/mod.ts`,
            WARP_CACHE_ENGINE: engine,
            WARP_SPLIT_REVERSE: round % 2 === 0 ? "1" : "0",
          },
        },
      );
      const json = JSON.parse(text.slice(text.indexOf("{"))) as Record<
        string,
        { before: number[]; after: number[] }
      >;
      for (const [name, r] of Object.entries(json)) {
        // The shared rows do not depend on the memory engine: measured once.
        if (engine === "ts" && name.startsWith("shared")) continue;
        const group = name.startsWith("shared") ? name : `${name} (${engine})`;
        const row = samples.get(group) ?? { before: [], after: [] };
        row.before.push(...r.before);
        row.after.push(...r.after);
        samples.set(group, row);
      }
    }
  }
  // The ratio is the median of the ratios of samples taken one after the other (the k-th
  // sample of each side), so that a slow moment of the machine weighs on both sides alike.
  const rows = new Map(
    [...samples].map(([group, r]) => [group, {
      before: median(r.before),
      after: median(r.after),
      ratio: median(r.before.map((b, k) => b / r.after[k]!)),
      n: r.before.length,
    }]),
  );
  const lines = [
    "<!-- split:start -->",
    `The call path of \`${rev}\` (one 515-line closure) against this one (parts; a plain cache`,
    "runs none of the features' code), side by side in one run of `deno task bench:split`",
    `(${new Date().toISOString().slice(0, 10)}; ${ROUNDS} processes an engine, each measuring`,
    "both sides in short samples that alternate: ns per call, the median of the samples; ratio:",
    "the median of before / after over samples taken one after the other, above 1 is faster).",
    "",
    "| row | before | after | ratio |",
    "|---|---:|---:|---:|",
    ...[...rows].map(([group, r]) =>
      `| ${group} | ${r.before.toFixed(1)} | ${r.after.toFixed(1)} | ${r.ratio.toFixed(2)}× |`
    ),
    "<!-- split:end -->",
  ];
  const table = lines.join("\n");
  console.log(table);
  const path = `${root}bench/RESULTS.md`;
  const doc = await Deno.readTextFile(path);
  const start = doc.indexOf("<!-- split:start -->");
  const end = doc.indexOf("<!-- split:end -->");
  const next = start >= 0 && end > start
    ? doc.slice(0, start) + table + doc.slice(end + "<!-- split:end -->".length)
    : `${doc.trimEnd()}\n\n## The call path before and after the split\n\n${table}\n`;
  await Deno.writeTextFile(path, next);
  await run(Deno.execPath(), ["fmt", path], { cwd: root });
} finally {
  await Deno.remove(tmp, { recursive: true });
}
