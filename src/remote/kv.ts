/**
 * `kvTier()`: a {@linkcode RemoteTier} on Deno KV, for Deno Deploy (and a local KV file
 * shared by the processes of one machine).
 *
 * Layout: the value of key `key` of cache `name` lives at `["warp", name, key]` (the key
 * bytes as a `Uint8Array` part, so any bytes are safe); a key whose KV key would pass the
 * 2048-byte limit lives at `["warp", name, "_h", sha256(key)]` instead. The invalidation bus
 * of cache `name` is the single key `["warp", name, "_bus"]`.
 *
 * @module
 */

import {
  type BusListener,
  type Invalidation,
  type RemoteBus,
  type RemoteStorage,
  type RemoteTier,
  remoteTier,
} from "./remote.ts";
import { describe, fitsTimer, LONGEST_TIMER_MS } from "../options/_validate.ts";

export type { BusListener, Invalidation, RemoteBus, RemoteStorage, RemoteTier } from "./remote.ts";

/** The largest value Deno KV stores, in bytes (64 KiB). */
export const KV_MAX_VALUE_BYTES = 65536;

/** The longest `expireIn` given to Deno KV, ms (142,000 years; it refuses more than about
 * 8.2e15): a longer TTL is stored without one, since the value's frame carries its deadline. */
const KV_MAX_EXPIRE_IN = 2 ** 52;

/** The largest key Deno KV writes, in bytes of its encoding. */
const KV_MAX_KEY_BYTES = 2048;
/** Mutations in one atomic operation (Deno KV allows 1000). */
const MAX_BATCH_MUTATIONS = 1000;
/** Encoded key bytes in one atomic operation (Deno KV allows 80 KiB). */
const MAX_BATCH_KEY_BYTES = 64 * 1024;
/** What the bus value may weigh, by the estimate of {@linkcode messageWeight}. */
const MAX_BUS_BYTES = 56 * 1024;
/** What one bus message may weigh; a heavier one is published as `"clear"`. */
const MAX_MESSAGE_BYTES = 16 * 1024;
/** The longest wait between two attempts to restart a failed watch, ms. */
const MAX_RETRY_MS = 10_000;

/** The first part of every key this tier writes. */
const ROOT = "warp";
/** The last part of a cache's bus key. */
const BUS = "_bus";
/** The part before the SHA-256 of a key too long for Deno KV. */
const HASHED = "_h";

/** Options of {@linkcode kvTier}. */
export interface KvTierOptions {
  /**
   * How often (ms) a subscription also reads the bus key, besides watching it; `0`: watch
   * only. Deno KV's `watch` on a local file sees only the writes of its own process, so
   * processes sharing a file learn each other's invalidations by this read. On Deno Deploy
   * `watch` sees every write: `0` saves one read per interval.
   *
   * @default {1000}
   */
  pollInterval?: number;
  /**
   * How many of the last invalidations the bus key keeps, so a subscriber that reads the
   * bus late (writes faster than `watch` delivers, or a poll) still gets each one. A
   * subscriber that falls further behind gets one `"clear"` instead.
   *
   * @default {64}
   */
  ringSize?: number;
  /**
   * Most ms that `close()` takes.
   * @default {500}
   */
  timeout?: number;
}

/** Where the tier's Deno KV comes from: a database opened by the caller, or a path. */
export type KvTarget =
  /** A `Deno.Kv` opened by the caller: the tier never closes it. */
  | { kv: Deno.Kv }
  /** The path (or URL) given to `Deno.openKv`: the tier opens it, and closes it in `close()`. */
  | { path: string };

/** One message kept on the bus. */
interface BusMessage {
  seq: number;
  origin: string;
  stamp: number;
  keys: Uint8Array[] | "clear";
  tags?: string[] | undefined;
  repair?: boolean | undefined;
}

/**
 * The value of a bus key: its epoch (random, drawn when the key is first written, so a
 * deleted and rewritten key is told apart from the old one), the last sequence number and
 * the newest messages, oldest first.
 */
