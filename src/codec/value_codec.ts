/**
 * The value codec of the shared backend (and of the remote tier, which stores the same
 * bytes): turns a cached value into bytes that any process can read back, and back into a
 * fresh copy.
 *
 * ## Encoded format
 *
 * Byte 0 is the tag; its high bit ({@linkcode PROMISED_FLAG}, `0x80`) says that the value
 * was the resolution of a Promise. The rest of the bytes depend on the low 7 bits:
 *
 * | tag | value | payload after the tag byte |
 * |---:|---|---|
 * | 0 | `undefined` | none |
 * | 1 | `null` | none |
 * | 2 | `false` | none |
 * | 3 | `true` | none |
 * | 4 | number | 8 bytes, IEEE 754 f64, little-endian (keeps `-0` and `NaN`) |
 * | 5 | string, every code unit < 256 | 1 byte per code unit (Latin-1) |
 * | 6 | string, well formed (no lone surrogate) | UTF-8 (`TextEncoder`, lossless here) |
 * | 7 | string with a lone surrogate | UTF-16 code units, 2 bytes each, little-endian |
 * | 8 | `Uint8Array` | the bytes |
 * | 9 | flat array of the values of tags 0–8 (read only: written by earlier versions) | u32 LE count, then per element its tag byte and payload; tags 5–8 carry a u32 LE byte length before their payload |
 * | 10 | anything else (read only: written by earlier versions) | UTF-8 text of `devalue.stringify(value)` |
 * | 11 | a small JSON-exact plain object or array (read only: written by earlier versions) | UTF-8 text of `JSON.stringify(value)` |
 * | 12 | a reference to a large value kept in a file (`largeValues: "file"`) | f64 LE size of the file, then its 32-byte SHA-256 (the file name); read by `_large_values.ts`, never by {@linkcode decodeValue} |
 * | 13 | any other value: arrays, objects, `Map`, `Set`, `bigint`... | one item of the binary item codec (below) |
 *
 * Tags are appended, never renumbered. A reader that does not know a tag (an older
 * version of this module on the same file) drops the entry and reports a miss; entries
 * written with tags 9–11 by earlier versions still decode as they did, so a file or a
 * remote tier shared during an upgrade loses nothing but the entries that the older
 * version cannot read (tag 13).
 *
 * A top-level string takes tag 5 when it has at most {@linkcode SHORT_STRING} code units
 * and all are < 256 (a JS loop beats the native encoder below that length), else tag 6
 * when it is well formed, else tag 7. `TextEncoder` would turn a lone surrogate into
 * U+FFFD, so `"\ud800"` and `"\ufffd"` would collide: tag 7 exists for them. The decoder
 * keeps a leading U+FEFF (`ignoreBOM: true`).
 *
 * ## Tag 13: the binary item codec
 *
 * A value is one item: a code byte, then its payload. Counts are LEB128 (7 bits a byte,
 * low first) unless said otherwise; numbers and string lengths are little-endian.
 *
 * | code | item | payload |
 * |---:|---|---|
 * | 0x00–0x03 | `undefined`, `null`, `false`, `true` | none |
 * | 0x80–0xFF | the integer `code - 0x80` (0 to 127) | none |
 * | 0x04 | any other int32 (not `-0`) | 4 bytes, two's complement |
 * | 0x05 | any other number (`-0`, `NaN`, `±Infinity` included) | f64 |
 * | 0x06 | string of at most 255 code units, all < 256 | 1-byte count, 1 byte a unit |
 * | 0x07 | other well-formed string | u32 byte count, UTF-8 |
 * | 0x08 | string with a lone surrogate | u32 unit count, 2 bytes a unit |
 * | 0x09 | array without holes | count, then the elements |
 * | 0x0A | array with holes | length, then the elements, a run of holes being `0x0B` and its count |
 * | 0x0C / 0x0E | object (prototype `Object.prototype` / `null`) of a new shape | key count, byte count of the names, the names (string items), then the values |
 * | 0x0D / 0x0F | object of a shape defined earlier in this value | shape index, then the values |
 * | 0x10 | an object met earlier in this value (cycles, shared references) | its index, in order of first appearance |
 * | 0x11 | `Map` | size, then key and value items |
 * | 0x12 | `Set` | size, then the items |
 * | 0x13 | `Date` | f64 time (`NaN` for an invalid date) |
 * | 0x14 | `RegExp` | source and flags (string items) |
 * | 0x15 | `bigint` | sign byte (1: negative), then the magnitude in hex (string item) |
 * | 0x16 | boxed primitive (`new Number(1)`...) | the primitive's item |
 * | 0x17 / 0x18 | `URL` / `URLSearchParams` | its text (string item) |
 * | 0x19 | `ArrayBuffer` | byte count, bytes |
 * | 0x1A | typed array | kind byte (`Int8Array` 0 ... `BigUint64Array` 10, `Float16Array` 11), byte count, bytes |
 * | 0x1B | `DataView` | byte count, bytes |
 * | 0x1C | Temporal value | kind byte (`Duration` 0 ... `ZonedDateTime` 7), its text (string item) |
 *
 * Objects (every item from 0x09 on, but for 0x0B, 0x10 and 0x15) are numbered in the
 * order they first appear, which 0x10 refers to: cycles and shared references come back as
 * they were.
 * An object's keys are written once per shape and value (0x0C), then referred to (0x0D):
 * an array of records costs its names once. Integers of 0 to 127 take one byte.
 *
 * ## Why this codec (measured here)
 *
 * Deno 2.9.6, x86_64, 2 cores (shared with other work, so noisy): see `notes/codecs.md` and
 * `bench/value_codec_bench.ts` for the figures. On the shared benches' row `{ id, name,
 * active, score, tags: ["a", "b"] }` the earlier codec (`JSON.stringify` + `TextEncoder`
 * for such JSON-exact trees, devalue for the rest) spent about 75% of a shared hit in
 * `JSON.parse` and `TextDecoder`; this one decodes the row without either (short strings
 * are built with `String.fromCharCode`, key names come from a cache of shapes). The
 * maintained serializers measured before were slower than the JSON path on small objects
 * (`@msgpack/msgpack` 2.6 µs, `node:v8` 7.3 µs, devalue 3.3 µs, `cbor2` 57 µs a round
 * trip) or lose types (`@msgpack/msgpack` loses `Map`, `Set`, `-0`, `undefined`
 * properties, holes; `node:v8` turns null-prototype objects and class instances into plain
 * objects), so the codec is the cache's own code; it keeps exactly what devalue kept.
 *
 * ## Choices
 * - Class instances (anything whose prototype is not `Object.prototype`, `null` or a
 *   built-in data type) throw `TypeError`: a copy without its prototype would look right
 *   and then lack its methods, which is worse than a clear error. `Error` objects are class
 *   instances in that sense and throw too.
 * - Subclasses of `Uint8Array` (such as Node's `Buffer`) and of the other typed arrays
 *   come back as the base typed array, and array subclasses as plain arrays.
 * - A typed array or `DataView` stores the bytes it views, and comes back over a buffer of
 *   its own holding just those (devalue stored the whole underlying buffer: two views of one
 *   buffer came back sharing it, and a small view of a large buffer stored all of it).
 * - Cyclic and shared references are kept.
 * - Non-enumerable properties, array properties that are not indices and extra properties
 *   of `Map`, `Set`, `Date` and typed arrays are not kept; getters are called once and
 *   their results stored. An own `__proto__` key (as `JSON.parse` makes) is kept as an own
 *   property.
 *
 * @module
 */

import { parse } from "npm:devalue@^6.0.3";

/** Bit of the first byte set when the value was the resolution of a Promise. */
export const PROMISED_FLAG = 0x80;

/** Longest string that the Latin-1 loop encodes; longer ones use `TextEncoder`. */
export const SHORT_STRING = 24;

const T_UNDEFINED = 0;
const T_NULL = 1;
const T_FALSE = 2;
const T_TRUE = 3;
const T_NUMBER = 4;
const T_LATIN1 = 5;
const T_UTF8 = 6;
const T_UTF16 = 7;
const T_BYTES = 8;
const T_ARRAY = 9;
const T_STRUCTURED = 10;
const T_JSON = 11;
/** Tag of the binary item codec (see "Tag 13" in the module doc). */
const T_BINARY = 13;
/** Tag of a reference to a large value in a file (see {@linkcode encodeFileRef}). */
export const T_FILE_REF = 12;
const TAG_MASK = 0x7f;
/** Bytes of an encoded file reference: tag, f64 size, SHA-256. */
export const FILE_REF_BYTES = 1 + 8 + 32;

