/**
 * The shared store: a cache in a memory-mapped file (`rust/src/shm/`) that every process
 * (and Worker) of the user sees when it opens the same `name` in the same `dir`.
 *
 * Keys are the bytes of the key codec (shared rules: no identity keys); values go through
 * the value codec (`value_codec.ts`), so a hit returns a copy. Reads take no lock in the
 * library (seqlock); writes take a short cross-process lock.
 *
 * An entry may carry a TTL of its own, which every process honours; otherwise each process
 * judges it by its own `ttl` (and `stale` window). Counters (stale hits and refreshes
 * included) are totals over every process. {@linkcode SharedStore.flights} runs one
 * computation of a key at a time across processes (`shared_flights.ts`).
 *
 * @module
 */

import { checkEntryTtl } from "../options/_validate.ts";
import { createHash } from "node:crypto";
import {
  envVar,
  installHint,
  loadNative,
  nativeLastError,
  nativeLoadError,
  type NativeSymbols,
} from "../native/ffi.ts";
import { CacheError, unwrap } from "../native/errors.ts";
import {
  CHUNK_PAYLOAD,
  CHUNK_SIZE,
  DEFAULT_BUDGET,
  DEFAULT_MAX_BYTES,
  FLIGHT,
  LONG_WAIT_MS,
  MAX_VALUE_BYTES,
  NO_TTL,
  SET,
  SHM_INFO,
  SHM_INFO_FIELDS,
  Status,
} from "../native/_abi.ts";
import {
  type ByteStore,
  isPromisedEntry,
  type KeyBytes,
  MISS,
  peeked,
  promisedEntry,
  type Store,
  type StoreInfo,
  StoreView,
  type ViewOptions,
} from "./store.ts";
import { Tagged } from "./tagged.ts";
import { hashTags, NOT_OPEN, type SharedTagClock, sharedTagClock } from "./shared_tags.ts";
import {
  encodeEnvelope,
  envelopeAt,
  envelopeBytes,
  envelopeHashes,
  envelopeNonceIs,
  envelopeOffset,
  envelopePromised,
  readEnvelope,
  TAGGED_ENVELOPE,
} from "./_tag_envelope.ts";
import {
  decodeValue,
  decodeValueIn,
  encodeValue,
  FILE_REF_BYTES,
  isFileRef,
  isPromised,
  readFileRef,
} from "../codec/value_codec.ts";
import { LargeValueFiles, MAX_LARGE_VALUE_BYTES } from "./_large_values.ts";
import { SharedFlights } from "./shared_flights.ts";
import { effectiveUid } from "../native/_uid.ts";

/** Where shared files live, and under which name. */
export interface SharedLocation {
  /** Directory of the cache files; `undefined`: {@linkcode defaultSharedDir}. */
  dir?: string | undefined;
  /** File name inside `dir`. */
  file: string;
}

/**
 * The default directory of shared cache files: `/dev/shm/warp_cache-<uid>` on Linux
 * (memory-backed; the uid keeps users apart in the one `/dev/shm`), `$TMPDIR/warp_cache`
 * elsewhere (`$TMPDIR` is per user on macOS), or `/tmp/warp_cache-<uid>` when `TMPDIR` is
 * unset. The library creates the directory with mode 0700. The uid is the effective one,
 * read without `--allow-sys` (`_uid.ts`), so the README's flags and `-A` name one directory
 * and nothing prompts.
 *
 * @throws {Error} If the directory needs the uid and it cannot be read (no `--allow-ffi`
 * nor `--allow-sys`): the message says to grant one or to pass `dir`.
 */
export function defaultSharedDir(os: string = Deno.build.os): string {
  if (os !== "linux") {
    const tmp = envVar("TMPDIR")?.replace(/\/+$/, "");
    if (tmp) return `${tmp}/warp_cache`;
  }
  const uid = effectiveUid();
  if (uid === null) {
    throw new Error(
      "Cannot find the default directory of shared caches: it is named after the user id, which cannot be read here (run with --allow-ffi, which the shared backend needs, or --allow-sys), or pass the dir option",
    );
  }
  return os === "linux" ? `/dev/shm/warp_cache-${uid}` : `/tmp/warp_cache-${uid}`;
}

