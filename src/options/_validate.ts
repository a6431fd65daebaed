/**
 * Checks shared by every option parser: `cache()`, `SieveCache` and the TypeScript store.
 * Messages follow `Cannot create <owner>: <what>: received <value>`.
 *
 * @module
 */

/**
 * Renders an option value for an error message without ever throwing: strings quoted,
 * bigints with `n`, functions by name (not their source), objects as JSON when they can be.
 */
export function describe(value: unknown): string {
  if (typeof value === "string") return JSON.stringify(value);
  if (typeof value === "bigint") return `${value}n`;
  if (typeof value === "function") return `function ${value.name || "(anonymous)"}`;
  if (typeof value === "symbol") return value.toString();
  if (value !== null && typeof value === "object") {
    try {
      return JSON.stringify(value) ?? String(value);
    } catch {
      return Object.prototype.toString.call(value);
    }
  }
  return String(value);
}

/**
 * Checks a `maxSize` option: a positive integer or `Infinity`.
 *
 * @throws {TypeError} If `value` is not a number.
 * @throws {RangeError} If `value` is not a positive integer nor `Infinity`.
 */
export function checkMaxSize(owner: string, value: unknown): number {
  if (typeof value !== "number") {
    throw new TypeError(
      `Cannot create ${owner}: maxSize must be a positive integer or Infinity: received ${
        describe(value)
      }`,
    );
  }
  if (!(value === Infinity || (Number.isInteger(value) && value > 0))) {
    throw new RangeError(
      `Cannot create ${owner}: maxSize must be a positive integer or Infinity: received ${value}`,
    );
  }
  return value;
}

/**
 * Checks a `ttl` option: `undefined`, or a positive finite number of milliseconds.
 *
 * @throws {TypeError} If `value` is neither `undefined` nor a number.
 * @throws {RangeError} If `value` is 0, negative, `NaN` or infinite.
 */
export function checkTtl(owner: string, value: unknown): number | undefined {
  return checkMs(owner, "ttl", value);
}

/**
 * Checks an option of milliseconds: positive and finite, or `undefined`.
 *
 * @throws {TypeError} If `value` is not a number.
 * @throws {RangeError} If `value` is 0, negative, `NaN` or infinite.
 */
export function checkMs(owner: string, option: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  if (typeof value !== "number") {
    throw new TypeError(
      `Cannot create ${owner}: ${option} must be a positive finite number of milliseconds: received ${
        describe(value)
      }`,
    );
  }
  if (!(Number.isFinite(value) && value > 0)) {
    throw new RangeError(
      `Cannot create ${owner}: ${option} must be a positive finite number of milliseconds: received ${value}`,
    );
  }
  return value;
}

/**
 * Checks the own TTL of an entry given to a store's `set`: a positive number of ms, or
 * `Infinity` for never (`undefined`, the store's, is not checked here).
 *
 * @throws {TypeError} If `value` is not a number.
 * @throws {RangeError} If `value` is 0, negative or `NaN`.
 */
export function checkEntryTtl(owner: string, value: unknown): number {
  if (typeof value !== "number") {
    throw new TypeError(
      `Cannot store in ${owner}: ttl must be a positive number of milliseconds or Infinity: received ${
        describe(value)
      }`,
    );
  }
  if (!(value > 0)) {
    throw new RangeError(
      `Cannot store in ${owner}: ttl must be a positive number of milliseconds or Infinity: received ${value}`,
    );
  }
  return value;
}

/**
 * Checks the byte budget of a memory store: `undefined` (none) or a positive integer of
 * bytes.
 *
 * @throws {TypeError} If `value` is neither `undefined` nor a number.
 * @throws {RangeError} If `value` is not a positive safe integer.
 */
export function checkMemoryMaxBytes(owner: string, value: unknown): number | undefined {
  if (value === undefined) return undefined;
  const what = "maxBytes must be a positive integer of bytes";
  if (typeof value !== "number") {
    throw new TypeError(`Cannot create ${owner}: ${what}: received ${describe(value)}`);
  }
  if (!(Number.isSafeInteger(value) && value > 0)) {
    throw new RangeError(`Cannot create ${owner}: ${what}: received ${value}`);
  }
  return value;
}

/**
 * Checks the size of an entry given to a memory store's `set` under a byte budget: a
 * non-negative integer of bytes (`undefined`: 0).
 *
 * @throws {TypeError} If `value` is neither `undefined` nor a number.
 * @throws {RangeError} If `value` is negative, fractional, `NaN` or infinite.
 */
export function checkEntrySize(owner: string, value: unknown): number {
  if (value === undefined) return 0;
  const what = "size must be a non-negative integer of bytes";
  if (typeof value !== "number") {
    throw new TypeError(`Cannot store in ${owner}: ${what}: received ${describe(value)}`);
  }
  if (!(Number.isSafeInteger(value) && value >= 0)) {
    throw new RangeError(`Cannot store in ${owner}: ${what}: received ${value}`);
  }
  return value;
}

/** The longest delay of a timer, in ms: a larger one (a signed 32-bit int in Deno, as in
 * Node and browsers) fires after 1 ms. Options that become timers stop here. */
export const LONGEST_TIMER_MS = 2 ** 31 - 1;

/** Whether `ms` (a positive number) fits a timer: at most {@linkcode LONGEST_TIMER_MS}. */
export function fitsTimer(ms: number): boolean {
  return ms <= LONGEST_TIMER_MS;
}
