/**
 * `deno task demo`: @warp/cache doing real work.
 *
 * 1. Builds the native library with `deno task build` if it is missing.
 * 2. Serves the repository's own source files over HTTP (`Deno.serve` on 127.0.0.1, an
 *    ephemeral port). Each response needs a slow computation (SHA-256 stretched over the
 *    file, plus line / word / byte counts; ~5-20 ms). Route `/cached/<path>` wraps it with
 *    `cache({ maxSize: files / 4, ttl: 60_000 })`, route `/uncached/<path>` does not.
 *    An in-process client sends the same seeded Zipf(1.0) stream of requests to both
 *    (8 in flight), checks that every response equals the reference one for its file, and
 *    prints hits, misses, hit ratio, latency percentiles and total time.
 * 3. Shared backend: three `deno run scripts/_demo_server.ts` processes, one shared cache
 *    (`backend: "shared"`), requests round-robin across them; shows how much of each
 *    process's hits were computed by another process ({@linkcode runSharedDemo}).
 * 4. Stale-while-revalidate: a flaky, slow upstream (errors and 2 s stalls) served through
 *    `cache({ ttl, staleWhileRevalidate, timeout })`: no upstream error reaches the client
 *    (`scripts/_demo_flaky.ts`).
 * 5. Two hosts, one Redis: two processes with their own shared cache directories and one
 *    `redis-server` behind both; local hits, remote hits and computations per host
 *    (`scripts/_demo_remote.ts`; skipped with a note when `redis-server` is not installed).
 * 6. Tags: one `invalidateTags` reaching three processes of a shared cache at once and a
 *    host behind Redis through the bus, and a failing origin served by `staleIfError` with
 *    a back-off (`scripts/_demo_tags.ts`; the Redis host is skipped with a note without
 *    `redis-server`).
 *
 * Options: `--requests=N` (2000), `--concurrency=N` (8), `--seed=N`, `--no-shared`,
 * `--no-flaky`, `--no-remote`, `--no-tags`.
 * Exits non-zero if a response is wrong or a counter disagrees with the requests sent.
 *
 * @module
 */

import { cache } from "../mod.ts";
import { loadNative, nativeLoadError } from "../src/native/ffi.ts";
import {
  fileFromRoute,
  type FileStamp,
  type FileStats,
  fileStats,
  listSourceFiles,
  type LoadResult,
  percentile,
  ROOT,
  routeFor,
  runLoad,
  stampOf,
  table,
  zipfStream,
} from "./_demo_work.ts";
import { runFlakyDemo } from "./_demo_flaky.ts";
import { runRemoteDemo } from "./_demo_remote.ts";
import { runTagsDemo } from "./_demo_tags.ts";
import type { SharedServerConfig, SharedServerStats } from "./_demo_server.ts";

/** Settings of one run (from the command line). */
interface DemoOptions {
  requests: number;
  concurrency: number;
  seed: number;
  alpha: number;
  shared: boolean;
  /** Whether to run the stale-while-revalidate part ({@linkcode runFlakyDemo}). */
  flaky: boolean;
  /** Whether to run the two-host part ({@linkcode runRemoteDemo}). */
  remote: boolean;
  /** Whether to run the tags part ({@linkcode runTagsDemo}). */
  tags: boolean;
  /** Longest time one measured run may take before it stops issuing requests, ms. */
  budgetMs: number;
  ttl: number;
}

/** Everything the parts of the demo share: the input files and the request stream. */
interface Workload {
  files: string[];
  stamps: Map<string, FileStamp>;
  stream: string[];
  maxSize: number;
  /** The body that each file's computation returns, taken uncached before the runs. */
  reference: Map<string, string>;
}

/** A row of the results table. */
interface ModeResult {
  mode: string;
  load: LoadResult;
  hits: number;
  misses: number;
}

/** A response that did not equal the reference one. */
interface Failure {
  mode: string;
  file: string;
  detail: string;
}

/** Collects wrong responses instead of throwing from inside the load generator. */
class Verifier {
  failures: Failure[] = [];
  readonly changed = new Set<string>();
  checked = 0;

  constructor(private readonly workload: Workload) {}

  /** Checks one response of `mode` for `file` against the reference body. */
  check(mode: string, file: string, status: number, body: string): void {
    this.checked++;
    const expected = this.workload.reference.get(file);
    if (status === 200 && body === expected) return;
    const detail = status === 200
      ? `body differs from the uncached reference\n      got:      ${body.slice(0, 200)}\n` +
        `      expected: ${expected?.slice(0, 200)}`
      : `HTTP ${status}: ${body.slice(0, 500)}`;
    this.failures.push({ mode, file, detail });
  }

