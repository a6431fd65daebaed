/**
 * The keys of the TypeScript store for calls whose arguments are all primitives (numbers,
 * strings, booleans, `undefined`, `null`; one to {@linkcode MAX_ARITY} of them, no `this`):
 * such an entry is indexed by the arguments themselves (kept as they are, the argument for
 * one, an array of them for more) and a hash computed from them
 * ({@linkcode hashArgs}), in the store's one hash table. A hit then hashes a few numbers
 * (and a string's code units) and compares the arguments with `===`, where the byte index
 * encodes the key, hashes its bytes and compares them one by one in JavaScript (measured:
 * 53% of a hit of two ints, see `notes/tsengine.md`). The hashes of these entries have
 * {@linkcode ARGS_BIT} set, which a byte key's hash never has, so the two kinds never
 * compare. A call of one plain object of such values is indexed so too, by its shape and
 * its values ({@linkcode flattenObject}).
 *
 * Arguments compare by SameValueZero ({@linkcode sameArgs}), which is the key contract for
 * primitives (README, "Keys"): `1` and `"1"` differ, `0` and `-0` are one key, `NaN`
 * equals `NaN`, strings compare code unit by code unit (lone surrogates included). Entries
 * still arrive as encoded bytes (`set`, `delete`, `peek` by a held key):
 * {@linkcode ArgsDecoder.decode} reads such a key back into its arguments, so that both
 * ways reach the same entry. A key that does not decode (an object, a `bigint`, a symbol,
 * `this`, no argument or more than {@linkcode MAX_ARITY}) stays a byte key.
 *
 * The tags below mirror `src/codec/key_codec.ts` (memory and shared forms);
 * `tests/ts_store_args_test.ts` checks every decodable shape against the encoder.
 *
 * @module
 */

import {
  numberedShapeOf,
  PRIMITIVE_TAGS,
  prototypeOf,
  type Shape,
  shapeOfNumber,
} from "../codec/key_codec.ts";

/** Most arguments of a call indexed by its arguments. */
export const MAX_ARITY = 4;

/** Most keys of a plain-object argument indexed by its values. */
export const MAX_OBJECT_KEYS = 8;

/** Set in the hash of every entry indexed by its arguments (byte hashes are 30-bit). */
export const ARGS_BIT = 1 << 30;

// The key codec's tags, copied into module constants once.
const T_UNDEFINED = PRIMITIVE_TAGS.UNDEFINED;
const T_NULL = PRIMITIVE_TAGS.NULL;
const T_FALSE = PRIMITIVE_TAGS.FALSE;
const T_TRUE = PRIMITIVE_TAGS.TRUE;
const T_INT32 = PRIMITIVE_TAGS.INT32;
const T_F64 = PRIMITIVE_TAGS.F64;
const T_STR8 = PRIMITIVE_TAGS.STR8;
const T_STR16 = PRIMITIVE_TAGS.STR16;
const T_ARGS = PRIMITIVE_TAGS.ARGS;
const T_SHORT8 = PRIMITIVE_TAGS.SHORT8;
const T_SHORT16 = PRIMITIVE_TAGS.SHORT16;
const T_SHAPE = PRIMITIVE_TAGS.SHAPE;

const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

const fcc = String.fromCharCode;

/**
 * `key[p..p+n)` as a string of one char per byte. Up to 12 bytes in one call (a flat
 * string; `+=` makes cons strings, flattened again when hashed or compared). Measured for
 * 10 bytes: ~30 ns, where a `Uint8Array` copy (`slice`) costs ~400 ns (typed-array
 * allocation is slow in V8) and `TextDecoder("latin1")` (really windows-1252: injective,
 * but not one char per byte) ~390 ns.
 */
