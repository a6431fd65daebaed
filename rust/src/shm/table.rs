//! The hash table, the slots and the SIEVE queue inside a mapped file.
//!
//! Every index read from the file (bucket contents, queue links, the hand, the free
//! lists, chunk links, lengths) is checked against the handle's own copy of the parameters before it
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

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::layout::{
    BUCKET_SIZE, CHUNK_HEADER_SIZE, CHUNK_PAYLOAD, COUNTER_LIMIT, ChunkHeader, FLIGHT_RECORDS,
    FlightRecord, HEADER_SIZE, Header, INLINE_BYTES, META_LIVE, META_RESERVED, META_VISITED, NIL,
    Params, SlotHeader, Stamp, checksum, entry_chunks, is_inline, meta_key_len, meta_of,
    meta_value_len,
};
use crate::hash::{fixed_state, hash_bytes};

/// The counters of a file, totalled over the stripes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub hits: u64,
    pub misses: u64,
    pub oversize_skips: u64,
    pub evictions: u64,
    pub stale_hits: u64,
    pub refreshes: u64,
}

impl Totals {
    /// The totals of header `h`: each striped counter summed over the stripes (saturating,
    /// as garbage may be anything), and the evictions. Atomic loads only: also for a
    /// read-only mapping of the header (`inspect.rs`).
    pub fn of(h: &Header) -> Totals {
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
            t.stale_hits = t.stale_hits.saturating_add(s.stale_hits.load(Relaxed));
            t.refreshes = t.refreshes.saturating_add(s.refreshes.load(Relaxed));
        }
        t
    }

    /// Whether every total is at most [`COUNTER_LIMIT`]; above it a counter is garbage.
    pub fn plausible(&self) -> bool {
        [
            self.hits,
            self.misses,
            self.oversize_skips,
            self.evictions,
            self.stale_hits,
            self.refreshes,
        ]
        .iter()
        .all(|&c| c <= COUNTER_LIMIT)
    }
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
        stamp: Stamp,
        checksum: u64,
        visited: bool,
    },
    /// Inconsistent data (torn by a writer, or corrupt).
    Inconsistent,
}

/// One slot: the header of an entry, and its bytes when they fit in its body.
#[derive(Clone, Copy)]
pub struct Slot<'a> {
    pub h: &'a SlotHeader,
}

impl Slot<'_> {
    /// Its [`SlotHeader::meta`] word.
    #[inline]
    pub fn meta(&self) -> u64 {
        self.h.meta.load(Relaxed)
    }

    /// Whether it holds an entry.
    #[inline]
    pub fn live(&self) -> bool {
        self.meta() & META_LIVE != 0
    }

    /// Its SIEVE visited bit.
    #[inline]
    pub fn visited(&self) -> bool {
        self.meta() & META_VISITED != 0
    }

    /// Clears its visited bit (the hand, under the lock; readers may set it again).
    #[inline]
    pub fn clear_visited(&self) {
        self.h.meta.fetch_and(!META_VISITED, Relaxed);
    }

    /// Chunks that its entry holds, by the lengths in `meta` (0 when it is inline).
    #[inline]
    pub fn chunks_of(meta: u64) -> u64 {
        entry_chunks((meta_key_len(meta) + meta_value_len(meta)) as u64)
    }
}

/// One chunk: its header and the address of its payload.
#[derive(Clone, Copy)]
struct Chunk<'a> {
    h: &'a ChunkHeader,
    payload: *mut u8,
}