/** A short, stable hash of `text` (hex). */
export function shortHash(text: string, length = 12): string {
  return createHash("sha256").update(text).digest("hex").slice(0, length);
}

/**
 * The file name for a cache `name`: the name with every character outside
 * `[A-Za-z0-9._-]` replaced by `_` (and no leading dot), cut to 120 characters; when that
 * changed the name, or the name ends as such a rewritten one does (`-` and 8 hex digits),
 * a hash of the original is appended so two names never share a file.
 */
export function sharedFileName(name: string): string {
  let safe = name.replace(/[^A-Za-z0-9._-]/g, "_").replace(/^\.+/, "_").slice(0, 120);
  // A name with a lone surrogate (refused by cache(), possible here) is hashed by its code
  // units: its UTF-8 form would be that of a name with U+FFFD in its place.
  if (safe !== name || /-[0-9a-f]{8}$/.test(name)) {
    safe += `-${shortHash(name.isWellFormed() ? name : JSON.stringify(name), 8)}`;
  }
  return `${safe}.warp`;
}

const encoder = new TextEncoder();
const NO_TAGS: readonly string[] = Object.freeze([]);

const registry = new FinalizationRegistry<{ lib: NativeSymbols; handle: Deno.PointerObject }>(
  ({ lib, handle }) => lib.warp_shm_close!(handle),
);

/**
 * The size in bytes of a shared cache file, from the library's one formula (see README
 * "Shared backend": `512 + 8 × tableSize + 72 × (maxSize + 1) + 256 × chunks + 16384`).
 * `maxBytes` `DEFAULT_BUDGET` (or omitted) is the default byte budget.
 */
export function sharedFileSize(
  lib: NativeSymbols,
  maxSize: number,
  maxKeySize: number,
  maxValueSize: number,
  maxBytes = DEFAULT_BUDGET,
): number {
  return lib.warp_shm_file_size!(maxSize, maxKeySize, maxValueSize, BigInt(maxBytes));
}

/** A {@linkcode Store} over a native shared store handle. */
export class SharedStore implements ByteStore {
  /** Path of the cache file. */
  readonly path: string;
  /** The directory of the file (`dir`, or the default one), without a trailing `/`. */
  readonly dir: string;
  /** Most entries of the file in use (the file's, when it was adopted). */
  readonly maxSize: number;
  /** Largest key in bytes of the file in use. */
  readonly maxKeySize: number;
  /** Largest encoded value in bytes of the file in use. */
  readonly maxValueSize: number;
  /** Byte budget of the keys and values of the file in use. */
  readonly maxBytes: number;
  #lib: NativeSymbols;
  #handle: Deno.PointerObject | null;
  #out: Uint8Array;
  #outView: DataView;
  #outPtr: Deno.PointerValue;
  #info = new Float64Array(SHM_INFO_FIELDS);
  #fnName: string;
  #token = {};
  /** Whether entries expire (a TTL was given). */
  readonly ttlOn: boolean;
  /** Writes values over `maxValueSize` to files (`largeValues: "file"`). */
  #writeLarge = false;
  /** The large-value files, opened when first needed (any handle may read them). */
  #large: LargeValueFiles | null = null;
  /**
   * Cross-process single-flight over this file (see `shared_flights.ts`): keys are told
   * apart by their 64-bit hash (two keys with one hash share a flight: a caller may wait
   * for the other key, then look its own up again). Works until {@linkcode SharedStore.close}.
   */
  readonly flights: SharedFlights;
  /**
   * The tag clock of the directory (`.warp_tags`, see `shared_tags.ts`): entries with tags
   * are stored under its epochs and checked against it, in every process.
   */
  readonly tags: SharedTagClock;

