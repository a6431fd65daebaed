/**
 * The key codec: turns a call's arguments into bytes that are equal exactly when the
 * keys are equal under the rules of the README ("Keys").
 *
 * - Primitives by value with their type (`1`, `"1"`, `1n`, `true` differ); numbers by
 *   SameValueZero (`0` and `-0` are one key, `NaN` equals `NaN`). Each number has one
 *   canonical encoding: an `int32` tag when it is an integer in range, else an `f64` tag.
 * - Strings losslessly, code unit by code unit (lone surrogates included): one byte per
 *   unit when every unit is below 256, else two. `TextEncoder` would map `"\ud800"` and
 *   `"\ufffd"` to the same bytes.
 * - Arrays element by element; plain objects (prototype `Object.prototype` or `null`) by
 *   their own enumerable string keys, sorted; `Date` by time; `Uint8Array` and
 *   `ArrayBuffer` by bytes; `bigint` by value. Every container is length-prefixed, so no
 *   two shapes share an encoding.
 * - Anything else (other objects, functions, symbols) by identity in the memory backend,
 *   through a `WeakMap` to a number, which does not keep the object alive; a `TypeError`
 *   in the shared backend.
 * - A cyclic argument is a `TypeError`.
 *
 * ## Two forms of the same rules
 *
 * The shared backend and the remote tier (whose keys other processes read) use the
 * process-independent form above, whose bytes are part of the shared file format. A
 * memory-only cache uses a shorter form of the same rules, whose bytes mean something in
 * this process only: strings under 256 code units have a one-byte length, and a plain
 * object whose key set was given a shape number writes that number instead of its names.
 * Shorter keys cost less to write, hash and compare (the TypeScript store compares keys
 * byte by byte: about 3 ns a byte).
 *
 * ## The shape cache
 *
 * Objects of one shape list their keys (`Object.keys`) as the same strings in the same
 * order, so the sorted order and the bytes of the names are computed once per shape and
 * kept in a {@linkcode ShapeTable}: a lookup is `Object.keys` plus a comparison of the
 * listed keys by identity. The table holds at most {@linkcode MAX_CACHED_SHAPES} shapes
 * and starts over when full, so objects with ever-new keys cost a miss each and no growing
 * memory. Shape numbers (memory form) are different: a key set keeps its number for the
 * life of the process, so that equal objects always encode alike. At most
 * {@linkcode MAX_SHAPE_NUMBERS} key sets get one; a key set first seen after that writes
 * its names, always. The keys and values are still read from each object on every call:
 * a key added or deleted, a getter, or a changed prototype is seen at once.
 *
 * ## The flat path
 *
 * A call whose arguments are int32 numbers, strings and plain objects (memory form, no
 * receiver) is written by {@linkcode KeyWriter} straight into its buffer, without the
 * module state of the general walk: each object's keys and values are read in one
 * `for-in` (values in the order the keys are listed, each once), compared on the way with
 * the last shape's keys, and written in sorted key order; any other value inside goes
 * through the general walk. The bytes are the walk's. A key that a getter deletes before
 * `for-in` reaches it is left out (the walk, which lists the keys first, reads it as
 * `undefined`).
 *
 * @module
 */

import type { KeyBytes } from "../store/store.ts";

// Tags. Numbering is part of the shared file format: append, never renumber.
const T_UNDEFINED = 1;
const T_NULL = 2;
const T_FALSE = 3;
const T_TRUE = 4;
const T_INT32 = 5;
const T_F64 = 6;
const T_STR8 = 7;
const T_STR16 = 8;
const T_BIGINT = 9;
const T_ARRAY = 10;
const T_OBJECT = 11;
const T_DATE = 12;
const T_U8 = 13;
const T_ARRAY_BUFFER = 14;
const T_REF = 15;
const T_SYMBOL_FOR = 16;
const T_ARGS = 17;
const T_THIS = 18;
// Memory form only (never in a shared file).
/** One-byte string under 256 code units: length byte, then the units. */
const T_SHORT8 = 19;
/** Two-byte string under 256 code units: length byte, then the units (LE). */
const T_SHORT16 = 20;
/** Plain object of a numbered shape: u16 LE shape number, then the values, sorted. */
const T_SHAPE = 21;

/** The tags that a key of primitive arguments uses (memory form), for the TypeScript store,
 * which decodes such keys back to arguments (`src/store/_args_index.ts`). */
export const PRIMITIVE_TAGS = {
  UNDEFINED: T_UNDEFINED,
  NULL: T_NULL,
  FALSE: T_FALSE,
  TRUE: T_TRUE,
  INT32: T_INT32,
  F64: T_F64,
  STR8: T_STR8,
  STR16: T_STR16,
  ARGS: T_ARGS,
  SHORT8: T_SHORT8,
  SHORT16: T_SHORT16,
  /** A plain object of a numbered shape (read back by {@linkcode shapeOfNumber}). */
  SHAPE: T_SHAPE,
} as const;

/** Deepest nesting of arrays and objects accepted in a key. */
export const MAX_KEY_DEPTH = 256;

const refIds = new WeakMap<WeakKey, number>();
let nextRefId = 1;

/** The stable identity number of an object, function or symbol (memory backend only). */
function refId(value: WeakKey): number {
  let id = refIds.get(value);
  if (id === undefined) {
    id = nextRefId++;
    refIds.set(value, id);
  }
  return id;
}

