/**
 * Cross-process single-flight over a shared cache file ({@linkcode SharedFlights}): one
 * computation of a key at a time among the processes that share the file, the others
 * waiting for it without polling (`rust/src/shm/flight.rs`).
 *
 * Asynchronous waits do not hold a thread each: every wait of this JavaScript thread (the
 * main isolate, or a Worker) is registered with the library's dispatcher of the thread
 * (`rust/src/shm/dispatch.rs`), and at most one `nonblocking` call per thread, re-armed
 * while waits remain, sleeps for all of them and returns those that ended. Synchronous
 * waits block the calling thread, but never on a flight of this process (its owner may need
 * that very thread).
 *
 * @module
 */

import type { NativeSymbols } from "../native/ffi.ts";
import { CacheError, unwrap } from "../native/errors.ts";
import { FLIGHT, Status } from "../native/_abi.ts";
import type { FlightClaim, FlightEnd, Flights, KeyBytes } from "./store.ts";

const CLAIMS: Readonly<Record<number, FlightClaim>> = {
  [FLIGHT.owner]: "owner",
  [FLIGHT.wait]: "wait",
  [FLIGHT.none]: "none",
  [FLIGHT.local]: "local",
};

const ENDS: Readonly<Record<number, FlightEnd>> = {
  [FLIGHT.done]: "done",
  [FLIGHT.owner]: "owner",
  [FLIGHT.timeout]: "timeout",
  [FLIGHT.async]: "async",
  [FLIGHT.closed]: "closed",
};

function ended(code: number): FlightEnd {
  const end = ENDS[code];
  if (end === undefined) {
    throw new CacheError(Status.Panic, `Shared cache flight wait: unknown end code ${code}`);
  }
  return end;
}

/** Pairs (wait id, end code) that one `warp_shm_flight_next` call may return. */
const NEXT_PAIRS = 256;

/** A wait of this thread, registered with its dispatcher. */
interface Waiting {
  resolve: (end: FlightEnd) => void;
  reject: (e: unknown) => void;
}

/**
 * The asynchronous waits of this JavaScript thread (module state: one per isolate, as the
 * library keeps one dispatcher per thread).
 */
const waits = {
  /** The dispatcher's id (0: not asked yet). */
  dispatcher: 0,
  /** Waits that go on, by id. */
  pending: new Map<number, Waiting>(),
  /** Whether a `warp_shm_flight_next` call is under way. */
  armed: false,
};

/** The id of this thread's dispatcher. */
function dispatcherOf(lib: NativeSymbols): number {
  if (waits.dispatcher === 0) {
    waits.dispatcher = unwrap(lib.warp_shm_flight_dispatcher!(), "Shared cache flight wait");
  }
  return waits.dispatcher;
}

/** Makes sure that one `warp_shm_flight_next` call runs while waits remain. */
function arm(lib: NativeSymbols): void {
  if (waits.armed || waits.pending.size === 0) return;
  waits.armed = true;
  const out = new Uint32Array(2 * NEXT_PAIRS);
  lib.warp_shm_flight_next!(waits.dispatcher, out, out.length).then((n) => {
    waits.armed = false;
    if (n < 0) {
      // The message is on the blocking-pool thread that ran the call: not readable here.
      failAll(new CacheError(n, `Shared cache flight wait failed (status ${n})`));
      return;
    }
    if (n === 0) {
      // The dispatcher holds none of these waits (it ended with its thread): they would
      // never end, and calling again would spin.
      failAll(new CacheError(Status.Io, "Shared cache flight wait: the dispatcher was closed"));
      return;
    }
    for (let i = 0; i < n; i++) {
      const id = out[2 * i]!;
      const w = waits.pending.get(id);
      if (w === undefined) continue;
      waits.pending.delete(id);
      try {
        w.resolve(ended(out[2 * i + 1]!));
      } catch (e) {
        w.reject(e);
      }
    }
    arm(lib);
  }, (e) => {
    waits.armed = false;
    failAll(e);
  });
}

function failAll(e: unknown): void {
  const all = [...waits.pending.values()];
  waits.pending.clear();
  for (const w of all) w.reject(e);
}

function checkMs(ms: number): void {
  if (typeof ms !== "number" || !(ms >= 0)) {
    throw new RangeError(
      `Cannot wait for a shared cache flight: ms must be a non-negative number of ms or Infinity: received ${ms}`,
    );
  }
}

