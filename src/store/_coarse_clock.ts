/**
 * The time of the TypeScript store's lookups when no clock is injected: `performance.now()`,
 * read again once a millisecond has passed (a timer, which never keeps the process alive)
 * or {@linkcode LOOKUPS_PER_READ} lookups have used the last reading, whichever comes
 * first. A clock read costs more than a hit of two int arguments here (about 150 ns
 * against 100 on the bench machine, `notes/tsfast.md`); the native store reads a coarse
 * clock of its own for the same reason (README, "`clock`"). Inserts read the time exactly,
 * and their reading serves the lookups after them.
 *
 * A lookup's time is never ahead of the exact time and never goes backwards, so an entry
 * can only expire late, never early: by at most a millisecond (more while the event loop
 * is blocked), or by the time {@linkcode LOOKUPS_PER_READ} lookups take in one synchronous
 * run.
 *
 * @module
 */

/** Lookups that may use one reading of the clock. */
export const LOOKUPS_PER_READ = 64;

/** Arms the expiry of a reading: calls `expire` in about a millisecond, never keeping the
 * process alive. */
function armTimer(expire: () => void): void {
  const id = setTimeout(expire, 1);
  // A runtime without `unrefTimer` keeps the process alive for a millisecond at most.
  if (typeof Deno.unrefTimer === "function") Deno.unrefTimer(id);
}

/** A clock read for lookups at most once a millisecond (see the module doc). */
export class CoarseClock {
  #now = 0;
  /** Lookups that may still use `#now`. */
  #left = 0;
  /** Whether the expiry of the reading is armed. */
  #armed = false;
  readonly #expire = (): void => {
    this.#armed = false;
    this.#left = 0;
  };
  readonly #source: () => number;
  readonly #arm: (expire: () => void) => void;

  /**
   * @param source The exact time in ms (default: `performance.now()`).
   * @param arm Calls its argument once the reading should expire (default: a timer of
   * 1 ms that does not keep the process alive).
   */
  constructor(
    source: () => number = () => performance.now(),
    arm: (expire: () => void) => void = armTimer,
  ) {
    this.#source = source;
    this.#arm = arm;
  }

  /** The time of a lookup: the last reading while it is fresh, else a new one. */
  lookup(): number {
    if (this.#left > 0) {
      this.#left--;
      return this.#now;
    }
    return this.exact();
  }

  /** The exact time, read now; the lookups after it use this reading. */
  exact(): number {
    const t = this.#source();
    this.#now = t;
    this.#left = LOOKUPS_PER_READ;
    if (!this.#armed) {
      this.#armed = true;
      this.#arm(this.#expire);
    }
    return t;
  }
}
