/**
 * The value codec of the shared backend: turns a cached value into bytes that
 * any process can read back, and back into a fresh copy.
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
 * | 9 | flat array of the values of tags 0–8 | u32 LE count, then per element its tag byte and payload; tags 5–8 carry a u32 LE byte length before their payload |
 * | 10 | anything else | UTF-8 text of `devalue.stringify(value)` |
 * | 11 | a small JSON-exact plain object or array (see below) | UTF-8 text of `JSON.stringify(value)` |
 * | 12 | a reference to a large value kept in a file (`largeValues: "file"`) | f64 LE size of the file, then its 32-byte SHA-256 (the file name); read by `_large_values.ts`, never by {@linkcode decodeValue} |
 *
 * Tags are appended, never renumbered. A reader that does not know a tag (an older
 * version of this module on the same file) drops the entry and reports a miss.
 *
 * A top-level string takes tag 5 when it has at most {@linkcode SHORT_STRING} code units
 * and all are < 256 (a JS loop beats the native encoder below that length), else tag 6
 * when it is well formed, else tag 7. Array elements follow the same rule. `TextEncoder`
 * would turn a lone surrogate into U+FFFD, so `"\ud800"` and `"\ufffd"` would collide: tag
 * 7 exists for them. The decoder keeps a leading U+FEFF (`ignoreBOM: true`).
 *
 * ## Why devalue for the structured path (measured here)
 *
 * Deno 2.9.6, x86_64, 2 cores (shared with other work, so noisy), `deno bench`, round trip =
 * encode to bytes + decode, p75 (avg in brackets where the distribution is bimodal):
 *
 * | candidate | small object | medium object (20 records) | Map + Set + Date + bigint + Float64Array |
 * |---|---:|---:|---:|
 * | `JSON` + `TextEncoder` (reference, too few types) | 1.0 µs | 13 µs | fails (bigint) |
 * | `npm:devalue` 6.0.3 + `TextEncoder` (this codec) | 3.3 µs | 50 µs | 10 µs |
 * | `node:v8` serialize/deserialize | 7.3 µs (avg 9.5) | 29 µs | 10 µs (avg 17) |
 * | `npm:@msgpack/msgpack` 3.1.3, no extensions | 2.6 µs | 25 µs | not comparable |
 * | `npm:@ungap/structured-clone` 1.4.0 + `JSON` | 5.1 µs | 61 µs | 11 µs |
 * | `npm:cbor2` 2.3.0 | 57 µs | 1.1 ms | 66 µs |
 * | `npm:msgpackr`, `npm:cbor-x` | do not resolve through `npm:` (native optional builds) | | |
 *
 * Fast paths, same run: number 60–100 ns, short string 120–180 ns, 1 KiB string 0.5–1.4 µs,
 * 1 KiB `Uint8Array` 0.4–1 µs, flat array of 10 numbers 0.35–0.5 µs (3.7 µs through
 * devalue). Re-run with `deno bench -A bench/value_codec_bench.ts`.
 *
 * Type coverage, checked with `assert.deepStrictEqual` after a round trip:
 * - devalue: every type the README lists for shared values, exactly, plus `-0`, `NaN`, `±Infinity`,
 *   `undefined` properties, sparse arrays, null-prototype objects, `ArrayBuffer`, every
 *   typed array, `RegExp`, `URL`, boxed primitives, cycles and shared references. It
 *   rejects functions, symbols, Promises, `WeakMap`, class instances and symbol keys.
 * - `node:v8`: all of those but turns null-prototype objects and class instances into
 *   plain objects silently; it would need a pre-walk to be exact, on top of being slower
 *   on small values.
 * - `@msgpack/msgpack`: loses `Map`, `Set`, `-0`, `undefined` properties, holes, typed
 *   arrays other than `Uint8Array`; no bigint or cycles. Extension types cannot fix `-0`
 *   (numbers never reach them); fixing the rest amounts to writing our own serializer.
 * - cbor2: string-keyed `Map`s come back as objects, small bigints as numbers, no cycles;
 *   by far the slowest.
 * - ungap: loses `-0`, holes, `Float64Array`, null prototypes.
 *
 * So devalue: the only one with exact coverage, pure JS without dependencies, well kept
 * (sveltejs/devalue, used by SvelteKit), and on small objects, the common case for a
 * memoized result, near msgpack without extensions and 2× faster than `node:v8`. `node:v8` is about 1.7× faster on medium plain objects and level
 * on the rich one, but not exact.
 *
 * ## JSON for small JSON-exact trees (tag 11)
 *
 * Plain objects and nested arrays are the common structured result, and for them the
 * built-in `JSON` is faster than devalue at both ends. A value takes tag 11 only when a
 * walk finds that `JSON.parse(JSON.stringify(value))` gives back exactly what devalue
 * would (no `-0`, `NaN`, `±Infinity`, `undefined`, holes, null prototypes, shared or
 * cyclic references, symbol keys, non-JSON types; at most 64 containers,
 * so that the walk stays cheap next to the work it saves). Measured on the shared benches'
 * row `{ id, name, active, score, tags: ["a", "b"] }`: a shared hit 3.18 µs with devalue
 * against 1.85 µs with JSON, in one isolated loop on a busy minute. The walk writes the
 * JSON text itself, reading each property once, so a getter is called once and what is
 * stored is what it returned.
 *
 * ## Choices
 * - Class instances (anything whose prototype is not `Object.prototype`, `null` or a
 *   built-in data type) throw `TypeError`: a copy without its prototype would look right
 *   and then lack its methods, which is worse than a clear error. `Error` objects are class
 *   instances in that sense and throw too.
 * - Subclasses of `Uint8Array` (such as Node's `Buffer`) and of the other typed arrays
 *   come back as the base typed array, and array subclasses as plain arrays.
 * - Cyclic and shared references are kept (devalue represents them).
 * - Non-enumerable properties, array properties that are not indices and extra properties
 *   of `Map`, `Set`, `Date` and typed arrays are not kept; getters are called and their
 *   results stored.
 *
 * @module
 */

