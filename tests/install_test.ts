// The JSR user's first run, end to end, with no network beyond 127.0.0.1: a local server
// serves exactly the files that `deno publish --dry-run` lists plus the release's `dist/`
// (written by scripts/release.ts from the library built here); consumer scripts in a
// temporary folder, with a fresh DENO_DIR and an empty WARP_CACHE_DIR, import the package
// over HTTP, as they would from JSR.
import assert from "node:assert/strict";
import { artifactFileName } from "../src/native/_library.ts";
import { VERSION } from "../src/native/_artifacts.ts";
import { writeRelease } from "../scripts/release.ts";
import { build } from "../scripts/build.ts";

const root = new URL("../", import.meta.url).pathname.replace(/\/$/, "");
const run = (await Deno.permissions.query({ name: "run" })).state === "granted";
const artifact = artifactFileName();

/** The files `deno publish --dry-run` would publish, relative to the root. */
async function publishedFiles(): Promise<string[]> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["publish", "--dry-run", "--allow-dirty"],
    cwd: root,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  assert.ok(out.success, text);
  const files = [...text.matchAll(/file:\/\/(\S+) \(/g)].map((m) => m[1]!);
  assert.ok(files.length > 5, text);
  return files.map((f) => f.slice(root.length + 1)).filter((f) => !f.startsWith("dist/"));
}

/** A copy of the package as JSR would serve it, with this machine's release in `dist/`. */
async function packageSnapshot(dir: string): Promise<void> {
  for (const rel of await publishedFiles()) {
    const to = `${dir}/${rel}`;
    await Deno.mkdir(to.slice(0, to.lastIndexOf("/")), { recursive: true });
    await Deno.copyFile(`${root}/${rel}`, to);
  }
  await writeRelease(await build(), dir);
}

interface Server {
  port: number;
  /** Requests for the artifact served so far. */
  artifactRequests: number;
  /** Serve a corrupted artifact while set. */
  tamper: boolean;
  close(): Promise<void>;
}

function serve(dir: string): Server & { npm: Map<string, Uint8Array<ArrayBuffer>> } {
  const state = { artifactRequests: 0, tamper: false };
  const npm = new Map<string, Uint8Array<ArrayBuffer>>();
  const server = Deno.serve(
    { hostname: "127.0.0.1", port: 0, onListen(): void {} },
    async (req) => {
      const path = decodeURIComponent(new URL(req.url).pathname);
      if (path.startsWith("/npm/")) {
        const body = npm.get(path.slice(5));
        return body ? new Response(body) : new Response("not found", { status: 404 });
      }
      let bytes: Uint8Array<ArrayBuffer>;
      try {
        bytes = await Deno.readFile(`${dir}${path}`);
      } catch {
        return new Response("not found", { status: 404 });
      }
      if (path.endsWith(artifact)) {
        state.artifactRequests++;
        if (state.tamper) {
          bytes = bytes.slice();
          bytes[bytes.length >> 1]! ^= 0xff;
        }
      }
      const type = path.endsWith(".ts") ? "application/typescript" : "application/octet-stream";
      return new Response(bytes, { headers: { "content-type": type } });
    },
  );
  return {
    npm,
    port: server.addr.port,
    get artifactRequests() {
      return state.artifactRequests;
    },
    get tamper() {
      return state.tamper;
    },
    set tamper(v: boolean) {
      state.tamper = v;
    },
    close: () => server.shutdown(),
  };
}

/** What a consumer run printed. */
interface Report {
  engine: string;
  memory: number;
  shared?: { value: string; hits: number; misses: number };
  sharedError?: string;
  warnings: string;
  stderr: string;
  ok: boolean;
}

const CONSUMER = (modUrl: string, engineUrl: string) => `
import { cache } from "${modUrl}";
import { memoryEngine } from "${engineUrl}";
const [dir, name] = Deno.args;
const sq = cache({ maxSize: 8 })((x) => x * x);
const out = { engine: memoryEngine(), memory: sq(7) };
try {
  const f = cache({ backend: "shared", dir, name })((id) => "value:" + id);
  const value = f(1);
  const { hits, misses } = f.cacheInfo();
  out.shared = { value, hits, misses };
} catch (e) {
  out.sharedError = String(e?.message ?? e);
}
console.log(JSON.stringify(out));
`;