/** The module buffer grows up to this size; a larger value gets a buffer of its own. */
const MAX_RETAINED = 1 << 20;

const encoder = new TextEncoder();
const decoder = new TextDecoder("utf-8", { ignoreBOM: true });

// Numbers travel through this scratch pair: no DataView allocation per call.
const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

let shared = new Uint8Array(1024);
/** Views `shared.subarray(0, n)` by `n` (at most {@linkcode MAX_VIEW}), each made once per
 * buffer (`reserve` drops them when it replaces `shared`): a new view is an allocation that
 * cost about a tenth of encoding a small record (bench/value_codec_bench.ts). Whoever holds
 * one sees the next encode's bytes, as before. */
let views: Uint8Array[] = [];
const MAX_VIEW = 512;

/** The first `n` bytes of `shared`, as a view made once per length. */
function sharedView(n: number): Uint8Array {
  if (n > MAX_VIEW) return shared.subarray(0, n);
  return views[n] ??= shared.subarray(0, n);
}

/** Buffer being written: `shared`, or a private one (large value, reentrant call). */
let out = shared;
/** Write position in `out`. */
let pos = 0;
/** True while an encode runs, so that a reentrant call does not clobber `shared`. */
let busy = false;

/**
 * Encodes `value` for the shared store.
 *
 * The result is a view of a module buffer that is reused: it is valid only until the next
 * call of `encodeValue`, so copy it (or finish writing it to the store) first. A value
 * larger than 1 MiB, or a call made while another one runs (a getter of the value that
 * calls a cached function), gets a buffer of its own.
 *
 * @param value The value to encode: see the module doc for what is supported.
 * @param promised Whether `value` is the resolution of a Promise, so that a hit must
 * return a Promise again; read back with {@linkcode isPromised}. Defaults to `false`.
 * @returns The encoded bytes, valid until the next call.
 * @throws {TypeError} If `value` holds something that cannot be stored: a function, a
 * symbol, a Promise, a `WeakMap`/`WeakSet`/`WeakRef`, a class instance, an object with
 * symbol keys, or a structure nested too deeply. (An own `__proto__` key, as `JSON.parse`
 * makes, is kept as an own property.) The message names the type and where it was found,
 * e.g. `Cannot serialize value: unsupported WeakMap at value.cache`.
 *
 * @example Round trip
 * ```ts
 * import { decodeValue, encodeValue, isPromised } from "./value_codec.ts";
 * import assert from "node:assert/strict";
 *
 * const bytes = encodeValue(new Map([["a", [1, 2]]]), true);
 * assert.equal(isPromised(bytes), true);
 * assert.deepEqual(decodeValue(bytes), new Map([["a", [1, 2]]]));
 * ```
 */
export function encodeValue(value: unknown, promised = false): Uint8Array {
  if (busy) return encodeReentrant(value, promised);
  if (
    onceDepth > 0 && onceBytes !== undefined && value === onceValue && promised === oncePromised
  ) {
    return onceBytes;
  }
  busy = true;
  try {
    out = shared;
    pos = 0;
    encodeTop(value);
    if (promised) out[0] = out[0]! | PROMISED_FLAG;
    const bytes = out === shared ? sharedView(pos) : out.subarray(0, pos);
    if (onceDepth > 0) {
      onceValue = value;
      oncePromised = promised;
      onceBytes = bytes;
    }
    return bytes;
  } finally {
    busy = false;
  }
}

/** Within {@linkcode encodeOnce}: the last value encoded, its flag and its bytes. */
let onceDepth = 0;
let onceValue: unknown = undefined;
let oncePromised = false;
let onceBytes: Uint8Array | undefined = undefined;

/**
 * Runs `fn`, during which encoding the same value (the same object, or an equal primitive,
 * with the same `promised` flag) twice in a row gives the first encoding's bytes without
 * encoding again: one value written to two tiers (a shared file and a remote tier) is
 * encoded once. Nothing is remembered after `fn` returns.
 *
 * @returns What `fn` returns.
 */
export function encodeOnce<T>(fn: () => T): T {
  onceDepth++;
  try {
    return fn();
  } finally {
    if (--onceDepth === 0) {
      onceValue = undefined;
      onceBytes = undefined;
    }
  }
}

/**
 * Decodes bytes made by {@linkcode encodeValue} into a fresh value: nothing in the result
 * aliases `bytes`, which may be reused afterwards.
 *
 * @param bytes The encoded bytes, exactly as `encodeValue` returned them.
 * @returns A new copy of the encoded value (the promised flag is ignored: see
 * {@linkcode isPromised}).
 * @throws {RangeError} If `bytes` is empty, truncated, has an unknown tag or an invalid
 * structured payload (corrupt bytes).
 *
 * @example Decoding gives a copy
 * ```ts
 * import { decodeValue, encodeValue } from "./value_codec.ts";
 * import assert from "node:assert/strict";
 *
 * const original = { list: [1, 2] };
 * const copy = decodeValue(encodeValue(original)) as typeof original;
 * copy.list.push(3);
 * assert.deepEqual(original, { list: [1, 2] });
 * ```
 */
export function decodeValue(bytes: Uint8Array): unknown {
  return decodeValueIn(bytes, bytes.length);
}

/**
 * {@linkcode decodeValue} of the first `len` bytes of `buf`, without making a subarray of
 * them: a shared-cache hit decodes from one reused output buffer, and the subarray alone
 * cost about a tenth of a hit.
 *
 * @param buf The buffer holding the encoded bytes from offset 0.
 * @param len Number of encoded bytes.
 * @param view A `DataView` over the whole of `buf`'s bytes (offset 0), kept by the caller:
 * numbers are then read through it instead of byte by byte.
 * @returns The decoded value (a fresh copy).
 * @throws {RangeError} If the bytes are not a valid encoding.
 */
export function decodeValueIn(buf: Uint8Array, len: number, view?: DataView): unknown {
  if (len === 0) throw new RangeError("Cannot decode value: no bytes");
  const tag = buf[0]! & TAG_MASK;
  switch (tag) {
    case T_UNDEFINED:
      return undefined;
    case T_NULL:
      return null;
    case T_FALSE:
      return false;
    case T_TRUE:
      return true;
    case T_NUMBER:
      if (len !== 9) break;
      return view === undefined ? readF64(buf, 1) : view.getFloat64(1, true);
    case T_LATIN1:
      return readLatin1(buf, 1, len);
    case T_UTF8:
      return decoder.decode(buf.subarray(1, len));
    case T_UTF16:
      if ((len & 1) === 0) break;
      return readUtf16(buf, 1, len);
    case T_BYTES:
      return buf.slice(1, len);
    case T_ARRAY:
      return readArray(buf, len);
    case T_STRUCTURED:
      return readStructured(buf, len);
    case T_JSON:
      return readJson(buf, len);
    case T_BINARY:
      return readBinary(buf, len, view);
  }
  throw new RangeError(`Cannot decode value: invalid encoding (tag ${tag}, ${len} bytes)`);
}

/**
 * Tells whether the bytes were encoded with `promised = true` by
 * {@linkcode encodeValue}, i.e. whether a cache hit must return a Promise.
 *
 * @param bytes The encoded bytes (at least the first one).
 * @returns `true` if the promised flag is set; `false` for empty `bytes`.
 *
 * @example Checking the flag
 * ```ts
 * import { encodeValue, isPromised } from "./value_codec.ts";
 * import assert from "node:assert/strict";
 *
 * assert.equal(isPromised(encodeValue(1, true)), true);
 * assert.equal(isPromised(encodeValue(1)), false);
 * ```
 */
export function isPromised(bytes: Uint8Array): boolean {
  return ((bytes[0] ?? 0) & PROMISED_FLAG) !== 0;
}

// ---------------------------------------------------------------------------- encoding

function encodeReentrant(value: unknown, promised: boolean): Uint8Array {
  const savedOut = out;
  const savedPos = pos;
  const savedWalk = [seenList, seenMap, seenCount, usedShapes, refsWritten, shapesWritten] as const;
  try {
    out = new Uint8Array(256);
    pos = 0;
    encodeTop(value);
    if (promised) out[0] = out[0]! | PROMISED_FLAG;
    return out.subarray(0, pos);
  } finally {
    out = savedOut;
    pos = savedPos;
    [seenList, seenMap, seenCount, usedShapes, refsWritten, shapesWritten] = savedWalk;
  }
}

