/**
 * The tag clock of a directory of shared caches: the file `<dir>/.warp_tags`, mapped by
 * the native library (`rust/src/shm/tags.rs`) and read here through an `ArrayBuffer` over
 * the mapping, taken once. Every process of the machine that opens a shared cache in the
 * directory maps the same file, so a tag invalidation made by one is seen by all of them
 * on their next read, without a message (README, "Tags").
 *
 * The file holds a global epoch (the count of invalidations), a floor, and a table of
 * 65,536 slots of (64-bit tag hash, epoch of its last invalidation). A hit on an entry
 * stored at epoch `at` reads one word pair while nothing was invalidated since (`at ===
 * epoch`); otherwise it probes the slots of the entry's tags (linear probing from the
 * hash's home slot, at most 64 slots) and the floor. Invalidations are FFI calls (an
 * atomic fetch-add of the epoch, then one store per tag).
 *
 * Tags are hashed here ({@linkcode hashTag}) and only their hashes reach the file and the
 * entries. A collision can only make entries misses.
 *
 * Epochs are below 2^32 (`EPOCH_LIMIT` in `rust/src/shm/tags.rs`): a read takes the low
 * word of an epoch, and its high word must be 0. A file that was replaced (damaged, say)
 * is _retired_: the high word of its epoch is not 0. A clock that sees that, or a damaged
 * header, opens the directory's current file
 * again; until it can, its epoch is `NaN` and every entry is invalid (misses, never a
 * stale hit). One clock per directory per thread ({@linkcode sharedTagClock}); the
 * library keeps one mapping per directory per process.
 *
 * @module
 */

import { loadNative, nativeLastError, type NativeSymbols } from "../native/ffi.ts";
import { CacheError, unwrap } from "../native/errors.ts";
import {
  Status,
  TAGS_LAYOUT,
  TAGS_LAYOUT_FIELDS,
  TAGS_MAGIC,
  TAGS_SLOT_SIZE,
} from "../native/_abi.ts";
import type { TagClock } from "./tagged.ts";

/** Epochs of one file are below it (`EPOCH_LIMIT` in `rust/src/shm/tags.rs`). */
const EPOCH_SPAN = 2 ** 32;
/** How often (ms) a clock that cannot open its file tries again. */
const RETRY_MS = 1000;
/** The file's first 8 bytes (`TAGS_MAGIC`), as two native `u32`. */
const MAGIC = new Uint32Array(new TextEncoder().encode(TAGS_MAGIC).buffer);

/**
 * The 64-bit hash of a tag, written to `out[at]` (low 32 bits) and `out[at + 1]` (high):
 * the two lanes of cyrb53 (bryc, public domain) over the tag's UTF-16 code units, both
 * kept in full. Never 0 (0 marks an empty slot; it is taken as 1). Part of the file
 * format: a change of this function is a change of format (and of the file's name).
 *
 * @param tag The tag.
 * @param out Where the hash goes.
 * @param at Index of its low half in `out`.
 */
export function hashTag(tag: string, out: Uint32Array, at: number): void {
  let h1 = 0xdeadbeef;
  let h2 = 0x41c6ce57;
  for (let i = 0; i < tag.length; i++) {
    const c = tag.charCodeAt(i);
    h1 = Math.imul(h1 ^ c, 2654435761);
    h2 = Math.imul(h2 ^ c, 1597334677);
  }
  h1 = Math.imul(h1 ^ (h1 >>> 16), 2246822507);
  h1 ^= Math.imul(h2 ^ (h2 >>> 13), 3266489909);
  h2 = Math.imul(h2 ^ (h2 >>> 16), 2246822507);
  h2 ^= Math.imul(h1 ^ (h1 >>> 13), 3266489909);
  out[at] = h1 >>> 0;
  out[at + 1] = h2 >>> 0;
  if (out[at] === 0 && out[at + 1] === 0) out[at] = 1;
}