  /**
   * Drops failures of files edited during the run (a developer saving a file is not a cache
   * bug) and returns whether every other response was right.
   */
  async settle(): Promise<boolean> {
    const kept: Failure[] = [];
    for (const failure of this.failures) {
      if (await this.#editedSinceStart(failure.file)) this.changed.add(failure.file);
      else kept.push(failure);
    }
    this.failures = kept;
    return this.failures.length === 0;
  }

  async #editedSinceStart(file: string): Promise<boolean> {
    const before = this.workload.stamps.get(file);
    const now = await stampOf(ROOT, file);
    return !before || !now || before.size !== now.size || before.mtime !== now.mtime;
  }
}

function parseOptions(args: readonly string[]): DemoOptions {
  const options: DemoOptions = {
    requests: 2000,
    concurrency: 8,
    seed: 20240601,
    alpha: 1.0,
    shared: true,
    flaky: true,
    remote: true,
    tags: true,
    budgetMs: 15_000,
    ttl: 60_000,
  };
  for (const arg of args) {
    const [flag, value] = arg.split("=", 2);
    const n = Number(value);
    if (flag === "--no-shared") options.shared = false;
    else if (flag === "--no-flaky") options.flaky = false;
    else if (flag === "--no-remote") options.remote = false;
    else if (flag === "--no-tags") options.tags = false;
    else if (flag === "--requests" && Number.isInteger(n) && n > 0) options.requests = n;
    else if (flag === "--concurrency" && Number.isInteger(n) && n > 0) options.concurrency = n;
    else if (flag === "--seed" && Number.isInteger(n)) options.seed = n;
    else throw new Error(`unknown or invalid option: ${arg}`);
  }
  return options;
}

function nativeLibraryPath(): string {
  const file = Deno.build.os === "windows"
    ? "warp_cache.dll"
    : Deno.build.os === "darwin"
    ? "libwarp_cache.dylib"
    : "libwarp_cache.so";
  return `${ROOT}/rust/target/release/${file}`;
}

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return false;
    throw e;
  }
}

/** Runs `deno task build` when neither `WARP_CACHE_LIB` nor the release build exists. */
async function ensureNativeLibrary(): Promise<string> {
  const fromEnv = Deno.env.get("WARP_CACHE_LIB");
  if (fromEnv) {
    if (await exists(fromEnv)) return fromEnv;
    console.log(`WARP_CACHE_LIB=${fromEnv} does not exist; looking for the release build`);
  }
  const path = nativeLibraryPath();
  if (await exists(path)) return path;
  console.log(`native library not found at ${path}: running \`deno task build\` ...`);
  const { code } = await new Deno.Command(Deno.execPath(), {
    args: ["task", "build"],
    cwd: ROOT,
    stdin: "null",
    stdout: "inherit",
    stderr: "inherit",
  }).output();
  if (code !== 0) {
    throw new Error(
      `\`deno task build\` failed (exit code ${code}); the demo needs the native library ` +
        `(install Rust / cargo, or set WARP_CACHE_LIB to a built library)`,
    );
  }
  if (!(await exists(path))) {
    throw new Error(`\`deno task build\` succeeded but ${path} still does not exist`);
  }
  return path;
}

const fmtMs = (ms: number): string => ms.toFixed(ms < 10 ? 2 : 1);

function resultRows(results: readonly ModeResult[]): string[][] {
  return results.map(({ mode, load, hits, misses }) => [
    mode,
    String(load.completed),
    String(hits),
    String(misses),
    `${((100 * hits) / Math.max(1, hits + misses)).toFixed(1)}%`,
    fmtMs(percentile(load.latencies, 50)),
    fmtMs(percentile(load.latencies, 99)),
    `${(load.elapsedMs / 1000).toFixed(2)} s`,
    (load.completed / (load.elapsedMs / 1000)).toFixed(0),
  ]);
}

const RESULT_HEADER = [
  "mode",
  "requests",
  "hits",
  "misses",
  "hit ratio",
  "p50 ms",
  "p99 ms",
  "total",
  "req/s",
];

