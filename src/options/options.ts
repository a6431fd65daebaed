/**
 * Options of {@linkcode cache}, the `Backend` and `Strategy` enums, and their validation.
 *
 * @module
 */

import { checkMaxSize, checkMs, checkTtl, describe, LONGEST_TIMER_MS } from "./_validate.ts";
import {
  MAX_KEY_BYTES,
  MAX_SHARED_BYTES,
  MAX_SHARED_ENTRIES,
  MAX_VALUE_BYTES,
  MIN_SHARED_BYTES,
  type POLICY,
} from "../native/_abi.ts";
import type { RemoteTier } from "../remote/remote.ts";

/** Where the entries of a cache live. */
export enum Backend {
  /** In this process (the default): values kept as they are, by identity. */
  Memory = 0,
  /** In a memory-mapped file shared by every process of the user that opens it. */
  Shared = 1,
}

/**
 * Eviction policy. The numbers cross into the native library: they are those of `Policy` in
 * `rust/src/sieve.rs` (`POLICY` in `src/native/_abi.ts`, generated from it); the type check
 * below fails when a name or number differs.
 */
export enum Strategy {
  /** SIEVE (Zhang et al., NSDI 2024): visited bit and hand; the default. */
  Sieve = 0,
  /** Least recently used. */
  Lru = 1,
  /** Most recently used. */
  Mru = 2,
  /** First in, first out. */
  Fifo = 3,
  /** Least frequently used. */
  Lfu = 4,
  /**
   * S3-FIFO (Yang et al., "FIFO queues are all you need for cache eviction", SOSP 2023), as
   * libCacheSim's current `S3FIFO` (not `S3FIFOv0`, the paper's first version): a small FIFO
   * (10% of `maxSize`), a main FIFO with a 2-bit access count, a ghost of recently evicted
   * keys (90%), move-to-main threshold 2. Memory backend only.
   */
  S3Fifo = 5,
  /**
   * W-TinyLFU (Einziger et al., "TinyLFU", ACM ToS 2017) with Caffeine's adaptive window
   * (Einziger, Eytan, Friedman and Manes, "Adaptive Software Cache Management", Middleware
   * 2018): an LRU window, a segmented LRU main space, admission by a frequency sketch, and
   * a hill climber sizing the window. Memory backend only.
   */
  WTinyLfu = 6,
  /**
   * ARC (Megiddo and Modha, "ARC: A Self-Tuning, Low Overhead Replacement Cache", FAST 2003),
   * as libCacheSim's `ARC`: an LRU list of entries seen once (T1), one of entries seen twice
   * or more (T2), ghost lists of the keys lately evicted from each (B1, B2, up to `maxSize`
   * keys in all), and a target size of T1 that a key found in B1 raises and one found in B2
   * lowers. Memory backend only.
   */
  Arc = 7,
}

/** The numbers of an enum-like object, as strings (`Strategy.Lru` and `1` both give `"1"`). */
type Numbers<T> = { -readonly [K in keyof T]: `${T[K] & number}` };
/** Whether `A` and `B` are the same type. */
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
// Strategy has the library's policies, names and numbers, no more and no fewer.
true satisfies Same<Numbers<typeof Strategy>, Numbers<typeof POLICY>>;

