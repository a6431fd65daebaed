/**
 * One cache's link to its remote tier: the frames of the values it stores there, the
 * invalidations it sends and applies, its {@linkcode Barrier}, and its counters. Every
 * remote call goes through a {@linkcode GuardedTier} (timeout, circuit breaker, errors
 * counted and logged once), so nothing here ever rejects towards a caller.
 *
 * A remote value is framed as
 * `[version u8 = 2][deadline f64 LE: Unix ms, or +Infinity][born f64 LE: Unix ms]
 * [tag count u8][per tag: length u8, UTF-8]` followed by the shared backend's value
 * encoding: a storage whose expiry only bounds from below (Deno KV's `expireIn`) never
 * serves an expired value, a value born before an invalidation known here is a miss, and
 * a frame that fails to decode is a miss.
 *
 * How the call path uses it (see the README, "Remote tier"):
 *
 * 1. when a computation of a key starts (a local miss, a refresh), take
 *    `since = link.stamp()`;
 * 2. read through with `link.fetch(key, since)`: a remote value, or `undefined`;
 * 3. before storing the result locally, ask `link.mayStore(key, since)`; if it says no, the
 *    value is returned to the callers but stored nowhere; else store it and write it
 *    through with `link.write(key, value, promised, ttl, since)` (which asks again);
 * 4. `cacheSet`, `cacheDelete` and `cacheClear` call `link.set`, `link.delete`,
 *    `link.clear`: effective at once for this process (the barrier), then sent to the
 *    storage and the bus in order, kept and retried while the remote is unreachable;
 * 5. the {@linkcode LocalTier} hooks are called for invalidations from other instances and
 *    after a bus gap: they drop local copies and detach the computations under way of the
 *    keys named (their results are then not stored: `mayStore` says no too).
 *
 * @module
 */

import { GuardedTier } from "./_remote_guard.ts";
import { Barrier } from "./_barrier.ts";
import { type BusListener, type Invalidation, onTierClose, type RemoteTier } from "./remote.ts";
import { decodeValueIn, encodeValue, isPromised } from "../codec/value_codec.ts";
import { bytesToKeyString } from "../codec/key_codec.ts";

const FRAME_VERSION = 2;
/** Version, deadline, born, tag count. */
const HEADER = 18;

/** A value read from the remote tier. */
export interface RemoteValue {
  value: unknown;
  /** Whether it was an async function's resolved value (hits return a Promise of it). */
  promised: boolean;
  /** Ms until its deadline (`undefined`: none). */
  ttl: number | undefined;
  /** When the computation (or `cacheSet`) that made it started: Unix ms, its host's clock. */
  born: number;
  /** Its tags. */
  tags: string[];
}

/** What the link applies to the local tier when another instance invalidates, or after a
 * bus gap. */
export interface LocalTier {
  /** Drops the local copy of encoded key `key`, and detaches a computation of that key
   * under way in this process (its callers still get its result; it is not stored). */
  drop(key: Uint8Array): void;
  /** Drops every local entry and detaches every computation under way. */
  dropAll(): void;
  /** Drops the local entries carrying one of `tags` (optional: tag invalidation). */
  dropTags?(tags: readonly string[]): void;
}

const NO_TAGS: readonly string[] = Object.freeze([]);
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder();

/** Frames `value` with its deadline (Unix ms; `Infinity`: none), birth and tags. */
export function frameValue(
  value: unknown,
  promised: boolean,
  deadline: number,
  born: number,
  tags: readonly string[] = NO_TAGS,
): Uint8Array {
  const body = encodeValue(value, promised);
  const tagBytes = tags.map((t) => utf8.encode(t));
  if (tagBytes.length > 255 || tagBytes.some((t) => t.length > 255)) {
    throw new RangeError(
      `Cannot frame a remote value: at most 255 tags of at most 255 bytes: received ${tags.length} tags`,
    );
  }
  let size = HEADER + body.length;
  for (const t of tagBytes) size += 1 + t.length;
  const out = new Uint8Array(size);
  const view = new DataView(out.buffer);
  out[0] = FRAME_VERSION;
  view.setFloat64(1, deadline, true);
  view.setFloat64(9, born, true);
  out[17] = tagBytes.length;
  let at = HEADER;
  for (const t of tagBytes) {
    out[at] = t.length;
    out.set(t, at + 1);
    at += 1 + t.length;
  }
  out.set(body, at);
  return out;
}

