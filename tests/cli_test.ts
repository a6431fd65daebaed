// The CLI (src/ops/cli.ts) run as a subprocess against caches that other live processes hold
// open (tests/fixtures/cli_holder.ts), and the read-only inspection under it
// (src/ops/_shared_inspect.ts, warp_shm_inspect).
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { loadNative } from "../src/native/ffi.ts";
import { SharedStore } from "../src/store/shared_store.ts";
import { cacheNameOf, inspectCacheFile, resolveCacheFile } from "../src/ops/_shared_inspect.ts";
import {
  CHUNK_SIZE,
  FORMAT_VERSION,
  INSPECT,
  SHM_HEADER,
  SHM_INFO,
  SHM_INSPECT,
  SHM_INSPECT_FIELDS,
} from "../src/native/_abi.ts";
import { formatBytes, sparkline } from "../src/ops/_format.ts";

const root = new URL("../", import.meta.url).pathname;
const cliPath = new URL("../src/ops/cli.ts", import.meta.url).pathname;
const decoder = new TextDecoder();

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs the CLI with `args`; never fails by itself. */
async function cli(...args: string[]): Promise<Run> {
  const out = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", cliPath, ...args],
    cwd: root,
    env: { NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  return { code: out.code, stdout: decoder.decode(out.stdout), stderr: decoder.decode(out.stderr) };
}

/** The CLI's output must never be a stack trace. */
function noStackTrace(r: Run): void {
  assert.doesNotMatch(r.stderr + r.stdout, /\n\s+at /, "a stack trace");
}

// deno-lint-ignore no-explicit-any
type Reply = Record<string, any>;

/** A live process holding shared caches open (tests/fixtures/cli_holder.ts). */
class Holder {
  #child: Deno.ChildProcess;
  #stdin: WritableStreamDefaultWriter<Uint8Array>;
  #lines: AsyncIterator<string>;
  ready!: Reply;

  constructor(dir: string, caches: { name: string; maxSize: number; keys: number[] }[]) {
    this.#child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "-A",
        "--quiet",
        new URL("./fixtures/cli_holder.ts", import.meta.url).pathname,
        JSON.stringify({ dir, caches }),
      ],
      cwd: root,
      env: { WARP_CACHE_ENGINE: "native", NO_COLOR: "1" },
      stdin: "piped",
      stdout: "piped",
      stderr: "inherit",
    }).spawn();
    this.#stdin = this.#child.stdin.getWriter();
    this.#lines = lines(this.#child.stdout)[Symbol.asyncIterator]();
  }

  static async start(
    dir: string,
    caches: { name: string; maxSize: number; keys: number[] }[],
  ): Promise<Holder> {
    const h = new Holder(dir, caches);
    h.ready = (await h.#next()).ready;
    return h;
  }

  async #next(): Promise<Reply> {
    const r = await this.#lines.next();
    assert.ok(!r.done, "the holder ended early");
    return JSON.parse(r.value) as Reply;
  }

  async send(command: string): Promise<Reply> {
    await this.#stdin.write(new TextEncoder().encode(command + "\n"));
    return await this.#next();
  }

  async quit(): Promise<void> {
    await this.#stdin.write(new TextEncoder().encode("quit\n"));
    await this.#stdin.close();
    await this.#lines.return?.();
    assert.equal((await this.#child.status).code, 0);
  }
}

async function* lines(stream: ReadableStream<Uint8Array>): AsyncGenerator<string> {
  let buffered = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    buffered += chunk;
    let nl: number;
    while ((nl = buffered.indexOf("\n")) >= 0) {
      yield buffered.slice(0, nl);
      buffered = buffered.slice(nl + 1);
    }
  }
}