interface BusValue {
  epoch: string;
  seq: number;
  ring: BusMessage[];
}

/**
 * Returns a {@linkcode RemoteTier} on Deno KV: `cache({ remote: await kvTier(...) })`
 * shares values between every isolate or process that uses the same database and cache
 * `name`, and applies their invalidations to its local tier.
 *
 * - Values are bytes up to {@linkcode KV_MAX_VALUE_BYTES} (64 KiB, Deno KV's limit): `set`
 *   rejects a larger one with a `RangeError` (values are not split across keys).
 * - A TTL becomes `expireIn`, which Deno KV treats as a lower bound; the cache stores each
 *   value with its deadline, so a late expiry never serves a stale value.
 * - `clear(name)` lists the cache's keys and deletes them in atomic batches (up to 1000
 *   keys each): it costs one read per key and one write per batch, and is not atomic as a
 *   whole (a key written during the clear may survive it).
 * - The bus: `publish` appends the message to the ring kept in the cache's bus key, with
 *   the next sequence number, in one atomic check-and-set (retried on a conflict);
 *   `subscribe` watches that key (and reads it every `pollInterval` ms) and delivers, in
 *   order and once, every message newer than the last it saw. A subscriber that missed
 *   more than `ringSize` messages, or sees the bus key deleted or replaced (the key holds
 *   a random epoch), is told of a gap (`listener.gap()`: the cache drops its local
 *   copies). A message whose keys weigh more than 16 KiB is published as `"clear"`; the
 *   ring keeps under 64 KiB by dropping its oldest messages.
 *
 * Needs Deno KV: `--unstable-kv` (or `"unstable": ["kv"]` in `deno.json`); on Deno Deploy
 * it is there.
 *
 * @param target `{ kv }`: a `Deno.Kv` the tier uses and never closes; or `{ path }`: the
 * path or URL the tier opens with `Deno.openKv` and closes in `close()`.
 * @param options See {@linkcode KvTierOptions}.
 * @returns The tier, once its database is open.
 * @throws {TypeError} If `target` has neither `kv` nor `path` (or both), `kv` is not a
 * `Deno.Kv`, `path` is not a string, an option has the wrong type, or Deno KV is missing
 * (the promise rejects).
 * @throws {RangeError} If `pollInterval` or `ringSize` is out of range (the promise
 * rejects).
 *
 * @example Sharing values through a Deno KV file
 * ```ts
 * import { kvTier } from "@warp/cache/kv";
 * import assert from "node:assert/strict";
 *
 * const path = await Deno.makeTempFile({ suffix: ".kv" });
 * const tier = await kvTier({ path });
 * const signal = AbortSignal.timeout(5000);
 * const key = new Uint8Array([1, 2, 3]);
 * await tier.storage.set("users", key, new Uint8Array([42]), 60_000, signal);
 * assert.deepEqual(await tier.storage.get("users", key, signal), new Uint8Array([42]));
 * assert.equal(await tier.storage.delete("users", key, signal), true);
 * assert.equal(await tier.storage.get("users", key, signal), undefined);
 * await tier.close();
 * await Deno.remove(path);
 * ```
 */
export async function kvTier(target: KvTarget, options: KvTierOptions = {}): Promise<RemoteTier> {
  const { pollInterval, ringSize, timeout } = parseOptions(options);
  const source = parseTarget(target);
  const kv = "kv" in source ? source.kv : await openKv(source.path);
  const parts = new KvParts(kv, !("kv" in source), pollInterval, ringSize);
  return remoteTier({ storage: parts, bus: parts }, { timeout });
}