/** Makes room for `n` more bytes at `pos`, keeping what is written. */
function reserve(n: number): void {
  const need = pos + n;
  if (need <= out.length) return;
  let size = out.length * 2;
  while (size < need) size *= 2;
  const next = new Uint8Array(size);
  next.set(out.subarray(0, pos));
  if (out === shared && size <= MAX_RETAINED) {
    shared = next;
    views = [];
  }
  out = next;
}

function encodeTop(value: unknown): void {
  reserve(9);
  switch (typeof value) {
    case "undefined":
      out[pos++] = T_UNDEFINED;
      return;
    case "boolean":
      out[pos++] = value ? T_TRUE : T_FALSE;
      return;
    case "number":
      out[pos++] = T_NUMBER;
      writeF64(value);
      return;
    case "string":
      writeString(value);
      return;
    case "object":
      if (value === null) {
        out[pos++] = T_NULL;
        return;
      }
      if (Object.getPrototypeOf(value) === Uint8Array.prototype) {
        const bytes = value as Uint8Array;
        out[pos++] = T_BYTES;
        reserve(bytes.length);
        out.set(bytes, pos);
        pos += bytes.length;
        return;
      }
  }
  writeBinary(value);
}

function writeF64(value: number): void {
  f64[0] = value;
  if (LITTLE_ENDIAN) {
    for (let i = 0; i < 8; i++) out[pos++] = f64Bytes[i]!;
  } else {
    for (let i = 7; i >= 0; i--) out[pos++] = f64Bytes[i]!;
  }
}

/** Writes a top-level string: its tag, then its code units. See the module doc for which
 * tag a string takes. */
function writeString(s: string): void {
  const n = s.length;
  const start = pos;
  if (n <= SHORT_STRING) {
    reserve(1 + n);
    let p = start + 1;
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 0xff) break;
      out[p++] = c;
    }
    if (i === n) {
      out[start] = T_LATIN1;
      pos = p;
      return;
    }
  }
  if (s.isWellFormed()) {
    reserve(1 + 3 * n);
    const { written } = encoder.encodeInto(s, out.subarray(start + 1));
    out[start] = T_UTF8;
    pos = start + 1 + written;
    return;
  }
  reserve(1 + 2 * n);
  out[start] = T_UTF16;
  let p = start + 1;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    out[p++] = c & 0xff;
    out[p++] = c >>> 8;
  }
  pos = p;
}

// ---------------------------------------------------------------------------- decoding

function readF64(bytes: Uint8Array, at: number): number {
  if (LITTLE_ENDIAN) {
    for (let i = 0; i < 8; i++) f64Bytes[i] = bytes[at + i]!;
  } else {
    for (let i = 0; i < 8; i++) f64Bytes[7 - i] = bytes[at + i]!;
  }
  return f64[0]!;
}

/** Code units per `String.fromCharCode` call (arguments go on the stack). */
const CHUNK = 4096;

/** `String.fromCharCode` over a typed array: `apply` is 8× faster than a spread here. */
function fromCodes(codes: Uint8Array | Uint16Array): string {
  return String.fromCharCode.apply(null, codes as unknown as number[]);
}

function readLatin1(bytes: Uint8Array, from: number, to: number): string {
  if (to - from <= SHORT_STRING) {
    let s = "";
    for (let i = from; i < to; i++) s += String.fromCharCode(bytes[i]!);
    return s;
  }
  // Only reached for hand-made input: the encoder writes Latin-1 for short strings only.
  let s = "";
  for (let i = from; i < to; i += CHUNK) {
    s += fromCodes(bytes.subarray(i, Math.min(i + CHUNK, to)));
  }
  return s;
}

function readUtf16(bytes: Uint8Array, from: number, to: number): string {
  const count = (to - from) >>> 1;
  const units = new Uint16Array(Math.min(count, CHUNK));
  let s = "";
  let i = from;
  for (let done = 0; done < count;) {
    const n = Math.min(count - done, CHUNK);
    for (let k = 0; k < n; k++, i += 2) units[k] = bytes[i]! | (bytes[i + 1]! << 8);
    s += fromCodes(units.subarray(0, n));
    done += n;
  }
  return s;
}

/**
 * Earlier versions wrote objects with an own `__proto__` key under this devalue reducer's
 * name (tag 10): they are rebuilt with `defineProperty`, so the key stays an own property
 * and never sets a prototype.
 */
const PROTO_KEYED = "warp:protoKeyed";
const REVIVERS = {
  [PROTO_KEYED]: (entries: Array<[string, unknown]>): Record<string, unknown> => {
    const o: Record<string, unknown> = {};
    for (const [k, v] of entries) {
      Object.defineProperty(o, k, {
        value: v,
        writable: true,
        enumerable: true,
        configurable: true,
      });
    }
    return o;
  },
};

const fcc = String.fromCharCode;

function readStructured(bytes: Uint8Array, len: number): unknown {
  try {
    return parse(decoder.decode(bytes.subarray(1, len)), REVIVERS);
  } catch (e) {
    // JSON.parse's SyntaxError or devalue's "Invalid input": corrupt bytes.
    throw new RangeError("Cannot decode value: invalid structured payload", { cause: e });
  }
}

function readJson(bytes: Uint8Array, len: number): unknown {
  let value: unknown;
  try {
    value = JSON.parse(decoder.decode(bytes.subarray(1, len)));
  } catch (e) {
    throw new RangeError("Cannot decode value: invalid JSON payload", { cause: e });
  }
  if (typeof value !== "object" || value === null) {
    throw new RangeError("Cannot decode value: a JSON payload that is not an object or array");
  }
  return value;
}

function readU32(bytes: Uint8Array, at: number): number {
  return (bytes[at]! | (bytes[at + 1]! << 8) | (bytes[at + 2]! << 16)) +
    bytes[at + 3]! * 0x1000000;
}

function readArray(bytes: Uint8Array, len: number): unknown[] {
  const truncated = (): never => {
    throw new RangeError(`Cannot decode value: truncated array (${len} bytes)`);
  };
  if (len < 5) truncated();
  const n = readU32(bytes, 1);
  if (n > len - 5) truncated(); // each element takes at least one byte
  const array: unknown[] = new Array(n);
  let p = 5;
  for (let i = 0; i < n; i++) {
    if (p >= len) truncated();
    const tag = bytes[p++]!;
    switch (tag) {
      case T_UNDEFINED:
        array[i] = undefined;
        continue;
      case T_NULL:
        array[i] = null;
        continue;
      case T_FALSE:
        array[i] = false;
        continue;
      case T_TRUE:
        array[i] = true;
        continue;
      case T_NUMBER:
        if (p + 8 > len) truncated();
        array[i] = readF64(bytes, p);
        p += 8;
        continue;
    }
    if (p + 4 > len) truncated();
    const size = readU32(bytes, p);
    const end = p + 4 + size;
    if (end > len) truncated();
    p += 4;
    switch (tag) {
      case T_LATIN1:
        array[i] = readLatin1(bytes, p, end);
        break;
      case T_UTF8:
        array[i] = decoder.decode(bytes.subarray(p, end));
        break;
      case T_UTF16:
        if ((size & 1) !== 0) truncated();
        array[i] = readUtf16(bytes, p, end);
        break;
      case T_BYTES:
        array[i] = bytes.slice(p, end);
        break;
      default:
        throw new RangeError(`Cannot decode value: invalid array element tag ${tag}`);
    }
    p = end;
  }
  return array;
}

// ------------------------------------------------------------ the binary item codec
//
// Tag 13: one item, written by `item` and read by `readItem` (see "Tag 13" in the module
// doc for the item codes). Numbering is part of the shared file format: append, never
// renumber.

const I_UNDEFINED = 0x00;
const I_NULL = 0x01;
const I_FALSE = 0x02;
const I_TRUE = 0x03;
const I_INT32 = 0x04;
const I_F64 = 0x05;
const I_STR8 = 0x06;
const I_UTF8 = 0x07;
const I_UTF16 = 0x08;
const I_ARRAY = 0x09;
const I_HOLEY = 0x0a;
const I_HOLES = 0x0b;
const I_OBJECT = 0x0c;
const I_OBJECT_AGAIN = 0x0d;
const I_NULL_OBJECT = 0x0e;
const I_NULL_OBJECT_AGAIN = 0x0f;
const I_REF = 0x10;
const I_MAP = 0x11;
const I_SET = 0x12;
const I_DATE = 0x13;
const I_REGEXP = 0x14;
const I_BIGINT = 0x15;
const I_BOXED = 0x16;
const I_URL = 0x17;
const I_URL_SEARCH_PARAMS = 0x18;
const I_ARRAY_BUFFER = 0x19;
const I_TYPED = 0x1a;
const I_DATA_VIEW = 0x1b;
const I_TEMPORAL = 0x1c;
/** Item codes from here up are the integers 0..127 themselves (`code - I_FIXINT`). */
const I_FIXINT = 0x80;

