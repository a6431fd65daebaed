// Corruption: truncated files, another format version, random
// bytes over the header, the table, the slots and the chunks (with the file closed, and while
// it is mapped), chunk links and owners set to plausible chunk numbers, slot meta words (the
// lengths, live and visited bits of format 8) set to plausible values, a file replaced while
// mapped. Each must be detected and recreated or repaired
// (bad entries dropped): never a crash, never a value that is not its key's.
import assert from "node:assert/strict";
import {
  BUCKET_SIZE,
  CHUNK_PAYLOAD,
  CHUNK_SIZE,
  FLIGHT_RECORDS,
  FLIGHT_SIZE,
  HEADER_SIZE,
  SHM_HEADER,
  SHM_SLOT,
  SLOT_SIZE,
} from "../src/native/_abi.ts";
import {
  checkValue,
  makeValue,
  MISS,
  openStore,
  type SharedStore,
  storeGet,
  storeSet,
} from "./fixtures/fault_common.ts";

const MAX_SIZE = 64;
const MAX_KEY = 64; // openStore's
const MAX_VALUE = 512;
// Layout (rust/src/shm/layout.rs; the sizes and offsets from src/native/_abi.ts): the header,
// then 2 * 64 rounded up = 128 buckets, then 65 slots (the meta word: key length, value
// length, live and visited bits; the body: an entry of at most INLINE_BYTES, or its first
// chunk and chunk count), then the chunks (a chunk header: next chunk, owner slot; then the
// entry's bytes): the default budget is 64 entries of the largest size,
// ceil((64 + 512) / CHUNK_PAYLOAD) chunks each, plus as many spare chunks.
const HEADER = HEADER_SIZE;
const TABLE = 128 * BUCKET_SIZE;
const SLOTS = (MAX_SIZE + 1) * SLOT_SIZE;
const CHUNKS_AT = HEADER + TABLE + SLOTS;
const LARGEST = Math.ceil((MAX_KEY + MAX_VALUE) / CHUNK_PAYLOAD);
const CHUNK_COUNT = MAX_SIZE * LARGEST + LARGEST;
// The flight table ends the file.
const FLIGHTS = FLIGHT_RECORDS * FLIGHT_SIZE;
const FILE_SIZE = CHUNKS_AT + CHUNK_COUNT * CHUNK_SIZE + FLIGHTS;
/** A cache line: each group of header fields has its own. */
const LINE = 64;

let seed = 12345;
function rand(n: number): number {
  seed ^= seed << 13;
  seed >>>= 0;
  seed ^= seed >>> 17;
  seed ^= seed << 5;
  seed >>>= 0;
  return seed % n;
}

/** Figures for RELIABILITY.md. */
const tally = { corruptions: 0, recreated: 0, dropped: 0, kept: 0 };

function fill(s: SharedStore, n = 40): void {
  for (let i = 0; i < n; i++) {
    const key = `k${i}`;
    assert.ok(storeSet(s, key, makeValue(key, i, rand(300))));
  }
}

/** Every read is a miss or the key's own value; the store then still reads and writes. */
function checkAll(s: SharedStore, n = 40): void {
  for (let i = 0; i < n; i++) {
    const key = `k${i}`;
    const v = storeGet(s, key);
    if (v === MISS) {
      tally.dropped++;
      continue;
    }
    tally.kept++;
    assert.equal(checkValue(key, v), "", `wrong value for ${key}`);
  }
  assert.ok(storeSet(s, "after", makeValue("after", 1, 10)));
  assert.equal(checkValue("after", storeGet(s, "after")), "");
  fill(s, 70); // more than maxSize: evictions run over the repaired structure
  checkAll0(s);
}

function checkAll0(s: SharedStore): void {
  for (let i = 0; i < 70; i++) {
    const v = storeGet(s, `k${i}`);
    if (v !== MISS) assert.equal(checkValue(`k${i}`, v), "");
  }
  assert.ok(s.info().currentSize <= MAX_SIZE);
}

async function withDir(fn: (dir: string) => void | Promise<void>): Promise<void> {
  const dir = await Deno.makeTempDir({ dir: "/dev/shm", prefix: "warp-fault-corrupt-" });
  try {
    await fn(dir);
  } finally {
    await Deno.remove(dir, { recursive: true });
  }
}

