/**
 * Where the native library comes from: the lookup order of the README ("Native library"), SHA-256
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
 * What is loaded is what was checked ({@linkcode openCandidate}): the file is opened once,
 * checked on that open descriptor (a regular file, not writable by other users, its SHA-256
 * when one is pinned), and on Linux loaded through `/proc/self/fd/<n>`, the very file
 * opened, so a file renamed over the path meanwhile is never loaded. A library whose
 * directory other users may write to (group- or world-writable without the sticky bit, or
 * owned by another user than this one or root) is refused, naming the directory, its mode
 * and owner.
 *
 * @module
 */

import { createHash } from "node:crypto";
import fs from "node:fs";
import { ARTIFACTS, VERSION } from "./_artifacts.ts";
import { effectiveUid } from "./_uid.ts";

/** Where the release artifacts of this version are published: the package's own `dist/` on
 * JSR, served with the package version it belongs to (see the README, "Native library"). */
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

/** A library file opened for loading, checked on its open descriptor. */
export interface OpenedLibrary {
  /** The path to give `Deno.dlopen`: `/proc/self/fd/<n>` on Linux (the file that was
   * checked, whatever the path names now), else the path itself. */
  loadPath: string;
  /** The path it was found at, for messages. */
  path: string;
  /** Closes the descriptor (keep it open while the library is loaded: the name
   * `/proc/self/fd/<n>` must not come to mean another file). Idempotent. */
  close(): void;
}

/** The directory part of `path` (`.` for a bare name). */
function dirname(path: string): string {
  const i = path.replace(/\/+$/, "").lastIndexOf("/");
  return i < 0 ? "." : i === 0 ? "/" : path.slice(0, i);
}

/** Why other users could replace or change files in `dir`, or `null` when they cannot. */
function directoryProblem(dir: string, uid: number | null): string | null {
  let st: Deno.FileInfo;
  try {
    st = Deno.statSync(dir);
  } catch (e) {
    return `its directory ${dir} cannot be inspected: ${message(e)}`;
  }
  const mode = (st.mode ?? 0) & 0o7777;
  const owner = st.uid ?? 0;
  const sticky = (mode & 0o1000) !== 0;
  const foreign = uid !== null && owner !== uid && owner !== 0;
  if (((mode & 0o022) !== 0 && !sticky) || foreign) {
    return `its directory ${dir} may be written by other users (mode ${
      mode.toString(8)
    }, owner uid ${owner}): not loaded (make it writable by its owner only, owned by you or root)`;
  }
  return null;
}

/** Why the open file `st` may not be loaded (another user's, or writable by others). */
function fileProblem(st: fs.Stats, uid: number | null): string | null {
  if (!st.isFile()) return "not a regular file";
  if (uid !== null && st.uid !== uid && st.uid !== 0) {
    return `it is owned by another user (uid ${st.uid}): not loaded`;
  }
  if ((st.mode & 0o022) !== 0) {
    return `other users may write to it (mode ${
      (st.mode & 0o777).toString(8)
    }, owner uid ${st.uid}): not loaded`;
  }
  return null;
}

/** Reads the whole open file `fd` of `size` bytes. */
function readAll(fd: number, size: number): Uint8Array {
  const bytes = new Uint8Array(size);
  let at = 0;
  while (at < size) {
    const n = fs.readSync(fd, bytes, at, size - at, at);
    if (n === 0) return bytes.subarray(0, at);
    at += n;
  }
  return bytes;
}

/** Why a missing file is not loaded. */
const NOT_FOUND = "not found (No such file or directory)";

/** Whether `c` is a file inside a `deno compile` executable (its read-only embedded files). */
function embedded(c: Candidate): boolean {
  return (Deno.build as { standalone?: boolean }).standalone === true &&
    (c.source === "beside the module" || c.source === "beside the main module");
}

/**
 * Opens the file at `c.path` for loading and checks it on the open descriptor: its
 * directory (and, for a symbolic link, its target's) may be written only by this user or
 * root, the file is a regular file of this user or root that others may not write, and,
 * when a hash is pinned, its bytes have it. Never blocks (a FIFO is opened non-blocking and
 * refused).
 *
 * A file embedded by `deno compile --include` is read and hashed through Deno's file system
 * of the executable and loaded by its path, as Deno loads such files (the executable is
 * read-only: nothing can swap them).
 *
 * @returns The open library, or why it may not be loaded (for messages).
 */
