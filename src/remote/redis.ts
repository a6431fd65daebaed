/**
 * `@warp/cache/redis`: a {@linkcode RemoteTier} over Redis or Valkey through node-redis
 * (`npm:@redis/client`, the client package of `npm:redis`), with an invalidation bus on Redis pub/sub. The main module does not import
 * this file, so a program without a remote tier loads no Redis client.
 *
 * Layout on the server, for a cache `name` and the default prefix `warp:`:
 *
 * - each entry is the string key `warp:<name>:<key bytes>` holding the value bytes, with a
 *   `PX` expiry when the entry has a TTL (`name`, and `prefix` but for one trailing `:`,
 *   have `%` and `:` percent-escaped, so one cache's keys never start with another cache's
 *   prefix, under any tier's prefix);
 * - invalidations are published on the channel `warp:<name>:bus`, one binary frame each
 *   (see {@linkcode encodeInvalidation}).
 *
 * Connection handling: the tier's clients reconnect by themselves (exponential backoff
 * capped at `reconnectMaxDelay`), fail commands at once while disconnected (no offline
 * queue: the caller's guard sees an error instead of a growing queue), and never emit an
 * unhandled `error` event, so a dead server never crashes the process. Subscriptions are
 * renewed by node-redis after each reconnection.
 *
 * @example A cache with a remote tier
 * ```ts ignore
 * import { cache } from "@warp/cache";
 * import { redisTier } from "@warp/cache/redis";
 *
 * // Closed at the end of the scope (within its timeout), so the script can exit.
 * await using remote = await redisTier({ url: "redis://127.0.0.1:6379" });
 * const getUser = cache({ name: "user", ttl: 60_000, remote })(
 *   async (id: string) => await fetchUser(id),
 * );
 * ```
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createClient, RESP_TYPES } from "@redis/client";
import { fitsTimer, LONGEST_TIMER_MS } from "../options/_validate.ts";
import {
  type BusListener,
  type Invalidation,
  type RemoteBus,
  type RemoteStorage,
  type RemoteTier,
  remoteTier,
  within,
} from "./remote.ts";

export type { BusListener, Invalidation, RemoteBus, RemoteStorage, RemoteTier } from "./remote.ts";

/**
 * The part of a node-redis client (`createClient()` of `npm:redis` or `npm:@redis/client`)
 * that the tier uses. Any node-redis v5+ client fits; a client of another library does not (implement
 * {@linkcode RemoteTier} for it instead).
 */
export interface RedisClient {
  /** Whether the client is connected or connecting (`connect()` was called). */
  readonly isOpen: boolean;
  /** Sends one command; replies are mapped by `options.typeMapping`. */
  // deno-lint-ignore no-explicit-any
  sendCommand(args: ReadonlyArray<string | Buffer>, options?: any): Promise<unknown>;
  /** A new, unconnected client with the same options (overridden by `overrides`). */
  // deno-lint-ignore no-explicit-any
  duplicate(overrides?: any): RedisClient;
  /** Connects the client. */
  connect(): Promise<unknown>;
  /** Closes the client after its pending replies. */
  close(): Promise<void>;
  /** Closes the client at once. */
  destroy(): void;
  /** Subscribes `listener` to `channels`; with `bufferMode`, messages arrive as Buffers. */
  subscribe(
    channels: string | string[],
    listener: (message: Buffer, channel: Buffer) => void,
    bufferMode: true,
  ): Promise<void>;
  /** Removes `listener` from `channels`. */
  unsubscribe(
    channels: string | string[],
    listener: (message: Buffer, channel: Buffer) => void,
    bufferMode: true,
  ): Promise<void>;
  /** Adds an event listener (`error`, `ready`...). */
  // deno-lint-ignore no-explicit-any
  on(event: string, listener: (...args: any[]) => void): unknown;
  /** Removes an event listener. */
  // deno-lint-ignore no-explicit-any
  off(event: string, listener: (...args: any[]) => void): unknown;
  /** The number of listeners of an event. */
  listenerCount(event: string): number;
}

