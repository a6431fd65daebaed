/**
 * The command line of `@warp/cache`: lists, inspects, clears, removes and watches the
 * shared caches of a directory.
 *
 * ```sh
 * deno run -A jsr:@warp/cache/cli ls
 * deno run -A jsr:@warp/cache/cli info render --json
 * deno run -A jsr:@warp/cache/cli watch --dir /srv/caches
 * ```
 *
 * Commands (options follow the command): `ls`, `info <name>`, `clear <name>`,
 * `rm <name>`, `watch`; `--dir <path>` (default: the shared backend's directory,
 * `/dev/shm/warp_cache-<uid>` on Linux), `--json`, `--help`. Exit codes: 0 done, 1 a cache
 * not found or an operation that failed, 2 a usage error (usage on stderr).
 *
 * Reading never changes a file: `ls`, `info` and `watch` read through
 * `warp_shm_inspect` (read-only, see `_shared_inspect.ts`). `clear` opens the cache with
 * the sizes of its file (so nothing is recreated) and clears it as `cacheClear()` does,
 * for every process. `rm` unlinks the file and its `.large` folder: processes that have
 * it open keep their mapping and go on with the old file, which no new process sees and
 * which the system frees when the last of them closes it; a new open creates a fresh file.
 *
 * @module
 */

import { Command, CommanderError, InvalidArgumentError } from "commander";
import { defaultSharedDir, SharedStore } from "../store/shared_store.ts";
import {
  type CacheFileInfo,
  cacheNameOf,
  inspectCacheFile,
  type Inspection,
  isCacheFileName,
  resolveCacheFile,
} from "./_shared_inspect.ts";
import { formatBytes, formatRatio, printable, sparkline } from "./_format.ts";

/** One row of `ls`: a cache file and its verdict. */
interface Row {
  name: string;
  path: string;
  inspection: Inspection;
}

const encoder = new TextEncoder();

/** Where the CLI writes: stdout and stderr, replaceable for embedding. */
export interface CliOutput {
  /** Writes `text` to standard output. */
  out(text: string): void;
  /** Writes `text` to standard error. */
  err(text: string): void;
}

const STDIO: CliOutput = {
  out: (text) => writeAll(Deno.stdout, text),
  err: (text) => writeAll(Deno.stderr, text),
};

function writeAll(w: { writeSync(p: Uint8Array): number }, text: string): void {
  let bytes = encoder.encode(text);
  while (bytes.length > 0) bytes = bytes.subarray(w.writeSync(bytes));
}

/** A failure that ends the command with exit code 1 and `message` on stderr. */
class Failure extends Error {}

/** The files `*.warp` of `dir`, sorted; a missing directory has none. */
function cacheFiles(dir: string): string[] {
  const names: string[] = [];
  try {
    for (const e of Deno.readDirSync(dir)) {
      if (isCacheFileName(e.name) && !e.isDirectory) names.push(e.name);
    }
  } catch (e) {
    if (e instanceof Deno.errors.NotFound) return [];
    throw new Failure(`Cannot list ${dir}: ${(e as Error).message}`);
  }
  return names.sort();
}

function rows(dir: string): Row[] {
  return cacheFiles(dir).map((file) => {
    const path = `${dir}/${file}`;
    return { name: cacheNameOf(file), path, inspection: inspectCacheFile(path) };
  });
}

/** Lays `table` (a header row first) out in columns: the first left-aligned, the rest
 * right-aligned; one line per row. */
function layoutLines(table: string[][]): string[] {
  const widths: number[] = [];
  for (const row of table) {
    row.forEach((cell, i) => widths[i] = Math.max(widths[i] ?? 0, [...cell].length));
  }
  return table.map((row) => {
    if (row.length < widths.length) {
      // A file that is not a usable cache: its name, then its status.
      return [row[0]!.padEnd(widths[0]!), ...row.slice(1)].join("  ").trimEnd();
    }
    return row.map((cell, i) => {
      const pad = " ".repeat(widths[i]! - [...cell].length);
      return i === 0 ? cell + pad : pad + cell;
    }).join("  ").trimEnd();
  });
}

/** {@linkcode layoutLines}, as text. */
function layout(table: string[][]): string {
  return layoutLines(table).join("\n") + "\n";
}