/** Options of {@linkcode cache}. */
export interface CacheOptions {
  /**
   * Most entries kept: a positive integer, or `Infinity` (memory backend only).
   * @default {128}
   */
  maxSize?: number;
  /**
   * Age in ms since insertion after which an entry is a miss: positive and finite, or
   * `undefined` for no expiry. Hits do not extend it.
   * @default {undefined}
   */
  ttl?: number | undefined;
  /**
   * Where entries live: `Backend.Memory` / `"memory"` or `Backend.Shared` / `"shared"`.
   * @default {Backend.Memory}
   */
  backend?: Backend | "memory" | "shared";
  /**
   * Eviction policy (see {@linkcode Strategy}): the enum or its lowercase name. The shared
   * backend evicts by SIEVE only.
   * @default {Strategy.Sieve}
   */
  strategy?:
    | Strategy
    | "sieve"
    | "lru"
    | "mru"
    | "fifo"
    | "lfu"
    | "s3fifo"
    | "wtinylfu"
    | "arc";
  /** Maps the arguments to the key value; by default the key is all the arguments. */
  key?: (...args: never[]) => unknown;
  /**
   * The tags of the entry of these arguments (an array of strings without lone
   * surrogates): `invalidateTags(tag)` makes every entry carrying `tag` a miss, in every
   * cache of the process, in every process of the machine for shared caches (through the
   * tag clock file `.warp_tags` of their directory), and on every host for caches with a
   * `remote` tier. A computation can add tags with `cacheContext().tag(...)`. In a shared
   * cache the tags take 8 bytes each of the entry's value (see the README, "Tags").
   * @default {undefined}
   */
  tags?: (...args: never[]) => readonly string[];
  /**
   * Identity of a shared or remote cache across processes and hosts, and the name that
   * `caches()` and the metrics report. Defaults to the function's name; for a shared or
   * remote cache, to `<Class.>function-<hash>`, the hash covering where `cache()` was applied
   * (module URL, line and column) and the function's source text.
   */
  name?: string;
  /**
   * Directory of shared cache files: `/dev/shm/warp_cache-<uid>` on Linux,
   * `$TMPDIR/warp_cache` elsewhere (`/tmp/warp_cache-<uid>` without `TMPDIR`). A directory
   * on disk makes the cache outlive a reboot.
   */
  dir?: string;
  /**
   * Largest serialized key in bytes (shared backend): 1 to 1 MiB.
   * @default {512}
   */
  maxKeySize?: number;
  /**
   * Largest serialized value in bytes (shared backend): 1 to 64 MiB, and at most the byte
   * budget (`maxBytes`, given or default), else a `RangeError` naming both.
   * @default {4096}
   */
  maxValueSize?: number;
  /**
   * Byte budget of the entries.
   *
   * Memory backend: the most bytes the entries may hold, each counted by `sizeOf`; the
   * eviction policy evicts until a new entry fits; an entry larger than `maxBytes` is not
   * stored (`oversizeSkips`). A positive integer; no budget by default (`maxSize` alone).
   *
   * Shared backend: the budget of the stored keys and values in the file: entries of any
   * size share it in proportion to their size (in chunks of 256 bytes holding 248 bytes of
   * data; an entry of at most 32 bytes of key and value lives in its slot and takes none),
   * and SIEVE evicts until a new entry fits. An integer from 256 to 2^36 (64 GiB),
   * at least `maxValueSize`.
   * The default is what `maxSize` entries of the largest size take, at most 16 MiB: the
   * default file (about 0.6 MB) fits any `/dev/shm`, and no default file takes more than
   * 16 MiB of data (a container's 64 MiB `/dev/shm` holds several).
   * @default {memory: undefined; shared: min(maxSize × chunks of the largest entry × 256, 16 MiB)}
   */
  maxBytes?: number;
  /**
   * The size in bytes of an entry, for `maxBytes` (memory backend): `(value, ...args) =>
   * number`, given the function's (resolved) result and its arguments. By default: a string
   * counts 2 bytes a code unit, a `Uint8Array` (any typed array or `DataView`) or
   * `ArrayBuffer` its byte length, any other value the length of its encoding by the value
   * codec of the shared backend (which throws a `TypeError` for a value it cannot encode,
   * such as a class instance: give `sizeOf` for those).
   * @default {undefined}
   */
  sizeOf?: (value: never, ...args: never[]) => number;
  /**
   * `"file"`: with the shared backend, a value whose encoding is larger than `maxValueSize`
   * (up to 1 GiB) is stored in a file beside the cache (content-addressed, mode 0600) and
   * the entry refers to it; a missing or damaged file is a miss. Without it such a value is
   * not stored (`oversizeSkips`).
   * @default {undefined}
   */
  largeValues?: "file" | undefined;
  /**
   * Stale window in ms after `ttl` (needs `ttl`): a call that finds an entry older than its
   * TTL but not older than its TTL plus this window gets the stale value at once (counted
   * in `hits` and `staleHits`) and starts one refresh of that key in the background (one
   * across every process with the shared backend; counted in `refreshes`). A refresh that
   * throws or rejects keeps the stale value until the window ends. Positive and finite.
   * @default {undefined}
   */
  staleWhileRevalidate?: number | undefined;
  /**
   * Stale-if-error window in ms after `ttl` (needs `ttl`): when a computation of a key (a
   * miss or a background refresh) throws or rejects while a value of that key stored less
   * than `ttl + staleIfError` ago exists, its callers get that value (counted in
   * `staleHits`) instead of the error. Positive and finite.
   * @default {undefined}
   */
  staleIfError?: number | undefined;
  /**
   * Back-off in ms after a failed computation of a key (with `staleIfError`): calls of that
   * key within it get the stale value without calling the function again (a failing origin
   * is not called on every request). Kept per process. Positive and finite.
   * @default {10000 when staleIfError is set}
   */
  errorBackoff?: number | undefined;
  /**
   * Random part of each entry's TTL in ms (needs `ttl`): an entry lives `ttl` plus a
   * uniform random part in `[0, ttlJitter)`, so that entries stored together (a warm-up,
   * a burst of misses) do not expire together and stampede the function. Applies to
   * computed entries and to `cacheSet`; an entry's own TTL (`cacheContext().setTtl`) is
   * taken as given. Positive and finite.
   * @default {undefined}
   */
  ttlJitter?: number | undefined;
  /**
   * Most ms that a call of an async function waits for its computation (its own, or one it
   * joined): past it, the call gets the stale value that the computation refreshes, if
   * there is one (counted in `staleHits`), else rejects with a `DOMException` named
   * `TimeoutError`, while the computation goes on and its result is stored when it
   * resolves. Positive, at most 2^31 - 1 (about 24.8 days, the longest timer).
   * Calls of a function that returns no Promise are not bounded.
   * @default {undefined}
   */
  timeout?: number | undefined;
  /**
   * Most ms that a computation of a key is waited for by the other calls of that key
   * before one of them computes it itself: a computation under way in this process that
   * calls have waited for longer than this (since the first of them joined it) is
   * abandoned by the next call of its key (its result is not stored, its `signal` aborts),
   * and a call waiting for another process's computation (shared backend) computes the key
   * itself after this long, even when that process is stopped and not dead. Positive, or
   * `Infinity` for no bound. With `timeout`, a call still rejects after `timeout`; this
   * bounds the wait behind it.
   * @default {30000}
   */
  flightTimeout?: number | undefined;
  /**
   * A tier behind the local one (memory or shared), shared by every host that uses the same
   * server and `name`: `redisTier(...)` from `@warp/cache/redis`, `kvTier(...)` from
   * `@warp/cache/kv`, or any {@linkcode RemoteTier} (a Promise of one is taken as is). A
   * local miss of an async function looks in the remote tier before computing; a computed
   * value, and `cacheSet`, go to both; `cacheDelete`, `cacheSet` and `cacheClear` tell every
   * other instance to drop its local copy. Keys must then be values (as in the shared
   * backend). A remote that is down, slow or wrong never fails a call.
   * @default {undefined}
   */
  remote?: RemoteTier | Promise<RemoteTier> | undefined;
  /**
   * Most ms that one remote operation may take before it counts as failed
   * (`remoteErrors`). Positive, at most 2^31 - 1 (about 24.8 days, the longest timer).
   * @default {500}
   */
  remoteTimeout?: number | undefined;
  /**
   * Time source in ms, for TTLs and stale windows; it must return a finite number (else a
   * `TypeError` at the call that reads it). By default each store reads its own: the native
   * library's coarse monotonic clock (memory backend, native engine), `performance.now()`
   * (TypeScript engine), Unix time (shared backend: a clock that every process agrees on).
   * Tests inject a fake clock here; a shared cache's must return Unix ms if other processes
   * use the file.
   */
  clock?: () => number;
}