async function consumer(
  work: string,
  port: number,
  env: Record<string, string>,
  args: string[],
  script = "consumer.js",
): Promise<Report> {
  const o = await new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--allow-ffi",
      "--allow-env",
      "--allow-read",
      "--allow-write",
      `--allow-net=127.0.0.1:${port}`,
      `--allow-import=127.0.0.1:${port}`,
      `${work}/${script}`,
      ...args,
    ],
    cwd: work,
    env: { NO_COLOR: "1", ...env },
    clearEnv: true,
    stdout: "piped",
    stderr: "piped",
  }).output();
  const stdout = new TextDecoder().decode(o.stdout).trim();
  const stderr = new TextDecoder().decode(o.stderr);
  const last = stdout.split("\n").pop() ?? "";
  let parsed: Partial<Report> = {};
  try {
    parsed = JSON.parse(last);
  } catch {
    // reported below through `ok` and `stderr`
  }
  return { engine: "", memory: 0, warnings: "", ...parsed, stderr, ok: o.success } as Report;
}

/**
 * A minimal npm registry for the packages the library imports (devalue), made from Deno's
 * cache here: the consumers use it through NPM_CONFIG_REGISTRY, so that nothing beyond
 * 127.0.0.1 is reached. Returns the files to serve, by path under `/npm/`.
 */
async function npmMirror(tmp: string, port: number): Promise<Map<string, Uint8Array<ArrayBuffer>>> {
  const lock = JSON.parse(await Deno.readTextFile(`${root}/deno.lock`));
  const info = JSON.parse(
    new TextDecoder().decode(
      (await new Deno.Command(Deno.execPath(), { args: ["info", "--json"], stdout: "piped" })
        .output()).stdout,
    ),
  );
  // The npm packages that the published modules import.
  const used = new Set<string>();
  for (const path of sourceFiles(`${root}/src`)) {
    const text = Deno.readTextFileSync(path);
    for (const m of text.matchAll(/"npm:(@?[^@"]+)@/g)) used.add(m[1]!);
  }
  const files = new Map<string, Uint8Array<ArrayBuffer>>();
  for (const [spec, version] of Object.entries(lock.specifiers as Record<string, string>)) {
    if (!spec.startsWith("npm:")) continue;
    const name = spec.slice(4, spec.lastIndexOf("@"));
    if (!used.has(name)) continue;
    const src = `${info.npmCache}/registry.npmjs.org/${name}/${version}`;
    const stage = `${tmp}/npm_stage/${name}`;
    await Deno.mkdir(stage, { recursive: true });
    await new Deno.Command("cp", { args: ["-r", src, `${stage}/package`] }).output();
    const tgz = `${tmp}/npm_stage/${name}-${version}.tgz`;
    const tar = await new Deno.Command("tar", { args: ["czf", tgz, "-C", stage, "package"] })
      .output();
    assert.ok(tar.success);
    const bytes = await Deno.readFile(tgz);
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-512", bytes));
    const integrity = `sha512-${btoa(String.fromCharCode(...digest))}`;
    const pkg = JSON.parse(await Deno.readTextFile(`${src}/package.json`));
    const tarPath = `${name}/-/${name}-${version}.tgz`;
    const packument = {
      name,
      "dist-tags": { latest: version },
      versions: {
        [version]: {
          ...pkg,
          dist: { tarball: `http://127.0.0.1:${port}/npm/${tarPath}`, integrity },
        },
      },
    };
    files.set(name, new TextEncoder().encode(JSON.stringify(packument)));
    files.set(tarPath, bytes);
  }
  return files;
}

/** Every file under `dir`, recursively. */
function sourceFiles(dir: string): string[] {
  return [...Deno.readDirSync(dir)].flatMap((e) =>
    e.isDirectory ? sourceFiles(`${dir}/${e.name}`) : [`${dir}/${e.name}`]
  );
}

function listDir(path: string): string[] {
  try {
    return [...Deno.readDirSync(path)].map((e) => e.name).sort();
  } catch {
    return [];
  }
}

