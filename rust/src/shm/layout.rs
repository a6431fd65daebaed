//! The byte layout of a shared cache file.
//!
//! ```text
//! offset 0                      Header (HEADER_SIZE = 512 bytes, below)
//! offset HEADER_SIZE            hash table: table_size buckets of 8 bytes
//! offset HEADER_SIZE + 8 * ts   capacity + 1 slots of SLOT_SIZE (72) bytes: the entry
//!                               headers, with INLINE_BYTES (32) bytes of room for a small
//!                               entry's key and value (the spare slot lets an update write
//!                               the new entry before freeing the old)
//! then (8-aligned)              `chunks` chunks of CHUNK_SIZE (256) bytes: a ChunkHeader
//!                               (8 bytes: next chunk, owner slot), then 248 payload bytes
//! then (8-aligned)              FLIGHT_RECORDS (512) flight records of FLIGHT_SIZE (32)
//!                               bytes: the cross-process single-flight table (`flight.rs`)
//! ```
//!
//! Everything is little-endian native (the file never leaves the machine) and 8-aligned.
//! A bucket is 0 when empty, else `(hash as u32 as u64) << 32 | (slot + 1)`: the low 32
//! bits of the key hash give the home bucket and a cheap tag (a slot keeps no hash: it
//! is computed again from the key where needed).
//!
//! An entry's key bytes then value bytes are one stream of `key_len + value_len` bytes.
//! A stream of at most [`INLINE_BYTES`] bytes lives in the slot itself ([`SlotHeader::body`]):
//! such an entry takes no chunk and none of the byte budget. A longer one is stored across
//! a chain of [`chunks_for`]`(key_len + value_len)` chunks, from the slot's first chunk
//! (the first word of its body; the second is the chain's length) through each chunk's
//! `next` (the last one's is [`NIL`]); each chunk of the chain names the slot as its
//! `owner` (a free chunk: [`NIL`]). Any free chunk serves any entry, so entries of 100 B
//! and of 64 KB share the byte budget `max_bytes` in proportion to their size, with no
//! fragmentation. The budget is `budget_chunks = max_bytes / CHUNK_SIZE` chunks that live
//! entries may hold; the file has `spare_chunks` more (enough for the largest entry, at
//! most the budget) so that an update writes its new chunks before it frees the old ones,
//! as the spare slot does for slots.

use std::mem::{offset_of, size_of};
use std::sync::atomic::{AtomicU32, AtomicU64};

use crate::hash::{fixed_state, hash_bytes};

/// First 8 bytes of every cache file.
pub const MAGIC: [u8; 8] = *b"WARPSHM1";

/// Format version, part of the file identity: a file of another version is recreated.
/// History:
/// - 1: first format (header of 512 bytes, linear-probing table with backward-shift
///   deletion, 48-byte slot headers with an ahash checksum, SIEVE queue, pid lock).
/// - 2: `capacity + 1` slots. Updating an existing key writes the new entry into a free
///   slot and frees the old one afterwards (copy on write), so a writer killed mid-update
///   leaves the old or the new entry, never neither (v1 updated in place, and a kill
///   mid-update lost the key). The spare slot guarantees a free slot when the store is full.
/// - 3: the hit, miss and oversize counters are striped over [`STRIPES`] cache lines (192
///   and 320..512), each handle adding to the stripe it was given at open, so that
///   processes reading on different cores do not bounce one counter line on every hit
///   (v2 kept one set of counters at 192, and 2 processes read no faster than 1);
///   `evictions` (written under the lock) and the stripe cursor moved to the queue line
///   (280, 288). Same sizes and offsets otherwise.
/// - 4: the lock word (128) names its owner handle by a liveness id held as a kernel
///   open-file-description lock on the file, with an acquisition counter and a check
///   (see `lock.rs`), instead of pid and start time, which mean nothing across PID
///   namespaces. Same layout: the version changes because a v3 library would read the
///   new words as dead pids and take the lock from a live v4 owner (and v4 reads v3
///   words as garbage), so that the two must not share a file.
/// - 5: variable-size entries under a byte budget (`max_bytes`, identity offset 56). Slots
///   are header-only (56 bytes: the v4 fields plus `first_chunk` and `chunk_count`); keys
///   and values live in a chain of 256-byte chunks (see the module docs), with a free
///   chunk list, a never-used mark and the count of chunks held by entries on the queue
///   line (292..304), and the chunk count at identity offset 36. v4 gave every entry a
///   fixed slot of `48 + max_key_size + max_value_size` bytes, so caches of 1-50 KB values
///   needed gigabytes up front. SIEVE runs over entries as before; an insert evicts until
///   both a slot and enough chunks are free.
/// - 6: per-entry TTL, stale counters and flights. Slots are 64 bytes: `own_ttl` (56, `f64`
///   ms bits; 0: none, the handle's TTL applies), covered by the checksum; counter stripes
///   count stale hits (+24) and refreshes (+32); the file ends with [`FLIGHT_RECORDS`]
///   flight records (see `flight.rs`). v5 had 56-byte slots and no flight table: the sizes
///   and the checksum differ, so the two must not share a file.
/// - 7: flights name their owner by the whole word the handle issued (v6 judged by the
///   liveness id alone, and a process given a dead one's id waited for itself), records
///   carry an async mark, and asynchronous waits sleep on one dispatcher thread. Flight
///   records are 32 bytes: the v6 fields, then the async mark (24: the upper half of the
///   owner word that declared its computation async) and a reserved word; the lock line
///   gains the flight epoch (136, bumped by every end of a flight and by a handle that
///   closes, for a dispatcher that waits on more records than one sleep can name) and the
///   count of its sleepers (140). The flight table grows from 12,288 to 16,384 bytes, so
///   the two must not share a file.
/// - 8: small entries inline, 72-byte slots. A slot keeps its entry's key and value in
///   its own [`INLINE_BYTES`] (32) bytes when they fit (no chunk, none of the byte
///   budget), else the first chunk and the length of its chain there. v7 took a whole
///   256-byte chunk and a 64-byte slot for an entry of a 16-byte key and value (336 MB
///   for 1M of them, and the default 16 MiB budget held 65,536 whatever the capacity);
///   v8 takes 72 bytes and its share of the table (89 MB for 1M). To fit, the slot keeps
///   no key hash (computed again from the key where needed), and its lengths, its live
///   state and its SIEVE visited bit share one word ([`SlotHeader::meta`]). The sizes
///   differ, so the two must not share a file.
pub const VERSION: u32 = 8;