/** Serves `/cached/*` and `/uncached/*` in this process and measures both. */
async function runMemoryDemo(
  workload: Workload,
  options: DemoOptions,
  verifier: Verifier,
): Promise<boolean> {
  const known = new Set(workload.files);
  let cachedComputations = 0;
  let uncachedComputations = 0;

  const cachedStats = cache({ maxSize: workload.maxSize, ttl: options.ttl })(
    async function demoFileStats(rel: string): Promise<FileStats> {
      cachedComputations++;
      return await fileStats(ROOT, rel);
    },
  );
  async function uncachedStats(rel: string): Promise<FileStats> {
    uncachedComputations++;
    return await fileStats(ROOT, rel);
  }

  const routes: Record<string, (rel: string) => Promise<FileStats>> = {
    "/cached": cachedStats,
    "/uncached": uncachedStats,
  };
  let origin = "";
  const listening = Promise.withResolvers<void>();
  const server = Deno.serve({
    hostname: "127.0.0.1",
    port: 0,
    onListen({ hostname, port }): void {
      origin = `http://${hostname}:${port}`;
      listening.resolve();
    },
  }, async (req: Request): Promise<Response> => {
    const { pathname } = new URL(req.url);
    for (const [prefix, compute] of Object.entries(routes)) {
      const file = fileFromRoute(prefix, pathname);
      if (file === null) continue;
      if (!known.has(file)) break;
      try {
        return new Response(JSON.stringify(await compute(file)), {
          headers: { "content-type": "application/json" },
        });
      } catch (e) {
        return new Response(`${e instanceof Error ? e.stack : String(e)}\n`, { status: 500 });
      }
    }
    return new Response("not found\n", { status: 404 });
  });

  try {
    await listening.promise;
    console.log(`server: ${origin}  (routes /cached/<path> and /uncached/<path>)\n`);

    // Reference bodies: each file once, uncached, before anything is measured.
    const warm = await runLoad(
      workload.files,
      (file) => origin + routeFor("/uncached", file),
      options.concurrency,
      options.budgetMs,
      ({ file, status, body }) => {
        if (status === 200) workload.reference.set(file, body);
        else verifier.check("reference", file, status, body);
      },
    );
    if (warm.timedOut || workload.reference.size !== workload.files.length) {
      throw new Error("could not compute a reference response for every file");
    }

    // The cached route starts empty; the counters of the run are those of cacheInfo().
    cachedStats.cacheClear();
    cachedComputations = 0;
    const cachedLoad = await runLoad(
      workload.stream,
      (file) => origin + routeFor("/cached", file),
      options.concurrency,
      options.budgetMs,
      ({ file, status, body }) => verifier.check("cached", file, status, body),
    );
    const info = cachedStats.cacheInfo();

    uncachedComputations = 0;
    const uncachedLoad = await runLoad(
      workload.stream,
      (file) => origin + routeFor("/uncached", file),
      options.concurrency,
      options.budgetMs,
      ({ file, status, body }) => verifier.check("uncached", file, status, body),
    );

    const results: ModeResult[] = [
      { mode: "cached", load: cachedLoad, hits: info.hits, misses: info.misses },
      { mode: "uncached", load: uncachedLoad, hits: 0, misses: uncachedComputations },
    ];
    console.log(table(RESULT_HEADER, resultRows(results)));
    const speedup = uncachedLoad.elapsedMs / cachedLoad.elapsedMs;
    console.log(
      `\ncached is ${speedup.toFixed(1)}x faster in total; the function ran ` +
        `${cachedComputations} times instead of ${uncachedComputations}`,
    );
    console.log(`cacheInfo(): ${JSON.stringify(info)}`);
    for (const [mode, load] of [["cached", cachedLoad], ["uncached", uncachedLoad]] as const) {
      if (load.timedOut) {
        console.log(`note: the ${mode} run hit its ${options.budgetMs / 1000} s budget`);
      }
    }

    // Counters must agree with what was sent (joining a pending call is a hit).
    const problems: string[] = [];
    if (info.hits + info.misses !== cachedLoad.completed) {
      problems.push(
        `hits + misses = ${info.hits + info.misses}, but ${cachedLoad.completed} calls were made`,
      );
    }
    if (info.misses !== cachedComputations) {
      problems.push(`misses = ${info.misses}, but the function ran ${cachedComputations} times`);
    }
    if (info.maxSize !== workload.maxSize) {
      problems.push(`maxSize = ${info.maxSize}, expected ${workload.maxSize}`);
    }
    if (info.currentSize > workload.maxSize) {
      problems.push(`currentSize = ${info.currentSize} exceeds maxSize ${workload.maxSize}`);
    }
    for (const p of problems) console.error(`COUNTER MISMATCH: ${p}`);
    return problems.length === 0;
  } finally {
    await server.shutdown();
  }
}

/** A spawned `_demo_server.ts` process. */
interface ChildServer {
  pid: number;
  port: number;
  process: Deno.ChildProcess;
  stdin: WritableStreamDefaultWriter<Uint8Array>;
  /** Requests sent to it, and how many of its answers were computed by another process. */
  sent: number;
  computedElsewhere: number;
}