/** Flags (byte 1 of tag 13): the value has `I_REF` items; it has `I_OBJECT_AGAIN` items.
 * Without them the decoder records neither its objects nor its shapes. */
const F_REFS = 1;
const F_SHAPES = 2;

/** Typed array constructors by their kind byte (`I_TYPED`); Float16Array where it exists. */
type TypedArrayConstructor = new (buffer: ArrayBuffer) => ArrayBufferView;
const TYPED_ARRAYS: Array<[string, TypedArrayConstructor | undefined]> = [
  ["Int8Array", Int8Array],
  ["Uint8Array", Uint8Array],
  ["Uint8ClampedArray", Uint8ClampedArray],
  ["Int16Array", Int16Array],
  ["Uint16Array", Uint16Array],
  ["Int32Array", Int32Array],
  ["Uint32Array", Uint32Array],
  ["Float32Array", Float32Array],
  ["Float64Array", Float64Array],
  ["BigInt64Array", BigInt64Array],
  ["BigUint64Array", BigUint64Array],
  [
    "Float16Array",
    (globalThis as { Float16Array?: TypedArrayConstructor }).Float16Array,
  ],
];
const TYPED_KIND = new Map<string, number>(TYPED_ARRAYS.map(([name], i) => [name, i]));
/** `%TypedArray%.prototype[@@toStringTag]`: the kind of any typed array, subclasses too. */
const typedArrayName = Object.getOwnPropertyDescriptor(
  Object.getPrototypeOf(Uint8Array.prototype),
  Symbol.toStringTag,
)!.get!;

/** The Temporal classes by their kind byte (`I_TEMPORAL`), where Temporal exists. */
const TEMPORAL_NAMES = [
  "Duration",
  "Instant",
  "PlainDate",
  "PlainTime",
  "PlainDateTime",
  "PlainMonthDay",
  "PlainYearMonth",
  "ZonedDateTime",
] as const;
type TemporalClass = { prototype: object; from(text: string): unknown };
const temporal = (globalThis as unknown as { Temporal?: Record<string, TemporalClass> })
  .Temporal;
const TEMPORAL_CLASSES: Array<TemporalClass | undefined> = TEMPORAL_NAMES.map((n) => temporal?.[n]);

const OBJECT_PROTO_NAMES = Object.getOwnPropertyNames(Object.prototype).sort().join("\0");

/**
 * Whether `o` (not an array) is stored as a plain object: prototype `Object.prototype` or
 * `null`, or a prototype that is itself a root (as another realm's `Object.prototype`), as
 * devalue decided it (so that what was stored before is stored alike).
 */
function isPlainProto(proto: object | null): boolean {
  if (proto === Object.prototype || proto === null) return true;
  return Object.getPrototypeOf(proto) === null ||
    Object.getOwnPropertyNames(proto).sort().join("\0") === OBJECT_PROTO_NAMES;
}

/** A value that cannot be stored, found at `path` (segments as devalue wrote them). */
class Unsupported extends Error {
  readonly path: string[] = [];
  constructor(readonly what: string) {
    super(what);
  }
}

const IDENTIFIER = /^[a-zA-Z_$][a-zA-Z_$0-9]*$/;

/** The path segment of property `key`: `.key`, or `["key"]`. */
function keySegment(key: string): string {
  return IDENTIFIER.test(key) ? `.${key}` : `[${JSON.stringify(key)}]`;
}

/** The path segment of the value of Map key `key`: `.get(key)` (`...` for an object). */
function mapSegment(key: unknown): string {
  if (typeof key === "string") return `.get(${JSON.stringify(key)})`;
  if (typeof key === "bigint") return `.get(${key}n)`;
  if (typeof key === "object" && key !== null || typeof key === "function") return ".get(...)";
  if (typeof key === "symbol") return ".get(...)";
  return `.get(${Object.is(key, -0) ? "-0" : String(key)})`;
}

/** Names an unsupported object for an error message. */
function describeObject(thing: object): string {
  let then: unknown;
  try {
    then = (thing as { then?: unknown }).then;
  } catch {
    then = undefined;
  }
  if (typeof then === "function") return "Promise or thenable";
  let ctor: unknown;
  try {
    ctor = Object.getPrototypeOf(thing)?.constructor;
  } catch {
    ctor = undefined;
  }
  const name = typeof ctor === "function" ? ctor.name : "";
  if (name !== "" && name !== "Object") {
    // A global built-in such as WeakMap is named as is; anything else is a class.
    const builtin = (globalThis as Record<string, unknown>)[name] === ctor;
    return builtin ? name : `class instance (${name})`;
  }
  const tag = Object.prototype.toString.call(thing).slice(8, -1);
  return tag === "Object" ? "object with a custom prototype" : tag;
}

// ---- encoder state (per encode; saved and restored around a nested encode)

/** Containers written so far, by first appearance: their index is what `I_REF` names. */
let seenList: object[] = [];
/** The same, as a Map once there are more than `SEEN_LIST_MAX`. */
let seenMap: Map<object, number> | undefined;
let seenCount = 0;
const SEEN_LIST_MAX = 16;
/** Shapes defined in this encode, by their index (what `I_OBJECT_AGAIN` names). */
let usedShapes: EncodeShape[] = [];
/** Shapes looked up among `usedShapes` at most (past it, a shape is defined again). */
const USED_SHAPES_MAX = 64;

/**
 * The index of container `o` if it was written already in this encode, else -1 (and it is
 * recorded as the next one).
 */
function seenIndex(o: object): number {
  if (seenMap === undefined) {
    const i = seenList.indexOf(o);
    if (i >= 0) return i;
    seenList.push(o);
    if (seenList.length > SEEN_LIST_MAX) {
      seenMap = new Map();
      for (let j = 0; j < seenList.length; j++) seenMap.set(seenList[j]!, j);
    }
    seenCount++;
    return -1;
  }
  const i = seenMap.get(o);
  if (i !== undefined) return i;
  seenMap.set(o, seenCount++);
  return -1;
}

/** Whether an `I_REF` / `I_OBJECT_AGAIN` item was written (flags `F_REFS`, `F_SHAPES`). */
let refsWritten = false;
let shapesWritten = false;

/** Resets the per-encode state (and drops its references to the value). */
function resetWalk(): void {
  seenList = [];
  seenMap = undefined;
  seenCount = 0;
  usedShapes = [];
  refsWritten = false;
  shapesWritten = false;
}

/** An object shape as the encoder writes it: its listed keys and their name items. */
interface EncodeShape {
  readonly listed: readonly string[];
  /** The name items, one after the other. */
  readonly names: Uint8Array;
}

/** Encoder shapes by first listed key: at most `SHAPES_MAX`, then it starts over. */
let encodeShapes = new Map<string, EncodeShape[]>();
let encodeShapeCount = 0;
let lastEncodeShape: EncodeShape | undefined;
const SHAPES_MAX = 256;

function sameKeys(keys: string[], listed: readonly string[]): boolean {
  const n = keys.length;
  if (n !== listed.length) return false;
  for (let i = 0; i < n; i++) if (keys[i] !== listed[i]) return false;
  return true;
}

/** The encoder shape of listed keys `keys` (at least one). */
function encodeShapeOf(keys: string[]): EncodeShape {
  const last = lastEncodeShape;
  if (last !== undefined && sameKeys(keys, last.listed)) return last;
  let list = encodeShapes.get(keys[0]!);
  if (list !== undefined) {
    for (let i = 0; i < list.length; i++) {
      if (sameKeys(keys, list[i]!.listed)) return (lastEncodeShape = list[i]!);
    }
  }
  // The names' items are written by the item writer itself, into a buffer of their own.
  const savedOut = out;
  const savedPos = pos;
  out = new Uint8Array(64);
  pos = 0;
  try {
    for (const k of keys) writeStringItem(k);
    const shape = { listed: keys.slice(), names: out.slice(0, pos) };
    if (encodeShapeCount >= SHAPES_MAX) {
      encodeShapes = new Map();
      encodeShapeCount = 0;
      list = undefined;
    }
    if (list === undefined) encodeShapes.set(keys[0]!, list = []);
    list.push(shape);
    encodeShapeCount++;
    return (lastEncodeShape = shape);
  } finally {
    out = savedOut;
    pos = savedPos;
  }
}

// ---- item writers

