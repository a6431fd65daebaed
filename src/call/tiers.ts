/**
 * The tiers of a cache: its local store, and behind it, with `remote`, the remote tier.
 * A computed value is written to both; `cacheSet`, `cacheDelete` and `cacheClear` change
 * both, and tell the other instances to drop their local copies (the link's bus).
 *
 * @module
 */

import type { Store } from "../store/store.ts";
import type { KeyBytes } from "../store/store.ts";
import type { RemoteLink, RemoteValue } from "../remote/_remote_link.ts";
import type { Computation } from "./computation.ts";
import { promisedEntry } from "../store/store.ts";
import { encodeOnce } from "../codec/value_codec.ts";
import { Tagged } from "./tags.ts";

function disposed(): never {
  throw new Error("Cannot use a cache after it was disposed");
}

/** The store of a disposed cache: every use throws. */
export const DISPOSED: Store = {
  get: disposed,
  set: disposed,
  put: disposed,
  peek: disposed,
  peekStale: disposed,
  delete: disposed,
  clear: disposed,
  info: disposed,
  // The hit path of a cache on an argument-indexed store calls it first (`ArgsPath`).
  getArgs: disposed,
  getArgsTagged: disposed,
  close: (): void => {},
};

/** The local tier alone. */
export class Tiers {
  /** The local store ({@linkcode DISPOSED} once the cache is disposed). */
  local: Store;
  /** The size of an entry under a memory byte budget (`maxBytes`), else `undefined`. */
  readonly sizer: ((value: unknown, args: unknown[]) => number) | undefined;

  constructor(local: Store, sizer?: (value: unknown, args: unknown[]) => number) {
    this.local = local;
    this.sizer = sizer;
  }

  /** Whether a value computed for `c` can be fetched from a remote tier first. */
  get remote(): boolean {
    return false;
  }

  /** Stores the result of computation `c`, with its own TTL `ttl` (ms; `undefined`: the
   * cache's) and its tags. */
  write(
    c: Computation,
    value: unknown,
    promised: boolean,
    ttl: number | undefined,
    tags: readonly string[] | undefined,
  ): void {
    const size = this.sizer === undefined ? undefined : this.sizer(value, c.args ?? []);
    if (tags === undefined) this.local.set(c, value, promised, ttl, size);
    else this.local.set(c, this.tagged(value, promised, tags, c.epoch), false, ttl, size);
  }

  /** Called before the first entry with tags is stored (the cache's hit path then
   * checks tags), then cleared. */
  onTagged: (() => void) | undefined = undefined;

  /** The stored form of an entry with tags (see `tags.ts`). */
  tagged(value: unknown, promised: boolean, tags: readonly string[], epoch: number): Tagged {
    if (this.onTagged !== undefined) {
      this.onTagged();
      this.onTagged = undefined;
    }
    return new Tagged(promised ? promisedEntry(value) : value, tags, epoch);
  }

  /** `cacheSet`: stores `value` under `k`, with its own TTL `ttl` (ms; `undefined`: the
   * cache's). */
  set(
    k: KeyBytes,
    value: unknown,
    promised: boolean,
    ttl: number | undefined,
    args: unknown[] = [],
  ): void {
    this.local.put(k, value, promised, ttl, this.sizer?.(value, args));
  }

  /** `cacheSet` of an entry with tags, at tag epoch `epoch`. */
  setTagged(
    k: KeyBytes,
    value: unknown,
    promised: boolean,
    ttl: number | undefined,
    tags: readonly string[],
    epoch: number,
    args: unknown[] = [],
  ): void {
    const size = this.sizer?.(value, args);
    this.local.put(k, this.tagged(value, promised, tags, epoch), false, ttl, size);
  }

  /** `cacheDelete` (and `cacheSet` of a Promise, before it resolves): removes `k`;
   * returns whether the local tier had it. */
  delete(k: KeyBytes): boolean {
    return this.local.delete(k);
  }

  /** `cacheClear`: removes every entry. */
  clear(): void {
    this.local.clear();
  }

  /** A stamp of the remote link for an operation starting now (0 without one). */
  stamp(): number {
    return 0;
  }

  /** The value of `k` in the remote tier, for an operation started at `since` (none
   * here). */
  fetch(_k: Uint8Array, _since: number): Promise<RemoteValue | undefined> {
    return Promise.resolve(undefined);
  }

  /** Releases the local store (and the link). */
  close(): void {
    const open = this.local;
    this.local = DISPOSED;
    open.close();
  }
}

/** The local tier with a remote tier behind it. */
export class RemoteTiers extends Tiers {
  /**
   * @param local The local store.
   * @param link The link to the remote tier.
   * @param ttl The cache's `ttl` (ms), the remote expiry of entries without a TTL of their
   * own.
   */
  constructor(
    local: Store,
    readonly link: RemoteLink,
    readonly ttl: number | undefined,
    sizer?: (value: unknown, args: unknown[]) => number,
  ) {
    super(local, sizer);
  }

  override get remote(): boolean {
    return true;
  }

  override write(
    c: Computation,
    value: unknown,
    promised: boolean,
    ttl: number | undefined,
    tags: readonly string[] | undefined,
  ): void {
    const key = c.buf.subarray(0, c.len);
    // An invalidation made or received since the computation started: stored nowhere.
    if (!this.link.mayStore(key, c.since, tags)) return;
    // A value read from the remote tier is not written back to it.
    if (c.ctx?.fromRemote === true) {
      super.write(c, value, promised, ttl, tags);
      return;
    }
    const remoteTtl = ttl ?? this.ttl;
    // A shared local tier and the remote tier share one encoding of the value.
    encodeOnce(() => {
      super.write(c, value, promised, ttl, tags);
      this.link.write(
        key,
        value,
        promised,
        remoteTtl === Infinity ? undefined : remoteTtl,
        c.since,
        tags,
      );
    });
  }

  override stamp(): number {
    return this.link.stamp();
  }

  override set(
    k: KeyBytes,
    value: unknown,
    promised: boolean,
    ttl: number | undefined,
    args: unknown[] = [],
  ): void {
    encodeOnce(() => {
      super.set(k, value, promised, ttl, args);
      this.link.set(k.buf.subarray(0, k.len), value, promised, ttl ?? this.ttl);
    });
  }

  override setTagged(
    k: KeyBytes,
    value: unknown,
    promised: boolean,
    ttl: number | undefined,
    tags: readonly string[],
    epoch: number,
    args: unknown[] = [],
  ): void {
    encodeOnce(() => {
      super.setTagged(k, value, promised, ttl, tags, epoch, args);
      this.link.set(k.buf.subarray(0, k.len), value, promised, ttl ?? this.ttl, tags);
    });
  }

  override delete(k: KeyBytes): boolean {
    const removed = this.local.delete(k);
    this.link.delete(k.buf.subarray(0, k.len));
    return removed;
  }

  override clear(): void {
    this.local.clear();
    this.link.clear();
  }

  override fetch(k: Uint8Array, since: number): Promise<RemoteValue | undefined> {
    return this.link.fetch(k, since);
  }

  override close(): void {
    super.close();
    void this.link.close();
  }
}