import { DevalueError, parse, stringify } from "npm:devalue@^6.0.3";

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
/** Buffer being written: `shared`, or a private one (large value, reentrant call). */
let out = shared;
/** Write position in `out`. */
let pos = 0;
/** True while an encode runs, so that a reentrant call does not clobber `shared`. */
let busy = false;

/** Marks an array that the flat-array fast path cannot take. */
const NOT_FLAT: unique symbol = Symbol("not flat");

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
 * makes, is kept as an own property.) The message names
 * the type and where it was found, e.g. `Cannot serialize value: unsupported WeakMap at
 * value.cache`.
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
  busy = true;
  try {
    out = shared;
    pos = 0;
    encodeTop(value);
    if (promised) out[0] = out[0]! | PROMISED_FLAG;
    return out.subarray(0, pos);
  } finally {
    busy = false;
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
  try {
    out = new Uint8Array(256);
    pos = 0;
    encodeTop(value);
    if (promised) out[0] = out[0]! | PROMISED_FLAG;
    return out.subarray(0, pos);
  } finally {
    out = savedOut;
    pos = savedPos;
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
  if (out === shared && size <= MAX_RETAINED) shared = next;
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
      writeString(value, 0);
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
      if (Array.isArray(value) && Object.getPrototypeOf(value) === Array.prototype) {
        if (writeFlatArray(value) !== NOT_FLAT) return;
        pos = 0;
      }
      {
        const text = jsonText(value);
        if (text !== undefined) {
          // JSON.stringify escapes lone surrogates (`\udXXX`): the text survives UTF-8.
          writeText(T_JSON, text);
          return;
        }
      }
  }
  writeStructured(value);
}

/** Most objects and arrays (together) that {@linkcode jsonText} walks. */
const JSON_MAX_CONTAINERS = 64;

/** Marks a value that the JSON path cannot take. */
const NOT_JSON: unique symbol = Symbol("not JSON");

