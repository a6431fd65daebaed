/**
 * The error class of the native library's failures, and `unwrap` for status codes.
 *
 * @module
 */

import { nativeLastError } from "./ffi.ts";

/** Status codes of `rust/src/error.rs`. */
export const Status = {
  Ok: 0,
  Miss: -1,
  InvalidArgument: -2,
  Io: -3,
  Panic: -4,
  Corrupt: -5,
  TooLarge: -6,
  BufferTooSmall: -7,
  Busy: -8,
} as const;

/** A failure reported by the native library, with its status code. */
export class CacheError extends Error {
  override name = "CacheError";
  /** The negative status code returned by the native call. */
  code: number;

  /**
   * @param code Status code.
   * @param message Message (the library's last error by default).
   */
  constructor(code: number, message: string) {
    super(message);
    this.code = code;
  }
}

/**
 * Returns `code` when it is not an error (`>= -1`), else throws a {@linkcode CacheError}
 * with the library's last error message.
 *
 * @throws {CacheError} If `code` is a negative status other than `Miss`.
 */
export function unwrap(code: number, what: string): number {
  if (code >= Status.Miss) return code;
  throw new CacheError(code, `${what} failed (status ${code}): ${nativeLastError()}`);
}
