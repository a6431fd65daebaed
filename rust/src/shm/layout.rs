//! The byte layout of a shared cache file.
//!
//! ```text
//! offset 0                      Header (HEADER_SIZE = 512 bytes, below)
//! offset HEADER_SIZE            hash table: table_size buckets of 8 bytes
//! offset HEADER_SIZE + 8 * ts   capacity + 1 slots of slot_size bytes each (the spare slot
//!                               lets an update write the new entry before freeing the old):
//!                                 SlotHeader (48 bytes), key bytes, value bytes, pad to 8
//! ```
//!
//! Everything is little-endian native (the file never leaves the machine) and 8-aligned.
//! A bucket is 0 when empty, else `(hash as u32 as u64) << 32 | (slot + 1)`: the low 32
//! bits of the key hash give the home bucket and a cheap tag, the slot's `key_hash`
//! holds the full hash.

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
pub const VERSION: u32 = 4;

/// Counter stripes in the header (one cache line each; see [`Header::stripe`]).
pub const STRIPES: usize = 4;

/// Largest plausible counter: 2^53, the largest integer reported exactly to JavaScript
/// (years of lookups at 10^8 per second). A counter above it is garbage (a corrupt file)
/// and the counters are reset (see `ShmStore::open`).
pub const COUNTER_LIMIT: u64 = 1 << 53;

/// Size of [`Header`]: 8 cache lines.
pub const HEADER_SIZE: usize = 512;

/// Size of [`SlotHeader`].
pub const SLOT_HEADER_SIZE: usize = 48;

/// Size of one hash-table bucket.
pub const BUCKET_SIZE: usize = 8;

/// No slot: end of the queue or of the free list, no hand.
pub const NIL: u32 = u32::MAX;

/// [`SlotHeader::state`] of a slot that holds no entry.
pub const SLOT_FREE: u32 = 0;
/// [`SlotHeader::state`] of a slot that holds an entry.
pub const SLOT_LIVE: u32 = 1;

/// Most entries of one shared cache.
pub const MAX_CAPACITY: u32 = 1 << 24;
/// Largest `max_key_size`.
pub const MAX_KEY_SIZE: u32 = 1 << 20;
/// Largest `max_value_size` (values are returned as `i32` lengths).
pub const MAX_VALUE_SIZE: u32 = 64 << 20;
/// Largest file: 64 GiB (a full `/dev/shm` is reported by `posix_fallocate` anyway).
pub const MAX_FILE_SIZE: u64 = 64 << 30;

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
    /// 28: bytes per slot.
    pub slot_size: u32,
    /// 32: buckets in the hash table (a power of two, at least `2 * capacity`).
    pub table_size: u32,
    /// 36: reserved, zero.
    pub _pad0: u32,
    /// 40: total file size in bytes.
    pub file_size: u64,
    /// 48: [`hash_check`] of the library that created the file.
    pub hash_check: u64,
    /// 56: reserved, zero.
    pub _pad1: u64,

    // line 1 (64..128): the seqlock
    /// 64: odd while a writer modifies the table, slots or queue.
    pub seq: AtomicU64,
    /// 72..128: reserved.
    pub _pad2: [u64; 7],

    // line 2 (128..192): the write lock
    /// 128: 0 when free, else the owner word (liveness id, counter, check); see `lock.rs`.
    pub lock: AtomicU64,
    /// 136..192: reserved.
    pub _pad3: [u64; 7],

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
    /// 292..320: reserved.
    pub _pad5: [u32; 7],

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
    /// +24..64: reserved.
    pub _pad: [u64; 5],
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