/**
 * The JSON text of `value` when `JSON.parse` of it gives back exactly what devalue would,
 * else `undefined`: a tree (no object twice, so no cycle and no shared reference) of at
 * most {@linkcode JSON_MAX_CONTAINERS} plain objects (prototype `Object.prototype`, no
 * symbol key) and arrays (prototype `Array.prototype`, no holes), whose leaves are
 * strings, booleans, `null` and finite numbers other than `-0`, with no `undefined`. An
 * own `__proto__` key is kept: `JSON.parse` makes it an own property again.
 *
 * The walk reads every property once and copies what it read into plain data objects,
 * which `JSON.stringify` then writes: a getter is called once, and what is stored is what
 * it returned (stringifying the value itself after a checking walk would call it twice).
 * The copy costs less than writing the text in JavaScript (measured: a 5-field row
 * 0.5–0.9 µs against 0.8–1.1 µs; 20 records 6–9 µs against 12–15 µs). The walk state is
 * per call, so a getter that calls a cached function (a nested encode) cannot disturb it.
 */
function jsonText(value: object): string | undefined {
  const copy = jsonContainer(value, []);
  return copy === NOT_JSON ? undefined : JSON.stringify(copy);
}

function jsonContainer(o: object, seen: object[]): unknown {
  if (seen.length >= JSON_MAX_CONTAINERS || seen.includes(o)) return NOT_JSON;
  seen.push(o);
  const proto = Object.getPrototypeOf(o);
  if (proto === Array.prototype && Array.isArray(o)) {
    const n = o.length;
    const copy = new Array(n);
    for (let i = 0; i < n; i++) {
      if (!(i in o)) return NOT_JSON;
      const item = jsonValue(o[i], seen);
      if (item === NOT_JSON) return NOT_JSON;
      copy[i] = item;
    }
    return copy;
  }
  if (proto !== Object.prototype) return NOT_JSON;
  if (Object.getOwnPropertySymbols(o).length !== 0) return NOT_JSON;
  const rec = o as Record<string, unknown>;
  const copy: Record<string, unknown> = {};
  for (const k of Object.keys(o)) {
    const item = jsonValue(rec[k], seen);
    if (item === NOT_JSON) return NOT_JSON;
    if (k === "__proto__") {
      Object.defineProperty(copy, k, {
        value: item,
        writable: true,
        enumerable: true,
        configurable: true,
      });
    } else {
      copy[k] = item;
    }
  }
  return copy;
}

function jsonValue(v: unknown, seen: object[]): unknown {
  switch (typeof v) {
    case "string":
    case "boolean":
      return v;
    case "number":
      return Number.isFinite(v) && !Object.is(v, -0) ? v : NOT_JSON;
    case "object":
      return v === null ? null : jsonContainer(v, seen);
    default:
      return NOT_JSON;
  }
}

function writeF64(value: number): void {
  f64[0] = value;
  if (LITTLE_ENDIAN) {
    for (let i = 0; i < 8; i++) out[pos++] = f64Bytes[i]!;
  } else {
    for (let i = 7; i >= 0; i--) out[pos++] = f64Bytes[i]!;
  }
}

function writeU32(at: number, n: number): void {
  out[at] = n & 0xff;
  out[at + 1] = (n >>> 8) & 0xff;
  out[at + 2] = (n >>> 16) & 0xff;
  out[at + 3] = n >>> 24;
}

/**
 * Writes a string's tag, then (when `lengthBytes` is 4) a u32 byte length, then its
 * code units. See the module doc for which tag a string takes.
 */
function writeString(s: string, lengthBytes: 0 | 4): void {
  const n = s.length;
  const start = pos;
  if (n <= SHORT_STRING) {
    reserve(1 + lengthBytes + n);
    let p = start + 1 + lengthBytes;
    let i = 0;
    for (; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 0xff) break;
      out[p++] = c;
    }
    if (i === n) {
      out[start] = T_LATIN1;
      if (lengthBytes) writeU32(start + 1, n);
      pos = p;
      return;
    }
  }
  if (s.isWellFormed()) {
    reserve(1 + lengthBytes + 3 * n);
    const at = start + 1 + lengthBytes;
    const { written } = encoder.encodeInto(s, out.subarray(at));
    out[start] = T_UTF8;
    if (lengthBytes) writeU32(start + 1, written);
    pos = at + written;
    return;
  }
  reserve(1 + lengthBytes + 2 * n);
  out[start] = T_UTF16;
  if (lengthBytes) writeU32(start + 1, 2 * n);
  let p = start + 1 + lengthBytes;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    out[p++] = c & 0xff;
    out[p++] = c >>> 8;
  }
  pos = p;
}

