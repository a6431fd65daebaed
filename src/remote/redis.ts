/**
 * `@warp/cache/redis`: a {@linkcode RemoteTier} over Redis or Valkey through node-redis
 * (`npm:@redis/client`, the client package of `npm:redis`), with an invalidation bus on Redis pub/sub. The main module does not import
 * this file, so a program without a remote tier loads no Redis client.
 *
 * Layout on the server, for a cache `name` and the default prefix `warp:`:
 *
 * - each entry is the string key `warp:<name>:<key bytes>` holding the value bytes, with a
 *   `PX` expiry when the entry has a TTL (`name` has `%` and `:` percent-escaped, so one
 *   cache's keys never start with another cache's prefix);
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
 * const remote = await redisTier({ url: "redis://127.0.0.1:6379" });
 * const getUser = cache(async (id: string) => await fetchUser(id), { name: "user", remote });
 * ```
 *
 * @module
 */

import { Buffer } from "node:buffer";
import { createClient, RESP_TYPES } from "@redis/client";
import type { Invalidation, RemoteTier } from "./remote.ts";

export type { Invalidation, RemoteTier } from "./remote.ts";

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
   * The first part of every key and channel; the cache `name` follows.
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
}

const BUFFER_REPLIES = { typeMapping: { [RESP_TYPES.BLOB_STRING]: Buffer } } as const;

/** The version byte that starts every bus frame. */
const FRAME_VERSION = 1;
const KIND_KEYS = 0;
const KIND_CLEAR = 1;

/**
 * Encodes an invalidation as one bus frame (all integers big-endian):
 *
 * ```text
 * u8 version (1) | u8 kind (0: keys, 1: clear) | u8 origin length | origin (UTF-8)
 * [kind 0 only:] u32 key count | per key: u32 length | key bytes
 * ```
 *
 * @param message The invalidation.
 * @returns The frame.
 * @throws {RangeError} If the origin is longer than 255 bytes in UTF-8.
 *
 * @example A round trip
 * ```ts
 * import assert from "node:assert/strict";
 * import { decodeInvalidation, encodeInvalidation } from "./redis.ts";
 *
 * const frame = encodeInvalidation({ origin: "a1", keys: [new Uint8Array([0, 255])] });
 * assert.deepEqual(decodeInvalidation(frame), { origin: "a1", keys: [new Uint8Array([0, 255])] });
 * ```
 */
export function encodeInvalidation(message: Invalidation): Uint8Array {
  const origin = new TextEncoder().encode(message.origin);
  if (origin.length > 255) {
    throw new RangeError(
      `Cannot encode invalidation: origin must be at most 255 bytes in UTF-8: received ${origin.length} bytes`,
    );
  }
  const keys = message.keys;
  let size = 3 + origin.length;
  if (keys !== "clear") {
    size += 4;
    for (const key of keys) size += 4 + key.length;
  }
  const frame = new Uint8Array(size);
  const view = new DataView(frame.buffer);
  frame[0] = FRAME_VERSION;
  frame[1] = keys === "clear" ? KIND_CLEAR : KIND_KEYS;
  frame[2] = origin.length;
  frame.set(origin, 3);
  if (keys !== "clear") {
    let at = 3 + origin.length;
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
  const kind = frame[1];
  const originEnd = 3 + frame[2]!;
  if (originEnd > frame.length) return undefined;
  let origin: string;
  try {
    origin = new TextDecoder("utf-8", { fatal: true }).decode(frame.subarray(3, originEnd));
  } catch {
    return undefined;
  }
  if (kind === KIND_CLEAR) {
    return originEnd === frame.length ? { origin, keys: "clear" } : undefined;
  }
  if (kind !== KIND_KEYS || originEnd + 4 > frame.length) return undefined;
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const count = view.getUint32(originEnd);
  let at = originEnd + 4;
  const keys: Uint8Array[] = [];
  for (let i = 0; i < count; i++) {
    if (at + 4 > frame.length) return undefined;
    const length = view.getUint32(at);
    at += 4;
    if (at + length > frame.length) return undefined;
    keys.push(frame.slice(at, at + length));
    at += length;
  }
  return at === frame.length ? { origin, keys } : undefined;
}

/** `name` with `%` and `:` percent-escaped, so that it never contains the separator. */
function escapeName(name: string): string {
  return name.replaceAll("%", "%25").replaceAll(":", "%3A");
}

/** `text` with the glob characters of `SCAN MATCH` escaped. */
function escapeGlob(text: string): string {
  return text.replace(/[*?[\]\\]/g, "\\$&");
}

/** Rejects with the signal's reason as soon as it aborts; `promise` otherwise. */
function untilAborted<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) {
    promise.catch(() => {});
    return Promise.reject(signal.reason);
  }
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener("abort", onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener("abort", onAbort));
  });
}

function positiveMs(value: number | undefined, fallback: number, name: string): number {
  if (value === undefined) return fallback;
  if (typeof value !== "number" || !Number.isFinite(value) || value <= 0) {
    throw new RangeError(
      `Cannot create redisTier: ${name} must be a finite, positive number of ms: received ${
        String(value)
      }`,
    );
  }
  return value;
}

/** Keys removed per `UNLINK` (and asked per `SCAN`) by `clear()`. */
const CLEAR_BATCH = 1000;

class RedisTier implements RemoteTier {
  readonly #client: RedisClient;
  readonly #subscriber: RedisClient;
  readonly #owned: boolean;
  readonly #prefix: string;
  readonly #onError: (error: Error) => void;
  readonly #addedErrorListener: boolean;
  #closed = false;