/** The value of a frame, or `undefined` when it is past its deadline at `now` (Unix ms),
 * of another version, or does not decode. */
export function unframeValue(frame: Uint8Array, now: number): RemoteValue | undefined {
  if (frame.length <= HEADER || frame[0] !== FRAME_VERSION) return undefined;
  const view = new DataView(frame.buffer, frame.byteOffset, frame.byteLength);
  const deadline = view.getFloat64(1, true);
  if (!(deadline > now)) return undefined;
  const born = view.getFloat64(9, true);
  if (Number.isNaN(born)) return undefined;
  let at = HEADER;
  let tags = NO_TAGS as string[];
  const count = frame[17]!;
  try {
    if (count > 0) {
      tags = [];
      for (let i = 0; i < count; i++) {
        const len = frame[at]!;
        if (at + 1 + len > frame.length) return undefined;
        tags.push(fromUtf8.decode(frame.subarray(at + 1, at + 1 + len)));
        at += 1 + len;
      }
    }
    if (at >= frame.length) return undefined;
    const body = frame.subarray(at);
    return {
      value: decodeValueIn(body, body.length),
      promised: isPromised(body),
      ttl: deadline === Infinity ? undefined : deadline - now,
      born,
      tags,
    };
  } catch {
    return undefined;
  }
}

/** First byte of the storage key of a tag's invalidation time: never the first byte of an
 * encoded key (the key codec's first byte is its arguments' or `this`'s tag, below 32). */
export const TAG_TIME_KEY = 0xff;
const TAG_TIME_VERSION = 1;

/** The storage key, in the cache's namespace, of the time of `tag`'s last invalidation:
 * `[0xFF, "T"]` then the tag's UTF-16 code units (little-endian: lossless). */
export function tagTimeKey(tag: string): Uint8Array {
  const out = new Uint8Array(2 + 2 * tag.length);
  out[0] = TAG_TIME_KEY;
  out[1] = 0x54;
  for (let i = 0; i < tag.length; i++) {
    const c = tag.charCodeAt(i);
    out[2 + 2 * i] = c & 0xff;
    out[3 + 2 * i] = c >>> 8;
  }
  return out;
}

/** The stored form of a tag's invalidation time `at` (Unix ms, the invalidating host's
 * clock): `[version u8 = 1][at f64 LE]`. */
export function frameTagTime(at: number): Uint8Array {
  const out = new Uint8Array(9);
  out[0] = TAG_TIME_VERSION;
  new DataView(out.buffer).setFloat64(1, at, true);
  return out;
}

/** The time in a {@linkcode frameTagTime}, or `undefined` when the bytes are not one. */
export function unframeTagTime(bytes: Uint8Array): number | undefined {
  if (bytes.length !== 9 || bytes[0] !== TAG_TIME_VERSION) return undefined;
  const at = new DataView(bytes.buffer, bytes.byteOffset, 9).getFloat64(1, true);
  return Number.isNaN(at) ? undefined : at;
}

/** Most tags whose invalidation time an instance remembers having read (or been told);
 * past it, it forgets them all and reads them again. */
const KNOWN_TAGS = 10_000;

/** An invalidation of one key waiting to be sent: the storage operation, then the bus. */
interface Pending {
  key: Uint8Array;
  /** `set`: write `frame` then publish; `delete`: remove then publish; `notify`: the
   * storage has it, publish only. */
  kind: "set" | "delete" | "notify";
  frame: Uint8Array | undefined;
  ttl: number | undefined;
  /** Its barrier stamp. */
  at: number;
  /** A repair (see {@linkcode Invalidation.repair}). */
  repair?: boolean;
  /** A write-through of the key still under way when the change was made: the change is
   * sent once it answered (a change sent before it could land first, and be undone). */
  after?: Promise<unknown> | undefined;
}

/** A value this instance wrote through lately: what a repair needs to know. */
interface RecentWrite {
  key: Uint8Array;
  /** When it was sent (Unix ms); past `sent + repairWindow`, it is forgotten. */
  sent: number;
  /** Settles once the storage answered (or the call failed or timed out). */
  done: Promise<unknown>;
}

/** Most keys waiting to be sent; past it, they collapse into one clear of the cache. */
export const OUTBOX_KEYS = 10_000;
/** Most bytes of values waiting to be written; past it, a set waits as a delete. */
export const OUTBOX_BYTES = 4 * 1024 * 1024;
/** Keys sent per batch (one bus message each). */
const BATCH = 500;
/** Most write-throughs remembered for repairs. */
const RECENT_WRITES = 4096;

