/**
 * The work and the load generator shared by `scripts/demo.ts` and its child server
 * `scripts/_demo_server.ts`: the repository's source files as input, a genuinely slow
 * computation over one of them, a seeded Zipf request stream, and a bounded HTTP client.
 *
 * @module
 */

/** Repository root (this file lives in `<root>/scripts/`). */
export const ROOT: string = decodeURIComponent(new URL("..", import.meta.url).pathname)
  .replace(/\/$/, "");

/** SHA-256 rounds per computation: ~5-20 ms on a 2-core machine, whatever the file size. */
export const HASH_ROUNDS = 300;

/** Bytes of the file mixed into each round (a window sliding over the whole file). */
const WINDOW = 4096;

/** Extensions of the files served by the demo. */
const EXTENSIONS = [".ts", ".rs", ".md"];

/** Directories (relative to the root) never walked. */
const EXCLUDED_DIRS = new Set(["rust/target", "node_modules", ".git"]);

/** Files larger than this are left out (the demo is about the cache, not I/O). */
const MAX_FILE_BYTES = 1 << 20;

/** The result of {@linkcode fileStats}, the body of every response. */
export interface FileStats {
  path: string;
  bytes: number;
  lines: number;
  words: number;
  rounds: number;
  sha256: string;
}

/** Size and modification time of a file, to tell an edit during the run from a cache bug. */
export interface FileStamp {
  size: number;
  mtime: number;
}

/**
 * The repository's `*.ts`, `*.rs` and `*.md` files, as `/`-separated paths relative to
 * `root`, sorted, without `rust/target`, `node_modules` and `.git`.
 */
export async function listSourceFiles(root: string = ROOT): Promise<string[]> {
  const out: string[] = [];
  async function walk(rel: string): Promise<void> {
    const abs = rel ? `${root}/${rel}` : root;
    for await (const entry of Deno.readDir(abs)) {
      const child = rel ? `${rel}/${entry.name}` : entry.name;
      if (entry.isDirectory) {
        if (!EXCLUDED_DIRS.has(child) && entry.name !== "node_modules") await walk(child);
      } else if (entry.isFile && EXTENSIONS.some((ext) => entry.name.endsWith(ext))) {
        const { size } = await Deno.stat(`${root}/${child}`);
        if (size <= MAX_FILE_BYTES) out.push(child);
      }
    }
  }
  await walk("");
  return out.sort();
}

/** Size and mtime of `rel` now (`null` if it is gone). */
export async function stampOf(root: string, rel: string): Promise<FileStamp | null> {
  try {
    const info = await Deno.stat(`${root}/${rel}`);
    return { size: info.size, mtime: info.mtime?.getTime() ?? 0 };
  } catch {
    return null;
  }
}

function hex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

/**
 * The slow computation: reads `rel` under `root`, digests it, then stretches the digest with
 * {@linkcode HASH_ROUNDS} SHA-256 rounds, each over the previous digest and the next 4 KiB
 * window of the file (so every round costs about the same whatever the file size), and
 * counts lines, words and bytes. Deterministic for a given file content.
 */
export async function fileStats(root: string, rel: string): Promise<FileStats> {
  const bytes = await Deno.readFile(`${root}/${rel}`);
  let digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
  const block = new Uint8Array(32 + Math.min(WINDOW, bytes.length));
  const windowLen = block.length - 32;
  let offset = 0;
  for (let i = 0; i < HASH_ROUNDS; i++) {
    block.set(digest, 0);
    const head = Math.min(windowLen, bytes.length - offset);
    block.set(bytes.subarray(offset, offset + head), 32);
    block.set(bytes.subarray(0, windowLen - head), 32 + head);
    offset = bytes.length ? (offset + windowLen) % bytes.length : 0;
    digest = new Uint8Array(await crypto.subtle.digest("SHA-256", block));
  }
  const text = new TextDecoder().decode(bytes);
  const lines = text.length === 0 ? 0 : text.split("\n").length - (text.endsWith("\n") ? 1 : 0);
  const words = text.split(/\s+/).filter((w) => w.length > 0).length;
  return { path: rel, bytes: bytes.length, lines, words, rounds: HASH_ROUNDS, sha256: hex(digest) };
}