/** Where the tier connects: a URL (the tier opens and owns its clients) or a client. */
export type RedisTarget =
  | {
    /** `redis://[user:password@]host[:port][/db]` or `rediss://...` (TLS). */
    url: string;
  }
  | {
    /**
     * A node-redis client, open (`connect()` called) or not (the tier connects it). The
     * tier uses it for commands and a `duplicate()` of it for pub/sub; `close()` closes
     * the duplicate, never this client. A client without an `error` listener gets a
     * no-op one while the tier is open, so a lost connection does not crash the process.
     */
    client: RedisClient;
  };

/** Options of {@linkcode redisTier}. */
export interface RedisTierOptions {
  /**
   * The first part of every key and channel; the cache `name` follows. Stored with `%`
   * and `:` percent-escaped, except one trailing `:` (added when missing), so that the
   * keys of two prefixes never overlap (`"app"` and `"app:"` are one prefix).
   * @default {"warp:"}
   */
  prefix?: string;
  /**
   * The longest wait between two reconnection attempts, in ms (the waits double from
   * 50 ms up to it). Applies to the clients the tier creates from a `url`.
   * @default {2000}
   */
  reconnectMaxDelay?: number;
  /**
   * How long one connection attempt may take, in ms. Applies to the clients the tier
   * creates from a `url`.
   * @default {2000}
   */
  connectTimeout?: number;
  /**
   * Called with each connection error of the tier's clients (they are otherwise
   * swallowed: the cache's guard counts and logs failed calls).
   */
  onError?: (error: Error) => void;
  /**
   * Most ms that `close()` takes: past it, the connections are dropped without waiting
   * for pending replies.
   * @default {500}
   */
  timeout?: number;
}

/**
 * Per-command options: replies as Buffers, and no per-command timer (node-redis 6 arms one
 * by default, an `AbortSignal.timeout` per command: the cache's guard already bounds every
 * call by `remoteTimeout`).
 */
const BUFFER_REPLIES = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer }, timeout: 0 } as const;
const GET = Buffer.from("GET");

/** The version byte that starts every bus frame. */
const FRAME_VERSION = 2;
const KIND_KEYS = 0;
const KIND_CLEAR = 1;
const REPAIR = 128;
const utf8 = new TextEncoder();

/**
 * Encodes an invalidation as one bus frame (all integers big-endian):
 *
 * ```text
 * u8 version (2) | u8 kind (0: keys, 1: clear; +128: a repair) | u8 origin length | origin
 * f64 stamp | u16 tag count | per tag: u16 length | tag (UTF-8)
 * [kind 0 only:] u32 key count | per key: u32 length | key bytes
 * ```
 *
 * @param message The invalidation.
 * @returns The frame.
 * @throws {RangeError} If the origin is longer than 255 bytes in UTF-8, or a tag longer
 * than 65,535 bytes (or more than 65,535 tags).
 *
 * @example A round trip
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeInvalidation, encodeInvalidation } from "./redis.ts";
 *
 * const message = { origin: "a1", stamp: 1700000000000, keys: [new Uint8Array([0, 255])] };
 * assert.deepEqual(decodeInvalidation(encodeInvalidation(message)), message);
 * ```
 */
export function encodeInvalidation(message: Invalidation): Uint8Array {
  const origin = utf8.encode(message.origin);
  if (origin.length > 255) {
    throw new RangeError(
      `Cannot encode invalidation: origin must be at most 255 bytes in UTF-8: received ${origin.length} bytes`,
    );
  }
  const tags = (message.tags ?? []).map((t) => utf8.encode(t));
  if (tags.length > 0xffff || tags.some((t) => t.length > 0xffff)) {
    throw new RangeError(
      `Cannot encode invalidation: at most 65535 tags of at most 65535 bytes: received ${tags.length} tags`,
    );
  }
  const keys = message.keys;
  let size = 3 + origin.length + 8 + 2;
  for (const t of tags) size += 2 + t.length;
  if (keys !== "clear") {
    size += 4;
    for (const key of keys) size += 4 + key.length;
  }
  const frame = new Uint8Array(size);
  const view = new DataView(frame.buffer);
  frame[0] = FRAME_VERSION;
  frame[1] = (keys === "clear" ? KIND_CLEAR : KIND_KEYS) | (message.repair === true ? REPAIR : 0);
  frame[2] = origin.length;
  frame.set(origin, 3);
  let at = 3 + origin.length;
  view.setFloat64(at, message.stamp);
  view.setUint16(at + 8, tags.length);
  at += 10;
  for (const t of tags) {
    view.setUint16(at, t.length);
    frame.set(t, at + 2);
    at += 2 + t.length;
  }
  if (keys !== "clear") {
    view.setUint32(at, keys.length);
    at += 4;
    for (const key of keys) {
      view.setUint32(at, key.length);
      frame.set(key, at + 4);
      at += 4 + key.length;
    }
  }
  return frame;
}

