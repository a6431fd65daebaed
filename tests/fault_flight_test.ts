// Killed flight owners (issue "No hang, no stall, no leak across processes"): writer
// processes calling two shared cached functions (sync and async, `maxSize: 256`, values of
// about 50–450 bytes) are SIGKILLed at random moments, round after round, most likely while
// they own a flight; after each round a fresh process reads every key through both
// functions and must finish within 30 s, read only right values, and leave no flight record
// in use. `deno task stress` runs the same for minutes (`tests/fixtures/flight_fault_run.ts`).
import assert from "node:assert/strict";
import { runFlightFaults } from "./fixtures/flight_fault_run.ts";

const SECONDS = Number(Deno.env.get("WARP_FLIGHT_FAULT_SECONDS") ?? 20);

Deno.test("shared flights: writers SIGKILLed mid-flight never hang, stall or leak a fresh process", async () => {
  const r = await runFlightFaults({
    seconds: SECONDS,
    minRounds: 4,
    writers: 3,
    keys: 3000,
    spinMs: 4,
    readerBoundMs: 30_000,
    log: console.log,
  });
  console.log(
    `${r.rounds} rounds, ${r.kills} kills (${r.orphans} flights left behind), ${r.readers} fresh readers of 2 x 3000 keys; slowest reader ${
      r.worstReaderMs.toFixed(0)
    } ms`,
  );
  assert.equal(r.failure, "", r.failure);
  assert.ok(r.kills >= 12 && r.readers >= 4);
  assert.ok(r.orphans > 0, "no kill left a flight behind: the run tested nothing");
});
