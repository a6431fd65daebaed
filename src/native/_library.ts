/**
 * Where the native library comes from: the lookup order of the README ("Install"), SHA-256
 * verification against the hashes pinned in `_artifacts.ts`, and the download into the
 * per-user library cache.
 *
 * Lookup, in order:
 * 1. `WARP_CACHE_LIB` (a path). When it is set it is the only library tried: a path that
 *    fails to load is a configuration error, never silently replaced by another library.
 * 2. A library beside the module: in a checkout, cargo's output `rust/target/release/` (a
 *    developer build, not pinned); the release artifact `dist/<artifact>` (a copy of the
 *    package's files, or one unpacked by `deno compile --include dist/<artifact>`); the
 *    artifact beside the main module (`deno compile --include <artifact> main.ts`).
 * 3. The per-user library cache: `$WARP_CACHE_DIR/<version>/<target>/<artifact>`, else
 *    `warp_cache/<version>/<target>/<artifact>` under the platform's cache directory.
 * 4. A download from `$WARP_CACHE_BASE_URL` (default {@linkcode DEFAULT_BASE_URL}) into
 *    that cache, verified before it gets its name.
 *
 * Every file that has a pinned hash is verified each time before it is loaded; a download is
 * verified before it is installed (temporary file, then rename), so no process ever loads a
 * partial or unverified file, however many start at once.
 *
 * @module
 */

import { createHash } from "node:crypto";
import { ARTIFACTS, VERSION } from "./_artifacts.ts";

/** Where the release artifacts of this version are published: the package's own `dist/` on
 * JSR, served with the package version it belongs to (see the README, "Install"). */
export const DEFAULT_BASE_URL = `https://jsr.io/@warp/cache/${VERSION}/dist/`;

/** Largest download accepted, in bytes. */
export const MAX_DOWNLOAD_BYTES = 64 * 1024 * 1024;

/** How long a download may take, in ms, before it is abandoned. */
export const DOWNLOAD_TIMEOUT_MS = 60_000;

/** The command that installs the library ahead of time. */
export const INSTALL_COMMAND = "deno run -A jsr:@warp/cache/install";

/** A place where a library may be. */
export interface Candidate {
  /** File path. */
  path: string;
  /** What this place is, for messages: `WARP_CACHE_LIB`, `beside the module`... */
  source: string;
  /** The pinned SHA-256 (hex) the file must have, or `undefined` for a local build. */
  sha256: string | undefined;
}

/** The file name of the release artifact for a target:
 * `libwarp_cache-x86_64-unknown-linux-gnu.so`, `.dylib` on macOS, `warp_cache-<target>.dll`. */
export function artifactFileName(
  target: string = Deno.build.target,
  os: string = Deno.build.os,
): string {
  if (os === "windows") return `warp_cache-${target}.dll`;
  if (os === "darwin") return `libwarp_cache-${target}.dylib`;
  return `libwarp_cache-${target}.so`;
}

/** The name of cargo's output on this platform: `libwarp_cache.so`, `.dylib`, `.dll`. */
export function cargoFileName(os: string = Deno.build.os): string {
  if (os === "windows") return "warp_cache.dll";
  if (os === "darwin") return "libwarp_cache.dylib";
  return "libwarp_cache.so";
}

/** Whether a permission is granted, asked without a prompt. */
export function permitted(desc: Deno.PermissionDescriptor): boolean {
  try {
    return Deno.permissions.querySync(desc).state === "granted";
  } catch {
    return false;
  }
}

/**
 * The environment variable `name`, or `undefined` when it is unset, empty, or not
 * readable without a prompt (no `--allow-env` for it).
 */
export function envVar(name: string): string | undefined {
  if (!permitted({ name: "env", variable: name })) return undefined;
  return Deno.env.get(name) || undefined;
}

/** The pinned hash of this machine's artifact, if the package has one. */
export function pinnedHash(target: string = Deno.build.target): string | undefined {
  return ARTIFACTS[target]?.sha256;
}

/** The per-user library directory of this version and target, or `undefined` when the
 * environment does not say where it is (or cannot be read without a prompt). */