function writeU32At(at: number, n: number): void {
  out[at] = n;
  out[at + 1] = n >>> 8;
  out[at + 2] = n >>> 16;
  out[at + 3] = n >>> 24;
}

/** Writes `n` (0 ≤ n < 2^32) as LEB128: 7 bits a byte, low first. */
function writeVarUint(n: number): void {
  reserve(5);
  while (n > 0x7f) {
    out[pos++] = (n & 0x7f) | 0x80;
    n >>>= 7;
  }
  out[pos++] = n;
}

function writeCode(code: number, count: number): void {
  reserve(6);
  out[pos++] = code;
  writeVarUint(count);
}

function writeNumberItem(v: number): void {
  reserve(9);
  if ((v | 0) === v && (v !== 0 || 1 / v > 0)) {
    if (v >= 0 && v < 128) {
      out[pos++] = I_FIXINT + v;
      return;
    }
    const p = pos;
    out[p] = I_INT32;
    writeU32At(p + 1, v);
    pos = p + 5;
    return;
  }
  out[pos++] = I_F64;
  writeF64(v);
}

/** Longest string written as a one-byte item (count in one byte). */
const STR8_MAX = 255;
/** Longest string that the JavaScript UTF-8 loops handle; longer ones use the native codec. */
const JS_UTF8_MAX = 64;

/**
 * Writes a string item: `I_STR8` when it has at most 255 code units, all below 256; else
 * `I_UTF8` when it is well formed (UTF-8 is lossless there); else `I_UTF16`.
 */
function writeStringItem(s: string): void {
  const n = s.length;
  if (n <= STR8_MAX) {
    reserve(2 + n);
    const start = pos;
    let p = start + 2;
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 0xff) break;
      out[p++] = c;
    }
    if (i === n) {
      out[start] = I_STR8;
      out[start + 1] = n;
      pos = p;
      return;
    }
    if (n <= JS_UTF8_MAX) {
      writeShortUtf8(s, start);
      return;
    }
  }
  if (s.isWellFormed()) {
    reserve(5 + 3 * n);
    const at = pos + 5;
    const { written } = encoder.encodeInto(s, out.subarray(at));
    out[pos] = I_UTF8;
    writeU32At(pos + 1, written);
    pos = at + written;
    return;
  }
  writeUtf16Item(s);
}

/** Writes a short string with a unit above 255 as `I_UTF8`, or `I_UTF16` if not well formed. */
function writeShortUtf8(s: string, start: number): void {
  const n = s.length;
  pos = start;
  reserve(5 + 3 * n);
  let p = start + 5;
  for (let i = 0; i < n; i++) {
    let c = s.charCodeAt(i);
    if (c < 0x80) {
      out[p++] = c;
    } else if (c < 0x800) {
      out[p++] = 0xc0 | (c >> 6);
      out[p++] = 0x80 | (c & 0x3f);
    } else if (c < 0xd800 || c > 0xdfff) {
      out[p++] = 0xe0 | (c >> 12);
      out[p++] = 0x80 | ((c >> 6) & 0x3f);
      out[p++] = 0x80 | (c & 0x3f);
    } else {
      const d = i + 1 < n ? s.charCodeAt(i + 1) : 0;
      if (c > 0xdbff || d < 0xdc00 || d > 0xdfff) {
        // A lone surrogate: UTF-8 cannot hold it.
        pos = start;
        writeUtf16Item(s);
        return;
      }
      i++;
      c = 0x10000 + ((c - 0xd800) << 10) + (d - 0xdc00);
      out[p++] = 0xf0 | (c >> 18);
      out[p++] = 0x80 | ((c >> 12) & 0x3f);
      out[p++] = 0x80 | ((c >> 6) & 0x3f);
      out[p++] = 0x80 | (c & 0x3f);
    }
  }
  out[start] = I_UTF8;
  writeU32At(start + 1, p - start - 5);
  pos = p;
}

function writeUtf16Item(s: string): void {
  const n = s.length;
  reserve(5 + 2 * n);
  out[pos] = I_UTF16;
  writeU32At(pos + 1, n);
  let p = pos + 5;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    out[p++] = c & 0xff;
    out[p++] = c >>> 8;
  }
  pos = p;
}

function writeRawBytes(bytes: Uint8Array): void {
  writeVarUint(bytes.length);
  reserve(bytes.length);
  out.set(bytes, pos);
  pos += bytes.length;
}

/** Writes one item. @throws {Unsupported} If the value (or one inside it) cannot be stored. */
function item(v: unknown): void {
  switch (typeof v) {
    case "number":
      return writeNumberItem(v);
    case "string":
      return writeStringItem(v);
    case "boolean":
      reserve(1);
      out[pos++] = v ? I_TRUE : I_FALSE;
      return;
    case "undefined":
      reserve(1);
      out[pos++] = I_UNDEFINED;
      return;
    case "bigint":
      return writeBigInt(v);
    case "object":
      if (v === null) {
        reserve(1);
        out[pos++] = I_NULL;
        return;
      }
      return objectItem(v);
    case "function":
      throw new Unsupported("function");
    default:
      throw new Unsupported("symbol");
  }
}

function writeBigInt(v: bigint): void {
  reserve(1);
  out[pos++] = I_BIGINT;
  reserve(1);
  out[pos++] = v < 0n ? 1 : 0;
  writeStringItem((v < 0n ? -v : v).toString(16));
}

/** Writes an object: a reference when it was written already, else its item. */
function objectItem(o: object): void {
  const seen = seenIndex(o);
  if (seen >= 0) {
    refsWritten = true;
    return writeCode(I_REF, seen);
  }
  if (Array.isArray(o)) return arrayItem(o);
  const proto = Object.getPrototypeOf(o);
  if (proto === Object.prototype || proto === null) return plainItem(o, proto === null);
  if (o instanceof Date) {
    reserve(9);
    out[pos++] = I_DATE;
    writeF64(o.getTime());
    return;
  }
  if (ArrayBuffer.isView(o)) return viewItem(o);
  if (o instanceof Map) return mapItem(o);
  if (o instanceof Set) return setItem(o);
  if (o instanceof ArrayBuffer) {
    reserve(1);
    out[pos++] = I_ARRAY_BUFFER;
    return writeRawBytes(new Uint8Array(o));
  }
  if (o instanceof RegExp) {
    reserve(1);
    out[pos++] = I_REGEXP;
    writeStringItem(o.source);
    return writeStringItem(o.flags);
  }
  if (o instanceof URL) {
    reserve(1);
    out[pos++] = I_URL;
    return writeStringItem(o.href);
  }
  if (o instanceof URLSearchParams) {
    reserve(1);
    out[pos++] = I_URL_SEARCH_PARAMS;
    return writeStringItem(o.toString());
  }
  if (
    o instanceof Number || o instanceof String || o instanceof Boolean ||
    o instanceof (BigInt as unknown as new () => object)
  ) {
    reserve(1);
    out[pos++] = I_BOXED;
    return item((o as { valueOf(): unknown }).valueOf());
  }
  for (let k = 0; k < TEMPORAL_CLASSES.length; k++) {
    const c = TEMPORAL_CLASSES[k];
    if (c !== undefined && o instanceof (c as unknown as new () => object)) {
      reserve(2);
      out[pos++] = I_TEMPORAL;
      out[pos++] = k;
      return writeStringItem(String(o));
    }
  }
  if (isPlainProto(proto)) return plainItem(o, false);
  throw new Unsupported(describeObject(o));
}

function arrayItem(a: unknown[]): void {
  const n = a.length;
  reserve(6);
  const codeAt = pos;
  writeCode(I_ARRAY, n);
  for (let i = 0; i < n; i++) {
    const v = a[i];
    if (v === undefined && !(i in a)) {
      // The first hole: the array is written as holey from here on.
      out[codeAt] = I_HOLEY;
      return holeyRest(a, i, n);
    }
    try {
      item(v);
    } catch (e) {
      throw atSegment(e, `[${i}]`);
    }
  }
}

/**
 * Writes the elements of holey array `a` from index `from` (a hole) on, up to `n`, the
 * length written in its header (a getter of an element may have changed `a.length` since):
 * runs of holes as `I_HOLES` counts, elements as items. Only the indices present are
 * visited (from `Object.keys`), so that `a[1e9] = 1` costs one element, not a billion holes.
 */
function holeyRest(a: unknown[], from: number, n: number): void {
  let next = from;
  for (const key of Object.keys(a)) {
    const i = Number(key);
    // Own enumerable keys list the indices first, ascending; stop at the first non-index.
    if (!(i >= 0 && i < n && String(i) === key)) break;
    if (i < from) continue;
    if (i > next) writeCode(I_HOLES, i - next);
    try {
      item(a[i]);
    } catch (e) {
      throw atSegment(e, `[${i}]`);
    }
    next = i + 1;
  }
  if (next < n) writeCode(I_HOLES, n - next);
}