/** The remote side of one cache (see the module doc). */
export class RemoteLink {
  /** The guarded tier, once a Promise of it resolved. */
  #tier: GuardedTier | undefined = undefined;
  readonly #origin = crypto.randomUUID();
  readonly #wallClock: () => number;
  readonly #local: LocalTier;
  readonly #barrier: Barrier;
  #unsubscribe: Promise<(() => Promise<void>) | undefined> = Promise.resolve(undefined);
  #unregister: (() => void) | undefined = undefined;
  #closed = false;
  /** A tier Promise that rejected: counted as one error. */
  #setupErrors = 0;
  #warnedEncode = false;
  #maxValueBytes = Infinity;
  /** Tags whose last invalidation time this instance knows (read from the storage, made
   * here, or received on the bus since the last gap); with a bus only. */
  readonly #knownTags = new Set<string>();
  /** Whether the tier has a bus (without one, tag times are read on every remote read). */
  #hasBus = false;
  /** Bus gaps so far: a tag time read across one may predate a missed invalidation. */
  #gaps = 0;

  // The outbox: invalidations made here, in order, until the storage and the bus took them.
  readonly #outbox = new Map<string, Pending>();
  #outboxBytes = 0;
  /** A clear waiting: `storage` (clear the storage, then publish) or `notify` (publish). */
  #outClear:
    | { at: number; kind: "storage" | "notify"; after?: Promise<unknown> | undefined }
    | undefined = undefined;
  #outTags: { tags: Set<string>; at: number } | undefined = undefined;
  #flushing: Promise<void> | undefined = undefined;
  #retry: ReturnType<typeof setTimeout> | undefined = undefined;
  /** Write-throughs of the last `#repairWindow` ms, by key string, oldest first. */
  readonly #recent = new Map<string, RecentWrite>();
  #repairWindow = 2000;

  /** Calls answered by the remote tier. */
  hits = 0;
  /** Write-throughs removed again because another instance's change overtook them. */
  repairs = 0;