/// Counter stripes in the header (one cache line each; see [`Header::stripe`]).
pub const STRIPES: usize = 4;

/// Largest plausible counter: 2^53, the largest integer reported exactly to JavaScript
/// (years of lookups at 10^8 per second). A counter above it is garbage (a corrupt file)
/// and the counters are reset (see `ShmStore::open`).
pub const COUNTER_LIMIT: u64 = 1 << 53;

/// Size of [`Header`]: 8 cache lines.
pub const HEADER_SIZE: usize = 512;

/// Size of [`SlotHeader`], and of a slot (its body holds a small entry's bytes since
/// [`VERSION`] 8).
pub const SLOT_HEADER_SIZE: usize = 72;

/// Bytes of a slot's body: an entry whose key and value take at most this many bytes
/// lives there, in no chunk.
pub const INLINE_BYTES: usize = 32;

/// [`SlotHeader::meta`]: bits of the key length (keys up to [`MAX_KEY_SIZE`], 2^20).
pub const META_KEY_BITS: u32 = 21;
/// [`SlotHeader::meta`]: bits of the value length (values up to [`MAX_VALUE_SIZE`], 2^26),
/// above the key length.
pub const META_VALUE_BITS: u32 = 27;
/// [`SlotHeader::meta`]: set while the slot holds an entry (written under the lock).
pub const META_LIVE: u64 = 1 << 62;
/// [`SlotHeader::meta`]: the SIEVE visited bit (set by readers without the lock, cleared
/// by the hand under it).
pub const META_VISITED: u64 = 1 << 63;
/// [`SlotHeader::meta`]: the bits that are always 0 in a valid slot.
pub const META_RESERVED: u64 = !(META_LIVE | META_VISITED | ((1 << 48) - 1));

/// Flight records at the end of the file (see `flight.rs`): computations under way in
/// all processes at once, at most.
pub const FLIGHT_RECORDS: usize = 512;

/// Size of [`FlightRecord`].
pub const FLIGHT_SIZE: usize = 32;

/// Records probed from a key's home record (linear probing, wrapping): a claim finds no
/// free record among them when [`FLIGHT_PROBES`] flights of keys with nearby homes are
/// under way, and the caller computes without a flight.
pub const FLIGHT_PROBES: usize = 16;

/// Bytes of the flight table.
pub const FLIGHTS_SIZE: usize = FLIGHT_RECORDS * FLIGHT_SIZE;

/// Size of one chunk: a [`ChunkHeader`] then [`CHUNK_PAYLOAD`] bytes of an entry.
pub const CHUNK_SIZE: usize = 256;

/// Size of [`ChunkHeader`].
pub const CHUNK_HEADER_SIZE: usize = 8;

/// Entry bytes per chunk.
pub const CHUNK_PAYLOAD: usize = CHUNK_SIZE - CHUNK_HEADER_SIZE;

/// The byte budget of a cache opened without one (`max_bytes` 0): at most this many, and
/// no more than `capacity` entries of the largest size take (see [`default_max_bytes`]).
/// 16 MiB: the default file then fits a container's 64 MiB `/dev/shm` three times over.
pub const DEFAULT_MAX_BYTES: u64 = 16 << 20;