/** Adds a path segment to an `Unsupported` error on its way up; other errors pass. */
function atSegment(e: unknown, segment: string): unknown {
  if (e instanceof Unsupported) e.path.unshift(segment);
  return e;
}

function plainItem(o: object, nullProto: boolean): void {
  const keys = Object.keys(o);
  const symbols = Object.getOwnPropertySymbols(o);
  if (symbols.length !== 0) {
    for (const s of symbols) {
      if (Object.getOwnPropertyDescriptor(o, s)?.enumerable) {
        throw new Unsupported("object with symbol keys");
      }
    }
  }
  const n = keys.length;
  const rec = o as Record<string, unknown>;
  if (n === 0) {
    // No names: a definition of the empty shape, which takes no shape index.
    reserve(3);
    out[pos++] = nullProto ? I_NULL_OBJECT : I_OBJECT;
    out[pos++] = 0;
    out[pos++] = 0;
    return;
  }
  const shape = encodeShapeOf(keys);
  const again = usedShapes.length <= USED_SHAPES_MAX ? usedShapes.indexOf(shape) : -1;
  if (again >= 0) {
    shapesWritten = true;
    writeCode(nullProto ? I_NULL_OBJECT_AGAIN : I_OBJECT_AGAIN, again);
  } else {
    if (usedShapes.length <= USED_SHAPES_MAX) usedShapes.push(shape);
    const names = shape.names;
    writeCode(nullProto ? I_NULL_OBJECT : I_OBJECT, n);
    writeVarUint(names.length);
    reserve(names.length);
    const b = out;
    let p = pos;
    for (let j = 0; j < names.length; j++) b[p++] = names[j]!;
    pos = p;
  }
  for (let i = 0; i < n; i++) {
    const k = keys[i]!;
    const v = rec[k];
    if (typeof v === "function" && k === "then") {
      throw atSegment(new Unsupported("Promise or thenable"), "");
    }
    try {
      item(v);
    } catch (e) {
      throw atSegment(e, keySegment(k));
    }
  }
}

function mapItem(m: Map<unknown, unknown>): void {
  // The size written first must be the number of entries written: a getter of a key or
  // value that adds or deletes entries meanwhile makes the Map a TypeError.
  const size = m.size;
  writeCode(I_MAP, size);
  let count = 0;
  for (const [k, v] of m) {
    if (count === size) throw new Unsupported("Map changed while it was written");
    try {
      item(k);
      item(v);
    } catch (e) {
      throw atSegment(e, mapSegment(k));
    }
    count++;
  }
  if (count !== size || m.size !== size) {
    throw new Unsupported("Map changed while it was written");
  }
}

function setItem(s: Set<unknown>): void {
  // As `mapItem`: the size written is the number of items written, or a TypeError.
  const size = s.size;
  writeCode(I_SET, size);
  let count = 0;
  for (const v of s) {
    if (count === size) throw new Unsupported("Set changed while it was written");
    item(v);
    count++;
  }
  if (count !== size || s.size !== size) throw new Unsupported("Set changed while it was written");
}

function viewItem(v: ArrayBufferView): void {
  const bytes = new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  if (v instanceof DataView) {
    reserve(1);
    out[pos++] = I_DATA_VIEW;
    return writeRawBytes(bytes);
  }
  const kind = TYPED_KIND.get(typedArrayName.call(v) as string);
  if (kind === undefined) throw new Unsupported(describeObject(v));
  reserve(2);
  out[pos++] = I_TYPED;
  out[pos++] = kind;
  writeRawBytes(bytes);
}

/** Writes `value` as tag 13: the tag byte, then its item. */
function writeBinary(value: unknown): void {
  reserve(2);
  const start = pos;
  out[start] = T_BINARY;
  pos = start + 2;
  resetWalk();
  try {
    item(value);
    out[start + 1] = (refsWritten ? F_REFS : 0) | (shapesWritten ? F_SHAPES : 0);
  } catch (e) {
    throw toTypeError(e);
  } finally {
    resetWalk();
  }
}

/** Turns a failure of the walk into the `TypeError` that the caller reports. */
function toTypeError(e: unknown): unknown {
  if (e instanceof Unsupported) {
    const path = e.path.join("");
    const where = path === "" ? "top level" : `value${path}`;
    return new TypeError(`Cannot serialize value: unsupported ${e.what} at ${where}`);
  }
  if (e instanceof RangeError) {
    // Stack overflow (nesting too deep), or a string or buffer longer than V8 allows.
    return new TypeError(`Cannot serialize value: ${e.message}`, { cause: e });
  }
  return e;
}

// ---- decoder state (saved and restored around a nested decode)

let inBuf: Uint8Array = new Uint8Array(0);
let inView: DataView | undefined;
let inAt = 0;
let end = 0;
/** Containers decoded so far, by index (`I_REF`); `undefined` when the value has no
 * reference (flag `F_REFS` clear): then nothing is recorded. */
let refs: unknown[] | undefined;
/** Shapes defined so far in this value, by index (`I_OBJECT_AGAIN`); `undefined` when the
 * value refers to none (flag `F_SHAPES` clear). */
let shapesIn: DecodeShape[] | undefined;

/**
 * An object shape as the decoder knows it: its name items' bytes and the keys, and which
 * keys are defined rather than assigned.
 */
interface DecodeShape {
  readonly names: Uint8Array;
  /** A view of `names`, for comparing four bytes at a time. */
  readonly words: DataView;
  readonly keys: string[];
  /**
   * By key, whether it is defined (`Object.defineProperty`) on a plain object: `__proto__`,
   * and the keys that `Object.prototype` had when the shape was first read (`constructor`,
   * `toString`...), whose assignment would call an accessor of `Object.prototype` or fail
   * on a frozen one; `undefined` when every key is assigned.
   */
  readonly define: boolean[] | undefined;
  /** Plain objects of this shape decoded so far (up to `BUILD_AFTER`). */
  uses: number;
  /** The shape's object builder once made; `null` when it has none (see `makeBuild`). */
  build: Build | null | undefined;
}

/** Makes a plain object of one shape from the values `vals[base..base + keys)`. */
type Build = (vals: unknown[], base: number) => Record<string, unknown>;

/** Plain objects of one shape decoded before it gets a builder. */
const BUILD_AFTER = 16;
/** Most keys of a shape that gets a builder. */
const BUILD_MAX_KEYS = 64;
/** False once `new Function` failed (code generation disallowed): no more builders. */
let codegen = true;

/**
 * The builder of a shape: a function made with `new Function` whose body is one object
 * literal, `{ "id": v[b], "name": v[b + 1], ... }`. V8 creates such an object in one step
 * with its final hidden class (measured: a 5-key object 8 ns, against 57 ns for five
 * assignments to `{}`), and a literal defines its properties, as `JSON.parse` does, so no
 * accessor of `Object.prototype` runs. The names come from the decoded bytes: each is
 * written as the string literal that `JSON.stringify` makes of it, which escapes quotes,
 * backslashes, control characters and lone surrogates, so no name can end the literal
 * early. A shape with a `__proto__` key gets none (in a literal that key would set the
 * prototype), nor one of more than {@linkcode BUILD_MAX_KEYS} keys.
 */
function makeBuild(keys: string[]): Build | null {
  if (!codegen || keys.length > BUILD_MAX_KEYS || keys.includes("__proto__")) return null;
  let body = "";
  for (let i = 0; i < keys.length; i++) body += `${JSON.stringify(keys[i])}: v[b + ${i}], `;
  try {
    return new Function("v", "b", `"use strict"; return { ${body}};`) as Build;
  } catch {
    // EvalError: code generation from strings is disallowed here.
    codegen = false;
    return null;
  }
}

/** Values of objects being built, by `makeBuild`'s builders: a stack, `valsTop` high. */
const vals: unknown[] = [];
let valsTop = 0;

/** The shape of objects without keys (not counted among the shapes of a value). */
const EMPTY_SHAPE: DecodeShape = {
  names: new Uint8Array(0),
  words: new DataView(new ArrayBuffer(0)),
  keys: [],
  define: undefined,
  uses: 0,
  build: null,
};

/** Decoder shapes by a hash of their name bytes (direct-mapped; a clash replaces). */
const decodeShapes: Array<DecodeShape | undefined> = new Array(256).fill(undefined);
let lastDecodeShape: DecodeShape | undefined;