function describe(value: unknown): string {
  if (value === null) return "null";
  if (typeof value === "function") return `function ${value.name || "(anonymous)"}`;
  if (typeof value === "symbol") return value.toString();
  if (typeof value === "object") {
    const ctor = (value as { constructor?: { name?: unknown } }).constructor;
    const name = typeof ctor?.name === "string" && ctor.name ? ctor.name : "Object";
    return `${/^[AEIOU]/.test(name) ? "an" : "a"} ${name}`;
  }
  return typeof value;
}

/** Most shapes that a {@linkcode ShapeTable} caches; when full it starts over. */
export const MAX_CACHED_SHAPES = 256;
/** Most key sets that are given a shape number (memory form) in a process. */
export const MAX_SHAPE_NUMBERS = 4096;
/** Most bytes of names (shared form) that the numbered key sets hold together. */
const MAX_NUMBERED_NAME_BYTES = 1 << 20;

/**
 * The encoding of one object shape (see "The shape cache" in the module doc). Never changed
 * once made, so an encode that holds one is not disturbed by a nested encode (a getter
 * calling a cached function) that makes the table start over.
 */
export interface Shape {
  /** The keys as `Object.keys` lists them: what a lookup compares. */
  readonly listed: readonly string[];
  /** The keys in the order their values are written: sorted by code units. */
  readonly sorted: readonly string[];
  /**
   * The shared form of the object's header (tag, u32 count) and of its names, cut in
   * pieces to write between the values: piece 0 is the header and the first name, piece
   * `i` the `i`-th name; piece `i` is `bytes[ends[i - 1] ?? 0 .. ends[i])`.
   */
  readonly bytes: Uint8Array;
  /** Ends of the pieces of {@linkcode Shape.bytes}. */
  readonly ends: Int32Array;
  /** The key set's shape number (memory form), or -1 when it has none. */
  readonly number: number;
  /** Whether the key set has a shape number: the writer's flat path takes it. */
  readonly flat: boolean;
  /** Whether the keys are listed in sorted order (`listed` is `sorted`). */
  readonly inOrder: boolean;
  /** The index in `listed` of each key of `sorted`. */
  readonly order: Int32Array;
  /** The index in `sorted` of each key of `listed` (`order` inverted). */
  readonly rank: Int32Array;
}

/**
 * The shape cache and the shape numbers of the key codec: one per process (module), used
 * by every {@linkcode KeyWriter}; tests make their own to see the limits.
 */
export class ShapeTable {
  /** Shapes by their first listed key. */
  #byFirst = new Map<string, Shape[]>();
  #cached = 0;
  /** The last shape returned: one comparison when consecutive objects share a shape. */
  #last: Shape | undefined = undefined;
  /** Shape numbers by the shared form of the sorted names (one char per byte). */
  #numbers = new Map<string, number>();
  /** By shape number: the first shape made of its key set (kept when the cache starts
   * over, as the numbers are). */
  #byNumber: Shape[] = [];
  #numberedBytes = 0;
  readonly #maxCached: number;
  readonly #maxNumbers: number;

  /**
   * @param maxCached Most shapes cached before the cache starts over.
   * @param maxNumbers Most key sets given a shape number, ever.
   */
  constructor(maxCached = MAX_CACHED_SHAPES, maxNumbers = MAX_SHAPE_NUMBERS) {
    this.#maxCached = maxCached;
    this.#maxNumbers = maxNumbers;
  }

  /** Shapes cached now. */
  get cached(): number {
    return this.#cached;
  }

  /** Key sets given a shape number so far. */
  get numbered(): number {
    return this.#numbers.size;
  }

  /** The shape of the key set numbered `number` (its keys, sorted), or `undefined` when no
   * key set has that number. */
  byNumber(number: number): Shape | undefined {
    return this.#byNumber[number];
  }

  /**
   * The shape of an object whose own enumerable string keys are `keys` (at least one, as
   * `Object.keys` returned them): from the cache, or made and cached.
   */
  shapeOf(keys: string[]): Shape {
    const last = this.#last;
    if (last !== undefined && sameKeys(keys, last.listed)) return last;
    const first = keys[0]!;
    let list = this.#byFirst.get(first);
    if (list !== undefined) {
      for (let i = 0; i < list.length; i++) {
        const shape = list[i]!;
        if (sameKeys(keys, shape.listed)) return (this.#last = shape);
      }
    }
    const shape = this.#make(keys);
    if (this.#cached >= this.#maxCached) {
      this.#byFirst = new Map();
      this.#cached = 0;
      list = undefined;
    }
    if (list === undefined) this.#byFirst.set(first, list = []);
    list.push(shape);
    this.#cached++;
    return (this.#last = shape);
  }

  #make(keys: string[]): Shape {
    const listed = keys.slice();
    const sorted = keys.slice();
    const n = sorted.length;
    if (n > 16) {
      sorted.sort();
    } else {
      for (let i = 1; i < n; i++) {
        const k = sorted[i]!;
        let j = i - 1;
        while (j >= 0 && sorted[j]! > k) {
          sorted[j + 1] = sorted[j]!;
          j--;
        }
        sorted[j + 1] = k;
      }
    }
    // The bytes are those that the shared form writes for the header and each name.
    const out = [T_OBJECT, n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24];
    const ends = new Int32Array(n);
    for (let i = 0; i < n; i++) {
      pushSharedString(out, sorted[i]!);
      ends[i] = out.length;
    }
    const bytes = Uint8Array.from(out);
    // A key set's number never changes: look it up by its names, else give it the next
    // one while there are numbers (and name bytes) left.
    const names = bytesToKeyString(bytes, bytes.length);
    let number = this.#numbers.get(names);
    if (
      number === undefined && this.#numbers.size < this.#maxNumbers &&
      this.#numberedBytes + bytes.length <= MAX_NUMBERED_NAME_BYTES
    ) {
      number = this.#numbers.size;
      this.#numbers.set(names, number);
      this.#numberedBytes += bytes.length;
    }
    const order = new Int32Array(n);
    for (let i = 0; i < n; i++) order[i] = listed.indexOf(sorted[i]!);
    const rank = new Int32Array(n);
    for (let i = 0; i < n; i++) rank[order[i]!] = i;
    const shape: Shape = {
      listed,
      sorted,
      bytes,
      ends,
      number: number ?? -1,
      flat: number !== undefined,
      inOrder: sameKeys(listed, sorted),
      order,
      rank,
    };
    if (number !== undefined) this.#byNumber[number] ??= shape;
    return shape;
  }
}

/** Appends the shared form of string `s` to `out`: as the encoder writes it (`string`). */
function pushSharedString(out: number[], s: string): void {
  const n = s.length;
  let wide = false;
  for (let i = 0; i < n; i++) if (s.charCodeAt(i) > 255) wide = true;
  out.push(wide ? T_STR16 : T_STR8, n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24);
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (wide) out.push(c & 0xff, c >>> 8);
    else out.push(c);
  }
}

