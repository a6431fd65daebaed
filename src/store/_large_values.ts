/**
 * Large values of a shared cache in files (`largeValues: "file"`): a value whose encoding
 * is larger than `maxValueSize` (up to {@linkcode MAX_LARGE_VALUE_BYTES}) is written to a
 * file beside the cache file, and the entry holds a reference to it (the value codec's tag
 * 12: the file's size and SHA-256).
 *
 * - Files live in `<cache file>.large/` (mode 0700), named by the SHA-256 of their content
 *   (`<hex>.v`, mode 0600), written to a temporary name and then renamed, so no reader sees
 *   a partial file.
 * - Content: `WARPLV01`, the key's length (u32 LE), the key's bytes, the encoded value. A
 *   read checks the size, the SHA-256 and the key: a missing, damaged or foreign file is a
 *   miss, never a wrong value.
 * - Removal: `cacheDelete` and `cacheClear` remove their files at once. An entry that goes
 *   another way (evicted, replaced, expired and replaced) leaves its file behind until a
 *   sweep, which runs when a handle opens the cache and after every
 *   {@linkcode SWEEP_EVERY} large writes: it removes each file whose key no longer refers
 *   to it and that is older than {@linkcode STORE_GRACE_MS} (a younger one may be a file
 *   that another process has written and is about to store), and temporary files older
 *   than {@linkcode TEMP_MAX_AGE_MS} (left by a killed writer).
 * - Trust: the folder must be a directory of this user, closed to others (mode 0700): in a
 *   shared directory (`/tmp`, sticky) another user could otherwise create it first, or a
 *   symbolic link in its place, and plant files. Another folder is refused with an `Error`
 *   naming it, and nothing is written there. Files are opened with `O_NOFOLLOW` and
 *   `O_NONBLOCK` and read only when the open descriptor is a regular file of this user that
 *   others cannot read or write: a FIFO, a device, a symbolic link or another user's file is
 *   a miss, and never blocks the thread.
 *
 * @module
 */

import { createHash } from "node:crypto";
import fs from "node:fs";
import { encodeFileRef, FILE_REF_BYTES, readFileRef } from "../codec/value_codec.ts";
import { effectiveUid } from "../native/_uid.ts";
import { MAX_KEY_BYTES } from "../native/_abi.ts";

/** Largest value kept in a file: 1 GiB. */
export const MAX_LARGE_VALUE_BYTES = 1 << 30;

/** Large writes of one handle between two sweeps. */
export const SWEEP_EVERY = 32;

/** Age after which a temporary file is a killed writer's, in ms. */
export const TEMP_MAX_AGE_MS = 60_000;

/**
 * Age under which a value file is never swept, in ms: a writer renames its file into place
 * before it stores the entry that refers to it, so a sweep in another process may find a
 * file that no entry refers to yet (measured: 3% of large values lost under concurrency
 * before this grace, tests/large_values_test.ts).
 */
export const STORE_GRACE_MS = 60_000;

/** Flags of every open of a file in the folder: never follow a link, never block. */
const READ_FLAGS = fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK;

const MAGIC = new TextEncoder().encode("WARPLV01");
const HEADER = MAGIC.length + 4;

function sha256(bytes: Uint8Array): Uint8Array {
  return createHash("sha256").update(bytes).digest();
}

function hex(bytes: Uint8Array): string {
  let s = "";
  for (const b of bytes) s += b.toString(16).padStart(2, "0");
  return s;
}

