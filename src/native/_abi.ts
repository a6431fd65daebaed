// Generated from rust/src/abi.rs by `deno task abi`: do not edit by hand.
/**
 * Every fact that crosses the FFI between the native library and this package: status codes,
 * sentinels, result codes, the fields of the info exports in their order, policy numbers,
 * limits, the shared cache file's layout and format version, the ABI version.
 *
 * One source: `rust/src/abi.rs` defines or re-exports each fact, and this file is generated
 * from it; every TypeScript use imports it from here (the symbols themselves are declared in
 * `src/native/ffi.ts`), but for a few literals on hot paths, each followed by a comment
 * `abi: Name` and checked against this file by `tests/abi_test.ts`. After changing a fact in
 * the crate, run `deno task abi`: it runs the crate's test
 * `abi::tests::generated_file_is_current` with `UPDATE_ABI=1`, which rewrites this file.
 * Without `UPDATE_ABI` that test fails while this file is stale; `cargo test`, `deno task test`
 * and `.ci/run` run it.
 *
 * "No TTL" has one sentinel everywhere: {@linkcode NO_TTL} (`NaN`).
 *
 * @module
 */

// The library.

/**
 * Version of the C ABI (`ABI_VERSION` in `rust/src/ffi/mod.rs`, with its history):
 * `src/native/ffi.ts` refuses a library that reports another one.
 */
export const ABI_VERSION = 9;

/**
 * Status codes (`Status` in `rust/src/error.rs`). Non-negative results are results (slots,
 * lengths); negative ones are these codes, and the library's last error says why.
 */
export const Status = {
  /** Success. */
  Ok: 0,
  /** The key is not in the store (not an error). */
  Miss: -1,
  /** An argument was out of range (null handle, bad size). */
  InvalidArgument: -2,
  /** An operating-system call failed (open, mmap, fallocate...). */
  Io: -3,
  /** A panic was caught at the FFI boundary. */
  Panic: -4,
  /** A shared file failed validation (bad magic, version, size, or content). */
  Corrupt: -5,
  /** A key or value is larger than the slot allows. */
  TooLarge: -6,
  /** The caller's output buffer is too small; the needed size is in the message. */
  BufferTooSmall: -7,
  /**
   * A shared file's write lock stayed with a live process (stopped, or in a debugger) for longer
   * than the operation waits.
   */
  Busy: -8,
} as const;

/**
 * "No TTL", the one sentinel of every `ttl_ms` argument: `warp_mem_new` and `warp_shm_open` (the
 * store has no TTL), `warp_mem_set` and `warp_shm_set` (the entry has no TTL of its own: the
 * store's applies). Any other `ttl_ms` is a TTL: positive, or `Infinity` for never; 0 or negative:
 * `Status.InvalidArgument`.
 */
export const NO_TTL = NaN;

/**
 * The `now_ms` asking the library to read its own clock (monotonic for the memory store; Unix time,
 * which every process agrees on, for the shared store).
 */
export const LIBRARY_TIME = NaN;

// The memory store (warp_mem_*).

/**
 * Eviction policies of `warp_mem_new` (`Policy` in `rust/src/sieve.rs`); `Strategy` in
 * `src/options/options.ts` has the same numbers.
 */
export const POLICY = {
  /** SIEVE: visited bit and hand (the default). */
  Sieve: 0,
  /** Least recently used: a hit moves the entry to the head; evict the tail. */
  Lru: 1,
  /** Most recently used: a hit moves the entry to the head; evict the head. */
  Mru: 2,
  /** First in, first out: hits move nothing; evict the tail. */
  Fifo: 3,
  /**
   * Least frequently used: a hit moves the entry up one frequency bucket; evict the oldest entry of
   * the lowest bucket (the tail).
   */
  Lfu: 4,
  /** S3-FIFO, as libCacheSim's `S3FIFO` (see `s3fifo`). */
  S3Fifo: 5,
  /** W-TinyLFU with Caffeine's adaptive window (see `wtinylfu`). */
  WTinyLfu: 6,
  /** ARC, as libCacheSim's `ARC` (see `arc`). */
  Arc: 7,
} as const;