/** Options after validation, with defaults filled in. */
export interface ResolvedOptions {
  maxSize: number;
  ttl: number | undefined;
  backend: Backend;
  strategy: Strategy;
  key: ((...args: never[]) => unknown) | undefined;
  tags: ((...args: never[]) => readonly string[]) | undefined;
  name: string | undefined;
  dir: string | undefined;
  maxKeySize: number;
  maxValueSize: number;
  /** `undefined`: the library's default (see {@linkcode CacheOptions.maxBytes}). */
  maxBytes: number | undefined;
  /** `sizeOf` (memory backend, with `maxBytes`). */
  sizeOf: ((value: never, ...args: never[]) => number) | undefined;
  largeValues: "file" | undefined;
  remote: RemoteTier | Promise<RemoteTier> | undefined;
  remoteTimeout: number;
  /** Stale window in ms after the TTL, or `undefined`. */
  staleWhileRevalidate: number | undefined;
  /** Random part of each entry's TTL in ms, or `undefined`. */
  ttlJitter: number | undefined;
  /** Stale-if-error window in ms after the TTL, or `undefined`. */
  staleIfError: number | undefined;
  /** Back-off in ms after a failed computation (with `staleIfError`), else `undefined`. */
  errorBackoff: number | undefined;
  timeout: number | undefined;
  /** Most ms a computation is waited for before a waiter computes itself (`Infinity`: no
   * bound). */
  flightTimeout: number;
  clock: (() => number) | undefined;
}

