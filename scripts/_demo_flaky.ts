/**
 * The stale-while-revalidate part of `deno task demo`: a flaky, slow upstream HTTP service
 * (`Deno.serve` on 127.0.0.1) behind a cached client, against the same client uncached.
 *
 * The upstream answers each quote request in ~10 ms, except that once it turns flaky,
 * one call in 4 fails with HTTP 503 and one in 6 stalls for 2 s (a fixed pattern, so every
 * run shows both). The cached client is
 * `cache({ ttl: 300, staleWhileRevalidate: 30_000, timeout: 1_000 })`: an entry older than
 * 300 ms is served stale at once while one background refresh per key asks the upstream;
 * a failed or stalled refresh keeps the stale value. The table shows the errors and the
 * latency that reach the client with and without the cache.
 *
 * @module
 */

import { cache, cacheContext } from "../mod.ts";
import { percentile, table } from "./_demo_work.ts";

/** A quote of the upstream service. */
interface Quote {
  symbol: string;
  price: number;
  version: number;
}

/** What the upstream did. */
interface UpstreamCounts {
  calls: number;
  errors: number;
  stalls: number;
}

/** Ms that a stalled upstream call takes. */
const STALL_MS = 2_000;

/** Starts the upstream: healthy until `flaky.on`, then failing and stalling by pattern. */
function startUpstream(
  flaky: { on: boolean },
  counts: UpstreamCounts,
): { url: string; server: Deno.HttpServer<Deno.NetAddr> } {
  let version = 0;
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen: () => {} },
    async (req) => {
      const n = ++counts.calls;
      const symbol = new URL(req.url).pathname.slice(1);
      if (flaky.on && n % 4 === 0) {
        counts.errors++;
        await new Promise((r) => setTimeout(r, 5));
        return new Response("upstream overloaded", { status: 503 });
      }
      const stall = flaky.on && n % 6 === 1;
      if (stall) counts.stalls++;
      await new Promise((r) => setTimeout(r, stall ? STALL_MS : 10));
      const quote: Quote = {
        symbol,
        price: 100 + (symbol.length * 7 + n) % 50,
        version: ++version,
      };
      return Response.json(quote);
    },
  );
  return { url: `http://127.0.0.1:${server.addr.port}`, server };
}

/** One client's view of a run. */
interface ClientRun {
  requests: number;
  errors: number;
  latencies: number[];
}

/** Sends requests for `symbols` round-robin from `clients` loops for `ms`. */
async function drive(
  get: (symbol: string) => Promise<Quote>,
  symbols: readonly string[],
  clients: number,
  ms: number,
): Promise<ClientRun> {
  const run: ClientRun = { requests: 0, errors: 0, latencies: [] };
  const end = performance.now() + ms;
  let next = 0;
  async function client(): Promise<void> {
    while (performance.now() < end) {
      const symbol = symbols[next++ % symbols.length]!;
      const t = performance.now();
      try {
        const quote = await get(symbol);
        if (quote.symbol !== symbol) throw new Error(`wrong quote for ${symbol}`);
      } catch {
        run.errors++;
      }
      run.latencies.push(performance.now() - t);
      run.requests++;
      await new Promise((r) => setTimeout(r, 2));
    }
  }
  await Promise.all(Array.from({ length: clients }, client));
  return run;
}

/**
 * Runs the part and prints its table.
 *
 * @param seconds Length of each measured run.
 * @returns Whether the cache kept every upstream error from the client while the uncached
 * client saw some, and both errors and stalls happened.
 */
export async function runFlakyDemo(seconds = 4): Promise<boolean> {
  const symbols = ["WARP", "SIEVE", "DENO", "RUST", "MMAP", "FUTEX", "TTL", "SWR"];
  const flaky = { on: false };
  const counts: UpstreamCounts = { calls: 0, errors: 0, stalls: 0 };
  const { url, server } = startUpstream(flaky, counts);
  console.log(
    `\n--- stale-while-revalidate: a flaky upstream (1 call in 4 fails with 503, 1 in 6 stalls ${
      STALL_MS / 1000
    } s), ${symbols.length} symbols, 4 clients, ${seconds} s per run`,
  );

  async function fetchQuote(symbol: string, signal?: AbortSignal): Promise<Quote> {
    const res = await fetch(`${url}/${symbol}`, signal ? { signal } : {});
    if (!res.ok) throw new Error(`upstream: HTTP ${res.status}: ${await res.text()}`);
    return await res.json() as Quote;
  }
  const quote = cache({ ttl: 300, staleWhileRevalidate: 30_000, timeout: 1_000 })(
    (symbol: string): Promise<Quote> => fetchQuote(symbol, cacheContext()?.signal),
  );

  const rows: string[][] = [];
  let ok = true;
  try {
    for (const symbol of symbols) await quote(symbol); // warm, while the upstream is healthy
    flaky.on = true;
    for (const mode of ["cached", "uncached"] as const) {
      const before = { ...counts };
      const info0 = quote.cacheInfo();
      const run = await drive(
        mode === "cached" ? quote : (s) => fetchQuote(s),
        symbols,
        4,
        seconds * 1000,
      );
      const info = quote.cacheInfo();
      const stale = mode === "cached" ? (info.staleHits ?? 0) - (info0.staleHits ?? 0) : 0;
      const refreshes = mode === "cached" ? (info.refreshes ?? 0) - (info0.refreshes ?? 0) : 0;
      rows.push([
        mode,
        String(run.requests),
        String(run.errors),
        percentile(run.latencies, 50).toFixed(1),
        percentile(run.latencies, 99).toFixed(1),
        Math.max(...run.latencies).toFixed(0),
        String(counts.calls - before.calls),
        String(counts.errors - before.errors),
        String(counts.stalls - before.stalls),
        String(stale),
        String(refreshes),
      ]);
      if (mode === "cached") {
        ok &&= run.errors === 0 && stale > 0 && counts.errors > before.errors &&
          counts.stalls > before.stalls;
      } else {
        ok &&= run.errors > 0;
      }
    }
  } finally {
    quote[Symbol.dispose]();
    // Stalled upstream calls end within STALL_MS; the server waits for them.
    await server.shutdown();
  }
  console.log(
    table([
      "client",
      "requests",
      "errors seen",
      "p50 ms",
      "p99 ms",
      "max ms",
      "upstream calls",
      "upstream 503",
      "upstream stalls",
      "stale hits",
      "refreshes",
    ], rows),
  );
  console.log(
    ok
      ? "the cache served stale quotes while the upstream failed or stalled: no error reached a client"
      : "UNEXPECTED: see the table (the cached client must see no error; the run must show errors and stalls)",
  );
  return ok;
}