/// Size of one hash-table bucket.
pub const BUCKET_SIZE: usize = 8;

/// No slot: end of the queue or of the free list, no hand.
pub const NIL: u32 = u32::MAX;

/// Most entries of one shared cache.
pub const MAX_CAPACITY: u32 = 1 << 24;
/// Largest `max_key_size`.
pub const MAX_KEY_SIZE: u32 = 1 << 20;
/// Largest `max_value_size` (values are returned as `i32` lengths).
pub const MAX_VALUE_SIZE: u32 = 64 << 20;
/// Smallest `max_bytes`: one chunk.
pub const MIN_MAX_BYTES: u64 = CHUNK_SIZE as u64;
/// Largest `max_bytes`: 64 GiB (at most 2^28 chunks, far below [`NIL`]).
pub const MAX_MAX_BYTES: u64 = 64 << 30;
/// Largest file: the one of the largest sizes ([`MAX_CAPACITY`], [`MAX_KEY_SIZE`],
/// [`MAX_VALUE_SIZE`], [`MAX_MAX_BYTES`]), 70,266,244,936 bytes (about 65.4 GiB), so that
/// every size within its own limit is accepted: `max_bytes` up to 64 GiB holds that many
/// bytes of entries whatever the other sizes (before, the file was capped at 64 GiB, which
/// refused a 64 GiB budget with any sizes). A full `/dev/shm` is reported by
/// `posix_fallocate` at open.
pub const MAX_FILE_SIZE: u64 = HEADER_SIZE as u64
    + (MAX_CAPACITY as u64 * 2).next_power_of_two() * BUCKET_SIZE as u64
    + (MAX_CAPACITY as u64 + 1) * SLOT_HEADER_SIZE as u64
    + (MAX_MAX_BYTES / CHUNK_SIZE as u64
        + (MAX_KEY_SIZE as u64 + MAX_VALUE_SIZE as u64).div_ceil(CHUNK_PAYLOAD as u64))
        * CHUNK_SIZE as u64
    + FLIGHTS_SIZE as u64;

/// Mode of created cache files.
pub const FILE_MODE: u32 = 0o600;
/// Mode of a created cache directory.
pub const DIR_MODE: u32 = 0o700;

/// The file header. Identity fields (line 0) are written once, in a private file, before
/// the file gets its name, and never change; the handle copies them at open and never
/// reads them again. The other lines are atomics, each group on its own cache line so
/// that what readers read (seq), what they write (their counter stripe) and the lock word
/// do not share a line.
///
/// ## Safety
/// The header lives in a shared mapping that other processes may modify at any time;
/// only the atomic fields are read after open, and every value read from them is
/// validated before it is used as an index.
#[repr(C)]
pub struct Header {
    // line 0 (0..64): identity
    /// 0: [`MAGIC`].
    pub magic: [u8; 8],
    /// 8: [`VERSION`].
    pub version: u32,
    /// 12: [`HEADER_SIZE`].
    pub header_size: u32,
    /// 16: most entries.
    pub capacity: u32,
    /// 20: largest key in bytes.
    pub max_key_size: u32,
    /// 24: largest value in bytes.
    pub max_value_size: u32,
    /// 28: bytes per slot ([`SLOT_HEADER_SIZE`]).
    pub slot_size: u32,
    /// 32: buckets in the hash table (a power of two, at least `2 * capacity`).
    pub table_size: u32,
    /// 36: chunks in the file (budget plus spare, see the module docs).
    pub chunks: u32,
    /// 40: total file size in bytes.
    pub file_size: u64,
    /// 48: [`hash_check`] of the library that created the file.
    pub hash_check: u64,
    /// 56: the byte budget of the entries' chunks.
    pub max_bytes: u64,

    // line 1 (64..128): the seqlock
    /// 64: odd while a writer modifies the table, slots or queue.
    pub seq: AtomicU64,
    /// 72..128: reserved.
    pub _pad2: [u64; 7],

    // line 2 (128..192): the write lock
    /// 128: 0 when free, else the owner word (liveness id, counter, check); see `lock.rs`.
    pub lock: AtomicU64,
    /// 136: the flight epoch: bumped whenever a flight ends or a handle closes; a
    /// dispatcher that waits on more records than one sleep can name sleeps on it (futex,
    /// see `dispatch.rs`).
    pub flight_epoch: AtomicU32,
    /// 140: threads sleeping on `flight_epoch` (in every process): an end wakes them only
    /// when not 0. A sleeper killed asleep leaves it too high: ends then wake for nothing.
    pub flight_sleepers: AtomicU32,
    /// 144..192: reserved.
    pub _pad3: [u64; 6],

    // line 3 (192..256): counter stripe 0
    /// 192: stripe 0 of the hit, miss and oversize counters.
    pub stripe0: CounterStripe,