/** Columns of a `watch` frame: it fits a terminal of this width. */
const WATCH_WIDTH = 100;

/**
 * Shortens the names (first cells) of `table`'s rows after the header so that its rows fit
 * {@linkcode WATCH_WIDTH} columns (a name keeps at least 12, ending in `…` when cut).
 */
function fitNames(table: string[][]): void {
  const widths: number[] = [];
  for (const row of table) {
    row.forEach((cell, i) => {
      if (i > 0) widths[i] = Math.max(widths[i] ?? 0, [...cell].length);
    });
  }
  const others = widths.reduce((a, w) => a + (w ?? 0) + 2, 0);
  const room = Math.max(12, WATCH_WIDTH - others);
  for (const row of table.slice(1)) {
    const chars = [...row[0]!];
    if (chars.length > room) row[0] = chars.slice(0, room - 1).join("") + "…";
  }
}

/** The first columns of `ls` and `watch`: a cache's name, sizes and counters. */
const COUNT_HEADER = ["NAME", "ENTRIES", "CAPACITY", "BYTES", "HITS", "MISSES", "HIT%"];

/** The cells of {@linkcode COUNT_HEADER} for cache `name`. */
function countCells(name: string, f: CacheFileInfo): string[] {
  return [
    name,
    `${f.entries}`,
    `${f.maxSize}`,
    `${formatBytes(f.bytes)} / ${formatBytes(f.maxBytes)}`,
    `${f.hits}`,
    `${f.misses}`,
    formatRatio(f.hitRatio),
  ];
}

const LS_HEADER = [...COUNT_HEADER, "OVERSIZE", "STALE", "FILE"];

function lsTable(list: Row[]): string {
  const table = [LS_HEADER];
  const errors: string[] = [];
  for (const r of list) {
    const i = r.inspection;
    if (i.status !== "ok") {
      table.push([printable(r.name), `(${i.status})`]);
      errors.push(`  ${printable(r.name)}: ${printable(i.error)}`);
      continue;
    }
    const f = i.info;
    table.push([
      ...countCells(printable(r.name), f),
      `${f.oversizeSkips}`,
      `${f.staleHits}`,
      formatBytes(f.fileSize),
    ]);
  }
  let text = layout(table);
  if (errors.length > 0) text += `\nNot usable:\n${errors.join("\n")}\n`;
  return text;
}

/** The JSON object of one cache: its name, path, status, and info or error. */
function jsonOf(r: Row): Record<string, unknown> {
  const i = r.inspection;
  if (i.status === "ok") return { name: r.name, path: r.path, status: "ok", ...i.info };
  return { name: r.name, path: r.path, ...i };
}

/** The default directory for the usage text (the reason it is unknown, if it is). */
function defaultDirLabel(): string {
  try {
    return defaultSharedDir();
  } catch {
    return "the shared backend's, named after the user id (needs --allow-ffi)";
  }
}

function dirOf(opts: { dir?: string }): string {
  const dir = opts.dir ?? defaultSharedDir();
  return dir.length > 1 ? dir.replace(/\/+$/, "") : dir;
}

function ls(opts: Options, io: CliOutput): void {
  const list = rows(dirOf(opts));
  if (opts.json) {
    io.out(JSON.stringify(list.map(jsonOf), null, 2) + "\n");
  } else if (list.length === 0) {
    io.out(`No shared caches in ${printable(dirOf(opts))}\n`);
  } else {
    io.out(lsTable(list));
  }
}

/** The row of the cache `name`, or a {@linkcode Failure} when there is no such file. */
function find(opts: Options, name: string): Row {
  const dir = dirOf(opts);
  const path = resolveCacheFile(dir, name);
  const file = path.slice(path.lastIndexOf("/") + 1);
  const inspection = inspectCacheFile(path);
  if (inspection.status === "unreadable") {
    try {
      Deno.lstatSync(path);
    } catch {
      throw new Failure(`No shared cache named "${name}" in ${dir} (no file ${file})`);
    }
  }
  return { name: cacheNameOf(file), path, inspection };
}

