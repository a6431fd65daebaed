/**
 * libCacheSim (PyPI `libcachesim`, the Python binding of Juncheng Yang's cache simulator)
 * as a reference for the hit-ratio simulator and for the eviction fixture: installs it
 * into a virtual environment of its own (`bench/.venv`, git-ignored) when it is missing,
 * writes traces in its binary format and runs `bench/libcachesim_replay.py` on them.
 *
 * Nothing here is needed by the tests: `tests/fixtures/libcachesim_misses.json` holds the
 * counts recorded with it (`scripts/record_libcachesim.ts`).
 *
 * @module
 */

/** The version installed and read (its C sources were read for `Strategy.S3Fifo`). */
export const LIBCACHESIM_VERSION = "0.3.5";

/** libCacheSim's policies that the simulator runs, by their libCacheSim names. */
export const LIBCACHESIM_POLICIES = [
  "Sieve",
  "LRU",
  "FIFO",
  "S3FIFO",
  "ARC",
  "WTinyLFU",
  "TwoQ",
] as const;

/** One of {@linkcode LIBCACHESIM_POLICIES}. */
export type LibCacheSimPolicy = typeof LIBCACHESIM_POLICIES[number];

/** A trace to replay, with the capacities (in objects) to replay it at. */
export interface LcsTrace {
  name: string;
  ids: Int32Array;
  capacities: number[];
}

/** One replay's result. */
export interface LcsResult {
  trace: string;
  policy: LibCacheSimPolicy;
  capacity: number;
  requests: number;
  misses: number;
}

/** The replays, or why there are none. */
export type LcsReport =
  | { version: string; results: LcsResult[]; skipped: null }
  | { skipped: string };

const benchDir = new URL("./", import.meta.url).pathname;
const venv = `${benchDir}.venv`;
const python = `${venv}/bin/python`;

async function run(
  cmd: string,
  args: string[],
): Promise<{ ok: boolean; out: string; err: string }> {
  try {
    const r = await new Deno.Command(cmd, { args, stdout: "piped", stderr: "piped" }).output();
    const dec = new TextDecoder();
    return { ok: r.success, out: dec.decode(r.stdout), err: dec.decode(r.stderr) };
  } catch (e) {
    return { ok: false, out: "", err: e instanceof Error ? e.message : String(e) };
  }
}

function lastLine(s: string): string {
  return s.trim().split("\n").at(-1) ?? "";
}

/**
 * The interpreter of `bench/.venv` with `libcachesim` importable, installing it (`python3 -m
 * venv`, then `pip install libcachesim==LIBCACHESIM_VERSION`) when it is not; or why that
 * failed (no Python, no network...).
 */
export async function libCacheSimPython(
  log: (line: string) => void = () => {},
): Promise<{ python: string } | { skipped: string }> {
  const probe = ["-c", "import libcachesim"];
  if ((await run(python, probe)).ok) return { python };
  log(`installing libcachesim ${LIBCACHESIM_VERSION} into bench/.venv`);
  const mk = await run("python3", ["-m", "venv", venv]);
  if (!mk.ok) return { skipped: `python3 -m venv failed: ${lastLine(mk.err)}` };
  const pip = await run(`${venv}/bin/pip`, [
    "install",
    "--quiet",
    "--disable-pip-version-check",
    `libcachesim==${LIBCACHESIM_VERSION}`,
  ]);
  if (!pip.ok) return { skipped: `pip install libcachesim failed: ${lastLine(pip.err)}` };
  if (!(await run(python, probe)).ok) return { skipped: "libcachesim does not import" };
  return { python };
}

/**
 * `ids` as a libCacheSim oracleGeneral trace: 24 bytes a request (u32 time = the request's
 * index, u64 id, u32 size = 1, i64 next access = -1, unknown), little-endian.
 */
export function oracleGeneral(ids: Int32Array): Uint8Array {
  const out = new Uint8Array(ids.length * 24);
  const view = new DataView(out.buffer);
  for (let i = 0; i < ids.length; i++) {
    const o = i * 24;
    view.setUint32(o, i, true);
    view.setBigUint64(o + 4, BigInt(ids[i]! >>> 0), true);
    view.setUint32(o + 12, 1, true);
    view.setBigInt64(o + 16, -1n, true);
  }
  return out;
}

/**
 * Replays `traces` through libCacheSim's `policies` (every request a lookup; a miss inserts
 * the object) and returns the miss counts, or why libCacheSim could not run.
 */
export async function replayLibCacheSim(
  traces: LcsTrace[],
  policies: readonly LibCacheSimPolicy[] = LIBCACHESIM_POLICIES,
  log: (line: string) => void = () => {},
): Promise<LcsReport> {
  const py = await libCacheSimPython(log);
  if ("skipped" in py) return py;
  const dir = await Deno.makeTempDir({ prefix: "warp_lcs_" });
  try {
    const spec = {
      policies,
      traces: [] as Array<{ name: string; path: string; capacities: number[]; requests: number }>,
    };
    for (const [i, t] of traces.entries()) {
      const path = `${dir}/trace_${i}.oracleGeneral`;
      await Deno.writeFile(path, oracleGeneral(t.ids));
      spec.traces.push({ name: t.name, path, capacities: t.capacities, requests: t.ids.length });
    }
    await Deno.writeTextFile(`${dir}/spec.json`, JSON.stringify(spec));
    const r = await run(py.python, [`${benchDir}libcachesim_replay.py`, `${dir}/spec.json`]);
    if (!r.ok) return { skipped: `libcachesim_replay.py failed: ${lastLine(r.err)}` };
    const parsed = JSON.parse(r.out) as { version: string; results: LcsResult[] };
    return { version: parsed.version, results: parsed.results, skipped: null };
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}