    // line 4 (256..320): queue and allocation, written under the lock
    /// 256: newest entry, or [`NIL`].
    pub head: AtomicU32,
    /// 260: oldest entry, or [`NIL`].
    pub tail: AtomicU32,
    /// 264: SIEVE hand, or [`NIL`] (start at the tail).
    pub hand: AtomicU32,
    /// 268: live entries.
    pub len: AtomicU32,
    /// 272: first free (used before) slot, linked through `older`, or [`NIL`].
    pub free_head: AtomicU32,
    /// 276: slots `next_unused..capacity` were never used since the last clear.
    pub next_unused: AtomicU32,
    /// 280: entries evicted by SIEVE to make room (exact: only written under the lock).
    pub evictions: AtomicU64,
    /// 288: stripe of the next handle opened, modulo [`STRIPES`] (round robin, so that
    /// the first handles of all processes get distinct stripes). Taken with an atomic
    /// add at open, without the lock.
    pub next_stripe: AtomicU32,
    /// 292: first free (used before) chunk, linked through `next`, or [`NIL`].
    pub chunk_free_head: AtomicU32,
    /// 296: chunks `chunk_next_unused..chunks` were never used since the last clear.
    pub chunk_next_unused: AtomicU32,
    /// 300: chunks held by the entries on the queue (at most the budget).
    pub chunks_used: AtomicU32,
    /// 304..320: reserved.
    pub _pad5: [u32; 4],

    // lines 5-7 (320..512): counter stripes 1..STRIPES
    /// 320, 384, 448: stripes 1 to 3.
    pub stripes: [CounterStripe; STRIPES - 1],
}

/// One stripe of the counters, alone on its cache line. Every handle adds to one stripe
/// only; a total is the sum over the stripes, so totals stay exact across processes while
/// processes on different cores write different lines.
#[repr(C)]
pub struct CounterStripe {
    /// +0: lookups that found a fresh entry (plus `count_hit` calls).
    pub hits: AtomicU64,
    /// +8: lookups that found nothing usable.
    pub misses: AtomicU64,
    /// +16: `set` calls skipped because the key or value was too large.
    pub oversize_skips: AtomicU64,
    /// +24: stale values returned (`count_stale_hit`; counted in `hits` too).
    pub stale_hits: AtomicU64,
    /// +32: background refreshes started (`count_refresh`).
    pub refreshes: AtomicU64,
    /// +40..64: reserved.
    pub _pad: [u64; 3],
}

impl Header {
    /// Counter stripe `i % STRIPES`.
    #[inline]
    pub fn stripe(&self, i: usize) -> &CounterStripe {
        match i % STRIPES {
            0 => &self.stripe0,
            n => &self.stripes[n - 1],
        }
    }

    /// Every counter stripe.
    pub fn all_stripes(&self) -> impl Iterator<Item = &CounterStripe> {
        std::iter::once(&self.stripe0).chain(self.stripes.iter())
    }
}

/// One slot: the header of an entry, and its bytes when they fit in its body (else they
/// are in its chunk chain).
///
/// ## Safety
/// Slots live in the shared mapping: lock-free readers may see any field torn or
/// changing; they validate lengths before use and the checksum (or the sequence counter)
/// afterwards. The body is read and written through raw copies (an inline entry's bytes)
/// or as atomics (a chained entry's first chunk and length), never through references to
/// plain bytes.
#[repr(C)]
pub struct SlotHeader {
    /// 0: [`checksum`] of this entry.
    pub checksum: AtomicU64,
    /// 8: insertion time, `f64` ms bits.
    pub inserted_at: AtomicU64,
    /// 16: the entry's own TTL, `f64` ms bits (`+Infinity`: never expires), or 0 when it
    /// has none (each handle judges it by its own TTL). Covered by the checksum.
    pub own_ttl: AtomicU64,
    /// 24: the key length (bits 0..21), the value length (bits 21..48), [`META_LIVE`] and
    /// [`META_VISITED`]; 0 for a free slot. One word, so that a reader gets the lengths
    /// and the visited bit of one state in one load, and a writer makes an entry live
    /// with its lengths in one store.
    pub meta: AtomicU64,
    /// 32: towards the head (newer entry), or [`NIL`].
    pub newer: AtomicU32,
    /// 36: towards the tail (older entry), or [`NIL`]; next free slot when free.
    pub older: AtomicU32,
    /// 40: [`INLINE_BYTES`] bytes: the key then the value when they fit ([`is_inline`]),
    /// else the first chunk of the chain (word 0) and its length (word 1,
    /// [`chunks_for`]`(key_len + value_len)`).
    pub body: [AtomicU32; INLINE_BYTES / 4],
}

impl SlotHeader {
    /// The first chunk of a chained entry's chain (word 0 of the body).
    #[inline]
    pub fn first_chunk(&self) -> &AtomicU32 {
        &self.body[0]
    }