/** The `capacity` of `warp_mem_new` for a store without a bound on its entries. */
export const UNBOUNDED_CAPACITY = 0;

/**
 * Most slots of a memory store: slot numbers travel as non-negative `i32`; a larger `maxSize` is
 * unbounded.
 */
export const MAX_MEM_CAPACITY = 2_147_483_647;

/**
 * `warp_mem_get` reports "expired and removed" as `EXPIRED_BASE - slot` (a result `r <=
 * EXPIRED_BASE`: the value of slot `EXPIRED_BASE - r` may go); results between it and -1 are
 * `Status` codes.
 */
export const EXPIRED_BASE = -16;

/** Index of each `f64` that `warp_mem_info` writes. */
export const MEM_INFO = {
  /** Lookups that found a fresh entry. */
  hits: 0,
  /** Lookups that found none. */
  misses: 1,
  /** Entries evicted to make room. */
  evictions: 2,
  /** Entries removed past their TTL (and stale window). */
  expirations: 3,
  /** Entries held. */
  currentSize: 4,
  /** Most entries (`MAX_MEM_CAPACITY` or more: unbounded). */
  maxSize: 5,
} as const;

/** Number of `f64` fields written by `warp_mem_info`. */
export const MEM_INFO_FIELDS = 6;

// The shared store (warp_shm_*).

/** Largest `maxSize` of a shared cache (`MAX_CAPACITY`). */
export const MAX_SHARED_ENTRIES = 16_777_216;

/** Largest `maxKeySize` of a shared cache, in bytes (`MAX_KEY_SIZE`): 1 MiB. */
export const MAX_KEY_BYTES = 1_048_576;

/**
 * Largest `maxValueSize` of a shared cache, in bytes (`MAX_VALUE_SIZE`): 64 MiB; values are
 * returned as `i32` lengths.
 */
export const MAX_VALUE_BYTES = 67_108_864;

/** Smallest `maxBytes` of a shared cache: one chunk (`MIN_MAX_BYTES`). */
export const MIN_SHARED_BYTES = 256;

/** Largest `maxBytes` of a shared cache: 64 GiB (`MAX_MAX_BYTES`). */
export const MAX_SHARED_BYTES = 68_719_476_736;

/**
 * Most ms that `warp_shm_set` waits for the write lock before it gives up (`SET.busy`: the holder
 * is alive but stopped) (`SET_WAIT`).
 */
export const SET_WAIT_MS = 500;

/**
 * Most ms that `warp_shm_delete` and `warp_shm_clear` wait for the write lock before they fail with
 * `Status.Busy` (`LONG_WAIT`); `cacheSet` waits as long, through repeated sets.
 */
export const LONG_WAIT_MS = 5000;

/**
 * The most that the default byte budget of a shared cache takes: 16 MiB
 * (`warp_shm_default_max_bytes` gives it for given sizes).
 */
export const DEFAULT_MAX_BYTES = 16_777_216;

/**
 * The `max_bytes` of `warp_shm_open` and `warp_shm_file_size` asking for the default byte budget.
 */
export const DEFAULT_BUDGET = 0;

/** What `warp_shm_set` returns when it does not fail. */
export const SET = {
  /** Stored. */
  stored: 0,
  /**
   * Not stored: the key or value is over its size limit, or the entry over the whole byte budget
   * (counted as an oversize skip).
   */
  skipped: 1,
  /** Not stored: a live process kept the write lock (stopped, or in a debugger). */
  busy: 2,
  /**
   * `warp_shm_set_owned`: not stored, the flight was no longer this handle's (a delete, clear or
   * set in any process ended it).
   */
  lost: 3,
} as const;

/**
 * Index of each `f64` that `warp_shm_info` writes. Counters are the totals of every process since
 * creation or the last clear.
 */
