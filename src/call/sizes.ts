/**
 * The sizes of entries under a memory cache's byte budget (`maxBytes`): the `sizeOf`
 * option, or the default measure.
 *
 * @module
 */

import { encodeValue } from "../codec/value_codec.ts";
import { describe } from "../options/_validate.ts";

/**
 * The default size in bytes of `value`: a string 2 bytes a code unit, a typed array,
 * `DataView` or `ArrayBuffer` its byte length, any other value the length of its encoding
 * by the shared backend's value codec.
 *
 * @throws {TypeError} If the value codec cannot encode `value` (a class instance, say):
 * the message says to give `sizeOf`.
 */
export function defaultSizeOf(value: unknown): number {
  if (typeof value === "string") return 2 * value.length;
  if (ArrayBuffer.isView(value)) return value.byteLength;
  if (value instanceof ArrayBuffer) return value.byteLength;
  try {
    return encodeValue(value, false).length;
  } catch (e) {
    throw new TypeError(
      `Cannot size the entry for maxBytes: the value codec cannot encode it (${
        e instanceof Error ? e.message : String(e)
      }); give the sizeOf option`,
      { cause: e },
    );
  }
}

/** The function that sizes entries of a cache with `maxBytes`: `sizeOf(value, ...args)`
 * (its result checked and rounded up), else the default measure. */
export function sizer(
  sizeOf: ((value: never, ...args: never[]) => number) | undefined,
): (value: unknown, args: unknown[]) => number {
  if (sizeOf === undefined) return (value) => defaultSizeOf(value);
  const f = sizeOf as (value: unknown, ...args: unknown[]) => unknown;
  return (value, args) => {
    const n = f(value, ...args);
    if (typeof n !== "number") {
      throw new TypeError(
        `Cannot size the entry for maxBytes: sizeOf must return a number of bytes: received ${
          describe(n)
        }`,
      );
    }
    if (!(n >= 0) || !Number.isFinite(n)) {
      throw new RangeError(
        `Cannot size the entry for maxBytes: sizeOf must return a finite, non-negative number of bytes: received ${n}`,
      );
    }
    return Math.ceil(n);
  };
}
