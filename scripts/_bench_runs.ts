/**
 * The checks that make `deno task bench` (`scripts/bench_report.ts`) fail when a peer
 * fails, instead of leaving its column out of `bench/RESULTS.md`: every `deno bench` run
 * must report, with every benchmark passing and a zero exit status, and every group must
 * have the peers of {@linkcode REQUIRED_PEERS}.
 *
 * @module
 */

/** What `deno bench --json` prints (the parts read here). */
export interface BenchJson {
  benches: Array<{
    origin: string;
    group: string | null;
    name: string;
    results: Array<{ ok?: { avg: number; n: number }; failed?: unknown }>;
  }>;
}

/** The outcome of one `deno bench --json` process. */
export interface BenchProcess {
  /** Whether it exited with status 0. */
  ok: boolean;
  stdout: string;
  stderr: string;
}

/** The last `lines` lines of `text`, without terminal colours, joined with ` / `. */
export function tail(text: string, lines = 4): string {
  // deno-lint-ignore no-control-regex
  return text.replace(/\x1b\[[0-9;]*m/g, "").trim().split("\n").slice(-lines).join(" / ");
}

/**
 * The report of one `deno bench --json` run.
 *
 * @param label The run's name in messages (and of its raw output in `bench/.out/`).
 * @param args The arguments after `deno bench --json`, for messages.
 * @param run The process's outcome.
 * @returns The parsed report, in which every benchmark passed.
 * @throws {Error} If the run printed no report or an unreadable one, if a benchmark failed,
 * or if the process exited with an error (a bench file that throws after its cases ran):
 * the message names the command, the failed benchmarks and the end of stderr.
 */
export function checkedReport(label: string, args: string[], run: BenchProcess): BenchJson {
  const fail = (why: string): never => {
    throw new Error(
      `Cannot finish the bench run: \`deno bench --json ${args.join(" ")}\` (${label}) ${why}; ` +
        `stderr ends with: ${tail(run.stderr, 8)}`,
    );
  };
  const start = run.stdout.indexOf("{");
  if (start < 0) fail("printed no report");
  let json: BenchJson;
  try {
    json = JSON.parse(run.stdout.slice(start)) as BenchJson;
  } catch (e) {
    return fail(`printed an unreadable report (${e instanceof Error ? e.message : e})`);
  }
  const failed = json.benches.filter((b) => !b.results[0]?.ok).map((b) =>
    `${b.group ?? ""} / ${b.name}`
  );
  if (failed.length > 0) fail(`had benchmarks that failed: ${failed.join("; ")}`);
  if (!run.ok) fail("exited with an error");
  return json;
}

/**
 * The peers that each group must have once every run is in, by a pattern of the group's
 * name. The cases of `cache()` itself may be skipped by design (no shared backend in this
 * build, said in a note of the report); the peers never are.
 */
export const REQUIRED_PEERS: ReadonlyArray<readonly [RegExp, readonly string[]]> = [
  [/^hit (2 int args|string\(10\) \+ int|object arg) \[/, [
    "lru-cache",
    "memoizee",
    "@neophi/sieve-cache",
  ]],
  [/^hit 2 int args, TTL on \[/, ["lru-cache", "memoizee"]],
  [/^async hit 2 int args \[/, ["lru-cache", "lru-cache fetch", "memoizee", "p-memoize"]],
  [/^(async )?hit .*\[hit-only\]$/, ["micro-memoize"]],
  [/^miss \+ insert 2 int args$/, [
    "lru-cache",
    "micro-memoize",
    "memoizee",
    "@neophi/sieve-cache",
  ]],
  [/^shared hit /, ["lmdb get", "Deno KV (file)"]],
  [/^shared miss \+ insert /, ["lmdb get + put", "Deno KV (file)"]],
];

/**
 * What {@linkcode REQUIRED_PEERS} asks for and the results lack: `group / peer` for each
 * peer missing from a group, and `any group matching /.../` for a pattern no group matches.
 *
 * @param groups The groups of the results.
 * @param has Whether the results have a figure for `name` in `group`.
 */
export function missingPeers(
  groups: readonly string[],
  has: (group: string, name: string) => boolean,
): string[] {
  const missing: string[] = [];
  for (const [pattern, peers] of REQUIRED_PEERS) {
    const matching = groups.filter((g) => pattern.test(g));
    if (matching.length === 0) missing.push(`any group matching ${pattern}`);
    for (const g of matching) {
      for (const peer of peers) if (!has(g, peer)) missing.push(`${g} / ${peer}`);
    }
  }
  return missing;
}
