/**
 * "Why the missed targets are missed" of `bench/RESULTS.md`: for each missed target, the
 * floor it runs into, with this run's figures where the run measures them and the profiles
 * of "Where the time goes" (the same file) for the rest.
 *
 * @module
 */

import {
  FLOOR,
  fmtRatio,
  type Footprint,
  MISS_AGAINST_HIT,
  REMOTE_BENTO,
  REMOTE_FLOOR,
  REMOTE_OURS,
  REMOTE_ROWS,
  type RemoteReport,
  SWEEP_TEXT,
  type Target,
} from "./_targets.ts";

/** The figures of the run that the paragraphs quote. */
export interface WhyFigures {
  ns(group: string, name: string): number | undefined;
  /** The median ratio of `name`'s samples to `base`'s taken in turns (see `Figures`). */
  pairedRatio?(group: string, name: string, base: string): number | undefined;
  /** The same ratio of each process apart (its own samples' median), in run order. */
  pairedRatiosByRun?(group: string, name: string, base: string): number[];
  /** A no-op FFI call, ns. */
  rawFfi: number | undefined;
  remote: RemoteReport | undefined;
  footprint: readonly Footprint[];
}

const f1 = (x: number | undefined): string => x === undefined ? "?" : x.toFixed(1);
const f0 = (x: number | undefined): string => x === undefined ? "?" : x.toFixed(0);

type Paragraph = [test: (what: string) => boolean, text: (f: WhyFigures) => string];