function scribble(path: string, offset: number, bytes: Uint8Array): void {
  const f = Deno.openSync(path, { read: true, write: true });
  try {
    f.seekSync(offset, Deno.SeekMode.Start);
    f.writeSync(bytes);
  } finally {
    f.close();
  }
  tally.corruptions++;
}

function randomBytes(n: number): Uint8Array {
  const b = new Uint8Array(n);
  // getRandomValues fills at most 64 KiB a call.
  for (let i = 0; i < n; i += 65536) crypto.getRandomValues(b.subarray(i, i + 65536));
  return b;
}

Deno.test("shared store: the file layout assumed by these tests is the library's", async () => {
  await withDir((dir) => {
    const s = openStore(dir, "c.warp", MAX_SIZE, MAX_VALUE);
    s.close();
    assert.equal(Deno.statSync(`${dir}/c.warp`).size, FILE_SIZE);
  });
});

Deno.test("shared store: truncated files are recreated", async () => {
  for (
    const size of [0, 7, 100, HEADER - 1, HEADER, HEADER + TABLE, FILE_SIZE >> 1, FILE_SIZE - 1]
  ) {
    await withDir((dir) => {
      const s = openStore(dir, "c.warp", MAX_SIZE, MAX_VALUE);
      fill(s);
      s.close();
      Deno.truncateSync(`${dir}/c.warp`, size);
      tally.corruptions++;
      const t = openStore(dir, "c.warp", MAX_SIZE, MAX_VALUE);
      assert.equal(Deno.statSync(`${dir}/c.warp`).size, FILE_SIZE);
      assert.equal(storeGet(t, "k0"), MISS, `size ${size}: a recreated file is empty`);
      tally.recreated++;
      checkAll(t);
      t.close();
    });
  }
});

Deno.test("shared store: a file of another format version or magic is recreated", async () => {
  const cases = [
    [SHM_HEADER.version, [1, 0, 0, 0]],
    [SHM_HEADER.version, [99, 0, 0, 0]],
    [SHM_HEADER.magic, [0x4e]],
  ] as const;
  for (const [offset, bytes] of cases) {
    await withDir((dir) => {
      const s = openStore(dir, "c.warp", MAX_SIZE, MAX_VALUE);
      fill(s);
      s.close();
      scribble(`${dir}/c.warp`, offset, new Uint8Array(bytes));
      const t = openStore(dir, "c.warp", MAX_SIZE, MAX_VALUE);
      assert.equal(storeGet(t, "k1"), MISS);
      tally.recreated++;
      checkAll(t);
      t.close();
    });
  }
});