/** Whether `keys` are the same strings as `listed`, in the same order. */
function sameKeys(keys: string[], listed: readonly string[]): boolean {
  const n = keys.length;
  if (n !== listed.length) return false;
  for (let i = 0; i < n; i++) if (keys[i] !== listed[i]) return false;
  return true;
}

/** The shape table of the process. */
const processShapes = new ShapeTable();

/**
 * The numbered shape (memory form, the process's table) of the plain object `o` (its
 * prototype checked by the caller), or `undefined` when it has no key or its key set no
 * number. Lists its keys (`Object.keys`) but reads no value: no getter runs. For the
 * TypeScript store, which looks such an object up by its values
 * (`src/store/_args_index.ts`).
 */
export function numberedShapeOf(o: object): Shape | undefined {
  const keys = Object.keys(o);
  if (keys.length === 0) return undefined;
  const shape = processShapes.shapeOf(keys);
  return shape.number < 0 ? undefined : shape;
}

/** The shape numbered `number` in the process's table (memory form), if any. */
export function shapeOfNumber(number: number): Shape | undefined {
  return processShapes.byNumber(number);
}

// ------------------------------------------------------------------------------ encoder
//
// The encoder's state lives in module variables rather than in the writer's fields, and
// its steps are module functions rather than methods (measured on `{ id, kind }`, in
// interleaved rounds: 85-95 ns against 95-110 ns for the same walk as methods reading
// `this`; `JSON.stringify` of it took 77-86 ns, and a bare function doing no more than our
// rules ask, 72-75 ns). `KeyWriter.prototype.call`
// loads a writer's buffer into them and stores it back, and saves and restores the state
// of an encode already under way, so that a nested encode (a getter of a key argument that
// calls a cached function) uses its own writer and leaves the outer one as it was.

/** The buffer being written and the write position. */
let buf: Uint8Array = new Uint8Array(0);
let pos = 0;
/** Whether the shared form is written (and identity keys refused). */
let sharedForm = false;
/** The shape table of the writer being written. */
let shapes: ShapeTable;
/** The shape of the last plain object written, and its table. */
let lastShape: Shape | undefined;
let lastTable: ShapeTable | undefined;
/** The argument being encoded (-1: `this`), for messages. */
let arg = 0;
/** Whether an encode is under way (a `call` made now is a nested one). */
let encoding = false;
/** Containers being encoded, from `stackBase` on (cycles and depth). */
const stack: object[] = [];
let stackBase = 0;

// Numbers travel through this scratch pair: no DataView per buffer.
const f64 = new Float64Array(1);
const f64Bytes = new Uint8Array(f64.buffer);
const LITTLE_ENDIAN = new Uint8Array(new Uint16Array([1]).buffer)[0] === 1;

/** Makes room for `n` more bytes at `pos`, keeping what is written. */
function reserve(n: number): void {
  const need = pos + n;
  if (need <= buf.length) return;
  let size = buf.length * 2 || 64;
  while (size < need) size *= 2;
  const next = new Uint8Array(size);
  next.set(buf.subarray(0, pos));
  buf = next;
}

function u8(b: number): void {
  reserve(1);
  buf[pos++] = b;
}

/** Writes `tag` and a u32 LE count. */
function header(tag: number, count: number): void {
  reserve(5);
  const p = pos;
  buf[p] = tag;
  buf[p + 1] = count;
  buf[p + 2] = count >>> 8;
  buf[p + 3] = count >>> 16;
  buf[p + 4] = count >>> 24;
  pos = p + 5;
}

/** Writes an f64, little-endian. */
function f64At(p: number, n: number): void {
  f64[0] = n;
  if (LITTLE_ENDIAN) {
    for (let i = 0; i < 8; i++) buf[p + i] = f64Bytes[i]!;
  } else {
    for (let i = 0; i < 8; i++) buf[p + i] = f64Bytes[7 - i]!;
  }
}