async function readFirstLine(stream: ReadableStream<Uint8Array>): Promise<string> {
  const reader = stream.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  while (!text.includes("\n")) {
    const { value, done } = await reader.read();
    if (done) break;
    text += value;
  }
  reader.releaseLock();
  return text.split("\n", 1)[0] ?? "";
}

async function startChild(config: SharedServerConfig): Promise<ChildServer> {
  const process = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-read",
      "--allow-net=127.0.0.1",
      "--allow-ffi",
      "--allow-env",
      `${ROOT}/scripts/_demo_server.ts`,
    ],
    cwd: ROOT,
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const stdin = process.stdin.getWriter();
  await stdin.write(new TextEncoder().encode(`${JSON.stringify(config)}\n`));
  let timer: ReturnType<typeof setTimeout> | undefined;
  const line = await Promise.race([
    readFirstLine(process.stdout),
    new Promise<string>((resolve) => (timer = setTimeout(() => resolve(""), 15_000))),
  ]);
  clearTimeout(timer);
  let hello: { pid?: unknown; port?: unknown } = {};
  try {
    hello = JSON.parse(line);
  } catch { /* reported below */ }
  if (typeof hello.port !== "number" || typeof hello.pid !== "number") {
    await stdin.close().catch(() => {});
    const status = await process.status;
    throw new Error(`a demo server process did not start (exit code ${status.code})`);
  }
  return {
    pid: hello.pid,
    port: hello.port,
    process,
    stdin,
    sent: 0,
    computedElsewhere: 0,
  };
}

async function stopChild(child: ChildServer): Promise<number> {
  await child.stdin.close().catch(() => {});
  await child.process.stdout.cancel().catch(() => {});
  const killer = setTimeout(() => child.process.kill("SIGKILL"), 5_000);
  const { code } = await child.process.status;
  clearTimeout(killer);
  return code;
}

/**
 * Multi-process part: three server processes wrap the same computation with
 * `cache({ backend: "shared", name: "warp-demo", dir })`; the same request stream goes
 * round-robin across them. Each response says which process computed its value, so the
 * table shows the hits that one process got from work done in another.
 */