export function latinAt(k: Uint8Array, p: number, n: number): string {
  switch (n) {
    case 0:
      return "";
    case 1:
      return fcc(k[p]!);
    case 2:
      return fcc(k[p]!, k[p + 1]!);
    case 3:
      return fcc(k[p]!, k[p + 1]!, k[p + 2]!);
    case 4:
      return fcc(k[p]!, k[p + 1]!, k[p + 2]!, k[p + 3]!);
    case 5:
      return fcc(k[p]!, k[p + 1]!, k[p + 2]!, k[p + 3]!, k[p + 4]!);
    case 6:
      return fcc(k[p]!, k[p + 1]!, k[p + 2]!, k[p + 3]!, k[p + 4]!, k[p + 5]!);
    case 7:
      return fcc(k[p]!, k[p + 1]!, k[p + 2]!, k[p + 3]!, k[p + 4]!, k[p + 5]!, k[p + 6]!);
    case 8:
      return fcc(
        k[p]!,
        k[p + 1]!,
        k[p + 2]!,
        k[p + 3]!,
        k[p + 4]!,
        k[p + 5]!,
        k[p + 6]!,
        k[p + 7]!,
      );
    case 9:
      return fcc(
        k[p]!,
        k[p + 1]!,
        k[p + 2]!,
        k[p + 3]!,
        k[p + 4]!,
        k[p + 5]!,
        k[p + 6]!,
        k[p + 7]!,
        k[p + 8]!,
      );
    case 10:
      return fcc(
        k[p]!,
        k[p + 1]!,
        k[p + 2]!,
        k[p + 3]!,
        k[p + 4]!,
        k[p + 5]!,
        k[p + 6]!,
        k[p + 7]!,
        k[p + 8]!,
        k[p + 9]!,
      );
    case 11:
      return fcc(
        k[p]!,
        k[p + 1]!,
        k[p + 2]!,
        k[p + 3]!,
        k[p + 4]!,
        k[p + 5]!,
        k[p + 6]!,
        k[p + 7]!,
        k[p + 8]!,
        k[p + 9]!,
        k[p + 10]!,
      );
    case 12:
      return fcc(
        k[p]!,
        k[p + 1]!,
        k[p + 2]!,
        k[p + 3]!,
        k[p + 4]!,
        k[p + 5]!,
        k[p + 6]!,
        k[p + 7]!,
        k[p + 8]!,
        k[p + 9]!,
        k[p + 10]!,
        k[p + 11]!,
      );
  }
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

const u32 = new Uint32Array(f64.buffer);

/** Murmur3's 32-bit finaliser. */
function fmix(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/** Mixes the word `w` into the running hash `h` (Murmur3's body step). */
function step(h: number, w: number): number {
  w = Math.imul(w, 0xcc9e2d51);
  w = (w << 15) | (w >>> 17);
  h ^= Math.imul(w, 0x1b873593);
  h = (h << 13) | (h >>> 19);
  return (Math.imul(h, 5) + 0xe6546b64) | 0;
}

/**
 * The hash of a call of `n` arguments `args[0..n)` with {@linkcode ARGS_BIT} set, or -1
 * when they are not all primitives of the kinds indexed so (or `n` is out of range). Equal
 * keys (SameValueZero) hash alike: an integer hashes as its int32 (`-0` as `0`), every `NaN`
 * alike, a string by its code units.
 */
export function hashArgs(args: ArrayLike<unknown>, n: number): number {
  if (n === 0 || n > MAX_ARITY) return -1;
  let h = 0x9747b28c ^ n;
  for (let i = 0; i < n; i++) {
    const v = args[i];
    if (typeof v === "number" && (v | 0) === v) {
      // `step(h, v | 0)` written out, and the other kinds in `stepValue`: a hit's chain is
      // inlined whole only while it stays small (see `#hitArgs` in ts_store.ts).
      let w = Math.imul(v | 0, 0xcc9e2d51);
      w = (w << 15) | (w >>> 17);
      h ^= Math.imul(w, 0x1b873593);
      h = (h << 13) | (h >>> 19);
      h = (Math.imul(h, 5) + 0xe6546b64) | 0;
    } else if ((h = stepValue(h, v)) !== h) {
      return -1;
    }
  }
  return (fmix(h) & (ARGS_BIT - 1)) | ARGS_BIT;
}

/** Mixes the primitive `v` (not an int32) into `h`, or `NaN` for a value of a kind not
 * indexed by arguments. */
function stepValue(h: number, v: unknown): number {
  if (typeof v === "number") {
    if (v !== v) return step(h, 0x7ff80000);
    f64[0] = v;
    return step(step(h, u32[0]!), u32[1]! ^ 0x5bd1e995);
  }
  if (typeof v === "string") {
    const len = v.length;
    let w = step(h, len ^ 0x2f0b3c1d);
    let j = 0;
    for (; j + 1 < len; j += 2) w = step(w, v.charCodeAt(j) | (v.charCodeAt(j + 1) << 16));
    if (j < len) w = step(w, v.charCodeAt(j));
    return w;
  }
  if (v === true) return step(h, 0x3c6ef372);
  if (v === false) return step(h, 0x3c6ef373);
  if (v === undefined) return step(h, 0x3c6ef374);
  if (v === null) return step(h, 0x3c6ef375);
  return NaN;
}

// ---------------------------------------------------------------- plain-object arguments
//
// A call of one plain object whose values are all primitives of the kinds above, and whose
// key set has a shape number (the key codec's memory form, `src/codec/key_codec.ts`), is
// indexed by its values too: as the "arguments" `[shape, v1, ..., vk]`, the shape's
// token (one object per shape number) followed by the values in sorted key order. Its
// bytes (`T_ARGS 1 T_SHAPE number values`) decode to the same array, so both ways reach
// one entry; a token is never a primitive, so no call of primitives has such arguments.

/** The stand-in of a shape number in the arguments of an object's key. */
export class ShapeToken {
  constructor(readonly number: number) {}
}

const tokens: ShapeToken[] = [];

/** The token of shape `number` (one per number, for `===`). */
function tokenOf(number: number): ShapeToken {
  return tokens[number] ??= new ShapeToken(number);
}

/** The key of the last object {@linkcode flattenObject} read, from index 0. */
export const flat: unknown[] = [];
/** The shape of the last object read by `flattenNew` (at most {@linkcode MAX_OBJECT_KEYS}
 * keys): the next object's keys are compared with it first. */
let lastShape: Shape | undefined;
/** Whether {@linkcode flattenObject} is reading an object (a getter of it runs). */
let flattening = false;
const hasOwnProperty = Object.prototype.hasOwnProperty;

/**
 * Reads the plain object `o` into {@linkcode flat} as the arguments of its key
 * (`[token, ...values]`, values in sorted key order): their number, or -1 when it is not
 * indexed by its values (not a plain object, no key set number, more than
 * {@linkcode MAX_OBJECT_KEYS} keys, a value that is not a primitive of the kinds above).
 * Each value is read once, by its key; a getter calling a cached function meanwhile has
 * its own object go by bytes. A non-primitive value ends the read: the caller then encodes
 * the key, reading the values again.
 */
export function flattenObject(o: unknown): number {
  if (typeof o !== "object" || o === null || flattening || Array.isArray(o)) return -1;
  const rec = o as Record<string, unknown>;
  const proto = prototypeOf(o);
  if (proto !== Object.prototype && proto !== null) return -1;
  const last = lastShape;
  if (last === undefined) return flattenNew(o);
  const listed = last.listed;
  const rank = last.rank;
  let n = 0;
  flattening = true;
  try {
    // Keys and values in one `for-in`, compared on the way with the last shape's keys.
    // `for-in` lists inherited enumerable keys after the own ones; `hasOwnProperty` of the
    // key it gives costs nothing in V8 while no prototype has enumerable keys.
    for (const k in rec) {
      // A key past the last shape's (`listed[n]` is then `undefined`) ends it too.
      if (listed[n] !== k || !hasOwnProperty.call(rec, k)) {
        n = -1;
        break;
      }
      const v = rec[k];
      if (!isPrimitive(v)) return -1;
      flat[1 + rank[n]!] = v;
      n++;
    }
  } finally {
    flattening = false;
  }
  if (n !== listed.length) return flattenNew(o);
  flat[0] = tokenOf(last.number);
  return n + 1;
}

/** {@linkcode flattenObject} of an object of another shape than the last: its keys listed
 * first, then its values read by key. */
function flattenNew(o: object): number {
  const shape = numberedShapeOf(o);
  if (shape === undefined) return -1;
  const sorted = shape.sorted;
  const k = sorted.length;
  if (k > MAX_OBJECT_KEYS) return -1;
  lastShape = shape;
  const rec = o as Record<string, unknown>;
  flattening = true;
  try {
    for (let j = 0; j < k; j++) {
      const v = rec[sorted[j]!];
      if (!isPrimitive(v)) return -1;
      flat[j + 1] = v;
    }
  } finally {
    flattening = false;
  }
  flat[0] = tokenOf(shape.number);
  return k + 1;
}

/** Whether `v` is a primitive of a kind indexed by value (not a `bigint` or a symbol). */
function isPrimitive(v: unknown): boolean {
  const kind = typeof v;
  return kind === "object"
    ? v === null
    : kind !== "function" && kind !== "symbol" && kind !== "bigint";
}

/** {@linkcode hashArgs} of the arguments of an object's key (`[token, ...values]`, `n` of
 * them), as {@linkcode flattenObject}, {@linkcode ArgsDecoder.decode} or a store made them. */
export function hashObjectKey(key: ArrayLike<unknown>, n: number): number {
  let h = step(0x2a9d5b17 ^ n, (key[0] as ShapeToken).number);
  for (let i = 1; i < n; i++) {
    const v = key[i];
    h = typeof v === "number" && (v | 0) === v ? step(h, v | 0) : stepValue(h, v);
  }
  return (fmix(h) & (ARGS_BIT - 1)) | ARGS_BIT;
}

/** The hash of the `n` arguments `args[0..n)` of a kept or decoded key (those of a call,
 * or of an object's key). */
export function hashOfKey(args: readonly unknown[], n: number): number {
  return args[0] instanceof ShapeToken ? hashObjectKey(args, n) : hashArgs(args, n);
}

/** The plain object of the arguments of an object's key (`[token, ...values]`): its keys
 * sorted, for encoding it again (tests, inspection). */
export function objectOfKey(key: readonly unknown[]): Record<string, unknown> {
  const sorted = shapeOfNumber((key[0] as ShapeToken).number)!.sorted;
  const o: Record<string, unknown> = Object.create(null);
  for (let j = 0; j < sorted.length; j++) o[sorted[j]!] = key[j + 1];
  return o;
}

/** SameValueZero. */
export function same(a: unknown, b: unknown): boolean {
  return a === b || (a !== a && b !== b);
}

/**
 * Whether the stored `key` (as {@linkcode keyOfArgs} made it) is the key of a call of `n`
 * arguments `args[0..n)`.
 */
export function sameArgs(key: unknown, args: ArrayLike<unknown>, n: number): boolean {
  if (n === 1) return same(key, args[0]);
  if (!Array.isArray(key) || key.length !== n) return false;
  for (let i = 0; i < n; i++) if (!same(key[i], args[i])) return false;
  return true;
}

/** Whether the arrays `a` and `b` hold the same first `n` values (SameValueZero), in
 * order. */
export function sameValues(a: readonly unknown[], b: readonly unknown[], n: number): boolean {
  for (let i = 0; i < n; i++) if (!same(a[i], b[i])) return false;
  return true;
}

/** The key kept for `n` arguments `values[0..n)`: the argument itself for one, else an
 * array of them. */
export function keyOfArgs(values: readonly unknown[], n: number): unknown {
  return n === 1 ? values[0] : n === 2 ? [values[0], values[1]] : values.slice(0, n);
}

/** The arguments of a kept key (as {@linkcode keyOfArgs} made it). */
export function argsOfKey(key: unknown): unknown[] {
  return Array.isArray(key) ? key : [key];
}

/** Reads encoded keys back into their arguments. */
export class ArgsDecoder {
  /** The arguments of the last key {@linkcode ArgsDecoder.decode} read. */
  readonly values: unknown[] = [];

  /**
   * Reads the encoded key `key[0..len)` back into its arguments ({@linkcode ArgsDecoder.values}):
   * their number, or -1 when the key is not one of a call of primitive arguments or of one
   * plain object of primitive values (`[token, ...values]`; its shape number is read in the
   * process's shape table, which every cache's key writer uses).
   */
  decode(key: Uint8Array, len: number): number {
    if (len < 3 || key[0] !== T_ARGS) return -1;
    const n = key[1]!;
    if (n === 0 || n > MAX_ARITY) return -1;
    const values = this.values;
    if (n === 1 && key[2] === T_SHAPE) {
      // One plain object of a numbered shape: `[token, ...values]` (see `flattenObject`).
      if (len < 5) return -1;
      const number = key[3]! | (key[4]! << 8);
      const shape = shapeOfNumber(number);
      const k = shape === undefined ? 0 : shape.sorted.length;
      if (k === 0 || k > MAX_OBJECT_KEYS) return -1;
      values[0] = tokenOf(number);
      let p = 5;
      for (let i = 1; i <= k && p >= 0; i++) p = this.#value(key, p, len, i);
      return p === len ? k + 1 : -1;
    }
    let p = 2;
    for (let i = 0; i < n && p >= 0; i++) p = this.#value(key, p, len, i);
    return p === len ? n : -1;
  }

  /** Reads the primitive at `key[p..)` into `values[i]`: where it ends, or -1 when it is
   * not one (or runs past `len`). */
  #value(key: Uint8Array, p: number, len: number, i: number): number {
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
        const units = (key[p]! | (key[p + 1]! << 8) | (key[p + 2]! << 16) | (key[p + 3]! << 24)) >>>
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
    this.values[i] = v;
    return p;
  }
}
