/**
 * Builds the native library: `cargo build --release` in `rust/`. The output,
 * `rust/target/release/libwarp_cache.so` (`.dylib`, `warp_cache.dll`), is where
 * `src/native/ffi.ts` looks after `WARP_CACHE_LIB`.
 *
 * Usage: `deno task build` (add `--if-missing` to skip when the library exists).
 *
 * @module
 */

import { cargoFileName } from "../src/native/_library.ts";

const root = new URL("../", import.meta.url);
const manifest = new URL("rust/Cargo.toml", root).pathname;
const output = new URL(`rust/target/release/${cargoFileName()}`, root).pathname;

/** Whether the release library exists. */
export function libraryExists(): boolean {
  try {
    return Deno.statSync(output).isFile;
  } catch {
    return false;
  }
}

/**
 * Runs cargo; resolves to the library path.
 *
 * @throws {Error} If cargo is missing or the build fails.
 */
export async function build(): Promise<string> {
  let status: Deno.CommandStatus;
  try {
    status = await new Deno.Command("cargo", {
      args: ["build", "--release", "--manifest-path", manifest],
      stdout: "inherit",
      stderr: "inherit",
    }).spawn().status;
  } catch (e) {
    throw new Error(
      "Cannot build the native library: cargo was not found (install Rust from rustup.rs)",
      { cause: e },
    );
  }
  if (!status.success) {
    throw new Error(`Cannot build the native library: cargo exited with ${status.code}`);
  }
  return output;
}

if (import.meta.main) {
  if (Deno.args.includes("--if-missing") && libraryExists()) {
    console.log(`native library present: ${output}`);
  } else {
    console.log(`built ${await build()}`);
  }
}