/** Writes a flat array of primitives and byte arrays, or returns `NOT_FLAT`. */
function writeFlatArray(array: unknown[]): typeof NOT_FLAT | undefined {
  const n = array.length;
  if (n > 0xffffffff) return NOT_FLAT;
  reserve(5);
  out[pos++] = T_ARRAY;
  writeU32(pos, n);
  pos += 4;
  for (let i = 0; i < n; i++) {
    const item = array[i];
    reserve(9);
    switch (typeof item) {
      case "undefined":
        if (!(i in array)) return NOT_FLAT; // a hole: devalue keeps it
        out[pos++] = T_UNDEFINED;
        continue;
      case "boolean":
        out[pos++] = item ? T_TRUE : T_FALSE;
        continue;
      case "number":
        out[pos++] = T_NUMBER;
        writeF64(item);
        continue;
      case "string":
        writeString(item, 4);
        continue;
      case "object":
        if (item === null) {
          out[pos++] = T_NULL;
          continue;
        }
        if (Object.getPrototypeOf(item) === Uint8Array.prototype) {
          const bytes = item as Uint8Array;
          reserve(5 + bytes.length);
          out[pos++] = T_BYTES;
          writeU32(pos, bytes.length);
          out.set(bytes, pos + 4);
          pos += 4 + bytes.length;
          continue;
        }
    }
    return NOT_FLAT;
  }
  return undefined;
}

/**
 * devalue refuses objects with an own `__proto__` key (as `JSON.parse` makes from
 * untrusted input); they are written as their entries under this reducer's name, and
 * rebuilt with `defineProperty`, so the key stays an own property and never sets a
 * prototype.
 */
const PROTO_KEYED = "warp:protoKeyed";

function protoKeyedEntries(v: unknown): false | Array<[string, unknown]> {
  if (
    typeof v !== "object" || v === null || Array.isArray(v) || !Object.hasOwn(v, "__proto__")
  ) {
    return false;
  }
  const proto = Object.getPrototypeOf(v);
  if (proto !== Object.prototype && proto !== null) return false;
  const rec = v as Record<string, unknown>;
  return Object.keys(v).map((k) => [k, rec[k]]);
}

const REDUCERS = { [PROTO_KEYED]: protoKeyedEntries };
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

function writeStructured(value: unknown): void {
  let text: string;
  try {
    text = stringify(value);
  } catch (e) {
    if (!(e instanceof DevalueError && e.message.includes("__proto__"))) throw toTypeError(e);
    try {
      text = stringify(value, REDUCERS);
    } catch (e2) {
      throw toTypeError(e2);
    }
  }
  // devalue escapes lone surrogates (`\udXXX`), so its output is well formed and
  // survives UTF-8: the tests check it with lone surrogates in keys and values.
  writeText(T_STRUCTURED, text);
}

/** Writes `tag`, then `text` (well formed) as UTF-8. */
function writeText(tag: number, text: string): void {
  reserve(1 + 3 * text.length);
  out[pos++] = tag;
  pos += encoder.encodeInto(text, out.subarray(pos)).written;
}

/** Turns a serializer failure into the `TypeError` that the caller reports. */
function toTypeError(e: unknown): unknown {
  if (e instanceof DevalueError) {
    const where = e.path ? `value${e.path}` : "top level";
    return new TypeError(
      `Cannot serialize value: unsupported ${describe(e.value, e.message)} at ${where}`,
      { cause: e },
    );
  }
  if (e instanceof RangeError) {
    // Stack overflow (nesting too deep) or a string longer than V8 allows.
    return new TypeError(`Cannot serialize value: ${e.message}`, { cause: e });
  }
  return e;
}

/** Names the offending thing for an error message. */
function describe(thing: unknown, reason: string): string {
  if (typeof thing === "function") return "function";
  if (typeof thing === "symbol") return "symbol";
  if (typeof thing !== "object" || thing === null) return reason;
  if (reason.includes("symbolic keys")) return "object with symbol keys";
  if (reason.includes("__proto__")) return "object with a __proto__ key";
  if (reason.includes("Promise")) return "Promise or thenable";
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