function number(n: number): void {
  reserve(9);
  const p = pos;
  if ((n | 0) === n) {
    // Integers in int32 range, with -0 folded into 0 by `| 0` (SameValueZero).
    buf[p] = T_INT32;
    buf[p + 1] = n;
    buf[p + 2] = n >> 8;
    buf[p + 3] = n >> 16;
    buf[p + 4] = n >> 24;
    pos = p + 5;
    return;
  }
  buf[p] = T_F64;
  // Every NaN is written as the canonical quiet NaN: NaN equals NaN.
  f64At(p + 1, n === n ? n : NaN);
  pos = p + 9;
}

function string(s: string): void {
  reserve(5 + 2 * s.length);
  pos = stringAt(buf, pos, s, !sharedForm);
}

/**
 * Writes string `s` at `b[p]`, where there is room for 5 + 2 × its length bytes, and
 * returns where it ends: the one-byte form while every code unit is below 256 (switching
 * to the two-byte form at the first one above), with a one-byte length in the memory form
 * (`short`) when it has fewer than 256 units.
 */
function stringAt(b: Uint8Array, p: number, s: string, short: boolean): number {
  const n = s.length;
  const oneByteLength = short && n < 256;
  const start = p;
  p += oneByteLength ? 2 : 5;
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    if (c > 255) return wideAt(b, start, s, oneByteLength);
    b[p++] = c;
  }
  if (oneByteLength) {
    b[start] = T_SHORT8;
    b[start + 1] = n;
  } else {
    b[start] = T_STR8;
    b[start + 1] = n;
    b[start + 2] = n >>> 8;
    b[start + 3] = n >>> 16;
    b[start + 4] = n >>> 24;
  }
  return p;
}

/** `stringAt` for a string with a code unit above 255: two bytes a unit, little-endian. */
function wideAt(b: Uint8Array, start: number, s: string, oneByteLength: boolean): number {
  const n = s.length;
  let p = start;
  if (oneByteLength) {
    b[p++] = T_SHORT16;
    b[p++] = n;
  } else {
    b[p++] = T_STR16;
    b[p++] = n;
    b[p++] = n >>> 8;
    b[p++] = n >>> 16;
    b[p++] = n >>> 24;
  }
  for (let i = 0; i < n; i++) {
    const c = s.charCodeAt(i);
    b[p++] = c & 0xff;
    b[p++] = c >>> 8;
  }
  return p;
}

function bytes(tag: number, from: Uint8Array): void {
  header(tag, from.length);
  reserve(from.length);
  buf.set(from, pos);
  pos += from.length;
}

/** The argument being encoded, for messages: `argument 2`, or `this`. */
function where(): string {
  return arg < 0 ? "this" : `argument ${arg}`;
}

function identity(value: WeakKey | symbol): void {
  if (sharedForm) {
    const hint = arg < 0
      ? "; give the method a `key` option to key a shared cache on its arguments only"
      : "";
    throw new TypeError(
      `Cannot use ${where()} (${
        describe(value)
      }) as a key of a shared cache: only primitives, arrays, plain objects, Date, Uint8Array and ArrayBuffer have a value that other processes can see${hint}`,
    );
  }
  if (typeof value === "symbol" && Symbol.keyFor(value) !== undefined) {
    // Registered symbols cannot be WeakMap keys; they are global, so their key names them.
    u8(T_SYMBOL_FOR);
    string(Symbol.keyFor(value)!);
    return;
  }
  reserve(9);
  buf[pos] = T_REF;
  f64At(pos + 1, refId(value as WeakKey));
  pos += 9;
}

/**
 * Checks a container about to be written: a `TypeError` if it is one of its ancestors (a
 * cycle) or nested deeper than {@linkcode MAX_KEY_DEPTH}. The stack holds the ancestors
 * whose child is being written: a container pushes itself (`push`) only before writing a
 * child that is an object, so one whose values are all primitives costs no push nor pop.
 */
function check(value: object): void {
  const depth = stack.length - stackBase;
  if (depth === 0) return;
  if (stack.includes(value, stackBase)) {
    throw new TypeError(
      `Cannot use a cyclic value in ${where()} as a cache key: ${describe(value)} contains itself`,
    );
  }
  if (depth >= MAX_KEY_DEPTH) {
    throw new TypeError(
      `Cannot use ${where()} as a cache key: nested deeper than ${MAX_KEY_DEPTH} levels`,
    );
  }
}

/**
 * Writes `v`, a value inside container `parent` (which `pushed` says is on the stack):
 * an int32 or a short string here, anything else through `value`, after pushing `parent`
 * when `v` is an object. Returns whether `parent` is on the stack now.
 */
function child(parent: object, pushed: boolean, v: unknown): boolean {
  if (typeof v === "number" && (v | 0) === v) {
    reserve(5);
    const p = pos;
    buf[p] = T_INT32;
    buf[p + 1] = v;
    buf[p + 2] = v >> 8;
    buf[p + 3] = v >> 16;
    buf[p + 4] = v >> 24;
    pos = p + 5;
    return pushed;
  }
  if (typeof v === "string") {
    string(v);
    return pushed;
  }
  if (!pushed && typeof v === "object" && v !== null) {
    stack.push(parent);
    pushed = true;
  }
  value(v);
  return pushed;
}