/** Mulberry32: a small seeded PRNG, so that every run sends the same request stream. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/**
 * `count` keys drawn from `keys` with a Zipf(`alpha`) distribution over ranks, seeded.
 * Ranks are assigned by a seeded shuffle, so the popular files are not simply the first
 * ones in alphabetical order.
 */
export function zipfStream(
  keys: readonly string[],
  count: number,
  alpha: number,
  seed: number,
): string[] {
  const rand = mulberry32(seed);
  const ranked = [...keys];
  for (let i = ranked.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [ranked[i], ranked[j]] = [ranked[j]!, ranked[i]!];
  }
  const cdf: number[] = [];
  let total = 0;
  for (let k = 1; k <= ranked.length; k++) {
    total += 1 / Math.pow(k, alpha);
    cdf.push(total);
  }
  const out: string[] = [];
  for (let i = 0; i < count; i++) {
    const u = rand() * total;
    let lo = 0;
    let hi = cdf.length - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cdf[mid]! < u) lo = mid + 1;
      else hi = mid;
    }
    out.push(ranked[lo]!);
  }
  return out;
}

/** URL path of `rel` under `prefix` (each segment percent-encoded). */
export function routeFor(prefix: string, rel: string): string {
  return `${prefix}/${rel.split("/").map(encodeURIComponent).join("/")}`;
}

/** The file path that `pathname` names under `prefix`, or `null` if it is not under it. */
export function fileFromRoute(prefix: string, pathname: string): string | null {
  if (!pathname.startsWith(`${prefix}/`)) return null;
  try {
    return decodeURIComponent(pathname.slice(prefix.length + 1));
  } catch {
    return null;
  }
}

/** One response seen by {@linkcode runLoad}. */
export interface LoadResponse {
  index: number;
  file: string;
  status: number;
  body: string;
  headers: Headers;
  latencyMs: number;
}

/** What {@linkcode runLoad} measured. */
export interface LoadResult {
  /** Requests completed (fewer than the stream when the deadline cut the run short). */
  completed: number;
  /** Latency of each completed request, ms. */
  latencies: number[];
  /** Wall time of the whole run, ms. */
  elapsedMs: number;
  /** Whether the deadline stopped the run early. */
  timedOut: boolean;
}

/**
 * Sends `stream` (one request per file) with at most `concurrency` requests in flight,
 * stopping to issue new ones after `budgetMs`. `urlFor(file, i)` gives the URL of request
 * `i`; `onResponse` sees each response (its body already read).
 */
export async function runLoad(
  stream: readonly string[],
  urlFor: (file: string, index: number) => string,
  concurrency: number,
  budgetMs: number,
  onResponse: (response: LoadResponse) => void,
): Promise<LoadResult> {
  const start = performance.now();
  const deadline = start + budgetMs;
  const latencies: number[] = [];
  let next = 0;
  let timedOut = false;
  async function worker(): Promise<void> {
    while (next < stream.length) {
      if (performance.now() > deadline) {
        timedOut = true;
        return;
      }
      const index = next++;
      const file = stream[index]!;
      const t0 = performance.now();
      const res = await fetch(urlFor(file, index), { signal: AbortSignal.timeout(10_000) });
      const body = await res.text();
      const latencyMs = performance.now() - t0;
      latencies.push(latencyMs);
      onResponse({ index, file, status: res.status, body, headers: res.headers, latencyMs });
    }
  }
  await Promise.all(Array.from({ length: concurrency }, () => worker()));
  return {
    completed: latencies.length,
    latencies,
    elapsedMs: performance.now() - start,
    timedOut,
  };
}

/** Nearest-rank percentile of `values` (ms), `NaN` when empty. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[Math.min(rank, sorted.length) - 1]!;
}

/** Renders rows as a left/right aligned text table (numbers right-aligned). */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? "").length)));
  const line = (cells: readonly string[]): string =>
    cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join("  ");
  const rule = widths.map((w) => "-".repeat(w)).join("  ");
  return [line(header), rule, ...rows.map(line)].join("\n");
}