function info(name: string, opts: Options, io: CliOutput): void {
  const row = find(opts, name);
  const i = row.inspection;
  if (opts.json) io.out(JSON.stringify(jsonOf(row), null, 2) + "\n");
  if (i.status !== "ok") {
    throw new Failure(`Cannot read shared cache "${name}": ${i.status}: ${i.error}`);
  }
  if (opts.json) return;
  const f = i.info;
  const large = largeFolderSize(row.path);
  const lines: [string, string][] = [
    ["name", printable(row.name)],
    ["file", printable(row.path)],
    ["format version", `${f.formatVersion}`],
    ["file size", `${formatBytes(f.fileSize)} (${f.fileSize} bytes)`],
    ["in use", f.inUse === null ? "unknown" : f.inUse ? "yes" : "no"],
    ["entries", `${f.entries}`],
    ["capacity (maxSize)", `${f.maxSize}`],
    ["bytes", `${formatBytes(f.bytes)} (${f.bytes} bytes)`],
    ["maxBytes", `${formatBytes(f.maxBytes)} (${f.maxBytes} bytes)`],
    ["maxKeySize", `${f.maxKeySize} bytes`],
    ["maxValueSize", `${f.maxValueSize} bytes`],
    ["hits", `${f.hits}`],
    ["misses", `${f.misses}`],
    ["hit ratio", formatRatio(f.hitRatio)],
    ["oversize skips", `${f.oversizeSkips}`],
    ["stale hits", `${f.staleHits}`],
    ["refreshes", `${f.refreshes}`],
    ["evictions", `${f.evictions}`],
    ["large values", large === null ? "none" : `${large.files} files, ${formatBytes(large.bytes)}`],
  ];
  if (!f.consistent) {
    lines.push(["note", "read while a writer was active (a writer may be stopped)"]);
  }
  if (f.locked) lines.push(["write lock", "held"]);
  const width = Math.max(...lines.map(([k]) => k.length));
  io.out(lines.map(([k, v]) => `${k.padEnd(width)}  ${v}`).join("\n") + "\n");
}

function largeFolderSize(path: string): { files: number; bytes: number } | null {
  try {
    let files = 0;
    let bytes = 0;
    for (const e of Deno.readDirSync(`${path}.large`)) {
      if (!e.isFile || !e.name.endsWith(".v")) continue;
      files++;
      bytes += Deno.statSync(`${path}.large/${e.name}`).size;
    }
    return { files, bytes };
  } catch {
    return null;
  }
}

function clear(name: string, opts: Options, io: CliOutput): void {
  const row = find(opts, name);
  const i = row.inspection;
  if (i.status !== "ok") {
    throw new Failure(`Cannot clear shared cache "${name}": ${i.status}: ${i.error}`);
  }
  const f = i.info;
  const file = row.path.slice(row.path.lastIndexOf("/") + 1);
  // The file's own sizes: the open neither adopts nor recreates anything.
  const store = new SharedStore(
    { dir: dirOf(opts), file },
    f.maxSize,
    f.maxKeySize,
    f.maxValueSize,
    undefined,
    "warp-cache clear",
    f.maxBytes,
  );
  try {
    store.clear();
  } finally {
    store.close();
  }
  if (opts.json) {
    io.out(JSON.stringify({ name: row.name, path: row.path, cleared: f.entries }) + "\n");
  } else {
    io.out(`Cleared ${printable(row.name)}: ${f.entries} entries removed, counters reset\n`);
  }
}

function rm(name: string, opts: Options, io: CliOutput): void {
  const row = find(opts, name);
  const i = row.inspection;
  if (i.status === "foreign") {
    throw new Failure(`Refusing to remove ${row.path}: ${i.error}`);
  }
  if (i.status === "unreadable") {
    throw new Failure(`Refusing to remove ${row.path}: ${i.error}`);
  }
  const inUse = i.status === "ok" && i.info.inUse === true;
  try {
    Deno.removeSync(row.path);
  } catch (e) {
    throw new Failure(`Cannot remove ${row.path}: ${(e as Error).message}`);
  }
  let large = false;
  try {
    Deno.removeSync(`${row.path}.large`, { recursive: true });
    large = true;
  } catch {
    // none
  }
  if (opts.json) {
    io.out(JSON.stringify({ name: row.name, path: row.path, removed: true, large, inUse }) + "\n");
    return;
  }
  io.out(
    `Removed ${printable(row.path)}${large ? ` and ${printable(row.path)}.large` : ""}${
      inUse
        ? "; processes that have it open keep using the old file until they close it, and a new open creates a new one"
        : ""
    }\n`,
  );
}

