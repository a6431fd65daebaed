/**
 * The layout rules of `src/` (CONTRIBUTING.md, "Layout"): no import circle between its
 * modules, and no function longer than 150 lines. Parsed with the TypeScript compiler, so
 * strings, comments and template literals cannot fool the count.
 */

import assert from "node:assert/strict";
import ts from "npm:typescript@5.9.3";

const root = new URL("../", import.meta.url).pathname;
const MAX_FUNCTION_LINES = 150;

async function sources(dir: string): Promise<string[]> {
  const out: string[] = [];
  for await (const e of Deno.readDir(dir)) {
    const path = `${dir}/${e.name}`;
    if (e.isDirectory) out.push(...await sources(path));
    else if (e.name.endsWith(".ts")) out.push(path);
  }
  return out.sort();
}

const files = [`${root}mod.ts`, ...await sources(`${root}src`)];
const parsed = new Map<string, ts.SourceFile>();
for (const f of files) {
  parsed.set(
    f,
    ts.createSourceFile(f, await Deno.readTextFile(f), ts.ScriptTarget.Latest, true),
  );
}

/** The local modules that `file` imports or re-exports (type-only imports included). */
function localImports(file: string, sf: ts.SourceFile): string[] {
  const out: string[] = [];
  for (const st of sf.statements) {
    const spec = (ts.isImportDeclaration(st) || ts.isExportDeclaration(st))
      ? st.moduleSpecifier
      : undefined;
    if (spec && ts.isStringLiteral(spec) && spec.text.startsWith(".")) {
      out.push(new URL(spec.text, `file://${file}`).pathname);
    }
  }
  return out;
}

/** Every import circle, as the list of modules around it. */
export function circles(graph: Map<string, string[]>): string[][] {
  const found: string[][] = [];
  const state = new Map<string, "open" | "done">();
  const stack: string[] = [];
  const visit = (m: string): void => {
    state.set(m, "open");
    stack.push(m);
    for (const n of graph.get(m) ?? []) {
      if (state.get(n) === "open") found.push(stack.slice(stack.indexOf(n)).concat(n));
      else if (!state.has(n)) visit(n);
    }
    stack.pop();
    state.set(m, "done");
  };
  for (const m of graph.keys()) if (!state.has(m)) visit(m);
  return found;
}

/** Functions (declarations, methods, arrows, expressions) longer than `max` lines. */
function longFunctions(sf: ts.SourceFile, max: number): string[] {
  const out: string[] = [];
  const visit = (node: ts.Node): void => {
    if (ts.isFunctionLike(node) && "body" in node && node.body) {
      const start = sf.getLineAndCharacterOfPosition(node.getStart(sf)).line;
      const end = sf.getLineAndCharacterOfPosition(node.getEnd()).line;
      const lines = end - start + 1;
      if (lines > max) {
        const name = (node as { name?: ts.Node }).name?.getText(sf) ?? "(anonymous)";
        out.push(`${sf.fileName.slice(root.length)}:${start + 1} ${name}: ${lines} lines`);
      }
    }
    ts.forEachChild(node, visit);
  };
  visit(sf);
  return out;
}

Deno.test("src/: no import circle between modules", () => {
  const graph = new Map<string, string[]>();
  for (const [f, sf] of parsed) graph.set(f, localImports(f, sf));
  // The check itself finds a circle when there is one.
  assert.deepEqual(circles(new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]]])), [[
    "a",
    "b",
    "c",
    "a",
  ]]);
  const found = circles(graph).map((c) => c.map((m) => m.slice(root.length)).join(" -> "));
  assert.deepEqual(found, []);
});

Deno.test(`src/: no function over ${MAX_FUNCTION_LINES} lines`, () => {
  const probe = ts.createSourceFile(
    "probe.ts",
    `function f() {\n${"  x();\n".repeat(MAX_FUNCTION_LINES)}}\n`,
    ts.ScriptTarget.Latest,
    true,
  );
  assert.equal(longFunctions(probe, MAX_FUNCTION_LINES).length, 1);
  const long = [...parsed.values()].flatMap((sf) => longFunctions(sf, MAX_FUNCTION_LINES));
  assert.deepEqual(long, []);
});