function corrupt(what: string): never {
  throw new RangeError(`Cannot decode value: invalid structured payload (${what})`);
}

function need(n: number): void {
  if (inAt + n > end) corrupt("truncated");
}

function readVarUint(): number {
  let n = 0;
  let shift = 0;
  for (;;) {
    if (inAt >= end) corrupt("truncated");
    const b = inBuf[inAt++]!;
    if (shift === 28) {
      if (b > 0x0f) corrupt("length");
      return n + b * 0x10000000;
    }
    n |= (b & 0x7f) << shift;
    if (b < 0x80) return n >>> 0;
    shift += 7;
  }
}

function readU32In(): number {
  need(4);
  const b = inBuf;
  const p = inAt;
  inAt = p + 4;
  return (b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16)) + b[p + 3]! * 0x1000000;
}

function readF64At(): number {
  need(8);
  const p = inAt;
  inAt = p + 8;
  return inView !== undefined ? inView.getFloat64(p, true) : readF64(inBuf, p);
}

/** Code units `b[from..from+n)` (each below 256) as a string. */
function latin1(b: Uint8Array, from: number, n: number): string {
  switch (n) {
    case 0:
      return "";
    case 1:
      return fcc(b[from]!);
    case 2:
      return fcc(b[from]!, b[from + 1]!);
    case 3:
      return fcc(b[from]!, b[from + 1]!, b[from + 2]!);
    case 4:
      return fcc(b[from]!, b[from + 1]!, b[from + 2]!, b[from + 3]!);
    case 5:
      return fcc(b[from]!, b[from + 1]!, b[from + 2]!, b[from + 3]!, b[from + 4]!);
    case 6:
      return fcc(b[from]!, b[from + 1]!, b[from + 2]!, b[from + 3]!, b[from + 4]!, b[from + 5]!);
    case 7:
      return fcc(
        b[from]!,
        b[from + 1]!,
        b[from + 2]!,
        b[from + 3]!,
        b[from + 4]!,
        b[from + 5]!,
        b[from + 6]!,
      );
    case 8:
      return fcc(
        b[from]!,
        b[from + 1]!,
        b[from + 2]!,
        b[from + 3]!,
        b[from + 4]!,
        b[from + 5]!,
        b[from + 6]!,
        b[from + 7]!,
      );
    case 9:
      return fcc(
        b[from]!,
        b[from + 1]!,
        b[from + 2]!,
        b[from + 3]!,
        b[from + 4]!,
        b[from + 5]!,
        b[from + 6]!,
        b[from + 7]!,
        b[from + 8]!,
      );
    case 10:
      return fcc(
        b[from]!,
        b[from + 1]!,
        b[from + 2]!,
        b[from + 3]!,
        b[from + 4]!,
        b[from + 5]!,
        b[from + 6]!,
        b[from + 7]!,
        b[from + 8]!,
        b[from + 9]!,
      );
  }
  let s = "";
  let i = from;
  const to = from + n;
  for (; i + 8 <= to; i += 8) {
    s += fcc(b[i]!, b[i + 1]!, b[i + 2]!, b[i + 3]!, b[i + 4]!, b[i + 5]!, b[i + 6]!, b[i + 7]!);
  }
  for (; i < to; i++) s += fcc(b[i]!);
  return s;
}

/** UTF-8 bytes `b[from..to)`, written by the encoder (well formed), as a string. */
function utf8(b: Uint8Array, from: number, to: number): string {
  if (to - from > JS_UTF8_MAX) return decoder.decode(b.subarray(from, to));
  let s = "";
  let i = from;
  while (i < to) {
    const c = b[i++]!;
    if (c < 0x80) {
      s += fcc(c);
    } else if (c >= 0xc2 && c < 0xe0 && i < to) {
      s += fcc(((c & 0x1f) << 6) | (b[i++]! & 0x3f));
    } else if (c >= 0xe0 && c < 0xf0 && i + 1 < to) {
      s += fcc(((c & 0x0f) << 12) | ((b[i]! & 0x3f) << 6) | (b[i + 1]! & 0x3f));
      i += 2;
    } else if (c >= 0xf0 && c < 0xf5 && i + 2 < to) {
      const u = ((c & 0x07) << 18) | ((b[i]! & 0x3f) << 12) | ((b[i + 1]! & 0x3f) << 6) |
        (b[i + 2]! & 0x3f);
      i += 3;
      s += fcc(0xd800 + ((u - 0x10000) >> 10), 0xdc00 + ((u - 0x10000) & 0x3ff));
    } else {
      corrupt("UTF-8");
    }
  }
  return s;
}

/** Reads a string item (the code already read). */
function readString(code: number): string {
  if (code === I_STR8) {
    need(1);
    const n = inBuf[inAt++]!;
    need(n);
    const s = latin1(inBuf, inAt, n);
    inAt += n;
    return s;
  }
  if (code === I_UTF8) {
    const n = readU32In();
    need(n);
    const s = utf8(inBuf, inAt, inAt + n);
    inAt += n;
    return s;
  }
  if (code === I_UTF16) {
    const n = readU32In();
    if (n > (end - inAt) / 2) corrupt("truncated");
    const s = readUtf16(inBuf, inAt, inAt + 2 * n);
    inAt += 2 * n;
    return s;
  }
  return corrupt(`expected a string, found item ${code}`);
}

function readStringItem(): string {
  need(1);
  return readString(inBuf[inAt++]!);
}

/** Reads one item. */
function readItem(): unknown {
  if (inAt >= end) corrupt("truncated");
  const code = inBuf[inAt++]!;
  if (code >= I_FIXINT) return code - I_FIXINT;
  switch (code) {
    case I_UNDEFINED:
      return undefined;
    case I_NULL:
      return null;
    case I_FALSE:
      return false;
    case I_TRUE:
      return true;
    case I_INT32: {
      need(4);
      const b = inBuf;
      const p = inAt;
      inAt = p + 4;
      return b[p]! | (b[p + 1]! << 8) | (b[p + 2]! << 16) | (b[p + 3]! << 24);
    }
    case I_F64:
      return readF64At();
    case I_STR8:
    case I_UTF8:
    case I_UTF16:
      return readString(code);
    case I_OBJECT:
    case I_NULL_OBJECT:
      return readObject(code === I_NULL_OBJECT, defineShape());
    case I_OBJECT_AGAIN:
    case I_NULL_OBJECT_AGAIN: {
      const i = readVarUint();
      if (shapesIn === undefined || i >= shapesIn.length) corrupt("shape index");
      return readObject(code === I_NULL_OBJECT_AGAIN, shapesIn[i]!);
    }
    case I_ARRAY:
    case I_HOLEY:
      return readArrayItem(code === I_HOLEY);
    case I_REF: {
      const i = readVarUint();
      if (refs === undefined || i >= refs.length) corrupt("reference");
      return refs[i];
    }
  }
  return readOther(code);
}

/** Reads a shape definition: the key count, then the name items (from the cache when the
 * same bytes were decoded before). */
function defineShape(): DecodeShape {
  const n = readVarUint();
  const size = readVarUint();
  if (n === 0) {
    if (size !== 0) corrupt("names");
    return EMPTY_SHAPE;
  }
  need(size);
  if (n > size) corrupt("key count");
  const b = inBuf;
  const from = inAt;
  let shape = lastDecodeShape;
  if (shape === undefined || !sameBytes(shape, b, from, size, n)) {
    let h = size;
    for (let i = from; i < from + size; i++) h = Math.imul(h ^ b[i]!, 0x01000193);
    const slot = (h ^ (h >>> 16)) & 0xff;
    shape = decodeShapes[slot];
    if (shape === undefined || !sameBytes(shape, b, from, size, n)) {
      shape = readNames(n, from, size);
      decodeShapes[slot] = shape;
    }
    lastDecodeShape = shape;
  }
  inAt = from + size;
  if (shapesIn !== undefined) shapesIn.push(shape);
  return shape;
}

function sameBytes(
  shape: DecodeShape,
  b: Uint8Array,
  from: number,
  size: number,
  n: number,
): boolean {
  const names = shape.names;
  if (names.length !== size || shape.keys.length !== n) return false;
  let i = 0;
  const view = inView;
  if (view !== undefined) {
    // Four bytes at a time where the caller gave a view of the input (the shared hit).
    const words = shape.words;
    for (; i + 4 <= size; i += 4) {
      if (view.getInt32(from + i, true) !== words.getInt32(i, true)) return false;
    }
  }
  for (; i < size; i++) if (names[i] !== b[from + i]) return false;
  return true;
}