export function openCandidate(c: Candidate): OpenedLibrary | string {
  if (!permitted({ name: "read", path: c.path })) return "not readable without --allow-read";
  if (embedded(c)) return openEmbedded(c);
  const uid = effectiveUid();
  let real: string;
  try {
    real = Deno.realPathSync(c.path);
  } catch (e) {
    return e instanceof Deno.errors.NotFound ? NOT_FOUND : `unreadable: ${message(e)}`;
  }
  for (const dir of new Set([dirname(c.path), dirname(real)])) {
    const problem = directoryProblem(dir, uid);
    if (problem !== null) return problem;
  }
  let fd: number;
  try {
    fd = fs.openSync(
      real,
      fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | fs.constants.O_NOFOLLOW,
    );
  } catch (e) {
    const code = (e as { code?: string }).code;
    if (code === "ENOENT") return NOT_FOUND;
    if (code === "ELOOP") return "replaced by a symbolic link while it was checked: not loaded";
    return `unreadable: ${message(e)}`;
  }
  let open = true;
  const close = (): void => {
    if (open) fs.closeSync(fd);
    open = false;
  };
  try {
    const st = fs.fstatSync(fd);
    const problem = fileProblem(st, uid);
    if (problem !== null) {
      close();
      return problem;
    }
    if (c.sha256 !== undefined) {
      const actual = sha256Hex(readAll(fd, st.size));
      if (actual !== c.sha256) {
        close();
        return `SHA-256 ${actual}, expected ${c.sha256}: not loaded`;
      }
    }
  } catch (e) {
    close();
    return `unreadable: ${message(e)}`;
  }
  const loadPath = Deno.build.os === "linux" ? `/proc/self/fd/${fd}` : c.path;
  return { loadPath, path: c.path, close };
}

function openEmbedded(c: Candidate): OpenedLibrary | string {
  let bytes: Uint8Array;
  try {
    bytes = Deno.readFileSync(c.path);
  } catch (e) {
    return e instanceof Deno.errors.NotFound ? NOT_FOUND : `unreadable: ${message(e)}`;
  }
  if (c.sha256 !== undefined) {
    const actual = sha256Hex(bytes);
    if (actual !== c.sha256) return `SHA-256 ${actual}, expected ${c.sha256}: not loaded`;
  }
  return { loadPath: c.path, path: c.path, close(): void {} };
}

/**
 * Checks the file at `c.path` as {@linkcode openCandidate} does (its directory, owner and
 * mode, and its pinned hash), then closes it.
 *
 * @returns `null` when the file may be loaded, else why not (for messages).
 */
export function checkCandidate(c: Candidate): string | null {
  const opened = openCandidate(c);
  if (typeof opened === "string") return opened;
  opened.close();
  return null;
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
    response = await fetchFollowing(url, AbortSignal.timeout(timeoutMs));
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
  try {
    await Deno.mkdir(dir, { recursive: true, mode: 0o755 });
    closeToOthers(dir);
  } catch (e) {
    throw new Error(`Cannot install the @warp/cache native library into ${dir}: ${message(e)}`, {
      cause: e,
    });
  }
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

/**
 * Makes the library directory `dir` writable by its owner only, when it is this user's and
 * group- or world-writable without the sticky bit (made so by a umask such as 002): the
 * loader refuses a library in such a directory.
 */
function closeToOthers(dir: string): void {
  const st = Deno.statSync(dir);
  const mode = (st.mode ?? 0) & 0o7777;
  const uid = effectiveUid();
  if ((mode & 0o022) === 0 || (mode & 0o1000) !== 0) return;
  if (uid !== null && st.uid !== uid) return;
  Deno.chmodSync(dir, mode & ~0o022);
}

/** Redirects a download follows at most. */
const MAX_REDIRECTS = 10;

/**
 * `fetch(url)`, following redirects itself: a redirect to a host without `--allow-net` (or
 * not http(s)) is an error, where `fetch` would prompt for it on a terminal.
 */
async function fetchFollowing(url: string, signal: AbortSignal): Promise<Response> {
  let at = new URL(url);
  for (let hops = 0;; hops++) {
    const response = await fetch(at, { signal, redirect: "manual" });
    const location = response.headers.get("location");
    if (response.status < 300 || response.status > 399 || location === null) return response;
    await response.body?.cancel();
    if (hops >= MAX_REDIRECTS) throw new Error(`more than ${MAX_REDIRECTS} redirects`);
    const next = new URL(location, at);
    if (next.protocol !== "https:" && next.protocol !== "http:") {
      throw new Error(`redirected to ${next.href}, which is not http(s)`);
    }
    if (!permitted({ name: "net", host: next.host })) {
      throw new Error(`redirected to ${next.href}: no --allow-net for ${next.host}`);
    }
    at = next;
  }
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