export const SHM_INFO = {
  /** Lookups that found a fresh entry (stale hits and joins included). */
  hits: 0,
  /** Lookups that found none. */
  misses: 1,
  /** Entries not stored: key or value over its limit, or over the byte budget. */
  oversizeSkips: 2,
  /** Entries held. */
  currentSize: 3,
  /** Most entries of the file in use. */
  maxSize: 4,
  /** Entries evicted to make room. */
  evictions: 5,
  /** Largest key in bytes of the file in use. */
  maxKeySize: 6,
  /** Largest value in bytes of the file in use. */
  maxValueSize: 7,
  /** Bytes of the chunks that the entries hold. */
  bytes: 8,
  /** The byte budget of the entries. */
  maxBytes: 9,
  /** Stale values returned (counted in `hits` too). */
  staleHits: 10,
  /** Background refreshes started. */
  refreshes: 11,
} as const;

/** Number of `f64` fields written by `warp_shm_info`. */
export const SHM_INFO_FIELDS = 12;

/**
 * Index of each `f64` that `warp_shm_inspect` writes: the fields of `SHM_INFO` at the same indices,
 * then facts about the file (all 0 unless the file is valid; `formatVersion` also for
 * `INSPECT.otherVersion`).
 */
export const SHM_INSPECT = {
  /** Lookups that found a fresh entry (stale hits and joins included). */
  hits: 0,
  /** Lookups that found none. */
  misses: 1,
  /** Entries not stored: key or value over its limit, or over the byte budget. */
  oversizeSkips: 2,
  /** Entries held. */
  currentSize: 3,
  /** Most entries of the file in use. */
  maxSize: 4,
  /** Entries evicted to make room. */
  evictions: 5,
  /** Largest key in bytes of the file in use. */
  maxKeySize: 6,
  /** Largest value in bytes of the file in use. */
  maxValueSize: 7,
  /** Bytes of the chunks that the entries hold. */
  bytes: 8,
  /** The byte budget of the entries. */
  maxBytes: 9,
  /** Stale values returned (counted in `hits` too). */
  staleHits: 10,
  /** Background refreshes started. */
  refreshes: 11,
  /** The format version of the file (also for `INSPECT.otherVersion`). */
  formatVersion: 12,
  /** The file size in bytes. */
  fileSize: 13,
  /** Whether a process has the file open: 1, 0, or -1 (cannot tell). */
  inUse: 14,
  /** Whether the header was read consistently: 1 or 0. */
  consistent: 15,
  /** Whether the write lock was held: 1 or 0. */
  locked: 16,
} as const;

/** Number of `f64` fields written by `warp_shm_inspect`. */
export const SHM_INSPECT_FIELDS = 17;

/**
 * What `warp_shm_inspect` returns when it could read the file (a negative status when it could not
 * open it).
 */
export const INSPECT = {
  /** A valid cache file. */
  valid: 0,
  /** Not a cache file of this library (no magic). */
  foreign: 1,
  /**
   * A cache file of another format version (written to the `formatVersion` field) or hash check.
   */
  otherVersion: 2,
  /** Our magic and version, but sizes or counts that do not fit. */
  corrupt: 3,
} as const;

/**
 * The codes of the `warp_shm_flight_*` exports: `warp_shm_flight_claim` returns `owner`, `wait`,
 * `local` or `none`; a wait ends with `done`, `owner` (a dead owner's flight taken over), `async`,
 * `timeout` or `closed`; `warp_shm_flight_register` returns an end code, or `idBase` plus the id of
 * a wait that goes on.
 */
export const FLIGHT = {
  /**
   * `warp_shm_flight_claim`: this handle owns the flight (and a wait's end: it took a dead owner's
   * flight over).
   */
  owner: 0,
  /** `warp_shm_flight_claim`: a live handle of another process owns it. */
  wait: 1,
  /** `warp_shm_flight_claim`: no flight could be recorded. */
  none: 2,
  /** A wait's end: the flight ended. */
  done: 3,
  /** A wait's end: the time ran out. */
  timeout: 4,
  /** `warp_shm_flight_claim`: a live handle of this process owns it. */
  local: 5,
  /**
   * `warp_shm_flight_wait_sync` with `until_async`: the owner's computation is async (or a handle
   * of this process owns the flight): wait asynchronously instead.
   */
  async: 6,
  /** A wait's end: the handle was closed. */
  closed: 7,
  /**
   * `warp_shm_flight_register` returns `idBase + id` for a wait that goes on (an end code, below
   * it, for one that ended at once).
   */
  idBase: 16,
  /**
   * `warp_shm_get_claim` reports a miss as `missClaimed - claim code` (the lookup claimed the key's
   * flight).
   */
  missClaimed: -32,
} as const;

