//! The in-process store: an index from key bytes to a slot number, with SIEVE eviction,
//! TTL (the store's, or an entry's own) and a stale window. Safe code only.
//!
//! The store keeps keys and metadata; the values stay on the JavaScript side, in an array
//! indexed by slot, so that they keep their identity and cost no serialization.
//!
//! SIEVE (Zhang et al., "SIEVE is Simpler than LRU", NSDI 2024): entries form a queue
//! from the newest (head) to the oldest (tail). A hit sets the entry's visited bit and
//! moves nothing. To evict, the hand starts where it last stopped (at first the tail) and
//! walks towards the head, clearing visited bits (a second chance) until it finds an
//! unvisited entry, which it evicts; past the head it wraps to the tail.
//!
//! The same queue also serves the LRU, MRU and FIFO policies, and LFU (least frequently
//! used) with the frequency buckets of Shah, Mitra and Matani ("An O(1) algorithm for
//! implementing the LFU cache eviction scheme", 2010): entries are grouped by their access
//! count, the insertion counting as the first access; a hit moves the entry from the bucket
//! of count `f` to the bucket of count `f + 1`, where it becomes the newest; eviction takes
//! the entry that has been longest in the bucket of the lowest count. Here the buckets are
//! runs of the one queue, highest count at the head, and within a run newest first, so the
//! LFU victim is the tail, as for LRU and FIFO. Re-inserting a present key keeps its count
//! and place; removal (delete, TTL expiry, eviction) takes the entry out of its bucket.
//! Every operation is O(1).
//!
//! S3-FIFO ([`s3fifo`]), W-TinyLFU ([`wtinylfu`]) and ARC ([`arc`]) keep their entries on
//! queues of their own ([`lists`]): the store's queue then stays empty, and the store hands out slots,
//! indexes keys and keeps times as for the other policies. Their hits and insertions cost
//! a branch on the policy that SIEVE takes first (`get` has no other work for SIEVE).
//!
//! Time: every `now` is in ms on any clock that does not go backwards, or `NaN`: then the
//! store reads [`crate::clock::monotonic_ms`] itself, and only when the entry at hand has a
//! TTL (so a store without TTL, and without entries of a TTL of their own, never reads it).
//!
//! Expiry: an entry's TTL is its own (given to [`SieveStore::insert_with_ttl`]) or else the
//! store's. At age `a` (`now` minus its insertion time) it is fresh while `a < ttl`, stale
//! while `ttl <= a < ttl + stale` (the store's stale window, 0 = none) and gone after: a
//! lookup keeps a stale entry (a miss) and removes a gone one.

use hashbrown::HashTable;

use crate::hash::{fixed_state, hash_bytes};

mod arc;
mod ghost;
mod lists;
#[cfg(test)]
mod policy_tests;
mod s3fifo;
pub mod sketch;
mod wtinylfu;

use arc::Arc;
use s3fifo::S3Fifo;
use wtinylfu::WTinyLfu;

/// A reproducible stream of pseudo-random numbers (xorshift64) from `seed`, for the tests of
/// the store and its policies.
#[cfg(test)]
fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut x = seed;
    move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    }
}

/// No slot: the end of the queue, or no hand.
const NIL: u32 = u32::MAX;

/// Largest number of slots: slot numbers travel as non-negative `i32`.
pub const MAX_SLOTS: usize = i32::MAX as usize;

crate::abi_enum! {
    /// Eviction policy, numbered as `POLICY` in `src/native/_abi.ts` (generated: see
    /// `crate::abi`) and `Strategy` in `src/options/options.ts`.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Policy {
        /// SIEVE: visited bit and hand (the default).
        Sieve = 0,
        /// Least recently used: a hit moves the entry to the head; evict the tail.
        Lru = 1,
        /// Most recently used: a hit moves the entry to the head; evict the head.
        Mru = 2,
        /// First in, first out: hits move nothing; evict the tail.
        Fifo = 3,
        /// Least frequently used: a hit moves the entry up one frequency bucket; evict the
        /// oldest entry of the lowest bucket (the tail).
        Lfu = 4,
        /// S3-FIFO, as libCacheSim's `S3FIFO` (see [`s3fifo`]).
        S3Fifo = 5,
        /// W-TinyLFU with Caffeine's adaptive window (see [`wtinylfu`]).
        WTinyLfu = 6,
        /// ARC, as libCacheSim's `ARC` (see [`arc`]).
        Arc = 7,
    }
}

impl Policy {
    /// Maps the number used over the C ABI to a policy.
    pub fn from_u32(n: u32) -> Option<Policy> {
        Policy::ALL.iter().copied().find(|p| *p as u32 == n)
    }
}

/// Result of [`SieveStore::get`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The key is present and fresh; its value is at this slot.
    Hit(u32),
    /// The key is absent.
    Miss,
    /// The key is present but stale (past its TTL, inside the stale window): a miss, and
    /// the entry stays at this slot.
    Stale(u32),
    /// The key was present but past its TTL and stale window: it was removed and its slot
    /// freed.
    Expired(u32),
}

/// Where an entry stands in its lifetime at a given time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Age {
    Fresh,
    Stale,
    Gone,
}

/// `now`, or the library's monotonic clock when `now` is `NaN` (see the module docs).
#[inline]
fn resolve(now: f64) -> f64 {
    if now.is_nan() {
        crate::clock::monotonic_ms()
    } else {
        now
    }
}

/// Result of [`SieveStore::insert`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Inserted {
    /// Slot that now holds the key.
    pub slot: u32,
    /// Whether another entry was evicted to make room (its slot is `slot`, reused).
    pub evicted: bool,
}

/// Counters of a store since creation or the last [`SieveStore::clear`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub hits: u64,
    pub misses: u64,
    pub evictions: u64,
    pub expirations: u64,
}

#[derive(Debug)]
struct Node {
    key: StoredKey,
    /// Towards the head (newer entry), or NIL.
    newer: u32,
    /// Towards the tail (older entry), or NIL.
    older: u32,
}

// 32 bytes a node: with the index (5 bytes a bucket) and the JS value slot, 1,000,000
// small entries cost about 52 MB. The SIEVE visited bits live in a bitset, LFU buckets,
// insertion times and entries' own TTLs in side vectors allocated only under LFU, TTL, or
// once an entry gets a TTL of its own.
#[cfg(target_pointer_width = "64")]
const _: () = assert!(std::mem::size_of::<Node>() == 32);

/// Longest key stored inside the node; longer keys get a heap allocation of their own.
pub const INLINE_KEY: usize = 22;

/// Key bytes: inline up to [`INLINE_KEY`] bytes (most keys: a few numbers or a short
/// string), else boxed.
#[derive(Debug)]
enum StoredKey {
    Inline { len: u8, bytes: [u8; INLINE_KEY] },
    Heap(Box<[u8]>),
}

/// The 8 bytes of `s` from `at`, as a word.
#[inline(always)]
fn word(s: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&s[at..at + 8]);
    u64::from_ne_bytes(w)
}

/// The 4 bytes of `s` from `at`, as a word.
#[inline(always)]
fn half_word(s: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&s[at..at + 4]);
    u32::from_ne_bytes(w)
}

/// Copies `src` (at most [`INLINE_KEY`] bytes) to the front of `dst` in a few moves of fixed
/// size (two that overlap cover every length of a range), where a copy of a variable length
/// calls `memcpy`: a miss copies its key twice.
#[inline(always)]
fn copy_short(dst: &mut [u8; INLINE_KEY], src: &[u8]) {
    let n = src.len();
    debug_assert!(n <= INLINE_KEY);
    if n >= 16 {
        dst[..16].copy_from_slice(&src[..16]);
        dst[n - 8..n].copy_from_slice(&src[n - 8..]);
    } else if n >= 8 {
        dst[..8].copy_from_slice(&src[..8]);
        dst[n - 8..n].copy_from_slice(&src[n - 8..]);
    } else if n >= 4 {
        dst[..4].copy_from_slice(&src[..4]);
        dst[n - 4..n].copy_from_slice(&src[n - 4..]);
    } else {
        dst[..n].copy_from_slice(src);
    }
}

/// Whether `a` and `b`, of one length of at most [`INLINE_KEY`] bytes, hold the same bytes:
/// compared by words (two that overlap cover every length of a range), where a compare of a
/// variable length calls `memcmp`: every hit compares its key once.
#[inline(always)]
fn eq_short(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    debug_assert!(n == b.len() && n <= INLINE_KEY);
    if n >= 16 {
        word(a, 0) == word(b, 0) && word(a, 8) == word(b, 8) && word(a, n - 8) == word(b, n - 8)
    } else if n >= 8 {
        word(a, 0) == word(b, 0) && word(a, n - 8) == word(b, n - 8)
    } else if n >= 4 {
        half_word(a, 0) == half_word(b, 0) && half_word(a, n - 4) == half_word(b, n - 4)
    } else {
        a == b
    }
}

