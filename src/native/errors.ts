/**
 * The error class of the native library's failures, and `unwrap` for status codes.
 *
 * @module
 */

import { Status } from "./_abi.ts";
import { nativeLastError } from "./ffi.ts";

/**
 * A failure reported by the native library, with its status code: a shared cache file that
 * cannot be opened or created (a symlink, a file of another user, a full file system), or
 * that stays inconsistent after a repair.
 *
 * @example Telling a cache failure apart
 * ```ts
 * import { CacheError } from "@warp/cache";
 * import assert from "node:assert/strict";
 *
 * const e = new CacheError(-3, "Cannot open /dev/shm/x.warp: Permission denied");
 * assert.ok(e instanceof Error);
 * assert.equal(e.name, "CacheError");
 * assert.equal(e.code, -3);
 * ```
 */
export class CacheError extends Error {
  /** `"CacheError"`. */
  override name = "CacheError";
  /** The negative status code returned by the native call (`Status` in `_abi.ts`). */
  code: number;

  /**
   * Creates the error.
   *
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