  /**
   * Opens (or creates) the shared cache file `dir/file` (and makes the tag clock of `dir`,
   * whose file is opened when entries with tags are first stored, read or invalidated).
   *
   * When the file exists, is valid, has other sizes and another handle (of any process,
   * this one included) has it open, this store ADOPTS the file's sizes, so that it shares
   * entries and counters with the running processes, and warns once (`console.warn`)
   * naming the file, the sizes asked for, the sizes in use and how to change them.
   * {@linkcode SharedStore.maxSize}, `maxKeySize`, `maxValueSize` and `maxBytes` are the
   * sizes in use.
   * When no one has it open, the file is recreated with the sizes asked for.
   *
   * @param location Directory and file name.
   * @param maxSize Most entries (1 to 2^24).
   * @param maxKeySize Largest key in bytes.
   * @param maxValueSize Largest encoded value in bytes.
   * @param ttl Entry lifetime in ms as judged by this process, or `undefined`.
   * @param fnName Name of the cached function, for error messages.
   * @param maxBytes Byte budget of the keys and values (256 to 64 GiB), or `undefined`
   * for the library's default (`default_max_bytes`, `rust/src/shm/layout.rs`).
   * @param stale Stale window in ms after an entry's TTL as judged by this process (0:
   * none): during it `get` keeps the entry (a miss) and `peekStale` returns it.
   * @throws {Error} If the platform has no shared memory (Windows) or the native library
   * is missing.
   * @throws {RangeError} If the sizes make a file larger than the library's limit (that of
   * the largest sizes, about 65.3 GiB), `maxValueSize` is larger than the byte budget (given,
   * or the default), or `stale` is not a finite, non-negative number.
   * @throws {CacheError} If the file cannot be opened or created (a symlink, a file of
   * another user, a full file system...).
   */
  constructor(
    location: SharedLocation,
    maxSize: number,
    maxKeySize: number,
    maxValueSize: number,
    ttl: number | undefined,
    fnName: string,
    maxBytes?: number,
    stale = 0,
  ) {
    if (typeof stale !== "number" || !Number.isFinite(stale) || stale < 0) {
      throw new RangeError(
        `Cannot create cache: stale must be a finite, non-negative number of ms: received ${stale}`,
      );
    }
    if (Deno.build.os === "windows") {
      throw new Error(
        "Cannot create cache: the shared backend needs POSIX shared memory (mmap), which is not available on Windows; use the memory backend",
      );
    }
    const lib = loadNative();
    if (lib === null || lib.warp_shm_open === null) {
      throw new Error(
        `Cannot create cache: the shared backend needs the native library, and ${
          nativeLoadError() || "the loaded library lacks the shared store"
        }: ${installHint()}`,
      );
    }
    const size = sharedFileSize(
      lib,
      maxSize,
      maxKeySize,
      maxValueSize,
      maxBytes ?? DEFAULT_BUDGET,
    );
    const limit = lib.warp_shm_max_file_size!();
    if (size > limit) {
      throw new RangeError(
        `Cannot create cache: maxSize, maxKeySize, maxValueSize and maxBytes must make a shared cache file of at most ${limit} bytes: received maxSize ${maxSize}, maxKeySize ${maxKeySize}, maxValueSize ${maxValueSize} and maxBytes ${
          maxBytes ?? "(default)"
        }, a file of ${size} bytes`,
      );
    }
    const budget = maxBytes ?? lib.warp_shm_default_max_bytes!(maxSize, maxKeySize, maxValueSize);
    // (A maxValueSize over its own limit is the library's error, at open.)
    if (maxValueSize > budget && maxValueSize <= MAX_VALUE_BYTES) {
      // A value over the budget is never stored: every such call would compute and skip.
      throw new RangeError(
        `Cannot create cache: maxValueSize must be at most maxBytes, since no value larger than the byte budget is ever stored: received maxValueSize ${maxValueSize} and maxBytes ${budget}${
          maxBytes === undefined
            ? ` (the default for these sizes, at most ${DEFAULT_MAX_BYTES / 2 ** 20} MiB)`
            : ""
        }; raise maxBytes above maxValueSize (an entry takes its key and value bytes in chunks of ${CHUNK_SIZE} bytes holding ${CHUNK_PAYLOAD} each) or lower maxValueSize`,
      );
    }
    this.#lib = lib;
    this.flights = new SharedFlights(lib, () => this.#handle);
    this.#fnName = fnName || "(anonymous)";
    const dir = location.dir ?? defaultSharedDir();
    this.dir = dir.length > 1 ? dir.replace(/\/+$/, "") : dir;
    this.path = `${dir.replace(/\/+$/, "")}/${location.file}`;
    this.tags = sharedTagClock(this.dir);
    const pathBytes = encoder.encode(this.path);
    const handle = lib.warp_shm_open(
      pathBytes,
      pathBytes.length,
      maxSize,
      maxKeySize,
      maxValueSize,
      BigInt(maxBytes ?? DEFAULT_BUDGET),
      ttl ?? NO_TTL,
      stale,
    );
    // The library's message names the file and the reason ("Cannot open ...").
    if (handle === null) throw new CacheError(Status.Io, nativeLastError());
    this.#handle = handle;
    this.ttlOn = ttl !== undefined;
    registry.register(this, { lib, handle }, this.#token);
    // The sizes in use: the file's, which differ from those asked for when it was adopted.
    const info = this.#readInfo();
    this.maxSize = info[SHM_INFO.maxSize]!;
    this.maxKeySize = info[SHM_INFO.maxKeySize]!;
    this.maxValueSize = info[SHM_INFO.maxValueSize]!;
    this.maxBytes = info[SHM_INFO.maxBytes]!;
    const askedBytes = maxBytes ??
      lib.warp_shm_default_max_bytes!(maxSize, maxKeySize, maxValueSize);
    if (
      this.maxSize !== maxSize || this.maxKeySize !== maxKeySize ||
      this.maxValueSize !== maxValueSize || this.maxBytes !== askedBytes
    ) {
      console.warn(
        `@warp/cache: the shared cache file ${this.path} is in use with other sizes, which this cache adopts so that it shares entries and counters with the processes using it: asked for maxSize ${maxSize}, maxKeySize ${maxKeySize}, maxValueSize ${maxValueSize}, maxBytes ${askedBytes}; in use: maxSize ${this.maxSize}, maxKeySize ${this.maxKeySize}, maxValueSize ${this.maxValueSize}, maxBytes ${this.maxBytes}; to change them, stop every process that uses the file (or remove it: \`rm ${this.path}\`; processes that still have it open keep the old file until they restart), or give this cache another \`name\``,
      );
    }
    // Every value of the file fits: a larger adopted maxValueSize must not fail hits.
    this.#out = new Uint8Array(this.maxValueSize);
    this.#outView = new DataView(this.#out.buffer);
    this.#outPtr = Deno.UnsafePointer.of(this.#out);
  }

  #readInfo(): Float64Array {
    unwrap(this.#lib.warp_shm_info!(this.#handle, this.#info), "Shared cache info");
    return this.#info;
  }

  get(key: Uint8Array, len: number, now: number, ptr?: Deno.PointerValue): unknown {
    const lib = this.#lib;
    // A lookup of cache() claims the key's flight when it misses (`flights.claimOnMiss`).
    const r = this.flights.claiming
      ? (ptr === undefined
        ? lib.warp_shm_get_claim!(this.#handle, key, len, this.#out, this.#out.length, now)
        : lib.warp_shm_get_claim_ptr!(this.#handle, ptr, len, this.#outPtr, this.#out.length, now))
      : ptr === undefined
      ? lib.warp_shm_get!(this.#handle, key, len, this.#out, this.#out.length, now)
      : lib.warp_shm_get_ptr!(this.#handle, ptr, len, this.#outPtr, this.#out.length, now);
    if (r < 0) {
      if (r === Status.Miss) return MISS;
      if (r <= FLIGHT.missClaimed) {
        this.flights.noteClaim(FLIGHT.missClaimed - r);
        return MISS;
      }
      unwrap(r, "Shared cache lookup");
    }
    const out = this.#out;
    // The envelope's byte as a literal on the hit path (checked by tests/abi_test.ts): V8 folds
    // a literal and reads an imported binding on every call.
    if (out[0] === 0x7f /* const: TAGGED_ENVELOPE */) return this.#tagged(key, len, r, true);
    let value: unknown;
    try {
      value = decodeValueIn(out, r, this.#outView);
    } catch {
      // A large value's reference, or bytes that verify but do not decode (another codec
      // version): those are dropped, never returned.
      if (isFileRef(out, r)) return this.#readLarge(key, len, true);
      this.#lib.warp_shm_delete!(this.#handle, key, len);
      return MISS;
    }
    return isPromised(out) ? Promise.resolve(value) : value;
  }

  /**
   * Writes values whose encoding is larger than `maxValueSize` (up to 1 GiB) to files beside
   * the cache (`largeValues: "file"`; see `_large_values.ts`), and sweeps orphaned files.
   *
   * @throws {Error} If the files' folder cannot be created.
   */
  useLargeValues(): void {
    this.#writeLarge = true;
    this.#sweep();
  }

  /** @throws {Error} If the folder of the files is refused (another user's, a link...). */
  #largeFiles(): LargeValueFiles {
    return this.#large ?? (this.#large = new LargeValueFiles(this.path));
  }

  /** The large-value files when their folder exists and is usable, else `undefined` (a
   * refused folder is not ours to read or empty). */
  #largeFilesIfUsable(): LargeValueFiles | undefined {
    if (this.#large !== null) return this.#large;
    try {
      Deno.lstatSync(`${this.path}.large`);
      return this.#largeFiles();
    } catch {
      return undefined;
    }
  }

  /** The entry's large-value reference (a copy), if it is one (in a tagged entry's
   * envelope too), ignoring this handle's TTL and counting nothing. */
  #peekRef(key: Uint8Array, len: number): Uint8Array | undefined {
    const r = this.#lib.warp_shm_peek!(this.#handle, key, len, this.#out, this.#out.length, 0);
    if (r < 0) return undefined;
    const at = this.#out[0] === TAGGED_ENVELOPE ? readEnvelope(this.#out, r)?.offset ?? r : 0;
    const inner = this.#out.subarray(at, r);
    return isFileRef(inner, inner.length) ? inner.slice() : undefined;
  }

  /**
   * The entry with tags whose `r` bytes were just read into the output buffer, as a
   * {@linkcode Tagged} whose value is a hit's form (`asHit`: `Promise.resolve` of an async
   * result, else the Promise `peek` returns) and whose epoch is `NaN` (invalid) when it was
   * stored under another tag clock file; or MISS (and, on a hit, the entry dropped) when
   * its bytes are not a whole envelope or its value does not decode. Its tags' hashes are
   * copied only when the clock moved since it was stored (a hit that finds the same epoch
   * needs none).
   */
  #tagged(key: Uint8Array, len: number, r: number, asHit: boolean): unknown {
    const out = this.#out;
    const view = this.#outView;
    const offset = envelopeOffset(out, view, r);
    if (offset < 0) return this.#dropped(key, len, asHit);
    const c = this.tags;
    // The directory's clock (opened now if this process had not needed it yet): without
    // it, an entry with tags cannot be checked, and is a miss.
    if (!c.ensure()) return MISS;
    // Reading the epoch first makes the clock follow a replaced file (its nonce changes).
    const epoch = c.epoch;
    const at = envelopeNonceIs(view, c.nonceLo, c.nonceHi) ? c.fromRaw(envelopeAt(view)) : NaN;
    const hashes = at === epoch ? undefined : envelopeHashes(view);
    const promised = envelopePromised(out);
    // The value's bytes moved to the front: the codec reads from offset 0, with the view.
    const n = r - offset;
    if (n <= 64) {
      for (let i = 0; i < n; i++) out[i] = out[offset + i]!; // 8 ns against copyWithin's 24
    } else {
      out.copyWithin(0, offset, r);
    }
    let v: unknown;
    try {
      const value = decodeValueIn(out, n, view);
      v = !promised ? value : asHit ? Promise.resolve(value) : promisedEntry(value);
    } catch {
      // A large value's reference reads its file (MISS, and the entry dropped, when it is
      // missing or damaged); other bytes that do not decode are never returned.
      if (!isFileRef(out, n)) return this.#dropped(key, len, asHit);
      v = this.#readLarge(key, len, asHit);
      if (v === MISS) return MISS;
    }
    return new Tagged(v, NO_TAGS, at, hashes);
  }

  #warnedNoClock = false;

  /** Warns once that entries with tags are not stored: the tag clock cannot be opened. */
  #warnNoClock(why: string): void {
    if (this.#warnedNoClock) return;
    this.#warnedNoClock = true;
    console.warn(
      `@warp/cache: ${this.#fnName}: entries with tags are not stored in ${this.path}, because the tag clock of its directory cannot be opened: ${why}`,
    );
  }

  /** MISS for bytes that are not an entry, which a hit drops. */
  #dropped(key: Uint8Array, len: number, asHit: boolean): unknown {
    if (asHit) this.#lib.warp_shm_delete!(this.#handle, key, len);
    return MISS;
  }

  /** The value of the large-value reference just read into the output buffer, or MISS
   * (and the entry dropped) when its file is missing or damaged. */
  #readLarge(key: Uint8Array, len: number, asHit: boolean): unknown {
    const ref = this.#out.slice(0, FILE_REF_BYTES);
    const bytes = this.#largeFilesIfUsable()?.read(ref, key, len);
    let value: unknown = MISS;
    if (bytes !== undefined) {
      try {
        value = decodeValue(bytes);
      } catch {
        value = MISS;
      }
    }
    if (value === MISS) {
      this.#lib.warp_shm_delete!(this.#handle, key, len);
      return MISS;
    }
    if (!isPromised(ref)) return value;
    return asHit ? Promise.resolve(value) : promisedEntry(value);
  }

  /** Removes large-value files that no entry refers to any more. */
  #sweep(): void {
    this.#largeFiles().sweep((key, sha256) => {
      const ref = this.#peekRef(key, key.length);
      return ref !== undefined && readFileRef(ref).sha256 === sha256;
    });
  }