  /**
   * @param tier The tier, or a Promise of it (reads before it resolves skip the remote;
   * invalidations wait for it).
   * @param name The cache's name: its namespace in the tier.
   * @param timeout Most ms per remote operation.
   * @param local The local tier, for invalidations from other instances.
   * @param wallClock Unix ms, for deadlines and stamps.
   */
  constructor(
    tier: RemoteTier | Promise<RemoteTier>,
    readonly name: string,
    timeout: number,
    local: LocalTier,
    wallClock: () => number = Date.now,
  ) {
    this.#wallClock = wallClock;
    this.#local = local;
    this.#barrier = new Barrier(wallClock);
    if (tier instanceof Promise) {
      tier.then((t) => this.#attach(t, timeout, true), (e) => {
        this.#setupErrors++;
        console.warn(
          `@warp/cache: ${name}: the remote tier could not be set up, the cache stays local: ${
            e instanceof Error ? e.message : String(e)
          }`,
        );
      });
    } else {
      this.#attach(tier, timeout);
    }
  }

  /** `late`: the cache ran before the tier was there (it may hold copies that missed
   * invalidations: they are dropped once the bus listens). */
  #attach(tier: RemoteTier, timeout: number, late = false): void {
    if (this.#closed) return;
    this.#maxValueBytes = tier.storage.maxValueBytes ?? Infinity;
    this.#hasBus = tier.bus !== undefined;
    // A write-through may land after another instance's change as long as that change's
    // message can take to arrive: its storage call and publish (each within the timeout).
    this.#repairWindow = Math.max(2000, 4 * timeout);
    const guarded = new GuardedTier(tier.storage, tier.bus, this.name, {
      timeout,
      onRecover: () => this.#kick(),
    });
    this.#tier = guarded;
    this.#unregister = onTierClose(tier, () => this.drain());
    const listener: BusListener = {
      message: (m) => this.#apply(m),
      gap: () => {
        this.#gaps++;
        this.#barrier.gap();
        // Tag invalidations may have been missed too: their times are read again.
        this.#knownTags.clear();
        this.#local.dropAll();
        // A change whose message was lost may have been overtaken by a write made here
        // meanwhile (from a computation older than it): taken back, as after a clear.
        for (const [k, w] of this.#recent) this.#repair(k, w);
      },
    };
    this.#unsubscribe = guarded.subscribe(listener);
    if (late) void this.#unsubscribe.then(() => listener.gap());
    this.#kick();
  }

  /** Applies an invalidation from another instance. */
  #apply(m: Invalidation): void {
    if (m.origin === this.#origin) return;
    if (m.keys === "clear") {
      this.#barrier.clear(m.stamp);
      this.#local.dropAll();
      if (m.repair !== true) {
        // (`#overtaken` replaces values of keys already in the map: no entry is added.)
        for (const [k, p] of this.#outbox) this.#overtaken(k, p);
        for (const [k, w] of this.#recent) this.#repair(k, w);
      }
    } else {
      for (const key of m.keys) {
        const k = bytesToKeyString(key, key.length);
        this.#barrier.receivedKey(k);
        this.#local.drop(key);
        if (m.repair !== true && this.#outbox.size > 0) {
          const p = this.#outbox.get(k);
          if (p !== undefined) this.#overtaken(k, p);
        }
        if (m.repair === true || this.#recent.size === 0) continue;
        const w = this.#recent.get(k);
        if (w !== undefined) this.#repair(k, w);
      }
    }
    if (m.tags !== undefined && m.tags.length > 0) {
      this.#barrier.invalidateTags(m.tags, m.stamp);
      this.#know(m.tags);
      this.#local.dropTags?.(m.tags);
    }
  }

  /** Another instance changed `k` after this one's change `p`, still waiting to be sent:
   * a set would undo the newer change, so it goes as a delete (which cannot). */
  #overtaken(k: string, p: Pending): void {
    if (p.kind !== "set") return;
    this.#outboxBytes -= p.frame?.length ?? 0;
    this.#outbox.set(k, { ...p, kind: "delete", frame: undefined });
  }

  /**
   * This instance wrote `k` through from a computation that started before the
   * invalidation just received; its write may have landed after that change (the message
   * was on its way): removes it again, and tells the others to drop what they read.
   */
  #repair(k: string, w: RecentWrite): void {
    this.#recent.delete(k);
    if (this.#wallClock() > w.sent + this.#repairWindow) return;
    this.repairs++;
    const at = this.#barrier.invalidateKey(k);
    // After the write itself has answered: a delete sent before it could land first.
    void w.done.then(() =>
      this.#enqueue(k, {
        key: w.key,
        kind: "delete",
        frame: undefined,
        ttl: undefined,
        at,
        repair: true,
      })
    );
  }

  /** Remote operations that failed or timed out (and a tier Promise that rejected). */
  get errors(): number {
    return (this.#tier?.errors ?? 0) + this.#setupErrors;
  }

  /** Invalidations waiting to be sent (keys, plus one for a clear). */
  get unsent(): number {
    return this.#outbox.size + (this.#outClear === undefined ? 0 : 1);
  }

  /** A stamp for an operation starting now (a computation, a remote read). */
  stamp(): number {
    return this.#barrier.stamp();
  }

  /**
   * Whether a value computed by an operation that started at `since` (see
   * {@linkcode RemoteLink.stamp}) may still be stored, in the local tier or remotely: no
   * invalidation of `key`, of everything, or of one of `tags` was made or received since.
   */
  mayStore(key: Uint8Array, since: number, tags?: readonly string[]): boolean {
    return this.#barrier.mayStore(() => bytesToKeyString(key, key.length), since, tags);
  }

  /** The value stored remotely under `key`, or `undefined` (absent, expired, undecodable,
   * born before an invalidation known here, invalidated since `since`, or the tier
   * failing or not set up yet). */
  async fetch(key: Uint8Array, since: number): Promise<RemoteValue | undefined> {
    const tier = this.#tier;
    if (tier === undefined) return undefined;
    const frame = await tier.get(key);
    if (frame === undefined) return undefined;
    const found = unframeValue(frame, this.#wallClock());
    if (found === undefined) return undefined;
    // A tag invalidated while this instance was not listening (started later, or during a
    // bus gap): its time is in the storage.
    if (found.tags.length > 0 && !(await this.#learnTags(tier, found.tags))) return undefined;
    let k: string | undefined;
    const keyString = (): string => k ??= bytesToKeyString(key, key.length);
    if (
      !this.#barrier.admits(keyString, found.born, found.tags) ||
      !this.#barrier.mayStore(keyString, since, found.tags)
    ) return undefined;
    this.hits++;
    return found;
  }

  /**
   * Writes `value` under `key` (both copied now), expiring after `ttl` ms (`undefined`:
   * never), in the background, unless an invalidation came after `since`. A value that
   * the shared codec cannot encode is not written (one warning per cache).
   */
  write(
    key: Uint8Array,
    value: unknown,
    promised: boolean,
    ttl: number | undefined,
    since: number,
    tags?: readonly string[],
  ): void {
    const tier = this.#tier;
    if (tier === undefined || !this.mayStore(key, since, tags)) return;
    const frame = this.#frame(value, promised, ttl, since, tags);
    if (frame === undefined) return;
    const copy = key.slice();
    const done = tier.set(copy, frame, ttl);
    // Remembered for a repair, should another instance's change overtake this write.
    const k = bytesToKeyString(key, key.length);
    const now = this.#wallClock();
    this.#recent.delete(k);
    this.#recent.set(k, { key: copy, sent: now, done });
    for (const [old, w] of this.#recent) {
      if (this.#recent.size <= RECENT_WRITES && w.sent + this.#repairWindow >= now) break;
      this.#recent.delete(old);
    }
  }

  /** Replaces `key` with `value` everywhere: effective here at once, then written to the
   * storage and announced on the bus (kept and retried while they are unreachable). */
  set(
    key: Uint8Array,
    value: unknown,
    promised: boolean,
    ttl: number | undefined,
    tags?: readonly string[],
  ): void {
    const k = bytesToKeyString(key, key.length);
    const after = this.#recent.get(k)?.done;
    this.#recent.delete(k);
    const at = this.#barrier.invalidateKey(k);
    const frame = this.#frame(value, promised, ttl, at, tags);
    this.#enqueue(k, {
      key: key.slice(),
      kind: frame === undefined ? "delete" : "set",
      frame,
      ttl,
      at,
      after,
    });
  }

  /** Removes `key` everywhere: effective here at once (a remote value of it is a miss),
   * then removed from the storage and announced on the bus (kept and retried). */
  delete(key: Uint8Array): void {
    const k = bytesToKeyString(key, key.length);
    const after = this.#recent.get(k)?.done;
    this.#recent.delete(k);
    const at = this.#barrier.invalidateKey(k);
    this.#enqueue(k, {
      key: key.slice(),
      kind: "delete",
      frame: undefined,
      ttl: undefined,
      at,
      after,
    });
  }

  /** Removes every entry everywhere: effective here at once (every remote value stored
   * before now is a miss), then cleared in the storage and announced (kept and retried). */
  clear(): void {
    const at = this.#barrier.clear();
    // Sent once the write-throughs under way answered (they could land after it).
    const after = this.#recent.size === 0
      ? undefined
      : Promise.all([...this.#recent.values()].map((w) => w.done));
    this.#recent.clear();
    // Everything waiting is covered by the clear.
    this.#outbox.clear();
    this.#outboxBytes = 0;
    this.#outClear = { at, kind: "storage", after };
    this.#kick();
  }

  /** Invalidates `tags` everywhere: no computation under way stores an entry carrying one,
   * and remote values carrying one born before now are misses here and, once the bus
   * delivered it, on every host. */
  invalidateTags(tags: readonly string[]): void {
    if (tags.length === 0) return;
    const at = this.#barrier.invalidateTags(tags);
    this.#know(tags);
    const out = this.#outTags ??= { tags: new Set(), at };
    for (const t of tags) out.tags.add(t);
    out.at = at;
    this.#kick();
  }

  /** Sends what is waiting; resolves once sent, or once the remote failed (it stays
   * waiting) or is unavailable. */
  drain(): Promise<void> {
    return this.#kick() ?? Promise.resolve();
  }

  /** Stops listening for invalidations (the tier itself stays open: other caches may use
   * it; close it with its own `close()`, which sends what is still waiting). */
  async close(): Promise<void> {
    this.#closed = true;
    if (this.#retry !== undefined) clearTimeout(this.#retry);
    const unsubscribe = await this.#unsubscribe;
    await unsubscribe?.();
    // Whatever is still waiting (or being sent) is sent by the tier's close().
    this.#release();
  }

  /** After `close()`: leaves the tier's close() once nothing is waiting or being sent. */
  #release(): void {
    if (this.unsent === 0 && this.#outTags === undefined && this.#flushing === undefined) {
      this.#unregister?.();
    }
  }

  #frame(
    value: unknown,
    promised: boolean,
    ttl: number | undefined,
    born: number,
    tags?: readonly string[],
  ): Uint8Array | undefined {
    let frame: Uint8Array;
    try {
      const deadline = ttl === undefined ? Infinity : this.#wallClock() + ttl;
      frame = frameValue(value, promised, deadline, born, tags);
    } catch (e) {
      if (!this.#warnedEncode) {
        this.#warnedEncode = true;
        console.warn(
          `@warp/cache: ${this.name}: a result was not written to the remote tier: ${
            e instanceof Error ? e.message : String(e)
          }`,
        );
      }
      return undefined;
    }
    // Larger than the tier can store: kept local (not an error).
    return frame.length > this.#maxValueBytes ? undefined : frame;
  }

  /** Records that the last invalidation times of `tags` are known here. */
  #know(tags: readonly string[]): void {
    if (!this.#hasBus) return;
    if (this.#knownTags.size + tags.length > KNOWN_TAGS) this.#knownTags.clear();
    for (const t of tags) this.#knownTags.add(t);
  }

  /**
   * Reads the invalidation times of the tags of `tags` not known here from the storage
   * into the barrier; `false` when one could not be read (the value is then a miss: never
   * a stale value because the storage did not answer).
   */
  async #learnTags(tier: GuardedTier, tags: readonly string[]): Promise<boolean> {
    const unknown = tags.filter((t) => !this.#knownTags.has(t));
    if (unknown.length === 0) return true;
    const gaps = this.#gaps;
    const times = await Promise.all(unknown.map((t) => tier.read(tagTimeKey(t))));
    // A gap while reading: an invalidation missed meanwhile may not be in what was read.
    if (this.#gaps !== gaps) return false;
    for (let i = 0; i < unknown.length; i++) {
      const bytes = times[i];
      if (bytes === null) return false;
      const at = bytes === undefined ? undefined : unframeTagTime(bytes);
      if (bytes !== undefined && at === undefined) return false; // not a time: be safe
      if (at !== undefined) this.#barrier.learnTag(unknown[i]!, at);
    }
    this.#know(unknown);
    return true;
  }

  #enqueue(k: string, p: Pending): void {
    const old = this.#outbox.get(k);
    if (old !== undefined) {
      this.#outboxBytes -= old.frame?.length ?? 0;
      this.#outbox.delete(k); // re-inserted last: the order of the changes is kept
      if (old.after !== undefined) {
        p = { ...p, after: p.after === undefined ? old.after : Promise.all([old.after, p.after]) };
      }
    }
    if (p.frame !== undefined && this.#outboxBytes + p.frame.length > OUTBOX_BYTES) {
      p = { ...p, kind: "delete", frame: undefined };
    }
    this.#outboxBytes += p.frame?.length ?? 0;
    this.#outbox.set(k, p);
    if (this.#outbox.size > OUTBOX_KEYS) {
      // Too many to remember: one clear of the cache covers them all.
      this.#outbox.clear();
      this.#outboxBytes = 0;
      this.#outClear = { at: p.at, kind: "storage" };
    }
    this.#kick();
  }

  /** Starts sending what waits, unless already sending; returns the sending. */
  #kick(): Promise<void> | undefined {
    if (this.#tier === undefined) return undefined;
    this.#flushing ??= this.#flush().finally(() => {
      this.#flushing = undefined;
      if (this.#closed) this.#release();
    });
    return this.#flushing;
  }

  async #flush(): Promise<void> {
    await null; // after the caller's synchronous work (more changes may join the batch)
    const tier = this.#tier!;
    while (this.unsent > 0 || this.#outTags !== undefined) {
      if (tier.retryIn > 0) return this.#retryLater(tier.retryIn);
      const clear = this.#outClear;
      this.#outClear = undefined;
      if (clear?.after !== undefined) await clear.after;
      if (clear?.kind === "storage" && !(await tier.clear())) {
        this.#outClear ??= clear;
        return this.#retryLater(tier.retryIn || 1000);
      }
      if (clear !== undefined) this.#barrier.allSent(clear.at);
      const batch: Pending[] = [];
      let failed = false;
      // After failures, one change goes first as the breaker's trial.
      const most = tier.state === "closed" ? BATCH : 1;
      for (const [k, p] of this.#outbox) {
        if (batch.length === most) break;
        batch.push(p);
        this.#outbox.delete(k);
        this.#outboxBytes -= p.frame?.length ?? 0;
      }
      const tags = this.#outTags;
      this.#outTags = undefined;
      // Tag times go to the storage first (for hosts that start later, or miss the
      // message), then the message to the hosts listening.
      if (tags !== undefined) {
        // Written as of now (not of the invalidation): a time retried after a failure must
        // not replace a newer one written meanwhile by another host (later is safe).
        const frame = frameTagTime(Math.max(tags.at, this.#wallClock()));
        const written = await Promise.all(
          [...tags.tags].map((t) => tier.set(tagTimeKey(t), frame, undefined)),
        );
        if (written.includes(false)) {
          this.#putBackTags(tags);
          failed = true;
        }
      }
      // A change waits for the write-through of its key that was under way when it was made.
      if (batch.some((p) => p.after !== undefined)) await Promise.all(batch.map((p) => p.after));
      const done = await Promise.all(
        batch.map((p) =>
          p.kind === "set"
            ? tier.set(p.key, p.frame!, p.ttl)
            : p.kind === "delete"
            ? tier.delete(p.key)
            : true
        ),
      );
      const sent: Uint8Array[] = [];
      const repaired: Uint8Array[] = [];
      for (let i = 0; i < batch.length; i++) {
        const p = batch[i]!;
        const k = bytesToKeyString(p.key, p.key.length);
        if (done[i]) {
          this.#barrier.sent(k, p.at);
          (p.repair === true ? repaired : sent).push(p.key);
        } else {
          failed = true;
          // A set that failed may or may not have landed: it is retried as a delete, which
          // can never undo a newer value written meanwhile by another host.
          this.#putBack(k, { ...p, kind: "delete", frame: undefined });
        }
      }
      if (clear !== undefined || sent.length > 0 || tags !== undefined) {
        const message: Invalidation = {
          origin: this.#origin,
          stamp: Math.max(clear?.at ?? -Infinity, tags?.at ?? -Infinity, ...batch.map((p) => p.at)),
          keys: clear !== undefined ? "clear" : sent,
        };
        if (tags !== undefined) message.tags = [...tags.tags];
        if (!(await tier.publish(message))) {
          // The storage has the changes; the bus still has to tell the other hosts.
          if (clear !== undefined) this.#outClear ??= { at: clear.at, kind: "notify" };
          else {
            for (const key of sent) {
              const k = bytesToKeyString(key, key.length);
              this.#putBack(k, { key, kind: "notify", frame: undefined, ttl: undefined, at: 0 });
            }
          }
          if (tags !== undefined) this.#putBackTags(tags);
          failed = true;
        }
      }
      if (repaired.length > 0) {
        const message: Invalidation = {
          origin: this.#origin,
          stamp: this.#barrier.stamp(),
          keys: repaired,
          repair: true,
        };
        if (!(await tier.publish(message))) {
          for (const key of repaired) {
            const k = bytesToKeyString(key, key.length);
            this.#putBack(k, {
              key,
              kind: "notify",
              frame: undefined,
              ttl: undefined,
              at: 0,
              repair: true,
            });
          }
          failed = true;
        }
      }
      if (failed) return this.#retryLater(tier.retryIn || 1000);
    }
  }

  /** Puts back a change that failed, unless a newer one of the key took its place. */
  #putBack(k: string, p: Pending): void {
    if (this.#outClear !== undefined && this.#outClear.at > p.at && p.kind !== "notify") return;
    if (this.#outbox.has(k)) return;
    this.#outbox.set(k, p);
    if (this.#outbox.size > OUTBOX_KEYS) {
      this.#outbox.clear();
      this.#outboxBytes = 0;
      this.#outClear = { at: this.#barrier.stamp(), kind: "storage" };
    }
  }

  #putBackTags(tags: { tags: Set<string>; at: number }): void {
    const out = this.#outTags ??= { tags: new Set(), at: tags.at };
    for (const t of tags.tags) out.tags.add(t);
  }

  #retryLater(ms: number): void {
    if (this.#retry !== undefined) return;
    const retry = setTimeout(() => {
      this.#retry = undefined;
      this.#kick();
    }, ms);
    // Pending invalidations do not keep a process alive: closing the tier sends them.
    Deno.unrefTimer(retry as unknown as number);
    this.#retry = retry;
  }
}