Deno.test({
  name: "install: a JSR user's first run downloads, verifies and uses the native library",
  ignore: !run,
  fn: async (t) => {
    const tmp = await Deno.makeTempDir({ prefix: "warp_install_" });
    const pkg = `${tmp}/pkg`;
    await packageSnapshot(pkg);
    const server = serve(pkg);
    try {
      const work = `${tmp}/consumer`;
      await Deno.mkdir(work);
      const base = `http://127.0.0.1:${server.port}`;
      await Deno.writeTextFile(
        `${work}/consumer.js`,
        CONSUMER(`${base}/mod.ts`, `${base}/src/store/engine.ts`),
      );
      const shm = `${tmp}/shm`;
      await Deno.mkdir(shm);
      const env = (cacheDir: string, baseUrl = `${base}/dist/`): Record<string, string> => ({
        DENO_DIR: `${tmp}/deno_dir`,
        // No registry beyond 127.0.0.1: npm packages come from the local mirror.
        NPM_CONFIG_REGISTRY: `${base}/npm/`,
        WARP_CACHE_DIR: cacheDir,
        WARP_CACHE_BASE_URL: baseUrl,
        HOME: tmp,
        PATH: Deno.env.get("PATH") ?? "",
      });
      for (const [k, v] of await npmMirror(tmp, server.port)) server.npm.set(k, v);
      const installed = (cacheDir: string) => `${cacheDir}/${VERSION}/${Deno.build.target}`;

      await t.step("the first run downloads, verifies and uses the shared backend", async () => {
        const r = await consumer(work, server.port, env(`${tmp}/c1`), [shm, "e2e"]);
        assert.ok(r.ok, r.stderr);
        assert.equal(r.engine, "native", r.stderr);
        assert.equal(r.memory, 49);
        assert.deepEqual(r.shared, { value: "value:1", hits: 0, misses: 1 }, r.sharedError);
        assert.equal(server.artifactRequests, 1);
        assert.deepEqual(listDir(installed(`${tmp}/c1`)), [artifact]);
      });

      await t.step("a second process hits the first's entry without downloading", async () => {
        const r = await consumer(work, server.port, env(`${tmp}/c1`), [shm, "e2e"]);
        assert.ok(r.ok, r.stderr);
        assert.deepEqual(r.shared, { value: "value:1", hits: 1, misses: 1 });
        assert.equal(server.artifactRequests, 1, "no second download");
      });

      await t.step("8 first runs at once all work, and leave one verified file", async () => {
        const before = server.artifactRequests;
        const rs = await Promise.all(
          Array.from(
            { length: 8 },
            (_, i) => consumer(work, server.port, env(`${tmp}/c8`), [shm, `e2e-${i}`]),
          ),
        );
        for (const r of rs) {
          assert.ok(r.ok, r.stderr);
          assert.equal(r.engine, "native");
          assert.deepEqual(r.shared, { value: "value:1", hits: 0, misses: 1 }, r.sharedError);
        }
        assert.ok(server.artifactRequests - before >= 1 && server.artifactRequests - before <= 8);
        assert.deepEqual(listDir(installed(`${tmp}/c8`)), [artifact], "no temporary file left");
        const bytes = await Deno.readFile(`${installed(`${tmp}/c8`)}/${artifact}`);
        assert.deepEqual(bytes, await Deno.readFile(`${pkg}/dist/${artifact}`));
      });

      await t.step(
        "a tampered artifact is refused with both hashes; a good one recovers",
        async () => {
          server.tamper = true;
          const r = await consumer(work, server.port, env(`${tmp}/ct`), [shm, "e2e"]);
          server.tamper = false;
          assert.ok(r.ok, r.stderr);
          assert.equal(r.engine, "ts", "the memory backend falls back");
          assert.equal(r.memory, 49);
          assert.equal(r.shared, undefined);
          assert.match(
            r.sharedError!,
            new RegExp(`${base}/dist/${artifact.replace(/\./g, "\\.")}`),
          );
          assert.match(r.sharedError!, /its SHA-256 is [0-9a-f]{64}, expected [0-9a-f]{64}/);
          assert.deepEqual(listDir(installed(`${tmp}/ct`)), [], "nothing kept");
          const again = await consumer(work, server.port, env(`${tmp}/ct`), [shm, "e2e"]);
          assert.equal(again.engine, "native", again.stderr);
          assert.equal(again.shared?.value, "value:1");
        },
      );

      await t.step("a file tampered in the library cache is not loaded", async () => {
        const file = `${installed(`${tmp}/c1`)}/${artifact}`;
        const bytes = await Deno.readFile(file);
        bytes[100] = bytes[100]! ^ 1;
        await Deno.writeFile(file, bytes);
        const r = await consumer(work, server.port, env(`${tmp}/c1`, "http://127.0.0.1:1/"), [
          shm,
          "e2e",
        ]);
        assert.equal(r.engine, "ts");
        assert.match(r.sharedError!, /SHA-256 [0-9a-f]{64}, expected [0-9a-f]{64}: not loaded/);
      });

      await t.step("with the server down: memory falls back, shared names the fix", async () => {
        const r = await consumer(work, server.port, env(`${tmp}/cd`, "http://127.0.0.1:1/"), [
          shm,
          "e2e",
        ]);
        assert.ok(r.ok, r.stderr);
        assert.equal(r.engine, "ts");
        assert.equal(r.memory, 49);
        assert.match(r.sharedError!, /http:\/\/127\.0\.0\.1:1\//);
        assert.match(r.sharedError!, /deno run -A jsr:@warp\/cache\/install/);
        assert.match(r.sharedError!, /WARP_CACHE_LIB/);
        assert.match(r.sharedError!, /--allow-net/);
      });

      await t.step("without --allow-net nothing is fetched and nothing prompts", async () => {
        const before = server.artifactRequests;
        const o = await new Deno.Command(Deno.execPath(), {
          args: [
            "run",
            "--allow-ffi",
            "--allow-env",
            "--allow-read",
            "--allow-write",
            `--allow-import=127.0.0.1:${server.port}`,
            `${work}/consumer.js`,
            shm,
            "e2e",
          ],
          env: env(`${tmp}/cn`),
          clearEnv: true,
          stdin: "null",
          stdout: "piped",
          stderr: "piped",
        }).output();
        const r = JSON.parse(new TextDecoder().decode(o.stdout).trim());
        assert.equal(r.engine, "ts");
        assert.match(r.sharedError, /no --allow-net for 127\.0\.0\.1/);
        assert.equal(server.artifactRequests, before);
      });

      await t.step("deno compile layout: the library beside the module, no download", async () => {
        // `deno compile --include dist/<artifact>` unpacks the module tree and the included
        // file in one folder and runs from there; this plays that layout.
        const before = server.artifactRequests;
        const r = await consumerFromFiles(pkg, tmp, shm, env(`${tmp}/cc`, "http://127.0.0.1:1/"));
        assert.ok(r.ok, r.stderr);
        assert.equal(r.engine, "native", r.stderr);
        assert.equal(r.shared?.value, "value:1");
        assert.equal(server.artifactRequests, before);
      });

      await t.step(
        "deno compile --include <artifact> main.ts: beside the main module",
        async () => {
          const dir = `${tmp}/compiled`;
          await Deno.mkdir(dir);
          await Deno.copyFile(`${work}/consumer.js`, `${dir}/main.js`);
          await Deno.copyFile(`${pkg}/dist/${artifact}`, `${dir}/${artifact}`);
          const before = server.artifactRequests;
          const r = await consumer(dir, server.port, env(`${tmp}/cm`, "http://127.0.0.1:1/"), [
            shm,
            "e2e",
          ], "main.js");
          assert.equal(r.engine, "native", r.stderr);
          assert.equal(r.shared?.value, "value:1");
          assert.equal(server.artifactRequests, before);
          // A different file there is refused, not loaded.
          const bytes = await Deno.readFile(`${dir}/${artifact}`);
          bytes[200] = bytes[200]! ^ 1;
          await Deno.writeFile(`${dir}/${artifact}`, bytes);
          const bad = await consumer(dir, server.port, env(`${tmp}/cm2`, "http://127.0.0.1:1/"), [
            shm,
            "e2e",
          ], "main.js");
          assert.equal(bad.engine, "ts");
          assert.match(bad.sharedError!, /beside the main module\): SHA-256/);
        },
      );

      await t.step("the install command installs ahead of time and --check verifies", async () => {
        const cmd = (args: string[]) =>
          new Deno.Command(Deno.execPath(), {
            args: [
              "run",
              "-A",
              `${base}/src/native/install.ts`,
              ...args,
            ],
            env: env(`${tmp}/ci`),
            clearEnv: true,
            stdout: "piped",
            stderr: "piped",
          }).output();
        const check0 = await cmd(["--check"]);
        assert.equal(check0.success, false, "nothing installed yet");
        const o = await cmd([]);
        const path = new TextDecoder().decode(o.stdout).trim();
        assert.ok(o.success, new TextDecoder().decode(o.stderr));
        assert.equal(path, `${installed(`${tmp}/ci`)}/${artifact}`);
        const check = await cmd(["--check"]);
        assert.ok(check.success);
        assert.match(new TextDecoder().decode(check.stdout), new RegExp(`${path}$`, "m"));
      });
    } finally {
      await server.close();
      await Deno.remove(tmp, { recursive: true });
    }
  },
});

/** Runs the consumer against a file copy of the package (module tree + dist/). */
async function consumerFromFiles(
  pkg: string,
  tmp: string,
  shm: string,
  env: Record<string, string>,
): Promise<Report> {
  const unpacked = `${tmp}/unpacked`;
  await new Deno.Command("cp", { args: ["-r", pkg, unpacked] }).output();
  await Deno.writeTextFile(
    `${unpacked}/main.js`,
    CONSUMER(`./mod.ts`, `./src/store/engine.ts`),
  );
  return await consumer(unpacked, 1, env, [shm, "e2e"], "main.js");
}