  /**
   * The value under `key[0..len)` if present and fresh at `now` for this handle (a copy;
   * an async result's resolved value), else {@linkcode MISS}, without counting the lookup
   * or marking the entry visited.
   *
   * @throws {CacheError} If the library reports an error.
   */
  peek(key: Uint8Array, len: number, now: number): unknown {
    return this.#peekWith(this.#lib.warp_shm_peek!, key, len, now);
  }

  /** A lookup by `peek` (`warp_shm_peek` or `warp_shm_peek_stale`) that counts nothing:
   * the value, or {@linkcode MISS}. */
  #peekWith(
    peek: NonNullable<NativeSymbols["warp_shm_peek"]>,
    key: Uint8Array,
    len: number,
    now: number,
  ): unknown {
    const r = peek(this.#handle, key, len, this.#out, this.#out.length, now);
    if (r === Status.Miss) return MISS;
    if (r < 0) unwrap(r, "Shared cache lookup");
    if (this.#out[0] === TAGGED_ENVELOPE) return this.#tagged(key, len, r, false);
    let value: unknown;
    try {
      value = decodeValueIn(this.#out, r, this.#outView);
    } catch {
      if (isFileRef(this.#out, r)) return this.#readLarge(key, len, false);
      return MISS; // bytes of another codec version: never returned
    }
    return isPromised(this.#out) ? promisedEntry(value) : value;
  }

  /**
   * Stores `value` under `key[0..len)` at `now` (`NaN`: the library's Unix time).
   *
   * @param ptr Unused (inserts pass the key as a buffer).
   * @param ttl The entry's own TTL in ms (positive, or `Infinity` for never), which every
   * process honours, a process opened without a TTL too; `undefined`: none (`NO_TTL`: each
   * process judges the entry by its own `ttl`). Hits do not extend it.
   * @param size Unused (a memory store's byte budget).
   * @param owner The computation storing its result: when it owns the key's flight
   * (`owner.flight`), the value is stored only while it still does (not after a delete,
   * clear or set by hand in any process ended it), and the flight ends
   * (`warp_shm_set_owned`), after which `owner.flight` is `false`.
   * @returns Whether the value was stored.
   * @throws {RangeError} If `ttl` is not a positive number.
   * @throws {TypeError} If `ttl` is not a number, or the value cannot be serialized.
   */
  set(
    key: Uint8Array,
    len: number,
    value: unknown,
    now: number,
    promised: boolean,
    ptr?: Deno.PointerValue,
    ttl?: number,
    size?: number,
    owner?: KeyBytes,
  ): boolean {
    void ptr;
    void size; // the file counts each entry's encoded bytes itself
    if (ttl !== undefined) checkEntryTtl(`the shared cache of ${this.#fnName}`, ttl);
    // An entry with tags: the value inside an envelope (see `_tag_envelope.ts`).
    const tagged = value instanceof Tagged ? value : undefined;
    if (tagged !== undefined) {
      value = tagged.v;
      if (isPromisedEntry(value)) {
        value = peeked(value);
        promised = true;
      }
    }
    let bytes: Uint8Array;
    try {
      bytes = encodeValue(value, promised);
    } catch (e) {
      if (e instanceof TypeError) {
        throw new TypeError(
          `Cannot cache the result of ${this.#fnName} in a shared cache: ${e.message}`,
          { cause: e },
        );
      }
      throw e;
    }
    let sweep = false;
    // A tagged entry's envelope takes room of its own.
    const hashes = tagged === undefined ? undefined : tagged.hashes ?? hashTags(tagged.tags);
    const room = this.maxValueSize - (hashes === undefined ? 0 : envelopeBytes(hashes));
    if (this.#writeLarge && bytes.length > room && bytes.length <= MAX_LARGE_VALUE_BYTES) {
      const files = this.#largeFiles();
      try {
        bytes = files.write(key, len, bytes, promised);
      } catch {
        // Not written (a full file system, say): the value is skipped as oversize below.
      }
      sweep = files.sweepDue();
    }
    if (tagged !== undefined) {
      const c = this.tags;
      if (!c.ensure()) {
        this.#warnNoClock(c.failure);
        return false;
      }
      // A computation that started before this process opened the clock: the file's first
      // epoch, older than every invalidation it records. NaN (no clock then): not stored.
      // An epoch taken from another clock file (replaced, damaged, while the computation
      // ran: its invalidations are not in this one) or NaN (no clock then): not stored.
      const at = c.rawEpoch(tagged.at === NOT_OPEN ? c.start : tagged.at);
      if (!(at >= 0)) return false;
      bytes = encodeEnvelope(bytes, promised, c.nonceLo, c.nonceHi, at, hashes!);
    }
    const owned = owner !== undefined && owner.flight === true;
    const lib = this.#lib;
    // Two call sites, one symbol each: V8 makes a fast call only from a monomorphic site.
    const r = unwrap(
      owned
        ? lib.warp_shm_set_owned!(this.#handle, key, len, bytes, bytes.length, now, ttl ?? NO_TTL)
        : lib.warp_shm_set!(this.#handle, key, len, bytes, bytes.length, now, ttl ?? NO_TTL),
      "Shared cache insert",
    );
    // The library ended the flight, stored or not.
    if (owned) owner.flight = false;
    // After the entry refers to its file: a sweep before would take the file for an orphan.
    if (sweep) this.#sweep();
    this.#lastBusy = r === SET.busy;
    return r === SET.stored;
  }

  /** Whether the last {@linkcode SharedStore.set} gave up on a write lock held by a live
   * process (`SET.busy`). */
  #lastBusy = false;

  /**
   * `cacheSet` ({@linkcode Store.put}): {@linkcode SharedStore.set} (at the time `now()` of
   * each try), tried again while a live process holds the write lock, for up to
   * `LONG_WAIT_MS` as `delete` waits (each try waits `SET_WAIT_MS`).
   *
   * @throws {CacheError} Code `Status.Busy` when the lock stayed held that long: the entry
   * was not replaced, and every process still reads the one it was to replace.
   */
  put(
    key: Uint8Array,
    len: number,
    value: unknown,
    now: () => number,
    promised: boolean,
    ptr?: Deno.PointerValue,
    ttl?: number,
    size?: number,
    owner?: KeyBytes,
  ): void {
    const until = performance.now() + LONG_WAIT_MS;
    for (;;) {
      this.set(key, len, value, now(), promised, ptr, ttl, size, owner);
      if (!this.#lastBusy) return;
      if (performance.now() >= until) break;
    }
    this.#lastBusy = false;
    throw new CacheError(
      Status.Busy,
      `Cannot set an entry of the shared cache of ${this.#fnName} (${this.path}): a live process has held its write lock for ${
        LONG_WAIT_MS / 1000
      } s (stopped, or paused in a debugger?); the entry was not replaced`,
    );
  }

  delete(key: Uint8Array, len: number): boolean {
    const ref = this.#peekRef(key, len);
    const removed =
      unwrap(this.#lib.warp_shm_delete!(this.#handle, key, len), "Shared cache delete") ===
        Status.Ok;
    if (ref !== undefined) this.#largeFilesIfUsable()?.remove(ref);
    return removed;
  }

  /**
   * The {@linkcode Store} of this handle: keys by pointer for lookups; time from `clock`
   * when one is injected, else Unix time read by the library (a clock every process agrees
   * on). Every insertion is stamped, TTL or not: another process may judge the entry with
   * a TTL of its own.
   *
   * @param clock Time source in Unix ms.
   * @returns The store as `cache()` uses it.
   */
  keyed(clock?: () => number): Store {
    return new StoreView(this, this.ttlOn, clock, VIEW);
  }

  /** Turns one miss counted by this handle into a hit (a lookup that joined a computation). */
  countJoin(): void {
    unwrap(this.#lib.warp_shm_count_hit!(this.#handle), "Shared cache count");
  }

  /** Turns one miss counted by this handle into a hit and a stale hit (in the file: the
   * totals are exact over every process); `joined`: the stale hit only (the call was
   * counted as a hit already). */
  countStaleHit(joined = false): void {
    unwrap(
      this.#lib.warp_shm_count_stale_hit!(this.#handle, joined ? 1 : 0),
      "Shared cache count",
    );
  }

  /** Turns one hit counted by this handle into a miss (a hit on an entry whose tags were
   * invalidated), in the file. */
  countInvalidHit(): void {
    unwrap(this.#lib.warp_shm_count_invalid_hit!(this.#handle), "Shared cache count");
  }

  /** Counts a background refresh (in the file). */
  countRefresh(): void {
    unwrap(this.#lib.warp_shm_count_refresh!(this.#handle), "Shared cache count");
  }

  /**
   * The value under `key[0..len)` while fresh or stale at `now` for this handle (older than
   * its TTL, own or this handle's, by less than this handle's stale window), else
   * {@linkcode MISS}; counts nothing, marks nothing, never removes.
   *
   * @throws {CacheError} If the library reports an error.
   */
  peekStale(key: Uint8Array, len: number, now: number): unknown {
    return this.#peekWith(this.#lib.warp_shm_peek_stale!, key, len, now);
  }

  clear(): void {
    unwrap(this.#lib.warp_shm_clear!(this.#handle), "Shared cache clear");
    this.#largeFilesIfUsable()?.removeAll();
  }

  info(): StoreInfo {
    const i = this.#readInfo();
    const info: StoreInfo = {
      hits: i[SHM_INFO.hits]!,
      misses: i[SHM_INFO.misses]!,
      maxSize: i[SHM_INFO.maxSize]!,
      currentSize: i[SHM_INFO.currentSize]!,
      oversizeSkips: i[SHM_INFO.oversizeSkips]!,
      bytes: i[SHM_INFO.bytes]!,
      maxBytes: i[SHM_INFO.maxBytes]!,
    };
    const evictions = i[SHM_INFO.evictions]!;
    if (evictions > 0) info.evictions = evictions;
    const staleHits = i[SHM_INFO.staleHits]!;
    const refreshes = i[SHM_INFO.refreshes]!;
    if (staleHits > 0 || refreshes > 0) {
      info.staleHits = staleHits;
      info.refreshes = refreshes;
    }
    return info;
  }

  close(): void {
    if (this.#handle === null) return;
    registry.unregister(this.#token);
    this.#lib.warp_shm_close!(this.#handle);
    this.#handle = null;
  }
}

/** The time of a store without an injected clock: `LIBRARY_TIME`, the library reads Unix time,
 * a clock every process agrees on. A literal, checked by tests/abi_test.ts: V8 folds a
 * literal, and reads an imported binding on every call. */
const DEFAULT_TIME = (): number => NaN /* abi: LIBRARY_TIME */;

/** How {@linkcode StoreView} drives this store. */
const VIEW: ViewOptions = {
  defaultTime: DEFAULT_TIME,
  pointerGets: true,
  pointerSets: false,
  stampAlways: true,
};