/** Writes one value of the key. */
function value(v: unknown): void {
  switch (typeof v) {
    case "number":
      return number(v);
    case "string":
      return string(v);
    case "boolean":
      return u8(v ? T_TRUE : T_FALSE);
    case "undefined":
      return u8(T_UNDEFINED);
    case "bigint":
      u8(T_BIGINT);
      return string(v.toString(16));
    case "symbol":
    case "function":
      return identity(v);
  }
  if (v === null) return u8(T_NULL);
  const o = v as object;
  if (Array.isArray(o)) {
    check(o);
    header(T_ARRAY, o.length);
    let pushed = false;
    for (let i = 0; i < o.length; i++) pushed = child(o, pushed, o[i]);
    if (pushed) stack.pop();
    return;
  }
  // Plain objects before the `instanceof` checks: the most common object argument costs
  // one prototype read instead of three prototype-chain walks.
  const proto = Object.getPrototypeOf(o);
  if (proto === Object.prototype || proto === null) return plainObject(o);
  if (o instanceof Uint8Array) return bytes(T_U8, o);
  if (o instanceof Date) {
    reserve(9);
    buf[pos] = T_DATE;
    const t = o.getTime();
    f64At(pos + 1, t === t ? t : NaN);
    pos += 9;
    return;
  }
  if (o instanceof ArrayBuffer) return bytes(T_ARRAY_BUFFER, new Uint8Array(o));
  return identity(o);
}

/**
 * Writes a plain object: its keys are listed once (`Object.keys`) and looked up in the
 * shape table; the memory form writes the shape number when the key set has one, else
 * (both forms) the header and the names, each name followed by its value. Values are read
 * once each, in sorted key order.
 */
function plainObject(o: object): void {
  check(o);
  const keys = Object.keys(o);
  const n = keys.length;
  if (n === 0) {
    header(T_OBJECT, 0);
    return;
  }
  // The last shape is checked here first: a method call less when objects of one shape
  // follow each other (measured 5-10 ns of a 100 ns object key).
  let shape = lastShape;
  if (shape === undefined || lastTable !== shapes || !sameKeys(keys, shape.listed)) {
    shape = lastShape = shapes.shapeOf(keys);
    lastTable = shapes;
  }
  const sorted = shape.sorted;
  const rec = o as Record<string, unknown>;
  let pushed = false;
  if (!sharedForm && shape.number >= 0) {
    reserve(3);
    const p = pos;
    buf[p] = T_SHAPE;
    buf[p + 1] = shape.number;
    buf[p + 2] = shape.number >>> 8;
    pos = p + 3;
    for (let i = 0; i < n; i++) pushed = child(o, pushed, rec[sorted[i]!]);
  } else if (!sharedForm) {
    header(T_OBJECT, n);
    for (let i = 0; i < n; i++) {
      const k = sorted[i]!;
      string(k);
      pushed = child(o, pushed, rec[k]);
    }
  } else {
    const { bytes, ends } = shape;
    let from = 0;
    for (let i = 0; i < n; i++) {
      const to = ends[i]!;
      reserve(to - from);
      const b = buf;
      let p = pos;
      for (let j = from; j < to; j++) b[p++] = bytes[j]!;
      pos = p;
      from = to;
      pushed = child(o, pushed, rec[sorted[i]!]);
    }
  }
  if (pushed) stack.pop();
}

/** Writes a call's key: the receiver (when `withThis`), the arity, each argument. */
function writeCall(thisArg: unknown, withThis: boolean, args: ArrayLike<unknown>): void {
  if (withThis) {
    arg = -1;
    u8(T_THIS);
    value(thisArg);
  }
  const n = args.length;
  reserve(6);
  buf[pos++] = T_ARGS;
  if (n < 255) {
    buf[pos++] = n;
  } else {
    buf[pos++] = 255;
    buf[pos++] = n;
    buf[pos++] = n >>> 8;
    buf[pos++] = n >>> 16;
    buf[pos++] = n >>> 24;
  }
  for (let i = 0; i < n; i++) {
    arg = i;
    const v = args[i];
    if (typeof v === "number" && (v | 0) === v) {
      // Fast path: int32 (with -0 folded into 0), little-endian, as `number` writes it.
      reserve(5);
      const p = pos;
      buf[p] = T_INT32;
      buf[p + 1] = v;
      buf[p + 2] = v >> 8;
      buf[p + 3] = v >> 16;
      buf[p + 4] = v >> 24;
      pos = p + 5;
    } else if (typeof v === "string") {
      string(v);
    } else {
      value(v);
    }
  }
}

/** Values (and, for a new shape, keys) of objects being written by the flat path, from
 * index 0 to `scratchTop`. */
const scratch: unknown[] = [];
const scratchKeys: string[] = [];
let scratchTop = 0;
const NO_KEYS: readonly string[] = [];
const hasOwnProperty = Object.prototype.hasOwnProperty;

/**
 * The prototype of object `o` (not an array), for the key writer's flat path and the
 * TypeScript store's lookup by values (`src/store/_args_index.ts`). A named load of `o`
 * comes first: V8 then knows its map from the load's check and reads the prototype from it,
 * where `Object.getPrototypeOf` is otherwise a call of about 20 ns (README, "Keys": an
 * object argument's `constructor` is read). Callers keep arrays out, so that they add no
 * map to the load's (V8 keeps up to four).
 */
export function prototypeOf(o: object): object | null {
  void (o as { constructor: unknown }).constructor;
  return Object.getPrototypeOf(o);
}