/** Every option name of {@linkcode CacheOptions}: any other name is a `TypeError`. */
export const OPTION_NAMES: readonly string[] = [
  "maxSize",
  "ttl",
  "backend",
  "strategy",
  "key",
  "tags",
  "name",
  "dir",
  "maxKeySize",
  "maxValueSize",
  "maxBytes",
  "sizeOf",
  "largeValues",
  "staleWhileRevalidate",
  "ttlJitter",
  "staleIfError",
  "errorBackoff",
  "timeout",
  "flightTimeout",
  "remote",
  "remoteTimeout",
  "clock",
];

/** The option that an unknown name was probably meant as (case, `_` and `-` ignored). */
function suggestion(unknown: string): string {
  const squash = (n: string): string => n.toLowerCase().replace(/[_-]/g, "");
  const wanted = squash(unknown);
  const aliases: Record<string, string> = { maxage: "ttl", max: "maxSize", size: "maxSize" };
  const match = OPTION_NAMES.find((n) => squash(n) === wanted) ?? aliases[wanted];
  return match === undefined ? "" : ` (did you mean ${match}?)`;
}

const BACKENDS: Record<string, Backend> = { memory: Backend.Memory, shared: Backend.Shared };
const STRATEGIES: Record<string, Strategy> = {
  sieve: Strategy.Sieve,
  lru: Strategy.Lru,
  mru: Strategy.Mru,
  fifo: Strategy.Fifo,
  lfu: Strategy.Lfu,
  s3fifo: Strategy.S3Fifo,
  wtinylfu: Strategy.WTinyLfu,
  arc: Strategy.Arc,
};

/** The name of `strategy` as the `strategy` option takes it (`"lru"`...). */
export function strategyName(strategy: Strategy): string {
  return Object.keys(STRATEGIES).find((n) => STRATEGIES[n] === strategy) ?? String(strategy);
}

function fail(Kind: typeof TypeError | typeof RangeError, what: string, value: unknown): never {
  throw new Kind(`Cannot create cache: ${what}: received ${describe(value)}`);
}

function positiveInteger(name: string, value: unknown, fallback: number, max: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number") fail(TypeError, `${name} must be a number`, value);
  if (!Number.isInteger(value) || value <= 0 || value > max) {
    fail(RangeError, `${name} must be a positive integer no larger than ${max}`, value);
  }
  return value;
}

function byteBudget(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number") fail(TypeError, "maxBytes must be a number", value);
  if (!Number.isInteger(value) || value < MIN_SHARED_BYTES || value > MAX_SHARED_BYTES) {
    fail(
      RangeError,
      `maxBytes must be an integer from ${MIN_SHARED_BYTES} to ${MAX_SHARED_BYTES} (${
        MAX_SHARED_BYTES / 2 ** 30
      } GiB)`,
      value,
    );
  }
  return value;
}

/** An option of ms that becomes a timer (`timeout`, `remoteTimeout`): as `checkMs`, and no
 * longer than {@linkcode LONGEST_TIMER_MS}, which a timer would cut to 1 ms. */
