/**
 * `deno task examples`: type-checks `examples/`, then runs every example with the commands
 * written in its header (the lines ` * $ deno run ...`, with the permissions the README
 * names), each bounded by 60 s; an example passes when it exits 0 by itself (each one
 * asserts what it shows).
 *
 * An example that reads `REDIS_URL` runs first without it (it must say that it skips),
 * then against a `redis-server` started here on a free port, when one is installed (CI
 * installs it; without it that run is skipped, saying so).
 *
 * Exits non-zero when a check or an example fails.
 *
 * @module
 */

import { build } from "./build.ts";
import { startRedisServer } from "../tests/fixtures/redis_server.ts";

const root = new URL("../", import.meta.url).pathname;
const LIMIT_MS = 60_000;

/** The `deno run` commands of an example's header, as argument lists (without `deno`). */
export function commandsOf(source: string): string[][] {
  const out: string[][] = [];
  for (const line of source.split("\n")) {
    const m = /^ \* \$ deno (run .*)$/.exec(line);
    if (m !== null) out.push(m[1]!.trim().split(/\s+/));
  }
  return out;
}

interface Result {
  code: number;
  output: string;
  ms: number;
}

async function run(args: string[], env: Record<string, string>): Promise<Result> {
  const clean = Deno.env.toObject();
  delete clean.REDIS_URL;
  const child = new Deno.Command(Deno.execPath(), {
    args,
    cwd: root,
    env: { ...clean, ...env },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  const started = performance.now();
  const timer = setTimeout(() => {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
  }, LIMIT_MS);
  const { code, stdout, stderr } = await child.output();
  clearTimeout(timer);
  const decoder = new TextDecoder();
  return {
    code,
    output: decoder.decode(stdout) + decoder.decode(stderr),
    ms: performance.now() - started,
  };
}

function show(label: string, r: Result, ok: boolean): void {
  console.log(`${ok ? "ok  " : "FAIL"} ${label} (${Math.round(r.ms)} ms)`);
  if (!ok) console.log(r.output.replace(/^/gm, "     | "));
}

if (import.meta.main) {
  await build();
  let failed = 0;

  console.log("=== deno check examples/");
  const check = await run(["check", "examples/"], {});
  show("deno check examples/", check, check.code === 0);
  if (check.code !== 0) failed++;

  const files = [...Deno.readDirSync(`${root}examples`)]
    .filter((e) => e.isFile && e.name.endsWith(".ts"))
    .map((e) => e.name)
    .sort();
  const needRedis: string[][] = [];
  console.log(`=== ${files.length} examples`);
  for (const file of files) {
    const source = Deno.readTextFileSync(`${root}examples/${file}`);
    const commands = commandsOf(source);
    if (commands.length === 0) {
      console.log(`FAIL examples/${file}: no " * $ deno run ..." line in its header`);
      failed++;
      continue;
    }
    const redis = source.includes("REDIS_URL");
    for (const args of commands) {
      const r = await run(args, {});
      // Without REDIS_URL a Redis example must say that it skips, and exit 0.
      const ok = r.code === 0 && (!redis || /skipped/.test(r.output));
      show(`deno ${args.join(" ")}${redis ? " (no REDIS_URL)" : ""}`, r, ok);
      if (!ok) failed++;
      if (redis) needRedis.push(args);
    }
  }

  if (needRedis.length > 0) {
    let server: Awaited<ReturnType<typeof startRedisServer>> | undefined;
    try {
      server = await startRedisServer();
    } catch (e) {
      console.log(`skip the Redis runs: ${e instanceof Error ? e.message : String(e)}`);
    }
    if (server !== undefined) {
      try {
        for (const args of needRedis) {
          const r = await run(args, { REDIS_URL: server.url });
          const ok = r.code === 0 && !/skipped/.test(r.output);
          show(`REDIS_URL=${server.url} deno ${args.join(" ")}`, r, ok);
          if (!ok) failed++;
        }
      } finally {
        await server.stop();
      }
    }
  }

  console.log(failed === 0 ? "=== examples: all passed" : `=== examples: ${failed} failed`);
  Deno.exit(failed === 0 ? 0 : 1);
}