/// Whether the `len` bytes kept inline in `bytes` are those of `key`.
#[inline(always)]
fn inline_matches(len: u8, bytes: &[u8; INLINE_KEY], key: &[u8]) -> bool {
    usize::from(len) == key.len() && eq_short(&bytes[..key.len()], key)
}

impl StoredKey {
    fn new(key: &[u8]) -> StoredKey {
        if key.len() <= INLINE_KEY {
            let mut bytes = [0u8; INLINE_KEY];
            copy_short(&mut bytes, key);
            StoredKey::Inline {
                len: key.len() as u8,
                bytes,
            }
        } else {
            StoredKey::Heap(key.into())
        }
    }

    /// Whether these are the bytes of `key`.
    #[inline]
    fn matches(&self, key: &[u8]) -> bool {
        match self {
            StoredKey::Inline { len, bytes } => inline_matches(*len, bytes, key),
            StoredKey::Heap(b) => **b == *key,
        }
    }

    #[inline]
    fn as_bytes(&self) -> &[u8] {
        match self {
            StoredKey::Inline { len, bytes } => &bytes[..*len as usize],
            StoredKey::Heap(b) => b,
        }
    }

    const EMPTY: StoredKey = StoredKey::Inline {
        len: 0,
        bytes: [0; INLINE_KEY],
    };
}

/// An LFU frequency bucket: the entries hit `count` times (the insertion included), a run
/// of the queue from `newest` (towards the head) to `oldest` (towards the tail).
#[derive(Clone, Copy, Debug)]
struct Bucket {
    count: u64,
    newest: u32,
    oldest: u32,
}

/// The LFU side structure: a slab of buckets with a free list. It stays empty (and
/// allocates nothing) under the other policies.
#[derive(Debug, Default)]
struct Buckets {
    slab: Vec<Bucket>,
    free: Vec<u32>,
}

impl Buckets {
    fn alloc(&mut self, count: u64, slot: u32) -> u32 {
        let bucket = Bucket {
            count,
            newest: slot,
            oldest: slot,
        };
        match self.free.pop() {
            Some(b) => {
                self.slab[b as usize] = bucket;
                b
            }
            None => {
                self.slab.push(bucket);
                (self.slab.len() - 1) as u32
            }
        }
    }

    fn clear(&mut self) {
        self.slab.clear();
        self.free.clear();
    }
}

/// The state of the policies made of several queues; `None` for the others.
#[derive(Debug)]
enum Ext {
    None,
    S3(Box<S3Fifo>),
    Tiny(Box<WTinyLfu>),
    Arc(Box<Arc>),
}

/// Key index with SIEVE (or LRU/MRU/FIFO/LFU/S3-FIFO/W-TinyLFU/ARC) eviction, optional TTL (the
/// store's, or an entry's own) and a stale window.
///
/// Time is given by the caller on each call (see the module docs); an entry of TTL `ttl`
/// is stale when `now - inserted_at >= ttl`, gone when `now - inserted_at >= ttl + stale`.
#[derive(Debug)]
pub struct SieveStore {
    table: HashTable<u32>,
    nodes: Vec<Node>,
    /// Insertion time in ms (caller's clock) by slot; kept only while `expiring`, and
    /// only meaningful for entries whose TTL is finite.
    times: Vec<f64>,
    /// The TTL of each slot's entry (its own, else the store's; infinite: never), once an
    /// entry was given a TTL of its own; empty before (every entry has the store's).
    ttls: Vec<f64>,
    /// Whether any entry may expire: the store has a TTL, or `ttls` is in use.
    expiring: bool,
    /// SIEVE visited bit by slot, 64 to a word.
    visited_bits: Vec<u64>,
    /// LFU only: the frequency bucket of each slot (NIL when none); empty otherwise.
    bucket_of: Vec<u32>,
    free: Vec<u32>,
    head: u32,
    tail: u32,
    hand: u32,
    len: usize,
    capacity: usize,
    ttl_ms: Option<f64>,
    /// Stale window in ms after an entry's TTL (0: none).
    stale_ms: f64,
    policy: Policy,
    lfu: Buckets,
    ext: Ext,
    stats: Stats,
    state: ahash::RandomState,
    /// The key of the last lookup that found it absent, with its hash: see [`LastMiss`].
    last_miss: LastMiss,
}

/// The last key that a lookup found absent (up to [`INLINE_KEY`] bytes), and its hash. A
/// cached call that misses stores its result next, so the insert finds its key here and
/// skips hashing it and probing the index again. A key found absent stays absent until it is
/// inserted, whatever else the store does meanwhile (other inserts, removals, evictions,
/// expiries, a clear), and inserting it consumes the record: no other event makes it stale.
#[derive(Debug)]
struct LastMiss {
    /// Its length, or [`LastMiss::NONE`].
    len: u8,
    bytes: [u8; INLINE_KEY],
    hash: u64,
}

impl LastMiss {
    const NONE: u8 = u8::MAX;

    const EMPTY: LastMiss = LastMiss {
        len: LastMiss::NONE,
        bytes: [0; INLINE_KEY],
        hash: 0,
    };

    /// Records `key`, of hash `hash`, as absent (a longer key than [`INLINE_KEY`]: nothing).
    #[inline]
    fn record(&mut self, key: &[u8], hash: u64) {
        if key.len() <= INLINE_KEY {
            copy_short(&mut self.bytes, key);
            self.len = key.len() as u8;
            self.hash = hash;
        }
    }

    /// The hash of `key` when it is the key recorded, which is then forgotten (it is about
    /// to be inserted).
    #[inline]
    fn take(&mut self, key: &[u8]) -> Option<u64> {
        // `NONE` is a length too (255): a key of 255 bytes must not be compared with it.
        if self.len != LastMiss::NONE && inline_matches(self.len, &self.bytes, key) {
            self.len = LastMiss::NONE;
            Some(self.hash)
        } else {
            None
        }
    }
}

impl SieveStore {
    /// Creates a store for at most `capacity` entries (at least 1, at most [`MAX_SLOTS`];
    /// larger values are clamped), with entries expiring `ttl_ms` ms after insertion.
    pub fn new(capacity: usize, ttl_ms: Option<f64>, policy: Policy) -> SieveStore {
        SieveStore::with_stale(capacity, ttl_ms, policy, 0.0)
    }

    /// [`SieveStore::new`] with a stale window of `stale_ms` ms after each entry's TTL
    /// (0, negative or not finite: none).
    pub fn with_stale(
        capacity: usize,
        ttl_ms: Option<f64>,
        policy: Policy,
        stale_ms: f64,
    ) -> SieveStore {
        let capacity = capacity.clamp(1, MAX_SLOTS);
        let ttl_ms = ttl_ms.filter(|t| t.is_finite() && *t > 0.0);
        let stale_ms = if stale_ms.is_finite() && stale_ms > 0.0 {
            stale_ms
        } else {
            0.0
        };
        SieveStore {
            table: HashTable::new(),
            nodes: Vec::new(),
            times: Vec::new(),
            ttls: Vec::new(),
            expiring: ttl_ms.is_some(),
            visited_bits: Vec::new(),
            bucket_of: Vec::new(),
            free: Vec::new(),
            head: NIL,
            tail: NIL,
            hand: NIL,
            len: 0,
            capacity,
            ttl_ms,
            stale_ms,
            policy,
            lfu: Buckets::default(),
            ext: match policy {
                Policy::S3Fifo => Ext::S3(Box::new(S3Fifo::new(capacity))),
                Policy::WTinyLfu => Ext::Tiny(Box::new(WTinyLfu::new(capacity))),
                Policy::Arc => Ext::Arc(Box::new(Arc::new(capacity))),
                _ => Ext::None,
            },
            stats: Stats::default(),
            state: fixed_state(),
            last_miss: LastMiss::EMPTY,
        }
    }