// The shared cache file (rust/src/shm/layout.rs).

/**
 * Format version of shared cache files (`VERSION`, with its history): a file of another version is
 * recreated.
 */
export const FORMAT_VERSION = 8;

/** First 8 bytes of every shared cache file (`MAGIC`). */
export const SHARED_MAGIC = "WARPSHM1";

/** Bytes of the file header; the hash table follows. */
export const HEADER_SIZE = 512;

/** Byte offsets in the file header. */
export const SHM_HEADER = {
  /** The magic (line 0: the identity fields). */
  magic: 0,
  /** The format version (u32). */
  version: 8,
  /** The seqlock counter's line. */
  seq: 64,
  /** The write lock's line. */
  lock: 128,
  /** The first counter stripe's line. */
  stripes: 192,
  /** The SIEVE queue's line. */
  queue: 256,
} as const;

/**
 * Bytes of a hash-table bucket; the table has a power of two of them, at least 8 and `2 * maxSize`.
 */
export const BUCKET_SIZE = 8;

/** Bytes of a slot (an entry's header); the file has `maxSize + 1` after the table. */
export const SLOT_SIZE = 72;

/** Byte offsets in a slot. */
export const SHM_SLOT = {
  /** The key length, value length, live and visited bits (one u64). */
  meta: 24,
  /**
   * The body: an entry's key then value when they fit (`INLINE_BYTES`), else its first chunk (u32).
   */
  firstChunk: 40,
  /** A chained entry's chunk count (u32, word 1 of the body). */
  chunkCount: 44,
} as const;

/** Bytes of an entry's key and value that its slot holds itself (no chunk, no budget). */
export const INLINE_BYTES = 32;

/**
 * Bytes of a chunk: a chunk header, then `CHUNK_PAYLOAD` bytes of an entry's key and value; the
 * chunks follow the slots.
 */
export const CHUNK_SIZE = 256;

/** Bytes of a chunk header: the next chunk, then the owner slot (u32 each). */
export const CHUNK_HEADER_SIZE = 8;

/** Bytes of an entry's key and value that a chunk holds. */
export const CHUNK_PAYLOAD = 248;

/**
 * Flight records at the end of the file: computations under way in all processes at once, at most.
 */
export const FLIGHT_RECORDS = 512;

/** Bytes of a flight record. */
export const FLIGHT_SIZE = 32;

// The tag clock file of a directory (rust/src/shm/tags.rs).

/**
 * Name of the tag clock file in a directory of shared caches (never a cache file's name: it starts
 * with a dot).
 */
export const TAGS_FILE = ".warp_tags";

/** First 8 bytes of a tag clock file. */
export const TAGS_MAGIC = "WARPTAG1";

/**
 * Bytes of a slot of the tag clock (read as four u32 words: hash, epoch); `warp_tags_layout` must
 * report it.
 */
export const TAGS_SLOT_SIZE = 16;

/** Index of each `f64` that `warp_tags_layout` writes: the layout of tag clock files. */
export const TAGS_LAYOUT = {
  /** Bytes of the file. */
  fileSize: 0,
  /** Bytes of the header; the slots follow. */
  headerSize: 1,
  /** Bytes of a slot: the tag's 64-bit hash, then its epoch (u64 each). */
  slotSize: 2,
  /** Slots of the table (a power of two). */
  slots: 3,
  /** Most slots probed from a hash's home slot. */
  probe: 4,
  /** Byte offset of the file's nonce (u64). */
  nonce: 5,
  /** Byte offset of the epoch (u64). */
  epoch: 6,
  /** Byte offset of the floor (u64). */
  floor: 7,
  /** The format version of tag clock files. */
  version: 8,
  /** Byte offset of the first epoch (u64). */
  start: 9,
} as const;

/** Number of `f64` fields written by `warp_tags_layout`. */
export const TAGS_LAYOUT_FIELDS = 10;
