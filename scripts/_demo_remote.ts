/**
 * The two-host part of `deno task demo`: two processes, each with its own shared cache
 * directory (two "machines"), ask for the same Zipf stream of keys, first without a remote
 * tier, then with one Redis (`redis-server` on 127.0.0.1, a free port) behind both. The
 * table shows local hits, remote hits and computations per host.
 *
 * @module
 */

import { table } from "./_demo_work.ts";
import { startRedisServer } from "../tests/fixtures/redis_server.ts";

const here = new URL(".", import.meta.url).pathname;

interface HostInfo {
  hits: number;
  misses: number;
  remoteHits?: number;
  remoteErrors?: number;
  ms: number;
}

function zipfKeys(n: number, distinct: number, seed: number): number[] {
  let s = seed >>> 0;
  const rand = () => ((s = (s * 1664525 + 1013904223) >>> 0) / 2 ** 32);
  const weights = Array.from({ length: distinct }, (_, i) => 1 / (i + 1));
  const total = weights.reduce((a, b) => a + b, 0);
  return Array.from({ length: n }, () => {
    let r = rand() * total;
    for (let i = 0; i < distinct; i++) if ((r -= weights[i]!) <= 0) return i;
    return distinct - 1;
  });
}

async function host(url: string, name: string, dir: string, keys: number[]): Promise<HostInfo> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "-A",
      "--quiet",
      `${here}_demo_remote_host.ts`,
      url,
      name,
      dir,
      JSON.stringify(keys),
    ],
    stdout: "piped",
    stderr: "inherit",
  }).output();
  if (out.code !== 0) throw new Error(`a demo host exited with ${out.code}`);
  return JSON.parse(new TextDecoder().decode(out.stdout).trim().split("\n").at(-1)!) as HostInfo;
}

/**
 * Runs the part and prints its table.
 *
 * @returns Whether the remote tier saved computations (fewer than without it) and every
 * counter adds up; `true` with a note when `redis-server` is not installed.
 */
export async function runRemoteDemo(): Promise<boolean> {
  const keys = zipfKeys(400, 120, 7);
  const distinct = new Set(keys).size;
  console.log(
    `\n--- two hosts, one Redis: each host (a process with its own shared cache directory) asks for the same ${keys.length} keys (Zipf over ${distinct} distinct)`,
  );
  let redis;
  try {
    redis = await startRedisServer();
  } catch (e) {
    console.log(
      `skipped: ${e instanceof Error ? e.message : String(e)} (apt-get install redis-server)`,
    );
    return true;
  }
  const root = await Deno.makeTempDir({ prefix: "warp_demo_remote_" });
  const rows: string[][] = [];
  let ok = true;
  try {
    const computations: Record<string, number> = {};
    for (const mode of ["local only", "with Redis"] as const) {
      const name = `demo-${mode === "local only" ? "local" : "redis"}`;
      const url = mode === "local only" ? "none" : redis.url;
      const infos: HostInfo[] = [];
      for (const h of ["host A", "host B"]) {
        const dir = `${root}/${name}-${h.replace(" ", "")}`;
        await Deno.mkdir(dir);
        // Host B runs after host A: the remote tier then holds what A computed.
        const info = await host(url, name, dir, keys);
        infos.push(info);
        const remoteHits = info.remoteHits ?? 0;
        rows.push([
          mode,
          h,
          String(keys.length),
          String(info.hits - remoteHits),
          String(remoteHits),
          String(info.misses),
          String(info.remoteErrors ?? 0),
          `${(info.ms / 1000).toFixed(2)} s`,
        ]);
        ok &&= info.hits + info.misses === keys.length;
      }
      computations[mode] = infos.reduce((s, i) => s + i.misses, 0);
    }
    ok &&= computations["with Redis"]! === distinct && computations["local only"]! === 2 * distinct;
  } finally {
    await redis.stop();
    await Deno.remove(root, { recursive: true });
  }
  console.log(
    table([
      "mode",
      "host",
      "requests",
      "local hits",
      "remote hits",
      "computations",
      "remote errors",
      "time",
    ], rows),
  );
  console.log(
    ok
      ? `with Redis, each distinct key was computed once across both hosts (${distinct}), not once per host`
      : "UNEXPECTED: see the table",
  );
  return ok;
}
