/**
 * Tags: an entry carries the tags its computation gave it (the `tags` option, and
 * `cacheContext().tag(...)`), and {@linkcode invalidateTags} makes every entry carrying
 * one of them a miss. An invalidation is a time barrier, never a scan: each clock counts
 * invalidations (its epoch) and remembers, per tag, the epoch of its last one; an entry
 * records the epoch at which its computation started, and is invalid when one of its tags
 * was invalidated after that. A hit checks its tags only when the clock moved since the
 * entry was stored (or last checked), so a cache whose tags are never invalidated pays one
 * comparison a hit.
 *
 * Memory caches use this process's clock; shared caches the clock of their directory,
 * which every process of the machine shares (see `store/shared_tags.ts`); caches with a
 * remote tier also tell the other hosts (the bus).
 *
 * @module
 */

import { describe } from "../options/_validate.ts";
import { stillValid, type TagClock, Tagged } from "../store/tagged.ts";
import { clockOfDirectory } from "../store/shared_tags.ts";
import { defaultSharedDir } from "../store/shared_store.ts";

export { stillValid, type TagClock, Tagged };

/** Most tags whose epochs a process clock remembers one by one; past it, the older half is
 * forgotten and every entry older than the newest forgotten epoch is invalid (a miss where
 * it might have been a hit; never a hit that should be a miss). */
const MAX_REMEMBERED = 100_000;

/** This process's clock, for memory caches. */
export class ProcessTagClock implements TagClock {
  epoch = 0;
  /** Entries older than this are invalid (tags forgotten, see `MAX_REMEMBERED`). */
  #floor = 0;
  readonly #tags = new Map<string, number>();

  invalidSince(tags: readonly string[], at: number): boolean {
    if (!(at >= this.#floor)) return true; // NaN too: not an epoch of this clock
    for (const t of tags) {
      const e = this.#tags.get(t);
      if (e !== undefined && e > at) return true;
    }
    return false;
  }

  invalidate(tags: readonly string[]): void {
    const e = ++this.epoch;
    for (const t of tags) {
      this.#tags.delete(t); // re-inserted last: the map stays in epoch order
      this.#tags.set(t, e);
    }
    if (this.#tags.size > MAX_REMEMBERED) this.#forget();
  }

  #forget(): void {
    let n = this.#tags.size >> 1;
    for (const [t, e] of this.#tags) {
      if (n-- <= 0) break;
      this.#tags.delete(t);
      if (e > this.#floor) this.#floor = e;
    }
  }
}

/** The clock of this process's memory caches. */
export const processTags: ProcessTagClock = new ProcessTagClock();

/** Other clocks that {@linkcode invalidateTags} reaches: the directories of this process's
 * shared caches, and the remote tiers of its caches (which tell other hosts). */
const reached = new Set<{ invalidate(tags: readonly string[]): void }>();

/** Makes `clock` reached by {@linkcode invalidateTags} (once per clock); returns the
 * function that stops it. */
export function reachTags(clock: { invalidate(tags: readonly string[]): void }): () => void {
  reached.add(clock);
  return () => reached.delete(clock);
}

/**
 * Invalidates tags: every entry carrying one of them, in every cache of this process, is a
 * miss from now on; for shared caches in every process of the machine at once (the times
 * live in a file of their directory, which every process reads), and for caches with a
 * remote tier on every host (the bus carries the tags, and remote entries carrying them
 * read as misses). A time barrier, never a scan: entries stored after this call are hits.
 * A stale value of an invalidated entry is never served (`staleWhileRevalidate`,
 * `staleIfError`).
 *
 * @param tags The tags to invalidate (strings).
 * @throws {TypeError} If a tag is not a string, or has a lone surrogate.
 * @throws {CacheError} If the tag clock of a directory of shared caches cannot be written
 * (its file was replaced and cannot be opened again); every other cache was reached.
 *
 * @example Invalidate a user's entries in every cache
 * ```ts
 * import { cache, invalidateTags } from "@warp/cache";
 * import assert from "node:assert/strict";
 *
 * let loads = 0;
 * const profile = cache({ tags: (id: number) => [`user:${id}`] })((id: number) => {
 *   loads++;
 *   return { id, name: `user ${id}` };
 * });
 * profile(1);
 * profile(1);
 * invalidateTags("user:1");
 * profile(1);
 * assert.equal(loads, 2);
 * ```
 */
export function invalidateTags(...tags: string[]): void {
  checkTags("Cannot invalidate tags", "invalidateTags", tags);
  if (tags.length === 0) return;
  processTags.invalidate(tags);
  // The default directory of shared caches too, when it exists (processes may have shared
  // caches there).
  let dir: string | undefined;
  try {
    dir = defaultSharedDir();
  } catch { /* no user id: no default directory to reach */ }
  const home = dir === undefined ? undefined : clockOfDirectory(dir);
  let failed: unknown[] | undefined;
  for (const c of home === undefined || reached.has(home) ? reached : [...reached, home]) {
    try {
      c.invalidate(tags);
    } catch (e) {
      (failed ??= []).push(e);
    }
  }
  if (failed !== undefined) throw failed[0];
}

/** Checks that `tags` (what `what` gave) is an array of strings, else a `TypeError` whose
 * message starts with `action`. */
export function checkTags(action: string, what: string, tags: unknown): readonly string[] {
  if (!Array.isArray(tags)) {
    throw new TypeError(
      `${action}: ${what} must give an array of strings: received ${describe(tags)}`,
    );
  }
  for (const t of tags) {
    if (typeof t !== "string") {
      throw new TypeError(`${action}: ${what} must give strings: received ${describe(t)}`);
    }
    if (!t.isWellFormed()) throw illFormed(action, what, t);
  }
  return tags;
}

/** The error of a tag with a lone surrogate, which the remote tier's frames and bus (UTF-8)
 * could not carry losslessly. */
export function illFormed(action: string, what: string, tag: string): TypeError {
  return new TypeError(
    `${action}: ${what} must give well-formed strings (no lone surrogate): received ${
      JSON.stringify(tag)
    }`,
  );
}

/** The tags of an entry: those of the `tags` option and those its computation added. */
export function mergeTags(
  a: readonly string[] | undefined,
  b: readonly string[] | undefined,
): readonly string[] | undefined {
  if (a === undefined || a.length === 0) return b === undefined || b.length === 0 ? undefined : b;
  if (b === undefined || b.length === 0) return a;
  return [...new Set([...a, ...b])];
}