function parseTarget(target: unknown): { kv: Deno.Kv } | { path: string } {
  const owner = "Cannot create kvTier";
  if (target === null || typeof target !== "object") {
    throw new TypeError(
      `${owner}: target must be { kv } (a Deno.Kv) or { path } (a string): received ${
        describe(target)
      }`,
    );
  }
  const hasKv = "kv" in target && target.kv !== undefined;
  const hasPath = "path" in target && target.path !== undefined;
  if (hasKv === hasPath) {
    throw new TypeError(
      `${owner}: target must have exactly one of kv (a Deno.Kv) and path (a string): received ${
        describe(target)
      }`,
    );
  }
  if (hasPath) {
    const path = (target as { path: unknown }).path;
    if (typeof path !== "string" || path === "") {
      throw new TypeError(`${owner}: path must be a non-empty string: received ${describe(path)}`);
    }
    return { path };
  }
  const kv = (target as { kv: unknown }).kv;
  if (!isKv(kv)) {
    throw new TypeError(
      `${owner}: kv must be a Deno.Kv (from Deno.openKv): received ${describe(kv)}`,
    );
  }
  return { kv };
}

function isKv(value: unknown): value is Deno.Kv {
  if (value === null || typeof value !== "object") return false;
  const kv = value as Record<string, unknown>;
  return ["get", "set", "delete", "list", "atomic", "watch"].every((m) =>
    typeof kv[m] === "function"
  );
}

function parseOptions(
  options: unknown,
): { pollInterval: number; ringSize: number; timeout: number } {
  const owner = "Cannot create kvTier";
  if (options === null || typeof options !== "object") {
    throw new TypeError(`${owner}: options must be an object: received ${describe(options)}`);
  }
  const { pollInterval = 1000, ringSize = 64, timeout = 500 } = options as Record<
    string,
    unknown
  >;
  if (typeof timeout !== "number" || !(Number.isFinite(timeout) && timeout > 0)) {
    throw new RangeError(
      `${owner}: timeout must be a positive finite number of milliseconds: received ${
        describe(timeout)
      }`,
    );
  }
  if (!fitsTimer(timeout)) {
    throw new RangeError(
      `${owner}: timeout must be no larger than ${LONGEST_TIMER_MS} ms (the longest timer): received ${timeout}`,
    );
  }
  if (typeof pollInterval !== "number") {
    throw new TypeError(
      `${owner}: pollInterval must be 0 or a positive finite number of milliseconds: received ${
        describe(pollInterval)
      }`,
    );
  }
  if (!(Number.isFinite(pollInterval) && pollInterval >= 0 && fitsTimer(pollInterval))) {
    throw new RangeError(
      `${owner}: pollInterval must be 0 or a positive number of milliseconds no larger than ${LONGEST_TIMER_MS} (the longest timer): received ${pollInterval}`,
    );
  }
  if (typeof ringSize !== "number") {
    throw new TypeError(
      `${owner}: ringSize must be an integer from 1 to 1000: received ${describe(ringSize)}`,
    );
  }
  if (!(Number.isInteger(ringSize) && ringSize >= 1 && ringSize <= 1000)) {
    throw new RangeError(
      `${owner}: ringSize must be an integer from 1 to 1000: received ${ringSize}`,
    );
  }
  return { pollInterval, ringSize, timeout };
}

async function openKv(path: string): Promise<Deno.Kv> {
  const open = (Deno as { openKv?: (path?: string) => Promise<Deno.Kv> }).openKv;
  if (typeof open !== "function") {
    throw new TypeError(
      `Cannot create kvTier: Deno.openKv is not available: run with --unstable-kv (or "unstable": ["kv"] in deno.json)`,
    );
  }
  return await open(path);
}

/** The bytes of a string part in Deno KV's key encoding (UTF-8, NUL escaped, framed). */
function stringPartBytes(s: string): number {
  const bytes = new TextEncoder().encode(s);
  return 2 + bytes.length + zeros(bytes);
}

/** The bytes of a byte part in Deno KV's key encoding (NUL escaped, framed). */
function bytesPartBytes(b: Uint8Array): number {
  return 2 + b.length + zeros(b);
}

function zeros(bytes: Uint8Array): number {
  let n = 0;
  for (const b of bytes) if (b === 0) n++;
  return n;
}