/**
 * The {@linkcode Flights} of one shared store handle. On a closed handle `claim` gives
 * `"none"`, `wait` and `waitSync` `"closed"`, `owns` `false`, and `release`, `end` and
 * `markAsync` do nothing.
 */
export class SharedFlights implements Flights {
  #lib: NativeSymbols;
  #handle: () => Deno.PointerObject | null;
  /** The store's `set` of a key whose holder owns its flight stores only while it still
   * does, and ends it (`warp_shm_set_owned`). */
  readonly settlesOnSet = true;
  /** Whether the store's lookups claim on a miss (see {@linkcode SharedFlights.claimOnMiss}). */
  claiming = false;
  /** The claim of the last lookup that missed, until taken. */
  #claimed: FlightClaim | undefined = undefined;

  /**
   * @param lib The library.
   * @param handle The store's live handle, or `null` once it is closed (a closure over the
   * store: while this object is reachable, so is the store, whose finalizer would close
   * the handle).
   */
  constructor(lib: NativeSymbols, handle: () => Deno.PointerObject | null) {
    this.#lib = lib;
    this.#handle = handle;
  }

  claimOnMiss(): void {
    this.claiming = true;
  }

  takeClaim(): FlightClaim | undefined {
    const c = this.#claimed;
    this.#claimed = undefined;
    return c;
  }

  /** Records what the claim of a lookup that missed found (`code`: a `FLIGHT` claim code),
   * for {@linkcode SharedFlights.takeClaim}. */
  noteClaim(code: number): void {
    this.#claimed = CLAIMS[code] ?? "none";
  }

  claim(k: KeyBytes, async: boolean): FlightClaim {
    const h = this.#handle();
    if (h === null) return "none";
    const r = this.#lib.warp_shm_flight_claim!(h, k.buf, k.len, async ? 1 : 0);
    if (r < 0) unwrap(r, "Shared cache flight claim");
    return CLAIMS[r] ?? "none";
  }

  markAsync(k: KeyBytes): void {
    const h = this.#handle();
    if (h === null) return;
    unwrap(this.#lib.warp_shm_flight_mark_async!(h, k.buf, k.len), "Shared cache flight mark");
  }

  wait(k: KeyBytes, ms: number): Promise<FlightEnd> {
    try {
      checkMs(ms);
      const h = this.#handle();
      if (h === null) return Promise.resolve("closed");
      const lib = this.#lib;
      const r = lib.warp_shm_flight_register!(dispatcherOf(lib), h, k.buf, k.len, ms);
      if (r < 0) unwrap(r, "Shared cache flight wait");
      if (r < FLIGHT.idBase) return Promise.resolve(ended(r));
      return new Promise((resolve, reject) => {
        waits.pending.set(r - FLIGHT.idBase, { resolve, reject });
        arm(lib);
      });
    } catch (e) {
      return Promise.reject(e);
    }
  }

  waitSync(k: KeyBytes, ms: number, untilAsync: boolean): FlightEnd {
    checkMs(ms);
    const h = this.#handle();
    if (h === null) return "closed";
    const r = this.#lib.warp_shm_flight_wait_sync!(h, k.buf, k.len, ms, untilAsync ? 1 : 0);
    if (r < 0) unwrap(r, "Shared cache flight wait");
    return ended(r);
  }

  owns(k: KeyBytes): boolean {
    const h = this.#handle();
    if (h === null) return false;
    const r = this.#lib.warp_shm_flight_owns!(h, k.buf, k.len);
    if (r < 0) unwrap(r, "Shared cache flight owns");
    return r === 1;
  }

  release(k: KeyBytes): void {
    const h = this.#handle();
    if (h === null) return;
    unwrap(this.#lib.warp_shm_flight_release!(h, k.buf, k.len), "Shared cache flight release");
  }

  end(k: KeyBytes): void {
    const h = this.#handle();
    if (h === null) return;
    unwrap(this.#lib.warp_shm_flight_end!(h, k.buf, k.len), "Shared cache flight end");
  }
}

/** Asynchronous waits of this thread under way (tests). */
export function pendingFlightWaits(): number {
  return waits.pending.size;
}