  constructor(
    client: RedisClient,
    subscriber: RedisClient,
    owned: boolean,
    prefix: string,
    onError: (error: Error) => void,
    addedErrorListener: boolean,
  ) {
    this.#client = client;
    this.#subscriber = subscriber;
    this.#owned = owned;
    this.#prefix = prefix;
    this.#onError = onError;
    this.#addedErrorListener = addedErrorListener;
  }

  #namePrefix(name: string): string {
    return `${this.#prefix}${escapeName(name)}:`;
  }

  #key(name: string, key: Uint8Array): Buffer {
    const prefix = Buffer.from(this.#namePrefix(name));
    const out = Buffer.allocUnsafe(prefix.length + key.length);
    prefix.copy(out, 0);
    out.set(key, prefix.length);
    return out;
  }

  #send(args: (string | Buffer)[], signal: AbortSignal): Promise<unknown> {
    if (signal.aborted) return Promise.reject(signal.reason);
    try {
      return untilAborted(
        this.#client.sendCommand(args, { ...BUFFER_REPLIES, abortSignal: signal }),
        signal,
      );
    } catch (error) {
      return Promise.reject(error);
    }
  }

  async get(name: string, key: Uint8Array, signal: AbortSignal): Promise<Uint8Array | undefined> {
    const reply = await this.#send(["GET", this.#key(name, key)], signal);
    if (reply === null || reply === undefined) return undefined;
    if (!(reply instanceof Uint8Array)) {
      throw new TypeError(`Unexpected reply to GET: ${typeof reply}`);
    }
    return new Uint8Array(reply);
  }

  async set(
    name: string,
    key: Uint8Array,
    value: Uint8Array,
    ttl: number | undefined,
    signal: AbortSignal,
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
      await this.#send(["UNLINK", remoteKey], signal);
      return;
    }
    const args: (string | Buffer)[] = ["SET", remoteKey, Buffer.from(value)];
    if (ttl !== undefined && Number.isFinite(ttl)) args.push("PX", String(Math.ceil(ttl)));
    await this.#send(args, signal);
  }

  async delete(name: string, key: Uint8Array, signal: AbortSignal): Promise<boolean> {
    const removed = await this.#send(["UNLINK", this.#key(name, key)], signal);
    return Number(removed) > 0;
  }

  /** SCAN MATCH over the cache's prefix, UNLINK per batch: O(keys on the server). */
  async clear(name: string, signal: AbortSignal): Promise<void> {
    const pattern = `${escapeGlob(this.#namePrefix(name))}*`;
    let cursor = "0";
    do {
      const reply = await this.#send(
        ["SCAN", cursor, "MATCH", pattern, "COUNT", String(CLEAR_BATCH)],
        signal,
      ) as [Buffer | string, Buffer[]];
      cursor = String(reply[0]);
      const keys = reply[1];
      if (keys.length > 0) await this.#send(["UNLINK", ...keys], signal);
    } while (cursor !== "0");
  }

  async publish(name: string, message: Invalidation, signal: AbortSignal): Promise<void> {
    const frame = encodeInvalidation(message);
    await this.#send(["PUBLISH", `${this.#namePrefix(name)}bus`, Buffer.from(frame)], signal);
  }

  async subscribe(
    name: string,
    listener: (message: Invalidation) => void,
  ): Promise<() => Promise<void>> {
    if (this.#closed) throw new Error("Cannot subscribe: the Redis tier is closed");
    const channel = `${this.#namePrefix(name)}bus`;
    const onMessage = (frame: Buffer): void => {
      // A plain view, so that the decoded keys are plain Uint8Array copies, not Buffers.
      const bytes = new Uint8Array(frame.buffer, frame.byteOffset, frame.byteLength);
      const message = decodeInvalidation(bytes);
      if (message === undefined) {
        this.#onError(new TypeError(`Ignored a malformed invalidation on ${channel}`));
        return;
      }
      listener(message);
    };
    await this.#subscriber.subscribe(channel, onMessage, true);
    let done = false;
    return async () => {
      if (done || this.#closed) return;
      done = true;
      await this.#subscriber.unsubscribe(channel, onMessage, true);
    };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const closeOne = async (client: RedisClient): Promise<void> => {
      try {
        await client.close();
      } catch {
        client.destroy();
      }
    };
    await closeOne(this.#subscriber);
    if (this.#owned) await closeOne(this.#client);
    else if (this.#addedErrorListener) this.#client.off("error", this.#onError);
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
 * const tier = await redisTier({ url: "redis://127.0.0.1:6379" }, { prefix: "app:" });
 * await tier.set("users", new Uint8Array([1]), new Uint8Array([42]), 60_000, AbortSignal.timeout(500));
 * await tier.close();
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
  await Promise.all(starts.map((c) => firstAttempt(c)));
  return new RedisTier(client, subscriber, owned, prefix, onError, addedErrorListener);
}

/** Starts connecting `client`; resolves when it is ready or its first attempt failed. */
function firstAttempt(client: RedisClient): Promise<void> {
  return new Promise<void>((resolve) => {
    const done = (): void => {
      client.off("ready", done);
      client.off("error", done);
      resolve();
    };
    client.on("ready", done);
    client.on("error", done);
    // connect() settles only when connected or when the client is closed: its result is
    // reported through the events above.
    client.connect().catch(() => {});
  });
}
