/**
 * The index of the TypeScript store for calls whose arguments are all primitives (numbers,
 * strings, booleans, `undefined`, `null`; one to {@linkcode MAX_ARITY} of them, no `this`):
 * JavaScript `Map`s keyed by the arguments themselves, nested one level per argument, with
 * a slot number at the last level. A hit then costs one `Map.get` per argument (hashing and
 * comparison done by V8), where the byte index hashes the encoded key and compares it byte
 * by byte in JavaScript (measured: 53% of a hit of two ints, see `notes/tsengine.md`).
 *
 * `Map` keys compare by SameValueZero, which is the key contract for primitives (README,
 * "Keys"): `1` and `"1"` differ, `0` and `-0` are one key, `NaN` equals `NaN`, strings
 * compare code unit by code unit (lone surrogates included). Entries still arrive as
 * encoded bytes (`set`, `delete`, `peek` by a held key): {@linkcode ArgsIndex.decode} reads
 * such a key back into its arguments, so that both ways reach the same entry. A key that
 * does not decode (an object, a `bigint`, a symbol, `this`, more arguments) stays in the
 * byte index.
 *
 * The tags below mirror `src/codec/key_codec.ts` (memory and shared forms);
 * `tests/ts_store_args_test.ts` checks every decodable shape against the encoder.
 *
 * @module
 */

import { NIL } from "./_multi_queue.ts";

/** Most arguments of a call indexed by its arguments. */
export const MAX_ARITY = 4;

const T_UNDEFINED = 1;
const T_NULL = 2;
const T_FALSE = 3;
const T_TRUE = 4;
const T_INT32 = 5;
const T_F64 = 6;
const T_STR8 = 7;
const T_STR16 = 8;
const T_ARGS = 17;
const T_SHORT8 = 19;
const T_SHORT16 = 20;

const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const fcc = String.fromCharCode;

/** `key[p..p+n)` as a string of one char per byte. */
function latinAt(k: Uint8Array, p: number, n: number): string {
  let s = "";
  let i = p;
  const end = p + n;
  for (; i + 8 <= end; i += 8) {
    s += fcc(k[i]!, k[i + 1]!, k[i + 2]!, k[i + 3]!, k[i + 4]!, k[i + 5]!, k[i + 6]!, k[i + 7]!);
  }
  for (; i < end; i++) s += fcc(k[i]!);
  return s;
}

/** `n` little-endian 16-bit code units at `key[p..)` as a string. */
function wideAt(k: Uint8Array, p: number, n: number): string {
  let s = "";
  for (let i = 0; i < n; i++, p += 2) s += fcc(k[p]! | (k[p + 1]! << 8));
  return s;
}

/** A level of the index: argument value to a slot (the one entry under this prefix), or
 * to the next level (several). */
type Level = Map<unknown, unknown>;

/** SameValueZero, as `Map` compares its keys. */
function same(a: unknown, b: unknown): boolean {
  return a === b || (a !== a && b !== b);
}

/**
 * Slot numbers by the primitive arguments of a call: a `Map` per arity keyed by the first
 * argument, whose value is the slot of the one entry with that first argument, or, for
 * several, a `Map` keyed by the second, and so on (a level is made only where two keys
 * share a prefix, so that a call whose first argument is new allocates no `Map`). The key
 * of each slot (the argument itself for one, else an array of them) lives in the caller's
 * `keys` array, which {@linkcode ArgsIndex.add} fills and the lookups read.
 */
export class ArgsIndex {
  /** The first level of each arity (index 1 to `MAX_ARITY`), made on first use. */
  #roots: Array<Level | undefined> = [];
  /** The arguments of the last key {@linkcode ArgsIndex.decode} read. */
  readonly values: unknown[] = [];

  /**
   * The slot of a call's `args`, or {@linkcode NIL}. Arguments that are not primitives
   * are never keys of a level, nor in `keys`, so such a call finds nothing.
   */
  find(args: ArrayLike<unknown>, keys: unknown[]): number {
    return this.#findIn(args, args.length, keys);
  }