/// Metadata of one slot, followed in the file by `max_key_size` key bytes and
/// `max_value_size` value bytes.
///
/// ## Safety
/// Slots live in the shared mapping: lock-free readers may see any field torn or
/// changing; they validate lengths before use and the sequence counter afterwards.
#[repr(C)]
pub struct SlotHeader {
    /// 0: full `ahash` of the key at the fixed seeds.
    pub key_hash: AtomicU64,
    /// 8: insertion time, `f64` ms bits.
    pub inserted_at: AtomicU64,
    /// 16: [`checksum`] of this entry.
    pub checksum: AtomicU64,
    /// 24: key length in bytes.
    pub key_len: AtomicU32,
    /// 28: value length in bytes.
    pub value_len: AtomicU32,
    /// 32: towards the head (newer entry), or [`NIL`].
    pub newer: AtomicU32,
    /// 36: towards the tail (older entry), or [`NIL`]; next free slot when free.
    pub older: AtomicU32,
    /// 40: SIEVE visited bit (0 or 1), set by readers without the lock.
    pub visited: AtomicU32,
    /// 44: [`SLOT_FREE`] or [`SLOT_LIVE`].
    pub state: AtomicU32,
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
const _: () = assert!(offset_of!(SlotHeader, key_len) == 24);
const _: () = assert!(offset_of!(SlotHeader, state) == 44);
const _: () = assert!(std::mem::align_of::<Header>() <= 8);
const _: () = assert!(size_of::<AtomicU64>() == BUCKET_SIZE);

/// `ahash` at the fixed seeds of a constant: a library that hashes differently (another
/// `ahash` version, other seeds, another CPU feature set) gets another value, and
/// recreates the file instead of misreading its table.
pub fn hash_check() -> u64 {
    hash_bytes(&fixed_state(), b"warp_cache shm hash check v1")
}

/// Checksum of an entry: its hash, insertion time, lengths and bytes.
pub fn checksum(
    state: &ahash::RandomState,
    key_hash: u64,
    inserted_at_bits: u64,
    key: &[u8],
    value: &[u8],
) -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = state.build_hasher();
    h.write_u64(key_hash);
    h.write_u64(inserted_at_bits);
    h.write_u64(((key.len() as u64) << 32) | value.len() as u64);
    h.write(key);
    h.write(value);
    h.finish()
}

/// Bytes of one slot: the slot header, the key and value areas, rounded up to 8.
pub fn slot_size_of(max_key_size: u32, max_value_size: u32) -> u64 {
    (SLOT_HEADER_SIZE as u64 + u64::from(max_key_size) + u64::from(max_value_size))
        .next_multiple_of(8)
}

/// Buckets of the hash table: `2 * capacity` rounded up to a power of two, at least 8.
pub fn table_size_of(capacity: u32) -> u64 {
    (u64::from(capacity) * 2).next_power_of_two().max(8)
}

/// Size in bytes of the file for these parameters (the one formula, given in the README
/// as `512 + 8 * tableSize + (maxSize + 1) * slotSize`): the header, the table, and
/// `capacity + 1` slots (see [`VERSION`] 2). Not checked against [`MAX_FILE_SIZE`]; the
/// largest parameters give about 2^50, exact as an `f64`.
pub fn file_size_of(capacity: u32, max_key_size: u32, max_value_size: u32) -> u64 {
    HEADER_SIZE as u64
        + table_size_of(capacity) * BUCKET_SIZE as u64
        + (u64::from(capacity) + 1) * slot_size_of(max_key_size, max_value_size)
}

/// The parameters of a file, validated: every size and offset derived from them fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Params {
    pub capacity: u32,
    pub max_key_size: u32,
    pub max_value_size: u32,
    pub slot_size: u32,
    pub table_size: u32,
    /// Slots in the file: `capacity + 1` (see [`VERSION`] 2).
    pub slots: u32,
    pub file_size: u64,
}

impl Params {
    /// Validates the requested sizes and derives the layout, or says what is wrong.
    pub fn new(capacity: u32, max_key_size: u32, max_value_size: u32) -> Result<Params, String> {
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
        let slot = slot_size_of(max_key_size, max_value_size);
        let table = table_size_of(capacity);
        let slots = capacity + 1;
        let file = file_size_of(capacity, max_key_size, max_value_size);
        if file > MAX_FILE_SIZE {
            return Err(format!(
                "the cache file would take {file} bytes, more than {MAX_FILE_SIZE}: lower capacity or the key and value sizes"
            ));
        }
        Ok(Params {
            capacity,
            max_key_size,
            max_value_size,
            // Bounded by the checks above: slot < 66 MiB, table <= 2^25.
            slot_size: slot as u32,
            table_size: table as u32,
            slots,
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn params_validate_and_derive_sizes() {
        let p = Params::new(100, 512, 4096).unwrap();
        assert_eq!(p.table_size, 256);
        assert_eq!(
            p.slot_size as usize,
            (48 + 512 + 4096usize).next_multiple_of(8)
        );
        assert_eq!(
            p.file_size as usize,
            HEADER_SIZE + 256 * 8 + 101 * p.slot_size as usize
        );
        assert_eq!(Params::new(1, 1, 1).unwrap().table_size, 8);
        assert!(Params::new(0, 1, 1).is_err());
        assert!(Params::new(MAX_CAPACITY + 1, 1, 1).is_err());
        assert!(Params::new(1, 0, 1).is_err());
        assert!(Params::new(1, 1, MAX_VALUE_SIZE + 1).is_err());
        assert!(Params::new(MAX_CAPACITY, MAX_KEY_SIZE, MAX_VALUE_SIZE).is_err());
    }
}