/** The size of a key's encoding, for the parts this tier writes. */
function keyBytes(key: Deno.KvKey): number {
  let n = 0;
  for (const part of key) {
    if (typeof part === "string") n += stringPartBytes(part);
    else if (part instanceof Uint8Array) n += bytesPartBytes(part);
    else n += 10; // a number, bigint or boolean part: never written by this tier
  }
  return n;
}

/** The rough serialized weight of a bus message (an overestimate). */
function messageWeight(m: BusMessage): number {
  let n = 80 + 2 * m.origin.length;
  if (m.keys !== "clear") { for (const k of m.keys) n += k.length + 24; }
  for (const t of m.tags ?? []) n += 2 * t.length + 16;
  return n;
}

function isBusValue(value: unknown): value is BusValue {
  if (value === null || typeof value !== "object") return false;
  const v = value as Partial<BusValue>;
  return typeof v.epoch === "string" && typeof v.seq === "number" && Array.isArray(v.ring) &&
    v.ring.every((m) =>
      m !== null && typeof m === "object" && typeof m.seq === "number" &&
      typeof m.origin === "string" && typeof m.stamp === "number" &&
      (m.tags === undefined ||
        (Array.isArray(m.tags) && m.tags.every((t) => typeof t === "string"))) &&
      (m.keys === "clear" ||
        (Array.isArray(m.keys) && m.keys.every((k) => k instanceof Uint8Array)))
    );
}

function checkMessage(message: unknown): Invalidation {
  const m = message as Partial<Invalidation> | null;
  if (
    m === null || typeof m !== "object" || typeof m.origin !== "string" ||
    typeof m.stamp !== "number" ||
    !(m.keys === "clear" ||
      (Array.isArray(m.keys) && m.keys.every((k) => k instanceof Uint8Array))) ||
    !(m.tags === undefined || (Array.isArray(m.tags) && m.tags.every((t) => typeof t === "string")))
  ) {
    throw new TypeError(
      `Cannot publish: message must be { origin: string, stamp: number, keys: Uint8Array[] | "clear", tags?: string[] }: received ${
        describe(message)
      }`,
    );
  }
  return m as Invalidation;
}

function checkName(name: unknown): string {
  if (typeof name !== "string") {
    throw new TypeError(`Cannot use kvTier: name must be a string: received ${describe(name)}`);
  }
  return name;
}

function checkBytes(what: string, value: unknown): Uint8Array {
  if (!(value instanceof Uint8Array)) {
    throw new TypeError(
      `Cannot use kvTier: ${what} must be a Uint8Array: received ${describe(value)}`,
    );
  }
  return value;
}

/** How many times an operation meets a locked local KV file before its error stands (the
 * operation's signal, which aborts at its timeout, usually ends the retries first: a busy
 * machine can keep a file locked for a second or more). */
const LOCKED_ATTEMPTS = 200;

/** Whether `error` is SQLite's "database is locked": another connection on a local file. */
function isLocked(error: unknown): boolean {
  return error instanceof Error && /database is locked/i.test(error.message);
}

/**
 * Runs `op`; while a local KV file is locked by another connection's write (another
 * `Deno.openKv` of the file, in this process or another), runs it again after a short
 * random pause, until `signal` aborts (at most {@linkcode LOCKED_ATTEMPTS} times). Deno
 * Deploy never reports it.
 */
async function unlocked<T>(op: () => Promise<T>, signal: AbortSignal): Promise<T> {
  for (let attempt = 1;; attempt++) {
    try {
      return await op();
    } catch (error) {
      if (attempt >= LOCKED_ATTEMPTS || !isLocked(error)) throw error;
      signal.throwIfAborted();
      await sleep(1 + Math.random() * Math.min(2 ** attempt, 50), signal);
    }
  }
}

/** Resolves after `ms`, or at once when `signal` aborts. */
function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    if (signal.aborted) return resolve();
    const done = (): void => {
      clearTimeout(timer);
      signal.removeEventListener("abort", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal.addEventListener("abort", done, { once: true });
  });
}