/** Samples a sparkline covers: one a second, the last minute. */
const HISTORY = 60;

interface Series {
  hits: number;
  misses: number;
  /** Hits and misses of each interval, oldest first, at most {@linkcode HISTORY}. */
  samples: { hits: number; misses: number }[];
}

/** The ratio of each sample (null: no lookups). */
function ratios(s: Series): (number | null)[] {
  return s.samples.map((x) => x.hits + x.misses === 0 ? null : x.hits / (x.hits + x.misses));
}

/** Adds the sample since the last frame to the series of `r`, and returns the series. */
function record(history: Map<string, Series>, path: string, hits: number, misses: number): Series {
  let s = history.get(path);
  if (s === undefined || hits < s.hits || misses < s.misses) {
    // New, or cleared / recreated since the last frame: start over.
    s = { hits, misses, samples: [] };
    history.set(path, s);
    return s;
  }
  s.samples.push({ hits: hits - s.hits, misses: misses - s.misses });
  if (s.samples.length > HISTORY) s.samples.shift();
  s.hits = hits;
  s.misses = misses;
  return s;
}

/** The hit ratio over the samples of `s` (the last minute), or null without lookups. */
function recentRatio(s: Series): number | null {
  let h = 0;
  let m = 0;
  for (const x of s.samples) (h += x.hits, m += x.misses);
  return h + m === 0 ? null : h / (h + m);
}

/**
 * One frame of `watch`: the table of every cache with its hit ratio over the last minute
 * (or, with `json`, one line of JSON: `{ at, dir, caches }`).
 */
function watchFrame(dir: string, history: Map<string, Series>, at: Date, json: boolean): string {
  const list = rows(dir);
  const table = [[...COUNT_HEADER, "HIT% (1 MIN)"]];
  /** The sparkline under each row (after the header), or `null` for a file not usable. */
  const sparks: (string | null)[] = [];
  const caches: Record<string, unknown>[] = [];
  const seen = new Set<string>();
  for (const r of list) {
    seen.add(r.path);
    const i = r.inspection;
    if (i.status !== "ok") {
      table.push([printable(r.name), `(${i.status})`]);
      sparks.push(null);
      caches.push(jsonOf(r));
      continue;
    }
    const f = i.info;
    const s = record(history, r.path, f.hits, f.misses);
    caches.push({ ...jsonOf(r), recentHitRatio: recentRatio(s), recentHitRatios: ratios(s) });
    table.push([...countCells(printable(r.name), f), formatRatio(recentRatio(s))]);
    sparks.push(`  |${sparkline(ratios(s)).padStart(HISTORY, " ")}| last ${HISTORY} s`);
  }
  for (const k of history.keys()) if (!seen.has(k)) history.delete(k);
  if (json) return JSON.stringify({ at: at.toISOString(), dir, caches }) + "\n";
  const title = `warp-cache watch ${printable(dir)}  ${
    at.toISOString().slice(11, 19)
  } UTC  (Ctrl-C to quit)\n\n`;
  if (list.length === 0) return title + `No shared caches in ${printable(dir)}\n`;
  // Each cache on two lines (its counters, then its sparkline), to fit 100 columns.
  fitNames(table);
  const [header, ...body] = layoutLines(table);
  const out = [header!];
  body.forEach((line, n) => {
    out.push(line);
    const spark = sparks[n];
    if (spark !== null && spark !== undefined) out.push(spark);
  });
  return title + out.join("\n") + "\n";
}

async function watch(opts: Options, io: CliOutput): Promise<void> {
  const dir = dirOf(opts);
  const count = opts.count;
  const interval = opts.interval ?? 1000;
  const tty = !opts.json && Deno.stdout.isTerminal();
  const history = new Map<string, Series>();
  let stop: () => void = () => {};
  const stopped = new Promise<void>((resolve) => stop = resolve);
  const onSigint = (): void => stop();
  Deno.addSignalListener("SIGINT", onSigint);
  if (tty) io.out("\x1b[?25l"); // hide the cursor
  try {
    for (let n = 0; count === undefined || n < count; n++) {
      const frame = watchFrame(dir, history, new Date(), opts.json === true);
      io.out(tty ? `\x1b[H\x1b[2J${frame}` : `${n > 0 && !opts.json ? "\n" : ""}${frame}`);
      if (count !== undefined && n + 1 >= count) break;
      let timer: ReturnType<typeof setTimeout> | undefined;
      const tick = new Promise<"tick">((resolve) =>
        timer = setTimeout(() => resolve("tick"), interval)
      );
      const why = await Promise.race([tick, stopped.then(() => "stop" as const)]);
      clearTimeout(timer);
      if (why === "stop") break;
    }
  } finally {
    Deno.removeSignalListener("SIGINT", onSigint);
    if (tty) io.out("\x1b[?25h\n"); // restore the cursor
  }
}