/** The 64-bit hashes of `tags`, two `u32` each, low then high (see {@linkcode hashTag}). */
export function hashTags(tags: readonly string[]): number[] {
  const one = new Uint32Array(2);
  const out: number[] = [];
  for (const t of tags) {
    hashTag(t, one, 0);
    out.push(one[0]!, one[1]!);
  }
  return out;
}

/** The layout of clock files, from the library (`warp_tags_layout`, its fields in the order
 * of `TAGS_LAYOUT`), in `u32` words. */
interface Layout {
  fileSize: number;
  /** Word of the first slot. */
  firstSlot: number;
  slots: number;
  probe: number;
  nonce: number;
  epoch: number;
  floor: number;
  start: number;
}

let layout: Layout | undefined;

function layoutOf(lib: NativeSymbols): Layout {
  if (layout !== undefined) return layout;
  const f = new Float64Array(TAGS_LAYOUT_FIELDS);
  unwrap(lib.warp_tags_layout!(f), "Tag clock layout");
  const field = (k: keyof typeof TAGS_LAYOUT): number => f[TAGS_LAYOUT[k]]!;
  const slotSize = field("slotSize");
  // The probing below reads a slot as 4 words (hash, epoch), little-endian.
  if (slotSize !== TAGS_SLOT_SIZE || new Uint8Array(new Uint16Array([1]).buffer)[0] !== 1) {
    throw new Error(
      `Cannot read the tag clock: unexpected layout (slot of ${slotSize} bytes) or byte order`,
    );
  }
  return layout = {
    fileSize: field("fileSize"),
    firstSlot: field("headerSize") / 4,
    slots: field("slots"),
    probe: field("probe"),
    nonce: field("nonce") / 4,
    epoch: field("epoch") / 4,
    floor: field("floor") / 4,
    start: field("start") / 4,
  };
}

/**
 * The epoch of a computation that started before its process opened its directory's tag
 * clock (a process opens it when it first stores, reads or invalidates an entry with tags):
 * its entry is stored at the clock file's first epoch, which is older than every
 * invalidation recorded in the file (a miss if one of its tags was invalidated since the
 * file was created; never a stale hit). So a directory where tags are never used gets no
 * clock file.
 */
export const NOT_OPEN = -1;

/** The tag clock of one directory of shared caches (see the module doc). */
export class SharedTagClock implements TagClock {
  /** The directory (without a trailing `/`). */
  readonly dir: string;
  readonly #lib: NativeSymbols;
  readonly #layout: Layout;
  #handle: Deno.PointerValue = null;
  /** The mapping, or `null` while the file is not open. */
  #words: Uint32Array | null = null;
  /** Whether this clock opened its file once (until then its epoch is `NOT_OPEN`). */
  #opened = false;
  /** Low and high halves of the file's nonce (0 while it is not open). */
  nonceLo = 0;
  nonceHi = 0;
  /**
   * Added to the epochs of the file mapped now: {@linkcode EPOCH_SPAN} more for each other
   * file this clock followed (a damaged file is replaced by one whose epochs start anywhere),
   * so that an epoch taken from one file (by a computation under way when it was replaced)
   * is never read as an epoch of another, whose invalidations it did not see.
   */
  #base = 0;
  /** The nonce of the last file mapped (kept when an open fails). */
  #fileLo = 0;
  #fileHi = 0;
  /** When (`performance.now()`) opening last failed. */
  #failedAt = -Infinity;
  /** Why opening last failed. */
  #failure = "";
  readonly #one = new Uint32Array(2);

  /**
   * The clock of `dir`; its file is opened (or created) when first needed.
   *
   * @throws {Error} If the native library is missing.
   */
  constructor(dir: string) {
    const lib = loadNative();
    if (lib === null || lib.warp_tags_open === null) {
      throw new Error("Cannot open the tag clock: the native library is not available");
    }
    this.dir = dir;
    this.#lib = lib;
    this.#layout = layoutOf(lib);
  }