/**
 * Decodes a bus frame written by {@linkcode encodeInvalidation}.
 *
 * @param frame The frame.
 * @returns The invalidation, or `undefined` when the frame is malformed (another version,
 * truncated, or with bytes left over).
 */
export function decodeInvalidation(frame: Uint8Array): Invalidation | undefined {
  if (frame.length < 3 || frame[0] !== FRAME_VERSION) return undefined;
  const kind = frame[1]! & ~REPAIR;
  const repair = (frame[1]! & REPAIR) !== 0;
  if (kind !== KIND_KEYS && kind !== KIND_CLEAR) return undefined;
  const originEnd = 3 + frame[2]!;
  if (originEnd + 10 > frame.length) return undefined;
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const decoder = new TextDecoder("utf-8", { fatal: true });
  let origin: string;
  const tags: string[] = [];
  const stamp = view.getFloat64(originEnd);
  let at = originEnd + 10;
  try {
    origin = decoder.decode(frame.subarray(3, originEnd));
    const count = view.getUint16(originEnd + 8);
    for (let i = 0; i < count; i++) {
      if (at + 2 > frame.length) return undefined;
      const length = view.getUint16(at);
      if (at + 2 + length > frame.length) return undefined;
      tags.push(decoder.decode(frame.subarray(at + 2, at + 2 + length)));
      at += 2 + length;
    }
  } catch {
    return undefined;
  }
  if (Number.isNaN(stamp)) return undefined;
  const message: Invalidation = { origin, stamp, keys: "clear" };
  if (tags.length > 0) message.tags = tags;
  if (repair) message.repair = true;
  if (kind === KIND_CLEAR) return at === frame.length ? message : undefined;
  if (at + 4 > frame.length) return undefined;
  const count = view.getUint32(at);
  at += 4;
  const keys: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    if (at + 4 > frame.length) return undefined;
    const length = view.getUint32(at);
    at += 4;
    if (at + length > frame.length) return undefined;
    keys.push(frame.slice(at, at + length));
    at += length;
  }
  if (at !== frame.length) return undefined;
  message.keys = keys;
  return message;
}

/** `name` with `%` and `:` percent-escaped, so that it never contains the separator. */
function escapeName(name: string): string {
  return name.replaceAll("%", "%25").replaceAll(":", "%3A");
}

/** `text` with the glob characters of `SCAN MATCH` escaped. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, "\\$&");
}

function positiveMs(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0 || !fitsTimer(value)) {
    throw new RangeError(
      `Cannot create redisTier: ${name} must be a positive number of ms no larger than ${LONGEST_TIMER_MS} (the longest timer): received ${
        String(value)
      }`,
    );
  }
  return value;
}

/** The longest TTL given to Redis as `PX`, ms (285,000 years): a longer one (up to
 * `Number.MAX_VALUE`, which the cache's `ttl` takes) is stored without an expiry, since the
 * value's frame carries its deadline. */
const MAX_PX = Number.MAX_SAFE_INTEGER;

/** Keys removed per `UNLINK` (and asked per `SCAN`) by `clear()`. */
const CLEAR_BATCH = 1000;