async function runSharedDemo(
  workload: Workload,
  options: DemoOptions,
  verifier: Verifier,
): Promise<boolean> {
  const processes = 3;
  const dir = await Deno.makeTempDir({
    prefix: "warp-demo-",
    ...(Deno.build.os === "linux" && await exists("/dev/shm") ? { dir: "/dev/shm" } : {}),
  });
  const unsupported = sharedSupport(dir);
  if (unsupported !== null) {
    console.log(`\nshared-backend demo skipped: ${unsupported}`);
    await Deno.remove(dir, { recursive: true }).catch(() => {});
    return true;
  }
  const config: SharedServerConfig = {
    root: ROOT,
    files: workload.files,
    name: "warp-demo",
    dir,
    maxSize: workload.maxSize,
    ttl: options.ttl,
  };
  const children: ChildServer[] = [];
  try {
    const started = await Promise.allSettled(
      Array.from({ length: processes }, () => startChild(config)),
    );
    for (const s of started) if (s.status === "fulfilled") children.push(s.value);
    const failed = started.find((s) => s.status === "rejected");
    if (failed) throw (failed as PromiseRejectedResult).reason;

    console.log(
      `\n== shared backend: ${processes} server processes, one cache ` +
        `(name "warp-demo", dir ${dir}, maxSize ${workload.maxSize}) ==\n`,
    );
    const load = await runLoad(
      workload.stream,
      (file, i) => {
        const child = children[i % children.length]!;
        child.sent++;
        return `http://127.0.0.1:${child.port}${routeFor("/file", file)}`;
      },
      options.concurrency,
      options.budgetMs,
      ({ index, file, status, body, headers }) => {
        verifier.check("shared", file, status, body);
        const child = children[index % children.length]!;
        const by = Number(headers.get("x-computed-by"));
        if (status === 200 && by !== child.pid) child.computedElsewhere++;
      },
    );

    const stats: SharedServerStats[] = [];
    for (const child of children) {
      const res = await fetch(`http://127.0.0.1:${child.port}/stats`);
      stats.push(await res.json() as SharedServerStats);
    }
    const rows = children.map((child, i) => {
      const s = stats[i]!;
      const hits = s.requests - s.computations;
      return [
        `pid ${child.pid} :${child.port}`,
        String(s.requests),
        String(s.computations),
        String(hits),
        `${((100 * hits) / Math.max(1, s.requests)).toFixed(1)}%`,
        String(child.computedElsewhere),
      ];
    });
    console.log(table(
      ["process", "requests", "computed here", "hits", "hit ratio", "computed by another process"],
      rows,
    ));
    const totalComputed = stats.reduce((n, s) => n + s.computations, 0);
    const elsewhere = children.reduce((n, c) => n + c.computedElsewhere, 0);
    const info = stats[0]!.info;
    console.log(
      `\n${load.completed} requests in ${(load.elapsedMs / 1000).toFixed(2)} s ` +
        `(p50 ${fmtMs(percentile(load.latencies, 50))} ms, ` +
        `p99 ${fmtMs(percentile(load.latencies, 99))} ms); the function ran ` +
        `${totalComputed} times in all; ${elsewhere} responses were computed by another process`,
    );
    console.log(`cacheInfo() (totals of all processes): ${JSON.stringify(info)}`);

    const problems: string[] = [];
    if (elsewhere === 0) problems.push("no process ever hit a value computed by another one");
    if (info.hits + info.misses !== load.completed) {
      problems.push(
        `shared hits + misses = ${info.hits + info.misses}, but ${load.completed} calls were made`,
      );
    }
    for (const p of problems) console.error(`SHARED CACHE PROBLEM: ${p}`);
    return problems.length === 0;
  } finally {
    for (const child of children) {
      const code = await stopChild(child);
      if (code !== 0) console.error(`demo server pid ${child.pid} exited with code ${code}`);
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

/** `null` if this build of the module can open a shared cache in `dir`, else why not. */
function sharedSupport(dir: string): string | null {
  if (Deno.build.os === "windows") return "the shared backend is not available on Windows";
  try {
    const probe = cache({ backend: "shared", name: "warp-demo-probe", dir })(
      (x: number): number => x,
    );
    probe(1);
    probe.cacheClear();
    return null;
  } catch (e) {
    return e instanceof Error ? e.message : String(e);
  }
}

async function main(): Promise<number> {
  const options = parseOptions(Deno.args);
  const watchdog = setTimeout(() => {
    console.error("demo: still running after 150 s; giving up");
    Deno.exit(3);
  }, 150_000);
  Deno.unrefTimer(watchdog);

  const libPath = await ensureNativeLibrary();
  const native = loadNative() !== null;
  console.log(
    native ? `engine: native (${libPath})` : `engine: TypeScript fallback (${nativeLoadError()})`,
  );

  const files = await listSourceFiles(ROOT);
  if (files.length < 8) throw new Error(`only ${files.length} source files found under ${ROOT}`);
  const stamps = new Map<string, FileStamp>();
  for (const f of files) {
    const stamp = await stampOf(ROOT, f);
    if (stamp) stamps.set(f, stamp);
  }
  const workload: Workload = {
    files,
    stamps,
    stream: zipfStream(files, options.requests, options.alpha, options.seed),
    maxSize: Math.max(2, Math.floor(files.length / 4)),
    reference: new Map(),
  };
  console.log(
    `input: ${files.length} source files (*.ts, *.rs, *.md) of ${ROOT}; ` +
      `${options.requests} requests, Zipf(${options.alpha}) over them, seed ${options.seed}, ` +
      `${new Set(workload.stream).size} distinct; ${options.concurrency} in flight; ` +
      `cache({ maxSize: ${workload.maxSize}, ttl: ${options.ttl} })`,
  );

  const verifier = new Verifier(workload);
  let ok = await runMemoryDemo(workload, options, verifier);

  if (options.shared) ok = (await runSharedDemo(workload, options, verifier)) && ok;
  if (options.flaky) ok = (await runFlakyDemo()) && ok;
  if (options.remote) ok = (await runRemoteDemo()) && ok;
  if (options.tags && native) ok = (await runTagsDemo()) && ok;

  const allRight = await verifier.settle();
  if (verifier.changed.size > 0) {
    console.log(
      `\nnote: not counted, edited during the run: ${[...verifier.changed].join(", ")}`,
    );
  }
  if (!allRight) {
    console.error(`\nWRONG RESPONSES (${verifier.failures.length}):`);
    for (const { mode, file, detail } of verifier.failures.slice(0, 20)) {
      console.error(`  [${mode}] ${file}: ${detail}`);
    }
  } else {
    console.log(
      `\nverified: all ${verifier.checked} responses equal the uncached result for their file`,
    );
  }
  return allRight && ok ? 0 : 1;
}

if (import.meta.main) {
  // No Deno.exit() on success: the process ends by itself once the servers are shut down.
  try {
    Deno.exitCode = await main();
  } catch (e) {
    console.error(`demo failed: ${e instanceof Error ? e.message : String(e)}`);
    Deno.exitCode = 1;
  }
}
