/**
 * The default `name` of a shared cache: where the function was decorated (module URL,
 * line and column, and the class for a method) plus its name and a hash of its source, so
 * that the same code in two processes meets in one cache and different functions do not.
 *
 * Decoration site alone cannot tell apart closures made by one factory
 * (`makeFetcher("user")` and `makeFetcher("post")` decorate at one place) nor functions
 * whose source and site are equal; source alone cannot tell apart the same method body
 * in two classes. So the name hashes both, and a process that decorates two different
 * live functions with one default name gets a `TypeError` asking for `name`.
 *
 * @module
 */

import { shortHash } from "../store/shared_store.ts";

/** Where `cache()` was applied: `url:line:column`, and the class of a method. */
export interface DecorationSite {
  /** `url:line:column` of the decorating call, or `""` when no stack trace is available. */
  where: string;
  /** The class name of a decorated method, when the stack names it. */
  className: string;
}

/** This package's own source directory (`src/`, all its folders): its frames are skipped. */
const OWN_DIR = new URL("../", import.meta.url).href;

const FRAME = /^\s*at (?:(.*?) \()?(.*?:\d+:\d+)\)?$/;
const STATIC_INIT = /^(?:new )?([A-Za-z_$][\w$]*)\.<static_initializer>$/;

/**
 * Reads the decoration site from the current stack: the first frame outside this
 * package; for a method, the class's static initializer frame (the class definition), when
 * the decorator runtime shows one.
 */
export function decorationSite(isMethod: boolean): DecorationSite {
  const stack = new Error().stack ?? "";
  let where = "";
  let className = "";
  for (const line of stack.split("\n")) {
    const m = FRAME.exec(line);
    if (m === null) continue;
    const fnName = m[1] ?? "";
    const location = m[2]!;
    if (location.startsWith(OWN_DIR)) continue;
    if (where === "") where = location;
    if (!isMethod) break;
    const init = STATIC_INIT.exec(fnName);
    if (init !== null) {
      where = location;
      className = init[1]!;
      break;
    }
  }
  return { where, className };
}

/**
 * The name that `caches()` and the metrics give a cache of a function without a name (an
 * arrow function passed to `cache()` directly): `(anonymous) <url:line:column>`, where
 * `cache()` was applied, or `(anonymous)` without a stack trace.
 */
export function anonymousName(site: DecorationSite): string {
  return site.where === "" ? "(anonymous)" : `(anonymous) ${site.where}`;
}

/** Functions by the default name they were given in this process (held weakly). */
const byDefaultName = new Map<string, WeakRef<object>>();

/**
 * The default `name` of a shared cache for `fn` decorated at `site`:
 * `<Class.>name-<hash of site and source>`.
 *
 * @throws {TypeError} If another live function of this process already has that default
 * name (closures of one factory, or a class defined in a function called twice): they
 * need a `name` each.
 */
export function defaultSharedName(
  fn: (...args: never[]) => unknown,
  fnName: string,
  site: DecorationSite,
): string {
  const label = site.className ? `${site.className}.${fnName}` : fnName || "anonymous";
  const name = `${label}-${shortHash(`${site.where}\n${String(fn)}`, 10)}`;
  const other = byDefaultName.get(name)?.deref();
  if (other !== undefined && other !== fn) {
    throw new TypeError(
      `Cannot create cache: two different functions of this process get the default shared name "${name}" (closures made by one factory, or one class or function defined more than once): give each a distinct name option`,
    );
  }
  if (other === undefined) byDefaultName.set(name, new WeakRef(fn));
  return name;
}
