/**
 * One server process of the shared-cache part of `deno task demo` (started by
 * `scripts/demo.ts`, not meant to be run by hand): serves `GET /file/<path>` with the slow
 * computation of `_demo_work.ts` wrapped in `cache({ backend: "shared", ... })`, so that
 * every process started with the same config reads and fills one cache.
 *
 * Usage: `deno run --allow-read --allow-net=127.0.0.1 --allow-ffi --allow-env
 * scripts/_demo_server.ts`, then one JSON line of {@linkcode SharedServerConfig} on stdin
 * (not a file: Deno 2 allows JS file access under `/dev` only with `--allow-all`, and the
 * cache lives in `/dev/shm`). Prints one JSON line `{"pid", "port"}` on stdout once
 * listening. Routes: `GET /file/<path>` (header `x-computed-by`: pid of the process
 * whose computation produced the value), `GET /stats`, `POST /shutdown`. Also stops when its
 * stdin ends, so that it never outlives the parent.
 *
 * @module
 */

import { cache } from "../mod.ts";
import { fileFromRoute, type FileStats, fileStats } from "./_demo_work.ts";

/** What `scripts/demo.ts` writes, as one JSON line, to the stdin of this process. */
export interface SharedServerConfig {
  root: string;
  files: string[];
  name: string;
  dir: string;
  maxSize: number;
  ttl: number;
}

/** The value kept in the shared cache: the stats and who computed them. */
interface Computed {
  stats: FileStats;
  computedBy: number;
}

/** Reply of `GET /stats`. */
export interface SharedServerStats {
  pid: number;
  requests: number;
  computations: number;
  info: { hits: number; misses: number; maxSize: number; currentSize: number };
}

/** Reads stdin: resolves `config` with its first line, `end` when it is closed. */
function readStdin(): { config: Promise<SharedServerConfig>; end: Promise<void> } {
  const config = Promise.withResolvers<SharedServerConfig>();
  const end = (async (): Promise<void> => {
    let text = "";
    let parsed = false;
    try {
      for await (const chunk of Deno.stdin.readable.pipeThrough(new TextDecoderStream())) {
        if (parsed) continue;
        text += chunk;
        const newline = text.indexOf("\n");
        if (newline >= 0) {
          parsed = true;
          config.resolve(JSON.parse(text.slice(0, newline)) as SharedServerConfig);
        }
      }
    } catch (e) {
      config.reject(e);
    }
    if (!parsed) config.reject(new Error("stdin ended before the config line"));
  })();
  return { config: config.promise, end };
}

async function main(): Promise<void> {
  const stdin = readStdin();
  const config = await stdin.config;
  const known = new Set(config.files);
  let requests = 0;
  let computations = 0;

  const compute = cache({
    backend: "shared",
    name: config.name,
    dir: config.dir,
    maxSize: config.maxSize,
    ttl: config.ttl,
  })(async function demoFileStats(rel: string): Promise<Computed> {
    computations++;
    return { stats: await fileStats(config.root, rel), computedBy: Deno.pid };
  });

  let resolveDone: () => void = () => {};
  const done = new Promise<void>((resolve) => (resolveDone = resolve));
  // The parent holds our stdin open; its end (the parent closed it, or died) stops us too.
  stdin.end.then(resolveDone);

  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen({ port }): void {
      console.log(JSON.stringify({ pid: Deno.pid, port }));
    },
  }, async (req: Request): Promise<Response> => {
    const url = new URL(req.url);
    if (req.method === "GET" && url.pathname === "/stats") {
      const stats: SharedServerStats = {
        pid: Deno.pid,
        requests,
        computations,
        info: compute.cacheInfo(),
      };
      return Response.json(stats);
    }
    if (req.method === "POST" && url.pathname === "/shutdown") {
      resolveDone();
      return Response.json({ ok: true });
    }
    const file = fileFromRoute("/file", url.pathname);
    if (req.method !== "GET" || file === null || !known.has(file)) {
      return new Response("not found\n", { status: 404 });
    }
    requests++;
    try {
      const { stats, computedBy } = await compute(file);
      return new Response(JSON.stringify(stats), {
        headers: { "content-type": "application/json", "x-computed-by": String(computedBy) },
      });
    } catch (e) {
      return new Response(`${e instanceof Error ? e.stack : String(e)}\n`, { status: 500 });
    }
  });

  await done;
  await server.shutdown();
}

if (import.meta.main) {
  try {
    await main();
  } catch (e) {
    console.error(`_demo_server (pid ${Deno.pid}):`, e);
    Deno.exit(1);
  }
}
