/**
 * The cross-process single-flight as the call path uses it ({@linkcode FlightTable}), over
 * the shared store's {@linkcode Flights}.
 *
 * @module
 */

import type { FlightClaim, Flights, KeyBytes } from "../store/store.ts";

/** What {@linkcode FlightTable.claim} found: `"local"`: a live handle of this same process
 * computes the key (a synchronous caller must not block on it). */
export type Claim = FlightClaim | "local";

/** How a wait ended: `"async"` (`waitSync` with `untilAsync`): the owner's computation is
 * async, switch to `wait`; `"closed"`: this handle was closed meanwhile. */
export type WaitEnd = "done" | "owner" | "async" | "timeout" | "closed";

/** Single-flight across the processes of a shared cache, as the call path uses it. */
export interface FlightTable {
  claim(key: KeyBytes, async: boolean): Claim;
  markAsync(key: KeyBytes): void;
  wait(key: KeyBytes, ms: number): Promise<WaitEnd>;
  waitSync(key: KeyBytes, ms: number, untilAsync: boolean): WaitEnd;
  owns(key: KeyBytes): boolean;
  release(key: KeyBytes): void;
  end(key: KeyBytes): void;
}

/** The {@linkcode FlightTable} of `f`: the shared store's {@linkcode Flights}
 * (`src/store/shared_flights.ts`) has the whole interface, `"local"`, `"async"`, `"closed"`,
 * `markAsync` and `end` included; `closed` is no longer needed (a wait of a closed handle
 * ends with `"closed"` by itself). */
export function flightTable(f: Flights, closed: () => boolean): FlightTable {
  void closed;
  return f;
}