function readNames(n: number, from: number, size: number): DecodeShape {
  const savedEnd = end;
  end = from + size;
  const keys: string[] = [];
  let define: boolean[] | undefined;
  for (let i = 0; i < n; i++) {
    const k = readStringItem();
    if (k in Object.prototype) (define ??= new Array<boolean>(n).fill(false))[i] = true;
    keys.push(k);
  }
  if (inAt !== end) corrupt("names");
  end = savedEnd;
  const names = inBuf.slice(from, from + size);
  return { names, words: new DataView(names.buffer), keys, define, uses: 0, build: undefined };
}

function readObject(nullProto: boolean, shape: DecodeShape): object {
  const keys = shape.keys;
  const n = keys.length;
  // A plain object of a frequent shape is built in one step once its values are read,
  // unless the value has references (then an object must exist before its children).
  if (!nullProto && refs === undefined) {
    let build = shape.build;
    if (build === undefined && ++shape.uses >= BUILD_AFTER) build = shape.build = makeBuild(keys);
    if (build) {
      const base = valsTop;
      valsTop = base + n;
      for (let i = 0; i < n; i++) vals[base + i] = readItem();
      const built = build(vals, base);
      for (let i = 0; i < n; i++) vals[base + i] = undefined;
      valsTop = base;
      return built;
    }
  }
  const o: Record<string, unknown> = nullProto ? Object.create(null) : {};
  if (refs !== undefined) refs.push(o);
  const define = shape.define;
  if (define === undefined) {
    for (let i = 0; i < n; i++) o[keys[i]!] = readItem();
    return o;
  }
  for (let i = 0; i < n; i++) {
    const k = keys[i]!;
    if (define[i] && (!nullProto || k === "__proto__")) {
      Object.defineProperty(o, k, {
        value: readItem(),
        writable: true,
        enumerable: true,
        configurable: true,
      });
    } else {
      o[k] = readItem();
    }
  }
  return o;
}

function readArrayItem(holey: boolean): unknown[] {
  const n = readVarUint();
  const a: unknown[] = [];
  if (refs !== undefined) refs.push(a);
  if (!holey) {
    if (n > end - inAt) corrupt("array length");
    for (let i = 0; i < n; i++) a.push(readItem());
    return a;
  }
  let i = 0;
  while (i < n) {
    if (inAt >= end) corrupt("truncated");
    if (inBuf[inAt] === I_HOLES) {
      inAt++;
      const run = readVarUint();
      if (run === 0 || run > n - i) corrupt("holes");
      i += run;
      continue;
    }
    a[i++] = readItem();
  }
  a.length = n;
  return a;
}

/** Reads the items that are not the common ones of `readItem`. */
function readOther(code: number): unknown {
  switch (code) {
    case I_MAP: {
      const n = readVarUint();
      if (n > end - inAt) corrupt("Map size");
      const m = new Map<unknown, unknown>();
      if (refs !== undefined) refs.push(m);
      for (let i = 0; i < n; i++) {
        const k = readItem();
        m.set(k, readItem());
      }
      return m;
    }
    case I_SET: {
      const n = readVarUint();
      if (n > end - inAt) corrupt("Set size");
      const s = new Set<unknown>();
      if (refs !== undefined) refs.push(s);
      for (let i = 0; i < n; i++) s.add(readItem());
      return s;
    }
    case I_DATE:
      return pushRef(new Date(readF64At()));
    case I_REGEXP: {
      const source = readStringItem();
      const flags = readStringItem();
      try {
        return pushRef(new RegExp(source, flags));
      } catch {
        return corrupt("RegExp");
      }
    }
    case I_BIGINT: {
      need(1);
      const negative = inBuf[inAt++] === 1;
      const hex = readStringItem();
      if (!/^[0-9a-f]+$/.test(hex)) corrupt("bigint");
      const v = BigInt(`0x${hex}`);
      return negative ? -v : v;
    }
    case I_BOXED: {
      need(1);
      const inner = readItem();
      const t = typeof inner;
      if (t !== "number" && t !== "string" && t !== "boolean" && t !== "bigint") corrupt("box");
      return pushRef(Object(inner));
    }
    case I_URL:
      try {
        return pushRef(new URL(readStringItem()));
      } catch (e) {
        if (e instanceof RangeError) throw e;
        return corrupt("URL");
      }
    case I_URL_SEARCH_PARAMS:
      return pushRef(new URLSearchParams(readStringItem()));
    case I_ARRAY_BUFFER:
      return pushRef(readBytes().buffer);
    case I_DATA_VIEW:
      return pushRef(new DataView(readBytes().buffer));
    case I_TYPED: {
      need(1);
      const ctor = TYPED_ARRAYS[inBuf[inAt++]!]?.[1];
      if (ctor === undefined) corrupt("typed array kind");
      const bytes = readBytes();
      try {
        return pushRef(new ctor(bytes.buffer));
      } catch {
        return corrupt("typed array length");
      }
    }
    case I_TEMPORAL: {
      need(1);
      const c = TEMPORAL_CLASSES[inBuf[inAt++]!];
      if (c === undefined) corrupt("Temporal kind");
      const text = readStringItem();
      try {
        return pushRef(c.from(text) as object);
      } catch {
        return corrupt("Temporal");
      }
    }
  }
  return corrupt(`item ${code}`);
}

function pushRef<T>(v: T): T {
  if (refs !== undefined) refs.push(v);
  return v;
}

/** Reads a byte count and that many bytes, as a fresh copy. */
function readBytes(): Uint8Array<ArrayBuffer> {
  const n = readVarUint();
  need(n);
  const bytes = inBuf.slice(inAt, inAt + n);
  inAt += n;
  return bytes;
}

/** Decodes tag 13 in `buf[1..len)`. */
function readBinary(buf: Uint8Array, len: number, view: DataView | undefined): unknown {
  if (len < 3) corruptIn(len, "truncated");
  const flags = buf[1]!;
  if ((flags & ~(F_REFS | F_SHAPES)) !== 0) corruptIn(len, `flags ${flags}`);
  // A nested decode (a setter of a polluted Object.prototype that calls a cached function)
  // must not disturb this one: the state is saved and restored.
  const savedBuf = inBuf;
  const savedView = inView;
  const savedAt = inAt;
  const savedEnd = end;
  const savedRefs = refs;
  const savedShapes = shapesIn;
  const savedTop = valsTop;
  inBuf = buf;
  inView = view;
  inAt = 2;
  end = len;
  refs = (flags & F_REFS) !== 0 ? [] : undefined;
  shapesIn = (flags & F_SHAPES) !== 0 ? [] : undefined;
  try {
    const value = readItem();
    if (inAt !== end) corrupt("trailing bytes");
    return value;
  } finally {
    inBuf = savedBuf;
    inView = savedView;
    inAt = savedAt;
    end = savedEnd;
    refs = savedRefs;
    shapesIn = savedShapes;
    if (valsTop !== savedTop) {
      // Cut short (corrupt bytes): drop the values held for objects not built.
      vals.length = savedTop;
      valsTop = savedTop;
    }
  }
}

function corruptIn(len: number, what: string): never {
  throw new RangeError(`Cannot decode value: invalid structured payload (${what}, ${len} bytes)`);
}

// ------------------------------------------------------------------- file references

/**
 * Encodes a reference to a large value kept in a file: tag {@linkcode T_FILE_REF} (with the
 * promised flag), the file's size in bytes (f64 LE) and its SHA-256 (32 bytes).
 */
export function encodeFileRef(size: number, sha256: Uint8Array, promised: boolean): Uint8Array {
  const out = new Uint8Array(FILE_REF_BYTES);
  out[0] = T_FILE_REF | (promised ? PROMISED_FLAG : 0);
  new DataView(out.buffer).setFloat64(1, size, true);
  out.set(sha256.subarray(0, 32), 9);
  return out;
}

/** Whether the first `len` bytes of `buf` are a file reference. */
export function isFileRef(buf: Uint8Array, len: number): boolean {
  return len === FILE_REF_BYTES && (buf[0]! & TAG_MASK) === T_FILE_REF;
}

/** The size and SHA-256 (hex) of a file reference made by {@linkcode encodeFileRef}. */
export function readFileRef(buf: Uint8Array): { size: number; sha256: string } {
  const size = new DataView(buf.buffer, buf.byteOffset, FILE_REF_BYTES).getFloat64(1, true);
  let sha256 = "";
  for (let i = 9; i < FILE_REF_BYTES; i++) sha256 += buf[i]!.toString(16).padStart(2, "0");
  return { size, sha256 };
}