    /// The length of a chained entry's chain (word 1 of the body).
    #[inline]
    pub fn chunk_count(&self) -> &AtomicU32 {
        &self.body[1]
    }

    /// The address of the body's bytes (an inline entry's key then value).
    #[inline]
    pub fn body_ptr(&self) -> *mut u8 {
        self.body[0].as_ptr().cast::<u8>()
    }
}

/// The [`SlotHeader::meta`] of a live entry of these lengths (visited bit clear).
#[inline]
pub fn meta_of(key_len: usize, value_len: usize) -> u64 {
    key_len as u64 | (value_len as u64) << META_KEY_BITS | META_LIVE
}

/// The key length of a [`SlotHeader::meta`].
#[inline]
pub fn meta_key_len(meta: u64) -> usize {
    (meta & ((1 << META_KEY_BITS) - 1)) as usize
}

/// The value length of a [`SlotHeader::meta`].
#[inline]
pub fn meta_value_len(meta: u64) -> usize {
    ((meta >> META_KEY_BITS) & ((1 << META_VALUE_BITS) - 1)) as usize
}

/// Whether an entry of `bytes` key and value bytes lives in its slot's body.
#[inline]
pub fn is_inline(bytes: usize) -> bool {
    bytes <= INLINE_BYTES
}

/// Chunks that an entry of `bytes` key and value bytes holds: none when it is inline,
/// else [`chunks_for`]`(bytes)`.
#[inline]
pub fn entry_chunks(bytes: u64) -> u64 {
    if bytes <= INLINE_BYTES as u64 {
        0
    } else {
        chunks_for(bytes)
    }
}

/// One record of the flight table (`flight.rs`): a computation of one key under way in
/// some process. Free while `owner` is 0.
///
/// ## Safety
/// Records live in the shared mapping and may hold anything (garbage included): an owner
/// word whose check fails names a dead owner, a key and a mark are only compared, and the
/// futex word is only waited on and bumped.
#[repr(C)]
pub struct FlightRecord {
    /// 0: the owner's word (`lock::word_of`: liveness id, counter, check), 0 when free.
    pub owner: AtomicU64,
    /// 8: the full key hash of the flight (written under the write lock while `owner` is 0).
    pub key: AtomicU64,
    /// 16: bumped whenever the flight ends or is marked async; waiters sleep on it (futex).
    pub seq: AtomicU32,
    /// 20: threads (of every process) sleeping on `seq`: an end wakes them only when not 0.
    pub waiters: AtomicU32,
    /// 24: the async mark: the upper half of the owner word (counter and check; see
    /// `flight::mark_of`) when that owner declared its computation async, else anything
    /// else (0). A mark left by an earlier owner of the record does not match a later
    /// owner's word.
    pub mark: AtomicU32,
    /// 28: reserved.
    pub _reserved: AtomicU32,
}

/// The header of a chunk, followed by [`CHUNK_PAYLOAD`] bytes.
///
/// ## Safety
/// As for [`SlotHeader`]: readers validate every index and the checksum of what they copy.
#[repr(C)]
pub struct ChunkHeader {
    /// 0: next chunk of the chain (or of the free list), or [`NIL`].
    pub next: AtomicU32,
    /// 4: the slot whose entry holds this chunk, or [`NIL`] when free.
    pub owner: AtomicU32,
}

const _: () = assert!(size_of::<Header>() == HEADER_SIZE);
const _: () = assert!(offset_of!(Header, seq) == 64);
const _: () = assert!(offset_of!(Header, lock) == 128);
const _: () = assert!(offset_of!(Header, stripe0) == 192);
const _: () = assert!(offset_of!(Header, head) == 256);
const _: () = assert!(offset_of!(Header, evictions) == 280);
const _: () = assert!(offset_of!(Header, next_stripe) == 288);
const _: () = assert!(offset_of!(Header, stripes) == 320);
const _: () = assert!(size_of::<CounterStripe>() == 64);
const _: () = assert!(STRIPES == 4);
const _: () = assert!(size_of::<SlotHeader>() == SLOT_HEADER_SIZE);
const _: () = assert!(offset_of!(SlotHeader, meta) == 24);
const _: () = assert!(offset_of!(SlotHeader, body) == 40);
const _: () = assert!(META_KEY_BITS + META_VALUE_BITS == 48);
const _: () = assert!(MAX_KEY_SIZE < 1 << META_KEY_BITS);
const _: () = assert!(MAX_VALUE_SIZE < 1 << META_VALUE_BITS);
const _: () = assert!(offset_of!(Header, chunk_free_head) == 292);
const _: () = assert!(offset_of!(Header, chunks) == 36);
const _: () = assert!(offset_of!(Header, max_bytes) == 56);
const _: () = assert!(offset_of!(SlotHeader, own_ttl) == 16);
const _: () = assert!(offset_of!(CounterStripe, stale_hits) == 24);
const _: () = assert!(offset_of!(CounterStripe, refreshes) == 32);
const _: () = assert!(size_of::<FlightRecord>() == FLIGHT_SIZE);
const _: () = assert!(offset_of!(FlightRecord, seq) == 16);
const _: () = assert!(offset_of!(FlightRecord, mark) == 24);
const _: () = assert!(offset_of!(Header, flight_epoch) == 136);
const _: () = assert!(offset_of!(Header, flight_sleepers) == 140);
const _: () = assert!(FLIGHT_PROBES <= FLIGHT_RECORDS && FLIGHT_RECORDS.is_power_of_two());
const _: () = assert!(size_of::<ChunkHeader>() == CHUNK_HEADER_SIZE);
const _: () = assert!(CHUNK_SIZE.is_multiple_of(8) && SLOT_HEADER_SIZE.is_multiple_of(8));
const _: () = assert!(std::mem::align_of::<Header>() <= 8);
const _: () = assert!(size_of::<AtomicU64>() == BUCKET_SIZE);