/** Both parts of the tier on one pair of connections (commands, and pub/sub). */
class RedisParts implements RemoteStorage, RemoteBus {
  readonly #client: RedisClient;
  readonly #subscriber: RedisClient;
  readonly #owned: boolean;
  readonly #prefix: string;
  readonly #onError: (error: Error) => void;
  readonly #addedErrorListener: boolean;
  readonly #timeout: number;
  /** Key prefix of each cache name, as bytes. */
  readonly #prefixes = new Map<string, Buffer>();
  /** The listeners of the active subscriptions, told of a gap after a reconnection. */
  readonly #listeners = new Set<BusListener>();
  /** Whether the pub/sub connection was lost since it was last ready. */
  #lost = false;
  #closing: Promise<void> | undefined = undefined;

  constructor(
    client: RedisClient,
    subscriber: RedisClient,
    owned: boolean,
    prefix: string,
    onError: (error: Error) => void,
    addedErrorListener: boolean,
    timeout: number,
  ) {
    this.#client = client;
    this.#subscriber = subscriber;
    this.#owned = owned;
    // Without one trailing `:`, escaped, then `:`: no namespace starts another, whatever
    // the prefixes of the tiers sharing a server (`app:` and `app:staging:`, `` and `warp:`).
    this.#prefix = `${escapeName(prefix.endsWith(":") ? prefix.slice(0, -1) : prefix)}:`;
    this.#onError = onError;
    this.#addedErrorListener = addedErrorListener;
    this.#timeout = timeout;
    const lost = (): void => {
      this.#lost = true;
    };
    subscriber.on("error", lost);
    subscriber.on("reconnecting", lost);
    subscriber.on("end", lost);
    // node-redis renews the subscriptions before it reports "ready" again.
    subscriber.on("ready", () => {
      if (!this.#lost) return;
      this.#lost = false;
      for (const listener of [...this.#listeners]) listener.gap();
    });
  }

  #namePrefix(name: string): string {
    return `${this.#prefix}${escapeName(name)}:`;
  }

  #key(name: string, key: Uint8Array): Buffer {
    let prefix = this.#prefixes.get(name);
    if (prefix === undefined) {
      prefix = Buffer.from(this.#namePrefix(name));
      if (this.#prefixes.size < 1024) this.#prefixes.set(name, prefix);
    }
    const out = Buffer.allocUnsafe(prefix.length + key.length);
    out.set(prefix, 0);
    out.set(key, prefix.length);
    return out;
  }

  #send(args: (string | Buffer)[]): Promise<unknown> {
    try {
      return this.#client.sendCommand(args, BUFFER_REPLIES);
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async get(name: string, key: Uint8Array, _signal: AbortSignal): Promise<Uint8Array | undefined> {
    const reply = await this.#send([GET, this.#key(name, key)]);
    if (reply === null || reply === undefined) return undefined;
    if (!(reply instanceof Uint8Array)) {
      throw new TypeError(`Unexpected reply to GET: ${typeof reply}`);
    }
    // A plain view of the reply's bytes (no copy).
    return new Uint8Array(reply.buffer, reply.byteOffset, reply.byteLength);
  }

  async set(
    name: string,
    key: Uint8Array,
    value: Uint8Array,
    ttl: number | undefined,
    _signal: AbortSignal,
  ): Promise<void> {
    if (ttl !== undefined && (typeof ttl !== "number" || !(ttl >= 0))) {
      throw new RangeError(
        `Cannot set remote entry: ttl must be undefined or a non-negative number of ms: received ${
          String(ttl)
        }`,
      );
    }
    const remoteKey = this.#key(name, key);
    if (ttl === 0) {
      // Expired on arrival: what was stored under the key is stale too.
      await this.#send(["UNLINK", remoteKey]);
      return;
    }
    const args: (string | Buffer)[] = [
      "SET",
      remoteKey,
      Buffer.from(value.buffer, value.byteOffset, value.byteLength),
    ];
    // Past MAX_PX no expiry (kept longer, never shorter): Redis refuses a PX past 2^63 - now.
    if (ttl !== undefined && ttl <= MAX_PX) args.push("PX", String(Math.ceil(ttl)));
    await this.#send(args);
  }

  async delete(name: string, key: Uint8Array, _signal: AbortSignal): Promise<boolean> {
    const removed = await this.#send(["UNLINK", this.#key(name, key)]);
    return Number(removed) > 0;
  }

  /** SCAN MATCH over the cache's prefix, UNLINK per batch: O(keys on the server). */
  async clear(name: string, signal: AbortSignal): Promise<void> {
    const pattern = `${escapeGlob(this.#namePrefix(name))}*`;
    let cursor = "0";
    do {
      signal.throwIfAborted();
      const reply = await this.#send(
        ["SCAN", cursor, "MATCH", pattern, "COUNT", String(CLEAR_BATCH)],
      ) as [Buffer | string, Buffer[]];
      cursor = String(reply[0]);
      const keys = reply[1];
      if (keys.length > 0) await this.#send(["UNLINK", ...keys]);
    } while (cursor !== "0");
  }

  async publish(name: string, message: Invalidation, _signal: AbortSignal): Promise<void> {
    const frame = encodeInvalidation(message);
    await this.#send(["PUBLISH", `${this.#namePrefix(name)}bus`, Buffer.from(frame.buffer)]);
  }

  async subscribe(name: string, listener: BusListener): Promise<() => Promise<void>> {
    if (this.#closing !== undefined) throw new Error("Cannot subscribe: the Redis tier is closed");
    const channel = `${this.#namePrefix(name)}bus`;
    const onMessage = (frame: Buffer): void => {
      // A plain view, so that the decoded keys are plain Uint8Array copies, not Buffers.
      const bytes = new Uint8Array(frame.buffer, frame.byteOffset, frame.byteLength);
      const message = decodeInvalidation(bytes);
      if (message === undefined) {
        this.#onError(new TypeError(`Ignored a malformed invalidation on ${channel}`));
        return;
      }
      listener.message(message);
    };
    await this.#subscriber.subscribe(channel, onMessage, true);
    this.#listeners.add(listener);
    let done = false;
    return async () => {
      if (done || this.#closing !== undefined) return;
      done = true;
      this.#listeners.delete(listener);
      await this.#subscriber.unsubscribe(channel, onMessage, true);
    };
  }

  /** Closes the connections the tier opened, waiting at most `timeout` ms for pending
   * replies, then dropping them. Idempotent. */
  close(): Promise<void> {
    this.#closing ??= (async () => {
      this.#listeners.clear();
      const closeOne = async (client: RedisClient): Promise<void> => {
        let closed = false;
        await within(client.close().then(() => closed = true), this.#timeout);
        if (!closed) {
          try {
            client.destroy();
          } catch {
            // Closed meanwhile.
          }
        }
      };
      const closing = [closeOne(this.#subscriber)];
      if (this.#owned) closing.push(closeOne(this.#client));
      else if (this.#addedErrorListener) this.#client.off("error", this.#onError);
      await Promise.all(closing);
    })();
    return this.#closing;
  }
}

/**
 * A {@linkcode RemoteTier} over Redis or Valkey (node-redis).
 *
 * With `{ url }` the tier opens two connections (commands, and pub/sub) and owns them;
 * with `{ client }` it uses that client for commands and opens a `duplicate()` of it for
 * pub/sub. The Promise resolves once the connections are ready or their first attempt
 * failed: a server that is down at start does not fail the program; the clients keep
 * reconnecting and calls fail fast (and the cache counts them) until it is back.
 *
 * `clear(name)` scans the keys of cache `name` (`SCAN MATCH`) and unlinks them in batches:
 * its cost grows with the number of keys on the server.
 *
 * @param target `{ url }` or `{ client }`.
 * @param options Key prefix, reconnection and connection timeouts, error hook.
 * @returns The tier; `close()` closes the connections it opened.
 * @throws {TypeError} If `target` has neither a string `url` nor a `client`, or if `url`
 * is not a `redis:` or `rediss:` URL.
 * @throws {RangeError} If an option is out of range.
 *
 * @example Open, use and close a tier
 * ```ts ignore
 * import { redisTier } from "@warp/cache/redis";
 *
 * await using tier = await redisTier({ url: "redis://127.0.0.1:6379" }, { prefix: "app:" });
 * const signal = AbortSignal.timeout(500);
 * await tier.storage.set("users", new Uint8Array([1]), new Uint8Array([42]), 60_000, signal);
 * ```
 */
export async function redisTier(
  target: RedisTarget,
  options: RedisTierOptions = {},
): Promise<RemoteTier> {
  const given = target as { url?: unknown; client?: unknown } | null | undefined;
  if (typeof given !== "object" || given === null) {
    throw new TypeError(
      `Cannot create redisTier: target must be { url } or { client }: received ${String(given)}`,
    );
  }
  const prefix = options.prefix ?? "warp:";
  if (typeof prefix !== "string") {
    throw new TypeError(
      `Cannot create redisTier: prefix must be a string: received ${String(prefix)}`,
    );
  }
  const reconnectMaxDelay = positiveMs(options.reconnectMaxDelay, 2000, "reconnectMaxDelay");
  const timeout = positiveMs(options.timeout, 500, "timeout");
  const connectTimeout = positiveMs(options.connectTimeout, 2000, "connectTimeout");
  const userOnError = options.onError;
  const onError = (error: Error): void => {
    try {
      userOnError?.(error);
    } catch {
      // A throwing hook must not turn into an unhandled error event.
    }
  };

  let client: RedisClient;
  let owned: boolean;
  let addedErrorListener = false;
  if (given.client !== undefined) {
    const c = given.client as Partial<RedisClient> | null;
    if (
      typeof c !== "object" || c === null || typeof c.sendCommand !== "function" ||
      typeof c.duplicate !== "function"
    ) {
      throw new TypeError(
        `Cannot create redisTier: client must be a node-redis client (createClient() of npm:redis): received ${
          String(c)
        }`,
      );
    }
    client = c as RedisClient;
    owned = false;
    if (client.listenerCount("error") === 0) {
      client.on("error", onError);
      addedErrorListener = true;
    }
  } else if (typeof given.url === "string") {
    let url: URL;
    try {
      url = new URL(given.url);
    } catch {
      throw new TypeError(
        `Cannot create redisTier: url must be a redis:// or rediss:// URL: received "${given.url}"`,
      );
    }
    if (url.protocol !== "redis:" && url.protocol !== "rediss:") {
      throw new TypeError(
        `Cannot create redisTier: url must be a redis:// or rediss:// URL: received "${given.url}"`,
      );
    }
    client = createClient({
      url: given.url,
      disableOfflineQueue: true,
      socket: {
        connectTimeout,
        reconnectStrategy: (retries: number) =>
          Math.min(50 * 2 ** Math.min(retries, 16), reconnectMaxDelay),
      },
    }) as unknown as RedisClient;
    client.on("error", onError);
    owned = true;
  } else {
    throw new TypeError(
      `Cannot create redisTier: target must have a url (string) or a client: received ${
        JSON.stringify(Object.keys(given))
      } keys`,
    );
  }

  const subscriber = client.duplicate();
  subscriber.on("error", onError);
  const starts = [subscriber];
  if (!client.isOpen) starts.push(client);
  await Promise.all(starts.map((c) => firstAttempt(c, connectTimeout)));
  const parts = new RedisParts(
    client,
    subscriber,
    owned,
    prefix,
    onError,
    addedErrorListener,
    timeout,
  );
  return remoteTier({ storage: parts, bus: parts }, { timeout });
}

/**
 * Starts connecting `client`; resolves when it is ready, when its first attempt failed, or
 * after `ms` (node-redis's `connectTimeout` bounds the TCP connect only, not the handshake
 * that follows: a server that accepts and never answers, frozen or behind a proxy whose
 * backend is gone, would keep it waiting forever). The client goes on trying meanwhile;
 * calls fail fast until it is ready.
 */
function firstAttempt(client: RedisClient, ms: number): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      client.off("ready", done);
      client.off("error", done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    client.on("ready", done);
    client.on("error", done);
    // connect() settles only when connected or when the client is closed: its result is
    // reported through the events above.
    client.connect().catch(() => {});
  });
}