/** Options common to the commands. */
interface Options {
  dir?: string;
  json?: boolean;
  count?: number;
  interval?: number;
}

function positiveInt(what: string): (value: string) => number {
  return (value) => {
    const n = Number(value);
    if (!Number.isInteger(n) || n < 1) {
      throw new InvalidArgumentError(`${what} must be a positive integer: received ${value}`);
    }
    return n;
  };
}

/**
 * Runs the command line `args` (without the program name) and returns its exit code: 0
 * done, 1 a cache not found or an operation that failed, 2 a usage error (the usage is
 * written to `io.err`).
 *
 * @param args The arguments, e.g. `["ls", "--json"]`.
 * @param io Where to write; standard output and error by default.
 * @returns The exit code.
 *
 * @example Listing the caches of a directory as JSON
 * ```ts ignore
 * import { main } from "jsr:@warp/cache/cli";
 * const code = await main(["ls", "--dir", "/tmp/caches", "--json"]);
 * ```
 */
export async function main(args: string[], io: CliOutput = STDIO): Promise<number> {
  let code = 0;
  const run =
    (body: () => void | Promise<void>): () => Promise<void> => async (): Promise<void> => {
      try {
        await body();
      } catch (e) {
        if (!(e instanceof Failure) && !(e instanceof Error)) throw e;
        io.err(`warp-cache: ${printable(e.message)}\n`);
        code = 1;
      }
    };
  const program = new Command("warp-cache")
    .description("Lists, inspects, clears, removes and watches the shared caches of @warp/cache")
    .exitOverride()
    .showHelpAfterError()
    .configureOutput({ writeOut: io.out, writeErr: io.err })
    .helpCommand(false);
  const common = (c: Command): Command =>
    c.option("--dir <path>", `directory of the cache files (default: ${defaultDirLabel()})`)
      .option("--json", "machine-readable output (JSON)");
  common(program.command("ls").description("list the shared caches of the directory"))
    .action(function (this: Command): Promise<void> {
      return run(() => ls(this.opts<Options>(), io))();
    });
  common(
    program.command("info").argument("<name>", "cache name (or file stem, as ls shows it)")
      .description("every field of one cache (exit 1 if missing or not a valid cache)"),
  ).action(function (this: Command, name: string): Promise<void> {
    return run(() => info(name, this.opts<Options>(), io))();
  });
  common(
    program.command("clear").argument("<name>", "cache name")
      .description("empty the cache and reset its counters, for every process"),
  ).action(function (this: Command, name: string): Promise<void> {
    return run(() => clear(name, this.opts<Options>(), io))();
  });
  common(
    program.command("rm").argument("<name>", "cache name")
      .description(
        "remove the cache file and its .large folder (processes using it keep the old file until they close it)",
      ),
  ).action(function (this: Command, name: string): Promise<void> {
    return run(() => rm(name, this.opts<Options>(), io))();
  });
  common(
    program.command("watch")
      .description(
        "a live table, refreshed every second, with each cache's hit ratio over the last minute",
      )
      .option("--count <n>", "stop after n refreshes", positiveInt("--count"))
      .option("--interval <ms>", "ms between refreshes (default 1000)", positiveInt("--interval")),
  ).action(function (this: Command): Promise<void> {
    return run(() => watch(this.opts<Options>(), io))();
  });
  if (args.length === 0) {
    io.err(program.helpInformation());
    return 2;
  }
  try {
    await program.parseAsync(args, { from: "user" });
  } catch (e) {
    if (e instanceof CommanderError) return e.exitCode === 0 ? 0 : 2;
    throw e;
  }
  return code;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
