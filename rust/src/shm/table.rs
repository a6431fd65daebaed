//! The hash table, the slots and the SIEVE queue inside a mapped file.
//!
//! Every index read from the file (bucket contents, queue links, the hand, the free
//! list, lengths) is checked against the handle's own copy of the parameters before it
//! is used, so a corrupted or hostile file can make an operation fail with [`Corrupt`]
//! (after which the caller rebuilds, see [`Table::rebuild`]) but never makes it read or
//! write outside the mapping.
//!
//! Methods documented "under the lock" may only run while this process holds the
//! file's write lock with the sequence counter odd; the others are lock-free and may
//! see torn data, which their caller detects with the sequence counter.
//!
//! SIEVE has the semantics of `crate::sieve`: the queue runs from the newest entry (head)
//! to the oldest (tail); a hit sets the visited bit; eviction starts at the hand (or the
//! tail), walks towards the head clearing visited bits, wraps to the tail, and evicts the
//! first unvisited entry; the hand then rests on the victim's newer neighbour.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};

use super::layout::{
    BUCKET_SIZE, COUNTER_LIMIT, HEADER_SIZE, Header, NIL, Params, SLOT_FREE, SLOT_HEADER_SIZE,
    SLOT_LIVE, SlotHeader, checksum,
};
use crate::hash::{fixed_state, hash_bytes};

/// The counters of a file, totalled over the stripes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub hits: u64,
    pub misses: u64,
    pub oversize_skips: u64,
    pub evictions: u64,
}

/// The structure in the file is inconsistent: rebuild it (under the lock), or, for a
/// lock-free reader, check the sequence counter and retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Corrupt;

/// Why [`Table::check`] did not pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Violation {
    /// An invariant does not hold (the first one found).
    Broken(String),
    /// The caller's `stop` asked to end the check (a writer moved the sequence counter).
    Stopped,
}

/// Steps of [`Table::check`] between two polls of its `stop` function.
pub const CHECK_POLL: u32 = 1024;

/// What a lock-free [`Table::read`] saw.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Read {
    /// No entry for the key.
    Absent,
    /// An entry; its value was copied into the output when `len <= out.len()`.
    Found {
        slot: u32,
        len: usize,
        inserted_at_bits: u64,
        checksum: u64,
        visited: bool,
    },
    /// Inconsistent data (torn by a writer, or corrupt).
    Inconsistent,
}

/// One slot: its header and the address of its key bytes (value bytes follow at
/// `max_key_size`).
#[derive(Clone, Copy)]
pub struct Slot<'a> {
    pub h: &'a SlotHeader,
    bytes: *mut u8,
}

/// A view of the structure of a mapped file.
///
/// ## Safety
/// `base` points to a shared mapping of `p.file_size` bytes that other processes modify
/// concurrently; the owner ([`super::ShmStore`]) keeps the mapping alive as long as the
/// view. All mutable state is accessed through atomics or raw-pointer copies, never
/// through Rust references to plain bytes, except under the lock (see
/// [`Table::entry_bytes`]).
pub struct Table {
    base: *mut u8,
    p: Params,
    state: ahash::RandomState,
}

// SAFETY: the view holds a pointer into a mapping shared with other processes already;
// every access is an atomic, a seqlock-validated copy, or under the cross-process lock,
// so using it from several threads adds nothing that other processes do not already do.
unsafe impl Send for Table {}
// SAFETY: as for Send: `&Table` methods synchronize through the file's atomics and lock.
unsafe impl Sync for Table {}

impl Table {
    /// Creates the view.
    ///
    /// # Safety
    /// - `base` must point to a live mapping of `p.file_size` bytes, 8-aligned, whose
    ///   header matches `p`, and that outlives the returned value.
    pub unsafe fn new(base: *mut u8, p: Params) -> Table {
        Table {
            base,
            p,
            state: fixed_state(),
        }
    }

    /// The validated parameters.
    pub fn params(&self) -> Params {
        self.p
    }

    /// `ahash` of `key` at the fixed seeds.
    pub fn hash(&self, key: &[u8]) -> u64 {
        hash_bytes(&self.state, key)
    }

    /// Checksum of an entry (see [`checksum`]).
    pub fn checksum(&self, key_hash: u64, inserted_at_bits: u64, key: &[u8], value: &[u8]) -> u64 {
        checksum(&self.state, key_hash, inserted_at_bits, key, value)
    }

    /// The file header.
    pub fn header(&self) -> &Header {
        // SAFETY: the mapping starts with a Header (HEADER_SIZE bytes, 8-aligned) and lives
        // as long as `self`; its shared mutable fields are atomics.
        unsafe { &*self.base.cast::<Header>() }
    }