export function userLibraryDir(): string | undefined {
  const tail = `${VERSION}/${Deno.build.target}`;
  const explicit = envVar("WARP_CACHE_DIR");
  if (explicit) return `${explicit.replace(/[\\/]+$/, "")}/${tail}`;
  let base: string | undefined;
  if (Deno.build.os === "windows") {
    base = envVar("LOCALAPPDATA");
  } else if (Deno.build.os === "darwin") {
    const home = envVar("HOME");
    base = home && `${home}/Library/Caches`;
  } else {
    const home = envVar("HOME");
    base = envVar("XDG_CACHE_HOME") ?? (home && `${home}/.cache`);
  }
  return base ? `${base}/warp_cache/${tail}` : undefined;
}

/** The base URL of the release artifacts (with a trailing `/`). */
export function baseUrl(): string {
  const url = envVar("WARP_CACHE_BASE_URL") ?? DEFAULT_BASE_URL;
  return url.endsWith("/") ? url : `${url}/`;
}

function fileUrlPath(url: URL): string | undefined {
  return url.protocol === "file:" ? decodeURIComponent(url.pathname) : undefined;
}

/**
 * Every place the library is looked for, in order (see the module doc). When
 * `WARP_CACHE_LIB` is set, it is the only one.
 */
export function candidates(): Candidate[] {
  const fromEnv = envVar("WARP_CACHE_LIB");
  if (fromEnv) return [{ path: fromEnv, source: "WARP_CACHE_LIB", sha256: undefined }];
  const artifact = artifactFileName();
  const sha256 = pinnedHash();
  const out: Candidate[] = [];
  // A developer's cargo build first, so that a checkout tests what it just built.
  const cargo = fileUrlPath(
    new URL(`../../rust/target/release/${cargoFileName()}`, import.meta.url),
  );
  if (cargo) out.push({ path: cargo, source: "cargo build output", sha256: undefined });
  const dist = fileUrlPath(new URL(`../../dist/${artifact}`, import.meta.url));
  if (dist) out.push({ path: dist, source: "beside the module", sha256 });
  try {
    const main = fileUrlPath(new URL(artifact, Deno.mainModule));
    if (main && main !== dist) out.push({ path: main, source: "beside the main module", sha256 });
  } catch {
    // No main module (a REPL or a Worker without one): nothing to look beside.
  }
  const dir = userLibraryDir();
  if (dir) out.push({ path: `${dir}/${artifact}`, source: "library cache", sha256 });
  return out;
}

/** The SHA-256 of `bytes`, hex. */
export function sha256Hex(bytes: Uint8Array): string {
  return createHash("sha256").update(bytes).digest("hex");
}

/**
 * Checks that the file at `c.path` exists and, when a hash is pinned, has it.
 *
 * @returns `null` when the file may be loaded, else why not (for messages).
 */
export function checkCandidate(c: Candidate): string | null {
  if (!permitted({ name: "read", path: c.path })) return "not readable without --allow-read";
  let bytes: Uint8Array;
  try {
    if (c.sha256 === undefined) {
      return Deno.statSync(c.path).isFile ? null : "not a file";
    }
    bytes = Deno.readFileSync(c.path);
  } catch (e) {
    return e instanceof Deno.errors.NotFound ? "not found" : `unreadable: ${message(e)}`;
  }
  const actual = sha256Hex(bytes);
  return actual === c.sha256 ? null : `SHA-256 ${actual}, expected ${c.sha256}: not loaded`;
}

function message(e: unknown): string {
  return e instanceof Error ? e.message : String(e);
}

/** Why a download cannot be tried here without a prompt, or `null` when it can. */
export function downloadBlocker(url: URL, dir: string | undefined): string | null {
  if (dir === undefined) {
    return "no library cache directory (set WARP_CACHE_DIR, or HOME with --allow-env)";
  }
  if (url.protocol !== "https:" && url.protocol !== "http:") {
    return `the base URL ${url.href} is not http(s)`;
  }
  if (!permitted({ name: "net", host: url.host })) return `no --allow-net for ${url.host}`;
  if (!permitted({ name: "write", path: dir })) return `no --allow-write for ${dir}`;
  if (!permitted({ name: "read", path: dir })) return `no --allow-read for ${dir}`;
  return null;
}

