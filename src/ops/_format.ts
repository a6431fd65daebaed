/**
 * Text of the command line (`cli.ts`): sizes, ratios, sparklines, and names made safe to
 * print on a terminal. Private to the package.
 *
 * @module
 */

/** `n` bytes in binary units (`1.5 KiB`). */
export function formatBytes(n: number): string {
  const units = ["B", "KiB", "MiB", "GiB", "TiB"];
  let v = n;
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${n} B` : `${Number.isInteger(v) ? v : v.toFixed(1)} ${units[u]}`;
}

/** A ratio as a percentage with one decimal, or `-` when there is none. */
export function formatRatio(r: number | null): string {
  return r === null ? "-" : `${(r * 100).toFixed(1)}%`;
}

const SPARKS = "▁▂▃▄▅▆▇█";

/** The sparkline of `ratios` (null: no lookups in that interval, shown as a space). */
export function sparkline(ratios: readonly (number | null)[]): string {
  return ratios.map((r) =>
    r === null ? " " : SPARKS[Math.min(SPARKS.length - 1, Math.floor(r * SPARKS.length))]!
  ).join("");
}

const NAMED: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t", "\\": "\\\\" };

/** C0 and C1 controls, DEL, bidirectional embeddings, overrides and isolates, and `\`. */
// deno-lint-ignore no-control-regex
const UNSAFE = /[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\\]/g;

/**
 * `text` as it may be printed on a terminal: control characters (C0, DEL, C1: an ESC
 * sequence could set the window title or move the cursor, a newline forge a row) are
 * escaped as `\n`, `\r`, `\t` or `\xHH`, bidirectional controls as `\u{HHHH}`, and a
 * backslash as `\\`, so that a file name prints on one line and reads back unambiguously
 * (as `ls -b` does). JSON output needs none of this: `JSON.stringify` escapes them.
 */
export function printable(text: string): string {
  return text.replace(UNSAFE, (c) => {
    const named = NAMED[c];
    if (named !== undefined) return named;
    const code = c.charCodeAt(0);
    return code <= 0xff ? `\\x${code.toString(16).padStart(2, "0")}` : `\\u{${code.toString(16)}}`;
  });
}