/// A view of the structure of a mapped file.
///
/// ## Safety
/// `base` points to a shared mapping of `p.file_size` bytes that other processes modify
/// concurrently; the owner ([`super::ShmStore`]) keeps the mapping alive as long as the
/// view. All mutable state is accessed through atomics or raw-pointer copies, never
/// through Rust references to plain bytes.
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
    pub fn checksum(&self, key_hash: u64, stamp: Stamp, key: &[u8], value: &[u8]) -> u64 {
        checksum(&self.state, key_hash, stamp, key, value)
    }

    /// The flight table (see `flight.rs`): [`FLIGHT_RECORDS`] records after the chunks.
    pub fn flights(&self) -> &[FlightRecord] {
        // SAFETY: the mapping holds FLIGHT_RECORDS records of FLIGHT_SIZE bytes at
        // `flights_offset` (8-aligned: see `file_size_of`), and lives as long as `self`;
        // every field of a record is an atomic.
        unsafe {
            std::slice::from_raw_parts(
                self.base
                    .add(self.p.flights_offset())
                    .cast::<FlightRecord>(),
                FLIGHT_RECORDS,
            )
        }
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
        // SAFETY: `i < slots`, so the slot lies within the mapping (Params sized it); slot
        // offsets are multiples of 8; the header's fields are atomics.
        unsafe {
            let at = self.base.add(self.p.slot_offset(i));
            Ok(Slot {
                h: &*at.cast::<SlotHeader>(),
            })
        }
    }

    /// Chunk `i`, or [`Corrupt`] when `i` is not a chunk number.
    fn chunk(&self, i: u32) -> Result<Chunk<'_>, Corrupt> {
        if i >= self.p.chunks {
            return Err(Corrupt);
        }
        // SAFETY: `i < chunks`, so the chunk lies within the mapping (Params sized it);
        // chunk offsets are multiples of 8; the header's fields are atomics, the payload is
        // only accessed through raw copies.
        unsafe {
            let at = self.base.add(self.p.chunk_offset(i));
            Ok(Chunk {
                h: &*at.cast::<ChunkHeader>(),
                payload: at.add(CHUNK_HEADER_SIZE),
            })
        }
    }

    /// Walks the bytes `offset..offset + len` of the entry of slot `slot` whose
    /// [`SlotHeader::meta`] was read as `meta` (its key then its value: in the slot's body
    /// when the lengths of `meta` say it is inline, else across its chain), calling
    /// `f(piece, at, n)` for each piece: `n` bytes at `piece` in the mapping that are bytes
    /// `at..at + n` of the range. Stops with `Ok(false)` when `f` returns false, else
    /// `Ok(true)`. Bounded and lock-free: visits at most `chunk_count` chunks (itself at
    /// most the largest entry's), each a chunk number owned by `slot`; the range must lie
    /// within the body or within `chunk_count` chunks. A broken chain is [`Corrupt`]; torn
    /// data is the caller's to detect (checksum, counter).
    fn walk(
        &self,
        slot: u32,
        s: Slot<'_>,
        meta: u64,
        offset: usize,
        len: usize,
        mut f: impl FnMut(*mut u8, usize, usize) -> bool,
    ) -> Result<bool, Corrupt> {
        if is_inline(meta_key_len(meta) + meta_value_len(meta)) {
            if offset + len > INLINE_BYTES {
                return Err(Corrupt);
            }
            if len == 0 {
                return Ok(true);
            }
            // SAFETY: `offset + len <= INLINE_BYTES`: within the slot's body.
            let piece = unsafe { s.h.body_ptr().add(offset) };
            return Ok(f(piece, 0, len));
        }
        let count = s.h.chunk_count().load(Relaxed);
        if count > self.p.largest_chunks() || offset + len > count as usize * CHUNK_PAYLOAD {
            return Err(Corrupt);
        }
        if len == 0 {
            return Ok(true);
        }
        let end = offset + len;
        let mut cur = s.h.first_chunk().load(Relaxed);
        let mut start = 0usize; // stream offset of `cur`'s payload
        for _ in 0..count {
            let c = self.chunk(cur)?;
            if c.h.owner.load(Relaxed) != slot {
                return Err(Corrupt);
            }
            let stop = start + CHUNK_PAYLOAD;
            if stop > offset {
                let from = offset.max(start);
                let to = end.min(stop);
                // SAFETY: `from - start < to - start <= CHUNK_PAYLOAD`: within the payload.
                let piece = unsafe { c.payload.add(from - start) };
                if !f(piece, from - offset, to - from) {
                    return Ok(false);
                }
                if to == end {
                    return Ok(true);
                }
            }
            start = stop;
            cur = c.h.next.load(Relaxed);
        }
        Err(Corrupt)
    }

    /// Copies the bytes `offset..offset + out.len()` of the entry of `slot` (read as
    /// `meta`) into `out` (see [`Table::walk`]). Lock-free: the copy may be torn, which the
    /// caller detects.
    fn copy_out(
        &self,
        slot: u32,
        s: Slot<'_>,
        meta: u64,
        offset: usize,
        out: &mut [u8],
    ) -> Result<(), Corrupt> {
        let dst = out.as_mut_ptr();
        self.walk(slot, s, meta, offset, out.len(), |piece, at, n| {
            // SAFETY: `walk` gives `at + n <= out.len()` and a piece of `n` bytes within a
            // chunk's payload or the slot's body; `out` is the caller's memory, not in the
            // mapping. A raw copy creates no reference to the shared bytes, which a writer
            // may be changing.
            unsafe { std::ptr::copy_nonoverlapping(piece, dst.add(at), n) };
            true
        })?;
        Ok(())
    }

    /// Whether the stored key of slot `slot` (read as `meta`) equals `key` (whose length
    /// the caller compared with the key length of `meta`). Lock-free, see [`Table::walk`].
    fn key_eq(&self, slot: u32, s: Slot<'_>, meta: u64, key: &[u8]) -> Result<bool, Corrupt> {
        self.walk(slot, s, meta, 0, key.len(), |piece, at, n| {
            // SAFETY: `piece` is valid for `n` bytes of the mapping, `key[at..at + n]`
            // exists (`walk` bounds it by `key.len()`); memcmp reads raw bytes and creates
            // no Rust reference to the shared memory.
            unsafe {
                libc::memcmp(
                    piece.cast::<libc::c_void>(),
                    key.as_ptr().add(at).cast::<libc::c_void>(),
                    n,
                ) == 0
            }
        })
    }

    /// Finds `key`: `(bucket, slot, meta)`, with the slot's [`SlotHeader::meta`] as read
    /// when its key compared equal. Lock-free: may return anything on torn data, but stays
    /// within the mapping.
    pub fn find(&self, key: &[u8], hash: u64) -> Result<Option<(u32, u32, u64)>, Corrupt> {
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
            if (e >> 32) as u32 == tag {
                let slot = (e as u32).wrapping_sub(1);
                let s = self.slot(slot)?;
                let meta = s.meta();
                if meta & META_LIVE != 0
                    && meta_key_len(meta) == key.len()
                    && self.key_eq(slot, s, meta, key)?
                {
                    return Ok(Some((b, slot, meta)));
                }
            }
            b = (b + 1) & mask;
        }
        Err(Corrupt)
    }

    /// Looks `key` up and copies its value into `out` when it fits. Lock-free.
    pub fn read(&self, key: &[u8], hash: u64, out: &mut [u8]) -> Read {
        let (slot, meta) = match self.find(key, hash) {
            Ok(Some((_, slot, meta))) => (slot, meta),
            Ok(None) => return Read::Absent,
            Err(Corrupt) => return Read::Inconsistent,
        };
        let Ok(s) = self.slot(slot) else {
            return Read::Inconsistent;
        };
        let len = meta_value_len(meta);
        if len > self.p.max_value_size as usize {
            return Read::Inconsistent;
        }
        let stamp = Stamp {
            at: s.h.inserted_at.load(Relaxed),
            ttl: s.h.own_ttl.load(Relaxed),
        };
        let checksum = s.h.checksum.load(Relaxed);
        // The source may be changing under a writer: the caller validates the copy with
        // the sequence counter and the checksum before using it.
        if len <= out.len()
            && self
                .copy_out(slot, s, meta, key.len(), &mut out[..len])
                .is_err()
        {
            return Read::Inconsistent;
        }
        Read::Found {
            slot,
            len,
            stamp,
            checksum,
            visited: meta & META_VISITED != 0,
        }
    }

    /// Copies the key and value of slot `i` into `key` and `value` when its lengths are
    /// in range and (for a chained entry) its chain has the length they imply and holds
    /// them; returns its [`SlotHeader::meta`] as read, or `None`. Lock-free (the copy may
    /// be torn, which the caller detects).
    fn entry_copy(&self, i: u32, key: &mut Vec<u8>, value: &mut Vec<u8>) -> Option<u64> {
        let s = self.slot(i).ok()?;
        let meta = s.meta();
        let klen = meta_key_len(meta);
        let vlen = meta_value_len(meta);
        if klen > self.p.max_key_size as usize
            || vlen > self.p.max_value_size as usize
            || (!is_inline(klen + vlen)
                && u64::from(s.h.chunk_count().load(Relaxed)) != Slot::chunks_of(meta))
        {
            return None;
        }
        key.resize(klen, 0);
        value.resize(vlen, 0);
        (self.copy_out(i, s, meta, 0, key).is_ok()
            && self.copy_out(i, s, meta, klen, value).is_ok())
        .then_some(meta)
    }

    /// Whether slot `i` holds an entry whose chain and checksum verify. Under the lock.
    pub fn verify(&self, i: u32) -> bool {
        self.verify_copy(i, &mut Vec::new(), &mut Vec::new())
            .is_some()
    }

    /// Copies the value of slot `i` into `out` (which must be large enough). Under the lock.
    pub fn copy_value(&self, i: u32, out: &mut [u8]) -> Result<usize, Corrupt> {
        let s = self.slot(i)?;
        let meta = s.meta();
        let klen = meta_key_len(meta);
        let vlen = meta_value_len(meta);
        if vlen > self.p.max_value_size as usize {
            return Err(Corrupt);
        }
        self.copy_out(i, s, meta, klen, out.get_mut(..vlen).ok_or(Corrupt)?)?;
        Ok(vlen)
    }

    /// The full key hash of the entry in slot `slot` (slots keep none: computed from its
    /// key). Under the lock.
    fn hash_of(&self, slot: u32) -> Result<u64, Corrupt> {
        let s = self.slot(slot)?;
        let meta = s.meta();
        let klen = meta_key_len(meta);
        if klen > self.p.max_key_size as usize {
            return Err(Corrupt);
        }
        let mut small = [0u8; 64];
        let mut large = Vec::new();
        let key: &mut [u8] = if klen <= small.len() {
            &mut small[..klen]
        } else {
            large.resize(klen, 0);
            &mut large
        };
        self.copy_out(slot, s, meta, 0, key)?;
        Ok(self.hash(key))
    }

    /// Stores `key -> value` with insertion time and own TTL `stamp` and the precomputed
    /// checksum.
    /// Replaces the value and time of an existing key (keeping its queue place and visited
    /// bit) by copy on write: the new entry is written completely into a free slot (and
    /// free chunks when it does not fit in the slot: the file has a spare slot and spare
    /// chunks) before the old slot and chunks are freed, so a writer killed at any instant
    /// leaves the old or the new entry for [`Table::rebuild`], never neither. An entry
    /// that grows out of its slot, or shrinks into one, changes nothing else. Evicts by
    /// SIEVE until a slot and enough chunks are free for the entry within the byte budget
    /// (other entries only, when replacing). Returns the number of entries evicted. Under
    /// the lock; `key` and `value` fit the sizes and the budget (see [`Table::fits`]).
    pub fn store(
        &self,
        key: &[u8],
        hash: u64,
        value: &[u8],
        stamp: Stamp,
        sum: u64,
    ) -> Result<u32, Corrupt> {
        if !self.fits(key.len(), value.len()) {
            return Err(Corrupt);
        }
        let need = entry_chunks((key.len() + value.len()) as u64) as u32;
        let budget = self.p.budget_chunks;
        let h = self.header();
        if h.len.load(Relaxed) > self.p.capacity || h.chunks_used.load(Relaxed) > budget {
            return Err(Corrupt);
        }
        let mut evicted = 0;
        if let Some((_, old, meta)) = self.find(key, hash)? {
            let old_count = Slot::chunks_of(meta) as u32;
            // Room for the new chunks once the old ones are freed: evict others. Ends,
            // since `need <= budget`: with `old` alone, used - old_count is 0.
            loop {
                let used = h.chunks_used.load(Relaxed);
                let others = used.checked_sub(old_count).ok_or(Corrupt)?;
                if u64::from(others) + u64::from(need) <= u64::from(budget) {
                    break;
                }
                self.evict(old)?;
                evicted += 1;
            }
            // Eviction may have moved `old`'s bucket (backward shift): find it again.
            let Some((bucket, found, _)) = self.find(key, hash)? else {
                return Err(Corrupt);
            };
            if found != old {
                return Err(Corrupt);
            }
            // len <= capacity < slots: a free slot exists unless the file is corrupt; and
            // used + need <= budget + old_count <= budget + spare chunks.
            let slot = self.alloc()?;
            let visited = self.slot(old)?.visited();
            self.write_entry(slot, key, value, stamp, sum, visited)?;
            // From here both entries verify; a rebuild keeps the newer one.
            self.bucket(bucket).store(
                (u64::from(hash as u32) << 32) | u64::from(slot + 1),
                Relaxed,
            );
            self.replace_in_queue(old, slot)?;
            self.free_slot(old)?;
            return Ok(evicted);
        }
        while h.len.load(Relaxed) >= self.p.capacity
            || u64::from(h.chunks_used.load(Relaxed)) + u64::from(need) > u64::from(budget)
        {
            self.evict(NIL)?;
            evicted += 1;
        }
        let slot = self.alloc()?;
        self.write_entry(slot, key, value, stamp, sum, false)?;
        self.table_insert(hash, slot)?;
        self.push_head(slot)?;
        h.len.store(h.len.load(Relaxed) + 1, Relaxed);
        Ok(evicted)
    }

    /// Whether an entry of these key and value lengths may be stored: within the key and
    /// value sizes, and its chunks (none when it fits in a slot) within the byte budget.
    pub fn fits(&self, key_len: usize, value_len: usize) -> bool {
        key_len <= self.p.max_key_size as usize
            && value_len <= self.p.max_value_size as usize
            && entry_chunks((key_len + value_len) as u64) <= u64::from(self.p.budget_chunks)
    }

    /// Bytes of the chunks that the entries hold (at most `max_bytes`: more is corruption,
    /// reported as is until a check repairs it). Entries that live in their slots hold
    /// none. Lock-free.
    pub fn bytes_used(&self) -> u64 {
        u64::from(self.header().chunks_used.load(Relaxed)) * super::layout::CHUNK_SIZE as u64
    }

    /// Writes a complete entry into the free slot `slot` (its bytes into the slot's body
    /// when they fit, else into a new chain of free chunks, counted in `chunks_used`) and
    /// only then marks it live (its meta word, with its lengths and `visited`, in one
    /// store), so that a rebuild after a crash here never resurrects a half-written or
    /// stale entry (the chunks taken are then free again: a rebuild frees every chunk no
    /// kept entry holds). The entry is not yet indexed nor queued. Under the lock.
    fn write_entry(
        &self,
        slot: u32,
        key: &[u8],
        value: &[u8],
        stamp: Stamp,
        sum: u64,
        visited: bool,
    ) -> Result<Slot<'_>, Corrupt> {
        let s = self.slot(slot)?;
        let total = key.len() + value.len();
        if is_inline(total) {
            let body = s.h.body_ptr();
            // SAFETY: `key.len() + value.len() <= INLINE_BYTES`: within the slot's body; the
            // sources are the caller's memory. Readers may read concurrently (a reader that
            // found this slot for its former entry): they discard what they read unless its
            // checksum verifies.
            unsafe {
                std::ptr::copy_nonoverlapping(key.as_ptr(), body, key.len());
                std::ptr::copy_nonoverlapping(value.as_ptr(), body.add(key.len()), value.len());
            }
        } else {
            let count = entry_chunks(total as u64) as u32;
            let mut first = NIL;
            let mut prev: Option<Chunk<'_>> = None;
            for k in 0..count as usize {
                let i = self.alloc_chunk()?;
                let c = self.chunk(i)?;
                c.h.owner.store(slot, Relaxed);
                c.h.next.store(NIL, Relaxed);
                let (from, to) = (k * CHUNK_PAYLOAD, ((k + 1) * CHUNK_PAYLOAD).min(total));
                // The stream's bytes from..to: a part of the key, then a part of the value.
                let kpart = key
                    .get(from.min(key.len())..to.min(key.len()))
                    .unwrap_or(&[]);
                let vfrom = from.saturating_sub(key.len());
                let vpart = value.get(vfrom..to - key.len().min(to)).unwrap_or(&[]);
                // SAFETY: kpart.len() + vpart.len() == to - from <= CHUNK_PAYLOAD bytes,
                // within the payload; the sources are the caller's memory. Readers may read
                // concurrently: they discard what they read unless its checksum verifies.
                unsafe {
                    std::ptr::copy_nonoverlapping(kpart.as_ptr(), c.payload, kpart.len());
                    std::ptr::copy_nonoverlapping(
                        vpart.as_ptr(),
                        c.payload.add(kpart.len()),
                        vpart.len(),
                    );
                }
                match prev {
                    None => first = i,
                    Some(p) => p.h.next.store(i, Relaxed),
                }
                prev = Some(c);
            }
            let h = self.header();
            h.chunks_used
                .store(h.chunks_used.load(Relaxed) + count, Relaxed);
            s.h.first_chunk().store(first, Relaxed);
            s.h.chunk_count().store(count, Relaxed);
        }
        s.h.inserted_at.store(stamp.at, Relaxed);
        s.h.own_ttl.store(stamp.ttl, Relaxed);
        s.h.checksum.store(sum, Relaxed);
        s.h.newer.store(NIL, Relaxed);
        s.h.older.store(NIL, Relaxed);
        let visited = if visited { META_VISITED } else { 0 };
        s.h.meta
            .store(meta_of(key.len(), value.len()) | visited, Relaxed);
        Ok(s)
    }

    /// Frees the slot `slot` (already out of the table and the queue) and its chain, if it
    /// has one: each chunk must be owned by it (so a chunk is never freed for an entry that
    /// does not hold it), and the chain as long as the slot says. Under the lock.
    fn free_slot(&self, slot: u32) -> Result<(), Corrupt> {
        let h = self.header();
        let s = self.slot(slot)?;
        let meta = s.meta();
        let chained = Slot::chunks_of(meta) > 0;
        let count = if chained {
            s.h.chunk_count().load(Relaxed)
        } else {
            0
        };
        if u64::from(count) != Slot::chunks_of(meta) || count > self.p.largest_chunks() {
            return Err(Corrupt);
        }
        let used = h
            .chunks_used
            .load(Relaxed)
            .checked_sub(count)
            .ok_or(Corrupt)?;
        s.h.meta.store(0, Relaxed);
        s.h.older.store(h.free_head.load(Relaxed), Relaxed);
        h.free_head.store(slot, Relaxed);
        if !chained {
            return Ok(());
        }
        let mut cur = s.h.first_chunk().load(Relaxed);
        for k in 0..count {
            let c = self.chunk(cur)?;
            if c.h.owner.load(Relaxed) != slot {
                return Err(Corrupt);
            }
            let next = c.h.next.load(Relaxed);
            if (k + 1 == count) != (next == NIL) {
                return Err(Corrupt);
            }
            c.h.owner.store(NIL, Relaxed);
            c.h.next.store(h.chunk_free_head.load(Relaxed), Relaxed);
            h.chunk_free_head.store(cur, Relaxed);
            cur = next;
        }
        s.h.first_chunk().store(NIL, Relaxed);
        s.h.chunk_count().store(0, Relaxed);
        h.chunks_used.store(used, Relaxed);
        Ok(())
    }

    /// Takes a free chunk (its owner and link are the caller's to set). Under the lock.
    fn alloc_chunk(&self) -> Result<u32, Corrupt> {
        let h = self.header();
        let free = h.chunk_free_head.load(Relaxed);
        if free != NIL {
            let c = self.chunk(free)?;
            if c.h.owner.load(Relaxed) != NIL || free >= h.chunk_next_unused.load(Relaxed) {
                return Err(Corrupt);
            }
            h.chunk_free_head.store(c.h.next.load(Relaxed), Relaxed);
            return Ok(free);
        }
        let next = h.chunk_next_unused.load(Relaxed);
        let c = self.chunk(next)?;
        // Free before it counts as used (a rebuild frees it anyway if no entry holds it).
        c.h.owner.store(NIL, Relaxed);
        h.chunk_next_unused.store(next + 1, Relaxed);
        Ok(next)
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

    /// Takes a free slot. Under the lock.
    fn alloc(&self) -> Result<u32, Corrupt> {
        let h = self.header();
        let free = h.free_head.load(Relaxed);
        if free != NIL {
            let s = self.slot(free)?;
            if s.live() {
                return Err(Corrupt);
            }
            h.free_head.store(s.h.older.load(Relaxed), Relaxed);
            return Ok(free);
        }
        let next = h.next_unused.load(Relaxed);
        let s = self.slot(next)?;
        // Mark it free before it counts as used (see `store`).
        s.h.meta.store(0, Relaxed);
        h.next_unused.store(next + 1, Relaxed);
        Ok(next)
    }

    /// Evicts one entry by SIEVE, never `exclude` (the entry being replaced; [`NIL`]:
    /// none), which the hand passes as if visited. Under the lock; the store holds an
    /// entry other than `exclude`.
    fn evict(&self, exclude: u32) -> Result<(), Corrupt> {
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
            let meta = s.meta();
            if meta & META_LIVE == 0 {
                return Err(Corrupt);
            }
            steps += 1;
            if steps > 2 * rounds {
                return Err(Corrupt); // only `exclude` on the queue, or a loop
            }
            if cur == exclude {
                let newer = s.h.newer.load(Relaxed);
                cur = if newer == NIL {
                    h.tail.load(Relaxed)
                } else {
                    newer
                };
                continue;
            }
            if meta & META_VISITED == 0 || steps > rounds {
                h.hand.store(s.h.newer.load(Relaxed), Relaxed);
                self.remove_slot(cur)?;
                h.evictions.fetch_add(1, Relaxed);
                return Ok(());
            }
            s.clear_visited();
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
            Some((_, slot, _)) => {
                self.remove_slot_hashed(slot, hash)?;
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// Removes the entry in slot `slot` from the table and the queue and frees the slot.
    /// Under the lock.
    pub fn remove_slot(&self, slot: u32) -> Result<(), Corrupt> {
        let hash = self.hash_of(slot)?;
        self.remove_slot_hashed(slot, hash)
    }

    /// [`Table::remove_slot`] of an entry whose key hashes to `hash`.
    pub fn remove_slot_hashed(&self, slot: u32, hash: u64) -> Result<(), Corrupt> {
        let h = self.header();
        let s = self.slot(slot)?;
        if !s.live() {
            return Err(Corrupt);
        }
        let len = h.len.load(Relaxed).checked_sub(1).ok_or(Corrupt)?;
        self.table_remove(hash, slot)?;
        if h.hand.load(Relaxed) == slot {
            h.hand.store(s.h.newer.load(Relaxed), Relaxed);
        }
        self.unlink(slot)?;
        self.free_slot(slot)?;
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
            n.h.older.load(Relaxed) == slot && n.live()
        };
        let older_ok = if older == NIL {
            h.tail.load(Relaxed) == slot
        } else {
            let o = self.slot(older)?;
            o.h.newer.load(Relaxed) == slot && o.live()
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
            old != slot && o.h.newer.load(Relaxed) == NIL && o.live()
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

    /// The counter totals of the file ([`Totals::of`]). Lock-free.
    pub fn counter_totals(&self) -> Totals {
        Totals::of(self.header())
    }

    /// Whether every counter total is plausible ([`Totals::plausible`]). Lock-free.
    pub fn counters_plausible(&self) -> bool {
        self.counter_totals().plausible()
    }

    /// Sets every counter (every stripe, and evictions) to 0. Under the lock (increments
    /// that race with it, by lock-free readers, are kept or lost as with any reset).
    pub fn reset_counters(&self) {
        let h = self.header();
        for s in h.all_stripes() {
            for c in [
                &s.hits,
                &s.misses,
                &s.oversize_skips,
                &s.stale_hits,
                &s.refreshes,
            ] {
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
        for field in [&h.head, &h.tail, &h.hand, &h.free_head, &h.chunk_free_head] {
            field.store(NIL, Relaxed);
        }
        h.len.store(0, Relaxed);
        h.chunks_used.store(0, Relaxed);
        // Slots and chunks at or past the never-used marks are ignored by rebuild and
        // reset by alloc.
        h.next_unused.store(0, Relaxed);
        h.chunk_next_unused.store(0, Relaxed);
    }

    /// Rebuilds the table, queue, free lists, length and chunk count from the slots whose
    /// chains and checksums verify; every other slot and every chunk that no kept entry
    /// holds is freed. Used after a writer died mid-write or when an inconsistency is
    /// found. The queue is ordered by insertion time (the SIEVE order before the failure
    /// is not recorded anywhere that could be trusted); the hand restarts at the tail; of
    /// two entries with the same key the newer is kept; an entry whose chain shares a
    /// chunk with a kept entry's, or loops, is dropped; so are the oldest entries beyond
    /// the capacity or the byte budget. O(table_size + slots + chunks + entry bytes).
    /// Under the lock.
    pub fn rebuild(&self) {
        let h = self.header();
        for b in 0..self.p.table_size {
            self.bucket(b).store(0, Relaxed);
        }
        let used = h.next_unused.load(Relaxed).min(self.p.slots);
        h.next_unused.store(used, Relaxed);
        let chunks_touched = h.chunk_next_unused.load(Relaxed).min(self.p.chunks);
        h.chunk_next_unused.store(chunks_touched, Relaxed);
        let mut live: Vec<(f64, u32, u64)> = Vec::new();
        let mut free = NIL;
        let (mut key, mut value) = (Vec::new(), Vec::new());
        for i in (0..used).rev() {
            let Ok(s) = self.slot(i) else { continue };
            match self.verify_copy(i, &mut key, &mut value) {
                Some(meta) if meta & META_LIVE != 0 => {
                    live.push((
                        f64::from_bits(s.h.inserted_at.load(Relaxed)),
                        i,
                        self.hash(&key),
                    ));
                    // Garbage in the bits that are always 0 goes; the visited bit stays.
                    s.h.meta.fetch_and(!META_RESERVED, Relaxed);
                }
                _ => {
                    s.h.meta.store(0, Relaxed);
                    s.h.newer.store(NIL, Relaxed);
                    s.h.older.store(free, Relaxed);
                    free = i;
                }
            }
        }
        // Newest first, so that of duplicate keys the newest is indexed first and kept.
        live.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
        for field in [&h.head, &h.tail, &h.hand] {
            field.store(NIL, Relaxed);
        }
        let mut held = vec![0u64; (self.p.chunks as usize).div_ceil(64)];
        let mut chunks_used = 0u32;
        let mut chain = Vec::new();
        let mut kept: Vec<u32> = Vec::with_capacity(live.len());
        for &(_, i, hash) in &live {
            let Ok(s) = self.slot(i) else { continue };
            let dup = self.entry_copy(i, &mut key, &mut value).is_none()
                || !matches!(self.find(&key, hash), Ok(None));
            // At most `capacity` entries and `budget_chunks` chunks: a crash mid-update
            // leaves two slots of one key (deduplicated above); a corrupt file may claim
            // more, the oldest go.
            let count = Slot::chunks_of(s.meta()) as u32;
            let full = kept.len() >= self.p.capacity as usize
                || u64::from(chunks_used) + u64::from(count) > u64::from(self.p.budget_chunks);
            let claimed =
                !dup && !full && self.claim_chain(i, &mut held, &mut chain, chunks_touched);
            if !claimed || self.table_insert(hash, i).is_err() {
                if claimed {
                    for &c in &chain {
                        held[c as usize / 64] &= !(1u64 << (c % 64));
                    }
                }
                s.h.meta.store(0, Relaxed);
                s.h.older.store(free, Relaxed);
                free = i;
            } else {
                chunks_used += count;
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
        // Every touched chunk that no kept entry holds is free.
        let mut free_chunk = NIL;
        for c in (0..chunks_touched).rev() {
            if held[c as usize / 64] & (1u64 << (c % 64)) == 0
                && let Ok(ch) = self.chunk(c)
            {
                ch.h.owner.store(NIL, Relaxed);
                ch.h.next.store(free_chunk, Relaxed);
                free_chunk = c;
            }
        }
        h.chunk_free_head.store(free_chunk, Relaxed);
        h.chunks_used.store(chunks_used, Relaxed);
    }

    /// Marks the chunks of slot `slot`'s chain in `held` when they are all free of other
    /// claims (no chunk of a kept entry, no loop), below `limit` (the never-used mark),
    /// owned by `slot`, and the chain ends where its count says; leaves its chunks in
    /// `chain`. Otherwise marks nothing and returns false. Under the lock (rebuild).
    fn claim_chain(&self, slot: u32, held: &mut [u64], chain: &mut Vec<u32>, limit: u32) -> bool {
        chain.clear();
        let ok = self.chain_of(slot, chain, limit).is_ok()
            && chain
                .iter()
                .all(|&c| held[c as usize / 64] & (1u64 << (c % 64)) == 0);
        if !ok {
            return false;
        }
        for (n, &c) in chain.iter().enumerate() {
            let bit = 1u64 << (c % 64);
            if held[c as usize / 64] & bit != 0 {
                // The chain loops: undo.
                for &d in &chain[..n] {
                    held[d as usize / 64] &= !(1u64 << (d % 64));
                }
                return false;
            }
            held[c as usize / 64] |= bit;
        }
        true
    }

    /// The chunks of slot `slot`'s chain, into `chain`: none for an entry that lives in its
    /// slot, else `chunk_count` chunk numbers below `limit`, each owned by `slot`, the last
    /// one's `next` [`NIL`]; the count must be the one its lengths imply. Bounded and
    /// lock-free (a wrong verdict on torn data).
    fn chain_of(&self, slot: u32, chain: &mut Vec<u32>, limit: u32) -> Result<(), String> {
        let s = self.slot(slot).map_err(|_| format!("no slot {slot}"))?;
        let meta = s.meta();
        let want = Slot::chunks_of(meta);
        if want == 0 {
            return Ok(());
        }
        let count = s.h.chunk_count().load(Relaxed);
        if u64::from(count) != want || count > self.p.largest_chunks() {
            return Err(format!("slot {slot} has a chain of the wrong length"));
        }
        let mut cur = s.h.first_chunk().load(Relaxed);
        for k in 0..count {
            if cur >= limit {
                return Err(format!(
                    "slot {slot} links to chunk {cur}, not a used chunk"
                ));
            }
            let c = self
                .chunk(cur)
                .map_err(|_| format!("slot {slot}: bad chunk link"))?;
            if c.h.owner.load(Relaxed) != slot {
                return Err(format!("chunk {cur} of slot {slot} is not owned by it"));
            }
            chain.push(cur);
            let next = c.h.next.load(Relaxed);
            if (k + 1 == count) != (next == NIL) {
                return Err(format!("slot {slot} has a chain of the wrong length"));
            }
            cur = next;
        }
        Ok(())
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
    /// slots without a loop, and `free + len == next_unused` (no leaked slot); and the
    /// chunks: each entry's chain as long as its lengths imply, ending in [`NIL`], made of
    /// used chunks that it owns, no chunk in two chains (nor twice in one: a cycle), the
    /// chunks held equal to `chunks_used` and within the budget, the free chunk list made
    /// of ownerless chunks held by no entry, without a loop, and `free + held ==
    /// chunk_next_unused` (no leaked chunk).
    ///
    /// Cost: one pass over the buckets, one over the queue (a lookup, a chain walk and a
    /// checksum per entry: expected O(1) probes at a load factor of at most 1/2, plus the
    /// entry's bytes), one over each free list: O(table_size + slots + chunks + bytes of
    /// the entries).
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
        // The queue, from the head, with the chunks of each entry's chain.
        let chunks_touched = h.chunk_next_unused.load(Relaxed);
        if chunks_touched > self.p.chunks {
            return Err(broken(format!(
                "{chunks_touched} chunks used, more than the file's"
            )));
        }
        let mut held = vec![0u64; (self.p.chunks as usize).div_ceil(64)];
        let mut chain = Vec::new();
        let mut chunks_used = 0u64;
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
            let meta = s.meta();
            if meta & META_LIVE == 0 {
                return Err(broken(format!("slot {cur} on the queue is not live")));
            }
            if meta & META_RESERVED != 0 {
                return Err(broken(format!("slot {cur} has garbage in its meta word")));
            }
            chain.clear();
            self.chain_of(cur, &mut chain, chunks_touched)
                .map_err(broken)?;
            for &c in &chain {
                let (word, bit) = (c as usize / 64, 1u64 << (c % 64));
                if held[word] & bit != 0 {
                    return Err(broken(format!("chunk {c} is held twice")));
                }
                held[word] |= bit;
            }
            chunks_used += chain.len() as u64;
            if self.verify_copy(cur, &mut key, &mut value).is_none() {
                return Err(broken(format!("slot {cur} fails its checksum")));
            }
            match self.find(&key, self.hash(&key)) {
                Ok(Some((_, found, _))) if found == cur => {}
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
            if s.live() {
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
        // The chunks: as many held as counted, within the budget; the free chunk list
        // made of free chunks that no entry holds, without a loop; none leaked.
        let counted = h.chunks_used.load(Relaxed);
        if chunks_used != u64::from(counted) || counted > self.p.budget_chunks {
            return Err(broken(format!(
                "entries hold {chunks_used} chunks, {counted} counted (budget {})",
                self.p.budget_chunks
            )));
        }
        let mut free_chunks = 0u64;
        let mut c = h.chunk_free_head.load(Relaxed);
        while c != NIL {
            poll()?;
            if c >= chunks_touched {
                return Err(broken(format!("free chunk {c} was never used")));
            }
            let ch = self
                .chunk(c)
                .map_err(|_| broken("bad free chunk link".into()))?;
            if ch.h.owner.load(Relaxed) != NIL {
                return Err(broken(format!("free chunk {c} has an owner")));
            }
            let (word, bit) = (c as usize / 64, 1u64 << (c % 64));
            if held[word] & bit != 0 {
                return Err(broken(format!(
                    "chunk {c} is free and held, or the free chunk list loops"
                )));
            }
            held[word] |= bit;
            free_chunks += 1;
            c = ch.h.next.load(Relaxed);
        }
        if free_chunks + chunks_used != u64::from(chunks_touched) {
            return Err(broken(format!(
                "chunk leak: {free_chunks} free + {chunks_used} held != {chunks_touched} used"
            )));
        }
        Ok(())
    }

    /// Whether the entry of slot `i` verifies (lengths in range, its chain, checksum),
    /// hashing copies of its bytes, which are left in `key` and `value`: its meta word as
    /// read, or `None`. Lock-free: the bytes may be torn, which the caller detects (see
    /// [`Table::check`]).
    fn verify_copy(&self, i: u32, key: &mut Vec<u8>, value: &mut Vec<u8>) -> Option<u64> {
        let s = self.slot(i).ok()?;
        let meta = self.entry_copy(i, key, value)?;
        let stamp = Stamp {
            at: s.h.inserted_at.load(Relaxed),
            ttl: s.h.own_ttl.load(Relaxed),
        };
        (s.h.checksum.load(Relaxed) == self.checksum(self.hash(key), stamp, key, value))
            .then_some(meta)
    }

    /// Keys from the head (newest) to the tail (oldest), with their visited bits (tests).
    #[cfg(test)]
    pub fn order(&self) -> Vec<(Vec<u8>, bool)> {
        let mut out = Vec::new();
        let mut cur = self.header().head.load(Relaxed);
        while let Ok(s) = self.slot(cur) {
            let mut key = Vec::new();
            if self.entry_copy(cur, &mut key, &mut Vec::new()).is_none() {
                key.clear();
            }
            out.push((key, s.visited()));
            cur = s.h.older.load(Relaxed);
            if out.len() > self.p.capacity as usize {
                break;
            }
        }
        out
    }
}

/// Sets the visited bit of a slot found by a lock-free read (in its meta word; skipped
/// when already set so that hot entries do not bounce their cache line). An atomic OR, so
/// that it never undoes a writer's change of the word: on a slot freed or reused since the
/// read, it sets the bit of a free slot (ignored) or of another entry (harmless).
pub fn mark_visited(meta: &AtomicU64) {
    if meta.load(Relaxed) & META_VISITED == 0 {
        meta.fetch_or(META_VISITED, Relaxed);
    }
}
