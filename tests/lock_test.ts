// The lock file that `deno task test` uses (deno.lock) pins only the npm packages that the
// package, its tests and its scripts import: Deno caches every npm package of the lock file
// it loads, so a benchmark's peers there (vega, lru-cache, memoizee...) were downloaded by
// the first `deno task test` (105 package folders against 7). The benchmarks have their own,
// bench/deno.lock (the bench tasks pass --lock=bench/deno.lock).
import assert from "node:assert/strict";

const root = new URL("../", import.meta.url).pathname;

/** Files under `dir`, recursively, that end in `.ts`. */
function sources(dir: string): string[] {
  return [...Deno.readDirSync(`${root}${dir}`)].flatMap((e) =>
    e.isDirectory ? sources(`${dir}/${e.name}`) : e.name.endsWith(".ts") ? [`${dir}/${e.name}`] : []
  );
}

/** The npm specifiers (`npm:name@range`) that `files` import, and deno.json's imports. */
function imported(files: string[]): Set<string> {
  const out = new Set<string>();
  for (const f of files) {
    for (const m of Deno.readTextFileSync(`${root}${f}`).matchAll(/"(npm:[^"]+)"/g)) {
      out.add(m[1]!);
    }
  }
  return out;
}

/** Files of the benchmarks' graph only. */
const BENCH_ONLY = (f: string): boolean =>
  f.startsWith("bench/") || f === "scripts/bench_report.ts" || f === "scripts/_scale_report.ts";

Deno.test("deno.lock pins no npm package that only the benchmarks import", () => {
  const lock = JSON.parse(Deno.readTextFileSync(`${root}deno.lock`));
  const config = JSON.parse(Deno.readTextFileSync(`${root}deno.json`));
  const files = ["mod.ts", ...sources("src"), ...sources("tests"), ...sources("scripts")];
  const used = imported(files.filter((f) => !BENCH_ONLY(f)));
  for (const spec of Object.values(config.imports as Record<string, string>)) used.add(spec);
  const pinned = Object.keys(lock.specifiers ?? {}).filter((s) => s.startsWith("npm:"));
  const extra = pinned.filter((s) => !used.has(s));
  assert.deepEqual(extra, [], "npm specifiers in deno.lock that only bench/ imports");
});
