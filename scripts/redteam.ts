/**
 * `deno task redteam [--quick]`: the adversarial scenarios of RELIABILITY.md, longer than
 * `deno task test` runs them.
 *
 * 1. Stack overflows swept over the cache's call path (`tests/fixtures/overflow.ts`) for
 *    each memory engine and strategy, under several V8 settings: each changes what the JIT
 *    inlines, and so which call of the path an overflow can strike.
 * 2. Random nesting of cached calls in `then` getters, Proxy traps, getters walked by the
 *    value codec and key getters (`tests/fixtures/nesting_child.ts`), both engines, memory
 *    and shared caches.
 * 3. The shared store's cross-process scenarios that need their own runs: two writers in
 *    different PID namespaces (as root), a stopped lock holder, processes stopped by gdb at
 *    exact points (`scripts/redteam/shared_stops_test.ts`, as root, with gdb), and a timed
 *    reopen of a full 200k-entry file against its fill (see `EXTRA` below).
 *
 * `--quick` shortens the sweeps; `--only overflow|nesting|extra` runs one section.
 *
 * Prints one line per scenario and a closing `N passed, N failed` line; exits non-zero on a
 * failure.
 *
 * @module
 */

import { build } from "./build.ts";

const root = new URL("../", import.meta.url).pathname;
const quick = Deno.args.includes("--quick");
/** `--only overflow|nesting|extra`: one section. */
const only = Deno.args.includes("--only") ? Deno.args[Deno.args.indexOf("--only") + 1] : undefined;

interface Outcome {
  name: string;
  ok: boolean;
  detail: string;
}

async function deno(
  args: string[],
  env: Record<string, string> = {},
): Promise<{ ok: boolean; out: string; err: string }> {
  const o = await new Deno.Command(Deno.execPath(), {
    args,
    cwd: root,
    env: { NO_COLOR: "1", ...env },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const dec = new TextDecoder();
  return { ok: o.success, out: dec.decode(o.stdout), err: dec.decode(o.stderr) };
}

async function overflowSweeps(): Promise<Outcome[]> {
  const flagSets = ["", "--max-inlined-bytecode-size=0", "--no-maglev", "--jitless"];
  const out: Outcome[] = [];
  for (const flags of flagSets) {
    for (const engine of ["native", "ts"]) {
      for (const strategy of ["sieve", "lru", "lfu"]) {
        const offsets = quick ? 256 : flags === "--jitless" ? 512 : 2048;
        const args = ["run", "-A"];
        if (flags) args.push(`--v8-flags=${flags}`);
        args.push("tests/fixtures/overflow_child.ts", strategy, String(offsets));
        const r = await deno(args, { WARP_CACHE_ENGINE: engine });
        let ok = r.ok;
        let detail = r.err.trim().split("\n").slice(-3).join(" | ");
        if (r.ok) {
          const res = JSON.parse(r.out);
          ok = res.wrong === 0 && res.overflows >= res.trials;
          detail =
            `${res.trials} offsets, ${res.overflows} overflows, ${res.wrong} wrong ${res.firstWrong}`;
        }
        out.push({
          name: `overflow sweep ${engine} ${strategy} ${flags || "(default)"}`,
          ok,
          detail,
        });
      }
    }
  }
  return out;
}

async function nesting(): Promise<Outcome[]> {
  const out: Outcome[] = [];
  const dir = await Deno.makeTempDir({ prefix: "warp_redteam_" });
  try {
    for (const engine of ["native", "ts"]) {
      for (let seed = 1; seed <= (quick ? 2 : 8); seed++) {
        const r = await deno(
          ["run", "-A", "tests/fixtures/nesting_child.ts", String(seed), "5000", dir],
          { WARP_CACHE_ENGINE: engine },
        );
        const res = r.ok ? JSON.parse(r.out) : { wrong: -1, first: r.err.slice(-300) };
        out.push({
          name: `nested cached calls ${engine} seed ${seed}`,
          ok: r.ok && res.wrong === 0,
          detail: `${res.wrong} wrong ${res.first}`,
        });
      }
    }
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
  return out;
}

/** Cross-process scenarios that run as tests of their own: `[name, program, args]`. */
const EXTRA: { name: string; program: "deno" | "cargo"; args: string[]; root?: boolean }[] = [
  {
    name: "a writer stopped (SIGSTOP) while holding the lock blocks no reader",
    program: "deno",
    args: ["test", "-A", "tests/shared_lock_test.ts"],
  },
  {
    name: "reopening a full 200k-entry file costs about its fill",
    program: "deno",
    args: ["test", "-A", "tests/shared_store_test.ts", "--filter", "reopening a full file"],
  },
  {
    name: "processes opening one name with other sizes share one file",
    program: "deno",
    args: ["test", "-A", "tests/shared_store_test.ts", "--filter", "other sizes"],
  },
  {
    name:
      "processes stopped by gdb at exact points: a clear racing a store, an open behind a stopped replacer, a file created from two PID namespaces",
    program: "deno",
    args: ["test", "-A", "scripts/redteam/shared_stops_test.ts"],
    root: true,
  },
  {
    name: "two writers in different PID namespaces (unshare --pid)",
    program: "cargo",
    args: [
      "test",
      "--release",
      "--manifest-path",
      "rust/Cargo.toml",
      "--lib",
      "writers_in_two_pid_namespaces",
    ],
    root: true,
  },
];

function isRoot(): boolean {
  try {
    return Deno.uid() === 0;
  } catch {
    return false;
  }
}

async function extra(): Promise<Outcome[]> {
  const out: Outcome[] = [];
  for (const e of EXTRA) {
    if (e.root && !isRoot()) {
      console.log(`(not run: ${e.name} needs root)`);
      continue;
    }
    const o = await new Deno.Command(e.program === "deno" ? Deno.execPath() : "cargo", {
      args: e.args,
      cwd: root,
      env: { NO_COLOR: "1", WARP_CACHE_ENGINE: "native" },
      stdout: "piped",
      stderr: "piped",
    }).output();
    const text = new TextDecoder().decode(o.stdout) + new TextDecoder().decode(o.stderr);
    const summary = text.trim().split("\n").filter((l) => /passed|failed|test result/.test(l));
    out.push({
      name: e.name,
      ok: o.success,
      detail: summary.slice(-1).join("") || text.slice(-300),
    });
  }
  return out;
}

if (import.meta.main) {
  await build();
  const outcomes = [
    ...(only === undefined || only === "overflow" ? await overflowSweeps() : []),
    ...(only === undefined || only === "nesting" ? await nesting() : []),
    ...(only === undefined || only === "extra" ? await extra() : []),
  ];
  let passed = 0;
  let failed = 0;
  for (const o of outcomes) {
    console.log(`${o.ok ? "ok  " : "FAIL"} ${o.name}: ${o.detail}`);
    if (o.ok) passed++;
    else failed++;
  }
  console.log(`\n${passed} passed, ${failed} failed`);
  if (failed > 0) Deno.exit(1);
}