function timerMs(name: string, value: unknown): number | undefined {
  const ms = checkMs("cache", name, value);
  if (ms !== undefined && ms > LONGEST_TIMER_MS) {
    fail(
      RangeError,
      `${name} must be a positive number of milliseconds no larger than ${LONGEST_TIMER_MS} (about 24.8 days, the longest timer)`,
      ms,
    );
  }
  return ms;
}

function flightTimeout(value: unknown): number {
  if (value === undefined) return 30_000;
  if (typeof value !== "number") {
    fail(TypeError, "flightTimeout must be a positive number of milliseconds or Infinity", value);
  }
  if (!(value > 0)) {
    fail(RangeError, "flightTimeout must be a positive number of milliseconds or Infinity", value);
  }
  return value;
}

function memoryBudget(value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number") fail(TypeError, "maxBytes must be a number", value);
  if (!Number.isSafeInteger(value) || value <= 0) {
    fail(RangeError, "maxBytes must be a positive integer of bytes", value);
  }
  return value;
}

function sizeOfOption(
  value: unknown,
  backend: Backend,
  maxBytes: unknown,
): ResolvedOptions["sizeOf"] {
  if (value === undefined) return undefined;
  if (typeof value !== "function") {
    fail(TypeError, "sizeOf must be a function returning an entry's size in bytes", value);
  }
  if (backend === Backend.Shared) {
    fail(
      TypeError,
      "sizeOf needs the memory backend (a shared cache counts the bytes of each encoded entry)",
      value,
    );
  }
  if (maxBytes === undefined) fail(TypeError, "sizeOf needs maxBytes", value);
  return value as ResolvedOptions["sizeOf"];
}

function enumValue<E extends number>(
  name: string,
  value: unknown,
  names: Record<string, E>,
  fallback: E,
): E {
  if (value === undefined) return fallback;
  if (typeof value === "string" && Object.hasOwn(names, value)) return names[value]!;
  if (typeof value === "number" && Object.values(names).includes(value as E)) return value as E;
  const allowed = Object.keys(names).map((n) => `"${n}"`).join(", ");
  return fail(TypeError, `${name} must be one of ${allowed} (or the enum)`, value);
}

/**
 * Checks `options` and fills in the defaults.
 *
 * @throws {TypeError} If an option has the wrong type or an unknown name (a misspelt
 * `maxsize` or `TTL` would otherwise fall back to a default silently), or names an unknown
 * backend or strategy.
 * @throws {RangeError} If a number is out of range (`maxSize`, `ttl`, `maxKeySize`,
 * `maxValueSize`, `maxBytes`).
 */
