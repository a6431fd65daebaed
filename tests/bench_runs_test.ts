/**
 * `deno task bench` fails when a peer fails (scripts/_bench_runs.ts), and the lmdb peer
 * (bench/peers/lmdb_bench.ts) runs. Timings are not compared with anything.
 */

import assert from "node:assert/strict";
import { checkedReport, missingPeers, REQUIRED_PEERS } from "../scripts/_bench_runs.ts";

const root = new URL("../", import.meta.url).pathname;

function report(benches: Array<[string, string, boolean]>): string {
  return JSON.stringify({
    benches: benches.map(([group, name, ok]) => ({
      origin: "file:///x.ts",
      group,
      name,
      results: [ok ? { ok: { avg: 1000, n: 10 } } : { failed: "Error: boom" }],
    })),
  });
}

Deno.test("checkedReport() ends the run when a bench file fails, naming it", async (t) => {
  const args = ["-A", "bench/peers/lmdb_bench.ts"];
  await t.step("no report: the file did not load", () => {
    // What the lmdb peer printed when it could not resolve a dependency; the report left
    // its columns out with a note.
    const stderr =
      "error: Could not find a matching package for 'npm:@opentelemetry/api@^1.9.0' in the node_modules directory.";
    assert.throws(
      () => checkedReport("lmdb run 1", args, { ok: false, stdout: "", stderr }),
      /bench\/peers\/lmdb_bench\.ts.*printed no report.*opentelemetry/,
    );
  });
  await t.step("a benchmark that failed", () => {
    const stdout = report([["shared hit primitive [zipf]", "lmdb get", false], ["g", "x", true]]);
    assert.throws(
      () => checkedReport("lmdb run 1", args, { ok: false, stdout, stderr: "" }),
      /benchmarks that failed: shared hit primitive \[zipf\] \/ lmdb get$|lmdb get;/,
    );
  });
  await t.step("an exit with an error after a full report", () => {
    const stdout = report([["g", "x", true]]);
    assert.throws(
      () => checkedReport("lmdb run 1", args, { ok: false, stdout, stderr: "SIGSEGV" }),
      /exited with an error.*SIGSEGV/,
    );
  });
  await t.step("an unreadable report", () => {
    assert.throws(
      () => checkedReport("x", args, { ok: true, stdout: "{ not json", stderr: "" }),
      /unreadable report/,
    );
  });
  await t.step("a run that went well", () => {
    const stdout = "Check file\n" + report([["g", "x", true]]);
    assert.equal(checkedReport("x", args, { ok: true, stdout, stderr: "" }).benches.length, 1);
  });
});

Deno.test("missingPeers() names each peer missing from a group", () => {
  const groups = [
    "hit object arg [hit-only]",
    "async hit 2 int args [zipf]",
    "shared hit structured [hit-only]",
  ];
  const present = new Set([
    "hit object arg [hit-only]/lru-cache",
    "hit object arg [hit-only]/memoizee",
    "hit object arg [hit-only]/@neophi/sieve-cache",
    "hit object arg [hit-only]/micro-memoize",
    "async hit 2 int args [zipf]/lru-cache",
    "async hit 2 int args [zipf]/memoizee",
    "async hit 2 int args [zipf]/p-memoize",
    "shared hit structured [hit-only]/Deno KV (file)",
  ]);
  const missing = missingPeers(groups, (g, n) => present.has(`${g}/${n}`));
  assert.ok(missing.includes("async hit 2 int args [zipf] / lru-cache fetch"));
  assert.ok(missing.includes("shared hit structured [hit-only] / lmdb get"));
  assert.ok(!missing.some((m) => m.startsWith("hit object arg")));
  // Patterns that no group matches (a whole file missing) are named too.
  assert.ok(missing.some((m) => m.startsWith("any group matching /^shared miss")));
  assert.equal(
    missingPeers(groups, () => true).filter((m) => !m.startsWith("any group")).length,
    0,
  );
  assert.ok(REQUIRED_PEERS.length > 0);
});

Deno.test("bench/peers/lmdb_bench.ts runs and reports lmdb in every shared group", async () => {
  const args = ["-A", "--filter", "/lmdb/", "bench/peers/lmdb_bench.ts"];
  const res = await new Deno.Command(Deno.execPath(), {
    // The benchmarks' own lock file: the package's deno.lock holds what the tests import.
    args: ["bench", "--json", "--lock=bench/deno.lock", ...args],
    cwd: root,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const json = checkedReport("lmdb", args, {
    ok: res.success,
    stdout: new TextDecoder().decode(res.stdout),
    stderr: new TextDecoder().decode(res.stderr),
  });
  const have = new Set(json.benches.map((b) => `${b.group} / ${b.name}`));
  for (const kind of ["primitive", "structured"]) {
    for (const stream of ["hit-only", "zipf"]) {
      assert.ok(have.has(`shared hit ${kind} [${stream}] / lmdb get`), `${kind} ${stream}`);
    }
    assert.ok(have.has(`shared miss + insert ${kind} / lmdb get + put`), kind);
  }
});