const PARAGRAPHS: Paragraph[] = [
  [
    (w) => w.startsWith("memory hit, 2 int args") && w.includes("Map floor"),
    (f) => {
      const g = "hit 2 int args [hit-only]";
      const floor = f.ns(g, FLOOR);
      const ours = f.ns(g, "warp cache() (native)");
      return `- **Int-argument hit ≤ 1.5× the \`Map\` floor.** The floor (a hand-written \`Map\` memoize keyed by one number that the harness computed) costs ${
        f1(floor)
      } ns a call here; ours ${
        f1(ours)
      } ns. On the native engine a hit is the floor's loop plus the key's encoding (about 7 ns for two ints), one FFI call (a no-op call costs ${
        f1(f.rawFfi)
      } ns in this run) and the Rust lookup (15-25 ns: \`cargo run --release --example get_timing\` in \`rust/\`), which must also find the entry by its bytes because the store lives in Rust. 1.5× the floor leaves about half the floor's time for all three; the FFI call and the lookup alone take more.`;
    },
  ],
  [
    (w) => w.startsWith("miss + insert / hit"),
    (f) => {
      const g = MISS_AGAINST_HIT;
      const floorHit = f.ns(g, `${FLOOR} hit`);
      const floorMiss = f.ns(g, `${FLOOR} miss + insert`);
      const floorRatio = f.pairedRatio?.(g, `${FLOOR} miss + insert`, `${FLOOR} hit`);
      return `- **Miss + insert ≤ 3× a hit.** A miss costs a failed lookup, the function call and an insert that, in a full cache, evicts. The hand-written \`Map\` floor, which does the least a memoizer can (a \`Map.get\`, a \`Map.set\` and a \`Map.delete\` of its oldest key), took ${
        f1(floorMiss)
      } ns a miss + insert against ${f1(floorHit)} ns a hit in the same turns (${
        f1(floorRatio)
      }×): with an insert that evicts, a miss is several hits' work for any cache. Ours: ${
        f1(f.ns(g, "warp cache() miss + insert (native)"))
      } ns against ${
        f1(f.ns(g, "warp cache() hit (native)"))
      } ns. On the native engine the library's share of a miss is two FFI calls (a no-op call: ${
        f1(f.rawFfi)
      } ns in this run) and, in Rust alone, about 100-115 ns for a lookup that misses plus an insert that evicts, against 15-25 ns for a hit (\`cargo run --release --example get_timing\` in \`rust/\`; callgrind counts about 530 instructions for the pair, spread over hashing the key, probing, the SIEVE hand and unlinking the victim from the index); the rest is the JavaScript miss path (the key held for single-flight, the function called, the result stored), 1.05× faster than \`4ff3a73\`'s (\`deno task bench:split\`). The hit got faster by more (a call of one or two numbers or strings no longer makes an array), which moved this ratio up (3.26× and 3.58× in the two runs before that change).`;
    },
  ],
  [
    (w) => /^memory hit string\(10\) \+ int .*\(native\)/.test(w),
    (f) => {
      const g = "hit string(10) + int [hit-only]";
      const k = "floor: string key";
      const ratio = f.pairedRatio?.(g, "@neophi/sieve-cache", "warp cache() (native)");
      return `- **String argument on the native engine.** On \`hit-only\` @neophi/sieve-cache took ${
        fmtRatio(ratio)
      } our time in samples taken one after the other (the table's figures pool processes, and the peers' those of both engines). A hit of a string and an int is the hit of two ints plus writing the string's code units into the key bytes, in a JavaScript loop: our key codec took ${
        f1(f.ns(k, "warp key codec"))
      } ns for this row's arguments where the peers' joined string (a template literal) took ${
        f1(f.ns(k, "joined string (the peers' key)"))
      } ns ("floor: string key"), and their \`Map.get\` then hashes it in native code. A \`charCodeAt\` loop costs 3-5 ns a code unit on this machine (a 10-unit string alone: 27-55 ns, measured apart from any cache), and \`TextEncoder.encodeInto\` more (159-247 ns); the Rust store needs the bytes. That difference is about what separates this row from the two-int row, which meets the target. Tried and dropped: a copy that wrote a string's number instead of its code units (the first 65,536 strings seen numbered in a \`Map\`, memory form only) took 0.89–1.00× this one's time on \`hit-only\` but 1.09–1.12× on \`zipf\` (100,000 keys: the \`Map\` lookups that find nothing, and the table's memory), in alternating samples: a \`Map.get\` of a string costs about what writing 10 code units costs.`;
    },
  ],
  [
    (w) => /^memory hit object arg/.test(w),
    (f) =>
      `- **Object argument against \`JSON.stringify\` keys.** The peers key with \`JSON.stringify\` (native code: ${
        f1(f.ns("floor: object key", "JSON.stringify"))
      } ns for this row's \`{ id, kind }\` in this run), which keeps neither types nor key order as our contract does. Our key codec reads a plain object in one \`for-in\` and writes it straight into the key buffer, and now costs about what \`JSON.stringify\` costs (${
        f1(f.ns("floor: object key", "warp key codec"))
      } ns here). On the TypeScript engine a plain object of primitive values is looked up by its key set and values instead, with no key bytes (README, "Engines"). Both read the object's prototype from its hidden class after a named load and check its own keys inside the \`for-in\` (free in V8), and the TypeScript store keeps a key of two values and the shape beside the others (\`#triples\`): about 20 ns off a native object hit and 40-60 ns off a TypeScript one ("Where the time goes"). In the run of \`1a5e0e7\` every object row met the target (native \`hit-only\` 1.50×, the other three 1.60–2.10×), so a miss here is as likely the spread of one run to the next as a regression. What is left is reading the object in JavaScript and hashing its string's code units, where the peer's \`JSON.stringify\` and \`Map.get\` run in native code.`,
  ],
  [
    (w) => /^memory async hit/.test(w),
    (f) => {
      const g = "floor: async";
      return `- **Async rows.** Every contender pays the caller's \`await\` (${
        f1(f.ns(g, "await a settled Promise"))
      } ns for a settled Promise in this run). On a hit ours returns the one Promise stored for the entry, V8's own (its resolved value, which \`cacheGet\` and the stale paths read, sits beside it in the store's entry, so \`await\` takes its fast path), after one more check than a sync hit. On a miss a cache that stores the resolved value and shares one computation needs the function's Promise and one \`.then\` (${
        f1(f.ns(g, "await fn().then(v => v)"))
      } ns here, against ${
        f1(f.ns(g, "await fn() (one Promise)"))
      } ns for the one Promise that lru-cache memoizing the Promise pays); handing the function's own Promise to the first caller would save one step but break the rule that a result the store refuses rejects the call.`;
    },
  ],
  [
    (w) => /^memory .*\(ts\)/.test(w),
    () =>
      "- **TypeScript engine rows.** A call of up to four primitive arguments is looked up by its arguments, hashed in JavaScript and compared with `===`; a string argument is hashed code unit by code unit, where the peers' `Map.get` of a joined string hashes in native code (V8's string hash is reachable from JavaScript only through a `Map`: a copy that interned each string argument in one, and hashed its number, took 0.93-1.01× this one's time in alternating samples: no gain; hashing a string in a function of its own instead of the branch of the other kinds, which V8 compiles apart once calls of every kind go through it, read 1.24-1.63× against the peer over 18 runs of this bench's TypeScript memory step (median 1.40×) against 1.24-1.59× for this code over 25 (median 1.37×), alternating: no gain beyond the noise). The hash of this row's 10-unit string costs about 20 ns over a loop that reads only its length (26 against 6 ns a string: notes/tsfast.md, \"The string hash\"), and a lighter mix (one multiply a word instead of Murmur3's step) cost the same 27 ns: the time is in reading the code units (`charCodeAt`), which any lookup by a string's content in JavaScript does, about what separates this row's 80-90 ns from 1.5× the peer's (in this run's TypeScript processes, 113-120 ns). On a miss the key is still encoded (single-flight, remote and shared tiers read its bytes; an object's is written from the values its lookup read), and the insert takes the arguments and hash of the failed lookup. With `ttl`, a hit reads `performance.now()` at most once a millisecond (or once per 64 lookups in a synchronous run): a clock read costs more than a hit here (notes/tsfast.md). A call of one plain object of such values is looked up by its shape and values the same way (README, \"Engines\"); other objects, every object of a cache with a remote tier (whose keys name an object's keys), and every key under S3-FIFO, W-TinyLFU and ARC stay byte keys (encoded, hashed and compared as bytes). Profiles: \"Where the time goes\".",
  ],
  [
    (w) => w.startsWith("memory hit with tags"),
    (f) => {
      const parts = ["native", "ts"].map((e) => {
        const g = `memory hit, tags off / on (${e} engine)`;
        const off = f.ns(g, "no tags");
        const on = f.ns(g, "tags");
        return off === undefined || on === undefined
          ? ""
          : `${e}: ${f1(off)} ns without, ${f1(on)} ns with`;
      }).filter((x) => x !== "");
      const spread = ["native", "ts"].map((e) => {
        const r = f.pairedRatiosByRun?.(
          `memory hit, tags off / on (${e} engine)`,
          "tags",
          "no tags",
        );
        return r === undefined || r.length < 2
          ? ""
          : `${e} ${Math.min(...r).toFixed(2)}–${Math.max(...r).toFixed(2)}×`;
      }).filter((x) => x !== "");
      const spreadText = spread.length === 0
        ? ""
        : ` Each process's own ratio (tags / no tags, the median of its paired samples) in this run: ${
          spread.join(", ")
        }; the target's figure is the median of all of their samples together.`;
      return `- **Tags on a hit.** ${
        parts.join("; ")
      }. A tagged hit reads the entry's wrapper (value, tags, the epoch it last checked), checks its class, and compares that epoch with one load of the process's tag clock; its tags are read again only after an invalidation. On the native engine that is the whole difference (a few ns, within the spread of a row between runs here). On the TypeScript engine the store keeps each entry's epoch beside it, so a tagged hit by arguments is the hit without tags plus one load and compare; what is left is within the spread of a row between runs (notes/tsfast.md).${spreadText} What also moves it: which calls V8 inlines into the tagged lookup depends on what was hot when it optimized it. In this bench each row's cache is first filled by 1,000 misses, and \`--trace-turbo-inlining\` shows the tagged lookup's optimized code with the miss path inline (the key's encoding, \`afterMiss\`) and calls to the hit's hash and probe (\`#hitArgs\`, \`#findArgs\`), which the lookup without tags has inline. Tried and dropped: the tagged lookup by arguments made as small as the one without tags (96 bytes of bytecode against 385, the lookup without tags 74; an absent, invalid or unindexed call handed to a method of its own): its processes' ratios read 1.09-1.15× against 1.02-1.13× for this code in 5 alternating runs of this bench: no gain.`;
    },
  ],
  [
    (w) => w.startsWith("shared hit structured"),
    () =>
      "- **Shared structured hit against lmdb on `zipf`.** The cache holds 10% of the 100,000 keys, so a quarter of the calls miss, while lmdb holds every key and never misses; a shared miss (about 2 µs: the flight claim, the insert under the write lock, the value's encoding) weighs on the row more than the hits do. On `hit-only` the target is met with room.",
  ],
  [
    (w) => w.startsWith("shared hits: 2 processes"),
    () =>
      "- **Two processes.** A shared hit writes nothing that another process reads (the visited bit is set once; the hit counters are striped per process on their own cache lines), and `rust/examples/shm_procs.rs` measures 1.98× in a quiet window and the same ratio for two processes on two separate files: what is left is the machine's load. Compare with the `memory` row of the process table, where nothing is shared at all.",
  ],
  [
    (w) => w.startsWith("remote hit"),
    (f) => {
      const row = (n: string) => f.remote?.rows.find((r) => r.case === n);
      const cpu = (n: string): string => {
        const c = row(n)?.cpuUs;
        return c === undefined ? "" : ` (${f0(c)} µs of CPU)`;
      };
      const us = (n: string): number | undefined => row(n)?.us;
      const gap = (a: string, b: string): string => {
        const x = us(a);
        const y = us(b);
        return x === undefined || y === undefined ? "?" : f0(x - y);
      };
      const bento = us(REMOTE_BENTO);
      const need = bento === undefined ? undefined : bento / 1.5;
      const floorIoredis = us(REMOTE_ROWS.floorIoredis);
      const floorNodeRedis = us(REMOTE_FLOOR);
      // What a floor leaves of the time the target asks, or by how much it alone exceeds it.
      const budget = (floor: number | undefined): string => {
        if (need === undefined || floor === undefined) return "which leaves ? µs";
        const rest = need - floor;
        return rest < 0
          ? `${f0(-rest)} µs more than the target allows before anything a cache does`
          : `which leaves ${f0(rest)} µs for all that a cache does`;
      };
      return `- **Remote hit against BentoCache.** Ours ${f0(us(REMOTE_OURS))} µs${
        cpu(REMOTE_OURS)
      }, BentoCache ${f0(bento)} µs${cpu(REMOTE_BENTO)}: 1.5× asks ${
        f0(need)
      } µs. A bare node-redis \`GET\` + \`JSON.parse\` takes ${f0(floorNodeRedis)} µs${
        cpu(REMOTE_FLOOR)
      } in the same rounds (node-redis is the client Deno's documentation uses, and \`redisTier\`'s), ${
        budget(floorNodeRedis)
      }. Over ioredis (BentoCache's client, which \`remoteTier({ storage })\` takes: the row "${REMOTE_ROWS.oursIoredis}"), a bare \`GET\` + \`JSON.parse\` takes ${
        f0(floorIoredis)
      } µs${cpu(REMOTE_ROWS.floorIoredis)}, ${
        budget(floorIoredis)
      } on a remote hit (the local miss, single-flight, the tier's timeout and breaker, the frame's checks, the value's decode, the local copy); ours takes ${
        gap(REMOTE_ROWS.oursIoredis, REMOTE_ROWS.floorIoredis)
      } µs more than that floor. With no socket (a storage answering from a \`Map\`), ours costs ${
        gap(REMOTE_ROWS.warm, REMOTE_ROWS.warmFloor)
      } µs more than its floor (an awaited \`Map.get\` and \`JSON.parse\`) back to back, and ${
        gap(REMOTE_ROWS.swept, REMOTE_ROWS.sweptFloor)
      } µs more when ${SWEEP_TEXT} of memory is swept between two calls (each call then starts from cold CPU caches, as one that waited on a socket does: redis-server and the kernel's loopback run on the same two cores, whose L2 caches hold 1 MiB each). Cold caches are thus part of the socket's gap; the rest is not isolated (see "Where the time goes").`;
    },
  ],
  [
    (w) => w.startsWith("1,000,000 entries on the TypeScript engine"),
    () =>
      "- **TypeScript engine footprint.** The store keeps a slot of typed arrays per entry (hash, links, the visited bit) besides the caller's key and value; without a TTL it keeps no insertion times, and a bounded cache past 1,024 slots allocates its whole capacity at once. The target counts what V8 says each structure holds (its live heap and its typed arrays' buffers); the table of \"Memory for 1,000,000 entries\" also gives each process's growth of `rss - heapTotal`, which counts heap pages that V8 gave up after the fill's garbage while the process kept them, and moved by up to 17 MB between processes of the same code.",
  ],
  [
    (w) => w.startsWith("1,000,000 shared entries"),
    () =>
      "- **Small shared entries.** Each entry takes its 72-byte slot and 16 bytes of index (8 bytes a bucket, two buckets an entry); the file adds a fixed 16 KiB of counters and flights.",
  ],
];

/** The paragraphs for the missed targets of `targets`, in the order of `PARAGRAPHS`. */
export function whyMissed(targets: readonly Target[], f: WhyFigures): string[] {
  const missed = targets.filter((t) => t.met === false).map((t) => t.what);
  const out: string[] = [];
  for (const [test, text] of PARAGRAPHS) {
    if (missed.some(test)) out.push(text(f));
  }
  const simOnes = missed.filter((w) => w.startsWith("best of our") || w.startsWith("W-TinyLFU"));
  if (simOnes.length > 0) {
    out.push(
      "- **Eviction quality.** See \"Miss ratios\": SIEVE, LRU, FIFO, S3-FIFO and ARC give libCacheSim's miss counts exactly, so the best of ours can only trail libCacheSim's WTinyLFU or TwoQ, on the cells named there.",
    );
  }
  return out;
}