  /** Maps the directory's current file (creating it when missing); `false` (and the
   * reason kept) when it cannot. */
  #reopen(): boolean {
    this.#opened = true;
    const path = new TextEncoder().encode(this.dir);
    const h = this.#lib.warp_tags_open!(path, path.length);
    if (h === null) {
      this.#words = null;
      this.nonceLo = this.nonceHi = 0;
      this.#failedAt = performance.now();
      this.#failure = nativeLastError();
      return false;
    }
    const base = this.#lib.warp_tags_base!(h)!;
    this.#handle = h;
    const words = new Uint32Array(
      Deno.UnsafePointerView.getArrayBuffer(base, this.#layout.fileSize),
    );
    this.#words = words;
    const lo = words[this.#layout.nonce]!;
    const hi = words[this.#layout.nonce + 1]!;
    if (
      (this.#fileLo !== 0 || this.#fileHi !== 0) && (lo !== this.#fileLo || hi !== this.#fileHi)
    ) {
      this.#base += EPOCH_SPAN;
    }
    this.nonceLo = this.#fileLo = lo;
    this.nonceHi = this.#fileHi = hi;
    return true;
  }

  /** After a read found the file retired or damaged (or none is open): opens the current
   * one (at most once a second while that fails); whether the clock can be read now. */
  #recover(): boolean {
    if (this.#words === null && this.#opened && performance.now() - this.#failedAt < RETRY_MS) {
      return false;
    }
    return this.#reopen() && this.#intact(this.#words!);
  }

  /**
   * Opens the file when it is not open (creating it when missing), and follows it when it
   * was replaced: whether the clock can be read now (else {@linkcode SharedTagClock.failure}
   * says why).
   */
  ensure(): boolean {
    const u = this.#words;
    return (u !== null && this.#intact(u)) || this.#recover();
  }

  /** Why the file could not be opened, the last time it could not. */
  get failure(): string {
    return this.#failure;
  }

  /** The file's first epoch (see {@linkcode NOT_OPEN}), once it is open. */
  get start(): number {
    const u = this.#words;
    return u === null ? NaN : this.#base + u[this.#layout.start]!;
  }

  /**
   * The epoch of the file mapped now that `at` (an epoch this clock gave) stands for, or -1
   * when `at` was taken from another file (or is not an epoch): what an envelope records.
   */
  rawEpoch(at: number): number {
    const raw = at - this.#base;
    return raw >= 0 && raw < EPOCH_SPAN ? raw : -1;
  }

  /** The epoch this clock gives for epoch `raw` of the file mapped now (an envelope's). */
  fromRaw(raw: number): number {
    return this.#base + raw;
  }

  /** Whether the mapped header is intact and the file not retired. */
  #intact(u: Uint32Array): boolean {
    return u[0] === MAGIC[0] && u[1] === MAGIC[1] && u[this.#layout.epoch + 1] === 0;
  }

  get epoch(): number {
    // Plain loads: the high word first (0 unless the file was retired), then the low one.
    // Atomics.load costs about 8 ns a word here, a plain load 2.
    const u = this.#words;
    if (u !== null) {
      const i = this.#layout.epoch;
      if (u[i + 1] === 0) return this.#base + u[i]!;
    } else if (!this.#opened) {
      return NOT_OPEN;
    }
    // Retired, damaged or not open: the current file's epoch, else none (NaN: every entry
    // stored now is invalid, and so is every entry read).
    if (!this.#recover()) return NaN;
    return this.#base + this.#words![this.#layout.epoch]!;
  }

  invalidSince(tags: readonly string[], at: number, hashes?: readonly number[]): boolean {
    // A computation that started before this process opened the clock: its entry is
    // stored at the file's first epoch (`SharedStore.set`), and judged so.
    if (at === NOT_OPEN && this.ensure()) at = this.start;
    if (!(at >= 0)) return true;
    // An entry read back from the file without its hashes (not needed when it was read,
    // at its epoch): valid while the clock has not moved since, else a miss.
    if (hashes === undefined && tags.length === 0) return at !== this.epoch;
    const u = this.#words;
    if (u === null || !this.#intact(u)) {
      this.#recover();
      return true;
    }
    // An epoch of another file than the one mapped now: its invalidations are not here.
    at = this.rawEpoch(at);
    if (at < 0) return true;
    // The slots first (acquire loads of their hashes), then the floor (raised before a full
    // table is emptied): a reset under way is never missed.
    if (hashes !== undefined) {
      for (let k = 0; k < hashes.length; k += 2) {
        if (this.#after(u, hashes[k]!, hashes[k + 1]!, at)) return true;
      }
    } else {
      const one = this.#one;
      for (const t of tags) {
        hashTag(t, one, 0);
        if (this.#after(u, one[0]!, one[1]!, at)) return true;
      }
    }
    return u[this.#layout.floor]! > at;
  }

  /** Whether the tag of hash (`lo`, `hi`) was invalidated after epoch `at`. */
  #after(u: Uint32Array, lo: number, hi: number, at: number): boolean {
    const { slots, probe, firstSlot } = this.#layout;
    const mask = slots - 1;
    for (let n = 0, i = lo & mask; n < probe; n++, i = (i + 1) & mask) {
      const w = firstSlot + 4 * i;
      const l = Atomics.load(u, w);
      const h = Atomics.load(u, w + 1);
      if (l === 0 && h === 0) return false;
      if (l === lo && h === hi) return Atomics.load(u, w + 2) > at;
    }
    return false;
  }

  /**
   * Invalidates `tags` in the directory (creating its clock file when missing): every
   * process sees it on its next read.
   *
   * @throws {CacheError} If the file cannot be opened, created or written.
   */
  invalidate(tags: readonly string[]): void {
    if (tags.length === 0) return;
    const hashes = new Uint32Array(hashTags(tags));
    for (let attempt = 0; attempt < 2; attempt++) {
      if (!this.ensure()) break;
      const r = this.#lib.warp_tags_invalidate!(this.#handle, hashes, tags.length);
      if (r === Status.Ok) return;
      if (r !== Status.Corrupt) unwrap(r, "Tag invalidation");
      // Replaced meanwhile: open the current file, and invalidate there.
      if (!this.#reopen()) break;
    }
    throw new CacheError(
      Status.Io,
      `Cannot invalidate tags in ${this.dir}: ${this.#failure || nativeLastError()}`,
    );
  }
}

/** The clocks of this thread, by directory. */
const clocks = new Map<string, SharedTagClock>();

/** `dir` without trailing slashes (but `/` stays). */
function normalized(dir: string): string {
  return dir.length > 1 ? dir.replace(/\/+$/, "") || "/" : dir;
}

/**
 * The tag clock of directory `dir` (one per directory and thread; its file is opened when
 * first needed).
 *
 * @throws {Error} If the native library is missing.
 */
export function sharedTagClock(dir: string): SharedTagClock {
  const d = normalized(dir);
  let c = clocks.get(d);
  if (c === undefined) clocks.set(d, c = new SharedTagClock(d));
  return c;
}

/**
 * The tag clock of directory `dir` when the directory exists (some process may have shared
 * caches there), else `undefined`; never prompts (without the read permission on it, or
 * the native library, `undefined`), never throws. For {@linkcode invalidateTags} and the
 * default directory: its invalidation creates the clock file, so that a computation under
 * way in another process that has not opened the clock yet stores its entry as older than
 * the invalidation.
 */
export function clockOfDirectory(dir: string): SharedTagClock | undefined {
  const d = normalized(dir);
  const known = clocks.get(d);
  if (known !== undefined) return known;
  try {
    if (Deno.permissions.querySync({ name: "read", path: d }).state !== "granted") {
      return undefined;
    }
    if (!Deno.lstatSync(d).isDirectory) return undefined;
    if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") return undefined;
    return sharedTagClock(d);
  } catch {
    return undefined;
  }
}
