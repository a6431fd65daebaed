/**
 * `deno task bench:split [<rev>]`: the call path of this checkout against that of an
 * earlier commit (default `4ff3a73`, the last one before `cache()` was split into parts),
 * side by side in one run of `bench/split_bench.ts`, on both engines; writes the table into
 * `bench/RESULTS.md` between the `split:start` and `split:end` markers. `--rounds=N` (5):
 * how many times each engine's run is repeated; each row shows the median of its rounds.
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
const BATCH = 1000;

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

interface BenchJson {
  benches: Array<{ group: string | null; name: string; results: Array<{ ok?: { avg: number } }> }>;
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
  // ns per call by row and side, one entry per round; each round runs both engines, and
  // each deno bench process runs both sides interleaved: the median of the rounds is shown.
  const samples = new Map<string, Record<string, number[]>>();
  for (let round = 1; round <= ROUNDS; round++) {
    for (const engine of ["native", "ts"]) {
      console.log(
        `round ${round}/${ROUNDS}: deno bench bench/split_bench.ts (WARP_CACHE_ENGINE=${engine})`,
      );
      const text = await run(Deno.execPath(), ["bench", "-A", "--json", "bench/split_bench.ts"], {
        cwd: root,
        env: {
          WARP_BEFORE_MOD: `file://${tmp}/mod.ts`,
          WARP_CACHE_ENGINE: engine,
          WARP_SPLIT_REVERSE: round % 2 === 0 ? "1" : "0",
        },
      });
      const json = JSON.parse(text.slice(text.indexOf("{"))) as BenchJson;
      for (const b of json.benches) {
        const avg = b.results[0]?.ok?.avg;
        if (avg === undefined) throw new Error(`${b.group} / ${b.name} failed`);
        // The shared rows do not depend on the memory engine: measured once.
        if (engine === "ts" && b.group!.startsWith("shared")) continue;
        const group = b.group!.startsWith("shared") ? b.group! : `${b.group} (${engine})`;
        const row = samples.get(group) ?? {};
        (row[b.name] ??= []).push(avg / BATCH);
        samples.set(group, row);
      }
    }
  }
  const rows = new Map<string, Record<string, number>>(
    [...samples].map(([group, r]) => [
      group,
      Object.fromEntries(Object.entries(r).map(([side, xs]) => [side, median(xs)])),
    ]),
  );
  const lines = [
    "<!-- split:start -->",
    `The call path of \`${rev}\` (one 515-line closure) against this one (parts; a plain cache`,
    "runs none of the features' code), side by side in one run of `deno task bench:split`",
    `(${
      new Date().toISOString().slice(0, 10)
    }; ns per call, the median of ${ROUNDS} rounds; ratio: before / after, above 1 is faster).`,
    "",
    "| row | before | after | ratio |",
    "|---|---:|---:|---:|",
    ...[...rows].map(([group, r]) =>
      `| ${group} | ${r.before!.toFixed(1)} | ${r.after!.toFixed(1)} | ${
        (r.before! / r.after!).toFixed(2)
      }× |`
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