/// `ahash` at the fixed seeds of a constant: a library that hashes differently (another
/// `ahash` version, other seeds, another CPU feature set) gets another value, and
/// recreates the file instead of misreading its table.
pub fn hash_check() -> u64 {
    hash_bytes(&fixed_state(), b"warp_cache shm hash check v1")
}

/// The insertion time and own TTL of an entry, as `f64` ms bits (see [`SlotHeader`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stamp {
    /// Insertion time.
    pub at: u64,
    /// Own TTL, or 0 (none).
    pub ttl: u64,
}

impl Stamp {
    /// The stamp of an entry inserted at `now` with own TTL `ttl` ms (not positive or
    /// NaN: none).
    pub fn new(now: f64, ttl: f64) -> Stamp {
        Stamp {
            at: now.to_bits(),
            ttl: if ttl > 0.0 { ttl.to_bits() } else { 0 },
        }
    }
}

/// Checksum of an entry: its hash, insertion time, own TTL, lengths and bytes.
pub fn checksum(
    state: &ahash::RandomState,
    key_hash: u64,
    stamp: Stamp,
    key: &[u8],
    value: &[u8],
) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = state.build_hasher();
    h.write_u64(key_hash);
    h.write_u64(stamp.at);
    h.write_u64(stamp.ttl);
    h.write_u64(((key.len() as u64) << 32) | value.len() as u64);
    h.write(key);
    h.write(value);
    h.finish()
}

/// Chunks that hold an entry of `bytes` key and value bytes.
pub fn chunks_for(bytes: u64) -> u64 {
    bytes.div_ceil(CHUNK_PAYLOAD as u64)
}

/// Buckets of the hash table: `2 * capacity` rounded up to a power of two, at least 8.
pub fn table_size_of(capacity: u32) -> u64 {
    (u64::from(capacity) * 2).next_power_of_two().max(8)
}

/// The byte budget of a cache opened with `max_bytes` 0: [`DEFAULT_MAX_BYTES`], or less
/// when `capacity` entries of the largest size need less (then a small cache takes no
/// more room than it can use, as before [`VERSION`] 5). At least [`MIN_MAX_BYTES`]: the
/// budget of a cache whose entries all fit in their slots ([`INLINE_BYTES`]), which hold
/// no chunk.
pub fn default_max_bytes(capacity: u32, max_key_size: u32, max_value_size: u32) -> u64 {
    let largest = entry_chunks(u64::from(max_key_size) + u64::from(max_value_size));
    (u64::from(capacity) * largest * CHUNK_SIZE as u64).clamp(MIN_MAX_BYTES, DEFAULT_MAX_BYTES)
}

/// `(budget, spare)` chunks for these sizes (`max_bytes` already resolved): the budget is
/// `max_bytes / CHUNK_SIZE`, the spare enough chunks for the largest entry, at most the
/// budget (see the module docs).
pub fn chunks_of(max_key_size: u32, max_value_size: u32, max_bytes: u64) -> (u64, u64) {
    let budget = max_bytes / CHUNK_SIZE as u64;
    let largest = entry_chunks(u64::from(max_key_size) + u64::from(max_value_size));
    (budget, largest.min(budget))
}