/** Both parts of the tier on one Deno KV database. */
class KvParts implements RemoteStorage, RemoteBus {
  /** Deno KV's value limit: the cache keeps larger values local without trying. */
  readonly maxValueBytes = KV_MAX_VALUE_BYTES;
  #kv: Deno.Kv;
  #owned: boolean;
  #pollInterval: number;
  #ringSize: number;
  #closed = false;
  #subscriptions = new Set<() => Promise<void>>();
  /** Operations of the database under way, and what waits for them to end. */
  #pending = 0;
  #idle: (() => void)[] = [];

  constructor(kv: Deno.Kv, owned: boolean, pollInterval: number, ringSize: number) {
    this.#kv = kv;
    this.#owned = owned;
    this.#pollInterval = pollInterval;
    this.#ringSize = ringSize;
  }

  #checkOpen(): void {
    if (this.#closed) throw new Error("Cannot use kvTier: it is closed");
  }

  /** `run()`, counted as an operation under way until it settles (see `close()`). */
  async #op<T>(run: () => Promise<T>): Promise<T> {
    this.#pending++;
    try {
      return await run();
    } finally {
      if (--this.#pending === 0) { for (const wake of this.#idle.splice(0)) wake(); }
    }
  }

  /** Resolves once no operation is under way. */
  #settled(): Promise<void> {
    if (this.#pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idle.push(resolve));
  }

