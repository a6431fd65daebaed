/**
 * `deno task bench:split [<rev>]`: the call path of this checkout against that of an
 * earlier commit (default `4ff3a73`, the last one before `cache()` was split into parts),
 * side by side in one run of `bench/split_bench.ts`, on both engines; writes the table into
 * `bench/RESULTS.md` between the `split:start` and `split:end` markers.
 *
 * The earlier tree is exported with `git archive` into a temporary directory and its
 * library built there with cargo, so each side loads its own library.
 *
 * @module
 */

const root = new URL("../", import.meta.url).pathname;
const rev = Deno.args[0] ?? "4ff3a73";
const BATCH = 1000;

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
  const rows = new Map<string, Record<string, number>>();
  for (const engine of ["native", "ts"]) {
    console.log(`deno bench bench/split_bench.ts (WARP_CACHE_ENGINE=${engine})`);
    const text = await run(Deno.execPath(), ["bench", "-A", "--json", "bench/split_bench.ts"], {
      cwd: root,
      env: { WARP_BEFORE_MOD: `file://${tmp}/mod.ts`, WARP_CACHE_ENGINE: engine },
    });
    const json = JSON.parse(text.slice(text.indexOf("{"))) as BenchJson;
    for (const b of json.benches) {
      const avg = b.results[0]?.ok?.avg;
      if (avg === undefined) throw new Error(`${b.group} / ${b.name} failed`);
      // The shared rows do not depend on the memory engine: measured once.
      if (engine === "ts" && b.group!.startsWith("shared")) continue;
      const group = b.group!.startsWith("shared") ? b.group! : `${b.group} (${engine})`;
      const row = rows.get(group) ?? {};
      row[b.name] = avg / BATCH;
      rows.set(group, row);
    }
  }
  const lines = [
    "<!-- split:start -->",
    `The call path of \`${rev}\` (one 515-line closure) against this one (parts; a plain cache`,
    "runs none of the features' code), side by side in one run of `deno task bench:split`",
    `(${
      new Date().toISOString().slice(0, 10)
    }; ns per call; ratio: before / after, above 1 is faster).`,
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