/// Size in bytes of the file for these parameters (the one formula, given in the README
/// as `512 + 8 * tableSize + 72 * (maxSize + 1) + 256 * (budgetChunks + spareChunks) +
/// 16384`): the header, the table, `capacity + 1` slots (see [`VERSION`] 2), the chunks
/// (see the module docs) and the flight table. `max_bytes` 0 means [`default_max_bytes`].
/// Not checked against
/// [`MAX_FILE_SIZE`]; the largest parameters give about 2^37, exact as an `f64`.
pub fn file_size_of(capacity: u32, max_key_size: u32, max_value_size: u32, max_bytes: u64) -> u64 {
    let max_bytes = if max_bytes == 0 {
        default_max_bytes(capacity, max_key_size, max_value_size)
    } else {
        max_bytes
    };
    let (budget, spare) = chunks_of(max_key_size, max_value_size, max_bytes);
    HEADER_SIZE as u64
        + table_size_of(capacity) * BUCKET_SIZE as u64
        + (u64::from(capacity) + 1) * SLOT_HEADER_SIZE as u64
        + (budget + spare) * CHUNK_SIZE as u64
        + FLIGHTS_SIZE as u64
}

/// The parameters of a file, validated: every size and offset derived from them fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    pub capacity: u32,
    pub max_key_size: u32,
    pub max_value_size: u32,
    /// The byte budget (resolved: never 0).
    pub max_bytes: u64,
    pub slot_size: u32,
    pub table_size: u32,
    /// Slots in the file: `capacity + 1` (see [`VERSION`] 2).
    pub slots: u32,
    /// Chunks that live entries may hold: `max_bytes / CHUNK_SIZE`.
    pub budget_chunks: u32,
    /// Chunks in the file: the budget plus the spare.
    pub chunks: u32,
    pub file_size: u64,
}

impl Params {
    /// [`Params::with_bytes`] with the default byte budget ([`default_max_bytes`]).
    pub fn new(capacity: u32, max_key_size: u32, max_value_size: u32) -> Result<Params, String> {
        Params::with_bytes(capacity, max_key_size, max_value_size, 0)
    }

    /// Validates the requested sizes and derives the layout, or says what is wrong.
    /// `max_bytes` 0 means [`default_max_bytes`].
    pub fn with_bytes(
        capacity: u32,
        max_key_size: u32,
        max_value_size: u32,
        max_bytes: u64,
    ) -> Result<Params, String> {
        if capacity == 0 || capacity > MAX_CAPACITY {
            return Err(format!(
                "capacity must be between 1 and {MAX_CAPACITY}: received {capacity}"
            ));
        }
        if max_key_size == 0 || max_key_size > MAX_KEY_SIZE {
            return Err(format!(
                "max_key_size must be between 1 and {MAX_KEY_SIZE}: received {max_key_size}"
            ));
        }
        if max_value_size == 0 || max_value_size > MAX_VALUE_SIZE {
            return Err(format!(
                "max_value_size must be between 1 and {MAX_VALUE_SIZE}: received {max_value_size}"
            ));
        }
        let max_bytes = if max_bytes == 0 {
            default_max_bytes(capacity, max_key_size, max_value_size)
        } else {
            max_bytes
        };
        if !(MIN_MAX_BYTES..=MAX_MAX_BYTES).contains(&max_bytes) {
            return Err(format!(
                "max_bytes must be between {MIN_MAX_BYTES} and {MAX_MAX_BYTES}: received {max_bytes}"
            ));
        }
        let table = table_size_of(capacity);
        let (budget, spare) = chunks_of(max_key_size, max_value_size, max_bytes);
        let file = file_size_of(capacity, max_key_size, max_value_size, max_bytes);
        if file > MAX_FILE_SIZE {
            return Err(format!(
                "the cache file would take {file} bytes, more than {MAX_FILE_SIZE}: lower capacity or max_bytes"
            ));
        }
        Ok(Params {
            capacity,
            max_key_size,
            max_value_size,
            max_bytes,
            slot_size: SLOT_HEADER_SIZE as u32,
            // Bounded by the checks above: table <= 2^25, chunks <= 2^29.
            table_size: table as u32,
            slots: capacity + 1,
            budget_chunks: budget as u32,
            chunks: (budget + spare) as u32,
            file_size: file,
        })
    }

    /// Byte offset of the first bucket.
    pub fn table_offset(&self) -> usize {
        HEADER_SIZE
    }

    /// Byte offset of slot 0.
    pub fn slots_offset(&self) -> usize {
        HEADER_SIZE + self.table_size as usize * BUCKET_SIZE
    }

    /// Byte offset of slot `i` (the caller checks `i < slots`).
    pub fn slot_offset(&self, i: u32) -> usize {
        self.slots_offset() + i as usize * self.slot_size as usize
    }

    /// Byte offset of chunk 0.
    pub fn chunks_offset(&self) -> usize {
        self.slots_offset() + self.slots as usize * self.slot_size as usize
    }

    /// Byte offset of chunk `i` (the caller checks `i < chunks`).
    pub fn chunk_offset(&self, i: u32) -> usize {
        self.chunks_offset() + i as usize * CHUNK_SIZE
    }

    /// Byte offset of the flight table (after the chunks; 8-aligned).
    pub fn flights_offset(&self) -> usize {
        self.chunks_offset() + self.chunks as usize * CHUNK_SIZE
    }