    /// Number of live entries.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the store holds no entry.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Most entries kept.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Counters since creation or the last clear.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let nodes = &self.nodes;
        self.table
            .find(hash, |&slot| nodes[slot as usize].key.matches(key))
            .copied()
    }

    /// The hash of the key at `slot` (recomputed: nodes do not keep it, to stay small;
    /// only evictions and index growth need it).
    fn slot_hash(&self, slot: u32) -> u64 {
        hash_bytes(&self.state, self.nodes[slot as usize].key.as_bytes())
    }

    /// The TTL of the entry at `slot` (infinite: never expires).
    #[inline]
    fn entry_ttl(&self, slot: u32) -> f64 {
        match self.ttls.get(slot as usize) {
            Some(&ttl) => ttl,
            None => self.ttl_ms.unwrap_or(f64::INFINITY),
        }
    }

    /// Where the entry at `slot` stands at `now` (`NaN`: the clock, read only when the
    /// entry has a TTL).
    #[inline]
    fn age(&self, slot: u32, now: f64) -> Age {
        if !self.expiring {
            return Age::Fresh;
        }
        let ttl = self.entry_ttl(slot);
        if ttl == f64::INFINITY {
            return Age::Fresh;
        }
        let age = resolve(now) - self.times[slot as usize];
        if age < ttl {
            Age::Fresh
        } else if age < ttl + self.stale_ms {
            Age::Stale
        } else {
            Age::Gone
        }
    }

    #[inline]
    fn visited(&self, slot: u32) -> bool {
        self.visited_bits
            .get(slot as usize >> 6)
            .is_some_and(|w| (w >> (slot & 63)) & 1 == 1)
    }

    #[inline]
    fn set_visited(&mut self, slot: u32, on: bool) {
        let i = slot as usize >> 6;
        if i >= self.visited_bits.len() {
            if !on {
                return;
            }
            self.visited_bits.resize(i + 1, 0);
        }
        let mask = 1u64 << (slot & 63);
        if on {
            self.visited_bits[i] |= mask;
        } else {
            self.visited_bits[i] &= !mask;
        }
    }

    /// LFU: the bucket of `slot` (NIL when none).
    #[inline]
    fn bucket(&self, slot: u32) -> u32 {
        self.bucket_of.get(slot as usize).copied().unwrap_or(NIL)
    }

    fn set_bucket(&mut self, slot: u32, b: u32) {
        let i = slot as usize;
        if i >= self.bucket_of.len() {
            self.bucket_of.resize(i + 1, NIL);
        }
        self.bucket_of[i] = b;
    }

    /// Records the insertion of the entry at `slot` at `now`, with its own TTL `own_ttl`
    /// (`None`: the store's). The first own TTL starts the `ttls` vector; the clock is read
    /// (`now` `NaN`) only for an entry whose TTL is finite.
    #[inline]
    fn stamp(&mut self, slot: u32, now: f64, own_ttl: Option<f64>) {
        // A store without TTLs (no entry has one either) records nothing.
        if !self.expiring && own_ttl.is_none() {
            return;
        }
        self.stamp_expiring(slot, now, own_ttl);
    }

    /// [`SieveStore::stamp`] for a store whose entries may expire.
    fn stamp_expiring(&mut self, slot: u32, now: f64, own_ttl: Option<f64>) {
        let i = slot as usize;
        let store_ttl = self.ttl_ms.unwrap_or(f64::INFINITY);
        if own_ttl.is_some() && self.ttls.is_empty() {
            self.ttls = vec![store_ttl; self.nodes.len()];
            self.expiring = true;
        }
        if !self.expiring {
            return;
        }
        if !self.ttls.is_empty() {
            if i >= self.ttls.len() {
                self.ttls.resize(i + 1, store_ttl);
            }
            self.ttls[i] = own_ttl.unwrap_or(store_ttl);
        }
        if i >= self.times.len() {
            self.times.resize(i + 1, 0.0);
        }
        self.times[i] = if self.entry_ttl(slot) == f64::INFINITY {
            0.0
        } else {
            resolve(now)
        };
    }

    /// Looks `key` up at time `now` (ms, or `NaN`: the clock), counting a hit or a miss. A
    /// hit marks the entry visited (SIEVE), moves it to the head (LRU/MRU) or up one
    /// frequency bucket (LFU). A stale entry is a miss and stays, unmarked; a gone one is
    /// removed.
    pub fn get(&mut self, key: &[u8], now: f64) -> Lookup {
        let hash = hash_bytes(&self.state, key);
        let Some(slot) = self.find(hash, key) else {
            self.stats.misses += 1;
            self.last_miss.record(key, hash);
            return Lookup::Miss;
        };
        match self.age(slot, now) {
            Age::Fresh => {}
            Age::Stale => {
                self.stats.misses += 1;
                return Lookup::Stale(slot);
            }
            Age::Gone => {
                self.remove_slot(slot);
                self.stats.misses += 1;
                self.stats.expirations += 1;
                self.last_miss.record(key, hash);
                return Lookup::Expired(slot);
            }
        }
        self.stats.hits += 1;
        match self.policy {
            Policy::Sieve => self.set_visited(slot, true),
            Policy::Lru | Policy::Mru => {
                self.unlink(slot);
                self.push_head(slot);
            }
            Policy::Fifo => {}
            Policy::Lfu => self.lfu_hit(slot),
            Policy::S3Fifo | Policy::WTinyLfu | Policy::Arc => self.ext_hit(slot),
        }
        Lookup::Hit(slot)
    }

    /// Looks `key` up without counting, marking or expiring anything: `Some(slot)` when
    /// present and fresh at `now`.
    pub fn peek(&self, key: &[u8], now: f64) -> Option<u32> {
        let hash = hash_bytes(&self.state, key);
        self.find(hash, key)
            .filter(|&slot| self.age(slot, now) == Age::Fresh)
    }

    /// Like [`SieveStore::peek`], but also finds a stale entry: `Some(slot)` when present
    /// and fresh or stale at `now`.
    pub fn peek_stale(&self, key: &[u8], now: f64) -> Option<u32> {
        let hash = hash_bytes(&self.state, key);
        self.find(hash, key)
            .filter(|&slot| self.age(slot, now) != Age::Gone)
    }

    /// [`SieveStore::insert_with_ttl`] with the store's TTL.
    pub fn insert(&mut self, key: &[u8], now: f64) -> Inserted {
        self.insert_with_ttl(key, now, None)
    }

    /// Inserts `key` at time `now` (ms, or `NaN`: the clock) with its own TTL `ttl_ms`
    /// (positive, infinite for never; `None`: the store's) and returns its slot. A key
    /// already present keeps its slot, its place (and LFU count) and gets a new insertion
    /// time and TTL. When the store is full, one entry is evicted by the policy and its
    /// slot is reused. A new entry goes to the head, or under LFU to the newest end of the
    /// bucket of count 1.
    pub fn insert_with_ttl(&mut self, key: &[u8], now: f64, ttl_ms: Option<f64>) -> Inserted {
        debug_assert!(ttl_ms.is_none_or(|t| t > 0.0), "own TTL must be positive");
        // The key that the last lookup found absent is still absent: no probe.
        let hash = match self.last_miss.take(key) {
            Some(hash) => hash,
            None => {
                let hash = hash_bytes(&self.state, key);
                if let Some(slot) = self.find(hash, key) {
                    self.stamp(slot, now, ttl_ms);
                    return Inserted {
                        slot,
                        evicted: false,
                    };
                }
                hash
            }
        };
        let sketch_hash = match &mut self.ext {
            Ext::None => 0,
            Ext::S3(s3) => {
                s3.arrive(&self.state, key);
                0
            }
            Ext::Tiny(tiny) => {
                let h = sketch::key_hash(key);
                tiny.arrive(h);
                h
            }
            Ext::Arc(arc) => {
                arc.arrive(hash, key);
                0
            }
        };
        let mut evicted = false;
        if self.len >= self.capacity {
            self.evict();
            evicted = true;
        }
        let node = Node {
            key: StoredKey::new(key),
            newer: NIL,
            older: NIL,
        };
        let slot = match self.free.pop() {
            Some(slot) => {
                self.nodes[slot as usize] = node;
                slot
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        self.stamp(slot, now, ttl_ms);
        self.set_visited(slot, false);
        let (nodes, state) = (&self.nodes, &self.state);
        self.table.insert_unique(hash, slot, |&s| {
            hash_bytes(state, nodes[s as usize].key.as_bytes())
        });
        match &mut self.ext {
            Ext::S3(s3) => s3.add(slot),
            Ext::Tiny(tiny) => tiny.add(slot, sketch_hash),
            Ext::Arc(arc) => arc.add(slot),
            Ext::None => {
                if self.policy == Policy::Lfu {
                    self.lfu_push(slot);
                } else {
                    self.push_head(slot);
                }
            }
        }
        self.len += 1;
        Inserted { slot, evicted }
    }

    /// Removes `key`; returns its former slot.
    pub fn remove(&mut self, key: &[u8]) -> Option<u32> {
        let hash = hash_bytes(&self.state, key);
        let slot = self.find(hash, key)?;
        self.remove_slot(slot);
        Some(slot)
    }

    /// Removes every entry and resets the counters.
    pub fn clear(&mut self) {
        self.table.clear();
        self.nodes.clear();
        self.times.clear();
        self.ttls = Vec::new();
        self.expiring = self.ttl_ms.is_some();
        self.visited_bits.clear();
        self.bucket_of.clear();
        self.free.clear();
        self.head = NIL;
        self.tail = NIL;
        self.hand = NIL;
        self.len = 0;
        self.lfu.clear();
        match &mut self.ext {
            Ext::None => {}
            Ext::S3(s3) => s3.clear(),
            Ext::Tiny(tiny) => tiny.clear(),
            Ext::Arc(arc) => arc.clear(),
        }
        self.stats = Stats::default();
    }

    /// Evicts one entry by the policy; returns its (now free) slot.
    pub fn evict(&mut self) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let victim = match &mut self.ext {
            Ext::S3(s3) => {
                let victim = s3.victim();
                s3.evicted(&self.state, self.nodes[victim as usize].key.as_bytes());
                victim
            }
            Ext::Tiny(tiny) => tiny.victim(),
            Ext::Arc(arc) => {
                let victim = arc.victim();
                let key = self.nodes[victim as usize].key.as_bytes();
                arc.evicted(hash_bytes(&self.state, key), key);
                victim
            }
            Ext::None => match self.policy {
                Policy::Sieve => self.sieve_victim(),
                Policy::Mru => self.head,
                _ => self.tail,
            },
        };
        self.remove_slot(victim);
        self.stats.evictions += 1;
        Some(victim)
    }

    /// The SIEVE hand scan: from the hand (or the tail) towards the head, clearing
    /// visited bits, wrapping to the tail; stops at the first unvisited entry.
    fn sieve_victim(&mut self) -> u32 {
        let mut slot = if self.hand == NIL {
            self.tail
        } else {
            self.hand
        };
        while self.visited(slot) {
            self.set_visited(slot, false);
            let newer = self.nodes[slot as usize].newer;
            slot = if newer == NIL { self.tail } else { newer };
        }
        // The hand stays where the scan stopped: just past the victim, towards the head.
        self.hand = self.nodes[slot as usize].newer;
        slot
    }

    fn remove_slot(&mut self, slot: u32) {
        let hash = self.slot_hash(slot);
        if let Ok(entry) = self.table.find_entry(hash, |&s| s == slot) {
            entry.remove();
        }
        match &mut self.ext {
            Ext::S3(s3) => s3.remove(slot),
            Ext::Tiny(tiny) => tiny.remove(slot),
            Ext::Arc(arc) => arc.remove(slot),
            Ext::None => {
                if self.hand == slot {
                    self.hand = self.nodes[slot as usize].newer;
                }
                if self.policy == Policy::Lfu {
                    self.lfu_detach(slot);
                }
                self.unlink(slot);
            }
        }
        self.nodes[slot as usize].key = StoredKey::EMPTY;
        self.free.push(slot);
        self.len -= 1;
    }

    /// S3-FIFO, W-TinyLFU, ARC: tells the policy of a hit.
    #[inline(never)]
    fn ext_hit(&mut self, slot: u32) {
        match &mut self.ext {
            Ext::S3(s3) => s3.hit(slot),
            Ext::Tiny(tiny) => tiny.hit(slot),
            Ext::Arc(arc) => arc.hit(slot),
            Ext::None => {}
        }
    }

    fn unlink(&mut self, slot: u32) {
        let (newer, older) = {
            let n = &self.nodes[slot as usize];
            (n.newer, n.older)
        };
        if newer == NIL {
            self.head = older;
        } else {
            self.nodes[newer as usize].older = older;
        }
        if older == NIL {
            self.tail = newer;
        } else {
            self.nodes[older as usize].newer = newer;
        }
        let n = &mut self.nodes[slot as usize];
        n.newer = NIL;
        n.older = NIL;
    }

    fn push_head(&mut self, slot: u32) {
        let old_head = self.head;
        {
            let n = &mut self.nodes[slot as usize];
            n.newer = NIL;
            n.older = old_head;
        }
        if old_head == NIL {
            self.tail = slot;
        } else {
            self.nodes[old_head as usize].newer = slot;
        }
        self.head = slot;
    }

    /// LFU: puts the new entry `slot` (count 1) at the newest end of the bucket of count
    /// 1, which, when it exists, is the lowest bucket and so holds the tail; else at the
    /// tail, in a new bucket.
    fn lfu_push(&mut self, slot: u32) {
        if self.tail != NIL {
            let b = self.bucket(self.tail);
            let bucket = &mut self.lfu.slab[b as usize];
            if bucket.count == 1 {
                let below = bucket.newest;
                bucket.newest = slot;
                self.set_bucket(slot, b);
                self.link_newer_than(slot, below);
                return;
            }
        }
        self.push_tail(slot);
        let b = self.lfu.alloc(1, slot);
        self.set_bucket(slot, b);
    }

    /// LFU: moves `slot` from its bucket (count `f`) to the newest end of the bucket of
    /// count `f + 1`, which, when it exists, is the next run towards the head; else a new
    /// bucket just above the old one (or the old one itself, when `slot` was alone in it).
    fn lfu_hit(&mut self, slot: u32) {
        let b = self.bucket(slot);
        let Bucket {
            count,
            newest,
            oldest,
        } = self.lfu.slab[b as usize];
        let above = self.nodes[newest as usize].newer;
        let next = if above == NIL {
            NIL
        } else {
            self.bucket(above)
        };
        if next != NIL && self.lfu.slab[next as usize].count == count + 1 {
            self.lfu_detach(slot);
            let below = self.lfu.slab[next as usize].newest;
            self.lfu.slab[next as usize].newest = slot;
            self.set_bucket(slot, next);
            self.move_newer_than(slot, below);
        } else if newest == slot && oldest == slot {
            // Alone in its bucket, with no bucket of count f + 1: the bucket moves up.
            self.lfu.slab[b as usize].count = count + 1;
        } else {
            self.lfu_detach(slot);
            let below = self.lfu.slab[b as usize].newest;
            let nb = self.lfu.alloc(count + 1, slot);
            self.set_bucket(slot, nb);
            self.move_newer_than(slot, below);
        }
    }

    /// LFU: takes `slot` out of its bucket (not off the queue), freeing the bucket when it
    /// empties. Runs before the queue links of `slot` change.
    fn lfu_detach(&mut self, slot: u32) {
        let b = self.bucket(slot);
        let (newer, older) = {
            let n = &self.nodes[slot as usize];
            (n.newer, n.older)
        };
        self.set_bucket(slot, NIL);
        let bucket = &mut self.lfu.slab[b as usize];
        if bucket.newest == slot && bucket.oldest == slot {
            self.lfu.free.push(b);
        } else if bucket.newest == slot {
            bucket.newest = older;
        } else if bucket.oldest == slot {
            bucket.oldest = newer;
        }
    }

    /// Moves the queued `slot` to just towards the head from `below` (another queued slot).
    fn move_newer_than(&mut self, slot: u32, below: u32) {
        if self.nodes[slot as usize].older != below {
            self.unlink(slot);
            self.link_newer_than(slot, below);
        }
    }

    /// Links the unlinked `slot` just towards the head from the queued `below`.
    fn link_newer_than(&mut self, slot: u32, below: u32) {
        let above = self.nodes[below as usize].newer;
        {
            let n = &mut self.nodes[slot as usize];
            n.newer = above;
            n.older = below;
        }
        self.nodes[below as usize].newer = slot;
        if above == NIL {
            self.head = slot;
        } else {
            self.nodes[above as usize].older = slot;
        }
    }

    /// Links the unlinked `slot` at the tail.
    fn push_tail(&mut self, slot: u32) {
        let old_tail = self.tail;
        {
            let n = &mut self.nodes[slot as usize];
            n.newer = old_tail;
            n.older = NIL;
        }
        if old_tail == NIL {
            self.head = slot;
        } else {
            self.nodes[old_tail as usize].older = slot;
        }
        self.tail = slot;
    }

    /// Keys from the head (newest) to the tail (oldest), with their visited bits. Under
    /// LFU the queue runs from the highest count to the lowest and, within a count, from
    /// the newest in the bucket to the oldest: the tail is the next victim.
    pub fn order(&self) -> Vec<(Vec<u8>, bool)> {
        let key = |slot: u32| self.nodes[slot as usize].key.as_bytes().to_vec();
        match &self.ext {
            Ext::S3(s3) => return s3.order().into_iter().map(|s| (key(s), false)).collect(),
            Ext::Tiny(t) => return t.order().into_iter().map(|s| (key(s), false)).collect(),
            Ext::Arc(a) => return a.order().into_iter().map(|s| (key(s), false)).collect(),
            Ext::None => {}
        }
        let mut out = Vec::with_capacity(self.len);
        let mut slot = self.head;
        while slot != NIL {
            let n = &self.nodes[slot as usize];
            out.push((n.key.as_bytes().to_vec(), self.visited(slot)));
            slot = n.older;
        }
        out
    }

    /// Checks the invariants: the queue links both ways and holds exactly the indexed
    /// entries, the hand is on the queue, free and live slots partition the slab; under
    /// LFU, the buckets are runs of the queue with counts decreasing strictly towards the
    /// tail, and free and live buckets partition the bucket slab.
    /// Panics with a message on the first violation (tests and fuzzing only).
    pub fn validate(&self) {
        let live = match &self.ext {
            Ext::S3(s3) => Some(s3.validate()),
            Ext::Tiny(tiny) => Some(tiny.validate()),
            Ext::Arc(arc) => Some(arc.validate()),
            Ext::None => None,
        };
        if let Some(live) = live {
            self.validate_ext(&live);
            return;
        }
        let mut count = 0usize;
        let mut prev = NIL;
        let mut slot = self.head;
        let mut hand_seen = self.hand == NIL;
        while slot != NIL {
            let n = &self.nodes[slot as usize];
            assert_eq!(n.newer, prev, "broken newer link at slot {slot}");
            assert_eq!(
                self.find(hash_bytes(&self.state, n.key.as_bytes()), n.key.as_bytes()),
                Some(slot),
                "slot {slot} on the queue but not indexed"
            );
            hand_seen |= slot == self.hand;
            prev = slot;
            slot = n.older;
            count += 1;
            assert!(count <= self.len, "queue longer than len");
        }
        assert_eq!(self.tail, prev, "tail is not the last entry");
        assert_eq!(count, self.len, "queue length differs from len");
        assert_eq!(self.table.len(), self.len, "index size differs from len");
        assert!(hand_seen, "hand is not on the queue");
        assert!(self.len <= self.capacity, "more entries than capacity");
        assert_eq!(self.len + self.free.len(), self.nodes.len(), "slab leak");
        if self.policy != Policy::Sieve {
            assert_eq!(self.hand, NIL, "hand moved outside SIEVE");
        }
        assert_eq!(
            self.expiring,
            self.ttl_ms.is_some() || !self.ttls.is_empty(),
            "expiring flag out of step"
        );
        let mut slot = self.head;
        while slot != NIL {
            let ttl = self.entry_ttl(slot);
            assert!(ttl > 0.0, "slot {slot} has TTL {ttl}");
            if ttl.is_finite() {
                assert!(
                    (slot as usize) < self.times.len(),
                    "slot {slot} has no time"
                );
            }
            slot = self.nodes[slot as usize].older;
        }
        self.validate_buckets();
    }

    /// S3-FIFO, W-TinyLFU, ARC: the policy's queues hold exactly the indexed entries.
    fn validate_ext(&self, live: &[u32]) {
        for &slot in live {
            let key = self.nodes[slot as usize].key.as_bytes();
            assert_eq!(
                self.find(hash_bytes(&self.state, key), key),
                Some(slot),
                "slot {slot} on a queue but not indexed"
            );
        }
        assert_eq!(
            live.len(),
            self.len,
            "queues hold {} of {}",
            live.len(),
            self.len
        );
        assert_eq!(self.table.len(), self.len, "index size differs from len");
        assert_eq!(
            (self.head, self.tail, self.hand),
            (NIL, NIL, NIL),
            "own queue used"
        );
        assert!(self.len <= self.capacity, "more entries than capacity");
        assert_eq!(self.len + self.free.len(), self.nodes.len(), "slab leak");
        assert_eq!(
            self.expiring,
            self.ttl_ms.is_some() || !self.ttls.is_empty(),
            "expiring flag out of step"
        );
        for &slot in live {
            let ttl = self.entry_ttl(slot);
            assert!(ttl > 0.0, "slot {slot} has TTL {ttl}");
            assert!(
                ttl.is_infinite() || (slot as usize) < self.times.len(),
                "slot {slot} has no time"
            );
        }
        self.validate_buckets();
    }

    fn validate_buckets(&self) {
        let slab = &self.lfu.slab;
        if self.policy != Policy::Lfu {
            assert!(slab.is_empty(), "buckets outside LFU");
            assert!(self.bucket_of.is_empty(), "bucket map outside LFU");
            return;
        }
        let mut live = vec![false; slab.len()];
        let mut runs = 0usize;
        let mut last_count = u64::MAX;
        let mut run = NIL;
        let mut prev = NIL;
        let mut slot = self.head;
        while slot != NIL {
            let n = &self.nodes[slot as usize];
            let b = self.bucket(slot);
            assert!((b as usize) < slab.len(), "slot {slot} in no bucket");
            if b != run {
                let bucket = &slab[b as usize];
                assert_eq!(
                    bucket.newest, slot,
                    "bucket {b} does not start at its newest"
                );
                assert!(
                    bucket.count >= 1 && bucket.count < last_count,
                    "bucket counts not decreasing towards the tail at slot {slot}"
                );
                if run != NIL {
                    assert_eq!(slab[run as usize].oldest, prev, "bucket {run} ends early");
                }
                assert!(!live[b as usize], "bucket {b} is not one run");
                live[b as usize] = true;
                last_count = bucket.count;
                runs += 1;
                run = b;
            }
            prev = slot;
            slot = n.older;
        }
        if run != NIL {
            assert_eq!(slab[run as usize].oldest, prev, "last bucket ends early");
        }
        for &b in &self.lfu.free {
            assert!(!live[b as usize], "free bucket {b} is live");
            live[b as usize] = true;
        }
        assert_eq!(runs + self.lfu.free.len(), slab.len(), "bucket slab leak");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(store: &SieveStore) -> Vec<u8> {
        store.order().into_iter().map(|(k, _)| k[0]).collect()
    }

    fn get(store: &mut SieveStore, k: u8) -> Lookup {
        let r = store.get(&[k], 0.0);
        store.validate();
        r
    }

    fn put(store: &mut SieveStore, k: u8) -> Inserted {
        let r = store.insert(&[k], 0.0);
        store.validate();
        r
    }

    #[test]
    fn evicts_unvisited_oldest_first() {
        let mut s = SieveStore::new(3, None, Policy::Sieve);
        for k in [1, 2, 3] {
            put(&mut s, k);
        }
        put(&mut s, 4); // 1 is the oldest and unvisited
        assert_eq!(keys(&s), vec![4, 3, 2]);
        assert_eq!(s.stats().evictions, 1);
    }

    #[test]
    fn visited_entry_gets_a_second_chance() {
        let mut s = SieveStore::new(3, None, Policy::Sieve);
        for k in [1, 2, 3] {
            put(&mut s, k);
        }
        assert!(matches!(get(&mut s, 1), Lookup::Hit(_)));
        put(&mut s, 4); // hand at 1: visited -> cleared, moves to 2, evicts 2
        assert_eq!(keys(&s), vec![4, 3, 1]);
        assert_eq!(s.order()[2], (vec![1], false), "the bit of 1 was cleared");
    }

    #[test]
    fn hand_resumes_where_it_stopped() {
        // The example of the SIEVE paper's figure, in small: the hand keeps its place.
        let mut s = SieveStore::new(4, None, Policy::Sieve);
        for k in [1, 2, 3, 4] {
            put(&mut s, k);
        }
        get(&mut s, 1);
        get(&mut s, 3);
        put(&mut s, 5); // clears 1, evicts 2; hand now at 3
        assert_eq!(keys(&s), vec![5, 4, 3, 1]);
        get(&mut s, 1); // 1 visited again
        put(&mut s, 6); // hand at 3: visited -> cleared; 4 unvisited -> evicted
        assert_eq!(keys(&s), vec![6, 5, 3, 1]);
        put(&mut s, 7); // hand at 5 (newer than 4): unvisited -> evicted
        assert_eq!(keys(&s), vec![7, 6, 3, 1]);
    }

    #[test]
    fn hand_wraps_to_the_tail() {
        let mut s = SieveStore::new(2, None, Policy::Sieve);
        put(&mut s, 1);
        put(&mut s, 2);
        get(&mut s, 1);
        get(&mut s, 2);
        put(&mut s, 3); // both visited: full round, wraps, evicts 1
        assert_eq!(keys(&s), vec![3, 2]);
    }

    #[test]
    fn scan_resistance_keeps_hot_entries() {
        let mut s = SieveStore::new(4, None, Policy::Sieve);
        for k in [1, 2] {
            put(&mut s, k);
            get(&mut s, k);
        }
        for k in 10..40 {
            put(&mut s, k); // one-hit wonders
        }
        let order = keys(&s);
        assert!(order.contains(&1) && order.contains(&2), "{order:?}");
    }

    #[test]
    fn reinsert_keeps_slot_and_refreshes_time() {
        let mut s = SieveStore::new(2, Some(10.0), Policy::Sieve);
        let a = s.insert(b"a", 0.0);
        let b = s.insert(b"a", 5.0);
        assert_eq!(a.slot, b.slot);
        assert_eq!(s.len(), 1);
        assert_eq!(s.get(b"a", 14.0), Lookup::Hit(a.slot));
        assert_eq!(s.get(b"a", 15.0), Lookup::Expired(a.slot));
        s.validate();
    }

    #[test]
    fn ttl_expires_at_the_boundary_and_frees_the_slot() {
        let mut s = SieveStore::new(2, Some(100.0), Policy::Sieve);
        let ins = s.insert(b"k", 1000.0);
        assert_eq!(s.get(b"k", 1099.9), Lookup::Hit(ins.slot));
        assert_eq!(s.get(b"k", 1100.0), Lookup::Expired(ins.slot));
        assert_eq!(s.get(b"k", 1100.0), Lookup::Miss);
        assert_eq!(s.len(), 0);
        let st = s.stats();
        assert_eq!((st.hits, st.misses, st.expirations), (1, 2, 1));
        s.validate();
    }

    #[test]
    fn hits_do_not_extend_ttl() {
        let mut s = SieveStore::new(2, Some(10.0), Policy::Sieve);
        s.insert(b"k", 0.0);
        assert!(matches!(s.get(b"k", 9.0), Lookup::Hit(_)));
        assert!(matches!(s.get(b"k", 10.0), Lookup::Expired(_)));
    }

    /// `(get, peek, peek_stale)` of `key` at `now` on a fresh copy of the lookup state:
    /// `peek` and `peek_stale` first (they change nothing), then `get`.
    fn probe(s: &mut SieveStore, key: &[u8], now: f64) -> (Lookup, bool, bool) {
        let peek = s.peek(key, now).is_some();
        let peek_stale = s.peek_stale(key, now).is_some();
        let get = s.get(key, now);
        s.validate();
        (get, peek, peek_stale)
    }

    #[test]
    fn stale_window_boundaries() {
        // TTL 100, stale 50, inserted at 1000: fresh below 1100, stale below 1150.
        let mut s = SieveStore::with_stale(4, Some(100.0), Policy::Sieve, 50.0);
        let slot = s.insert(b"k", 1000.0).slot;
        assert_eq!(probe(&mut s, b"k", 1099.0), (Lookup::Hit(slot), true, true));
        assert_eq!(
            probe(&mut s, b"k", 1100.0),
            (Lookup::Stale(slot), false, true)
        );
        assert_eq!(
            probe(&mut s, b"k", 1149.0),
            (Lookup::Stale(slot), false, true)
        );
        assert_eq!(s.len(), 1, "a stale lookup keeps the entry");
        assert_eq!(
            probe(&mut s, b"k", 1150.0),
            (Lookup::Expired(slot), false, false)
        );
        assert_eq!(s.len(), 0);
        let st = s.stats();
        assert_eq!((st.hits, st.misses, st.expirations), (1, 3, 1));
    }

    #[test]
    fn without_a_stale_window_the_entry_is_gone_at_its_ttl() {
        let mut s = SieveStore::with_stale(4, Some(100.0), Policy::Sieve, 0.0);
        let slot = s.insert(b"k", 0.0).slot;
        assert_eq!(s.peek_stale(b"k", 99.0), Some(slot));
        assert_eq!(s.peek_stale(b"k", 100.0), None);
        assert_eq!(s.get(b"k", 100.0), Lookup::Expired(slot));
    }

    #[test]
    fn own_ttl_shorter_and_longer_than_the_stores() {
        let mut s = SieveStore::with_stale(8, Some(100.0), Policy::Sieve, 10.0);
        let short = s.insert_with_ttl(b"s", 0.0, Some(30.0)).slot;
        let long = s.insert_with_ttl(b"l", 0.0, Some(300.0)).slot;
        let never = s.insert_with_ttl(b"n", 0.0, Some(f64::INFINITY)).slot;
        let store = s.insert(b"d", 0.0).slot;
        s.validate();
        assert_eq!(probe(&mut s, b"s", 29.0), (Lookup::Hit(short), true, true));
        assert_eq!(
            probe(&mut s, b"s", 30.0),
            (Lookup::Stale(short), false, true)
        );
        assert_eq!(
            probe(&mut s, b"s", 39.0),
            (Lookup::Stale(short), false, true)
        );
        assert_eq!(
            probe(&mut s, b"s", 40.0),
            (Lookup::Expired(short), false, false)
        );
        assert_eq!(probe(&mut s, b"d", 99.0), (Lookup::Hit(store), true, true));
        assert_eq!(
            probe(&mut s, b"d", 100.0),
            (Lookup::Stale(store), false, true)
        );
        assert_eq!(probe(&mut s, b"l", 299.0), (Lookup::Hit(long), true, true));
        assert_eq!(
            probe(&mut s, b"l", 300.0),
            (Lookup::Stale(long), false, true)
        );
        assert_eq!(
            probe(&mut s, b"l", 309.0),
            (Lookup::Stale(long), false, true)
        );
        assert_eq!(
            probe(&mut s, b"l", 310.0),
            (Lookup::Expired(long), false, false)
        );
        assert_eq!(
            probe(&mut s, b"d", 110.0),
            (Lookup::Expired(store), false, false)
        );
        assert_eq!(probe(&mut s, b"n", 1e15), (Lookup::Hit(never), true, true));
    }

    #[test]
    fn own_ttl_on_a_store_without_ttl() {
        let mut s = SieveStore::with_stale(8, None, Policy::Sieve, 5.0);
        let before = s.insert(b"a", 0.0).slot;
        assert!(s.ttls.is_empty() && s.times.is_empty() && !s.expiring);
        let own = s.insert_with_ttl(b"o", 10.0, Some(20.0)).slot;
        let after = s.insert(b"b", 10.0).slot;
        s.validate();
        assert_eq!(probe(&mut s, b"o", 29.0), (Lookup::Hit(own), true, true));
        assert_eq!(probe(&mut s, b"o", 30.0), (Lookup::Stale(own), false, true));
        assert_eq!(probe(&mut s, b"o", 34.0), (Lookup::Stale(own), false, true));
        assert_eq!(
            probe(&mut s, b"o", 35.0),
            (Lookup::Expired(own), false, false)
        );
        // The entries without a TTL of their own, before and after, never expire.
        assert_eq!(s.get(b"a", 1e15), Lookup::Hit(before));
        assert_eq!(s.get(b"b", 1e15), Lookup::Hit(after));
        s.clear();
        assert!(
            s.ttls.is_empty() && !s.expiring,
            "clear forgets the own TTLs"
        );
        s.validate();
    }

    #[test]
    fn replacing_an_entry_resets_its_ttl() {
        let mut s = SieveStore::new(4, Some(100.0), Policy::Sieve);
        let slot = s.insert_with_ttl(b"k", 0.0, Some(10.0)).slot;
        assert_eq!(s.insert(b"k", 5.0).slot, slot, "the store's TTL again");
        assert_eq!(s.get(b"k", 104.0), Lookup::Hit(slot));
        assert_eq!(s.insert_with_ttl(b"k", 200.0, Some(1000.0)).slot, slot);
        assert_eq!(s.get(b"k", 1199.0), Lookup::Hit(slot));
        assert_eq!(s.insert_with_ttl(b"k", 1200.0, Some(1.0)).slot, slot);
        assert_eq!(s.get(b"k", 1201.0), Lookup::Expired(slot));
        // On a store without TTL, a plain set makes the entry immortal again.
        let mut s = SieveStore::new(4, None, Policy::Sieve);
        s.insert_with_ttl(b"k", 0.0, Some(10.0));
        s.insert(b"k", 1.0);
        assert!(matches!(s.get(b"k", 1e15), Lookup::Hit(_)));
        s.validate();
    }

    #[test]
    fn a_freed_slot_does_not_keep_its_own_ttl() {
        let mut s = SieveStore::new(1, Some(100.0), Policy::Sieve);
        let a = s.insert_with_ttl(b"a", 0.0, Some(5.0)).slot;
        let b = s.insert(b"b", 0.0); // evicts a; its slot is reused
        assert_eq!((b.slot, b.evicted), (a, true));
        assert_eq!(s.get(b"b", 99.0), Lookup::Hit(a));
    }

    #[test]
    fn stale_entries_are_not_marked_and_are_evicted_like_any_other() {
        let mut s = SieveStore::with_stale(3, Some(10.0), Policy::Sieve, 100.0);
        for k in [1u8, 2, 3] {
            s.insert(&[k], 0.0);
        }
        assert!(matches!(s.get(&[1], 50.0), Lookup::Stale(_)));
        assert!(s.peek_stale(&[2], 50.0).is_some());
        assert_eq!(s.order()[2], (vec![1], false), "a stale get marks nothing");
        s.insert(&[4], 50.0); // evicts 1, stale and unvisited, the oldest
        assert_eq!(keys(&s), vec![4, 3, 2]);
        s.validate();
    }

    #[test]
    fn peek_stale_does_not_mark_visited() {
        let mut s = SieveStore::new(2, None, Policy::Sieve);
        put(&mut s, 1);
        put(&mut s, 2);
        assert!(s.peek_stale(&[1], 0.0).is_some());
        put(&mut s, 3); // 1 unvisited: evicted
        assert_eq!(keys(&s), vec![3, 2]);
        get(&mut s, 2);
        put(&mut s, 4); // 2 visited: a second chance; 3 goes
        assert_eq!(keys(&s), vec![4, 2]);
    }

    #[test]
    fn nan_reads_the_clock_only_for_entries_with_a_ttl() {
        let mut s = SieveStore::new(8, None, Policy::Sieve);
        let slot = s.insert(b"a", f64::NAN).slot;
        assert_eq!(s.get(b"a", f64::NAN), Lookup::Hit(slot));
        assert!(s.times.is_empty(), "no time kept without a TTL");
        let long = s.insert_with_ttl(b"l", f64::NAN, Some(3_600_000.0)).slot;
        let short = s.insert_with_ttl(b"s", f64::NAN, Some(1.0)).slot;
        let now = crate::clock::monotonic_ms();
        assert!(s.times[long as usize] > 0.0 && s.times[long as usize] <= now);
        std::thread::sleep(std::time::Duration::from_millis(30));
        assert_eq!(s.get(b"l", f64::NAN), Lookup::Hit(long));
        assert_eq!(s.get(b"s", f64::NAN), Lookup::Expired(short));
        assert_eq!(s.get(b"a", f64::NAN), Lookup::Hit(slot));
        s.validate();
    }

    #[test]
    fn remove_and_clear() {
        let mut s = SieveStore::new(3, None, Policy::Sieve);
        let i = s.insert(b"x", 0.0);
        s.insert(b"y", 0.0);
        assert_eq!(s.remove(b"x"), Some(i.slot));
        assert_eq!(s.remove(b"x"), None);
        s.validate();
        s.get(b"y", 0.0);
        s.clear();
        s.validate();
        assert_eq!(s.len(), 0);
        assert_eq!(s.stats(), Stats::default());
        assert_eq!(s.get(b"y", 0.0), Lookup::Miss);
    }

    #[test]
    fn removing_the_hand_entry_moves_the_hand() {
        let mut s = SieveStore::new(3, None, Policy::Sieve);
        for k in [1, 2, 3] {
            put(&mut s, k);
        }
        get(&mut s, 1);
        put(&mut s, 4); // evicts 2, hand at 3
        s.remove(&[3]);
        s.validate();
        put(&mut s, 5);
        put(&mut s, 6);
        s.validate();
        assert_eq!(s.len(), 3);
    }

    #[test]
    fn lru_mru_fifo_orders() {
        let run = |p: Policy| {
            let mut s = SieveStore::new(3, None, p);
            for k in [1, 2, 3] {
                put(&mut s, k);
            }
            get(&mut s, 1);
            put(&mut s, 4);
            let mut k = keys(&s);
            k.sort_unstable();
            k
        };
        assert_eq!(run(Policy::Lru), vec![1, 3, 4]);
        assert_eq!(run(Policy::Mru), vec![2, 3, 4]);
        assert_eq!(run(Policy::Fifo), vec![2, 3, 4]);
        assert_eq!(run(Policy::Sieve), vec![1, 3, 4]);
        assert_eq!(run(Policy::Lfu), vec![1, 3, 4]);
    }

    /// `(key, count)` from the head to the tail (LFU).
    fn counts(store: &SieveStore) -> Vec<(u8, u64)> {
        let mut out = Vec::new();
        let mut slot = store.head;
        while slot != NIL {
            let n = &store.nodes[slot as usize];
            out.push((
                n.key.as_bytes()[0],
                store.lfu.slab[store.bucket(slot) as usize].count,
            ));
            slot = n.older;
        }
        out
    }

    fn lfu(capacity: usize) -> SieveStore {
        SieveStore::new(capacity, None, Policy::Lfu)
    }

    #[test]
    fn lfu_evicts_the_least_frequently_used() {
        let mut s = lfu(3);
        for k in [1, 2, 3] {
            put(&mut s, k);
        }
        assert_eq!(counts(&s), vec![(3, 1), (2, 1), (1, 1)]);
        get(&mut s, 1);
        get(&mut s, 1);
        get(&mut s, 2);
        assert_eq!(counts(&s), vec![(1, 3), (2, 2), (3, 1)]);
        put(&mut s, 4); // 3 is the only entry of count 1
        assert_eq!(counts(&s), vec![(1, 3), (2, 2), (4, 1)]);
        put(&mut s, 5); // the new entry 4 (count 1) goes first
        assert_eq!(counts(&s), vec![(1, 3), (2, 2), (5, 1)]);
        assert_eq!(s.stats().evictions, 2);
    }

    #[test]
    fn lfu_ties_go_to_the_oldest_in_the_bucket() {
        let mut s = lfu(3);
        for k in [1, 2, 3] {
            put(&mut s, k);
        }
        put(&mut s, 4); // all count 1: the oldest, 1, goes
        assert_eq!(keys(&s), vec![4, 3, 2]);
        // Age in the bucket, not since insertion: 3 reaches count 2 first, then 2, then 4.
        get(&mut s, 3);
        get(&mut s, 2);
        get(&mut s, 4);
        assert_eq!(counts(&s), vec![(4, 2), (2, 2), (3, 2)]);
        put(&mut s, 5); // evicts 3
        assert_eq!(counts(&s), vec![(4, 2), (2, 2), (5, 1)]);
        put(&mut s, 6); // evicts 5 (count 1) before any entry of count 2
        assert_eq!(keys(&s), vec![4, 2, 6]);
        get(&mut s, 6); // joins count 2 as its newest
        assert_eq!(counts(&s), vec![(6, 2), (4, 2), (2, 2)]);
        put(&mut s, 7); // evicts 2, the longest at count 2
        assert_eq!(counts(&s), vec![(6, 2), (4, 2), (7, 1)]);
    }

    #[test]
    fn lfu_hit_opens_a_bucket_between_counts() {
        let mut s = lfu(3);
        put(&mut s, 1);
        get(&mut s, 1);
        get(&mut s, 1); // alone in its bucket: the bucket itself moves up
        assert_eq!(counts(&s), vec![(1, 3)]);
        put(&mut s, 2);
        put(&mut s, 3);
        assert_eq!(counts(&s), vec![(1, 3), (3, 1), (2, 1)]);
        get(&mut s, 3); // new bucket of count 2, between 3 and 1
        assert_eq!(counts(&s), vec![(1, 3), (3, 2), (2, 1)]);
        get(&mut s, 2); // joins count 2 as its newest
        assert_eq!(counts(&s), vec![(1, 3), (2, 2), (3, 2)]);
        put(&mut s, 4); // evicts 3
        assert_eq!(counts(&s), vec![(1, 3), (2, 2), (4, 1)]);
        get(&mut s, 4);
        assert_eq!(counts(&s), vec![(1, 3), (4, 2), (2, 2)]);
        put(&mut s, 5); // evicts 2
        assert_eq!(counts(&s), vec![(1, 3), (4, 2), (5, 1)]);
        get(&mut s, 4); // leaves count 2 empty, joins 1 at count 3 as its newest
        assert_eq!(counts(&s), vec![(4, 3), (1, 3), (5, 1)]);
        assert_eq!(s.lfu.free.len(), 1, "the emptied bucket was freed");
    }

    #[test]
    fn lfu_reinsert_keeps_count_and_place() {
        let mut s = SieveStore::new(2, Some(10.0), Policy::Lfu);
        s.insert(&[1], 0.0);
        s.insert(&[2], 0.0);
        assert!(matches!(s.get(&[2], 0.0), Lookup::Hit(_)));
        assert!(matches!(s.get(&[2], 0.0), Lookup::Hit(_)));
        for t in 1..4 {
            s.insert(&[1], f64::from(t)); // re-sets do not count as accesses
            s.validate();
        }
        s.insert(&[2], 5.0); // nor do they reset the count
        assert_eq!(counts(&s), vec![(2, 3), (1, 1)]);
        s.insert(&[3], 5.0); // evicts 1
        assert_eq!(counts(&s), vec![(2, 3), (3, 1)]);
        assert_eq!(s.get(&[2], 14.9), Lookup::Hit(s.peek(&[2], 14.9).unwrap()));
        assert!(
            matches!(s.get(&[2], 15.0), Lookup::Expired(_)),
            "the re-set refreshed the time"
        );
        s.validate();
    }

    #[test]
    fn lfu_delete_expiry_and_clear_leave_the_buckets() {
        let mut s = SieveStore::new(3, Some(10.0), Policy::Lfu);
        s.insert(&[1], 0.0);
        s.get(&[1], 1.0);
        s.get(&[1], 2.0);
        s.insert(&[2], 5.0);
        s.insert(&[3], 5.0);
        assert_eq!(counts(&s), vec![(1, 3), (3, 1), (2, 1)]);
        assert!(matches!(s.get(&[1], 10.0), Lookup::Expired(_)));
        s.validate();
        assert_eq!(counts(&s), vec![(3, 1), (2, 1)]);
        s.insert(&[4], 10.0);
        assert!(s.remove(&[3]).is_some());
        s.validate();
        assert_eq!(counts(&s), vec![(4, 1), (2, 1)]);
        s.get(&[2], 11.0);
        s.insert(&[5], 11.0);
        s.insert(&[6], 11.0); // full: evicts 4, the oldest of count 1
        s.validate();
        assert_eq!(counts(&s), vec![(2, 2), (6, 1), (5, 1)]);
        let tail = s.peek(&[5], 11.0);
        assert_eq!(s.evict(), tail, "evict() takes the LFU victim too");
        s.validate();
        assert_eq!(counts(&s), vec![(2, 2), (6, 1)]);
        s.clear();
        s.validate();
        assert!(s.lfu.slab.is_empty());
        for k in [7, 8, 9, 10] {
            put(&mut s, k);
        }
        assert_eq!(counts(&s), vec![(10, 1), (9, 1), (8, 1)]);
    }

    /// LFU as the paper states it, on a plain list: `(key, count, entered, inserted_at,
    /// ttl)`, where `entered` orders the entries by when they reached their count; a third
    /// of the inserts give the entry a TTL of its own, and a stale window of 100 ms follows
    /// each TTL.
    #[test]
    fn lfu_matches_a_reference_model_under_a_random_workload() {
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        let mut s = SieveStore::with_stale(12, Some(400.0), Policy::Lfu, 100.0);
        let mut model: Vec<(u8, u64, u64, f64, f64)> = Vec::new();
        let mut tick = 0u64;
        let (mut stale, mut expired) = (0, 0);
        let expected = |model: &Vec<(u8, u64, u64, f64, f64)>| {
            let mut m = model.clone();
            m.sort_by(|a, b| b.1.cmp(&a.1).then(b.2.cmp(&a.2)));
            m.iter().map(|e| (e.0, e.1)).collect::<Vec<_>>()
        };
        for t in 0..20_000u32 {
            let k = (next() % 30) as u8;
            let now = f64::from(t);
            tick += 1;
            let at = model.iter().position(|e| e.0 == k);
            match next() % 10 {
                0 => {
                    assert_eq!(s.remove(&[k]).is_some(), at.is_some());
                    if let Some(i) = at {
                        model.remove(i);
                    }
                }
                1..=3 => {
                    let own = match next() % 6 {
                        0 => Some(f64::from((next() % 800) as u32 + 1)),
                        1 => Some(f64::INFINITY),
                        _ => None,
                    };
                    s.insert_with_ttl(&[k], now, own);
                    let ttl = own.unwrap_or(400.0);
                    match at {
                        Some(i) => (model[i].3, model[i].4) = (now, ttl),
                        None => {
                            if model.len() == 12 {
                                let victim = expected(&model).last().unwrap().0;
                                model.retain(|e| e.0 != victim);
                            }
                            model.push((k, 1, tick, now, ttl));
                        }
                    }
                }
                _ => {
                    let r = s.get(&[k], now);
                    match at {
                        None => assert_eq!(r, Lookup::Miss),
                        Some(i) if now - model[i].3 >= model[i].4 + 100.0 => {
                            assert!(matches!(r, Lookup::Expired(_)), "step {t}");
                            model.remove(i);
                            expired += 1;
                        }
                        Some(i) if now - model[i].3 >= model[i].4 => {
                            assert!(matches!(r, Lookup::Stale(_)), "step {t}");
                            stale += 1;
                        }
                        Some(i) => {
                            assert!(matches!(r, Lookup::Hit(_)));
                            model[i].1 += 1;
                            model[i].2 = tick;
                        }
                    }
                }
            }
            assert_eq!(counts(&s), expected(&model), "step {t}");
            if t % 31 == 0 {
                s.validate();
            }
        }
        s.validate();
        assert!(
            stale >= 20 && expired >= 5,
            "{stale} stale, {expired} expired"
        );
    }

    #[test]
    fn short_keys_copy_and_compare_at_every_length() {
        let src: Vec<u8> = (1..=INLINE_KEY as u8).collect();
        for n in 0..=INLINE_KEY {
            let mut dst = [0u8; INLINE_KEY];
            copy_short(&mut dst, &src[..n]);
            assert_eq!(&dst[..n], &src[..n], "copy of {n} bytes");
            assert!(
                dst[n..].iter().all(|&b| b == 0),
                "a copy of {n} bytes wrote past them"
            );
            assert!(eq_short(&dst[..n], &src[..n]), "{n} equal bytes");
            for at in 0..n {
                let mut other = src[..n].to_vec();
                other[at] ^= 0x80;
                assert!(!eq_short(&other, &src[..n]), "{n} bytes differing at {at}");
                assert!(!StoredKey::new(&other).matches(&src[..n]));
            }
            assert!(StoredKey::new(&src[..n]).matches(&src[..n]));
            if n > 0 {
                assert!(
                    !StoredKey::new(&src[..n - 1]).matches(&src[..n]),
                    "a shorter key"
                );
            }
        }
    }

    #[test]
    fn a_key_of_255_bytes_is_not_taken_for_the_empty_miss_record() {
        // The record's "none" length is 255: a key of that length (stored boxed) must not
        // be compared with its inline bytes, before or after a miss of a short key.
        let long = [9u8; 255];
        let mut s = SieveStore::new(4, None, Policy::Sieve);
        let first = s.insert(&long, 0.0).slot;
        assert_eq!(s.get(&long, 0.0), Lookup::Hit(first));
        assert_eq!(s.get(b"short", 0.0), Lookup::Miss);
        s.insert(b"short", 0.0);
        assert_eq!(s.insert(&long, 0.0).slot, first);
        assert_eq!(s.len(), 2);
        s.validate();
    }

    #[test]
    fn an_insert_after_a_miss_of_its_key_indexes_it_once() {
        let mut s = SieveStore::new(4, None, Policy::Sieve);
        let k = b"a key of 13 b";
        assert_eq!(s.get(k, 0.0), Lookup::Miss);
        let first = s.insert(k, 0.0).slot;
        // The miss's record is used once: the next insert finds the entry.
        assert_eq!(s.insert(k, 0.0).slot, first);
        assert_eq!(s.len(), 1);
        s.validate();
        // A key found absent stays absent through other inserts (evicting), a removal and a
        // clear, and is then indexed once.
        let j = b"another key!!";
        assert_eq!(s.get(j, 0.0), Lookup::Miss);
        for other in [&b"x1"[..], b"x2", b"x3", b"x4", b"x5"] {
            s.insert(other, 0.0);
        }
        s.remove(b"x5");
        let slot = s.insert(j, 0.0).slot;
        assert_eq!(s.get(j, 0.0), Lookup::Hit(slot));
        assert_eq!(s.insert(j, 0.0).slot, slot);
        s.validate();
        assert_eq!(s.get(b"third key", 0.0), Lookup::Miss);
        s.clear();
        s.insert(b"third key", 0.0);
        s.insert(b"third key", 0.0);
        assert_eq!(s.len(), 1);
        s.validate();
        // An expired entry's lookup removes it: its key is absent, then inserted once.
        let mut t = SieveStore::new(4, Some(10.0), Policy::Sieve);
        t.insert(k, 0.0);
        assert!(matches!(t.get(k, 20.0), Lookup::Expired(_)));
        t.insert(k, 20.0);
        t.insert(k, 21.0);
        assert_eq!(t.len(), 1);
        assert!(matches!(t.get(k, 22.0), Lookup::Hit(_)));
        t.validate();
    }

    #[test]
    fn keys_of_every_length_match_a_model_under_a_random_workload() {
        // Keys of 0 to 30 bytes (inline and boxed) that share prefixes and differ in one
        // byte; an unbounded store, so a set of keys is an exact model.
        let mut next = xorshift(0x2545_f491_4f6c_dd1d);
        let key = |r: u64| -> Vec<u8> {
            let len = (r % 31) as usize;
            let mut k = vec![7u8; len];
            if len > 0 {
                k[(r >> 8) as usize % len] = ((r >> 16) % 3) as u8;
            }
            k
        };
        for policy in [Policy::Sieve, Policy::Lfu, Policy::S3Fifo, Policy::WTinyLfu] {
            let mut s = SieveStore::new(usize::MAX, None, policy);
            let mut model = std::collections::HashSet::new();
            for t in 0..30_000u32 {
                let k = key(next());
                match next() % 8 {
                    0 => {
                        assert_eq!(s.remove(&k).is_some(), model.remove(&k), "remove {k:?}");
                    }
                    1 | 2 => {
                        s.insert(&k, 0.0);
                        model.insert(k);
                    }
                    _ => {
                        let hit = matches!(s.get(&k, 0.0), Lookup::Hit(_));
                        assert_eq!(hit, model.contains(&k), "get {k:?}");
                        // Inserted right after its miss, half the time.
                        if !hit && next().is_multiple_of(2) {
                            s.insert(&k, 0.0);
                            model.insert(k);
                        }
                    }
                }
                if t % 5_000 == 4_999 {
                    s.clear();
                    model.clear();
                }
                assert_eq!(s.len(), model.len());
                if t % 257 == 0 {
                    s.validate();
                }
            }
        }
    }

    #[test]
    fn invariants_hold_under_a_random_workload() {
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        for policy in [
            Policy::Sieve,
            Policy::Lru,
            Policy::Mru,
            Policy::Fifo,
            Policy::Lfu,
            Policy::S3Fifo,
            Policy::WTinyLfu,
            Policy::Arc,
        ] {
            let mut s = SieveStore::with_stale(16, Some(50.0), policy, 20.0);
            for t in 0..20_000u32 {
                let k = (next() % 40) as u8;
                let now = f64::from(t);
                match next() % 10 {
                    0 => {
                        s.remove(&[k]);
                    }
                    1..=3 => {
                        s.insert(&[k], now);
                    }
                    4 => {
                        s.insert_with_ttl(&[k], now, Some(f64::from((next() % 100) as u32 + 1)));
                    }
                    _ => {
                        if let Lookup::Hit(slot) = s.get(&[k], now) {
                            assert_eq!(s.order().iter().filter(|(kk, _)| kk[0] == k).count(), 1);
                            assert!(slot < 16);
                        }
                    }
                }
                if t % 97 == 0 {
                    s.validate();
                }
            }
            s.validate();
        }
    }
}