/**
 * Downloads this target's artifact from `base` into `dir`, verifies it against the pinned
 * SHA-256 and installs it (temporary file in `dir`, then rename: atomic, and safe when many
 * processes do it at once).
 *
 * @param base Base URL of the artifacts (ends with `/`).
 * @param dir The per-user library directory (created if missing).
 * @param limits Time (ms) and size (bytes) bounds; the defaults are
 * {@linkcode DOWNLOAD_TIMEOUT_MS} and {@linkcode MAX_DOWNLOAD_BYTES}.
 * @returns The installed file's path.
 * @throws {Error} If no hash is pinned for this target, the download fails, times out
 * ({@linkcode DOWNLOAD_TIMEOUT_MS}) or is larger than {@linkcode MAX_DOWNLOAD_BYTES}, or its
 * SHA-256 differs from the pinned one: the message names the URL, and for a mismatch the
 * expected and the actual hash. Nothing is kept then.
 */
export async function download(
  base: string,
  dir: string,
  limits: { timeoutMs?: number; maxBytes?: number } = {},
): Promise<string> {
  const timeoutMs = limits.timeoutMs ?? DOWNLOAD_TIMEOUT_MS;
  const maxBytes = limits.maxBytes ?? MAX_DOWNLOAD_BYTES;
  const artifact = artifactFileName();
  const url = new URL(artifact, base).href;
  const expected = pinnedHash();
  if (expected === undefined) {
    throw new Error(
      `Cannot download the @warp/cache native library: version ${VERSION} has no release for ${Deno.build.target} (see the README, "Install")`,
    );
  }
  let response: Response;
  try {
    response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  } catch (e) {
    throw new Error(`Cannot download the @warp/cache native library from ${url}: ${message(e)}`, {
      cause: e,
    });
  }
  if (!response.ok) {
    await response.body?.cancel();
    throw new Error(
      `Cannot download the @warp/cache native library from ${url}: HTTP ${response.status}`,
    );
  }
  let bytes: Uint8Array;
  try {
    bytes = await readBounded(response, url, maxBytes);
  } catch (e) {
    if (e instanceof Error && e.message.startsWith("Cannot download")) throw e;
    throw new Error(`Cannot download the @warp/cache native library from ${url}: ${message(e)}`, {
      cause: e,
    });
  }
  const actual = sha256Hex(bytes);
  if (actual !== expected) {
    throw new Error(
      `Cannot install the @warp/cache native library downloaded from ${url}: its SHA-256 is ${actual}, expected ${expected} (the file was not kept)`,
    );
  }
  await Deno.mkdir(dir, { recursive: true });
  const final = `${dir}/${artifact}`;
  const tmp = `${dir}/.${artifact}.${crypto.randomUUID()}.tmp`;
  try {
    await Deno.writeFile(tmp, bytes, { mode: 0o644, createNew: true });
    await Deno.rename(tmp, final);
  } catch (e) {
    await Deno.remove(tmp).catch(() => {});
    throw new Error(`Cannot install the @warp/cache native library into ${dir}: ${message(e)}`, {
      cause: e,
    });
  }
  return final;
}

async function readBounded(
  response: Response,
  url: string,
  maxBytes: number,
): Promise<Uint8Array> {
  const declared = Number(response.headers.get("content-length") ?? NaN);
  if (declared > maxBytes) {
    await response.body?.cancel();
    throw new Error(
      `Cannot download the @warp/cache native library from ${url}: ${declared} bytes is more than ${maxBytes}`,
    );
  }
  const chunks: Uint8Array[] = [];
  let total = 0;
  const reader = response.body!.getReader();
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    total += value.length;
    if (total > maxBytes) {
      await reader.cancel();
      throw new Error(
        `Cannot download the @warp/cache native library from ${url}: more than ${maxBytes} bytes`,
      );
    }
    chunks.push(value);
  }
  const out = new Uint8Array(total);
  let at = 0;
  for (const c of chunks) {
    out.set(c, at);
    at += c.length;
  }
  return out;
}