  /** The KV key of `key` in cache `name`: the bytes themselves, or their hash if too long. */
  async #entryKey(name: string, key: Uint8Array): Promise<Deno.KvKey> {
    const plain: Deno.KvKey = [ROOT, checkName(name), checkBytes("key", key)];
    if (keyBytes(plain) <= KV_MAX_KEY_BYTES) return plain;
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", new Uint8Array(key)));
    return [ROOT, name, HASHED, digest];
  }

  async get(
    name: string,
    key: Uint8Array,
    signal: AbortSignal,
  ): Promise<Uint8Array | undefined> {
    this.#checkOpen();
    signal.throwIfAborted();
    const kvKey = await this.#entryKey(name, key);
    const entry = await this.#op(() => unlocked(() => this.#kv.get(kvKey), signal));
    return entry.value instanceof Uint8Array ? entry.value : undefined;
  }

  async set(
    name: string,
    key: Uint8Array,
    value: Uint8Array,
    ttl: number | undefined,
    signal: AbortSignal,
  ): Promise<void> {
    this.#checkOpen();
    signal.throwIfAborted();
    checkBytes("value", value);
    if (value.length > KV_MAX_VALUE_BYTES) {
      throw new RangeError(
        `Cannot store a value of ${value.length} bytes in Deno KV: the limit is ${KV_MAX_VALUE_BYTES} bytes`,
      );
    }
    if (ttl !== undefined && !(typeof ttl === "number" && ttl > 0 && Number.isFinite(ttl))) {
      throw new RangeError(
        `Cannot use kvTier: ttl must be a positive finite number of milliseconds or undefined: received ${
          describe(ttl)
        }`,
      );
    }
    const kvKey = await this.#entryKey(name, key);
    // expireIn is a lower bound for Deno KV; round up so that it never comes earlier. Past
    // KV_MAX_EXPIRE_IN, none (kept longer, never shorter): Deno KV refuses it.
    const options = ttl === undefined || ttl > KV_MAX_EXPIRE_IN ? {} : { expireIn: Math.ceil(ttl) };
    await this.#op(() => unlocked(() => this.#kv.set(kvKey, value, options), signal));
  }

  async delete(name: string, key: Uint8Array, signal: AbortSignal): Promise<boolean> {
    this.#checkOpen();
    const kvKey = await this.#entryKey(name, key);
    for (;;) {
      signal.throwIfAborted();
      const entry = await this.#op(() => unlocked(() => this.#kv.get(kvKey), signal));
      if (entry.versionstamp === null) return false;
      const result = await this.#op(() =>
        unlocked(() => this.#kv.atomic().check(entry).delete(kvKey).commit(), signal)
      );
      if (result.ok) return true;
    }
  }

  clear(name: string, signal: AbortSignal): Promise<void> {
    try {
      this.#checkOpen();
      checkName(name);
      signal.throwIfAborted();
    } catch (error) {
      return Promise.reject(error);
    }
    return this.#op(() => this.#clear(name, signal));
  }

  async #clear(name: string, signal: AbortSignal): Promise<void> {
    const deleteAll = (keys: Deno.KvKey[]): Promise<void> =>
      unlocked(async () => {
        const op = this.#kv.atomic();
        for (const key of keys) op.delete(key);
        await op.commit(); // no checks: it cannot fail by a conflict
      }, signal);
    let batch: Deno.KvKey[] = [];
    let bytes = 0;
    for await (const { key } of this.#kv.list({ prefix: [ROOT, name] })) {
      if (key.length === 3 && key[2] === BUS) continue;
      const size = keyBytes(key);
      if (batch.length === MAX_BATCH_MUTATIONS || bytes + size > MAX_BATCH_KEY_BYTES) {
        signal.throwIfAborted();
        await deleteAll(batch);
        batch = [];
        bytes = 0;
      }
      batch.push(key);
      bytes += size;
    }
    if (batch.length > 0) await deleteAll(batch);
  }

  async publish(name: string, message: Invalidation, signal: AbortSignal): Promise<void> {
    this.#checkOpen();
    checkName(name);
    const { origin, stamp, keys, tags, repair } = checkMessage(message);
    const busKey: Deno.KvKey = [ROOT, name, BUS];
    for (let attempt = 0;; attempt++) {
      signal.throwIfAborted();
      const entry = await this.#op(() => unlocked(() => this.#kv.get<unknown>(busKey), signal));
      const previous: BusValue = isBusValue(entry.value)
        ? entry.value
        : { epoch: crypto.randomUUID(), seq: 0, ring: [] };
      const seq = previous.seq + 1;
      let added: BusMessage = { seq, origin, stamp, keys };
      if (tags !== undefined && tags.length > 0) added.tags = tags;
      if (repair === true) added.repair = true;
      if (messageWeight(added) > MAX_MESSAGE_BYTES) added = { seq, origin, stamp, keys: "clear" };
      const ring = [...previous.ring, added].slice(-this.#ringSize);
      let weight = ring.reduce((n, m) => n + messageWeight(m), 0);
      while (weight > MAX_BUS_BYTES && ring.length > 1) weight -= messageWeight(ring.shift()!);
      const value: BusValue = { epoch: previous.epoch, seq, ring };
      const result = await this.#op(() =>
        unlocked(() => this.#kv.atomic().check(entry).set(busKey, value).commit(), signal)
      );
      if (result.ok) return;
      // Another instance published first: read again, after a short random pause so that
      // many publishers do not keep colliding.
      await sleep(Math.random() * Math.min(2 ** attempt, 50), signal);
    }
  }

  async subscribe(name: string, listener: BusListener): Promise<() => Promise<void>> {
    this.#checkOpen();
    checkName(name);
    if (typeof listener?.message !== "function" || typeof listener.gap !== "function") {
      throw new TypeError(
        `Cannot subscribe: listener must have message() and gap() methods: received ${
          describe(listener)
        }`,
      );
    }
    const kv = this.#kv;
    const busKey: Deno.KvKey = [ROOT, name, BUS];
    const stop = new AbortController();
    const first = await this.#op(() => unlocked(() => kv.get<unknown>(busKey), stop.signal));
    // Closed meanwhile: close() did not see this subscription, which would outlive it.
    if (this.#closed) throw new Error("Cannot subscribe: the kvTier is closed");
    let lastEpoch = isBusValue(first.value) ? first.value.epoch : "";
    let lastSeq = isBusValue(first.value) ? first.value.seq : 0;
    let lastStamp = first.versionstamp ?? "";

    const deliver = (message: Invalidation | "gap"): void => {
      if (stop.signal.aborted) return;
      try {
        if (message === "gap") listener.gap();
        else listener.message(message);
      } catch {
        // A listener's fault must not stop the bus; the cache's listener never throws.
      }
    };
    /** Delivers what `entry` holds beyond the last message seen. Synchronous: no race. */
    const observe = (entry: Deno.KvEntryMaybe<unknown>): void => {
      if (entry.versionstamp === null) {
        if (lastStamp !== "") {
          // The bus key was deleted (a wiped database): messages may be lost.
          lastEpoch = "";
          lastSeq = 0;
          lastStamp = "";
          deliver("gap");
        }
        return;
      }
      if (entry.versionstamp <= lastStamp) return; // an older read (a poll behind the watch)
      const wasEmpty = lastStamp === "";
      lastStamp = entry.versionstamp;
      if (!isBusValue(entry.value)) {
        // Not a bus value (another program's write): nothing to trust but a clear.
        lastEpoch = "";
        lastSeq = 0;
        deliver("gap");
        return;
      }
      const { epoch, seq, ring } = entry.value;
      if (epoch !== lastEpoch) {
        // A new bus: the first one seen since it was empty starts at sequence 0; any other
        // (the key deleted and written again between two reads) may hide lost messages.
        if (!wasEmpty) deliver("gap");
        lastEpoch = epoch;
        lastSeq = 0;
      }
      if (seq <= lastSeq) return; // nothing new
      const fresh = ring.filter((m) => m.seq > lastSeq);
      if (fresh.length === 0 || fresh[0]!.seq !== lastSeq + 1) {
        deliver("gap"); // more than ringSize messages were missed
      }
      lastSeq = seq;
      for (const m of fresh) {
        const message: Invalidation = { origin: m.origin, stamp: m.stamp, keys: m.keys };
        if (m.tags !== undefined) message.tags = m.tags;
        if (m.repair === true) message.repair = true;
        deliver(message);
      }
    };

    let reader: ReadableStreamDefaultReader<Deno.KvEntryMaybe<unknown>[]> | undefined;
    const watching = (async () => {
      let retry = 100;
      while (!stop.signal.aborted) {
        try {
          reader = kv.watch([busKey]).getReader();
          for (;;) {
            const next = await reader.read();
            if (next.done) break;
            retry = 100;
            const [entry] = next.value;
            if (entry) observe(entry);
          }
        } catch {
          // The watch failed (a lost connection): start another after a pause.
        }
        if (stop.signal.aborted) break;
        await sleep(retry, stop.signal);
        retry = Math.min(retry * 2, MAX_RETRY_MS);
      }
    })();
    const polling = (async () => {
      if (this.#pollInterval === 0) return;
      while (!stop.signal.aborted) {
        await sleep(this.#pollInterval, stop.signal);
        if (stop.signal.aborted) break;
        try {
          observe(await this.#op(() => unlocked(() => kv.get<unknown>(busKey), stop.signal)));
        } catch {
          // The read failed: the next one may not.
        }
      }
    })();

    let stopped: Promise<void> | undefined;
    const unsubscribe = (): Promise<void> => {
      stopped ??= (async () => {
        stop.abort();
        await reader?.cancel().catch(() => {});
        await Promise.all([watching, polling]);
        this.#subscriptions.delete(unsubscribe);
      })();
      return stopped;
    };
    this.#subscriptions.add(unsubscribe);
    return unsubscribe;
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await Promise.all([...this.#subscriptions].map((unsubscribe) => unsubscribe()));
    if (!this.#owned) return;
    // Deno.Kv.close() blocks the thread while an operation waits for the file's lock
    // (another process writing, or stopped in the middle of a write): every timer of the
    // process, the tier's timeout included, would wait with it. Closed once none is under
    // way (the tier's close() resolves within its timeout meanwhile).
    await this.#settled();
    this.#kv.close();
  }
}