/**
 * A growable byte buffer that keys are written into. One instance is reused for every
 * call; a nested encode (a getter that calls a cached function while its key is being
 * encoded) gets a fresh one.
 */
export class KeyWriter implements KeyBytes {
  /** The bytes written so far are `buf.subarray(0, pos)`. */
  buf: Uint8Array;
  /** Number of bytes written. */
  pos = 0;
  /** Shared form (and identity-keyed values refused), else the memory form. */
  readonly #shared: boolean;
  readonly #shapes: ShapeTable;
  /** Whether an encode is under way (reentrancy guard). */
  busy = false;
  #ptr: Deno.PointerValue | undefined;

  /**
   * @param capacity Initial size in bytes.
   * @param shared Whether to write the shared form and refuse identity-keyed values
   * (shared backend, remote tier), else the memory form (see the module doc).
   * @param shapeTable The shape table (tests give their own; default: the process's).
   */
  constructor(capacity = 256, shared = false, shapeTable: ShapeTable = processShapes) {
    this.buf = new Uint8Array(capacity);
    this.#shared = shared;
    this.#shapes = shapeTable;
  }

  /** Length of the key last written (the {@linkcode KeyBytes} view of the writer). */
  get len(): number {
    return this.pos;
  }

  /**
   * The address of {@linkcode KeyWriter.buf}, taken once per buffer (needs `--allow-ffi`).
   * The writer keeps the buffer alive, so the pointer stays valid until the buffer grows.
   */
  pointer(): Deno.PointerValue {
    if (this.#ptr === undefined) this.#ptr = Deno.UnsafePointer.of(this.buf);
    return this.#ptr;
  }

  /**
   * Encodes a call: the receiver (when `withThis`), then the arity, then each argument.
   * Resets the buffer first. Returns the number of bytes written (`pos`).
   *
   * @throws {TypeError} If an argument is cyclic, nested too deeply, or (shared backend)
   * keyed by identity.
   */
  call(thisArg: unknown, withThis: boolean, args: ArrayLike<unknown>): number {
    if (!withThis) {
      const len = this.#flatCall(args);
      if (len >= 0) return len;
    }
    if (encoding) return this.#nestedCall(thisArg, withThis, args);
    encoding = true;
    buf = this.buf;
    pos = 0;
    sharedForm = this.#shared;
    shapes = this.#shapes;
    // Left over by an encode that threw: nothing is under way, so nothing is needed.
    if (stack.length !== 0) stack.length = 0;
    stackBase = 0;
    try {
      writeCall(thisArg, withThis, args);
    } finally {
      encoding = false;
      this.#keep();
    }
    return this.pos;
  }

  /**
   * The common call whose arguments are int32 numbers, strings and plain objects of the
   * last shape written (memory form), written straight into this writer's buffer: the
   * length written, or -1 (nothing written, no property read) for any other call. Measured
   * (interleaved rounds): two ints 18 ns and a string and an int 31 ns, against 31 and
   * 47 ns through the module state that the general walk sets up; `{ id, kind }` 93-107
   * ns against 136-213 ns (`JSON.stringify` of it: 113-132 ns).
   *
   * An object qualifies before any of its values is read (its prototype, and its keys as
   * `for-in` lists them, against the last shape's); from then on the call is committed:
   * a value of another kind, or a later argument that does not qualify, is written by the
   * general walk, so that every getter is read once.
   */
  #flatCall(args: ArrayLike<unknown>): number {
    const n = args.length;
    if (n >= 255) return -1;
    let b = this.buf;
    const short = !this.#shared;
    b[0] = T_ARGS;
    b[1] = n;
    let p = 2;
    for (let i = 0; i < n; i++) {
      // Read once here: an element getter of a hand-made `args` answers once per encode.
      const v = args[i];
      if (typeof v === "number" && (v | 0) === v) {
        if (p + 5 > b.length) b = this.#grow(p, 5);
        // int32 (with -0 folded into 0), little-endian, as `number` writes it.
        b[p] = T_INT32;
        b[p + 1] = v;
        b[p + 2] = v >> 8;
        b[p + 3] = v >> 16;
        b[p + 4] = v >> 24;
        p += 5;
      } else if (typeof v === "string") {
        if (p + 5 + 2 * v.length > b.length) b = this.#grow(p, 5 + 2 * v.length);
        p = stringAt(b, p, v, short);
      } else {
        // Kept out of this loop, which stays as small as the common call needs.
        return short ? this.#flatRest(args, i, v, p) : -1;
      }
    }
    this.pos = p;
    return p;
  }