    fn bucket(&self, i: u32) -> &AtomicU64 {
        let i = (i & (self.p.table_size - 1)) as usize;
        // SAFETY: `i < table_size`, so the bucket lies within the table, which lies within
        // the mapping; buckets are 8-aligned and only accessed atomically.
        unsafe {
            &*self
                .base
                .add(HEADER_SIZE + i * BUCKET_SIZE)
                .cast::<AtomicU64>()
        }
    }

    /// Slot `i`, or [`Corrupt`] when `i` is not a slot number.
    pub fn slot(&self, i: u32) -> Result<Slot<'_>, Corrupt> {
        if i >= self.p.slots {
            return Err(Corrupt);
        }
        // SAFETY: `i < slots`, so the slot lies within the mapping (Params::new sized
        // it); slot offsets are multiples of 8; the header's fields are atomics.
        unsafe {
            let at = self.base.add(self.p.slot_offset(i));
            Ok(Slot {
                h: &*at.cast::<SlotHeader>(),
                bytes: at.add(SLOT_HEADER_SIZE),
            })
        }
    }

    fn key_ptr(&self, s: Slot<'_>) -> *mut u8 {
        s.bytes
    }

    fn value_ptr(&self, s: Slot<'_>) -> *mut u8 {
        // SAFETY: the value area follows the key area of max_key_size bytes in the slot.
        unsafe { s.bytes.add(self.p.max_key_size as usize) }
    }

    /// Whether the stored key of `s` equals `key` (`key.len() <= max_key_size`).
    fn key_eq(&self, s: Slot<'_>, key: &[u8]) -> bool {
        debug_assert!(key.len() <= self.p.max_key_size as usize);
        if key.is_empty() {
            return true;
        }
        // SAFETY: both ranges are valid for `key.len()` bytes (the key area holds
        // max_key_size bytes); memcmp reads raw bytes and creates no Rust reference to the
        // shared memory, which a writer may be changing (the caller validates afterwards).
        unsafe {
            libc::memcmp(
                self.key_ptr(s).cast::<libc::c_void>(),
                key.as_ptr().cast::<libc::c_void>(),
                key.len(),
            ) == 0
        }
    }

    /// Finds `key`: `(bucket, slot)`. Lock-free: may return anything on torn data, but
    /// stays within the mapping.
    pub fn find(&self, key: &[u8], hash: u64) -> Result<Option<(u32, u32)>, Corrupt> {
        if key.len() > self.p.max_key_size as usize {
            return Ok(None);
        }
        let mask = self.p.table_size - 1;
        let tag = hash as u32;
        let mut b = tag & mask;
        for _ in 0..self.p.table_size {
            let e = self.bucket(b).load(Relaxed);
            if e == 0 {
                return Ok(None);
            }
            let slot = (e as u32).wrapping_sub(1);
            let s = self.slot(slot)?;
            if (e >> 32) as u32 == tag
                && s.h.key_hash.load(Relaxed) == hash
                && s.h.key_len.load(Relaxed) as usize == key.len()
                && self.key_eq(s, key)
            {
                return Ok(Some((b, slot)));
            }
            b = (b + 1) & mask;
        }
        Err(Corrupt)
    }

    /// Looks `key` up and copies its value into `out` when it fits. Lock-free.
    pub fn read(&self, key: &[u8], hash: u64, out: &mut [u8]) -> Read {
        let slot = match self.find(key, hash) {
            Ok(Some((_, slot))) => slot,
            Ok(None) => return Read::Absent,
            Err(Corrupt) => return Read::Inconsistent,
        };
        let Ok(s) = self.slot(slot) else {
            return Read::Inconsistent;
        };
        let len = s.h.value_len.load(Relaxed) as usize;
        if len > self.p.max_value_size as usize {
            return Read::Inconsistent;
        }
        let inserted_at_bits = s.h.inserted_at.load(Relaxed);
        let checksum = s.h.checksum.load(Relaxed);
        let visited = s.h.visited.load(Relaxed) != 0;
        if len <= out.len() {
            // SAFETY: the value area holds max_value_size >= len bytes and `out` at least
            // len; `out` is the caller's buffer, not in the mapping. The source may be
            // changing under a writer: the caller validates the copy with the sequence
            // counter and the checksum before using it.
            unsafe { std::ptr::copy_nonoverlapping(self.value_ptr(s), out.as_mut_ptr(), len) };
        }
        Read::Found {
            slot,
            len,
            inserted_at_bits,
            checksum,
            visited,
        }
    }

    /// The key and value bytes of slot `s`, when its lengths are in range.
    ///
    /// Under the lock only: then no writer changes the bytes while the slices live.
    fn entry_bytes(&self, s: Slot<'_>) -> Option<(&[u8], &[u8])> {
        let klen = s.h.key_len.load(Relaxed) as usize;
        let vlen = s.h.value_len.load(Relaxed) as usize;
        if klen > self.p.max_key_size as usize || vlen > self.p.max_value_size as usize {
            return None;
        }
        // SAFETY: the lengths are within the slot's key and value areas; under the lock
        // no other process writes these bytes (readers only read, and only set `visited`,
        // which is in the header), so shared references are sound while the lock is held.
        unsafe {
            Some((
                std::slice::from_raw_parts(self.key_ptr(s), klen),
                std::slice::from_raw_parts(self.value_ptr(s), vlen),
            ))
        }
    }

    /// Whether slot `i` holds an entry whose hash and checksum verify. Under the lock.
    pub fn verify(&self, i: u32) -> bool {
        let Ok(s) = self.slot(i) else { return false };
        let Some((key, value)) = self.entry_bytes(s) else {
            return false;
        };
        let hash = s.h.key_hash.load(Relaxed);
        hash == self.hash(key)
            && s.h.checksum.load(Relaxed)
                == self.checksum(hash, s.h.inserted_at.load(Relaxed), key, value)
    }

    /// Copies the value of slot `i` into `out` (which must be large enough). Under the lock.
    pub fn copy_value(&self, i: u32, out: &mut [u8]) -> Result<usize, Corrupt> {
        let s = self.slot(i)?;
        let (_, value) = self.entry_bytes(s).ok_or(Corrupt)?;
        out.get_mut(..value.len())
            .ok_or(Corrupt)?
            .copy_from_slice(value);
        Ok(value.len())
    }

    /// Stores `key -> value` with insertion time `now_bits` and the precomputed checksum.
    /// Replaces the value and time of an existing key (keeping its queue place and visited
    /// bit) by copy on write: the new entry is written completely into a free slot (the
    /// file has a spare one) before the old slot is freed, so a writer killed at any
    /// instant leaves the old or the new entry for [`Table::rebuild`], never neither.
    /// Otherwise evicts by SIEVE when full. Returns whether an entry was evicted. Under the
    /// lock; `key` and `value` fit the slot sizes.
    pub fn store(
        &self,
        key: &[u8],
        hash: u64,
        value: &[u8],
        now_bits: u64,
        sum: u64,
    ) -> Result<bool, Corrupt> {
        if key.len() > self.p.max_key_size as usize || value.len() > self.p.max_value_size as usize
        {
            return Err(Corrupt);
        }
        let h = self.header();
        let len = h.len.load(Relaxed);
        if len > self.p.capacity {
            return Err(Corrupt);
        }
        if let Some((bucket, old)) = self.find(key, hash)? {
            let o = self.slot(old)?;
            if o.h.state.load(Relaxed) != SLOT_LIVE {
                return Err(Corrupt);
            }
            // len <= capacity < slots: a free slot exists unless the file is corrupt.
            let slot = self.alloc()?;
            let s = self.write_entry(slot, key, hash, value, now_bits, sum)?;
            s.h.visited.store(o.h.visited.load(Relaxed), Relaxed);
            // From here both entries verify; a rebuild keeps the newer one.
            self.bucket(bucket).store(
                (u64::from(hash as u32) << 32) | u64::from(slot + 1),
                Relaxed,
            );
            self.replace_in_queue(old, slot)?;
            o.h.state.store(SLOT_FREE, Relaxed);
            o.h.older.store(h.free_head.load(Relaxed), Relaxed);
            h.free_head.store(old, Relaxed);
            return Ok(false);
        }
        let evicted = len == self.p.capacity;
        if evicted {
            self.evict()?;
        }
        let slot = self.alloc()?;
        self.write_entry(slot, key, hash, value, now_bits, sum)?;
        self.table_insert(hash, slot)?;
        self.push_head(slot)?;
        h.len.store(len - u32::from(evicted) + 1, Relaxed);
        Ok(evicted)
    }

    /// Writes a complete entry into the free slot `slot` and only then marks it live, so
    /// that a rebuild after a crash here never resurrects a half-written or stale entry.
    /// The entry is not yet indexed nor queued. Under the lock.
    fn write_entry(
        &self,
        slot: u32,
        key: &[u8],
        hash: u64,
        value: &[u8],
        now_bits: u64,
        sum: u64,
    ) -> Result<Slot<'_>, Corrupt> {
        let s = self.slot(slot)?;
        s.h.key_hash.store(hash, Relaxed);
        s.h.inserted_at.store(now_bits, Relaxed);
        s.h.checksum.store(sum, Relaxed);
        s.h.key_len.store(key.len() as u32, Relaxed);
        s.h.value_len.store(value.len() as u32, Relaxed);
        s.h.visited.store(0, Relaxed);
        s.h.newer.store(NIL, Relaxed);
        s.h.older.store(NIL, Relaxed);
        // SAFETY: the key area holds max_key_size >= key.len() bytes (checked by `store`);
        // `key` is the caller's memory, not in the mapping. Readers may read concurrently:
        // the sequence counter is odd, so they discard what they read.
        unsafe { std::ptr::copy_nonoverlapping(key.as_ptr(), self.key_ptr(s), key.len()) };
        self.write_value(s, value);
        s.h.state.store(SLOT_LIVE, Relaxed);
        Ok(s)
    }

    /// Puts slot `new` at the queue place of slot `old` (links, head, tail, hand), leaving
    /// `old` unlinked. Under the lock.
    fn replace_in_queue(&self, old: u32, new: u32) -> Result<(), Corrupt> {
        let h = self.header();
        let o = self.slot(old)?;
        let n = self.slot(new)?;
        let (newer, older) = self.checked_links(old)?;
        n.h.newer.store(newer, Relaxed);
        n.h.older.store(older, Relaxed);
        if newer == NIL {
            h.head.store(new, Relaxed);
        } else {
            self.slot(newer)?.h.older.store(new, Relaxed);
        }
        if older == NIL {
            h.tail.store(new, Relaxed);
        } else {
            self.slot(older)?.h.newer.store(new, Relaxed);
        }
        if h.hand.load(Relaxed) == old {
            h.hand.store(new, Relaxed);
        }
        o.h.newer.store(NIL, Relaxed);
        o.h.older.store(NIL, Relaxed);
        Ok(())
    }

    fn write_value(&self, s: Slot<'_>, value: &[u8]) {
        // SAFETY: the value area holds max_value_size >= value.len() bytes (checked by the
        // caller); `value` is the caller's memory. Concurrent readers discard what they
        // read because the sequence counter is odd.
        unsafe { std::ptr::copy_nonoverlapping(value.as_ptr(), self.value_ptr(s), value.len()) };
    }

    /// Takes a free slot. Under the lock.
    fn alloc(&self) -> Result<u32, Corrupt> {
        let h = self.header();
        let free = h.free_head.load(Relaxed);
        if free != NIL {
            let s = self.slot(free)?;
            if s.h.state.load(Relaxed) != SLOT_FREE {
                return Err(Corrupt);
            }
            h.free_head.store(s.h.older.load(Relaxed), Relaxed);
            return Ok(free);
        }
        let next = h.next_unused.load(Relaxed);
        let s = self.slot(next)?;
        // Mark it free before it counts as used (see `store`).
        s.h.state.store(SLOT_FREE, Relaxed);
        h.next_unused.store(next + 1, Relaxed);
        Ok(next)
    }

    /// Evicts one entry by SIEVE. Under the lock; the store is not empty.
    fn evict(&self) -> Result<(), Corrupt> {
        let h = self.header();
        let len = h.len.load(Relaxed);
        if len == 0 {
            return Err(Corrupt);
        }
        let hand = h.hand.load(Relaxed);
        let mut cur = if hand == NIL {
            h.tail.load(Relaxed)
        } else {
            hand
        };
        // One full round clears every bit; readers may set bits again meanwhile, so after
        // two rounds the current entry is taken whatever its bit.
        let rounds = 2 * u64::from(len) + 2;
        let mut steps = 0u64;
        loop {
            let s = self.slot(cur)?;
            if s.h.state.load(Relaxed) != SLOT_LIVE {
                return Err(Corrupt);
            }
            steps += 1;
            if s.h.visited.load(Relaxed) == 0 || steps > rounds {
                h.hand.store(s.h.newer.load(Relaxed), Relaxed);
                self.remove_slot(cur)?;
                h.evictions.fetch_add(1, Relaxed);
                return Ok(());
            }
            s.h.visited.store(0, Relaxed);
            let newer = s.h.newer.load(Relaxed);
            cur = if newer == NIL {
                h.tail.load(Relaxed)
            } else {
                newer
            };
        }
    }

    /// Removes `key`; returns whether it was present. Under the lock.
    pub fn remove_key(&self, key: &[u8], hash: u64) -> Result<bool, Corrupt> {
        match self.find(key, hash)? {
            Some((_, slot)) => {
                self.remove_slot(slot)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Removes the entry in slot `slot` from the table and the queue and frees the slot.
    /// Under the lock.
    pub fn remove_slot(&self, slot: u32) -> Result<(), Corrupt> {
        let h = self.header();
        let s = self.slot(slot)?;
        if s.h.state.load(Relaxed) != SLOT_LIVE {
            return Err(Corrupt);
        }
        let len = h.len.load(Relaxed).checked_sub(1).ok_or(Corrupt)?;
        self.table_remove(s.h.key_hash.load(Relaxed), slot)?;
        if h.hand.load(Relaxed) == slot {
            h.hand.store(s.h.newer.load(Relaxed), Relaxed);
        }
        self.unlink(slot)?;
        s.h.state.store(SLOT_FREE, Relaxed);
        s.h.older.store(h.free_head.load(Relaxed), Relaxed);
        h.free_head.store(slot, Relaxed);
        h.len.store(len, Relaxed);
        Ok(())
    }

    fn table_insert(&self, hash: u64, slot: u32) -> Result<(), Corrupt> {
        let mask = self.p.table_size - 1;
        let tag = hash as u32;
        let mut b = tag & mask;
        for _ in 0..self.p.table_size {
            let bucket = self.bucket(b);
            if bucket.load(Relaxed) == 0 {
                bucket.store((u64::from(tag) << 32) | u64::from(slot + 1), Relaxed);
                return Ok(());
            }
            b = (b + 1) & mask;
        }
        Err(Corrupt)
    }

    /// Removes the bucket of `slot` (whose key hashes to `hash`) with backward-shift
    /// deletion, which leaves no tombstones.
    fn table_remove(&self, hash: u64, slot: u32) -> Result<(), Corrupt> {
        let mask = self.p.table_size - 1;
        let want = u64::from(slot + 1);
        let mut i = (hash as u32) & mask;
        let mut found = false;
        for _ in 0..self.p.table_size {
            let e = self.bucket(i).load(Relaxed);
            if e == 0 {
                break;
            }
            if e & 0xffff_ffff == want {
                found = true;
                break;
            }
            i = (i + 1) & mask;
        }
        if !found {
            return Err(Corrupt);
        }
        // Shift later members of the cluster back over the hole when their home bucket
        // does not lie cyclically in (hole, position].
        let mut j = i;
        for _ in 0..self.p.table_size {
            j = (j + 1) & mask;
            let e = self.bucket(j).load(Relaxed);
            if e == 0 {
                break;
            }
            let home = ((e >> 32) as u32) & mask;
            let stays = if i <= j {
                i < home && home <= j
            } else {
                i < home || home <= j
            };
            if !stays {
                self.bucket(i).store(e, Relaxed);
                i = j;
            }
        }
        self.bucket(i).store(0, Relaxed);
        Ok(())
    }

    /// Checks that the queue neighbours of `slot` link back to it (and the head and tail
    /// when it has no neighbour), so that a corrupt queue is rebuilt rather than spread by
    /// an unlink (found by fuzzing: plausible garbage links went unnoticed). Returns the
    /// `(newer, older)` links.
    fn checked_links(&self, slot: u32) -> Result<(u32, u32), Corrupt> {
        let h = self.header();
        let s = self.slot(slot)?;
        let newer = s.h.newer.load(Relaxed);
        let older = s.h.older.load(Relaxed);
        let newer_ok = if newer == NIL {
            h.head.load(Relaxed) == slot
        } else {
            let n = self.slot(newer)?;
            n.h.older.load(Relaxed) == slot && n.h.state.load(Relaxed) == SLOT_LIVE
        };
        let older_ok = if older == NIL {
            h.tail.load(Relaxed) == slot
        } else {
            let o = self.slot(older)?;
            o.h.newer.load(Relaxed) == slot && o.h.state.load(Relaxed) == SLOT_LIVE
        };
        if newer_ok && older_ok && newer != slot && older != slot {
            Ok((newer, older))
        } else {
            Err(Corrupt)
        }
    }

    fn unlink(&self, slot: u32) -> Result<(), Corrupt> {
        let h = self.header();
        let s = self.slot(slot)?;
        let (newer, older) = self.checked_links(slot)?;
        if newer == NIL {
            h.head.store(older, Relaxed);
        } else {
            self.slot(newer)?.h.older.store(older, Relaxed);
        }
        if older == NIL {
            h.tail.store(newer, Relaxed);
        } else {
            self.slot(older)?.h.newer.store(newer, Relaxed);
        }
        s.h.newer.store(NIL, Relaxed);
        s.h.older.store(NIL, Relaxed);
        Ok(())
    }

    fn push_head(&self, slot: u32) -> Result<(), Corrupt> {
        let h = self.header();
        let s = self.slot(slot)?;
        let old = h.head.load(Relaxed);
        let consistent = if old == NIL {
            h.tail.load(Relaxed) == NIL
        } else {
            let o = self.slot(old)?;
            old != slot && o.h.newer.load(Relaxed) == NIL && o.h.state.load(Relaxed) == SLOT_LIVE
        };
        if !consistent {
            return Err(Corrupt);
        }
        s.h.newer.store(NIL, Relaxed);
        s.h.older.store(old, Relaxed);
        if old == NIL {
            h.tail.store(slot, Relaxed);
        } else {
            self.slot(old)?.h.newer.store(slot, Relaxed);
        }
        h.head.store(slot, Relaxed);
        Ok(())
    }

    /// The counter totals: each striped counter summed over the stripes (saturating, as
    /// garbage may be anything). Lock-free.
    pub fn counter_totals(&self) -> Totals {
        let h = self.header();
        let mut t = Totals {
            evictions: h.evictions.load(Relaxed),
            ..Totals::default()
        };
        for s in h.all_stripes() {
            t.hits = t.hits.saturating_add(s.hits.load(Relaxed));
            t.misses = t.misses.saturating_add(s.misses.load(Relaxed));
            t.oversize_skips = t
                .oversize_skips
                .saturating_add(s.oversize_skips.load(Relaxed));
        }
        t
    }

    /// Whether every counter total is at most [`COUNTER_LIMIT`]; above it a counter is
    /// garbage. Lock-free.
    pub fn counters_plausible(&self) -> bool {
        let t = self.counter_totals();
        [t.hits, t.misses, t.oversize_skips, t.evictions]
            .iter()
            .all(|&c| c <= COUNTER_LIMIT)
    }

    /// Sets every counter (every stripe, and evictions) to 0. Under the lock (increments
    /// that race with it, by lock-free readers, are kept or lost as with any reset).
    pub fn reset_counters(&self) {
        let h = self.header();
        for s in h.all_stripes() {
            for c in [&s.hits, &s.misses, &s.oversize_skips] {
                c.store(0, Relaxed);
            }
        }
        h.evictions.store(0, Relaxed);
    }

    /// Removes every entry (the counters are the caller's). Under the lock.
    pub fn clear(&self) {
        let h = self.header();
        for b in 0..self.p.table_size {
            self.bucket(b).store(0, Relaxed);
        }
        for field in [&h.head, &h.tail, &h.hand, &h.free_head] {
            field.store(NIL, Relaxed);
        }
        h.len.store(0, Relaxed);
        // Slots at or past next_unused are ignored by rebuild and reset by alloc.
        h.next_unused.store(0, Relaxed);
    }

    /// Rebuilds the table, queue, free list and length from the slots whose checksums
    /// verify; every other slot is freed. Used after a writer died mid-write or when an
    /// inconsistency is found. The queue is ordered by insertion time (the SIEVE order
    /// before the failure is not recorded anywhere that could be trusted); the hand
    /// restarts at the tail; of two entries with the same key the newer is kept. Under
    /// the lock.
    pub fn rebuild(&self) {
        let h = self.header();
        for b in 0..self.p.table_size {
            self.bucket(b).store(0, Relaxed);
        }
        let used = h.next_unused.load(Relaxed).min(self.p.slots);
        h.next_unused.store(used, Relaxed);
        let mut live: Vec<(f64, u32)> = Vec::new();
        let mut free = NIL;
        for i in (0..used).rev() {
            let Ok(s) = self.slot(i) else { continue };
            if s.h.state.load(Relaxed) == SLOT_LIVE && self.verify(i) {
                live.push((f64::from_bits(s.h.inserted_at.load(Relaxed)), i));
                s.h.visited
                    .store(u32::from(s.h.visited.load(Relaxed) != 0), Relaxed);
            } else {
                s.h.state.store(SLOT_FREE, Relaxed);
                s.h.newer.store(NIL, Relaxed);
                s.h.older.store(free, Relaxed);
                free = i;
            }
        }
        // Newest first, so that of duplicate keys the newest is indexed first and kept.
        live.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
        for field in [&h.head, &h.tail, &h.hand] {
            field.store(NIL, Relaxed);
        }
        let mut kept: Vec<u32> = Vec::with_capacity(live.len());
        for &(_, i) in &live {
            let Ok(s) = self.slot(i) else { continue };
            let hash = s.h.key_hash.load(Relaxed);
            let dup = match self.entry_bytes(s) {
                Some((key, _)) => !matches!(self.find(key, hash), Ok(None)),
                None => true,
            };
            // At most `capacity` entries: a crash mid-update leaves two slots of one key
            // (deduplicated above); a corrupt file may claim more, the oldest go.
            let full = kept.len() >= self.p.capacity as usize;
            if dup || full || self.table_insert(hash, i).is_err() {
                s.h.state.store(SLOT_FREE, Relaxed);
                s.h.older.store(free, Relaxed);
                free = i;
            } else {
                kept.push(i);
            }
        }
        // Oldest first onto the head: the newest ends at the head.
        for &i in kept.iter().rev() {
            // Cannot fail: `i` is a slot number and the queue is being rebuilt from empty.
            let _ = self.push_head(i);
        }
        h.len.store(kept.len() as u32, Relaxed);
        h.free_head.store(free, Relaxed);
    }

    /// Checks every invariant; returns the first violation. Under the lock, or with no
    /// writer running (tests, and the fuzz targets in `rust/fuzz/`); see
    /// [`Table::check`] for the lock-free use at open.
    #[doc(hidden)]
    pub fn validate(&self) -> Result<(), String> {
        self.check(|| false).map_err(|v| match v {
            Violation::Broken(m) => m,
            Violation::Stopped => unreachable!("never stopped"),
        })
    }

    /// Checks every invariant of the structure: queue links both ways, head and tail,
    /// the hand on the queue, every queued entry live, verifying its checksum and found
    /// by a lookup of its own key, as many buckets in use as `len` (so no stale or
    /// duplicate bucket), no bucket naming a slot twice, the free list made of free
    /// slots without a loop, and `free + len == next_unused` (no leaked slot).
    ///
    /// Cost: one pass over the buckets, one over the queue (a lookup and a checksum per
    /// entry: expected O(1) probes at a load factor of at most 1/2, plus the entry's
    /// bytes), one over the free list: O(table_size + slots + bytes of the entries).
    /// (It used to look up each entry's bucket by a scan of the whole table: quadratic,
    /// 17.6 s to reopen a file of 200k entries.) That every queued entry's lookup ends on
    /// a bucket of its own needs no map from slots to buckets: the queue walk visits
    /// distinct slots (each `newer` link must name the slot before it, and the head has
    /// none), a bucket names one slot, so `len` entries found means `len` distinct
    /// buckets, and the count of buckets in use must be `len`.
    ///
    /// Lock-free: the entry bytes are copied out before they are hashed (no reference to
    /// memory that a writer may change), every index is bounds-checked and every loop is
    /// bounded, so on data torn by a concurrent writer it returns a wrong verdict, never
    /// crashes or hangs; a lock-free caller trusts the verdict only when the sequence
    /// counter was even and unchanged around the call. `stop` is polled every
    /// [`CHECK_POLL`] steps: when it returns true the check ends with
    /// [`Violation::Stopped`] (a lock-free caller passes "the sequence counter moved").
    pub fn check(&self, stop: impl Fn() -> bool) -> Result<(), Violation> {
        let broken = |m: String| Violation::Broken(m);
        let mut steps = 0u32;
        let mut poll = || {
            steps = steps.wrapping_add(1);
            if steps.is_multiple_of(CHECK_POLL) && stop() {
                Err(Violation::Stopped)
            } else {
                Ok(())
            }
        };
        let h = self.header();
        let len = h.len.load(Relaxed);
        if len > self.p.capacity {
            return Err(broken(format!("len {len} is over the capacity")));
        }
        // Buckets: each names a slot, no slot twice.
        let mut indexed = vec![0u64; (self.p.slots as usize).div_ceil(64)];
        let mut buckets = 0u32;
        for b in 0..self.p.table_size {
            poll()?;
            let e = self.bucket(b).load(Relaxed);
            if e == 0 {
                continue;
            }
            let slot = (e as u32).wrapping_sub(1);
            if slot >= self.p.slots {
                return Err(broken(format!("bucket {b} names no slot")));
            }
            let (word, bit) = (slot as usize / 64, 1u64 << (slot % 64));
            if indexed[word] & bit != 0 {
                return Err(broken(format!("slot {slot} is in two buckets")));
            }
            indexed[word] |= bit;
            buckets += 1;
        }
        if buckets != len {
            return Err(broken(format!("{buckets} buckets used, len is {len}")));
        }
        // The queue, from the head.
        let mut key = Vec::new();
        let mut value = Vec::new();
        let mut count = 0u32;
        let mut prev = NIL;
        let mut cur = h.head.load(Relaxed);
        let hand = h.hand.load(Relaxed);
        let mut hand_seen = hand == NIL;
        while cur != NIL {
            poll()?;
            let s = self
                .slot(cur)
                .map_err(|_| broken(format!("bad link to {cur}")))?;
            if s.h.newer.load(Relaxed) != prev {
                return Err(broken(format!("broken newer link at slot {cur}")));
            }
            if s.h.state.load(Relaxed) != SLOT_LIVE {
                return Err(broken(format!("slot {cur} on the queue is not live")));
            }
            if !self.verify_copy(s, &mut key, &mut value) {
                return Err(broken(format!("slot {cur} fails its checksum")));
            }
            match self.find(&key, s.h.key_hash.load(Relaxed)) {
                Ok(Some((_, found))) if found == cur => {}
                _ => return Err(broken(format!("slot {cur} is not indexed"))),
            }
            hand_seen |= cur == hand;
            prev = cur;
            cur = s.h.older.load(Relaxed);
            count += 1;
            if count > len {
                return Err(broken("queue longer than len".into()));
            }
        }
        if h.tail.load(Relaxed) != prev {
            return Err(broken("tail is not the last entry".into()));
        }
        if count != len {
            return Err(broken(format!("queue has {count} entries, len is {len}")));
        }
        if !hand_seen {
            return Err(broken("hand is not on the queue".into()));
        }
        // The free list.
        let mut free = 0u32;
        let mut f = h.free_head.load(Relaxed);
        while f != NIL {
            poll()?;
            let s = self.slot(f).map_err(|_| broken("bad free link".into()))?;
            if s.h.state.load(Relaxed) != SLOT_FREE {
                return Err(broken(format!("free slot {f} is live")));
            }
            free += 1;
            if free > self.p.slots {
                return Err(broken("free list loops".into()));
            }
            f = s.h.older.load(Relaxed);
        }
        let used = h.next_unused.load(Relaxed);
        if u64::from(free) + u64::from(len) != u64::from(used) {
            return Err(broken(format!(
                "slot leak: {free} free + {len} live != {used} used"
            )));
        }
        Ok(())
    }

    /// Whether the entry of `s` verifies (lengths in range, hash of the key, checksum),
    /// hashing copies of its bytes, which are left in `key` and `value`. Lock-free: the
    /// bytes may be torn, which the caller detects (see [`Table::check`]).
    fn verify_copy(&self, s: Slot<'_>, key: &mut Vec<u8>, value: &mut Vec<u8>) -> bool {
        let klen = s.h.key_len.load(Relaxed) as usize;
        let vlen = s.h.value_len.load(Relaxed) as usize;
        if klen > self.p.max_key_size as usize || vlen > self.p.max_value_size as usize {
            return false;
        }
        key.resize(klen, 0);
        value.resize(vlen, 0);
        // SAFETY: the key and value areas hold max_key_size >= klen and max_value_size >=
        // vlen bytes; the destinations are our own vectors of those lengths. Raw copies
        // create no reference to the shared bytes, which a writer may be changing.
        unsafe {
            std::ptr::copy_nonoverlapping(self.key_ptr(s), key.as_mut_ptr(), klen);
            std::ptr::copy_nonoverlapping(self.value_ptr(s), value.as_mut_ptr(), vlen);
        }
        let hash = s.h.key_hash.load(Relaxed);
        hash == self.hash(key)
            && s.h.checksum.load(Relaxed)
                == self.checksum(hash, s.h.inserted_at.load(Relaxed), key, value)
    }

    /// Keys from the head (newest) to the tail (oldest), with their visited bits (tests).
    #[cfg(test)]
    pub fn order(&self) -> Vec<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        let mut cur = self.header().head.load(Relaxed);
        while let Ok(s) = self.slot(cur) {
            let key = self
                .entry_bytes(s)
                .map(|(k, _)| k.to_vec())
                .unwrap_or_default();
            out.push((key, s.h.visited.load(Relaxed) != 0));
            cur = s.h.older.load(Relaxed);
            if out.len() > self.p.capacity as usize {
                break;
            }
        }
        out
    }
}

/// Sets the visited bit of a slot found by a lock-free read (a relaxed store, skipped
/// when already set so that hot entries do not bounce their cache line).
pub fn mark_visited(v: &AtomicU32) {
    if v.load(Relaxed) == 0 {
        v.store(1, Relaxed);
    }
}
