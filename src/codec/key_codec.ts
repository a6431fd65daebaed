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
    return `a ${name}`;
  }
  return typeof value;
}

/** The last object shape seen by {@linkcode sortedKeys}: its keys as listed, and sorted. */
let lastKeys: string[] = [];
let lastSorted: string[] = [];

/**
 * Own enumerable string keys of `o`, sorted by code units (as `Array.prototype.sort`).
 * Objects of one shape list their keys in one order, so the last shape's sorted order
 * is reused when the listed keys are the same strings in the same order.
 */
function sortedKeys(o: object): string[] {
  const keys = Object.keys(o);
  const n = keys.length;
  if (n < 2) return keys;
  if (n === lastKeys.length) {
    let same = true;
    for (let i = 0; i < n; i++) {
      if (keys[i] !== lastKeys[i]) {
        same = false;
        break;
      }
    }
    if (same) return lastSorted;
  }
  const sorted = keys.slice();
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
  lastKeys = keys;
  lastSorted = sorted;
  return sorted;
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
  #view: DataView;
  #shared: boolean;
  #stack: object[] = [];
  #arg = 0;
  /** Whether an encode is under way (reentrancy guard). */
  busy = false;
  #ptr: Deno.PointerValue | undefined;

  /**
   * @param capacity Initial size in bytes.
   * @param shared Whether identity-keyed values are refused (shared backend).
   */
  constructor(capacity = 256, shared = false) {
    this.buf = new Uint8Array(capacity);
    this.#view = new DataView(this.buf.buffer);
    this.#shared = shared;
  }

  #reserve(n: number): void {
    const need = this.pos + n;
    if (need <= this.buf.length) return;
    let size = this.buf.length * 2;
    while (size < need) size *= 2;
    const next = new Uint8Array(size);
    next.set(this.buf.subarray(0, this.pos));
    this.buf = next;
    this.#view = new DataView(next.buffer);
    this.#ptr = undefined;
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

  #u8(b: number): void {
    this.#reserve(1);
    this.buf[this.pos++] = b;
  }

  #u32(n: number): void {
    this.#reserve(4);
    this.#view.setUint32(this.pos, n, true);
    this.pos += 4;
  }

  #number(n: number): void {
    if ((n | 0) === n) {
      // Integers in int32 range, with -0 folded into 0 by `| 0` (SameValueZero).
      this.#reserve(5);
      this.buf[this.pos] = T_INT32;
      this.#view.setInt32(this.pos + 1, n, true);
      this.pos += 5;
      return;
    }
    this.#reserve(9);
    this.buf[this.pos] = T_F64;
    // Every NaN is written as the canonical quiet NaN: NaN equals NaN.
    this.#view.setFloat64(this.pos + 1, n === n ? n : NaN, true);
    this.pos += 9;
  }

  #string(s: string): void {
    const n = s.length;
    // Reserve for the one-byte form and write it in one pass; switch to the two-byte
    // form on the first code unit above 255.
    this.#reserve(5 + n);
    const buf = this.buf;
    const start = this.pos;
    let p = start + 5;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      if (c > 255) {
        this.#wideString(s, start);
        return;
      }
      buf[p++] = c;
    }
    buf[start] = T_STR8;
    buf[start + 1] = n;
    buf[start + 2] = n >>> 8;
    buf[start + 3] = n >>> 16;
    buf[start + 4] = n >>> 24;
    this.pos = p;
  }

  #wideString(s: string, start: number): void {
    const n = s.length;
    this.pos = start;
    this.#reserve(5 + 2 * n);
    const buf = this.buf;
    let p = start;
    buf[p] = T_STR16;
    this.#view.setUint32(p + 1, n, true);
    p += 5;
    for (let i = 0; i < n; i++) {
      const c = s.charCodeAt(i);
      buf[p++] = c & 0xff;
      buf[p++] = c >>> 8;
    }
    this.pos = p;
  }

  #bytes(tag: number, bytes: Uint8Array): void {
    this.#u8(tag);
    this.#u32(bytes.length);
    this.#reserve(bytes.length);
    this.buf.set(bytes, this.pos);
    this.pos += bytes.length;
  }

  /** The argument being encoded, for messages: `argument 2`, or `this`. */
  #where(): string {
    return this.#arg < 0 ? "this" : `argument ${this.#arg}`;
  }

  #identity(value: WeakKey | symbol): void {
    if (this.#shared) {
      const hint = this.#arg < 0
        ? "; give the method a `key` option to key a shared cache on its arguments only"
        : "";
      throw new TypeError(
        `Cannot use ${this.#where()} (${
          describe(value)
        }) as a key of a shared cache: only primitives, arrays, plain objects, Date, Uint8Array and ArrayBuffer have a value that other processes can see${hint}`,
      );
    }
    if (typeof value === "symbol" && Symbol.keyFor(value) !== undefined) {
      // Registered symbols cannot be WeakMap keys; they are global, so their key names them.
      this.#u8(T_SYMBOL_FOR);
      this.#string(Symbol.keyFor(value)!);
      return;
    }
    this.#u8(T_REF);
    this.#reserve(8);
    this.#view.setFloat64(this.pos, refId(value as WeakKey), true);
    this.pos += 8;
  }

  #enter(value: object): void {
    if (this.#stack.includes(value)) {
      throw new TypeError(
        `Cannot use a cyclic value in ${this.#where()} as a cache key: ${
          describe(value)
        } contains itself`,
      );
    }
    if (this.#stack.length >= MAX_KEY_DEPTH) {
      throw new TypeError(
        `Cannot use ${this.#where()} as a cache key: nested deeper than ${MAX_KEY_DEPTH} levels`,
      );
    }
    this.#stack.push(value);
  }

  /** Appends the encoding of one value. */
  value(v: unknown): void {
    switch (typeof v) {
      case "number":
        return this.#number(v);
      case "string":
        return this.#string(v);
      case "boolean":
        return this.#u8(v ? T_TRUE : T_FALSE);
      case "undefined":
        return this.#u8(T_UNDEFINED);
      case "bigint":
        this.#u8(T_BIGINT);
        return this.#string(v.toString(16));
      case "symbol":
      case "function":
        return this.#identity(v);
    }
    if (v === null) return this.#u8(T_NULL);
    const o = v as object;
    if (Array.isArray(o)) {
      this.#enter(o);
      this.#u8(T_ARRAY);
      this.#u32(o.length);
      for (let i = 0; i < o.length; i++) this.value(o[i]);
      this.#stack.pop();
      return;
    }
    // Plain objects before the `instanceof` checks: the most common object argument
    // costs one prototype read instead of three prototype-chain walks.
    const proto = Object.getPrototypeOf(o);
    if (proto === Object.prototype || proto === null) {
      this.#enter(o);
      const keys = sortedKeys(o);
      const n = keys.length;
      this.#u8(T_OBJECT);
      this.#u32(n);
      const rec = o as Record<string, unknown>;
      for (let i = 0; i < n; i++) {
        const k = keys[i]!;
        this.#string(k);
        this.value(rec[k]);
      }
      this.#stack.pop();
      return;
    }
    if (o instanceof Uint8Array) return this.#bytes(T_U8, o);
    if (o instanceof Date) {
      this.#u8(T_DATE);
      this.#reserve(8);
      const t = o.getTime();
      this.#view.setFloat64(this.pos, t === t ? t : NaN, true);
      this.pos += 8;
      return;
    }
    if (o instanceof ArrayBuffer) return this.#bytes(T_ARRAY_BUFFER, new Uint8Array(o));
    return this.#identity(o);
  }

  /**
   * Encodes a call: the receiver (when `withThis`), then the arity, then each argument.
   * Resets the buffer first. Returns the number of bytes written (`pos`).
   *
   * @throws {TypeError} If an argument is cyclic, nested too deeply, or (shared backend)
   * keyed by identity.
   */
  call(thisArg: unknown, withThis: boolean, args: ArrayLike<unknown>): number {
    if (this.#stack.length !== 0) this.#stack.length = 0;
    this.pos = 0;
    if (withThis) {
      this.#arg = -1;
      this.#u8(T_THIS);
      this.value(thisArg);
    }
    const n = args.length;
    // Headroom for the arity and every argument as a number (9 bytes at most).
    this.#reserve(6 + 9 * n);
    let buf = this.buf;
    let p = this.pos;
    buf[p++] = T_ARGS;
    if (n < 255) {
      buf[p++] = n;
    } else {
      buf[p++] = 255;
      this.#view.setUint32(p, n, true);
      p += 4;
    }
    for (let i = 0; i < n; i++) {
      const v = args[i];
      if (typeof v === "number" && (v | 0) === v) {
        // Fast path: int32 (with -0 folded into 0), little-endian, as #number writes it.
        buf[p] = T_INT32;
        buf[p + 1] = v;
        buf[p + 2] = v >> 8;
        buf[p + 3] = v >> 16;
        buf[p + 4] = v >> 24;
        p += 5;
        continue;
      }
      this.pos = p;
      this.#arg = i;
      if (typeof v === "string") this.#string(v);
      else this.value(v);
      this.#reserve(9 * (n - i));
      buf = this.buf;
      p = this.pos;
    }
    this.pos = p;
    return p;
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
