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
 *   to it, and temporary files older than {@linkcode TEMP_MAX_AGE_MS} (left by a killed
 *   writer).
 *
 * @module
 */

import { createHash } from "node:crypto";
import { encodeFileRef, FILE_REF_BYTES, readFileRef } from "../codec/value_codec.ts";

/** Largest value kept in a file: 1 GiB. */
export const MAX_LARGE_VALUE_BYTES = 1 << 30;

/** Large writes of one handle between two sweeps. */
export const SWEEP_EVERY = 32;

/** Age after which a temporary file is a killed writer's, in ms. */
export const TEMP_MAX_AGE_MS = 60_000;

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

/** The large-value files of one shared cache. */
export class LargeValueFiles {
  /** The folder of the files. */
  readonly dir: string;
  #writes = 0;

  /**
   * @param cachePath Path of the cache file; the files go to `<cachePath>.large/`.
   * @throws {Error} If the folder cannot be created.
   */
  constructor(cachePath: string) {
    this.dir = `${cachePath}.large`;
    Deno.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
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
      Deno.writeFileSync(tmp, content, { mode: 0o600, createNew: true });
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
    let content: Uint8Array;
    try {
      content = Deno.readFileSync(`${this.dir}/${want}.v`);
    } catch {
      return undefined;
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
        const key = this.#keyOf(path);
        stale = key === undefined || !refersTo(key, name.slice(0, -2));
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

  #entries(): string[] {
    try {
      return [...Deno.readDirSync(this.dir)].filter((e) => e.isFile).map((e) => e.name);
    } catch {
      return [];
    }
  }

  /** The key stored in a file's header, or `undefined` if it is not one of ours. */
  #keyOf(path: string): Uint8Array | undefined {
    let f: Deno.FsFile;
    try {
      f = Deno.openSync(path, { read: true });
    } catch {
      return undefined;
    }
    try {
      const head = new Uint8Array(HEADER);
      if (f.readSync(head) !== HEADER || !sameBytes(head, MAGIC, MAGIC.length)) return undefined;
      const keyLen = new DataView(head.buffer).getUint32(MAGIC.length, true);
      if (keyLen > 1 << 20) return undefined;
      const key = new Uint8Array(keyLen);
      let got = 0;
      while (got < keyLen) {
        const n = f.readSync(key.subarray(got));
        if (n === null || n === 0) return undefined;
        got += n;
      }
      return key;
    } finally {
      f.close();
    }
  }
}