async function withDir(body: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp_cli_" });
  try {
    await body(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function sha(path: string): string {
  return createHash("sha256").update(Deno.readFileSync(path)).digest("hex");
}

/** alpha: keys 1,1,1,2,3 (3 misses, 2 hits, 3 entries); beta: 4,4,4,4 (1 miss, 3 hits). */
const CACHES = [
  { name: "alpha", maxSize: 50, keys: [1, 1, 1, 2, 3] },
  { name: "beta", maxSize: 20, keys: [4, 4, 4, 4] },
];

Deno.test("cli ls lists the caches that live processes use, with exact counts, changing nothing", async () => {
  await withDir(async (dir) => {
    const holder = await Holder.start(dir, CACHES);
    try {
      // A foreign file without our suffix is ignored.
      Deno.writeTextFileSync(`${dir}/notes.txt`, "not a cache");
      const files = [`${dir}/alpha.warp`, `${dir}/beta.warp`];
      const before = files.map(sha);
      const json = await cli("ls", "--dir", dir, "--json");
      assert.equal(json.code, 0, json.stderr);
      const list = JSON.parse(json.stdout) as Reply[];
      assert.deepEqual(
        list.map((c) => [c.name, c.status, c.entries, c.hits, c.misses, c.maxSize, c.inUse]),
        [["alpha", "ok", 3, 2, 3, 50, true], ["beta", "ok", 1, 3, 1, 20, true]],
      );
      assert.equal(list[0]!.fileSize, Deno.statSync(files[0]!).size);
      assert.equal(list[0]!.bytes, 0, "small entries live in their slots: no chunk");
      assert.equal(list[0]!.maxBytes, 50 * 19 * 256);
      assert.equal(list[1]!.hitRatio, 0.75);

      const text = await cli("ls", "--dir", dir);
      assert.equal(text.code, 0, text.stderr);
      assert.equal(
        text.stdout,
        [
          "NAME   ENTRIES  CAPACITY            BYTES  HITS  MISSES   HIT%  OVERSIZE  STALE       FILE",
          "alpha        3        50  0 B / 237.5 KiB     2       3  40.0%         0      0  263.3 KiB",
          "beta         1        20     0 B / 95 KiB     3       1  75.0%         0      0  118.2 KiB",
          "",
        ].join("\n"),
      );
      const info = await cli("info", "alpha", "--dir", dir);
      assert.equal(info.code, 0, info.stderr);
      assert.match(info.stdout, /^entries +3$/m);
      assert.match(info.stdout, /^maxKeySize +512 bytes$/m);
      assert.match(info.stdout, new RegExp(`^format version +${FORMAT_VERSION}$`, "m"));
      assert.match(info.stdout, /^evictions +0$/m);
      assert.match(info.stdout, /^in use +yes$/m);
      const infoJson = JSON.parse((await cli("info", "beta", "--dir", dir, "--json")).stdout);
      assert.deepEqual([infoJson.hits, infoJson.misses, infoJson.maxValueSize], [3, 1, 4096]);

      // Reading changed neither the files nor the counters the live process sees.
      assert.deepEqual(files.map(sha), before, "ls and info leave the files byte-identical");
      const after = await holder.send("info");
      assert.deepEqual(after.infos, holder.ready);
    } finally {
      await holder.quit();
    }
  });
});

Deno.test("cli info on a missing name exits 1 with a clear message", async () => {
  await withDir(async (dir) => {
    const r = await cli("info", "nope", "--dir", dir);
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.equal(
      r.stderr,
      `warp-cache: No shared cache named "nope" in ${dir} (no file nope.warp)\n`,
    );
    const c = await cli("clear", "nope", "--dir", dir);
    assert.equal(c.code, 1);
    const m = await cli("rm", "nope", "--dir", dir);
    assert.equal(m.code, 1);
    const empty = await cli("ls", "--dir", `${dir}/missing`);
    assert.equal(empty.code, 0);
    assert.equal(empty.stdout, `No shared caches in ${dir}/missing\n`);
    assert.equal((await cli("ls", "--dir", dir, "--json")).stdout, "[]\n");
  });
});

Deno.test("cli clear empties a cache and resets its counters for the live process", async () => {
  await withDir(async (dir) => {
    const holder = await Holder.start(dir, CACHES);
    try {
      const r = await cli("clear", "alpha", "--dir", dir);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "Cleared alpha: 3 entries removed, counters reset\n");
      const seen = await holder.send("info");
      assert.equal(seen.infos.alpha.currentSize, 0);
      assert.equal(seen.infos.alpha.hits, 0);
      assert.equal(seen.infos.alpha.misses, 0);
      assert.equal(seen.infos.alpha.maxSize, 50, "the file keeps its sizes");
      assert.deepEqual(seen.infos.beta, holder.ready.beta, "another cache is untouched");
      const call = await holder.send("call alpha 1");
      assert.equal(call.computed, 1, "a cleared key is computed again");
    } finally {
      await holder.quit();
    }
  });
});

Deno.test("cli rm removes a cache in use: the live process keeps working, a new open recreates it", async () => {
  await withDir(async (dir) => {
    const holder = await Holder.start(dir, CACHES);
    try {
      Deno.mkdirSync(`${dir}/beta.warp.large`);
      Deno.writeTextFileSync(`${dir}/beta.warp.large/x.v`, "large");
      const r = await cli("rm", "beta", "--dir", dir);
      assert.equal(r.code, 0, r.stderr);
      assert.match(
        r.stdout,
        /^Removed .*beta\.warp and .*beta\.warp\.large; processes that have it open keep using the old file/,
      );
      assert.throws(() => Deno.statSync(`${dir}/beta.warp`), Deno.errors.NotFound);
      assert.throws(() => Deno.statSync(`${dir}/beta.warp.large`), Deno.errors.NotFound);
      // The live process keeps its mapping: its entry is still a hit.
      const call = await holder.send("call beta 4");
      assert.equal(call.computed, 0);
      assert.equal(call.infos.beta.hits, 4);
      const list = JSON.parse((await cli("ls", "--dir", dir, "--json")).stdout) as Reply[];
      assert.deepEqual(list.map((c) => c.name), ["alpha"]);
      // A new process opening the name gets a fresh file.
      const other = await Holder.start(dir, [{ name: "beta", maxSize: 20, keys: [4] }]);
      try {
        assert.equal(other.ready.beta.misses, 1);
        assert.equal(other.ready.beta.currentSize, 1);
        assert.ok(Deno.statSync(`${dir}/beta.warp`).isFile);
      } finally {
        await other.quit();
      }
    } finally {
      await holder.quit();
    }
  });
});

Deno.test("cli reports corrupt, truncated, other-version and foreign files, never a stack trace", async () => {
  await withDir(async (dir) => {
    const holder = await Holder.start(dir, [CACHES[0]!]);
    await holder.quit();
    const good = Deno.readFileSync(`${dir}/alpha.warp`);
    Deno.writeFileSync(`${dir}/random.warp`, crypto.getRandomValues(new Uint8Array(4096)));
    Deno.writeFileSync(`${dir}/truncated.warp`, good.subarray(0, 1000));
    const old = good.slice();
    new DataView(old.buffer).setUint32(SHM_HEADER.version, 5, true); // format version 5
    Deno.writeFileSync(`${dir}/old.warp`, old);
    Deno.symlinkSync(`${dir}/alpha.warp`, `${dir}/link.warp`);
    const hashes = ["random", "truncated", "old"].map((n) => sha(`${dir}/${n}.warp`));

    const ls = await cli("ls", "--dir", dir);
    assert.equal(ls.code, 0, ls.stderr);
    noStackTrace(ls);
    const rows = ls.stdout.split("\n");
    const row = (name: string): string => rows.find((l) => l.startsWith(`${name} `)) ?? "";
    assert.match(row("random"), /^random +\(foreign\)$/);
    assert.match(row("truncated"), /^truncated +\(corrupt\)$/);
    assert.match(row("old"), /^old +\(other version\)$/);
    assert.match(row("link"), /^link +\(unreadable\)$/);
    assert.match(row("alpha"), /^alpha +3 +50 /);
    assert.match(
      ls.stdout,
      /truncated: .*truncated\.warp is corrupt \(truncated or extended\): 1000 bytes/,
    );
    assert.match(ls.stdout, /link: .*symbolic link, which is never followed/);

    const json = JSON.parse((await cli("ls", "--dir", dir, "--json")).stdout) as Reply[];
    assert.deepEqual(
      json.map((c) => [c.name, c.status]),
      [
        ["alpha", "ok"],
        ["link", "unreadable"],
        ["old", "other version"],
        ["random", "foreign"],
        ["truncated", "corrupt"],
      ],
    );
    assert.equal(json[2]!.formatVersion, 5);

    for (
      const [name, says] of [
        ["random", "foreign: "],
        ["truncated", "corrupt: "],
        ["old", "other version: "],
      ]
    ) {
      const r = await cli("info", name!, "--dir", dir);
      assert.equal(r.code, 1, name);
      noStackTrace(r);
      assert.ok(
        r.stderr.startsWith(`warp-cache: Cannot read shared cache "${name}": ${says}`),
        r.stderr,
      );
    }
    const w = await cli("watch", "--dir", dir, "--count", "1");
    assert.equal(w.code, 0, w.stderr);
    assert.match(w.stdout, /^random +\(foreign\)$/m);
    // rm refuses a file that is not ours, and reading changed none of them.
    const rm = await cli("rm", "random", "--dir", dir);
    assert.equal(rm.code, 1);
    assert.match(
      rm.stderr,
      /Refusing to remove .*random\.warp: .*not a cache file of @warp\/cache/,
    );
    assert.ok(Deno.statSync(`${dir}/random.warp`).isFile);
    assert.deepEqual(["random", "truncated", "old"].map((n) => sha(`${dir}/${n}.warp`)), hashes);
    // A corrupt file of ours may be removed.
    assert.equal((await cli("rm", "truncated", "--dir", dir)).code, 0);
  });
});

Deno.test("cli usage errors exit 2 with usage on stderr; --help exits 0", async () => {
  for (
    const args of [["bogus"], ["ls", "--bogus"], [], ["info"], ["watch", "--count", "0"]]
  ) {
    const r = await cli(...args);
    assert.equal(r.code, 2, args.join(" "));
    assert.match(r.stderr, /Usage: warp-cache/, args.join(" "));
    assert.equal(r.stdout, "");
    noStackTrace(r);
  }
  const help = await cli("--help");
  assert.equal(help.code, 0);
  assert.match(help.stdout, /^Usage: warp-cache \[options\] \[command\]/);
  for (const c of ["ls", "info", "clear", "rm", "watch"]) {
    assert.match(help.stdout, new RegExp(`\\n  ${c} `));
  }
  // Without the native library: a clear error, exit 1.
  const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp_cli_" });
  Deno.writeTextFileSync(`${dir}/x.warp`, "x");
  const noLib = await new Deno.Command(Deno.execPath(), {
    args: ["run", "-A", "--quiet", cliPath, "ls", "--dir", dir],
    env: { WARP_CACHE_LIB: "/nonexistent/libwarp_cache.so", NO_COLOR: "1" },
    stdout: "piped",
    stderr: "piped",
  }).output();
  await Deno.remove(dir, { recursive: true });
  assert.equal(noLib.code, 1);
  assert.match(
    decoder.decode(noLib.stderr),
    /^warp-cache: Cannot inspect shared caches: the native library is needed, and WARP_CACHE_LIB=/,
  );
  const sub = await cli("ls", "--help");
  assert.equal(sub.code, 0);
  assert.match(sub.stdout, /--dir <path>/);
  assert.match(sub.stdout, /--json/);
});

Deno.test("cli watch draws each cache's hit ratio as a sparkline, and ends on SIGINT with 0", async () => {
  await withDir(async (dir) => {
    const holder = await Holder.start(dir, CACHES);
    try {
      assert.deepEqual(await holder.send("spin alpha 1"), { spinning: true });
      const r = await cli("watch", "--dir", dir, "--count", "3", "--interval", "300");
      const stopped = await holder.send("stop");
      assert.equal(r.code, 0, r.stderr);
      const frames = r.stdout.split(/\n(?=warp-cache watch )/);
      assert.equal(frames.length, 3);
      for (const f of frames) assert.match(f, /^warp-cache watch .* UTC {2}\(Ctrl-C to quit\)\n/);
      const last = frames[2]!.split("\n");
      // Each cache on two lines: its counters, then its sparkline.
      const at = (name: string) => last.findIndex((l) => l.startsWith(`${name} `));
      const alpha = last[at("alpha")] ?? "";
      const beta = last[at("beta")] ?? "";
      // alpha only hits while spinning: its intervals with lookups are full bars.
      const sparks = /^ {2}\|([ ▁▂▃▄▅▆▇█]{60})\| last 60 s$/.exec(last[at("alpha") + 1]!)?.[1] ??
        "";
      assert.equal(sparks.length, 60, last[at("alpha") + 1]);
      assert.ok(stopped.stopped > 0);
      assert.match(sparks, /^[█ ]*█[█ ]*$/, alpha);
      assert.match(alpha, / 100\.0%$/);
      // beta had no lookups: blank intervals and no ratio for the minute.
      assert.match(beta, / -$/, beta);
      assert.equal(last[at("beta") + 1], `  |${" ".repeat(60)}| last 60 s`);
    } finally {
      await holder.quit();
    }
    // SIGINT ends a watch without --count with exit code 0.
    const child = new Deno.Command(Deno.execPath(), {
      args: ["run", "-A", "--quiet", cliPath, "watch", "--dir", dir],
      stdout: "piped",
      stderr: "piped",
    }).spawn();
    const out = lines(child.stdout)[Symbol.asyncIterator]();
    const first = await out.next();
    assert.match(first.value ?? "", /^warp-cache watch /);
    child.kill("SIGINT");
    await out.return(undefined);
    const status = await child.status;
    await child.stderr.cancel();
    assert.equal(status.code, 0);
    assert.equal(status.signal, null);
    // --json: one line of JSON a frame.
    const j = await cli("watch", "--dir", dir, "--count", "2", "--interval", "50", "--json");
    assert.equal(j.code, 0, j.stderr);
    const frames = j.stdout.trim().split("\n").map((l) => JSON.parse(l) as Reply);
    assert.equal(frames.length, 2);
    assert.deepEqual(frames[1]!.caches.map((c: Reply) => [c.name, c.recentHitRatios.length]), [
      ["alpha", 1],
      ["beta", 1],
    ]);
  });
});

Deno.test("cli watch fits 100 columns, long names and large counters included", async () => {
  await withDir(async (dir) => {
    const names = ["a-rather-long-cache-name-for-the-dashboard-of-orders", "short"];
    const stores = names.map((n) =>
      new SharedStore({ dir, file: `${n}.warp` }, 100_000, 64, 64, undefined, "cli")
    );
    try {
      const key = new Uint8Array([1]);
      for (const s of stores) {
        s.set(key, 1, 1, Date.now(), false);
        for (let i = 0; i < 123_456; i++) s.get(key, 1, Date.now());
        s.get(new Uint8Array([2]), 1, Date.now());
      }
      const r = await cli("watch", "--dir", dir, "--count", "2", "--interval", "50");
      assert.equal(r.code, 0, r.stderr);
      const wide = r.stdout.split("\n").filter((l) => [...l].length > 100);
      assert.deepEqual(wide, [], `lines over 100 columns:\n${wide.join("\n")}`);
      assert.match(r.stdout, /123456/);
      assert.match(r.stdout, /a-rather-long/);
    } finally {
      for (const s of stores) s.close();
    }
  });
});

Deno.test("inspectCacheFile() reads what cacheInfo() reports, at the SHM_INSPECT indices", async () => {
  await withDir((dir) => {
    const s = new SharedStore({ dir, file: "pin.warp" }, 9, 17, 33, undefined, "pin", 2304);
    try {
      const key = new Uint8Array([1, 2, 3]);
      // 3 + 30 bytes and more: too large for a slot, one chunk.
      s.set(key, 3, new Uint8Array(30), Date.now(), false);
      for (let i = 0; i < 5; i++) s.get(key, 3, Date.now());
      s.get(new Uint8Array([9]), 1, Date.now());
      s.countStaleHit();
      s.countRefresh();
      s.countRefresh();
      const path = `${dir}/pin.warp`;
      const before = sha(path);
      const lib = loadNative()!;
      const raw = new Float64Array(SHM_INSPECT_FIELDS);
      const bytes = new TextEncoder().encode(path);
      assert.equal(lib.warp_shm_inspect!(bytes, bytes.length, raw), INSPECT.valid);
      const i = s.info();
      assert.equal(raw[SHM_INSPECT.hits], i.hits);
      assert.equal(raw[SHM_INSPECT.misses], i.misses);
      assert.equal(raw[SHM_INSPECT.currentSize], 1);
      assert.equal(raw[SHM_INSPECT.maxSize], 9);
      assert.equal(raw[SHM_INSPECT.maxKeySize], 17);
      assert.equal(raw[SHM_INSPECT.maxValueSize], 33);
      assert.equal(raw[SHM_INSPECT.bytes], CHUNK_SIZE); // one entry of one chunk
      assert.equal(raw[SHM_INSPECT.maxBytes], 9 * CHUNK_SIZE); // the default: 9 such entries
      assert.equal(raw[SHM_INSPECT.staleHits], 1);
      assert.equal(raw[SHM_INSPECT.refreshes], 2);
      assert.equal(raw[SHM_INSPECT.formatVersion], FORMAT_VERSION);
      assert.equal(raw[SHM_INSPECT.fileSize], Deno.statSync(path).size);
      assert.equal(raw[SHM_INSPECT.inUse], 1);
      assert.equal(raw[SHM_INSPECT.consistent], 1);
      assert.equal(raw[SHM_INSPECT.locked], 0);
      for (const k of Object.keys(SHM_INFO) as (keyof typeof SHM_INFO)[]) {
        assert.equal(SHM_INSPECT[k], SHM_INFO[k], `${k} keeps warp_shm_info's index`);
      }
      const r = inspectCacheFile(path);
      assert.equal(r.status, "ok");
      assert.equal(r.status === "ok" && r.info.hitRatio, i.hits / (i.hits + i.misses));
      assert.equal(sha(path), before, "inspection changes nothing");
      assert.deepEqual(s.info(), i, "nor the counters");
    } finally {
      s.close();
    }
    const gone = inspectCacheFile(`${dir}/none.warp`);
    assert.equal(gone.status, "unreadable");
    assert.match(gone.status === "unreadable" ? gone.error : "", /none\.warp: No such file/);
  });
});

Deno.test("cache names map to files as the shared backend maps them", async () => {
  await withDir(async (dir) => {
    const holder = await Holder.start(dir, [{ name: "a b/c", maxSize: 5, keys: [1] }]);
    await holder.quit();
    const list = JSON.parse((await cli("ls", "--dir", dir, "--json")).stdout) as Reply[];
    assert.equal(list.length, 1);
    const stem = list[0]!.name as string;
    assert.match(stem, /^a_b_c-[0-9a-f]{8}$/);
    assert.equal(cacheNameOf(`${stem}.warp`), stem);
    // Both the name and the stem that ls shows find the file.
    assert.equal(resolveCacheFile(dir, "a b/c"), `${dir}/${stem}.warp`);
    assert.equal(resolveCacheFile(dir, stem), `${dir}/${stem}.warp`);
    assert.equal((await cli("info", "a b/c", "--dir", dir)).code, 0);
    assert.equal((await cli("info", stem, "--dir", dir)).code, 0);
  });
});

Deno.test("cli escapes control characters of file names in ls, info and watch; JSON stays JSON", async () => {
  await withDir(async (dir) => {
    // A name that sets the terminal title, one whose newline forges a row, and a foreign
    // file whose name moves the cursor.
    const title = "t\x1b]0;pwned\x07";
    const forged = "x\nforged          99      100";
    const stores = [title, forged].map((stem) =>
      new SharedStore({ dir, file: `${stem}.warp` }, 8, 64, 64, undefined, "cli")
    );
    Deno.writeFileSync(`${dir}/up\x1b[2A\u202e.warp`, new Uint8Array(100));
    try {
      // deno-lint-ignore no-control-regex
      const raw = /[\x00-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069]/;
      const ls = await cli("ls", "--dir", dir);
      assert.equal(ls.code, 0, ls.stderr);
      assert.doesNotMatch(ls.stdout.replaceAll("\n", ""), raw, JSON.stringify(ls.stdout));
      assert.ok(ls.stdout.includes("t\\x1b]0;pwned\\x07"), ls.stdout);
      assert.ok(ls.stdout.includes("x\\nforged"), ls.stdout);
      assert.ok(ls.stdout.includes("up\\x1b[2A\\u{202e}"), ls.stdout);
      const rows = ls.stdout.split("\n").filter((l) => l !== "" && !l.startsWith("NAME"));
      assert.equal(rows.filter((l) => /^\S/.test(l) && !l.startsWith("Not usable")).length, 3);
      for (const stem of [title, forged]) {
        const info = await cli("info", stem, "--dir", dir);
        assert.equal(info.code, 0, info.stderr);
        assert.doesNotMatch(info.stdout.replaceAll("\n", ""), raw, JSON.stringify(info.stdout));
        assert.equal(info.stdout.split("\n").filter((l) => l.startsWith("name ")).length, 1);
        const json = await cli("info", stem, "--dir", dir, "--json");
        assert.equal(JSON.parse(json.stdout).name, stem, "JSON keeps the name, escaped as JSON");
      }
      const watch = await cli("watch", "--count", "1", "--dir", dir);
      assert.equal(watch.code, 0, watch.stderr);
      assert.doesNotMatch(watch.stdout.replaceAll("\n", ""), raw, JSON.stringify(watch.stdout));
      const json = JSON.parse((await cli("ls", "--dir", dir, "--json")).stdout);
      assert.deepEqual(
        json.map((c: Reply) => c.name).sort(),
        [forged, title, "up\x1b[2A\u202e"].sort(),
      );
    } finally {
      for (const s of stores) s.close();
    }
  });
});

Deno.test("the ./cli export is main() alone: the text helpers are private", async () => {
  const exports = Object.keys(await import("../src/ops/cli.ts")).sort();
  assert.deepEqual(exports, ["main"]);
});

Deno.test("formatBytes() and sparkline() render sizes and ratios", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(1023), "1023 B");
  assert.equal(formatBytes(1536), "1.5 KiB");
  assert.equal(formatBytes(16 << 20), "16 MiB");
  assert.equal(sparkline([0, 0.2, 0.5, 0.99, 1, null]), "▁▂▅██ ");
});