  /**
   * {@linkcode KeyWriter.#flatCall} (memory form) from argument `i`, already read as `v`,
   * at `p`: plain objects by {@linkcode KeyWriter.#flatObject} (the call is then
   * committed), other values in place, or by the general walk once committed; -1 (nothing
   * read but the arguments and, of an object, its prototype) when the call is not taken.
   */
  #flatRest(args: ArrayLike<unknown>, i: number, v: unknown, p: number): number {
    const n = args.length;
    let committed = false;
    for (;;) {
      const kind = typeof v;
      if (kind === "object" && v !== null) {
        const proto = Array.isArray(v) ? undefined : prototypeOf(v as object);
        if (proto === Object.prototype || proto === null) {
          committed = true;
          p = this.#flatObject(p, v as object, proto, i);
        } else if (!committed) {
          return -1;
        } else {
          p = this.#general(p, v, i, undefined);
        }
      } else if (kind === "function" || kind === "symbol" || kind === "bigint") {
        if (!committed) return -1;
        p = this.#general(p, v, i, undefined);
      } else {
        p = this.#flatValue(p, v, i, undefined);
      }
      if (++i === n) break;
      v = args[i];
    }
    this.pos = p;
    return p;
  }

  /**
   * Writes the key of a call of one plain object of shape `number` (memory form) whose
   * values, in sorted key order, are `key[1..]`, all primitives (numbers, strings,
   * booleans, `null`, `undefined`): the bytes that {@linkcode KeyWriter.call} writes for
   * such a call, without reading the object. Returns the length written.
   *
   * @throws {Error} If the writer writes the shared form, which names the object's keys.
   */
  shapedCall(number: number, key: readonly unknown[]): number {
    if (this.#shared) throw new Error("KeyWriter.shapedCall: the shared form has no shape numbers");
    let b = this.buf;
    if (b.length < 5) b = this.#grow(0, 5);
    b[0] = T_ARGS;
    b[1] = 1;
    b[2] = T_SHAPE;
    b[3] = number;
    b[4] = number >>> 8;
    let p = 5;
    for (let i = 1; i < key.length; i++) p = this.#flatValue(p, key[i], 0, undefined);
    this.pos = p;
    return p;
  }

  /** Grows the buffer to hold `need` more bytes at `p`, keeping `[0, p)`; returns it. */
  #grow(p: number, need: number): Uint8Array {
    let size = this.buf.length * 2;
    while (size < p + need) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, p));
    this.buf = next;
    this.#ptr = undefined;
    return next;
  }

  /**
   * Writes plain object `o` (prototype `proto`; argument `arg`) at `p`, as the walk
   * writes it: its keys and values read in one `for-in`, each value once, compared on the
   * way with the last shape's keys; then the shape (number, or header and names) and the
   * values in sorted key order. Keys that `for-in` lists after the own ones (inherited
   * enumerable keys) are left out; a key deleted by a getter meanwhile is not listed.
   * Returns where it ends.
   */
  #flatObject(p: number, o: object, proto: object | null, arg: number): number {
    const rec = o as Record<string, unknown>;
    const last = lastTable === this.#shapes ? lastShape : undefined;
    const listed = last !== undefined ? last.listed : NO_KEYS;
    // A getter may encode another key meanwhile: it takes the scratch list past ours.
    const base = scratchTop;
    let n = 0;
    let same = true;
    try {
      for (const k in rec) {
        // `for-in` lists inherited enumerable keys after the own ones; `hasOwnProperty` of
        // the key it gives costs nothing in V8 while no prototype has enumerable keys.
        if (same && (listed[n] !== k || !hasOwnProperty.call(rec, k))) {
          same = false;
          for (let i = 0; i < n; i++) scratchKeys[base + i] = listed[i]!;
        }
        if (!same) scratchKeys[base + n] = k;
        scratchTop = base + n + 1;
        scratch[base + n] = rec[k];
        n++;
      }
      if (!same || n !== listed.length || n === 0) {
        if (same) { for (let i = 0; i < n; i++) scratchKeys[base + i] = listed[i]!; }
        return this.#newShape(p, o, proto, base, n, arg);
      }
      return this.#shaped(p, o, last!, base, arg);
    } finally {
      for (let i = base; i < base + n; i++) scratch[i] = undefined;
      scratchTop = base;
    }
  }

  /** Writes object `o` of `shape`, its values at `scratch[base + i]` in listed order. */
  #shaped(p: number, o: object, shape: Shape, base: number, arg: number): number {
    const n = shape.listed.length;
    const order = shape.order;
    let b = this.buf;
    if (shape.number >= 0) {
      if (p + 3 > b.length) b = this.#grow(p, 3);
      b[p] = T_SHAPE;
      b[p + 1] = shape.number;
      b[p + 2] = shape.number >>> 8;
      p += 3;
      for (let j = 0; j < n; j++) p = this.#flatValue(p, scratch[base + order[j]!], arg, o);
      return p;
    }
    if (p + 5 > b.length) b = this.#grow(p, 5);
    b[p] = T_OBJECT;
    b[p + 1] = n;
    b[p + 2] = n >>> 8;
    b[p + 3] = n >>> 16;
    b[p + 4] = n >>> 24;
    p += 5;
    const sorted = shape.sorted;
    for (let j = 0; j < n; j++) {
      const k = sorted[j]!;
      if (p + 5 + 2 * k.length > this.buf.length) this.#grow(p, 5 + 2 * k.length);
      p = stringAt(this.buf, p, k, true);
      p = this.#flatValue(p, scratch[base + order[j]!], arg, o);
    }
    return p;
  }

  /** {@linkcode KeyWriter.#flatObject} for an object of another shape than the last:
   * its own keys are those at `scratchKeys[base ..]` (of `n`) that it has. */
  #newShape(
    p: number,
    o: object,
    proto: object | null,
    base: number,
    n: number,
    arg: number,
  ): number {
    let own = n;
    if (proto !== null) {
      // Own keys come first: drop the inherited ones after them.
      while (own > 0 && !Object.hasOwn(o, scratchKeys[base + own - 1]!)) own--;
    }
    if (own === 0) {
      if (p + 5 > this.buf.length) this.#grow(p, 5);
      const b = this.buf;
      b[p] = T_OBJECT;
      b[p + 1] =
        b[p + 2] =
        b[p + 3] =
        b[p + 4] =
          0;
      return p + 5;
    }
    const shape = this.#shapes.shapeOf(scratchKeys.slice(base, base + own));
    lastShape = shape;
    lastTable = this.#shapes;
    return this.#shaped(p, o, shape, base, arg);
  }

  /** Writes value `v` (of object `o`, or argument `arg` itself) at `p`: a number, a string, a
   * boolean, `null` or `undefined` here (as the walk writes them), anything else through
   * the general walk. Returns where it ends. */
  #flatValue(p: number, v: unknown, arg: number, o: object | undefined): number {
    let b = this.buf;
    if (p + 9 > b.length) b = this.#grow(p, 9);
    if (typeof v === "number") {
      if ((v | 0) === v) {
        b[p] = T_INT32;
        b[p + 1] = v;
        b[p + 2] = v >> 8;
        b[p + 3] = v >> 16;
        b[p + 4] = v >> 24;
        return p + 5;
      }
      b[p] = T_F64;
      // Every NaN is written as the canonical quiet NaN: NaN equals NaN.
      f64[0] = v === v ? v : NaN;
      for (let i = 0; i < 8; i++) b[p + 1 + i] = f64Bytes[LITTLE_ENDIAN ? i : 7 - i]!;
      return p + 9;
    }
    if (typeof v === "string") {
      if (p + 5 + 2 * v.length > b.length) b = this.#grow(p, 5 + 2 * v.length);
      return stringAt(b, p, v, true);
    }
    if (typeof v === "boolean") {
      b[p] = v ? T_TRUE : T_FALSE;
      return p + 1;
    }
    if (v === null || v === undefined) {
      b[p] = v === null ? T_NULL : T_UNDEFINED;
      return p + 1;
    }
    return this.#general(p, v, arg, o);
  }

  /**
   * Writes `v` (in argument `argIndex`, inside container `parent` if any) at `p` with the
   * general walk, for the flat path; saves and restores the state of an encode under way
   * (the flat path may run inside one: a getter calling a cached function). Returns where
   * it ends.
   */
  #general(p: number, v: unknown, argIndex: number, parent: object | undefined): number {
    const outerEncoding = encoding;
    const outerBuf = buf;
    const outerPos = pos;
    const outerShared = sharedForm;
    const outerShapes = shapes;
    const outerArg = arg;
    const outerBase = stackBase;
    encoding = true;
    buf = this.buf;
    pos = p;
    sharedForm = this.#shared;
    shapes = this.#shapes;
    arg = argIndex;
    stackBase = stack.length;
    try {
      if (parent !== undefined && typeof v === "object" && v !== null) stack.push(parent);
      value(v);
      this.#keep();
    } finally {
      if (stack.length !== stackBase) stack.length = stackBase;
      encoding = outerEncoding;
      buf = outerBuf;
      pos = outerPos;
      sharedForm = outerShared;
      shapes = outerShapes;
      arg = outerArg;
      stackBase = outerBase;
    }
    return this.pos;
  }

  /** Stores the module's buffer and position back into this writer. */
  #keep(): void {
    if (buf !== this.buf) {
      this.buf = buf;
      this.#ptr = undefined;
    }
    this.pos = pos;
  }

  /** `call` while another encode is under way (a getter of its key called a cached
   * function): saves the outer encode's state, and restores it whatever happens. */
  #nestedCall(thisArg: unknown, withThis: boolean, args: ArrayLike<unknown>): number {
    const outerBuf = buf;
    const outerPos = pos;
    const outerShared = sharedForm;
    const outerShapes = shapes;
    const outerArg = arg;
    const outerBase = stackBase;
    buf = this.buf;
    pos = 0;
    sharedForm = this.#shared;
    shapes = this.#shapes;
    stackBase = stack.length;
    try {
      writeCall(thisArg, withThis, args);
    } finally {
      this.#keep();
      if (stack.length !== stackBase) stack.length = stackBase;
      buf = outerBuf;
      pos = outerPos;
      sharedForm = outerShared;
      shapes = outerShapes;
      arg = outerArg;
      stackBase = outerBase;
    }
    return this.pos;
  }
}

/**
 * Encodes `args` (with `thisArg` first when `withThis`) to a fresh byte array; for tests
 * and direct use. The hot path uses a reused {@linkcode KeyWriter} instead.
 *
 * @param args The arguments of a call.
 * @param options `shared` refuses identity-keyed values; `thisArg` adds a receiver.
 * @returns The encoded key.
 * @throws {TypeError} If an argument is cyclic, too deep, or not shareable.
 */
export function encodeKey(
  args: readonly unknown[],
  options: { shared?: boolean; thisArg?: unknown } = {},
): Uint8Array {
  const w = new KeyWriter(64, options.shared ?? false);
  const len = w.call(options.thisArg, "thisArg" in options, args);
  return w.buf.slice(0, len);
}

/**
 * Turns key bytes into a string usable as a `Map` key, one char per byte (lossless).
 */
export function bytesToKeyString(bytes: Uint8Array, len: number): string {
  let s = "";
  const CHUNK = 4096;
  for (let i = 0; i < len; i += CHUNK) {
    s += String.fromCharCode.apply(
      null,
      bytes.subarray(i, Math.min(len, i + CHUNK)) as unknown as number[],
    );
  }
  return s;
}