function sameBytes(a: Uint8Array, b: Uint8Array, len: number): boolean {
  if (a.length < len || b.length < len) return false;
  for (let i = 0; i < len; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Reads `size` bytes of the open file `fd` from `offset` (fewer at its end). */
function readAll(fd: number, size: number, offset = 0): Uint8Array {
  const bytes = new Uint8Array(size);
  let at = 0;
  while (at < size) {
    const n = fs.readSync(fd, bytes, at, size - at, offset + at);
    if (n === 0) return bytes.subarray(0, at);
    at += n;
  }
  return bytes;
}

/** The large-value files of one shared cache. */
export class LargeValueFiles {
  /** The folder of the files. */
  readonly dir: string;
  #writes = 0;

  #uid: number | null;

  /**
   * @param cachePath Path of the cache file; the files go to `<cachePath>.large/`, created
   * (mode 0700) when missing.
   * @throws {Error} If the folder cannot be created, or is not a directory of this user
   * closed to others (another user's, a symbolic link, a file, mode other than 0700): the
   * message names it.
   */
  constructor(cachePath: string) {
    this.dir = `${cachePath}.large`;
    this.#uid = effectiveUid();
    this.#ensureDir();
  }

  /**
   * Creates the folder (mode 0700) when it is missing, and checks it.
   *
   * @throws {Error} If it cannot be created, or is not a directory of this user closed to
   * others: the message names it.
   */
  #ensureDir(): void {
    let st: Deno.FileInfo;
    try {
      st = Deno.lstatSync(this.dir);
    } catch {
      try {
        Deno.mkdirSync(this.dir, { mode: 0o700 });
      } catch (e) {
        if (!(e instanceof Deno.errors.AlreadyExists)) throw e;
      }
      st = Deno.lstatSync(this.dir);
    }
    const why = st.isSymlink
      ? "it is a symbolic link"
      : !st.isDirectory
      ? "it is not a directory"
      : this.#uid !== null && st.uid !== this.#uid
      ? `it is owned by another user (uid ${st.uid})`
      : ((st.mode ?? 0) & 0o077) !== 0
      ? `its mode ${((st.mode ?? 0) & 0o777).toString(8)} lets other users in`
      : null;
    if (why !== null) {
      throw new Error(
        `Cannot use the large-value folder ${this.dir}: ${why}; it must be a directory of your own with mode 0700 (remove it, or use another dir or name)`,
      );
    }
  }

  /**
   * Opens `path` without following a link or blocking, and returns its open descriptor
   * when it is a regular file of this user that others cannot read or write, else
   * `undefined` (and closes it).
   */
  #openOwn(path: string): { fd: number; size: number } | undefined {
    let fd: number;
    try {
      fd = fs.openSync(path, READ_FLAGS);
    } catch {
      return undefined;
    }
    try {
      const st = fs.fstatSync(fd);
      if (
        st.isFile() && (this.#uid === null || st.uid === this.#uid) && (st.mode & 0o077) === 0
      ) {
        return { fd, size: st.size };
      }
    } catch {
      // fall through: closed below
    }
    fs.closeSync(fd);
    return undefined;
  }

  /**
   * Writes `value` (encoded bytes) for `key[0..keyLen)` to its file, and returns the
   * reference to store in the entry.
   *
   * @throws {Error} If the file cannot be written (a full file system, say): nothing is
   * left behind.
   */
  write(key: Uint8Array, keyLen: number, value: Uint8Array, promised: boolean): Uint8Array {
    const content = new Uint8Array(HEADER + keyLen + value.length);
    content.set(MAGIC, 0);
    new DataView(content.buffer).setUint32(MAGIC.length, keyLen, true);
    content.set(key.subarray(0, keyLen), HEADER);
    content.set(value, HEADER + keyLen);
    const digest = sha256(content);
    const name = `${this.dir}/${hex(digest)}.v`;
    const tmp = `${this.dir}/.${hex(digest)}.${crypto.randomUUID()}.tmp`;
    try {
      try {
        Deno.writeFileSync(tmp, content, { mode: 0o600, createNew: true });
      } catch (e) {
        // The folder was removed (`cli rm`, by hand) while this handle uses the cache: made
        // again, checked, as at open.
        if (!(e instanceof Deno.errors.NotFound)) throw e;
        this.#ensureDir();
        Deno.writeFileSync(tmp, content, { mode: 0o600, createNew: true });
      }
      Deno.renameSync(tmp, name);
    } catch (e) {
      try {
        Deno.removeSync(tmp);
      } catch {
        // never created
      }
      throw e;
    }
    return encodeFileRef(content.length, digest, promised);
  }

  /** Whether a sweep is due after this write (counted per handle). */
  sweepDue(): boolean {
    return ++this.#writes % SWEEP_EVERY === 0;
  }

  /**
   * The encoded value that `ref` points to for `key[0..keyLen)`, or `undefined` when its
   * file is missing, damaged or not this key's.
   */
  read(ref: Uint8Array, key: Uint8Array, keyLen: number): Uint8Array | undefined {
    const { size, sha256: want } = readFileRef(ref);
    const file = this.#openOwn(`${this.dir}/${want}.v`);
    if (file === undefined) return undefined;
    let content: Uint8Array;
    try {
      if (file.size !== size) return undefined;
      content = readAll(file.fd, size);
    } catch {
      return undefined;
    } finally {
      fs.closeSync(file.fd);
    }
    if (content.length !== size || hex(sha256(content)) !== want) return undefined;
    if (!sameBytes(content, MAGIC, MAGIC.length)) return undefined;
    const storedLen = new DataView(content.buffer, content.byteOffset).getUint32(
      MAGIC.length,
      true,
    );
    if (storedLen !== keyLen || !sameBytes(content.subarray(HEADER), key, keyLen)) {
      return undefined;
    }
    return content.subarray(HEADER + keyLen);
  }

  /** Removes the file that `ref` points to, if any. */
  remove(ref: Uint8Array): void {
    if (ref.length < FILE_REF_BYTES) return;
    try {
      Deno.removeSync(`${this.dir}/${readFileRef(ref).sha256}.v`);
    } catch {
      // already gone
    }
  }

  /** Removes every file (`cacheClear`). */
  removeAll(): void {
    for (const e of this.#entries()) {
      try {
        Deno.removeSync(`${this.dir}/${e}`);
      } catch {
        // removed by another process meanwhile
      }
    }
  }

  /**
   * Removes the files no entry refers to any more: `refersTo(key, sha256)` tells whether the
   * entry of `key` is a reference to the file of that SHA-256. Also removes temporary files
   * older than {@linkcode TEMP_MAX_AGE_MS}. Returns how many files it removed.
   */
  sweep(refersTo: (key: Uint8Array, sha256: string) => boolean, now = Date.now()): number {
    let removed = 0;
    for (const name of this.#entries()) {
      const path = `${this.dir}/${name}`;
      let stale: boolean;
      if (name.endsWith(".tmp")) {
        let mtime: number;
        try {
          mtime = Deno.statSync(path).mtime?.getTime() ?? 0;
        } catch {
          continue;
        }
        stale = now - mtime > TEMP_MAX_AGE_MS;
      } else if (name.endsWith(".v")) {
        let mtime: number;
        let ino: number | null;
        try {
          const st = Deno.lstatSync(path);
          mtime = st.mtime?.getTime() ?? 0;
          ino = st.ino;
        } catch {
          continue;
        }
        // A young file may be another process's, written and about to be stored.
        if (now - mtime < STORE_GRACE_MS) continue;
        const key = this.#keyOf(path);
        if (key !== undefined && refersTo(key, name.slice(0, -2))) continue;
        if (this.#removeJudged(path, name, ino)) removed++;
        continue;
      } else {
        continue;
      }
      if (!stale) continue;
      try {
        Deno.removeSync(path);
        removed++;
      } catch {
        // removed by another process meanwhile
      }
    }
    return removed;
  }

  /**
   * Removes the value file `path` when it is still the file (inode `ino`) that the sweep
   * judged an orphan. Another process may have renamed a fresh copy over it since (the
   * same key and value give the same name), which it is about to store: the file is moved
   * aside first (atomic), and a file that is not the one judged is moved back (its content
   * is the same as any file of that name).
   */
  #removeJudged(path: string, name: string, ino: number | null): boolean {
    const aside = `${this.dir}/.${name}.${crypto.randomUUID()}.tmp`;
    try {
      Deno.renameSync(path, aside);
    } catch {
      return false; // removed by another process meanwhile
    }
    let same = false;
    try {
      same = ino !== null && Deno.lstatSync(aside).ino === ino;
    } catch {
      return false;
    }
    try {
      if (same) {
        Deno.removeSync(aside);
        return true;
      }
      Deno.renameSync(aside, path);
    } catch {
      // gone meanwhile; a temporary file left is swept when old
    }
    return false;
  }

  #entries(): string[] {
    try {
      return [...Deno.readDirSync(this.dir)].filter((e) => e.isFile).map((e) => e.name);
    } catch {
      return [];
    }
  }

  /** The key stored in a file's header, or `undefined` if it is not one of ours. */
  #keyOf(path: string): Uint8Array | undefined {
    const file = this.#openOwn(path);
    if (file === undefined) return undefined;
    try {
      const head = readAll(file.fd, Math.min(HEADER, file.size));
      if (head.length !== HEADER || !sameBytes(head, MAGIC, MAGIC.length)) return undefined;
      const keyLen = new DataView(head.buffer).getUint32(MAGIC.length, true);
      if (keyLen > MAX_KEY_BYTES || HEADER + keyLen > file.size) return undefined;
      const key = readAll(file.fd, keyLen, HEADER);
      return key.length === keyLen ? key : undefined;
    } catch {
      return undefined;
    } finally {
      fs.closeSync(file.fd);
    }
  }
}
