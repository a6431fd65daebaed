/**
 * Installs the native library of `@warp/cache` ahead of time, for containers, CI and runs
 * with narrow permissions, and prints where it is:
 *
 * ```sh
 * deno run -A jsr:@warp/cache/install           # find or download, verify, print the path
 * deno run -A jsr:@warp/cache/install --check   # verify the installed copy; exit 1 if bad
 * deno run -A jsr:@warp/cache/install --help    # the usage; an unknown option exits 2
 * ```
 *
 * It looks where the cache looks (see the README, "Native library"): `WARP_CACHE_LIB`, beside the
 * module, the per-user library cache (`WARP_CACHE_DIR`), and otherwise downloads from
 * `WARP_CACHE_BASE_URL`, verifying the SHA-256 pinned in the package.
 *
 * @example Install from a script
 * ```ts ignore
 * import { install } from "@warp/cache/install";
 *
 * const path = await install();
 * console.log(`native library at ${path}`);
 * ```
 *
 * @module
 */

import { parseArgs } from "node:util";
import {
  baseUrl,
  type Candidate,
  candidates,
  checkCandidate,
  download,
  userLibraryDir,
} from "./_library.ts";

export type { Candidate };

/**
 * Finds a usable native library (verified against its pinned SHA-256 where one is pinned),
 * or downloads and installs it into the per-user library cache.
 *
 * @returns The path of the library.
 * @throws {Error} If it is not found and cannot be downloaded: the message lists what was
 * tried; a download whose SHA-256 differs from the pinned one names the URL and both hashes.
 */
export async function install(): Promise<string> {
  const tried: string[] = [];
  const list = candidates();
  for (const c of list) {
    const problem = checkCandidate(c);
    if (problem === null) return c.path;
    tried.push(`${c.path} (${c.source}): ${problem}`);
  }
  if (list.some((c) => c.source === "WARP_CACHE_LIB")) {
    throw new Error(`Cannot install: WARP_CACHE_LIB is set and unusable: ${tried.join("; ")}`);
  }
  const dir = userLibraryDir();
  if (dir === undefined) {
    throw new Error(
      `Cannot install: no library cache directory (set WARP_CACHE_DIR, or HOME); tried ${
        tried.join("; ")
      }`,
    );
  }
  return await download(baseUrl(), dir);
}

/**
 * Verifies the library that the cache would load.
 *
 * @returns Each place looked at, with `null` when its file is usable, else why not.
 */
export function check(): Array<[Candidate, string | null]> {
  return candidates().map((c) => [c, checkCandidate(c)]);
}

/** The usage of the command. */
const USAGE = `Usage: deno run -A jsr:@warp/cache/install [--check]

Finds the native library of @warp/cache where the cache looks for it, or downloads it,
verifies it against the SHA-256 pinned in the package, installs it into the per-user
library cache and prints its path.

Options:
  --check  verify the library the cache would load, without downloading (exit 1 if none)
  --help   print this usage

Environment: WARP_CACHE_LIB, WARP_CACHE_DIR, WARP_CACHE_BASE_URL (see the README, "Install").
`;

/** Runs the command with `args`; returns the exit code (0 done, 1 failed, 2 usage error). */
async function main(args: string[]): Promise<number> {
  let flags: { check?: boolean; help?: boolean };
  try {
    flags = parseArgs({
      args,
      options: { check: { type: "boolean" }, help: { type: "boolean", short: "h" } },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    console.error(`${e instanceof Error ? e.message : String(e)}\n\n${USAGE}`);
    return 2;
  }
  if (flags.help) {
    console.log(USAGE.trimEnd());
    return 0;
  }
  if (flags.check) {
    const results = check();
    const good = results.find(([, problem]) => problem === null);
    for (const [c, problem] of results) {
      console.log(
        `${problem === null ? "ok  " : "--  "} ${c.path} (${c.source})${
          problem ? `: ${problem}` : ""
        }`,
      );
    }
    if (good === undefined) {
      console.error("no usable native library: run without --check to install it");
      return 1;
    }
    console.log(good[0].path);
    return 0;
  }
  try {
    console.log(await install());
    return 0;
  } catch (e) {
    console.error(e instanceof Error ? e.message : String(e));
    return 1;
  }
}

if (import.meta.main) Deno.exit(await main(Deno.args));
