/**
 * What the stores know of tags (README, "Tags"): the stored form of an entry with tags,
 * and the clock of tag invalidations its entries are checked against. The memory stores
 * keep a {@linkcode Tagged} object as is (the TypeScript store also keeps its epoch beside it,
 * so that a hit by arguments compares one number: `getArgsTagged`); the shared store writes it as an envelope
 * around the value's own bytes and reads it back (`_tag_envelope.ts`).
 *
 * @module
 */

/** A clock of tag invalidations (see `call/tags.ts`). */
export interface TagClock {
  /** Invalidations so far: the epoch an entry records when its computation starts.
   * `NaN` while the clock cannot be read (every entry is then invalid). */
  readonly epoch: number;
  /**
   * Whether one of an entry's tags was invalidated after epoch `at` (or `at` is not an
   * epoch of this clock: `NaN`). `hashes`: the tags' 64-bit hashes (pairs of `u32`, low
   * then high), for entries read back from a shared file, which keep no strings (an
   * array, not a `Uint32Array`: a typed array costs about 400 ns to allocate in Deno
   * 2.9.6, a plain one 20).
   */
  invalidSince(tags: readonly string[], at: number, hashes?: readonly number[]): boolean;
  /** Invalidates `tags` now: every entry carrying one of them and stored before is a miss. */
  invalidate(tags: readonly string[]): void;
}

/** The stored form of an entry with tags: its value (a hit's form: a Promise for an async
 * result), its tags, and the epoch its computation started at (moved forward by hits that
 * found it still valid). An entry read from a shared file has its tags' hashes instead of
 * their strings. */
export class Tagged {
  constructor(
    public v: unknown,
    readonly tags: readonly string[],
    public at: number,
    readonly hashes: readonly number[] | undefined = undefined,
  ) {}
}

/**
 * Whether the entry `t` is still valid on `clock`: stored (or last found valid) at the
 * clock's epoch, or none of its tags invalidated since; a valid entry's epoch moves
 * forward to the clock's, so that its next check compares one number.
 */
export function stillValid(t: Tagged, clock: TagClock): boolean {
  const epoch = clock.epoch;
  if (t.at === epoch) return true;
  if (clock.invalidSince(t.tags, t.at, t.hashes)) return false;
  t.at = epoch;
  return true;
}
