/**
 * The effective user id of this process, read without `--allow-sys`: `Deno.uid()` needs
 * that permission, which the README's flags do not grant (an interactive run would prompt;
 * without a terminal it throws), so the id is read from the C library through `Deno.dlopen`
 * (`geteuid()`), which the native library needs anyway (`--allow-ffi`). The shared
 * backend's default directory and the native library's loader use it (see the README,
 * "Install" and "Shared backend").
 *
 * @module
 */

/** The C library that has `geteuid` on this platform, or `undefined`. */
function libcPath(os: string): string | undefined {
  if (os === "linux") return "libc.so.6";
  if (os === "darwin") return "/usr/lib/libSystem.B.dylib";
  return undefined;
}

function granted(desc: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(desc).state === "granted";
  } catch {
    return false;
  }
}

let known: number | null | undefined;

/**
 * The effective user id (`geteuid()`), or `null` when it cannot be read without a prompt:
 * no `--allow-ffi` (then `Deno.uid()` if `--allow-sys` is granted), Windows, or no C
 * library where one is expected. Read once per process.
 *
 * @returns The user id, or `null`.
 */
export function effectiveUid(): number | null {
  if (known === undefined) known = readUid();
  return known;
}

function readUid(): number | null {
  const libc = libcPath(Deno.build.os);
  if (libc !== undefined && typeof Deno.dlopen === "function" && granted({ name: "ffi" })) {
    try {
      const lib = Deno.dlopen(libc, { geteuid: { parameters: [], result: "u32" } });
      try {
        return lib.symbols.geteuid();
      } finally {
        lib.close();
      }
    } catch {
      // Another C library: fall through.
    }
  }
  if (granted({ name: "sys", kind: "uid" })) {
    try {
      return Deno.uid();
    } catch {
      return null;
    }
  }
  return null;
}