Deno.test("shared store: random bytes over header, table, slots, chunks and flights, closed and mapped", async () => {
  const regions: [string, number, number][] = [
    ["identity", SHM_HEADER.magic, LINE],
    ["seqlock", SHM_HEADER.seq, LINE],
    ["lock word", SHM_HEADER.lock, LINE],
    ["counters", SHM_HEADER.stripes, LINE],
    ["queue", SHM_HEADER.queue, LINE],
    ["table", HEADER, TABLE],
    ["slots", HEADER + TABLE, SLOTS],
    ["chunks", CHUNKS_AT, CHUNK_COUNT * CHUNK_SIZE],
    ["chunk links", CHUNKS_AT, CHUNK_COUNT * CHUNK_SIZE],
    ["slot chunk fields", HEADER + TABLE, SLOTS],
    ["slot meta words", HEADER + TABLE, SLOTS],
    ["flights", CHUNKS_AT + CHUNK_COUNT * CHUNK_SIZE, FLIGHTS],
    ["anywhere", 0, FILE_SIZE],
  ];
  for (const [label, start, len] of regions) {
    for (let trial = 0; trial < 100; trial++) {
      await withDir((dir) => {
        const path = `${dir}/c.warp`;
        const live = openStore(dir, "c.warp", MAX_SIZE, MAX_VALUE);
        fill(live);
        let n = 1 + rand(Math.min(len, trial % 5 === 0 ? 4096 : 16));
        let at = start + rand(Math.max(1, len - n));
        let bytes = randomBytes(n);
        if (label === "chunk links" || label === "slot chunk fields") {
          // A chunk's next or owner word, or a slot's first chunk or chunk count, set to a
          // plausible number (a chunk or slot in use, or NIL) rather than noise.
          at = label === "chunk links"
            ? CHUNKS_AT + CHUNK_SIZE * rand(CHUNK_COUNT) + 4 * rand(2)
            : HEADER + TABLE + SLOT_SIZE * rand(MAX_SIZE + 1) +
              [SHM_SLOT.firstChunk, SHM_SLOT.chunkCount][rand(2)]!;
          const word = [rand(CHUNK_COUNT), rand(MAX_SIZE + 1), rand(4), 0xffffffff][rand(4)]!;
          bytes = new Uint8Array(new Uint32Array([word]).buffer);
          n = 4;
        } else if (label === "slot meta words") {
          // A slot's meta word set to plausible lengths (in the slot, or in a chain), with the
          // live bit, the visited bit, both or neither, or a reserved bit.
          at = HEADER + TABLE + SLOT_SIZE * rand(MAX_SIZE + 1) + SHM_SLOT.meta;
          const keyLen = BigInt(1 + rand(8));
          const valueLen = BigInt([rand(30), 30 + rand(300), rand(MAX_VALUE + 1)][rand(3)]!);
          const bits = [0n, 1n << 62n, 1n << 63n, 3n << 62n, 1n << 50n][rand(5)]!;
          bytes = new Uint8Array(new BigUint64Array([keyLen | (valueLen << 21n) | bits]).buffer);
          n = 8;
        }
        const mapped = trial % 2 === 0;
        if (!mapped) live.close();
        scribble(path, at, bytes);
        try {
          if (mapped) checkAll(live); // the live handle sees the bytes change under it
          const other = openStore(dir, "c.warp", MAX_SIZE, MAX_VALUE);
          checkAll(other);
          other.close();
        } catch (e) {
          throw new Error(`${label}: ${n} bytes at ${at} (mapped: ${mapped})`, { cause: e });
        } finally {
          if (mapped) live.close();
        }
      });
    }
  }
});

Deno.test("shared store: a file replaced while mapped, then deleted while mapped", async () => {
  await withDir((dir) => {
    const path = `${dir}/c.warp`;
    const a = openStore(dir, "c.warp", MAX_SIZE, MAX_VALUE);
    fill(a);
    // Replaced by garbage of the right size: `a` keeps its mapping of the old file.
    Deno.writeFileSync(`${dir}/garbage`, randomBytes(FILE_SIZE), { mode: 0o600 });
    Deno.renameSync(`${dir}/garbage`, path);
    tally.corruptions++;
    checkAll(a);
    const b = openStore(dir, "c.warp", MAX_SIZE, MAX_VALUE); // detects garbage, recreates
    tally.recreated++;
    checkAll(b);
    // Replaced by a valid cache file holding other values for the same keys.
    const c = openStore(dir, "d.warp", MAX_SIZE, MAX_VALUE);
    for (let i = 0; i < 10; i++) storeSet(c, `k${i}`, makeValue(`k${i}`, 1000 + i, 5));
    c.close();
    Deno.renameSync(`${dir}/d.warp`, path);
    tally.corruptions++;
    checkAll(a);
    checkAll(b);
    const d = openStore(dir, "c.warp", MAX_SIZE, MAX_VALUE);
    checkAll(d);
    // Deleted while mapped: every handle keeps working on its own mapping, no SIGBUS.
    Deno.removeSync(path);
    tally.corruptions++;
    for (const s of [a, b, d]) checkAll(s);
    const e = openStore(dir, "c.warp", MAX_SIZE, MAX_VALUE); // a new file
    checkAll(e);
    for (const s of [a, b, d, e]) s.close();
  });
});

addEventListener("unload", () => {
  console.log(
    `corruptions: ${tally.corruptions}; recreated: ${tally.recreated}; entries kept: ${tally.kept}, dropped: ${tally.dropped}`,
  );
});