  #findIn(args: ArrayLike<unknown>, n: number, keys: unknown[]): number {
    let level = this.#roots[n];
    if (level === undefined) return NIL;
    for (let i = 0;; i++) {
      const e = level.get(args[i]);
      if (e === undefined) return NIL;
      if (typeof e === "number") {
        if (i === n - 1) return e;
        const key = keys[e] as unknown[];
        for (let j = i + 1; j < n; j++) if (!same(key[j], args[j])) return NIL;
        return e;
      }
      level = e as Level;
    }
  }

  /**
   * Reads the encoded key `key[0..len)` back into its arguments ({@linkcode values}):
   * their number, or -1 when the key is not one of a call of primitive arguments.
   */
  decode(key: Uint8Array, len: number): number {
    if (len < 3 || key[0] !== T_ARGS) return -1;
    const n = key[1]!;
    if (n === 0 || n > MAX_ARITY) return -1;
    const values = this.values;
    let p = 2;
    for (let i = 0; i < n; i++) {
      if (p >= len) return -1;
      const tag = key[p++]!;
      let v: unknown;
      let size = 0;
      switch (tag) {
        case T_INT32:
          size = 4;
          v = key[p]! | (key[p + 1]! << 8) | (key[p + 2]! << 16) | (key[p + 3]! << 24);
          break;
        case T_F64:
          size = 8;
          if (p + 8 > len) return -1;
          for (let j = 0; j < 8; j++) f64Bytes[LITTLE_ENDIAN ? j : 7 - j] = key[p + j]!;
          v = f64[0];
          break;
        case T_SHORT8:
        case T_SHORT16: {
          const units = key[p]!;
          size = tag === T_SHORT8 ? units : 2 * units;
          if (p + 1 + size > len) return -1;
          v = tag === T_SHORT8 ? latinAt(key, p + 1, units) : wideAt(key, p + 1, units);
          size += 1;
          break;
        }
        case T_STR8:
        case T_STR16: {
          if (p + 4 > len) return -1;
          const units =
            (key[p]! | (key[p + 1]! << 8) | (key[p + 2]! << 16) | (key[p + 3]! << 24)) >>>
            0;
          size = tag === T_STR8 ? units : 2 * units;
          if (p + 4 + size > len) return -1;
          v = tag === T_STR8 ? latinAt(key, p + 4, units) : wideAt(key, p + 4, units);
          size += 4;
          break;
        }
        case T_UNDEFINED:
          v = undefined;
          break;
        case T_NULL:
          v = null;
          break;
        case T_FALSE:
          v = false;
          break;
        case T_TRUE:
          v = true;
          break;
        default:
          return -1;
      }
      p += size;
      if (p > len) return -1;
      values[i] = v;
    }
    return p === len ? n : -1;
  }

  /** The slot of the `n` arguments last decoded, or {@linkcode NIL}. */
  findDecoded(n: number, keys: unknown[]): number {
    return this.#findIn(this.values, n, keys);
  }

  /**
   * Indexes `slot` under the `n` arguments last decoded (absent from the index), and keeps
   * their key in `keys[slot]`: the argument itself for one, else an array of them.
   */
  add(n: number, slot: number, keys: unknown[]): void {
    const values = this.values;
    keys[slot] = n === 1 ? values[0] : n === 2 ? [values[0], values[1]] : values.slice(0, n);
    let level = this.#roots[n];
    if (level === undefined) level = this.#roots[n] = new Map();
    for (let i = 0;; i++) {
      const e = level.get(values[i]);
      if (e === undefined) {
        level.set(values[i], slot);
        return;
      }
      if (typeof e === "number") {
        // The one entry under this prefix moves a level down (the keys differ further on).
        const next: Level = new Map();
        next.set((keys[e] as unknown[])[i + 1], e);
        level.set(values[i], next);
        level = next;
      } else {
        level = e as Level;
      }
    }
  }

  /** Removes the entry at `slot` (its key in `keys[slot]`), and the levels it leaves with
   * one entry or none. */
  remove(slot: number, keys: unknown[]): void {
    const key = keys[slot];
    if (!Array.isArray(key)) {
      this.#roots[1]?.delete(key);
      return;
    }
    const root = this.#roots[key.length];
    if (root !== undefined) this.#removeFrom(root, key, 0, slot);
  }

  /** Removes `slot` (key `key`) under `level` at argument `i`. */
  #removeFrom(level: Level, key: unknown[], i: number, slot: number): void {
    const e = level.get(key[i]);
    if (e === slot) {
      level.delete(key[i]);
      return;
    }
    if (e === undefined || typeof e === "number") return;
    const next = e as Level;
    this.#removeFrom(next, key, i + 1, slot);
    if (next.size === 0) {
      level.delete(key[i]);
    } else if (next.size === 1) {
      // One entry left: it moves back up when it is a slot.
      const only = next.values().next().value;
      if (typeof only === "number") level.set(key[i], only);
    }
  }

  /** The slot indexed under the key kept in `keys[slot]`, or `NIL` (for tests). */
  slotOf(slot: number, keys: unknown[]): number {
    const key = keys[slot];
    return this.find(Array.isArray(key) ? key : [key], keys);
  }

  /** Entries indexed (for tests). */
  count(): number {
    let total = 0;
    const walk = (level: Level): void => {
      for (const e of level.values()) {
        if (typeof e === "number") total++;
        else walk(e as Level);
      }
    };
    for (const root of this.#roots) if (root !== undefined) walk(root);
    return total;
  }

  /** Forgets every entry. */
  clear(): void {
    this.#roots = [];
  }
}