export function resolveOptions(options: CacheOptions | undefined): ResolvedOptions {
  if (options === undefined) options = {};
  if (options === null || typeof options !== "object") {
    fail(TypeError, "options must be an object", options);
  }
  for (const k of Object.keys(options)) {
    if (!OPTION_NAMES.includes(k)) {
      throw new TypeError(
        `Cannot create cache: unknown option ${JSON.stringify(k)}${
          suggestion(k)
        }: the options are ${OPTION_NAMES.join(", ")}`,
      );
    }
  }
  const backend = enumValue("backend", options.backend, BACKENDS, Backend.Memory);
  const strategy = enumValue("strategy", options.strategy, STRATEGIES, Strategy.Sieve);

  let maxSize = 128;
  if (options.maxSize !== undefined) {
    maxSize = checkMaxSize("cache", options.maxSize);
    if (backend === Backend.Shared && !(maxSize <= MAX_SHARED_ENTRIES)) {
      fail(
        RangeError,
        `maxSize must be a finite integer no larger than ${MAX_SHARED_ENTRIES} with the shared backend`,
        maxSize,
      );
    }
  }
  const ttl = checkTtl("cache", options.ttl);

  const key: unknown = options.key;
  if (key !== undefined && typeof key !== "function") {
    fail(TypeError, "key must be a function", key);
  }
  const tags: unknown = options.tags;
  if (tags !== undefined && typeof tags !== "function") {
    fail(TypeError, "tags must be a function returning the entry's tags (strings)", tags);
  }
  const name: unknown = options.name;
  if (name !== undefined && (typeof name !== "string" || name.length === 0)) {
    fail(TypeError, "name must be a non-empty string", name);
  }
  // A lone surrogate has no UTF-8 form: it would be written as U+FFFD, so that another name
  // (and another cache) would open the same shared file or remote keys.
  if (typeof name === "string" && !name.isWellFormed()) {
    fail(TypeError, "name must be a string without lone surrogates", name);
  }
  const dir: unknown = options.dir;
  if (dir !== undefined && (typeof dir !== "string" || dir.length === 0)) {
    fail(TypeError, "dir must be a non-empty string path", dir);
  }
  if (typeof dir === "string" && !dir.isWellFormed()) {
    fail(TypeError, "dir must be a path without lone surrogates", dir);
  }
  const largeValues: unknown = options.largeValues;
  if (largeValues !== undefined && largeValues !== "file") {
    fail(TypeError, 'largeValues must be "file" or undefined', largeValues);
  }
  if (largeValues !== undefined && backend !== Backend.Shared) {
    fail(TypeError, "largeValues needs the shared backend", largeValues);
  }
  const staleWhileRevalidate = checkMs(
    "cache",
    "staleWhileRevalidate",
    options.staleWhileRevalidate,
  );
  if (staleWhileRevalidate !== undefined && ttl === undefined) {
    fail(
      TypeError,
      "staleWhileRevalidate needs ttl (the stale window starts when an entry's TTL ends)",
      staleWhileRevalidate,
    );
  }
  const ttlJitter = checkMs("cache", "ttlJitter", options.ttlJitter);
  if (ttlJitter !== undefined && ttl === undefined) {
    fail(
      TypeError,
      "ttlJitter needs ttl (it is a random part added to each entry's ttl)",
      ttlJitter,
    );
  }
  const staleIfError = checkMs("cache", "staleIfError", options.staleIfError);
  if (staleIfError !== undefined && ttl === undefined) {
    fail(
      TypeError,
      "staleIfError needs ttl (its window starts when an entry's TTL ends)",
      staleIfError,
    );
  }
  let errorBackoff = checkMs("cache", "errorBackoff", options.errorBackoff);
  if (errorBackoff !== undefined && staleIfError === undefined) {
    fail(TypeError, "errorBackoff needs staleIfError (it serves the stale value)", errorBackoff);
  }
  if (staleIfError !== undefined) errorBackoff ??= 10_000;
  const remote: unknown = options.remote;
  if (
    remote !== undefined &&
    !(remote instanceof Promise) &&
    (remote === null || typeof remote !== "object" ||
      typeof (remote as RemoteTier).storage?.get !== "function" ||
      typeof (remote as RemoteTier).storage?.set !== "function")
  ) {
    fail(
      TypeError,
      "remote must be a remote tier (redisTier(), kvTier() or remoteTier({ storage, bus }))",
      remote,
    );
  }
  const clock: unknown = options.clock;
  if (clock !== undefined && typeof clock !== "function") {
    fail(TypeError, "clock must be a function returning milliseconds", clock);
  }
  return {
    maxSize,
    ttl,
    backend,
    strategy,
    key: key as ResolvedOptions["key"],
    tags: tags as ResolvedOptions["tags"],
    name: name as string | undefined,
    dir: dir as string | undefined,
    maxKeySize: positiveInteger("maxKeySize", options.maxKeySize, 512, MAX_KEY_BYTES),
    maxValueSize: positiveInteger("maxValueSize", options.maxValueSize, 4096, MAX_VALUE_BYTES),
    maxBytes: backend === Backend.Shared
      ? byteBudget(options.maxBytes)
      : memoryBudget(options.maxBytes),
    sizeOf: sizeOfOption(options.sizeOf, backend, options.maxBytes),
    largeValues: largeValues as "file" | undefined,
    staleWhileRevalidate,
    ttlJitter,
    staleIfError,
    errorBackoff,
    remote: remote as RemoteTier | Promise<RemoteTier> | undefined,
    remoteTimeout: timerMs("remoteTimeout", options.remoteTimeout) ?? 500,
    timeout: timerMs("timeout", options.timeout),
    flightTimeout: flightTimeout(options.flightTimeout),
    clock: clock as (() => number) | undefined,
  };
}