    /// Chunks of the largest entry: [`entry_chunks`]`(max_key_size + max_value_size)` (0
    /// when every entry fits in its slot).
    pub fn largest_chunks(&self) -> u32 {
        entry_chunks(u64::from(self.max_key_size) + u64::from(self.max_value_size)) as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_validate_and_derive_sizes() {
        let p = Params::new(100, 512, 4096).unwrap();
        assert_eq!(p.table_size, 256);
        assert_eq!(p.slot_size, 72);
        // Default budget: 100 entries of the largest size (19 chunks of 248 bytes).
        assert_eq!(p.max_bytes, 100 * 19 * 256);
        assert_eq!((p.budget_chunks, p.chunks), (1900, 1919));
        assert_eq!(
            p.file_size as usize,
            HEADER_SIZE + 256 * 8 + 101 * 72 + 1919 * 256 + 512 * 32
        );
        assert_eq!(p.flights_offset() + FLIGHTS_SIZE, p.file_size as usize);
        let big = Params::new(1 << 20, 512, 4096).unwrap();
        assert_eq!(big.max_bytes, DEFAULT_MAX_BYTES);
        let b = Params::with_bytes(100, 512, 65536, 1000).unwrap();
        // 3 chunks of budget; the spare is at most the budget.
        assert_eq!((b.budget_chunks, b.chunks), (3, 6));
        assert!(Params::with_bytes(1, 1, 1, 255).is_err());
        assert!(Params::with_bytes(1, 1, 1, MAX_MAX_BYTES + 1).is_err());
        // Entries of 2 bytes live in their slots: no spare chunk.
        assert_eq!(Params::with_bytes(1, 1, 1, 256).unwrap().chunks, 1);
        assert_eq!(Params::with_bytes(1, 1, 32, 256).unwrap().chunks, 2);
        assert_eq!(Params::new(1, 1, 1).unwrap().table_size, 8);
        assert!(Params::new(0, 1, 1).is_err());
        assert!(Params::new(MAX_CAPACITY + 1, 1, 1).is_err());
        assert!(Params::new(1, 0, 1).is_err());
        assert!(Params::new(1, 1, MAX_VALUE_SIZE + 1).is_err());
        // Every size at its own limit fits: the largest file is MAX_FILE_SIZE.
        let largest =
            Params::with_bytes(MAX_CAPACITY, MAX_KEY_SIZE, MAX_VALUE_SIZE, MAX_MAX_BYTES).unwrap();
        assert_eq!(largest.file_size, MAX_FILE_SIZE);
        assert_eq!(MAX_FILE_SIZE, 70_266_244_936);
        assert!(Params::with_bytes(128, 512, 4096, MAX_MAX_BYTES).is_ok());
    }

    /// Entries of at most INLINE_BYTES key and value bytes hold no chunk: a cache whose
    /// largest entry fits in a slot gets the smallest budget (one chunk, no spare), and 1M
    /// entries of a 16-byte key and value take 72 bytes of slot each plus their share of
    /// the table (v7: 64 + 256).
    #[test]
    fn small_entries_live_in_their_slots() {
        assert_eq!(entry_chunks(0), 0);
        assert_eq!(entry_chunks(INLINE_BYTES as u64), 0);
        assert_eq!(entry_chunks(INLINE_BYTES as u64 + 1), 1);
        assert_eq!(entry_chunks(248), 1);
        assert_eq!(entry_chunks(249), 2);
        let p = Params::new(1_000_000, 16, 16).unwrap();
        assert_eq!(p.max_bytes, MIN_MAX_BYTES);
        assert_eq!((p.budget_chunks, p.chunks, p.largest_chunks()), (1, 1, 0));
        assert_eq!(
            p.file_size,
            512 + (1 << 21) * 8 + 72 * 1_000_001 + 256 + FLIGHTS_SIZE as u64
        );
        assert!(p.file_size <= 96_000_000, "{}", p.file_size);
        // One byte more than a slot holds: a chunk each, and a spare one.
        let q = Params::new(1000, 16, 17).unwrap();
        assert_eq!(q.largest_chunks(), 1);
        assert_eq!(
            (q.max_bytes, q.budget_chunks, q.chunks),
            (1000 * 256, 1000, 1001)
        );
        let m = meta_of(MAX_KEY_SIZE as usize, MAX_VALUE_SIZE as usize);
        assert_eq!(meta_key_len(m), MAX_KEY_SIZE as usize);
        assert_eq!(meta_value_len(m), MAX_VALUE_SIZE as usize);
        assert_eq!(m & META_RESERVED, 0);
        assert_eq!(m & META_VISITED, 0);
        assert_ne!(m & META_LIVE, 0);
        assert_eq!(meta_key_len(meta_of(3, 0) | META_VISITED), 3);
    }
}
